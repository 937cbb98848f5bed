"""Evaluation of a run's EMA generator: videos generated with a fixed seed, against the
first real clips of a split (cached statistics), with the metrics' full protocol."""

import ml_collections
import numpy as np
from jax.sharding import Mesh

from dvd_gan.data.pipeline import tfds_name
from dvd_gan.evaluation import digits, i3d, pixel_statistics, protocols, video_metrics
from dvd_gan.evaluation import features as features_lib
from dvd_gan.evaluation.data_parallel import DataParallel
from dvd_gan.generation import sampling
from dvd_gan.pixels import scale_to_unit_range


def video_sampler(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> DataParallel:
    """The EMA generator over batches of `config.eval.batch_size`, each split over `mesh`'s
    data axis (default: every device of every process). Each one compiles anew: build it
    once per run."""
    return DataParallel(
        sampling.sample_function(config),
        config.eval.batch_size,
        mesh,
    )


def generate_videos(
    config: ml_collections.ConfigDict,
    sampler: DataParallel,
    ema_params,
    g_vars,
    num_videos: int,
    seed: int,
    conditioning_clips: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, T, H, W, 3] from the EMA generator (a `video_sampler`) and the class each
    was asked for [N]: z from `seed`, classes in turn; in DVD-GAN-FP the first C frames are
    the real conditioning frames."""
    z, labels = sampling.sample_inputs(config, num_videos, seed)
    c = config.model.num_conditioning_frames
    conditioning = None
    if c:
        conditioning = np.asarray(scale_to_unit_range(conditioning_clips[:num_videos, :c]))
    generated = sampler(sampler.place((ema_params, g_vars)), (z, labels, conditioning))
    if c:
        generated = np.concatenate([conditioning_clips[:num_videos, :c], generated], axis=1)
    return generated, np.asarray(labels)


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
    sampler: DataParallel | None = None,
) -> dict:
    """The metrics of `num_videos` generated videos against `split` (see video_metrics).

    Called by every process of a run together (see evaluation/data_parallel.py): `ema_params` and
    `g_vars` are host arrays or arrays on the mesh of `sampler` (default: a new
    `video_sampler`)."""
    needs_real = bool(set(video_metrics.REAL_FEATURE_METRICS) & set(metrics))
    digit_metrics = [name for name in metrics if name in digits.METRICS]
    if digit_metrics:
        digits.check_metrics(digit_metrics, config)
    real_clips = real_labels = None
    if (
        config.model.num_conditioning_frames
        or set(pixel_statistics.STATISTICS) & set(metrics)
        or digit_metrics
    ):
        real = features_lib.real_clips(config.data, split, num_videos)
        real_clips, real_labels = real["videos"], real["labels"]
    conditioning = real_clips if config.model.num_conditioning_frames else None
    fake, labels = generate_videos(
        config, sampler or video_sampler(config), ema_params, g_vars, num_videos, seed, conditioning
    )
    real = None
    if needs_real:
        real = features_lib.real_features(
            config.data, split, num_videos, extractor, config.eval.stats_dir
        )
    record = protocols.describe(
        "dvd_gan",
        protocols.Protocol(
            num_frames=config.data.num_frames,
            frame_stride=config.data.frame_stride,
            num_videos=num_videos,
            resolution=config.data.resolution,
        ),
        i3d.weights_path(),
    )
    protocol = {
        **record,
        "dataset": tfds_name(config.data),
        "split": split,
        "stride": config.data.frame_stride,
        "generator": "EMA",
        "standing_stats_batches": config.eval.standing_stats_batches,
        "seed": seed,
    }
    result = video_metrics.compute(fake, metrics, extractor, real, c3d, protocol, real_clips)
    if digit_metrics:
        classifier = digits.DigitClassifier.for_data(config.data, config.eval.stats_dir)
        asked = labels if config.model.num_classes else None
        result.update(
            digits.compute(
                digit_metrics,
                classifier,
                fake,
                asked,
                real_clips,
                real_labels,
                config.model.num_conditioning_frames,
            )
        )
        record = {**protocol, "num_videos": num_videos, **classifier.protocol()}
        result["protocol"].update(dict.fromkeys(digit_metrics, record))
    return result
