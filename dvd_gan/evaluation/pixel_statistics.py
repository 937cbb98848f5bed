"""Two pixel statistics that tell a collapsed or frozen generator from a working one, where
a feature distance alone can hide it: how much videos differ from one another, and how
much frames change over time. Both in uint8 grey levels (0-255), compared with real clips'.
"""

import numpy as np


def diversity(videos: np.ndarray) -> float:
    """Standard deviation across videos, averaged over every pixel of every frame:
    uint8 [N, T, H, W, C] -> 0 when every video is the same."""
    return float(np.mean(np.std(videos.astype(np.float64), axis=0)))


def motion(videos: np.ndarray) -> float:
    """Mean absolute change between consecutive frames: uint8 [N, T, H, W, C] -> 0 when
    every video is a still image."""
    frames = videos.astype(np.float64)
    return float(np.mean(np.abs(frames[:, 1:] - frames[:, :-1])))


STATISTICS = {"diversity": diversity, "motion": motion}
