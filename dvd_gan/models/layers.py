"""Layers shared by the generator and both discriminators.

Every weight layer is wrapped in `flax.linen.SpectralNorm`, whose power-iteration state
lives in its own collection (`SPECTRAL_STATS`), apart from BatchNorm's `batch_stats`.
Kernels start orthogonal, as in BigGAN.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

SPECTRAL_STATS = "spectral_stats"
ORTHOGONAL = nn.initializers.orthogonal()


def float32_affine(x, scale, offset):
    """x * scale + offset, computed in float32 and returned in x's dtype.

    Mixed precision: a bias's or scale's gradient is a sum over every position it is
    broadcast to (batch, time, height, width); rounded to bfloat16 at each partial sum, such
    a sum over ~10^4 positions loses about a tenth of its value (tests/test_models.py). In
    float32 the sum accumulates in float32, while x and its gradient stay in x's dtype (XLA
    fuses the casts with the arithmetic, so no float32 copy of x is kept).
    """
    affine = x.astype(jnp.float32) * jnp.asarray(scale, jnp.float32)
    return (affine + jnp.asarray(offset, jnp.float32)).astype(x.dtype)


def _promote_keeping_bias_float32(inputs, kernel, bias, dtype=None):
    """flax's `promote_dtype` for a layer's inputs and kernel; the bias stays in its float32
    parameter dtype, so that the layer adds it in float32 (see `float32_affine`)."""
    inputs, kernel = nn.dtypes.promote_dtype(inputs, kernel, dtype=dtype)
    return inputs, kernel, bias


def spectral_norm(layer: nn.Module, n_steps: int = 1, name: str | None = None) -> nn.Module:
    """Wraps `layer` so that every weight of ndim >= 2 is divided by its top singular value."""
    return nn.SpectralNorm(layer, n_steps=n_steps, collection_name=SPECTRAL_STATS, name=name)


CONV3D_IMPLEMENTATIONS = ("auto", "native", "stacked")


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
):
    """`jax.lax.conv_general_dilated` for channels-last inputs, except for two cases
    computed as matmuls with the same result: a 1x1 convolution, and a stride-1 'SAME'
    convolution of an input smaller than its kernel (a 3x3 kernel over the 2x2 maps at the
    end of the discriminators), as a matmul of patches and kernel.

    Why the second: XLA's CPU backend turns such a convolution around (the input becomes
    the window) and runs it far slower than the same patches x kernel matmul
    (docs/benchmarks.md). The
    patches of so small an input cost at most kernel-size times the input's memory, on
    every backend.
    lhs: [N, *spatial, Cin], rhs: [*kernel, Cin, Cout] -> [N, *spatial, Cout].
    """
    spatial, kernel = lhs.shape[1:-1], rhs.shape[:-2]
    ndim = lhs.ndim
    numbers = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    channels_last = tuple(numbers) == (
        (0, ndim - 1, *range(1, ndim - 1)),
        (ndim - 1, ndim - 2, *range(ndim - 2)),
        (0, ndim - 1, *range(1, ndim - 1)),
    )
    plain = (
        channels_last
        and all(s == 1 for s in window_strides)
        and all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
        and feature_group_count == 1
    )
    if plain and all(k == 1 for k in kernel) and padding in ("SAME", "VALID"):
        # A 1x1 convolution is a matmul over channels. Written as one, its weight gradient
        # is the matmul x^T g; as a convolution XLA transposes the activations into a
        # batch-as-features layout first, which on the CPU costs several times the
        # arithmetic at the discriminators' and generator's full resolutions.
        return jnp.dot(lhs, rhs.reshape(rhs.shape[-2:]), precision=precision)
    if plain and padding == "SAME" and any(s < k for s, k in zip(spatial, kernel, strict=True)):
        pads = [(0, 0), *(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel), (0, 0)]
        padded = jnp.pad(lhs, pads)
        patches = [
            padded[(slice(None), *(slice(o, o + s) for o, s in zip(offset, spatial, strict=True)))]
            for offset in np.ndindex(*kernel)
        ]
        return jnp.dot(
            jnp.concatenate(patches, axis=-1), rhs.reshape(-1, rhs.shape[-1]), precision=precision
        )
    return jax.lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        precision=precision,
    )


class TimeStackedConv(nn.Module):
    """A 'SAME' 3D convolution computed as a 2D one: the kt time-neighbours of every frame
    are stacked along channels, and the (kt, kh, kw, Cin, Cout) kernel becomes a
    (kh, kw, kt * Cin, Cout) one. Same parameters (names, shapes, init) and same result as
    `nn.Conv` with a 3D kernel; on the CPU it runs faster (docs/benchmarks.md), because
    XLA's CPU backend has a fast path for 2D convolutions and none for 3D ones.

    x: [N, T, H, W, Cin] -> [N, T, H, W, features].
    """

    features: int
    kernel_size: Sequence[int]
    use_bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kt, kh, kw = self.kernel_size
        kernel = self.param("kernel", ORTHOGONAL, (kt, kh, kw, x.shape[-1], self.features))
        n, t, h, w, c = x.shape
        x = jnp.asarray(x, self.dtype)
        before = (kt - 1) // 2
        padded = jnp.pad(x, ((0, 0), (before, kt - 1 - before), (0, 0), (0, 0), (0, 0)))
        stacked = jnp.concatenate([padded[:, i : i + t] for i in range(kt)], axis=-1)
        kernel_2d = jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kh, kw, kt * c, self.features)
        y = conv_general_dilated(
            stacked.reshape(n * t, h, w, kt * c),
            jnp.asarray(kernel_2d, self.dtype),
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        if self.use_bias:
            y = float32_affine(y, 1.0, self.param("bias", nn.initializers.zeros, (self.features,)))
        return y.reshape(n, t, h, w, self.features)


def resolve_conv3d_impl(implementation: str, platform: str | None = None) -> str:
    """'stacked' or 'native' for `model.conv3d_impl` on `platform` (default: JAX's default
    backend): 'auto' stacks time on the CPU only."""
    if implementation not in CONV3D_IMPLEMENTATIONS:
        raise ValueError(
            f"Unknown conv3d_impl {implementation!r}; use one of {CONV3D_IMPLEMENTATIONS}."
        )
    if implementation == "auto":
        return "stacked" if (platform or jax.default_backend()) == "cpu" else "native"
    return implementation


class SNConv(nn.Module):
    """Spectrally-normalised 'SAME' convolution, 2D or 3D by the length of `kernel_size`.

    x: [N, (T,) H, W, Cin] -> [N, (T,) H, W, features]. `conv3d_impl` picks how a 3D kernel
    is computed ('auto': `TimeStackedConv` on the CPU, XLA's 3D convolution elsewhere).
    """

    features: int
    kernel_size: Sequence[int]
    use_bias: bool = True
    sn_steps: int = 1
    conv3d_impl: str = "auto"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, update_stats: bool):
        kernel_size = tuple(self.kernel_size)
        common = dict(use_bias=self.use_bias, dtype=self.dtype, name="conv")
        stacked = resolve_conv3d_impl(self.conv3d_impl) == "stacked"
        if len(kernel_size) == 3 and kernel_size[0] > 1 and stacked:
            conv = TimeStackedConv(self.features, kernel_size, **common)
        else:
            conv = nn.Conv(
                self.features,
                kernel_size,
                padding="SAME",
                kernel_init=ORTHOGONAL,
                conv_general_dilated=conv_general_dilated,
                promote_dtype=_promote_keeping_bias_float32,
                **common,
            )
        y = spectral_norm(conv, self.sn_steps, name="sn")(x, update_stats=update_stats)
        return y.astype(self.dtype)


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
            promote_dtype=_promote_keeping_bias_float32,
            name="dense",
        )
        y = spectral_norm(dense, self.sn_steps, name="sn")(x, update_stats=update_stats)
        return y.astype(self.dtype)


class ClassEmbedding(nn.Module):
    """Class lookup table, optionally spectrally normalised: labels [N] int -> [N, features].

    Initialised orthogonally: with num_classes <= features every row has norm `init_scale`.
    """

    num_classes: int
    features: int
    use_spectral_norm: bool = True
    init_scale: float = 1.0
    sn_steps: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, labels, update_stats: bool):
        embed = nn.Embed(
            self.num_classes,
            self.features,
            embedding_init=nn.initializers.orthogonal(self.init_scale),
            dtype=self.dtype,
            name="embed",
        )
        if not self.use_spectral_norm:
            return embed(labels)
        return spectral_norm(embed, self.sn_steps, name="sn")(labels, update_stats=update_stats)


REMAT_SETTINGS = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable")


def maybe_remat(module_class, setting: str, static_argnums: tuple[int, ...]):
    """`module_class`, rematerialised per call unless `setting` is 'none': 'full' keeps
    nothing but the inputs, the others are `jax.checkpoint_policies` that keep matmul
    outputs. `static_argnums` count `self` as argument 0."""
    if setting not in REMAT_SETTINGS:
        raise ValueError(f"Unknown model.remat {setting!r}; use one of {REMAT_SETTINGS}.")
    if setting == "none":
        return module_class
    policy = None if setting == "full" else getattr(jax.checkpoint_policies, setting)
    return nn.remat(module_class, static_argnums=static_argnums, policy=policy)


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

    `gain` and `bias` are affine maps of the conditioning vector: a spectrally-normalised
    weight plus an unnormalised bias term, as in BigGAN's reference layers. Without the
    bias term an unconditional G (c = z alone, E[z] = 0) would have no learnable
    per-channel scale or offset in any of its BatchNorms.

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
        linear = dict(use_bias=True, sn_steps=self.sn_steps, dtype=self.dtype)
        gain = SNDense(features, name="gain", **linear)(cond, update_stats=train)
        bias = SNDense(features, name="bias", **linear)(cond, update_stats=train)
        return float32_affine(x, 1.0 + gain[:, None, None, None, :], bias[:, None, None, None, :])


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
        return float32_affine(x, scale, offset)


def _bilinear_2x_along(x, axis: int):
    """x2 bilinear upsampling of one axis, half-pixel centres, edges clamped: output 2i is
    0.25 x[i - 1] + 0.75 x[i], output 2i + 1 is 0.75 x[i] + 0.25 x[i + 1]; the even and odd
    outputs are interleaved by a stack and a reshape."""
    n = x.shape[axis]
    previous = jnp.concatenate(
        [jax.lax.slice_in_dim(x, 0, 1, axis=axis), jax.lax.slice_in_dim(x, 0, n - 1, axis=axis)],
        axis,
    )
    following = jnp.concatenate(
        [jax.lax.slice_in_dim(x, 1, n, axis=axis), jax.lax.slice_in_dim(x, n - 1, n, axis=axis)],
        axis,
    )
    even = 0.75 * x + 0.25 * previous
    odd = 0.75 * x + 0.25 * following
    shape = list(x.shape)
    shape[axis] = 2 * n
    return jnp.stack([even, odd], axis=axis + 1).reshape(shape)


def upsample_2x(x, method: str):
    """x2 spatial upsampling of x [N, H, W, C] -> [N, 2H, 2W, C].

    'bilinear' equals `jax.image.resize(..., 'bilinear')` (half-pixel centres), computed as
    shifted sums of each axis interleaved by a reshape. Why not an interpolation matrix
    per axis: XLA lays such a product out with two transposes of the activations around
    each matrix product, and on the CPU those copies cost more than the arithmetic; this
    form is elementwise and fuses into one loop.
    """
    if method == "nearest":
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    if method == "bilinear":
        return _bilinear_2x_along(_bilinear_2x_along(x, 1), 2)
    raise ValueError(f"Unknown upsampling method {method!r}; use 'bilinear' or 'nearest'.")


def avg_pool(x, window: Sequence[int]):
    """Non-overlapping average pooling over the spatial (and time) axes given by `window`:
    x [N, *dims, C] -> [N, *(dims // window), C], as `nn.avg_pool(..., padding='VALID')`.

    A reshape and a mean rather than `nn.avg_pool`: XLA's reduce-window has a slow
    gradient on the CPU when it pools time too (a padded reduce-window over the whole
    input), while the mean's gradient is a broadcast on every backend.
    """
    window = tuple(window)
    dims = x.shape[1:-1]
    # 'VALID' pooling: a remainder that does not fill a window (an odd frame count
    # pooled in time) is dropped.
    x = x[(slice(None), *(slice(0, d - d % k) for d, k in zip(dims, window, strict=True)))]
    split = [x.shape[0]]
    for d, k in zip(dims, window, strict=True):
        split += [d // k, k]
    split.append(x.shape[-1])
    return jnp.mean(x.reshape(split), axis=tuple(2 + 2 * i for i in range(len(window))))


def fold_time(x):
    """[B, T, ...] -> [B * T, ...] so per-frame layers treat time as batch."""
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def unfold_time(x, batch_size: int):
    """[B * T, ...] -> [B, T, ...], the inverse of `fold_time`."""
    return x.reshape((batch_size, x.shape[0] // batch_size) + x.shape[1:])
