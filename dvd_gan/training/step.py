"""The training step: `d_steps` discriminator updates, each on a fresh real batch and fresh
z, then one generator update and the EMA of G's weights (docs/design.md, section 2).

`train_step(state, batch, parts)` comes first and its parts follow in the order it calls
them: the discriminator's update and loss, the generator's update and loss, then what both
use. `parts` (networks, optimizers, settings, mesh) is fixed for a run and bound by
`jit_train_step`, the one place the step is jitted. Everything that varies from step to
step (the batch, and the step number inside the state) is an argument, so the step traces
once; random keys are `fold_in(base, step)`, split per update, so a step is a pure function
of (state, batch).
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from dvd_gan import losses, models, sharding
from dvd_gan.compiler import jit
from dvd_gan.models.discriminators import clip_keys
from dvd_gan.pixels import scale_to_unit_range
from dvd_gan.training import augment
from dvd_gan.training.accumulation import accumulated_gradients
from dvd_gan.training.state import (
    TrainState,
    discriminator_params,
    optimizers,
    state_shardings,
)

MUTABLE_G = ["batch_stats", models.SPECTRAL_STATS]
MUTABLE_D = [models.SPECTRAL_STATS]
AUGMENT_STREAM = 0xA06
MISMATCH_STREAM = 0x315
SWAP_STREAM = 0x5A9


@dataclasses.dataclass(frozen=True)
class StepParts:
    """What the train step is made of, fixed for a run."""

    generator: nn.Module
    spatial_d: nn.Module
    temporal_d: nn.Module
    g_optimizer: optax.GradientTransformation
    d_optimizer: optax.GradientTransformation
    train: ml_collections.ConfigDict  # config.train
    num_conditioning: int  # real frames that condition G (DVD-GAN-FP); 0 otherwise
    num_classes: int  # 0: unconditional
    z_dim: int
    augmentations: tuple[str, ...]  # DiffAugment's, before both discriminators
    mesh: Mesh | None  # with a mesh, z is laid out along its data axis like the real batch

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, mesh: Mesh | None) -> "StepParts":
        if config.train.mismatched_label_weight > 0 and config.model.num_classes < 2:
            raise ValueError(
                f"train.mismatched_label_weight={config.train.mismatched_label_weight} needs a "
                f"class-conditional model (model.num_classes >= 2, not "
                f"{config.model.num_classes}); set it to 0."
            )
        if config.train.mismatched_conditioning_weight > 0 and not (
            config.model.num_conditioning_frames
        ):
            raise ValueError(
                f"train.mismatched_conditioning_weight="
                f"{config.train.mismatched_conditioning_weight} needs a frame-conditional model "
                f"(model.num_conditioning_frames > 0, DVD-GAN-FP); set it to 0."
            )
        generator, spatial_d, temporal_d = models.build(config.model)
        g_optimizer, d_optimizer = optimizers(config.train)
        return cls(
            generator=generator,
            spatial_d=spatial_d,
            temporal_d=temporal_d,
            g_optimizer=g_optimizer,
            d_optimizer=d_optimizer,
            train=config.train,
            num_conditioning=config.model.num_conditioning_frames,
            num_classes=config.model.num_classes,
            z_dim=config.model.z_dim,
            augmentations=augment.parse(config.train.augment),
            mesh=mesh,
        )


def train_step(state: TrainState, batch: dict, parts: StepParts) -> tuple[TrainState, dict]:
    """One step: `d_steps` D updates, then one G update and G's EMA.

    batch: videos [d_steps, B, T, H, W, 3] (uint8, or float in [-1, 1]) and labels
    [d_steps, B] int32; in DVD-GAN-FP the first C frames of each real clip condition G.
    Returns the next state and the step's metrics (D's averaged over its updates)."""
    videos, labels = batch["videos"], batch["labels"]
    if videos.dtype == jnp.uint8:
        videos = scale_to_unit_range(videos)
    keys = update_keys(state, parts.train.d_steps)
    d_metrics = []
    for i in range(parts.train.d_steps):
        state, metrics = discriminator_update(state, videos[i], labels[i], keys[i], parts)
        d_metrics.append(metrics)
    c = parts.num_conditioning
    conditioning = videos[-1, :, :c] if c else None
    state, g_metrics = generator_update(state, labels[-1], conditioning, keys[-1], parts)
    metrics = jax.tree_util.tree_map(lambda *m: jnp.mean(jnp.stack(m)), *d_metrics)
    return state.replace(step=state.step + 1), {**metrics, **g_metrics}


def update_keys(state: TrainState, d_steps: int) -> jax.Array:
    """The keys of a step's updates, [d_steps + 1]: D's, then G's."""
    base = jax.random.wrap_key_data(state.rng)
    return jax.random.split(jax.random.fold_in(base, state.step), d_steps + 1)


