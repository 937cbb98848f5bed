"""What class-conditional and DVD-GAN-FP runs write, on one-digit Moving MNIST: the loop's
sample grids, the sample command's clips and pictures, and the evaluation's digit metrics."""

import functools
import json

import av
import numpy as np
import pytest
from conftest import run_module
from PIL import Image

from dvd_gan.evaluation.features import real_clips
from dvd_gan.generation import sampling, standing_stats
from dvd_gan.pixels import scale_to_unit_range
from dvd_gan.training.checkpointing import load_config, restore_generator

# Each test needs a subprocess training of its mode, and most another command on top.
pytestmark = pytest.mark.slow


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@functools.cache
def _generator(workdir: str):
    """The run's newest checkpoint, restored in this process: its EMA weights, G's
    variables with the EMA generator's standing statistics and with the raw generator's,
    and a sampler."""
    config, step, ema, g_vars = restore_generator(workdir)
    standing = standing_stats.StandingStatistics(config)(
        ema,
        g_vars,
        standing_stats.standing_key(config, step),
        standing_stats.real_conditioning(config),
    )
    return ema, standing, g_vars, sampling.make_sampler(config)


def _sampled_here(workdir, z, labels, conditioning=None) -> tuple[np.ndarray, np.ndarray]:
    """G's clips uint8 [N, T', H, W, 3] for z and labels (and DVD-GAN-FP's conditioning
    frames [N, C, H, W, 3] in [-1, 1]), sampled in this process with the standing
    statistics and with the raw ones."""
    ema, standing, raw, sampler = _generator(str(workdir))
    return tuple(np.asarray(sampler(ema, v, z, labels, conditioning)) for v in (standing, raw))


def _assert_standing(made, standing, raw):
    """`made` is G's output with its standing statistics, not with the raw ones: equal up to
    a rounding step in a few pixels (another batch size), where the raw statistics move
    most pixels."""
    difference = np.abs(made.astype(int) - standing)
    assert difference.max() <= 1 and np.mean(difference > 0) < 0.01
    assert np.mean(made != raw) > 0.2


