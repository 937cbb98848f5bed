"""I3D, the metrics and their protocols, C3D loading, in-training FVD, `dvd_gan.evaluate`."""

import json

import numpy as np
import pytest
import scipy.linalg
from conftest import free_port, run_module, start_worker, tiny_config, wait_for_workers

from dvd_gan.evaluation import c3d, features, metrics, video_metrics
from dvd_gan.generation import standing_stats
from dvd_gan.generation.evaluation import evaluate_generator
from dvd_gan.training.checkpointing import restore_generator


@pytest.fixture(scope="module")
def extractor():
    return features.I3DFeatures(batch_size=16)


@pytest.fixture(scope="module")
def black_and_white(extractor):
    black = np.zeros((16, 15, 64, 64, 3), np.uint8)
    white = np.full((16, 15, 64, 64, 3), 255, np.uint8)
    return extractor(black), extractor(white)


@pytest.mark.slow
def test_i3d_logits_of_a_black_video_match_tf_hub(black_and_white):
    logits = black_and_white[0]["logits"]
    assert logits.shape == (16, 400)
    np.testing.assert_allclose(logits[0, :3], [0.7422105, 2.829727, 0.39993525], atol=1e-4)
    assert black_and_white[0]["pool"].shape == (16, 1024)


def test_reference_fvd_black_against_white(black_and_white):
    black, white = (metrics.FeatureStatistics.of(f["logits"]) for f in black_and_white)
    assert 131.0 <= metrics.frechet_distance(black, white) <= 135.0


def _reference_frechet(a, b):
    """Independent float64 computation with scipy's matrix square root."""
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def test_frechet_distance_agrees_with_an_independent_computation():
    rng = np.random.default_rng(0)
    for dim in (4, 32):
        a = rng.normal(size=(500, dim)) @ rng.normal(size=(dim, dim))
        b = rng.normal(0.3, 1.5, size=(400, dim)) @ rng.normal(size=(dim, dim))
        ours = metrics.frechet_distance(
            metrics.FeatureStatistics.of(a), metrics.FeatureStatistics.of(b)
        )
        np.testing.assert_allclose(ours, _reference_frechet(a, b), rtol=1e-6)
        same = metrics.FeatureStatistics.of(a)
        assert abs(metrics.frechet_distance(same, same)) < 1e-8 * np.trace(same.covariance)


def test_frechet_distance_is_never_negative_on_degenerate_features():
    rng = np.random.default_rng(1)
    for _ in range(20):
        base = rng.normal(size=(10, 64))  # fewer samples than dimensions: singular covariances
        a = metrics.FeatureStatistics.of(base)
        b = metrics.FeatureStatistics.of(base + rng.normal(scale=1e-6, size=base.shape))
        assert metrics.frechet_distance(a, b) >= 0.0


def test_inception_score_on_known_predictions():
    confident = np.eye(20)[np.arange(100) % 20] * 50.0  # 20 classes, each sure
    score, spread = metrics.inception_score(confident, splits=5)
    np.testing.assert_allclose(score, 20.0, rtol=1e-6)
    assert spread < 1e-6
    same = np.tile(np.eye(20)[3] * 50.0, (100, 1))
    np.testing.assert_allclose(metrics.inception_score(same, splits=5)[0], 1.0, rtol=1e-6)


@pytest.mark.slow
def test_fvd_prefers_real_motion_to_frames_shuffled_in_time(extractor, mnist_data_dir):
    config = tiny_config(resolution=32, num_frames=16)
    config.data.data_dir = mnist_data_dir
    clips = features.real_videos(config.data, "test", 96)
    first, second = clips[:48], clips[48:]
    rng = np.random.default_rng(0)
    shuffled = np.stack([video[rng.permutation(16)] for video in second])
    stats = [
        metrics.FeatureStatistics.of(extractor(v)["logits"]) for v in (first, second, shuffled)
    ]
    real_vs_real = metrics.frechet_distance(stats[0], stats[1])
    real_vs_shuffled = metrics.frechet_distance(stats[0], stats[2])
    assert real_vs_real < real_vs_shuffled, (real_vs_real, real_vs_shuffled)