def update_inputs(key: jax.Array, batch_size: int, parts: StepParts) -> tuple[jax.Array, dict]:
    """An update's z [B, z_dim] and its rngs for the discriminators' random frames/crops."""
    z_key, frames_key = jax.random.split(key)
    z = jax.random.normal(z_key, (batch_size, parts.z_dim), jnp.float32)
    if parts.mesh is not None:
        z = jax.lax.with_sharding_constraint(z, sharding.row_sharding(parts.mesh))
    return z, {"frames": frames_key}


# -- The discriminator.


def discriminator_update(state: TrainState, videos, labels, key, parts: StepParts):
    """One update of D_S and D_T on real clips [B, T, H, W, 3] and fakes from fresh z."""
    batch_size = videos.shape[0]
    z, rngs = update_inputs(key, batch_size, parts)
    loss = functools.partial(discriminator_batch_loss, state=state, key=key, rngs=rngs, parts=parts)
    d_params, d_opt_state, grad_norm, (metrics, ds_stats, dt_stats, g_stats) = gradient_step(
        loss,
        discriminator_params(state),
        (videos, z, labels, jnp.arange(batch_size)),
        parts.d_optimizer,
        state.d_opt_state,
        parts,
    )
    metrics["d_grad_norm"] = grad_norm
    state = state.replace(
        generator={**state.generator, **g_stats},
        spatial_d={**ds_stats, "params": d_params["spatial"]},
        temporal_d={**dt_stats, "params": d_params["temporal"]},
        d_opt_state=d_opt_state,
    )
    return state, metrics


def discriminator_batch_loss(d_params, real, z, labels, rows, index, *, state, key, rngs, parts):
    """D's loss on one (micro-)batch of real clips [b, T, H, W, 3] and the fakes G makes
    from its z [b, z_dim] (G normalising them by the micro-batch's statistics, as BigGAN's
    reference code does in each accumulation, so the whole batch's fakes are never in
    memory at once). `rows` [b]: the clips' places in the whole batch, which draw D's
    random frames and crops; D has no BatchNorm, so given the clips, micro-batches change
    nothing but the order of sums. Returns (loss, (metrics, D_S's and D_T's spectral-norm
    statistics, G's statistics))."""
    batch_size = real.shape[0] * parts.train.accumulation_steps
    c = parts.num_conditioning
    conditioning = real[:, :c] if c else None
    fake, g_stats = generate(state.generator, z, labels, conditioning, parts)
    both = augmented(jnp.concatenate([real, jax.lax.stop_gradient(fake)]), key, index, parts)
    augmented_real = both[: real.shape[0]]
    scored, scored_labels, scored_rows = [both], [labels, labels], [rows, rows + batch_size]
    train = parts.train
    if train.mismatched_label_weight > 0:
        # The real clips once more, each with another class: scored as fakes, they make the
        # projection tell classes apart while the clips' realism alone already separates
        # real from fake (not in the paper; docs/design.md, section 6).
        scored.append(augmented_real)
        scored_labels.append(mismatched_labels(labels, rows, key, parts.num_classes))
        scored_rows.append(rows)
    if train.mismatched_conditioning_weight > 0:
        # Each real continuation after another clip's conditioning frames, scored by D_T as
        # a fake, so that D_T checks that a continuation follows its conditioning frames
        # (not in the paper; docs/design.md, section 6).
        swapped = swapped_conditioning(real, c)
        scored.append(augmented(swapped, jax.random.fold_in(key, SWAP_STREAM), index, parts))
        scored_labels.append(labels)
        scored_rows.append(rows)
    spatial_vars = {**state.spatial_d, "params": d_params["spatial"]}
    temporal_vars = {**state.temporal_d, "params": d_params["temporal"]}
    (ds_scores, dt_scores), (ds_stats, dt_stats) = discriminator_scores(
        spatial_vars,
        temporal_vars,
        jnp.concatenate(scored),
        jnp.concatenate(scored_labels),
        jnp.concatenate(scored_rows),
        rngs,
        parts,
        train=True,
    )
    real_s, fake_s, *extra_s = jnp.split(ds_scores, len(scored_rows))
    real_t, fake_t, *extra_t = jnp.split(dt_scores, len(scored_rows))
    total, terms = losses.discriminator_loss(real_s, fake_s, real_t, fake_t)
    metrics = {}
    if train.mismatched_label_weight > 0:
        wrong_s, wrong_t = extra_s.pop(0), extra_t.pop(0)
        mismatch = losses.mismatched_label_loss(wrong_s, wrong_t)
        total = total + train.mismatched_label_weight * mismatch
        metrics |= {
            "d_loss_mismatched": mismatch,
            "ds_real_mismatched": jnp.mean(wrong_s),
            "dt_real_mismatched": jnp.mean(wrong_t),
        }
    if train.mismatched_conditioning_weight > 0:
        # D_S's scores of these clips are left out: it sees only their real continuation.
        swapped_t = extra_t.pop(0)
        swap_loss = losses.hinge_fake_loss(swapped_t)
        total = total + train.mismatched_conditioning_weight * swap_loss
        metrics |= {
            "d_loss_mismatched_conditioning": swap_loss,
            "dt_real_mismatched_conditioning": jnp.mean(swapped_t),
        }
    if train.r1_gamma > 0:
        # Lazy R1 (not in the paper): every r1_every-th step only, scaled up to match.
        penalty = jax.lax.cond(
            state.step % train.r1_every == 0,
            lambda v: r1_penalty(*v, augmented_real, labels, rows, rngs, parts),
            lambda v: jnp.zeros((), jnp.float32),
            (spatial_vars, temporal_vars),
        )
        total = total + 0.5 * train.r1_gamma * train.r1_every * penalty
        metrics["r1_penalty"] = penalty
    metrics |= {
        "d_loss": total,
        "d_loss_spatial": terms["spatial"],
        "d_loss_temporal": terms["temporal"],
        "ds_real": jnp.mean(real_s),
        "ds_fake": jnp.mean(fake_s),
        "dt_real": jnp.mean(real_t),
        "dt_fake": jnp.mean(fake_t),
    }
    return total, (metrics, ds_stats, dt_stats, g_stats)


