"""Layers shared by the generator and both discriminators.

Every weight layer is wrapped in `flax.linen.SpectralNorm`, whose power-iteration state
lives in its own collection (`SPECTRAL_STATS`), apart from BatchNorm's `batch_stats`.
Kernels start orthogonal, as in BigGAN.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

SPECTRAL_STATS = "spectral_stats"
ORTHOGONAL = nn.initializers.orthogonal()


def spectral_norm(layer: nn.Module, n_steps: int = 1, name: str | None = None) -> nn.Module:
    """Wraps `layer` so that every weight of ndim >= 2 is divided by its top singular value."""
    return nn.SpectralNorm(layer, n_steps=n_steps, collection_name=SPECTRAL_STATS, name=name)


class SNConv(nn.Module):
    """Spectrally-normalised 'SAME' convolution, 2D or 3D by the length of `kernel_size`.

    x: [N, (D,) H, W, Cin] -> [N, (D,) H, W, features].
    """

    features: int
    kernel_size: Sequence[int]
    use_bias: bool = True
    sn_steps: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, update_stats: bool):
        conv = nn.Conv(
            self.features,
            tuple(self.kernel_size),
            padding="SAME",
            use_bias=self.use_bias,
            kernel_init=ORTHOGONAL,
            dtype=self.dtype,
            name="conv",
        )
        return spectral_norm(conv, self.sn_steps, name="sn")(x, update_stats=update_stats)


class SNDense(nn.Module):
    """Spectrally-normalised dense layer: [..., Cin] -> [..., features]."""

    features: int
    use_bias: bool = True
    sn_steps: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, update_stats: bool):
        dense = nn.Dense(
            self.features,
            use_bias=self.use_bias,
            kernel_init=ORTHOGONAL,
            dtype=self.dtype,
            name="dense",
        )
        return spectral_norm(dense, self.sn_steps, name="sn")(x, update_stats=update_stats)


class ClassEmbedding(nn.Module):
    """Class lookup table, optionally spectrally normalised: labels [N] int -> [N, features]."""

    num_classes: int
    features: int
    use_spectral_norm: bool = True
    sn_steps: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, labels, update_stats: bool):
        embed = nn.Embed(
            self.num_classes,
            self.features,
            embedding_init=ORTHOGONAL,
            dtype=self.dtype,
            name="embed",
        )
        if not self.use_spectral_norm:
            return embed(labels)
        return spectral_norm(embed, self.sn_steps, name="sn")(labels, update_stats=update_stats)


def frame_batch_norm(
    train: bool, momentum: float, epsilon: float, dtype: Any, name: str | None = None
) -> nn.BatchNorm:
    """BatchNorm without scale/offset whose statistics are per time step.

    Applied to x [B, T, H, W, C], it normalises over (B, H, W) separately for every (t, c):
    the statistics are shaped [T, C], so no information flows between frames through them.
    Under `jax.jit` over a sharded global batch the mean and variance are global.
    """
    return nn.BatchNorm(
        use_running_average=not train,
        axis=(1, 4),
        momentum=momentum,
        epsilon=epsilon,
        use_scale=False,
        use_bias=False,
        dtype=dtype,
        name=name,
    )


class ConditionalBatchNorm(nn.Module):
    """Class-conditional BatchNorm: per-time-step BN, then `x * (1 + gain(c)) + bias(c)`.

    x: [B, T, H, W, C], cond: [B, D] (G's `[z; e(y)]`) -> [B, T, H, W, C].
    """

    momentum: float
    epsilon: float
    sn_steps: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, cond, train: bool):
        features = x.shape[-1]
        x = frame_batch_norm(train, self.momentum, self.epsilon, self.dtype, name="bn")(x)
        linear = dict(use_bias=False, sn_steps=self.sn_steps, dtype=self.dtype)
        gain = SNDense(features, name="gain", **linear)(cond, update_stats=train)
        bias = SNDense(features, name="bias", **linear)(cond, update_stats=train)
        return x * (1.0 + gain[:, None, None, None, :]) + bias[:, None, None, None, :]


class FrameBatchNorm(nn.Module):
    """Plain BatchNorm with per-time-step statistics and a learned per-channel scale/offset.

    x: [B, T, H, W, C] -> [B, T, H, W, C]; the scale and offset are [C], shared by all frames.
    """

    momentum: float
    epsilon: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        features = x.shape[-1]
        x = frame_batch_norm(train, self.momentum, self.epsilon, self.dtype, name="bn")(x)
        scale = self.param("scale", nn.initializers.ones, (features,))
        offset = self.param("offset", nn.initializers.zeros, (features,))
        return x * scale.astype(x.dtype) + offset.astype(x.dtype)


def _upsample_axis_bilinear_2x(x, axis: int):
    """Doubles `axis` with half-pixel-centred bilinear weights (0.75, 0.25), edges clamped."""
    first = jnp.take(x, jnp.array([0]), axis=axis)
    last = jnp.take(x, jnp.array([x.shape[axis] - 1]), axis=axis)
    n = x.shape[axis]
    previous = jnp.concatenate([first, jnp.take(x, jnp.arange(n - 1), axis=axis)], axis=axis)
    following = jnp.concatenate([jnp.take(x, jnp.arange(1, n), axis=axis), last], axis=axis)
    even = 0.75 * x + 0.25 * previous
    odd = 0.75 * x + 0.25 * following
    stacked = jnp.stack([even, odd], axis=axis + 1)
    shape = list(x.shape)
    shape[axis] = 2 * n
    return stacked.reshape(shape)


def upsample_2x(x, method: str):
    """x2 spatial upsampling of x [N, H, W, C] -> [N, 2H, 2W, C].

    'bilinear' equals `jax.image.resize(..., 'bilinear')` (half-pixel centres) but is written
    as shifted sums: at an exact factor of 2 the weights are fixed, and this form fuses into
    the neighbouring elementwise ops instead of becoming two dense resize matmuls.
    """
    if method == "nearest":
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    if method == "bilinear":
        return _upsample_axis_bilinear_2x(_upsample_axis_bilinear_2x(x, 1), 2)
    raise ValueError(f"Unknown upsampling method {method!r}; use 'bilinear' or 'nearest'.")


def avg_pool(x, window: Sequence[int]):
    """Non-overlapping average pooling over the spatial (and time) axes given by `window`."""
    window = tuple(window)
    return nn.avg_pool(x, window, strides=window, padding="VALID")


def fold_time(x):
    """[B, T, ...] -> [B * T, ...] so per-frame layers treat time as batch."""
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def unfold_time(x, batch_size: int):
    """[B * T, ...] -> [B, T, ...], the inverse of `fold_time`."""
    return x.reshape((batch_size, x.shape[0] // batch_size) + x.shape[1:])
