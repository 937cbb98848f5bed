"""The one-digit Moving MNIST, and the digit classifier and the metrics it gives."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import prepare

from configs import moving_mnist as moving_mnist_configs
from dvd_gan.data import moving_mnist
from dvd_gan.evaluation import digits, pixel_statistics
from dvd_gan.evaluation.features import real_clips


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


@pytest.mark.slow
def test_classifier_is_right_on_97_percent_of_held_out_frames(
    classifier, data_config, classifier_cache
):
    assert classifier.test_accuracy >= 0.97
    cached = digits.DigitClassifier.for_data(data_config, classifier_cache)  # read, not trained
    assert cached.digest == classifier.digest and cached.test_accuracy == classifier.test_accuracy


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_mass_variation_is_zero_for_rigid_motion_and_not_for_a_splitting_digit(test_clips):
    videos, _ = test_clips
    assert pixel_statistics.mass_variation(videos) < 0.01  # one digit, moving, never clipped
    fading = videos.astype(np.float64) * np.linspace(1.0, 0.5, 8)[None, :, None, None, None]
    assert pixel_statistics.mass_variation(fading.astype(np.uint8)) > 0.15