def mismatched_labels(labels, rows, key, num_classes: int):
    """labels [b] -> another class for each clip [b], uniform over the other classes, drawn
    from the clip's row in the whole batch (so micro-batches draw the same)."""
    keys = clip_keys(jax.random.fold_in(key, MISMATCH_STREAM), rows, rows.shape[0])
    offsets = jax.vmap(lambda k: jax.random.randint(k, (), 1, num_classes))(keys)
    return (labels + offsets) % num_classes


def swapped_conditioning(real, num_conditioning: int):
    """real [b, T, H, W, 3] -> each clip's continuation after the previous clip's (cyclically)
    first `num_conditioning` frames, [b, T, H, W, 3]."""
    if real.shape[0] < 2:
        raise ValueError(
            "train.mismatched_conditioning_weight needs micro-batches of at least 2 clips, to "
            "take each clip's conditioning frames from another; lower "
            "train.accumulation_steps or set the weight to 0."
        )
    others = jnp.roll(real[:, :num_conditioning], 1, axis=0)
    return jnp.concatenate([others, real[:, num_conditioning:]], axis=1)


def r1_penalty(spatial_vars, temporal_vars, real, labels, rows, rngs, parts: StepParts):
    """Mean over clips of |d(D_S + D_T)/d pixels|^2 at the real clips (Mescheder et al.,
    2018); D's spectral-norm vectors are read, not updated."""

    def total_score(videos):
        scores, _ = discriminator_scores(
            spatial_vars, temporal_vars, videos, labels, rows, rngs, parts, train=False
        )
        return jnp.sum(scores[0] + scores[1])

    grads = jax.grad(total_score)(real)
    return jnp.mean(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))))


# -- The generator.


def generator_update(state: TrainState, labels, conditioning, key, parts: StepParts):
    """One update of G on fresh z (labels [B]; DVD-GAN-FP's conditioning frames
    [B, C, H, W, 3] or None), then G's EMA."""
    batch_size = labels.shape[0]
    z, rngs = update_inputs(key, batch_size, parts)
    loss = functools.partial(generator_batch_loss, state=state, key=key, rngs=rngs, parts=parts)
    g_params, g_opt_state, grad_norm, (metrics, g_stats) = gradient_step(
        loss,
        state.generator["params"],
        (z, labels, conditioning, jnp.arange(batch_size)),
        parts.g_optimizer,
        state.g_opt_state,
        parts,
    )
    metrics["g_grad_norm"] = grad_norm
    # Before ema_start the EMA is a copy of G (docs/design.md, section 2).
    train = parts.train
    decay = jnp.where(state.step >= train.ema_start, train.ema_decay, 0.0)
    ema_params = jax.tree_util.tree_map(
        lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, g_params
    )
    state = state.replace(
        generator={**g_stats, "params": g_params},
        ema_params=ema_params,
        g_opt_state=g_opt_state,
    )
    return state, metrics