def test_prediction_loop_grids_show_the_real_conditioning_frames(prediction_workdir):
    """The loop's sample grid: each row a held-out clip's 2 real frames (outlined in red),
    then G's 2. A grid whose conditioning frames were scaled to [-1, 1] twice is black."""
    config = load_config(str(prediction_workdir))
    grid = _png(prediction_workdir / "samples" / "step_0000001.png")
    real = real_clips(config.data, config.data.eval_split, 4)["videos"]
    shown = sampling.enlarge(real)  # 16x16 frames shown 4x enlarged: 64x64
    size, border = shown.shape[2], 4
    assert grid.shape == (4 * (size + 1) - 1, 4 * (size + 1) - 1, 3)
    for i in range(4):
        for t in range(2):
            y, x = i * (size + 1), t * (size + 1)
            cell = grid[y : y + size, x : x + size]
            inner = np.s_[border:-border, border:-border]
            np.testing.assert_array_equal(cell[inner], shown[i, t][inner])
            np.testing.assert_array_equal(cell[0, size // 2], [255, 0, 0])
        assert grid[y, 2 * (size + 1) + size // 2].tolist() != [255, 0, 0]  # G's: not outlined
    z, labels = sampling.sample_inputs(config, 4, config.seed)
    conditioning = scale_to_unit_range(real[:, :2])
    grids = [
        sampling.sample_grids(v, np.asarray(labels), 0, conditioning).frames
        for v in _sampled_here(prediction_workdir, z, labels, conditioning)
    ]
    _assert_standing(_png(prediction_workdir / "samples" / "step_0000002.png"), *grids)


def test_prediction_samples_hold_the_real_clips(prediction_workdir, tmp_path):
    run_module(
        "dvd_gan.sample",
        f"--workdir={prediction_workdir}",
        f"--output={tmp_path / 'p.npz'}",
        "--num_videos=4",
    )
    samples = np.load(tmp_path / "p.npz")
    config = load_config(str(prediction_workdir))
    real = real_clips(config.data, "test", 4)["videos"]
    assert int(samples["num_conditioning"]) == 2
    z, labels = sampling.sample_inputs(config, 4, 0)
    conditioning = scale_to_unit_range(real[:, :2])
    generated = _sampled_here(prediction_workdir, z, labels, conditioning)
    _assert_standing(samples["videos"][:, 2:], *generated)
    np.testing.assert_array_equal(samples["real"], real)
    np.testing.assert_array_equal(samples["videos"][:, :2], real[:, :2])
    assert samples["videos"].shape == real.shape
    run_module(
        "dvd_gan.sample",
        f"--workdir={prediction_workdir}",
        f"--output={tmp_path / 'p.png'}",
        "--num_videos=4",
    )
    grid = _png(tmp_path / "p.png")  # a row per clip: each real clip above its prediction
    assert grid.shape == (8 * 65 - 1, 4 * 65 - 1, 3)
    shown = sampling.enlarge(real)
    for i in range(4):
        for t in range(4):
            y, x = 2 * i * 65, t * 65
            np.testing.assert_array_equal(grid[y : y + 64, x : x + 64], shown[i, t])


def test_conditional_grids_and_samples_go_by_class(conditional_workdir, tmp_path):
    with av.open(str(conditional_workdir / "samples" / "step_0000002.gif")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape[:2] == (10 * 65 - 1, 2 * 65 - 1)  # a row per class, a column per z
    config = load_config(str(conditional_workdir))
    z, labels = sampling.sample_inputs(config, 20, config.seed)
    grids = [
        sampling.sample_grids(v, np.asarray(labels), 10).frames
        for v in _sampled_here(conditional_workdir, z, labels)
    ]
    _assert_standing(_png(conditional_workdir / "samples" / "step_0000002.png"), *grids)
    z, labels = sampling.sample_inputs(config, 6, 0)
    for flags, expected in (([], np.arange(6) % 10), (["--class_id=3"], np.full(6, 3))):
        output = tmp_path / f"c{len(flags)}.npz"
        run_module(
            "dvd_gan.sample",
            f"--workdir={conditional_workdir}",
            f"--output={output}",
            "--num_videos=6",
            *flags,
        )
        np.testing.assert_array_equal(np.load(output)["labels"], expected)
    _assert_standing(
        np.load(tmp_path / "c0.npz")["videos"], *_sampled_here(conditional_workdir, z, labels)
    )


def _evaluate(workdir, metrics, check=True):
    result = run_module(
        "dvd_gan.evaluate",
        f"--workdir={workdir}",
        f"--metrics={metrics}",
        "--num_videos=8",
        "--batch_size=4",
        check=check,
    )
    return result if not check else json.loads(result.stdout.strip().splitlines()[-1])


def test_evaluate_reports_prediction_metrics_beside_baselines(prediction_workdir):
    result = _evaluate(prediction_workdir, "identity_kept,position_error,identity_consistency")
    for name in ("position_error", "position_error_copy_last", "position_error_constant_velocity"):
        assert len(result[f"{name}_per_frame"]) == 2
        assert result[name] == result[f"{name}_per_frame"][-1]
    assert 0 <= result["identity_kept"] <= 1 and 0 <= result["identity_consistency"] <= 1
    protocols = result["protocol"]
    assert protocols["position_error"]["fingerprint"] == protocols["identity_kept"]["fingerprint"]
    assert protocols["identity_kept"]["classifier_test_accuracy"] > 0.5
    saved = json.loads((prediction_workdir / "eval" / "step_0000002.json").read_text())
    assert saved["position_error_per_frame"] == result["position_error_per_frame"]


def test_evaluate_reports_class_accuracy_per_class(conditional_workdir, smoke_workdir):
    result = _evaluate(conditional_workdir, "class_accuracy,identity_consistency")
    assert set(result["class_accuracy_per_class"]) == {str(k) for k in range(8)}  # 8 videos
    assert 0 <= result["class_accuracy"] <= 1 and result["class_accuracy_real"] >= 0.5
    refused = _evaluate(smoke_workdir, "class_accuracy", check=False)
    assert refused.returncode != 0
    assert "moving_mnist_local/single" in refused.stderr.strip().splitlines()[-1]
