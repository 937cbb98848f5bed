"""The one-digit Moving MNIST, the digit classifier and the metrics it gives, and what the
class-conditional and DVD-GAN-FP runs write: the loop's grids, samples and evaluation."""

import json

import av
import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import prepare, run_module
from PIL import Image

from configs import moving_mnist as moving_mnist_configs
from dvd_gan.data import moving_mnist
from dvd_gan.evaluation import digits, pixel_statistics
from dvd_gan.evaluation.features import real_clips
from dvd_gan.training import sampling
from dvd_gan.training.checkpointing import load_config


@pytest.fixture(scope="module")
def single_dir(tmp_path_factory):
    """The whole moving_mnist_local/single (10,000 train and 1,000 test clips)."""
    path = str(tmp_path_factory.mktemp("tfds_single_full"))
    prepare("moving_mnist_local/single", path)
    return path


@pytest.fixture(scope="module")
def data_config(single_dir):
    """The conditional job's data: 8 frames at 32x32."""
    config = moving_mnist_configs.get_config("conditional").data
    config.data_dir = single_dir
    return config


@pytest.fixture(scope="module")
def classifier_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("digit_classifier"))


@pytest.fixture(scope="module")
def classifier(data_config, classifier_cache):
    return digits.DigitClassifier.for_data(data_config, classifier_cache)


@pytest.fixture(scope="module")
def test_clips(data_config):
    """The first 200 held-out clips, uint8 [200, 8, 32, 32, 3], and their labels."""
    clips = real_clips(data_config, "test", 200)
    return clips["videos"], clips["labels"]


def _signature(image: np.ndarray) -> bytes:
    """A digit's sorted non-zero grey levels: the same wherever it is drawn alone."""
    return np.sort(image[image > 0]).tobytes()


def test_single_digit_clips_are_labelled_and_splits_share_no_digit(single_digit_data_dir):
    images, labels = moving_mnist.load_digits()
    pools = {
        split: {_signature(images[i]) for i in moving_mnist.split_digits(labels, split)}
        for split in ("train", "test")
    }
    builder = tfds.builder("moving_mnist_local/single_small", data_dir=single_digit_data_dir)
    for split, other in (("train", "test"), ("test", "train")):
        source = builder.as_data_source(split)
        seen = set()
        for i in range(len(source)):
            example = source[i]
            assert example["label"] == example["digits"][0]
            signature = _signature(np.asarray(example["video"][0])[..., 0])
            assert signature in pools[split] and signature not in pools[other]
            seen.add(int(example["label"]))
        assert seen == set(range(10))


def test_classifier_is_right_on_97_percent_of_held_out_frames(
    classifier, data_config, classifier_cache
):
    assert classifier.test_accuracy >= 0.97
    cached = digits.DigitClassifier.for_data(data_config, classifier_cache)  # read, not trained
    assert cached.digest == classifier.digest and cached.test_accuracy == classifier.test_accuracy


def test_class_accuracy_knows_the_class_of_real_clips(classifier, test_clips):
    videos, labels = test_clips
    log_probs = classifier.log_probs(videos)
    accuracy, per_class = digits.class_accuracy(log_probs, labels)
    assert accuracy >= 0.97 and set(per_class) == {str(k) for k in range(10)}
    assert min(per_class.values()) >= 0.8
    wrong, _ = digits.class_accuracy(log_probs, (labels + 1) % 10)
    assert wrong <= 0.05


def _swap_second_half(videos, labels, start):
    """Clips whose frames from `start` on come from a clip of another class."""
    partner = np.array([np.flatnonzero(labels != label)[0] for label in labels])
    return np.concatenate([videos[:, :start], videos[partner, start:]], axis=1)


def test_a_digit_that_changes_class_fails_identity_metrics(classifier, test_clips):
    videos, labels = test_clips
    real = classifier.log_probs(videos)
    morphed = classifier.log_probs(_swap_second_half(videos, labels, 4))
    assert digits.identity_consistency(real) >= 0.85
    assert digits.identity_consistency(morphed) <= 0.05
    assert digits.identity_kept(real, 2) >= 0.95
    assert (
        digits.identity_kept(classifier.log_probs(_swap_second_half(videos, labels, 2)), 2) <= 0.05
    )


def test_position_error_is_zero_for_the_real_continuation_and_a_frozen_clip_copies(test_clips):
    videos, _ = test_clips
    errors = digits.position_errors(videos, videos, 2)
    np.testing.assert_array_equal(errors["position_error"], np.zeros(6))
    frozen = np.concatenate([videos[:, :2], np.repeat(videos[:, 1:2], 6, axis=1)], axis=1)
    errors = digits.position_errors(frozen, videos, 2)
    np.testing.assert_allclose(errors["position_error"], errors["position_error_copy_last"])
    # Digits move ~1.8 pixels a frame at 32x32: copying falls further behind every frame,
    # and keeping the velocity is the better guess until the digits bounce.
    assert np.all(np.diff(errors["position_error_copy_last"]) > 0)
    assert np.all(errors["position_error_constant_velocity"] < errors["position_error_copy_last"])


def test_centre_of_mass_of_a_known_frame():
    frame = np.zeros((1, 1, 32, 32, 3), np.uint8)
    frame[0, 0, 10, 20] = 255
    frame[0, 0, 12, 20] = 255
    frame[0, 0, 0, 0] = digits.MASS_THRESHOLD  # at the threshold: no mass
    np.testing.assert_allclose(digits.centres_of_mass(frame)[0, 0], [11.0, 20.0])
    np.testing.assert_allclose(digits.centres_of_mass(frame * 0)[0, 0], [15.5, 15.5])


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


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


def test_mass_variation_is_zero_for_rigid_motion_and_not_for_a_splitting_digit(test_clips):
    videos, _ = test_clips
    assert pixel_statistics.mass_variation(videos) < 0.01  # one digit, moving, never clipped
    fading = videos.astype(np.float64) * np.linspace(1.0, 0.5, 8)[None, :, None, None, None]
    assert pixel_statistics.mass_variation(fading.astype(np.uint8)) > 0.15