def generator_batch_loss(
    g_params, z, labels, conditioning, rows, index, *, state, key, rngs, parts
):
    """G's loss on one (micro-)batch of z [b, z_dim]; BatchNorm normalises the micro-batch
    by its own statistics (cross-replica within it). D's spectral-norm statistics are
    updated by D's own updates only. Returns (loss, (metrics, G's statistics))."""
    fake, g_stats = generate(
        {**state.generator, "params": g_params}, z, labels, conditioning, parts
    )
    fake = augmented(fake, key, index, parts)
    (ds, dt), _ = discriminator_scores(
        state.spatial_d, state.temporal_d, fake, labels, rows, rngs, parts, train=False
    )
    loss = losses.generator_loss(ds, dt)
    return loss, ({"g_loss": loss, "ds_fake_g": jnp.mean(ds)}, g_stats)


# -- What both updates use.


def gradient_step(loss, params, batch, optimizer, opt_state, parts: StepParts):
    """One optimizer step on `loss(params, *batch, index) -> (value, aux)`, its gradient
    accumulated over the batch's micro-batches. Returns (params, optimizer state, the
    gradient's global norm, aux)."""
    grads, aux = accumulated_gradients(
        jax.grad(loss, has_aux=True),
        params,
        batch,
        parts.train.accumulation_steps,
        parts.mesh,
    )
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, optax.global_norm(grads), aux


def generate(g_vars, z, labels, conditioning, parts: StepParts):
    """A full fake video [b, T, H, W, 3] (conditioning frames first) and G's updated
    statistics."""
    generated, g_stats = parts.generator.apply(
        g_vars, z, labels, conditioning=conditioning, train=True, mutable=MUTABLE_G
    )
    if parts.num_conditioning:
        generated = jnp.concatenate([conditioning, generated], axis=1)
    return generated, g_stats


def discriminator_scores(
    spatial_vars, temporal_vars, videos, labels, rows, rngs, parts: StepParts, train: bool
):
    """(D_S's scores [N], D_T's scores [N]) of videos [N, T, H, W, 3], and their spectral-norm
    statistics after the call (advanced by a power iteration only when `train`)."""
    kwargs = dict(train=train, rows=rows, rngs=rngs, mutable=MUTABLE_D)
    ds, ds_stats = parts.spatial_d.apply(spatial_vars, videos, labels, **kwargs)
    dt, dt_stats = parts.temporal_d.apply(temporal_vars, videos, labels, **kwargs)
    return (ds, dt), (ds_stats, dt_stats)


def augmented(videos, key, index, parts: StepParts):
    """DiffAugment before both discriminators when train.augment names any; its key is
    folded from the update's, so the other random streams do not depend on it, and with
    micro-batches from micro-batch `index`'s, so each draws its own."""
    if not parts.augmentations:
        return videos
    if parts.train.accumulation_steps > 1:
        key = jax.random.fold_in(key, index)
    return augment.augment(videos, jax.random.fold_in(key, AUGMENT_STREAM), parts.augmentations)


# -- Compiled for a mesh.


def check_accumulation(config: ml_collections.ConfigDict, mesh: Mesh):
    """A clear error unless train.accumulation_steps splits the batch into equal
    micro-batches that the mesh's data axis divides."""
    steps, batch = config.train.accumulation_steps, config.batch_size
    shards = mesh.shape[sharding.DATA_AXIS]
    if steps < 1 or batch % steps or (batch // steps) % shards:
        raise ValueError(
            f"train.accumulation_steps={steps} must split batch_size={batch} into micro-"
            f"batches that the {shards} data shards divide: batch_size must be a multiple of "
            f"accumulation_steps x {shards} = {max(steps, 1) * shards}."
        )


def jit_train_step(config: ml_collections.ConfigDict, mesh: Mesh, trace_ops: bool = False):
    """`step(state, batch) -> (state, metrics)` as training runs it: `train_step` with this
    run's parts, jitted for the mesh's state and batch layouts, the state donated.
    `trace_ops` makes XLA:CPU record every op in profiles."""
    check_accumulation(config, mesh)
    platform = mesh.devices.flat[0].platform
    trace = {"xla_cpu_enable_xprof_traceme": True} if trace_ops and platform == "cpu" else None
    shardings = state_shardings(config, mesh)
    return jit(
        functools.partial(train_step, parts=StepParts.from_config(config, mesh)),
        platform=platform,
        extra_options=trace,
        in_shardings=(shardings, sharding.stacked_batch_sharding(mesh)),
        out_shardings=(shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )
