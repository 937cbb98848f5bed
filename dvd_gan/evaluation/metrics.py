"""Fréchet distance, kernel distance and Inception Score on feature arrays (NumPy, float64)."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class FeatureStatistics:
    """Mean [D] and covariance [D, D] (unbiased, N - 1) of N feature vectors."""

    mean: np.ndarray
    covariance: np.ndarray
    count: int

    @classmethod
    def of(cls, features: np.ndarray) -> "FeatureStatistics":
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or len(features) < 2:
            raise ValueError(f"Need features [N >= 2, D]; got shape {features.shape}.")
        return cls(features.mean(axis=0), np.cov(features, rowvar=False), len(features))


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(a: FeatureStatistics, b: FeatureStatistics) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), in float64.

    Tr((S_a S_b)^(1/2)) is the sum of square roots of the eigenvalues of the symmetric
    positive semi-definite S_a^(1/2) S_b S_a^(1/2), which has the same eigenvalues as
    S_a S_b; both square roots come from `eigh`, clipping rounding-level negative
    eigenvalues. This avoids scipy's `sqrtm` of a non-symmetric product, which has returned
    complex values and negative distances on real features.
    """
    root_a = _symmetric_sqrt(np.asarray(a.covariance, np.float64))
    middle = root_a @ np.asarray(b.covariance, np.float64) @ root_a
    trace_root = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)))
    difference = np.asarray(a.mean, np.float64) - np.asarray(b.mean, np.float64)
    distance = difference @ difference + np.trace(a.covariance) + np.trace(b.covariance)
    # The exact value is >= 0; a rounding-level negative result means 0.
    return float(max(distance - 2.0 * trace_root, 0.0))


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) over `splits` equal parts: (mean, standard deviation)."""
    logits = np.asarray(logits, np.float64)
    if len(logits) < splits:
        raise ValueError(f"Inception Score with {splits} splits needs >= {splits} videos.")
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    scores = []
    for part in np.array_split(log_p, splits):
        p = np.exp(part)
        log_marginal = np.log(p.mean(axis=0))
        scores.append(np.exp(np.mean(np.sum(p * (part - log_marginal), axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def kernel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 between feature sets a [M, D] and b [N, D] with the cubic polynomial
    kernel k(x, y) = (x.y / D + 1)^3: the Kernel Video Distance of Unterthiner et al.
    (2018) on I3D logits (the KID kernel of Binkowski et al., 2018), in float64.

    Unbiased: the kernel's diagonal is left out of the within-set means, so two samples of
    one distribution give 0 up to estimation noise (the value can be slightly negative).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"Need features [M >= 2, D] and [N >= 2, D]; got {a.shape}, {b.shape}.")
    dim = a.shape[1]

    def kernel(x, y):
        return (x @ y.T / dim + 1.0) ** 3

    def within(x):
        k = kernel(x, x)
        return (k.sum() - np.trace(k)) / (len(x) * (len(x) - 1))

    return float(within(a) + within(b) - 2.0 * kernel(a, b).mean())
