"""The training step: `d_steps` discriminator updates, each on a fresh real batch and fresh
z, then one generator update and the EMA of G's weights (docs/design.md, section 2).

One function, jitted once over the device mesh by `training.loop`; everything that varies
from step to step (the batch, and the step number inside the state) is an argument, so it
traces once. Random keys are `fold_in(base, step)`, split per update, so a step is a pure
function of (state, batch).
"""

import contextlib
import math
import re

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from dvd_gan import losses, models, sharding
from dvd_gan.compiler import jit
from dvd_gan.pixels import scale_to_unit_range
from dvd_gan.training import augment
from dvd_gan.training.state import (
    TrainState,
    discriminator_params,
    optimizers,
    state_shardings,
)

MUTABLE_G = ["batch_stats", models.SPECTRAL_STATS]
AUGMENT_STREAM = 0xA06
MUTABLE_D = [models.SPECTRAL_STATS]


def _with_params(variables: dict, params) -> dict:
    return {**variables, "params": params}


def micro_batches(batch, steps: int, mesh: Mesh | None = None):
    """[B, ...] arrays -> [steps, B / steps, ...]: micro-batch j holds rows j, j + steps,
    j + 2 * steps, ..., so every device's contiguous share of the batch holds its share of
    every micro-batch (no rows move between devices). With a `mesh`, the result is
    constrained to that layout: each micro-batch's rows split over the data axis."""

    def split(x):
        x = x.reshape(x.shape[0] // steps, steps, *x.shape[1:]).swapaxes(0, 1)
        if mesh is None:
            return x
        return jax.lax.with_sharding_constraint(x, sharding.stacked_batch_sharding(mesh))

    return jax.tree_util.tree_map(split, batch)


def accumulated_gradients(grad_fn, params, batch, steps: int, mesh: Mesh | None = None):
    """`grad_fn(params, *batch, index) -> (grads, (metrics, *state))` over the whole batch,
    as `steps` micro-batches run one after another (a scan, so only one micro-batch's
    activations are live) whose gradients and metrics are averaged; the other outputs are
    the last micro-batch's. With equal micro-batches and a loss that is a mean over rows,
    the averaged gradient is the full batch's.

    With a `mesh`, the micro-batches are constrained to keep each one's rows split over
    its data axis (`micro_batches`), so that no partitioner's choice can gather a
    micro-batch onto every device."""
    if steps == 1:
        return grad_fn(params, *batch, 0)

    def body(total, inputs):
        index, micro = inputs
        grads, (metrics, *rest) = grad_fn(params, *micro, index)
        total = jax.tree_util.tree_map(jnp.add, total, (grads, metrics))
        return total, rest

    micro = micro_batches(batch, steps, mesh)
    first = jax.tree_util.tree_map(lambda x: x[0], micro)
    _, (metric_shapes, *_) = jax.eval_shape(lambda: grad_fn(params, *first, 0))
    zeros = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), (params, metric_shapes))
    (grads, metrics), rest = jax.lax.scan(body, zeros, (jnp.arange(steps), micro))
    average = jax.tree_util.tree_map(lambda x: x / steps, (grads, metrics))
    return average[0], (average[1], *jax.tree_util.tree_map(lambda x: x[-1], rest))