def _write_c3d_weights(path, broken=None):
    rng = np.random.default_rng(0)
    arrays = {
        name: (rng.normal(scale=0.01, size=shape)).astype(np.float32)
        for name, shape in c3d.expected_shapes().items()
    }
    arrays["mean"] = np.full((3,), 100.0, np.float32)
    if broken:
        arrays.pop(broken)
    np.savez(path, **arrays)


@pytest.mark.slow
def test_c3d_weights_load_and_score(tmp_path):
    _write_c3d_weights(tmp_path / "c3d.npz")
    model = c3d.C3DLogits(str(tmp_path / "c3d.npz"), batch_size=2)
    videos = np.random.default_rng(0).integers(0, 256, (10, 16, 64, 64, 3), dtype=np.uint8)
    result = video_metrics.compute(videos, ("c3d_is",), None, c3d=model)
    assert result["c3d_is"] >= 1.0 and "c3d_is_std" in result
    assert result["protocol"]["c3d_is"]["frames"] == 16
    _write_c3d_weights(tmp_path / "bad.npz", broken="fc7/kernel")
    with pytest.raises(ValueError, match="fc7/kernel"):
        c3d.load_weights(str(tmp_path / "bad.npz"))
    with pytest.raises(ValueError, match="Cannot read"):
        c3d.load_weights(str(tmp_path / "missing.npz"))


@pytest.mark.slow
def test_in_training_fvd_is_logged_with_its_protocol(smoke_workdir):
    for step in (0, 2):
        result = json.loads((smoke_workdir / "eval" / f"step_{step:07d}.json").read_text())
        assert result["fvd"] >= 0.0
        protocol = result["protocol"]["fvd"]
        assert protocol["num_videos"] == 4 and protocol["split"] == "test"
        assert protocol["frames"] == 4 and protocol["frame_repeats"] == 3
        assert protocol["generator"] == "EMA"
        assert protocol["standing_stats_batches"] == 16
        for name in ("diversity", "motion"):
            assert result[name] >= 0.0 and result[f"{name}_real"] > 0.0, name


def _pixel_statistics_here(workdir, step: int, num_videos: int, batch_size: int, seed: int):
    """`diversity` and `motion` of a run's EMA generator at `step`, evaluated in this
    process with its standing statistics, then with the raw generator's statistics."""
    config, step, ema, g_vars = restore_generator(str(workdir), step)
    key = standing_stats.standing_key(config, step)
    standing = standing_stats.StandingStatistics(config)(ema, g_vars, key)
    config.eval.batch_size = batch_size
    return [
        evaluate_generator(
            config,
            ema,
            variables,
            metrics=("diversity", "motion"),
            num_videos=num_videos,
            split="test",
            extractor=None,
            seed=seed,
        )
        for variables in (standing, g_vars)
    ]


def _assert_standing(result: dict, standing: dict, raw: dict):
    for name in ("diversity", "motion"):
        np.testing.assert_allclose(result[name], standing[name], rtol=1e-4, err_msg=name)
        assert abs(raw[name] - standing[name]) > 0.01 * standing[name], name


@pytest.mark.slow
def test_in_training_evaluation_uses_the_standing_statistics(smoke_workdir):
    """The loop's evaluation of step 2 (before test_evaluate_a_workdir overwrites its file)
    equals one computed here with the EMA generator's standing statistics, not the raw."""
    result = json.loads((smoke_workdir / "eval" / "step_0000002.json").read_text())
    _assert_standing(result, *_pixel_statistics_here(smoke_workdir, 2, 4, 4, seed=0))


