"""Builds the three networks from a model config and initialises them."""

import jax
import jax.numpy as jnp
import ml_collections

from dvd_gan.models.architecture import discriminator_multipliers, generator_multipliers
from dvd_gan.models.discriminators import SpatialDiscriminator, TemporalDiscriminator
from dvd_gan.models.generator import Generator
from dvd_gan.models.layers import resolve_conv3d_impl

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def resolve_dtype(name: str, platform: str | None = None) -> str:
    """The compute dtype `model.dtype` names on `platform` (default: JAX's default
    backend): 'auto' is bfloat16 on TPUs and GPUs, where the paper configs need it to fit a
    core and their matrix units run it at full rate, and float32 on CPUs, which emulate
    bfloat16 arithmetic slowly."""
    if name == "auto":
        return "float32" if (platform or jax.default_backend()) == "cpu" else "bfloat16"
    if name not in DTYPES:
        raise ValueError(f"model.dtype={name!r}; use 'auto' or one of {sorted(DTYPES)}.")
    return name


def resolve_platform_settings(model_config: ml_collections.ConfigDict, platform: str):
    """Fixes the settings that 'auto' leaves to the platform (`model.dtype`,
    `model.conv3d_impl`) for the devices a run or an ahead-of-time compile targets, which
    need not be this host's: a TPU program compiled on a CPU host gets the TPU's choices."""
    model_config.dtype = resolve_dtype(model_config.dtype, platform)
    model_config.conv3d_impl = resolve_conv3d_impl(model_config.conv3d_impl, platform)


def build(model_config: ml_collections.ConfigDict):
    """Returns `(generator, spatial_d, temporal_d)` as unbound Flax modules."""
    dtype = DTYPES[resolve_dtype(model_config.dtype)]
    resolution = model_config.resolution
    if model_config.num_conditioning_frames >= model_config.num_frames:
        raise ValueError(
            f"num_conditioning_frames={model_config.num_conditioning_frames} leaves no frame to "
            f"generate out of num_frames={model_config.num_frames}."
        )
    d_multipliers = discriminator_multipliers(resolution, model_config.d_channel_multipliers)
    dt_multipliers = discriminator_multipliers(
        resolution, model_config.dt_channel_multipliers or d_multipliers, "dt_channel_multipliers"
    )
    common = dict(
        num_frames=model_config.num_frames,
        resolution=resolution,
        num_classes=model_config.num_classes,
        sn_steps=model_config.spectral_norm_steps,
        remat=model_config.remat,
        dtype=dtype,
    )
    generator = Generator(
        ch=model_config.ch,
        channel_multipliers=generator_multipliers(resolution, model_config.g_channel_multipliers),
        conditioning_multipliers=d_multipliers,
        z_dim=model_config.z_dim,
        class_embedding_dim=model_config.class_embedding_dim,
        num_conditioning_frames=model_config.num_conditioning_frames,
        gru_kernel_size=model_config.gru_kernel_size,
        gru_candidate_activation=model_config.gru_candidate_activation,
        upsample_method=model_config.g_upsample,
        bn_momentum=model_config.bn_momentum,
        bn_epsilon=model_config.bn_epsilon,
        class_embedding_spectral_norm=model_config.g_class_embedding_spectral_norm,
        # A run saved before the field existed was initialised with rows of norm 1.
        class_embedding_scale=model_config.get("g_class_embedding_scale", 1.0),
        output_channels=model_config.output_channels,
        **common,
    )
    spatial_d = SpatialDiscriminator(
        block_widths=tuple(model_config.d_ch * m for m in d_multipliers),
        k_frames=model_config.k_frames,
        num_conditioning_frames=model_config.num_conditioning_frames,
        **common,
    )
    temporal_d = TemporalDiscriminator(
        block_widths=tuple(model_config.d_ch * m for m in dt_multipliers),
        input_transform=model_config.temporal_d_input,
        num_3d_blocks=model_config.temporal_d_3d_blocks,
        time_pooling=model_config.temporal_d_time_pooling,
        conv3d_impl=model_config.conv3d_impl,
        **common,
    )
    return generator, spatial_d, temporal_d


def example_inputs(model_config: ml_collections.ConfigDict, batch_size: int):
    """Zero inputs of the right shapes: z [B, z_dim], labels [B], videos [B, T, H, W, 3] and
    conditioning [B, C, H, W, 3] (None when C == 0)."""
    size = model_config.resolution
    c = model_config.num_conditioning_frames
    videos = jnp.zeros((batch_size, model_config.num_frames, size, size, 3), jnp.float32)
    return dict(
        z=jnp.zeros((batch_size, model_config.z_dim), jnp.float32),
        labels=jnp.zeros((batch_size,), jnp.int32),
        videos=videos,
        conditioning=videos[:, :c] if c else None,
    )


def init(model_config: ml_collections.ConfigDict, rng, batch_size: int = 1):
    """Initial variables `(g_vars, ds_vars, dt_vars)` of the three networks."""
    generator, spatial_d, temporal_d = build(model_config)
    x = example_inputs(model_config, batch_size)
    g_key, ds_key, dt_key, frames_key = jax.random.split(rng, 4)
    g_vars = generator.init(
        {"params": g_key}, x["z"], x["labels"], conditioning=x["conditioning"], train=False
    )
    ds_vars = spatial_d.init(
        {"params": ds_key, "frames": frames_key}, x["videos"], x["labels"], train=False
    )
    dt_vars = temporal_d.init(
        {"params": dt_key, "frames": frames_key}, x["videos"], x["labels"], train=False
    )
    return g_vars, ds_vars, dt_vars


def count_parameters(model_config: ml_collections.ConfigDict) -> dict[str, int]:
    """Trainable parameter counts of G, D_S and D_T, from shapes alone (nothing allocated)."""
    shapes = jax.eval_shape(lambda key: init(model_config, key), jax.random.key(0))
    return {
        name: sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables["params"]))
        for name, variables in zip(("G", "D_S", "D_T"), shapes, strict=True)
    }