def make_train_step(config: ml_collections.ConfigDict, mesh: Mesh | None):
    """Returns `train_step(state, batch) -> (state, metrics)`.

    batch: videos [d_steps, B, T, H, W, 3] (uint8, or float in [-1, 1]) and labels
    [d_steps, B] int32; in DVD-GAN-FP the first C frames of each real clip condition G.
    With a `mesh`, z is laid out along its data axis, like the real batch, so that G runs
    data-parallel rather than replicated.
    """
    generator, spatial_d, temporal_d = models.build(config.model)
    g_tx, d_tx = optimizers(config.train)
    num_conditioning = config.model.num_conditioning_frames
    d_steps, z_dim = config.train.d_steps, config.model.z_dim
    train_config = config.train
    accumulation = config.train.accumulation_steps
    augmentations = augment.parse(config.train.augment)

    def augmented(videos, key, index):
        """DiffAugment before both discriminators when train.augment names any; its key is
        folded from the update's, so the other random streams do not depend on it, and
        with micro-batches from micro-batch `index`'s, so each draws its own."""
        if not augmentations:
            return videos
        if accumulation > 1:
            key = jax.random.fold_in(key, index)
        return augment.augment(videos, jax.random.fold_in(key, AUGMENT_STREAM), augmentations)

    def sample_z(key, batch_size):
        z = jax.random.normal(key, (batch_size, z_dim), jnp.float32)
        if mesh is None:
            return z
        return jax.lax.with_sharding_constraint(z, sharding.row_sharding(mesh))

    def generate(g_vars, z, labels, conditioning):
        """A full fake video (conditioning frames first) and G's updated statistics."""
        generated, g_stats = generator.apply(
            g_vars, z, labels, conditioning=conditioning, train=True, mutable=MUTABLE_G
        )
        if num_conditioning:
            generated = jnp.concatenate([conditioning, generated], axis=1)
        return generated, g_stats

    def r1_penalty(state: TrainState, d_params, real, labels, rows, rngs):
        """Mean over clips of |d(D_S + D_T)/d pixels|^2 at the real clips (Mescheder et
        al., 2018); D's spectral-norm vectors are read, not updated."""

        def total_score(videos):
            ds = spatial_d.apply(
                _with_params(state.spatial_d, d_params["spatial"]),
                videos,
                labels,
                rows=rows,
                rngs=rngs,
            )
            dt = temporal_d.apply(
                _with_params(state.temporal_d, d_params["temporal"]),
                videos,
                labels,
                rows=rows,
                rngs=rngs,
            )
            return jnp.sum(ds + dt)

        grads = jax.grad(total_score)(real)
        return jnp.mean(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))))

    def d_update(state: TrainState, videos, labels, key):
        z_key, frames_key = jax.random.split(key)
        batch_size = videos.shape[0]
        z = sample_z(z_key, batch_size)
        rngs = {"frames": frames_key}
        # Lazy R1 (not in the paper): every r1_every-th step only, scaled up to match.
        r1_now = state.step % train_config.r1_every == 0

        def loss_fn(d_params, real, z, labels, rows, index):
            """D's loss on one (micro-)batch: its fake clips made from its z (G normalising
            them by the micro-batch's statistics, as BigGAN's reference code does in each
            accumulation, so the whole batch's fakes are never in memory at once), then D on
            real and fake clips (`rows`: their places in the whole batch). D has no
            BatchNorm: given the clips, micro-batches change nothing but the order of sums."""
            conditioning = real[:, :num_conditioning] if num_conditioning else None
            fake, g_stats = generate(state.generator, z, labels, conditioning)
            both = augmented(jnp.concatenate([real, jax.lax.stop_gradient(fake)]), key, index)
            real = both[: real.shape[0]]
            both_labels = jnp.concatenate([labels, labels])
            both_rows = jnp.concatenate([rows, rows + batch_size])
            ds_scores, ds_stats = spatial_d.apply(
                _with_params(state.spatial_d, d_params["spatial"]),
                both,
                both_labels,
                train=True,
                rows=both_rows,
                rngs=rngs,
                mutable=MUTABLE_D,
            )
            dt_scores, dt_stats = temporal_d.apply(
                _with_params(state.temporal_d, d_params["temporal"]),
                both,
                both_labels,
                train=True,
                rows=both_rows,
                rngs=rngs,
                mutable=MUTABLE_D,
            )
            real_s, fake_s = jnp.split(ds_scores, 2)
            real_t, fake_t = jnp.split(dt_scores, 2)
            total, parts = losses.discriminator_loss(real_s, fake_s, real_t, fake_t)
            metrics = {}
            if train_config.r1_gamma > 0:
                penalty = jax.lax.cond(
                    r1_now,
                    lambda p: r1_penalty(state, p, real, labels, rows, rngs),
                    lambda p: jnp.zeros((), jnp.float32),
                    d_params,
                )
                total = total + 0.5 * train_config.r1_gamma * train_config.r1_every * penalty
                metrics["r1_penalty"] = penalty
            metrics |= {
                "d_loss": total,
                "d_loss_spatial": parts["spatial"],
                "d_loss_temporal": parts["temporal"],
                "ds_real": jnp.mean(real_s),
                "ds_fake": jnp.mean(fake_s),
                "dt_real": jnp.mean(real_t),
                "dt_fake": jnp.mean(fake_t),
            }
            return total, (metrics, ds_stats, dt_stats, g_stats)

        d_params = discriminator_params(state)
        grads, (metrics, ds_stats, dt_stats, g_stats) = accumulated_gradients(
            jax.grad(loss_fn, has_aux=True),
            d_params,
            (videos, z, labels, jnp.arange(batch_size)),
            accumulation,
            mesh,
        )
        updates, d_opt_state = d_tx.update(grads, state.d_opt_state, d_params)
        d_params = optax.apply_updates(d_params, updates)
        metrics["d_grad_norm"] = optax.global_norm(grads)
        state = state.replace(
            generator={**state.generator, **g_stats},
            spatial_d={**ds_stats, "params": d_params["spatial"]},
            temporal_d={**dt_stats, "params": d_params["temporal"]},
            d_opt_state=d_opt_state,
        )
        return state, metrics

    def g_update(state: TrainState, labels, conditioning, key):
        z_key, frames_key = jax.random.split(key)
        z = sample_z(z_key, labels.shape[0])

        def loss_fn(g_params, z, labels, conditioning, rows, index):
            """G's loss on one (micro-)batch; BatchNorm normalises each micro-batch by its
            own statistics (cross-replica within it)."""
            fake, g_stats = generate(
                _with_params(state.generator, g_params), z, labels, conditioning
            )
            fake = augmented(fake, key, index)
            # D's spectral-norm statistics are updated by D's own steps only. D_T needs the
            # 'frames' rng too when its input transform is a random crop.
            rngs = {"frames": frames_key}
            ds = spatial_d.apply(state.spatial_d, fake, labels, rows=rows, rngs=rngs)
            dt = temporal_d.apply(state.temporal_d, fake, labels, rows=rows, rngs=rngs)
            loss = losses.generator_loss(ds, dt)
            return loss, ({"g_loss": loss, "ds_fake_g": jnp.mean(ds)}, g_stats)

        g_params = state.generator["params"]
        grads, (metrics, g_stats) = accumulated_gradients(
            jax.grad(loss_fn, has_aux=True),
            g_params,
            (z, labels, conditioning, jnp.arange(labels.shape[0])),
            accumulation,
            mesh,
        )
        updates, g_opt_state = g_tx.update(grads, state.g_opt_state, g_params)
        g_params = optax.apply_updates(g_params, updates)
        metrics["g_grad_norm"] = optax.global_norm(grads)
        # Before ema_start the EMA is a copy of G (docs/design.md, section 2).
        decay = jnp.where(state.step >= train_config.ema_start, train_config.ema_decay, 0.0)
        ema_params = jax.tree_util.tree_map(
            lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, g_params
        )
        state = state.replace(
            generator={**g_stats, "params": g_params},
            ema_params=ema_params,
            g_opt_state=g_opt_state,
        )
        return state, metrics

    def train_step(state: TrainState, batch: dict):
        videos, labels = batch["videos"], batch["labels"]
        if videos.dtype == jnp.uint8:
            videos = scale_to_unit_range(videos)
        keys = jax.random.split(
            jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step), d_steps + 1
        )
        d_metrics = []
        for i in range(d_steps):
            state, metrics = d_update(state, videos[i], labels[i], keys[i])
            d_metrics.append(metrics)
        conditioning = videos[-1, :, :num_conditioning] if num_conditioning else None
        state, g_metrics = g_update(state, labels[-1], conditioning, keys[-1])
        metrics = jax.tree_util.tree_map(lambda *m: jnp.mean(jnp.stack(m)), *d_metrics)
        return state.replace(step=state.step + 1), {**metrics, **g_metrics}

    return train_step


