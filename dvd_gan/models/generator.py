"""The DVD-GAN generator and the DVD-GAN-FP conditioning stack."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dvd_gan.models.blocks import DiscriminatorBlock, GeneratorBlock
from dvd_gan.models.conv_gru import ConvGRU
from dvd_gan.models.layers import (
    ClassEmbedding,
    FrameBatchNorm,
    SNConv,
    SNDense,
    fold_time,
    maybe_remat,
    unfold_time,
)


class GeneratorGroup(nn.Module):
    """One resolution of G: a ConvGRU over time, then two per-frame residual blocks, the
    second doubling the size; G's unit of rematerialisation.

    x: [B, T, H, W, C] or [B, H, W, C] (the same input at every step), h0: [B, H, W, C] or
    None, cond: [B, D] -> [B, T, 2H, 2W, out_features].
    """

    features: int
    out_features: int
    gru_kernel_size: int = 3
    gru_candidate_activation: str = "relu"
    upsample_method: str = "bilinear"
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-5
    sn_steps: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, h0, cond, num_steps: int, train: bool):
        common = dict(sn_steps=self.sn_steps, dtype=self.dtype)
        x = ConvGRU(
            self.features,
            self.gru_kernel_size,
            self.gru_candidate_activation,
            name="gru",
            **common,
        )(x, h0, num_steps, train)
        block = dict(
            upsample_method=self.upsample_method,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            **common,
        )
        x = GeneratorBlock(self.features, upsample=False, name="block0", **block)(x, cond, train)
        return GeneratorBlock(self.out_features, upsample=True, name="block1", **block)(
            x, cond, train
        )


class ConditioningStack(nn.Module):
    """DVD-GAN-FP: C conditioning frames -> the initial ConvGRU state at every resolution.

    Each frame passes separately through residual blocks built like D_S's, each halving the
    size; at every resolution the features of the C frames are concatenated along channels
    and a 3x3 convolution reduces them to the ConvGRU's state width.

    frames: [B, C, H, W, 3] -> one state per generator group, coarsest first:
    [B, 4 * 2**g, 4 * 2**g, state_widths[g]] for g = 0 .. len(state_widths) - 1.
    """

    state_widths: tuple[int, ...]
    block_widths: tuple[int, ...]
    sn_steps: int = 1
    remat: str = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, frames, train: bool):
        batch_size = frames.shape[0]
        x = fold_time(frames.astype(self.dtype))
        features = []
        block_class = maybe_remat(DiscriminatorBlock, self.remat, static_argnums=(2,))
        for i, width in enumerate(self.block_widths):
            x = block_class(
                width,
                downsample=True,
                preactivate=i > 0,
                sn_steps=self.sn_steps,
                dtype=self.dtype,
                name=f"block{i}",
            )(x, train)  # positional: static under remat
            features.append(x)
        states = []
        for g, width in enumerate(self.state_widths):
            f = unfold_time(features[-1 - g], batch_size)  # [B, C, h, w, F]
            f = jnp.moveaxis(f, 1, 3).reshape(f.shape[0:1] + f.shape[2:4] + (-1,))
            states.append(
                SNConv(width, (3, 3), sn_steps=self.sn_steps, dtype=self.dtype, name=f"reduce{g}")(
                    f, update_stats=train
                )
            )
        return states


class Generator(nn.Module):
    """DVD-GAN's G: z (and a class) -> a video; with conditioning frames, DVD-GAN-FP.

    `[z; e(y)]` conditions every class-conditional BatchNorm. A spectrally-normalised affine
    map gives a 4x4 tensor that is the input of the first ConvGRU at every time step; each
    group (ConvGRU, then two per-frame residual blocks, the second upsampling x2) doubles the
    size, and a per-frame `BN -> ReLU -> Conv3 -> tanh` head makes RGB.

    z: [B, z_dim] float, labels: [B] int32 (ignored when num_classes == 0),
    conditioning: [B, C, H, W, 3] in [-1, 1] when num_conditioning_frames = C > 0.
    Returns [B, T - C, H, W, 3] float32 in [-1, 1]; with `output_channels=1` the head makes
    one grey channel and the three channels are equal.
    """

    num_frames: int
    resolution: int
    ch: int
    channel_multipliers: tuple[int, ...]
    conditioning_multipliers: tuple[int, ...]
    num_classes: int
    z_dim: int = 120
    class_embedding_dim: int = 120
    num_conditioning_frames: int = 0
    gru_kernel_size: int = 3
    gru_candidate_activation: str = "relu"
    upsample_method: str = "bilinear"
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-5
    sn_steps: int = 1
    class_embedding_spectral_norm: bool = False
    class_embedding_scale: float = 1.0
    output_channels: int = 3
    remat: str = "none"
    dtype: Any = jnp.float32

    @property
    def num_generated_frames(self) -> int:
        return self.num_frames - self.num_conditioning_frames

    @nn.compact
    def __call__(self, z, labels, conditioning=None, train: bool = False):
        batch_size = z.shape[0]
        if self.output_channels not in (1, 3):
            raise ValueError(
                f"model.output_channels={self.output_channels}; use 3 (RGB) or 1 (grey)."
            )
        if z.shape[-1] != self.z_dim:
            raise ValueError(f"z has {z.shape[-1]} features, the generator expects {self.z_dim}.")
        if self.num_classes > 0:
            embedding = ClassEmbedding(
                self.num_classes,
                self.class_embedding_dim,
                use_spectral_norm=self.class_embedding_spectral_norm,
                init_scale=self.class_embedding_scale,
                sn_steps=self.sn_steps,
                name="class_embedding",
            )(labels, update_stats=train)
            cond = jnp.concatenate([z, embedding], axis=-1)
        else:
            cond = z
        widths = [self.ch * m for m in self.channel_multipliers]
        num_groups = len(widths) - 1
        common = dict(sn_steps=self.sn_steps, dtype=self.dtype)

        x = SNDense(4 * 4 * widths[0], name="project", **common)(cond, update_stats=train)
        x = x.reshape(batch_size, 4, 4, widths[0])

        states = self._initial_states(conditioning, widths[:num_groups], train)
        group_class = maybe_remat(GeneratorGroup, self.remat, static_argnums=(4, 5))
        for g in range(num_groups):
            x = group_class(
                widths[g],
                widths[g + 1],
                gru_kernel_size=self.gru_kernel_size,
                gru_candidate_activation=self.gru_candidate_activation,
                upsample_method=self.upsample_method,
                bn_momentum=self.bn_momentum,
                bn_epsilon=self.bn_epsilon,
                name=f"group{g}",
                **common,
            )(x, states[g], cond, self.num_generated_frames, train)

        x = FrameBatchNorm(self.bn_momentum, self.bn_epsilon, self.dtype, name="head_bn")(x, train)
        x = SNConv(self.output_channels, (3, 3), name="head_conv", **common)(
            fold_time(nn.relu(x)), update_stats=train
        )
        x = jnp.tanh(unfold_time(x, batch_size).astype(jnp.float32))
        # A grey-scale G makes one channel; repeated, it is an RGB video whose channels are
        # equal by construction, like the grey datasets' frames decoded to RGB.
        return jnp.repeat(x, 3 // self.output_channels, axis=-1)

    def _initial_states(self, conditioning, state_widths, train: bool):
        c = self.num_conditioning_frames
        if c == 0:
            if conditioning is not None:
                raise ValueError(
                    "Conditioning frames were given but model.num_conditioning_frames is 0."
                )
            return [None] * len(state_widths)
        expected = (c, self.resolution, self.resolution, 3)
        if conditioning is None or tuple(conditioning.shape[1:]) != expected:
            got = None if conditioning is None else tuple(conditioning.shape)
            raise ValueError(
                f"DVD-GAN-FP needs conditioning frames shaped [B, {c}, {self.resolution}, "
                f"{self.resolution}, 3]; got {got}."
            )
        block_widths = tuple(self.ch * m for m in self.conditioning_multipliers)
        return ConditioningStack(
            tuple(state_widths),
            block_widths[: len(state_widths)],
            sn_steps=self.sn_steps,
            remat=self.remat,
            dtype=self.dtype,
            name="conditioning",
        )(conditioning, train)