@pytest.mark.slow
def test_evaluate_real_against_fake_files(tmp_path, mnist_data_dir):
    config = tiny_config(resolution=32, num_frames=10)
    config.data.data_dir = mnist_data_dir
    real = features.real_videos(config.data, "test", 20)
    np.savez(tmp_path / "real.npz", videos=real[:10])
    np.savez(tmp_path / "fake.npz", videos=real[10:])
    result = run_module(
        "dvd_gan.evaluate", f"--real={tmp_path / 'real.npz'}", f"--fake={tmp_path / 'fake.npz'}",
        "--metrics=fvd,fid,is", "--batch_size=10",
    )  # fmt: skip
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report) >= {"fvd", "fid", "is", "is_std", "protocol"}
    assert report["fvd"] > 0 and report["fid"] > 0 and report["is"] >= 1.0
    for name in ("fvd", "fid", "is"):
        protocol = report["protocol"][name]
        for field in (
            "model",
            "layer",
            "resize",
            "resolution",
            "frames",
            "num_videos",
            "quantisation",
        ):
            assert field in protocol, (name, field)
    bad = run_module(
        "dvd_gan.evaluate", "--real=x.npz", "--fake=y.npz", "--metrics=fvdd", check=False
    )
    assert bad.returncode != 0 and "fvdd" in bad.stderr


@pytest.mark.slow
def test_evaluate_a_workdir(smoke_workdir, tmp_path):
    result = run_module(
        "dvd_gan.evaluate", f"--workdir={smoke_workdir}", "--num_videos=10",
        "--metrics=fvd,kvd,is", "--batch_size=10", "--num_runs=2",
    )  # fmt: skip
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["step"] == 2 and report["fvd"] >= 0 and report["is"] >= 1.0
    assert [run["seed"] for run in report["runs"]] == [0, 1]
    assert report["fvd_runs_std"] > 0 and report["kvd_runs_std"] > 0  # new z per run
    assert report["fvd"] == np.mean([run["fvd"] for run in report["runs"]])
    assert report["protocol"]["fvd"]["split"] == "test"
    assert report["protocol"]["fvd"]["num_runs"] == 2
    assert len(report["protocol"]["fvd"]["fingerprint"]) == 16
    assert (smoke_workdir / "eval" / "step_0000002.json").exists()
    untrained = run_module(
        "dvd_gan.evaluate", f"--workdir={smoke_workdir}", "--num_videos=10", "--step=0",
        "--metrics=diversity,motion", "--batch_size=10",
    )  # fmt: skip
    report = json.loads(untrained.stdout.strip().splitlines()[-1])
    assert report["step"] == 0 and report["motion_real"] > 0 and report["diversity"] > 0
    _assert_standing(report, *_pixel_statistics_here(smoke_workdir, 0, 10, 10, seed=0))


@pytest.mark.slow
def test_evaluation_split_over_two_processes_equals_one_process(tmp_path, mnist_data_dir):
    """Two processes of one device each generate and score half of every batch; their
    videos and metrics equal those of one process with two devices, and process 0 caches
    the real statistics once for both to read."""
    coordinator = f"127.0.0.1:{free_port()}"
    worker = "distributed_eval_worker.py"
    two = [
        start_worker(
            worker,
            str(tmp_path / "two.json"),
            mnist_data_dir,
            str(tmp_path / "stats_two"),
            "1",
            "2",
            str(i),
            coordinator,
        )  # fmt: skip
        for i in range(2)
    ]
    one = start_worker(
        worker, str(tmp_path / "one.json"), mnist_data_dir, str(tmp_path / "stats_one"),
        "2", "1", "0",
    )  # fmt: skip
    wait_for_workers(one, *two)
    multi = json.loads((tmp_path / "two.json").read_text())
    single = json.loads((tmp_path / "one.json").read_text())
    assert multi["video_sums"] == single["video_sums"]  # the same videos, in the same order
    assert len(set(single["video_sums"])) == 10
    for computed, cached in (multi["metrics"], single["metrics"]):
        assert computed == cached  # the second call read the cached real statistics
    for name in ("fvd", "fid", "is", "is_std"):
        np.testing.assert_allclose(
            multi["metrics"][0][name], single["metrics"][0][name], rtol=1e-5, err_msg=name
        )
    assert multi["metrics"][0]["protocol"]["fvd"]["num_videos"] == 10
    assert len(list((tmp_path / "stats_two").iterdir())) == 1
