"""FVD, KVD, FID, Inception Scores and pixel statistics of a set of videos, with the protocol
behind each number."""

import numpy as np

from dvd_gan.evaluation import digits, pixel_statistics
from dvd_gan.evaluation import features as features_lib
from dvd_gan.evaluation.metrics import (
    FeatureStatistics,
    frechet_distance,
    inception_score,
    kernel_distance,
)

METRICS = ("fvd", "kvd", "fid", "is", "c3d_is", *pixel_statistics.STATISTICS, *digits.METRICS)
I3D_METRICS = ("fvd", "kvd", "fid", "is")
REAL_FEATURE_METRICS = ("fvd", "kvd", "fid")
IS_SPLITS = 10
LAYERS = {
    "fvd": "logits (400, pre-softmax, mean over time)",
    "kvd": "logits (400, pre-softmax, mean over time); unbiased MMD^2, kernel (x.y/400 + 1)^3",
    "fid": "Mixed_5c, average-pooled (1024)",
    "is": "logits softmax (400 classes)",
}


def parse_metrics(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(set(names) - set(METRICS))
    if unknown or not names:
        raise ValueError(f"Unknown metrics {unknown or text!r}; choose from {', '.join(METRICS)}.")
    return names


def feature_metrics(metrics, fake: dict, real: dict | None) -> dict:
    """The I3D metrics among `metrics` from features {'logits', 'pool'} of fake and real
    clips (real may be None when only IS is asked for)."""
    result = {}
    if set(REAL_FEATURE_METRICS) & set(metrics) and real is None:
        raise ValueError("FVD, KVD and FID need real videos or real features.")
    if "fvd" in metrics:
        result["fvd"] = frechet_distance(
            FeatureStatistics.of(fake["logits"]), FeatureStatistics.of(real["logits"])
        )
    if "kvd" in metrics:
        result["kvd"] = kernel_distance(fake["logits"], real["logits"])
    if "fid" in metrics:
        result["fid"] = frechet_distance(
            FeatureStatistics.of(fake["pool"]), FeatureStatistics.of(real["pool"])
        )
    if "is" in metrics:
        result["is"], result["is_std"] = inception_score(fake["logits"], IS_SPLITS)
    return result


def metric_protocols(metrics, base: dict, i3d_resize: str, real_count: int) -> dict:
    """What each I3D metric among `metrics` depends on: `base` (clips, protocol, seed, ...),
    the network and its preprocessing, the layer, and the number of real clips."""
    i3d = {**base, **features_lib.i3d_protocol(base["frames"], i3d_resize)}
    protocols = {}
    for name in I3D_METRICS:
        if name in metrics:
            protocols[name] = {**i3d, "layer": LAYERS[name]}
            if name == "is":
                protocols[name]["splits"] = IS_SPLITS
            else:
                protocols[name]["real_videos"] = real_count
    return protocols


def video_metrics(fake: np.ndarray, metrics, base: dict, real_videos, c3d) -> tuple[dict, dict]:
    """(values, protocols) of the metrics computed from the videos themselves: C3D's
    Inception Score and the pixel statistics (beside the same of `real_videos`)."""
    result, protocols = {}, {}
    if "c3d_is" in metrics:
        if c3d is None:
            raise ValueError("c3d_is needs C3D weights (--c3d_weights=FILE).")
        from dvd_gan.evaluation import c3d as c3d_lib

        result["c3d_is"], result["c3d_is_std"] = inception_score(c3d(fake), IS_SPLITS)
        protocols["c3d_is"] = {**base, **c3d_lib.protocol(), "splits": IS_SPLITS}
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
    return result, protocols


def compute(
    fake: np.ndarray,
    metrics: tuple[str, ...],
    extractor: "features_lib.I3DFeatures | None",
    real: dict | None = None,
    c3d=None,
    protocol: dict | None = None,
    real_videos: np.ndarray | None = None,
) -> dict:
    """Metrics of uint8 videos `fake` [N, T, H, W, 3] against `real` (I3D features
    {'logits', 'pool'} of the real clips), as one JSON-ready dict: each metric, its spread
    where it has one, and under 'protocol' everything the number depends on (`protocol`
    adds split, stride, ...). The pixel statistics (`diversity`, `motion`) come with
    `<name>_real`, the same of `real_videos`."""
    n, t, h, w, _ = fake.shape
    base = {"num_videos": n, "frames": t, "resolution": [h, w], "repeats": 1, **(protocol or {})}
    result, protocols = {}, {}
    if set(I3D_METRICS) & set(metrics):
        fake_features = extractor(fake, "I3D features, generated")
        result.update(feature_metrics(metrics, fake_features, real))
        real_count = len(real["logits"]) if real is not None else 0
        protocols.update(metric_protocols(metrics, base, extractor.i3d_resize, real_count))
    values, video_protocols = video_metrics(fake, metrics, base, real_videos, c3d)
    result.update(values)
    protocols.update(video_protocols)
    result["protocol"] = protocols
    return result
