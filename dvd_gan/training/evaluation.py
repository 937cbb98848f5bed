"""Evaluation of a run's EMA generator: videos generated with a fixed seed, against the
first real clips of a split (cached statistics), with the metrics' full protocol."""

import ml_collections
import numpy as np

from dvd_gan.data.pipeline import scale_to_unit_range, tfds_name
from dvd_gan.evaluation import features as features_lib
from dvd_gan.evaluation import video_metrics
from dvd_gan.training import sampling


def generate_videos(
    config: ml_collections.ConfigDict,
    sampler,
    ema_params,
    g_vars,
    num_videos: int,
    seed: int,
    batch_size: int,
    conditioning_clips: np.ndarray | None = None,
) -> np.ndarray:
    """uint8 [N, T, H, W, 3] from the EMA generator: z from `seed`, classes in turn; in
    DVD-GAN-FP the first C frames are the real conditioning frames."""
    z, labels = sampling.sample_inputs(config, num_videos, seed)
    c = config.model.num_conditioning_frames
    videos = []
    for start in range(0, num_videos, batch_size):
        part = slice(start, start + batch_size)
        conditioning = None
        if c:
            conditioning = scale_to_unit_range(conditioning_clips[part, :c])
        videos.append(np.asarray(sampler(ema_params, g_vars, z[part], labels[part], conditioning)))
    generated = np.concatenate(videos)
    if c:
        generated = np.concatenate([conditioning_clips[:num_videos, :c], generated], axis=1)
    return generated


def evaluate_generator(
    config: ml_collections.ConfigDict,
    ema_params,
    g_vars,
    *,
    metrics: tuple[str, ...],
    num_videos: int,
    split: str,
    extractor: features_lib.I3DFeatures | None,
    c3d=None,
    seed: int = 0,
) -> dict:
    """The metrics of `num_videos` generated videos against `split` (see video_metrics)."""
    needs_real = bool({"fvd", "fid"} & set(metrics))
    conditioning = None
    if config.model.num_conditioning_frames:
        conditioning = features_lib.real_videos(config.data, split, num_videos)
    fake = generate_videos(
        config,
        sampling.make_sampler(config),
        ema_params,
        g_vars,
        num_videos,
        seed,
        config.eval.batch_size,
        conditioning,
    )
    real = None
    if needs_real:
        real = features_lib.real_statistics(
            config.data, split, num_videos, extractor, config.eval.stats_dir
        )
    protocol = {
        "dataset": tfds_name(config.data),
        "split": split,
        "stride": config.data.frame_stride,
        "generator": "EMA",
        "seed": seed,
    }
    return video_metrics.compute(fake, metrics, extractor, real, c3d, protocol)
