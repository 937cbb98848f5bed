"""Metrics that know the right answer, for the embedded Moving MNIST's one-digit clips
(`moving_mnist_local/single`): the dataset's counterpart of the paper's I3D and C3D
classifiers.

A small CNN, trained in seconds on the frames of the dataset's training clips at the run's
resolution and cached like the real I3D features, says which digit each frame shows. With
it and the digit's centre of mass:

- `class_accuracy` (class-conditional runs): the fraction of clips whose frames, their
  log-probabilities summed, are assigned the class G was asked for; also per class;
  `position_spread` says how far apart different z put a class's digits;
- `identity_consistency`: the fraction of clips whose every frame gets the same class (a
  digit that turns into another fails);
- `identity_kept` (DVD-GAN-FP runs): the fraction of clips whose generated frames are
  assigned the class of their conditioning frames;
- `position_error` (DVD-GAN-FP runs): per predicted frame, the mean distance in pixels
  between the digit's centre of mass and the real continuation's, beside two baselines on
  the same clips: the last conditioning frame copied, and the last two conditioning frames'
  velocity kept (a straight line: it does not know the digit bounces).
"""

import hashlib
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from etils import epath
from flax import traverse_util

from dvd_gan.evaluation import features as features_lib

METRICS = ("class_accuracy", "identity_consistency", "identity_kept", "position_error")
CONDITIONAL_METRICS = ("class_accuracy",)
PREDICTION_METRICS = ("identity_kept", "position_error")
NUM_CLASSES = 10
# Pixels at or below this grey level do not count towards the centre of mass, so that a
# generator's faint background does not pull every centre towards the middle of the frame.
MASS_THRESHOLD = 64
# How the classifier is trained: part of its cache key, so a change retrains it.
RECIPE = dict(
    train_clips=10000, steps=2000, batch_size=128, learning_rate=2e-3, weight_decay=1e-4, seed=0
)
MIN_TEST_ACCURACY = 0.97


class DigitCNN(nn.Module):
    """Grey crops [N, S, S, 1] in [-1, 1], centred on the digit -> logits [N, 10]."""

    @nn.compact
    def __call__(self, x):
        for features in (32, 64):
            x = nn.relu(nn.Conv(features, (3, 3))(x))
            x = nn.avg_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(128, (3, 3))(x))
        return nn.Dense(NUM_CLASSES)(x.reshape(x.shape[0], -1))


