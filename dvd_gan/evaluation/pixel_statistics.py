"""Pixel statistics that tell a collapsed, frozen or shape-shifting generator from a working
one, where a feature distance alone can hide it: how much videos differ from one another and
how much frames change over time (both in uint8 grey levels, 0-255), and how much a clip's
brightness changes over time (a digit that splits, fades or grows changes it; a moving one
does not). Each compared with real clips'.
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


def mass_variation(videos: np.ndarray) -> float:
    """Median over videos of the standard deviation over frames of a frame's total
    brightness, divided by its mean: uint8 [N, T, H, W, C] -> 0 when every frame of a clip
    holds the same ink, as a clip of rigid moving shapes does."""
    mass = videos.astype(np.float64).sum(axis=(2, 3, 4))
    return float(np.median(mass.std(axis=1) / np.maximum(mass.mean(axis=1), 1e-9)))


STATISTICS = {"diversity": diversity, "motion": motion, "mass_variation": mass_variation}
