"""FVD, FID, Inception Scores and pixel statistics of a set of videos, with the protocol
behind each number."""

import numpy as np

from dvd_gan.evaluation import features as features_lib
from dvd_gan.evaluation import pixel_statistics
from dvd_gan.evaluation.metrics import FeatureStatistics, frechet_distance, inception_score

METRICS = ("fvd", "fid", "is", "c3d_is", *pixel_statistics.STATISTICS)
IS_SPLITS = 10


def parse_metrics(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(set(names) - set(METRICS))
    if unknown or not names:
        raise ValueError(f"Unknown metrics {unknown or text!r}; choose from {', '.join(METRICS)}.")
    return names


def compute(
    fake: np.ndarray,
    metrics: tuple[str, ...],
    extractor: "features_lib.I3DFeatures | None",
    real: "features_lib.RealStatistics | np.ndarray | None" = None,
    c3d=None,
    protocol: dict | None = None,
    real_videos: np.ndarray | None = None,
) -> dict:
    """Metrics of uint8 videos `fake` [N, T, H, W, 3] against `real` (cached statistics or
    videos), as one JSON-ready dict: each metric, its spread where it has one, and under
    'protocol' everything the number depends on (`protocol` adds split, stride, ...).
    The pixel statistics (`diversity`, `motion`) come with `<name>_real`, the same of
    `real_videos` (or of `real` when it is videos)."""
    n, t, h, w, _ = fake.shape
    base = {"num_videos": n, "frames": t, "resolution": [h, w], "repeats": 1, **(protocol or {})}
    result, protocols = {}, {}
    i3d_metrics = [m for m in metrics if m in ("fvd", "fid", "is")]
    if i3d_metrics:
        fake_features = extractor(fake, "I3D features, generated")
        if {"fvd", "fid"} & set(metrics):
            if real is None:
                raise ValueError("FVD and FID need real videos or real statistics.")
            if isinstance(real, np.ndarray):
                real_features = extractor(real, "I3D features, real")
                real = features_lib.RealStatistics(
                    FeatureStatistics.of(real_features["logits"]),
                    FeatureStatistics.of(real_features["pool"]),
                )
        i3d_protocol = {**base, **features_lib.i3d_protocol(t)}
        if "fvd" in metrics:
            result["fvd"] = frechet_distance(
                FeatureStatistics.of(fake_features["logits"]), real.fvd
            )
            protocols["fvd"] = {
                **i3d_protocol,
                "layer": "logits (400, pre-softmax, mean over time)",
                "real_videos": real.fvd.count,
            }
        if "fid" in metrics:
            result["fid"] = frechet_distance(FeatureStatistics.of(fake_features["pool"]), real.fid)
            protocols["fid"] = {
                **i3d_protocol,
                "layer": "Mixed_5c, average-pooled (1024)",
                "real_videos": real.fid.count,
            }
        if "is" in metrics:
            result["is"], result["is_std"] = inception_score(fake_features["logits"], IS_SPLITS)
            protocols["is"] = {
                **i3d_protocol,
                "layer": "logits softmax (400 classes)",
                "splits": IS_SPLITS,
            }
    if "c3d_is" in metrics:
        if c3d is None:
            raise ValueError("c3d_is needs C3D weights (--c3d_weights=FILE).")
        from dvd_gan.evaluation import c3d as c3d_lib

        result["c3d_is"], result["c3d_is_std"] = inception_score(c3d(fake), IS_SPLITS)
        protocols["c3d_is"] = {**base, **c3d_lib.protocol(), "splits": IS_SPLITS}
    if real_videos is None and isinstance(real, np.ndarray):
        real_videos = real
    for name, statistic in pixel_statistics.STATISTICS.items():
        if name in metrics:
            result[name] = statistic(fake)
            if real_videos is not None:
                result[f"{name}_real"] = statistic(real_videos)
            protocols[name] = {
                **base,
                "units": "uint8 levels",
                "real_videos": 0 if real_videos is None else len(real_videos),
            }
    result["protocol"] = protocols
    return result
