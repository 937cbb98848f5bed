"""BigGAN residual blocks: the generator's (per frame, class-conditional BN) and the
discriminators' (2D per frame, or 3D over space and time)."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dvd_gan.models.layers import (
    ConditionalBatchNorm,
    SNConv,
    avg_pool,
    fold_time,
    unfold_time,
    upsample_2x,
)


class GeneratorBlock(nn.Module):
    """`CBN -> ReLU -> Up -> Conv3 -> CBN -> ReLU -> Conv3`, skip `Conv1 -> Up` (the same
    as BigGAN's `Up -> Conv1`).

    Applied to every frame independently (time folded into batch), with BatchNorm statistics
    per time step. x: [B, T, H, W, Cin], cond: [B, D] -> [B, T, sH, sW, features], s = 2 if
    `upsample` else 1.
    """

    features: int
    upsample: bool
    upsample_method: str = "bilinear"
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-5
    sn_steps: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, cond, train: bool):
        batch_size = x.shape[0]
        cbn = dict(
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            sn_steps=self.sn_steps,
            dtype=self.dtype,
        )
        conv = dict(sn_steps=self.sn_steps, dtype=self.dtype)

        def up(frames):
            return upsample_2x(frames, self.upsample_method) if self.upsample else frames

        h = nn.relu(ConditionalBatchNorm(name="bn1", **cbn)(x, cond, train))
        h = up(fold_time(h))
        h = SNConv(self.features, (3, 3), name="conv1", **conv)(h, update_stats=train)
        h = unfold_time(h, batch_size)
        h = nn.relu(ConditionalBatchNorm(name="bn2", **cbn)(h, cond, train))
        h = SNConv(self.features, (3, 3), name="conv2", **conv)(fold_time(h), update_stats=train)
        # Conv1 before Up, not after: a 1x1 convolution commutes with the upsampling (which
        # mixes pixels with weights summing to 1, so the bias passes through too), and at
        # the lower resolution it is 4x cheaper, and fewer channels are upsampled.
        skip = up(
            SNConv(self.features, (1, 1), name="skip", **conv)(fold_time(x), update_stats=train)
        )
        return unfold_time(h + skip, batch_size)


class DiscriminatorBlock(nn.Module):
    """`ReLU -> Conv3 -> ReLU -> Conv3 -> AvgPool2`, skip `AvgPool2 -> Conv1` (the same as
    `Conv1 -> AvgPool2`).

    2D on x [N, H, W, C], or 3D (3x3x3 kernels) on x [N, T, H, W, C] when `time_kernel`;
    a 3D block pools x2 in time too when `pool_time`. The first block of a network has no
    leading ReLU (`preactivate=False`); the last does not downsample.
    """

    features: int
    downsample: bool
    preactivate: bool = True
    time_kernel: bool = False
    pool_time: bool = False
    sn_steps: int = 1
    conv3d_impl: str = "auto"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, update_stats: bool):
        kernel3 = (3, 3, 3) if self.time_kernel else (3, 3)
        kernel1 = (1,) * len(kernel3)
        window = (2, 2)
        if self.time_kernel:
            window = (2 if self.pool_time else 1, *window)
        conv = dict(sn_steps=self.sn_steps, conv3d_impl=self.conv3d_impl, dtype=self.dtype)

        h = nn.relu(x) if self.preactivate else x
        h = SNConv(self.features, kernel3, name="conv1", **conv)(h, update_stats=update_stats)
        h = SNConv(self.features, kernel3, name="conv2", **conv)(
            nn.relu(h), update_stats=update_stats
        )
        # The skip pools before its Conv1, not after: the two commute (an average of the
        # convolved pixels is the convolution of their average, bias included), and the
        # convolution then runs on a quarter (an eighth, pooling time too) of the pixels.
        skip = avg_pool(x, window) if self.downsample else x
        skip = SNConv(self.features, kernel1, name="skip", **conv)(skip, update_stats=update_stats)
        if self.downsample:
            h = avg_pool(h, window)
        return h + skip
