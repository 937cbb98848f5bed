"""Scoring any videos: sources (.npz, folders of video files, folders of PNG clips, TFDS),
named protocols and their fingerprints, the real-feature cache, KVD, runs with error bars."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import run_module, tiny_config
from PIL import Image

from dvd_gan.data.video_io import write_video
from dvd_gan.evaluation import features, i3d, metrics, protocols, scoring, video_sources

FRAMES = 10  # the clip length other evaluation tests compile I3D for


@pytest.fixture(scope="module")
def extractor():
    return features.I3DFeatures(batch_size=16)


@pytest.fixture(scope="module")
def clips(mnist_data_dir):
    """16 real Moving-MNIST clips, uint8 [16, 12, 64, 64, 3]: 12 frames, so that a
    10-frame protocol can start them at 3 places."""
    source = video_sources.open_source("tfds:moving_mnist_local/small:test", mnist_data_dir)
    protocol = protocols.resolve("dvd_gan", num_frames=12, real_clip_start="first")
    return np.stack(list(video_sources.iterate_clips(source, protocol, "real", 0, 12, 16, [])))


def _write_png_clips(root, videos):
    for i, video in enumerate(videos):
        folder = root / f"clip_{i:03d}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(video):
            Image.fromarray(frame).save(folder / f"{t:05d}.png")


def _scorer(real, fake, extractor, cache_dir, name="dvd_gan", measured=("fvd",), **fields):
    return scoring.SourceScorer(
        video_sources.open_source(str(real)),
        video_sources.open_source(str(fake)),
        name,
        protocols.resolve(name, **fields),
        measured,
        extractor,
        cache_dir=str(cache_dir),
    )


@pytest.mark.slow
def test_png_folders_give_the_clips_and_features_of_the_npz(clips, extractor, tmp_path):
    np.savez(tmp_path / "clips.npz", videos=clips[:6])
    _write_png_clips(tmp_path / "png", clips[:6])
    protocol = protocols.resolve("dvd_gan", num_frames=FRAMES, real_clip_start="centre")
    taken = {}
    for kind in ("clips.npz", "png"):
        source = video_sources.open_source(str(tmp_path / kind))
        taken[kind] = np.stack(
            list(video_sources.iterate_clips(source, protocol, "real", 0, FRAMES, 6, []))
        )
    np.testing.assert_array_equal(taken["png"], taken["clips.npz"])
    np.testing.assert_array_equal(taken["png"], clips[:6, 1:11])  # the centre 10 of 12
    from_png, from_npz = extractor(taken["png"]), extractor(taken["clips.npz"])
    for name in ("logits", "pool"):
        np.testing.assert_array_equal(from_png[name], from_npz[name])


@pytest.mark.slow
def test_mp4_folder_scores_like_the_npz_and_skips_bad_files(clips, extractor, tmp_path):
    """H.264 loses a little: FVD between the .mp4 and .npz copies of the same 8 clips must be
    under a tenth of the FVD between those clips and 8 other real clips, the distance at
    which two real samples of this size differ."""
    folder = tmp_path / "mp4"
    folder.mkdir()
    for i, video in enumerate(clips[:8]):
        write_video(str(folder / f"video_{i:02d}.mp4"), video[:FRAMES])
    (folder / "broken.mp4").write_bytes(os.urandom(2000))
    write_video(str(folder / "short.mp4"), clips[0, :3])
    np.savez(tmp_path / "clips.npz", videos=clips[:8, :FRAMES])
    result = run_module(
        "dvd_gan.evaluate", f"--real={tmp_path / 'clips.npz'}", f"--fake={folder}",
        "--metrics=fvd,kvd", f"--cache_dir={tmp_path / 'cache'}", "--batch_size=16",
    )  # fmt: skip
    report = json.loads(result.stdout)
    skipped = {entry["name"]: entry["reason"] for entry in report["skipped"]["fake"]}
    assert skipped == {"broken.mp4": "corrupt", "short.mp4": "too_short"}
    assert "skipped fake video broken.mp4" in result.stderr
    assert report["clips"] == {"real": 8, "fake": 8}
    assert report["protocol"]["fvd"]["frames"] == FRAMES
    other = extractor(clips[8:16, :FRAMES])["logits"]
    same = extractor(clips[:8, :FRAMES])["logits"]
    between_real = metrics.frechet_distance(
        metrics.FeatureStatistics.of(same), metrics.FeatureStatistics.of(other)
    )
    assert 0 <= report["fvd"] < 0.1 * between_real, (report["fvd"], between_real)
    too_many = run_module(
        "dvd_gan.evaluate", f"--real={tmp_path / 'clips.npz'}", f"--fake={folder}",
        "--num_videos=9", f"--cache_dir={tmp_path / 'cache'}", check=False,
    )  # fmt: skip
    assert too_many.returncode == 1
    assert "gave 8 usable fake clips" in too_many.stderr and "Traceback" not in too_many.stderr


def test_fingerprints_follow_every_parameter_and_the_weights(tmp_path):
    weights = i3d.weights_path()
    base = protocols.resolve("fvd2048_16f")
    assert protocols.fingerprint(base, weights) == protocols.fingerprint(
        protocols.resolve("fvd2048_16f"), weights
    )
    # The name plays no part: the same parameters reached another way are the same protocol.
    same = protocols.resolve(
        "fvd_16f",
        num_videos=2048,
        real_clip_start="random",
        i3d_resize="half_pixel_bilinear",
    )
    assert protocols.fingerprint(same, weights) == protocols.fingerprint(base, weights)
    changes = {
        "num_frames": 17,
        "frame_stride": 2,
        "num_videos": 1024,
        "real_clip_start": "first",
        "fake_clip_start": "random",
        "subset": "random",
        "resolution": 64,
        "i3d_resize": "tf1_bilinear",
    }
    prints = {protocols.fingerprint(base, weights)}
    for field, value in changes.items():
        prints.add(
            protocols.fingerprint(protocols.resolve("fvd2048_16f", **{field: value}), weights)
        )
    assert len(prints) == len(changes) + 1
    other_weights = tmp_path / "weights.ckpt"
    shutil.copy(weights, other_weights)
    with open(other_weights, "ab") as f:
        f.write(b"\0")
    assert protocols.fingerprint(base, str(other_weights)) not in prints
    with pytest.raises(ValueError, match="fvd2048_16f"):
        protocols.resolve("fvd2048")


@pytest.mark.slow
def test_real_features_are_cached_per_fingerprint(clips, extractor, tmp_path):
    np.savez(tmp_path / "real.npz", videos=clips[:4])
    np.savez(tmp_path / "fake.npz", videos=clips[4:8])
    cache = tmp_path / "cache"
    first = scoring.score(
        _scorer(tmp_path / "real.npz", tmp_path / "fake.npz", extractor, cache, num_frames=FRAMES)
    )
    assert len(list(cache.iterdir())) == 1
    again = scoring.score(
        _scorer(tmp_path / "real.npz", tmp_path / "fake.npz", extractor, cache, num_frames=FRAMES)
    )
    assert again["fvd"] == first["fvd"] and len(list(cache.iterdir())) == 1
    # The cache is read, not recomputed: altered cached features change the score.
    (path,) = cache.iterdir()
    with np.load(path) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["logits"] = arrays["logits"] + 1.0
    np.savez(path, **arrays)
    altered = scoring.score(
        _scorer(tmp_path / "real.npz", tmp_path / "fake.npz", extractor, cache, num_frames=FRAMES)
    )
    assert altered["fvd"] != first["fvd"]
    # Another fingerprint (another clip start) is computed anew into its own file.
    other = scoring.score(
        _scorer(
            tmp_path / "real.npz",
            tmp_path / "fake.npz",
            extractor,
            cache,
            num_frames=FRAMES,
            real_clip_start="first",
        )
    )
    assert len(list(cache.iterdir())) == 2
    assert other["protocol"]["fvd"]["fingerprint"] != first["protocol"]["fvd"]["fingerprint"]


@pytest.mark.slow
def test_runs_have_error_bars_and_their_mean_is_that_of_single_runs(clips, extractor, tmp_path):
    np.savez(tmp_path / "real.npz", videos=clips[:8])
    np.savez(tmp_path / "fake.npz", videos=clips[8:16])
    fields = {
        "num_frames": FRAMES,
        "num_videos": 4,
        "subset": "random",
        "real_clip_start": "random",
    }
    measured = ("fvd", "kvd")

    def scorer():
        return _scorer(
            tmp_path / "real.npz", tmp_path / "fake.npz", extractor, tmp_path / "cache",
            measured=measured, **fields,
        )  # fmt: skip

    three = scoring.score(scorer(), seed=5, num_runs=3)
    singles = [scoring.score(scorer(), seed=seed) for seed in (5, 6, 7)]
    for name in measured:
        assert three[f"{name}_runs_std"] > 0
        np.testing.assert_allclose(three[name], np.mean([s[name] for s in singles]), rtol=1e-12)
        assert [run[name] for run in three["runs"]] == [s[name] for s in singles]
    assert [run["seed"] for run in three["runs"]] == [5, 6, 7]
    assert three["protocol"]["fvd"]["num_runs"] == 3


@pytest.mark.slow
def test_kernel_distance_is_unbiased_and_orders_distances(extractor, clips):
    rng = np.random.default_rng(0)
    population = rng.normal(size=(4000, 16)) * 3.0
    a, b = population[:2000], population[2000:]
    shifted = population[:2000] + 1.0
    same, moved = metrics.kernel_distance(a, b), metrics.kernel_distance(shifted, b)
    assert abs(same) < 0.02 * moved, (same, moved)
    black = extractor(np.zeros((8, FRAMES, 32, 32, 3), np.uint8))["logits"]
    white = extractor(np.full((8, FRAMES, 32, 32, 3), 255, np.uint8))["logits"]
    real = extractor(clips[:16, :FRAMES])["logits"]
    black_white = metrics.kernel_distance(black, white)
    real_real = metrics.kernel_distance(real[:8], real[8:])
    assert black_white > 0 and black_white > 10 * abs(real_real), (black_white, real_real)


def test_a_tfds_source_under_dvd_gan_takes_the_eval_pipelines_clips(mnist_data_dir):
    """So `--real=tfds:...` with a run's frames, stride and resolution scores against the
    very clips `--workdir` evaluation does, under the same fingerprint."""
    config = tiny_config(resolution=32, num_frames=6)
    config.data.data_dir = mnist_data_dir
    pipeline_clips = features.real_videos(config.data, "test", 8)
    source = video_sources.open_source("tfds:moving_mnist_local/small:test", mnist_data_dir)
    protocol = protocols.resolve(
        "dvd_gan", num_frames=6, frame_stride=config.data.frame_stride, resolution=32
    )
    clips = video_sources.iterate_clips(source, protocol, "real", 0, 6, 8, [])
    np.testing.assert_array_equal(np.stack(list(clips)), pipeline_clips)