class DoesNotFitError(RuntimeError):
    """The train step needs more memory per device than the device has; the message says
    which settings fit."""


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT])i?B?\b")
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def memory_advice(
    error_text: str, config: ml_collections.ConfigDict, shards: int = 1
) -> str | None:
    """For XLA's out-of-memory error, one line: what the step needs and what the device has
    (XLA's own figures, where its message gives them) and the settings that fit, leaving
    out those already in force: more accumulation steps (only counts that split the batch
    over the `shards` data shards), `remat=full`, bfloat16, parameter sharding. None for
    any other error."""
    if "RESOURCE_EXHAUSTED" not in error_text and "Out of memory" not in error_text:
        return None
    sizes = [float(n) * _UNITS[u] for n, u in _SIZE.findall(error_text)]
    steps = config.train.accumulation_steps
    factor = 2
    figures = "XLA ran out of device memory compiling or running the train step"
    if len(sizes) >= 2 and sizes[1] > 0:
        need, have = sizes[0], sizes[1]
        factor = max(2, math.ceil(need / have))
        figures = (
            f"the train step needs {need / 2**30:.2f} GiB per device, which has "
            f"{have / 2**30:.2f} GiB"
        )
    fixes = []
    valid = [
        n for n in range(steps + 1, config.batch_size + 1) if config.batch_size % (n * shards) == 0
    ]
    if valid:
        suggested = next((n for n in valid if n >= steps * factor), valid[-1])
        fixes.append(
            f"--config.train.accumulation_steps={suggested} (micro-batches of "
            f"{config.batch_size // suggested})"
        )
    if config.model.remat != "full":
        fixes.append("--config.model.remat=full")
    if config.model.dtype != "bfloat16":
        fixes.append("--config.model.dtype=bfloat16")
    fixes.append(
        "--config.mesh.model_axis=N (parameters split over N devices)"
        if config.mesh.model_axis == 1
        else "more devices on the model axis"
    )
    return f"{figures}. Fit it with {', or '.join(fixes)} (docs/scaling.md)."


@contextlib.contextmanager
def out_of_memory_explained(config: ml_collections.ConfigDict, shards: int = 1):
    """Turns XLA's out-of-memory error inside the block (compiling or running the train
    step over `shards` data shards) into a DoesNotFitError saying which settings fit
    (`memory_advice`)."""
    try:
        yield
    except jax.errors.JaxRuntimeError as error:
        advice = memory_advice(str(error), config, shards)
        if advice is None:
            raise
        raise DoesNotFitError(advice) from None


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
    """The train step as training runs it: jitted for the mesh's state and batch layouts,
    the state donated. `trace_ops` makes XLA:CPU record every op in profiles."""
    check_accumulation(config, mesh)
    platform = mesh.devices.flat[0].platform
    trace = {"xla_cpu_enable_xprof_traceme": True} if trace_ops and platform == "cpu" else None
    shardings = state_shardings(config, mesh)
    return jit(
        make_train_step(config, mesh),
        platform=platform,
        extra_options=trace,
        in_shardings=(shardings, sharding.stacked_batch_sharding(mesh)),
        out_shardings=(shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )
