"""DVD-GAN's two discriminators.

D_S scores k randomly chosen full-resolution frames and sums the scores; D_T scores the
whole clip at reduced resolution (phi), with 3D blocks first, and sums over time.
Both end in the same 2D BigGAN ResNet scorer with projection class conditioning.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dvd_gan.models.blocks import DiscriminatorBlock
from dvd_gan.models.layers import (
    ClassEmbedding,
    SNDense,
    avg_pool,
    fold_time,
    maybe_remat,
    unfold_time,
)

TEMPORAL_D_INPUTS = ("identity", "avg2x2", "avg4x4", "random_half_crop")


class FrameScorer(nn.Module):
    """2D BigGAN ResNet D: blocks (all but the last halve H, W), ReLU, global sum pooling,
    a linear output plus the projection `<embed(y), h>`.

    x: [N, H, W, C], labels: [N] int32 or None -> scores [N] float32.
    `input_block` says whether the first block sees the network's input (no leading ReLU).
    """

    block_widths: tuple[int, ...]
    num_classes: int
    input_block: bool = True
    sn_steps: int = 1
    remat: str = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, labels, update_stats: bool):
        last = len(self.block_widths) - 1
        block_class = maybe_remat(DiscriminatorBlock, self.remat, static_argnums=(2,))
        for i, width in enumerate(self.block_widths):
            x = block_class(
                width,
                downsample=i < last,
                preactivate=i > 0 or not self.input_block,
                sn_steps=self.sn_steps,
                dtype=self.dtype,
                name=f"block{i}",
            )(x, update_stats)  # positional: static under remat
        # The head (pooling, linear output, projection) runs in float32 whatever the
        # compute dtype, as the logits of mixed-precision training do: a score is a sum
        # over every position and channel, which bfloat16 would round to 3 digits.
        h = jnp.sum(nn.relu(x.astype(jnp.float32)), axis=(1, 2))
        score = SNDense(1, sn_steps=self.sn_steps, dtype=jnp.float32, name="linear")(
            h, update_stats=update_stats
        )[:, 0]
        if self.num_classes > 0:
            embedding = ClassEmbedding(
                self.num_classes,
                h.shape[-1],
                sn_steps=self.sn_steps,
                dtype=jnp.float32,
                name="projection",
            )(labels, update_stats=update_stats)
            score = score + jnp.sum(embedding * h, axis=-1)
        return score


def clip_keys(key, rows, batch_size: int):
    """One key per clip, `key` folded with the clip's row (default rows 0..B-1): a clip's
    random draws depend on its place in the whole batch, not on how the batch is split."""
    rows = jnp.arange(batch_size) if rows is None else rows
    return jax.vmap(lambda row: jax.random.fold_in(key, row))(rows)


def _check_video(videos, num_frames: int, resolution: int, name: str):
    expected = (num_frames, resolution, resolution, 3)
    if videos.ndim != 5 or tuple(videos.shape[1:]) != expected:
        raise ValueError(
            f"{name} expects videos shaped [B, {num_frames}, {resolution}, {resolution}, 3] "
            f"(conditioning frames included); got {tuple(videos.shape)}."
        )


def _check_size(size: int, num_halvings: int, name: str):
    if size < 2**num_halvings:
        raise ValueError(
            f"{name}: a {size}x{size} input cannot be halved {num_halvings} times; use fewer "
            f"channel multipliers or a larger resolution."
        )


def _repeat_labels(labels, times: int):
    return None if labels is None else jnp.repeat(labels, times)


class SpatialDiscriminator(nn.Module):
    """D_S: samples k distinct frames per video uniformly at random (from the generated
    frames only, in DVD-GAN-FP), scores each at full resolution, and sums the k scores.

    videos: [B, T, H, W, 3] (conditioning frames first), labels: [B] -> scores [B].
    Needs the 'frames' rng.
    """

    num_frames: int
    resolution: int
    block_widths: tuple[int, ...]
    num_classes: int
    k_frames: int = 8
    num_conditioning_frames: int = 0
    sn_steps: int = 1
    remat: str = "none"
    dtype: Any = jnp.float32

    def setup(self):
        candidates = self.num_frames - self.num_conditioning_frames
        if not 1 <= self.k_frames <= candidates:
            raise ValueError(
                f"k_frames={self.k_frames} must be between 1 and the {candidates} generated "
                f"frames per video."
            )
        _check_size(self.resolution, len(self.block_widths) - 1, "SpatialDiscriminator")
        self.scorer = FrameScorer(
            self.block_widths,
            self.num_classes,
            sn_steps=self.sn_steps,
            remat=self.remat,
            dtype=self.dtype,
        )

    def __call__(self, videos, labels, train: bool = False, rows=None):
        """`rows` [B]: each clip's index in its whole batch (default 0..B-1); a clip's
        frames are drawn from the 'frames' rng folded with it, so they do not change when
        the batch is split into micro-batches."""
        _check_video(videos, self.num_frames, self.resolution, "SpatialDiscriminator")
        batch_size = videos.shape[0]
        candidates = self.num_frames - self.num_conditioning_frames
        keys = clip_keys(self.make_rng("frames"), rows, batch_size)
        noise = jax.vmap(lambda key: jax.random.uniform(key, (candidates,)))(keys)
        index = self.num_conditioning_frames + jnp.argsort(noise, axis=1)[:, : self.k_frames]
        frames = jnp.take_along_axis(videos, index[:, :, None, None, None], axis=1)
        scores = self.scorer(
            fold_time(frames.astype(self.dtype)),
            _repeat_labels(labels, self.k_frames),
            update_stats=train,
        )
        return jnp.sum(unfold_time(scores, batch_size), axis=1)


class TemporalDiscriminator(nn.Module):
    """D_T: phi(x) (2x2 average pooling by default), `num_3d_blocks` 3D residual blocks
    pooling x2 in space (and in time when `time_pooling`), then time folded into batch,
    2D blocks, a per-step score with projection, summed over time.

    videos: [B, T, H, W, 3], labels: [B] -> scores [B]. 'random_half_crop' needs the
    'frames' rng.
    """

    num_frames: int
    resolution: int
    block_widths: tuple[int, ...]
    num_classes: int
    input_transform: str = "avg2x2"
    num_3d_blocks: int = 2
    time_pooling: bool = True
    conv3d_impl: str = "auto"
    sn_steps: int = 1
    remat: str = "none"
    dtype: Any = jnp.float32

    def setup(self):
        if self.input_transform not in TEMPORAL_D_INPUTS:
            raise ValueError(
                f"Unknown temporal_d_input {self.input_transform!r}; use one of "
                f"{TEMPORAL_D_INPUTS}."
            )
        if not 0 <= self.num_3d_blocks < len(self.block_widths):
            raise ValueError(
                f"temporal_d_3d_blocks={self.num_3d_blocks} must leave at least one 2D block "
                f"of the {len(self.block_widths)} in dt_channel_multipliers."
            )
        if self.time_pooling and self.num_frames < 2**self.num_3d_blocks:
            raise ValueError(
                f"{self.num_frames} frames cannot be pooled x2 in time {self.num_3d_blocks} "
                f"times; set model.temporal_d_time_pooling=False or use more frames."
            )
        size = self.resolution // {"identity": 1, "avg4x4": 4}.get(self.input_transform, 2)
        _check_size(size, len(self.block_widths) - 1, "TemporalDiscriminator")
        common = dict(sn_steps=self.sn_steps, dtype=self.dtype)
        block_class = maybe_remat(DiscriminatorBlock, self.remat, static_argnums=(2,))
        self.blocks_3d = [
            block_class(
                width,
                downsample=True,
                preactivate=i > 0,
                time_kernel=True,
                pool_time=self.time_pooling,
                conv3d_impl=self.conv3d_impl,
                **common,
            )
            for i, width in enumerate(self.block_widths[: self.num_3d_blocks])
        ]
        self.scorer = FrameScorer(
            self.block_widths[self.num_3d_blocks :],
            self.num_classes,
            input_block=self.num_3d_blocks == 0,
            remat=self.remat,
            **common,
        )

    def phi(self, videos, rows=None):
        """The input transform: [B, T, H, W, 3] -> [B, T, H', W', 3]; a random crop's
        offsets per clip, from the 'frames' rng folded with its row (see D_S)."""
        if self.input_transform == "identity":
            return videos
        if self.input_transform == "random_half_crop":
            batch_size, _, height, width, _ = videos.shape
            keys = clip_keys(self.make_rng("frames"), rows, batch_size)

            def offset(key, axis, size):
                key = jax.random.fold_in(key, axis)
                return jax.random.randint(key, (), 0, size - size // 2 + 1)

            top = jax.vmap(lambda key: offset(key, 0, height))(keys)
            left = jax.vmap(lambda key: offset(key, 1, width))(keys)
            crop = (videos.shape[1], height // 2, width // 2, 3)
            return jax.vmap(lambda v, y, x: jax.lax.dynamic_slice(v, (0, y, x, 0), crop))(
                videos, top, left
            )
        factor = 4 if self.input_transform == "avg4x4" else 2
        pooled = avg_pool(fold_time(videos), (factor, factor))
        return unfold_time(pooled, videos.shape[0])

    def __call__(self, videos, labels, train: bool = False, rows=None):
        _check_video(videos, self.num_frames, self.resolution, "TemporalDiscriminator")
        batch_size = videos.shape[0]
        x = self.phi(videos, rows).astype(self.dtype)
        for block in self.blocks_3d:
            x = block(x, train)  # positional: static under remat
        steps = x.shape[1]
        scores = self.scorer(fold_time(x), _repeat_labels(labels, steps), update_stats=train)
        return jnp.sum(unfold_time(scores, batch_size), axis=1)