def crop_size(resolution: int) -> int:
    """Side of the square crop around a digit: a digit is 28/64 of the frame, plus a margin,
    rounded up to a multiple of 4 (the CNN pools twice)."""
    return 4 * -(-(resolution * 28 // 64 + 2) // 4)


def digit_crops(videos) -> np.ndarray:
    """uint8 videos [N, T, H, W, 3] -> grey crops [N * T, S, S, 1] in [-1, 1], each centred
    on its frame's centre of mass (zeros beyond the frame): the classifier then sees every
    digit in one place, wherever it moves."""
    videos = np.asarray(videos)
    n, t, h, w = videos.shape[:4]
    size = crop_size(h)
    grey = videos.astype(np.float32).mean(axis=-1).reshape(n * t, h, w)
    padded = np.pad(grey, ((0, 0), (size, size), (size, size)))
    centres = np.round(centres_of_mass(videos).reshape(n * t, 2)).astype(np.int64)
    corners = centres + size - size // 2
    rows = corners[:, 0, None] + np.arange(size)
    cols = corners[:, 1, None] + np.arange(size)
    crops = padded[np.arange(n * t)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return (crops / 127.5 - 1.0)[..., None].astype(np.float32)


def check_supported(data_config: ml_collections.ConfigDict):
    """Raises ValueError unless the run's data are one labelled digit per clip."""
    if data_config.dataset != "moving_mnist_local" or not str(
        data_config.builder_config
    ).startswith("single"):
        raise ValueError(
            f"the digit metrics ({', '.join(METRICS)}) need one labelled digit per clip "
            f"(moving_mnist_local/single); this run's data is {data_config.dataset}/"
            f"{data_config.builder_config}."
        )


def _labelled_frames(data_config, split: str, num_clips: int):
    """Crops [N * T, S, S, 1] of the frames of the first `num_clips` clips of `split` (four
    frames, 5 apart, of each) and each crop's label [N * T]."""
    from dvd_gan.data.pipeline import open_source

    spread = ml_collections.ConfigDict(data_config.to_dict())
    spread.num_frames, spread.frame_stride = 4, 5
    num_clips = min(num_clips, len(open_source(spread, split)[1]))  # a small split: all of it
    clips = features_lib.real_clips(spread, split, num_clips)
    num_frames = clips["videos"].shape[1]
    return digit_crops(clips["videos"]), np.repeat(clips["labels"], num_frames)


def _train(data_config) -> dict:
    """{'params/...': arrays, 'test_accuracy': ()} of a classifier trained on the training
    split's frames and scored on the held-out split's."""
    frames, labels = _labelled_frames(data_config, data_config.train_split, RECIPE["train_clips"])
    model = DigitCNN()
    key = jax.random.key(RECIPE["seed"])
    params = model.init(key, frames[:1])["params"]
    schedule = optax.cosine_decay_schedule(RECIPE["learning_rate"], RECIPE["steps"])
    tx = optax.adamw(schedule, weight_decay=RECIPE["weight_decay"])
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(RECIPE["seed"])
    for i in range(RECIPE["steps"]):
        rows = rng.integers(0, len(frames), RECIPE["batch_size"])
        params, opt_state, loss = step(params, opt_state, frames[rows], labels[rows])
        if i % 500 == 0:
            logging.info("Digit classifier: step %d, loss %.3f", i, float(loss))
    flat = {
        f"params/{'/'.join(k)}": np.asarray(v)
        for k, v in traverse_util.flatten_dict(params).items()
    }
    classifier = DigitClassifier(flat, 0.0)
    test_frames, test_labels = _labelled_frames(data_config, data_config.eval_split, 1000)
    accuracy = float(np.mean(classifier.frame_classes(test_frames) == test_labels))
    return {**flat, "test_accuracy": np.asarray(accuracy)}


class DigitClassifier:
    """Which digit each frame shows: `log_probs(videos)` -> [N, T, 10]. `test_accuracy` is
    its accuracy on the frames of the held-out split's first 1,000 clips."""

    def __init__(self, flat_params: dict, test_accuracy: float):
        self.params = traverse_util.unflatten_dict(
            {tuple(k.split("/")[1:]): jnp.asarray(v) for k, v in flat_params.items()}
        )
        self.test_accuracy = test_accuracy
        digest = hashlib.sha1()
        for name in sorted(flat_params):
            digest.update(name.encode())
            digest.update(np.asarray(flat_params[name]).tobytes())
        self.digest = digest.hexdigest()[:16]
        self._apply = jax.jit(lambda p, x: jax.nn.log_softmax(DigitCNN().apply({"params": p}, x)))

    @classmethod
    def for_data(cls, data_config: ml_collections.ConfigDict, cache_dir: str | None = None):
        """The classifier of a run's data: read from the cache, or trained and cached."""
        check_supported(data_config)
        from dvd_gan.data.pipeline import tfds_name

        key = {
            "classifier": "DigitCNN",
            "dataset": tfds_name(data_config),
            "data_dir": data_config.data_dir,
            "train_split": data_config.train_split,
            "eval_split": data_config.eval_split,
            "resolution": data_config.resolution,
            "num_frames": data_config.num_frames,
            "recipe": RECIPE,
        }
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        name = f"{tfds_name(data_config).replace('/', '_')}-digit-classifier-{digest}.npz"
        path = epath.Path(cache_dir or features_lib.DEFAULT_STATS_DIR) / name
        arrays = features_lib.cached_features(path, key, lambda: _train(data_config))
        accuracy = float(arrays.pop("test_accuracy"))
        logging.info("Digit classifier: %.2f%% of held-out test frames right.", 100 * accuracy)
        return cls(arrays, accuracy)

    def frame_classes(self, frames: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Crops [M, S, S, 1] (`digit_crops`) -> the class of each [M]."""
        return np.argmax(self._log_probs(frames, batch_size), axis=-1)

    def _log_probs(self, frames: np.ndarray, batch_size: int) -> np.ndarray:
        parts = [
            np.asarray(self._apply(self.params, frames[i : i + batch_size]))
            for i in range(0, len(frames), batch_size)
        ]
        return np.concatenate(parts)

    def log_probs(self, videos: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """uint8 videos [N, T, H, W, 3] -> log-probabilities [N, T, 10] of each frame."""
        n, t = videos.shape[:2]
        return self._log_probs(digit_crops(videos), batch_size).reshape(n, t, NUM_CLASSES)

    def protocol(self) -> dict:
        """What the digit metrics depend on, with a fingerprint of it all."""
        record = {
            "classifier": "DigitCNN (3 convolutions) on a crop centred on the digit, trained "
            "on the run's training frames at its resolution",
            "classifier_digest": self.digest,
            "classifier_test_accuracy": self.test_accuracy,
            "recipe": RECIPE,
            "clip_class": "argmax of the frames' summed log-probabilities",
            "centre_of_mass": f"grey levels above {MASS_THRESHOLD}, in pixels of the frames",
        }
        text = json.dumps(record, sort_keys=True)
        return {**record, "fingerprint": hashlib.sha1(text.encode()).hexdigest()[:16]}


# -- metrics of log-probabilities [N, T, 10] and videos [N, T, H, W, 3]


def clip_classes(log_probs: np.ndarray) -> np.ndarray:
    """[N, T, 10] -> the class of each clip [N]: its frames' log-probabilities summed."""
    return np.argmax(log_probs.sum(axis=1), axis=-1)


def class_accuracy(log_probs: np.ndarray, labels: np.ndarray) -> tuple[float, dict]:
    """(fraction of clips assigned their label, {class: the same per class})."""
    right = clip_classes(log_probs) == np.asarray(labels)
    per_class = {str(int(k)): float(np.mean(right[labels == k])) for k in np.unique(labels)}
    return float(np.mean(right)), per_class


def identity_consistency(log_probs: np.ndarray) -> float:
    """Fraction of clips whose every frame gets the same class."""
    classes = np.argmax(log_probs, axis=-1)
    return float(np.mean(np.all(classes == classes[:, :1], axis=1)))


def identity_kept(log_probs: np.ndarray, num_conditioning: int) -> float:
    """Fraction of clips whose generated frames get the class of their conditioning frames."""
    given = clip_classes(log_probs[:, :num_conditioning])
    generated = clip_classes(log_probs[:, num_conditioning:])
    return float(np.mean(given == generated))


def centres_of_mass(videos: np.ndarray) -> np.ndarray:
    """uint8 videos [N, T, H, W, 3] -> the digit's centre (y, x) in each frame [N, T, 2],
    weighting grey levels above MASS_THRESHOLD; the frame's centre for an empty frame."""
    grey = np.asarray(videos, np.float64).mean(axis=-1)
    mass = np.maximum(grey - MASS_THRESHOLD, 0.0)
    h, w = grey.shape[-2:]
    total = mass.sum(axis=(-2, -1))
    ys = (mass.sum(axis=-1) * np.arange(h)).sum(axis=-1)
    xs = (mass.sum(axis=-2) * np.arange(w)).sum(axis=-1)
    safe = np.maximum(total, 1e-9)
    centre = np.stack([ys / safe, xs / safe], axis=-1)
    empty = (total <= 0)[..., None]
    return np.where(empty, np.array([(h - 1) / 2, (w - 1) / 2]), centre)


def position_errors(generated: np.ndarray, real: np.ndarray, num_conditioning: int) -> dict:
    """Mean distance [T - C] in pixels, per predicted frame, between the digit's centre of
    mass in `generated` and in `real` (both uint8 [N, T, H, W, 3], conditioning frames
    first), and the same for the two baselines computed from `real`'s conditioning frames."""
    c = num_conditioning
    truth = centres_of_mass(real)
    horizon = np.arange(1, real.shape[1] - c + 1)[None, :, None]
    last = truth[:, c - 1 : c]
    predictions = {
        "position_error": centres_of_mass(generated[:, c:]),
        "position_error_copy_last": np.broadcast_to(last, truth[:, c:].shape),
    }
    if c >= 2:
        velocity = last - truth[:, c - 2 : c - 1]
        predictions["position_error_constant_velocity"] = last + horizon * velocity
    return {
        name: np.linalg.norm(predicted - truth[:, c:], axis=-1).mean(axis=0)
        for name, predicted in predictions.items()
    }


def position_spread(videos: np.ndarray, labels: np.ndarray) -> float:
    """How far apart the clips of one class put their digit: the standard deviation over a
    class's clips of the centre of mass, in pixels, averaged over frames, both axes and
    classes (0 when every z of a class draws the same path)."""
    centres = centres_of_mass(videos)
    spreads = [centres[labels == k].std(axis=0).mean() for k in np.unique(labels)]
    return float(np.mean(spreads))


def check_metrics(metrics, config: ml_collections.ConfigDict):
    """Raises ValueError, in one line that says why, unless the run can give `metrics`."""
    check_supported(config.data)
    if set(CONDITIONAL_METRICS) & set(metrics) and not config.model.num_classes:
        raise ValueError(
            "class_accuracy needs a class-conditional run (model.num_classes > 0); this one is "
            "unconditional."
        )
    if set(PREDICTION_METRICS) & set(metrics) and not config.model.num_conditioning_frames:
        raise ValueError(
            "identity_kept and position_error need a DVD-GAN-FP run "
            "(data.num_conditioning_frames > 0)."
        )


def compute(
    metrics,
    classifier: DigitClassifier,
    generated: np.ndarray,
    labels: np.ndarray | None,
    real: np.ndarray,
    real_labels: np.ndarray,
    num_conditioning: int,
) -> dict:
    """The digit metrics among `metrics` of uint8 `generated` [N, T, H, W, 3] (conditioning
    frames first in DVD-GAN-FP; asked-for `labels` [N] of a class-conditional G) against
    `real` clips [N, T, H, W, 3] with their labels, each beside its value on real clips
    where that is a reference."""
    wanted = [m for m in METRICS if m in metrics]
    result = {}
    fake_log_probs = classifier.log_probs(generated)
    real_log_probs = classifier.log_probs(real)
    if "class_accuracy" in wanted:
        result["class_accuracy"], result["class_accuracy_per_class"] = class_accuracy(
            fake_log_probs, labels
        )
        result["class_accuracy_real"] = class_accuracy(real_log_probs, real_labels)[0]
        result["position_spread"] = position_spread(generated, labels)
        result["position_spread_real"] = position_spread(real, real_labels)
    if "identity_consistency" in wanted:
        c = num_conditioning
        result["identity_consistency"] = identity_consistency(fake_log_probs[:, c:])
        result["identity_consistency_real"] = identity_consistency(real_log_probs[:, c:])
    if "identity_kept" in wanted:
        result["identity_kept"] = identity_kept(fake_log_probs, num_conditioning)
        result["identity_kept_real"] = identity_kept(real_log_probs, num_conditioning)
    if "position_error" in wanted:
        errors = position_errors(generated, real, num_conditioning)
        for name, per_frame in errors.items():
            result[name] = float(per_frame[-1])  # at the last predicted frame
            result[f"{name}_per_frame"] = [float(e) for e in per_frame]
    return result
