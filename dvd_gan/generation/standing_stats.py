"""Standing statistics: the BatchNorm statistics that belong to the EMA generator.

G's running averages are those of the raw weights; the EMA weights lag them by about
1 / (1 - decay) steps, so pairing the two samples a network that never existed. As BigGAN
does for its EMA generator, every sample and evaluation instead first runs the EMA weights
in train mode over `eval.standing_stats_batches` batches of fresh z (and labels, and real
conditioning frames in DVD-GAN-FP) and uses the mean over those batches of each per-time-step
batch mean and variance. The spectral-norm vectors are carried through the same passes, so
they converge to the EMA weights' own singular vectors. With 0 batches the raw generator's
statistics are used as they are. Sampling with truncated z (`dvd_gan.sample
--truncation`) draws the standing batches' z with the same scale, as BigGAN recomputes its
standing statistics per truncation.
"""

import copy
import hashlib
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from flax import serialization
from jax.sharding import Mesh

from dvd_gan import models, sharding
from dvd_gan.compiler import jit

STATISTICS = ("batch_stats", models.SPECTRAL_STATS)


def standing_inputs(
    config: ml_collections.ConfigDict, key: jax.Array, size: int, truncation: float = 1.0
):
    """One standing batch's z ~ N(0, truncation^2 I) [size, z_dim] and uniformly drawn
    labels [size]."""
    z_key, label_key = jax.random.split(key)
    z = truncation * jax.random.normal(z_key, (size, config.model.z_dim), jnp.float32)
    labels = jax.random.randint(label_key, (size,), 0, max(config.model.num_classes, 1))
    return z, labels


def _batch_statistics_function(
    config: ml_collections.ConfigDict, mesh: Mesh | None, truncation: float
):
    """`fn(ema_params, g_vars, key, conditioning) -> (batch_stats, spectral_stats)` of one
    batch of `batch_size(config)` fresh z: a G whose BatchNorm momentum is 0 stores the
    batch's own statistics as its 'running' ones."""
    model_config = copy.deepcopy(config.model)
    model_config.bn_momentum = 0.0
    generator = models.build(model_config)[0]
    size = batch_size(config)

    def rows(x):
        if not splits_rows(config, mesh):
            return x
        return jax.lax.with_sharding_constraint(x, sharding.row_sharding(mesh))

    def batch_statistics(ema_params, g_vars, key, conditioning):
        z, labels = jax.tree.map(rows, standing_inputs(config, key, size, truncation))
        _, updated = generator.apply(
            {**g_vars, "params": ema_params},
            z,
            labels,
            conditioning=conditioning,
            train=True,
            mutable=list(STATISTICS),
        )
        return updated["batch_stats"], updated[models.SPECTRAL_STATS]

    platform = None if mesh is None else mesh.devices.flat[0].platform
    return jit(batch_statistics, platform=platform)


def batch_size(config: ml_collections.ConfigDict) -> int:
    """Videos per standing-statistics batch: evaluation's batch, which fits wherever
    sampling does. The same on every mesh, so that the loop's grids and in-training FVD
    and the sample and evaluate commands draw the same z for a step and get the same
    statistics."""
    return config.eval.batch_size


def splits_rows(config: ml_collections.ConfigDict, mesh: Mesh | None) -> bool:
    """Whether a standing batch is split over the mesh's data axis (when it divides the
    batch; otherwise every device computes the whole batch)."""
    return mesh is not None and batch_size(config) % mesh.shape[sharding.DATA_AXIS] == 0


class StandingStatistics:
    """`standing(ema_params, g_vars, key, conditioning=None) -> g_vars` with the EMA
    generator's standing statistics in place of the raw generator's.

    `conditioning(i)` gives batch i's conditioning frames [`batch_size(config)`, C, H, W, 3]
    in [-1, 1] (DVD-GAN-FP only). With a `mesh` the batches are split over its data axis
    where it divides them, as in training, so a multi-host or model-sharded state is used
    where it lives. `truncation`: the scale of z, as in sampling. Compiles once: build it
    once per run.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        mesh: Mesh | None = None,
        truncation: float = 1.0,
    ):
        self.num_batches = config.eval.standing_stats_batches
        if self.num_batches < 0:
            raise ValueError(
                f"eval.standing_stats_batches={self.num_batches}; use 0 (off) or more."
            )
        self.needs_conditioning = config.model.num_conditioning_frames > 0
        self._batch_statistics = _batch_statistics_function(config, mesh, truncation)

    def __call__(self, ema_params, g_vars, key, conditioning=None) -> dict:
        if self.num_batches == 0:
            return g_vars
        if self.needs_conditioning and conditioning is None:
            raise ValueError("DVD-GAN-FP's standing statistics need conditioning frames.")
        spectral = g_vars[models.SPECTRAL_STATS]
        total = None
        for i in range(self.num_batches):
            frames = conditioning(i) if self.needs_conditioning else None
            stats, spectral = self._batch_statistics(
                ema_params,
                {**g_vars, models.SPECTRAL_STATS: spectral},
                jax.random.fold_in(key, i),
                frames,
            )
            total = stats if total is None else jax.tree.map(jnp.add, total, stats)
        mean = jax.tree.map(lambda s: s / self.num_batches, total)
        return {**g_vars, "batch_stats": mean, models.SPECTRAL_STATS: spectral}


def real_conditioning(config: ml_collections.ConfigDict, mesh: Mesh | None = None):
    """DVD-GAN-FP's `conditioning(i)`: the first C frames of random training clips, batch i
    of `batch_size(config)` (each process reads its share where the batch is split over the
    mesh's rows, else the whole batch), in [-1, 1]; None for synthesis."""
    c = config.model.num_conditioning_frames
    if not c:
        return None
    # Imported here: the data pipeline brings TensorFlow, a long import that the
    # sample and evaluate commands need only for DVD-GAN-FP runs and real clips.
    from dvd_gan.data.pipeline import ClipPipeline

    split = splits_rows(config, mesh)
    processes = jax.process_count() if split else 1
    clips = ClipPipeline(
        config.data,
        config.data.train_split,
        batch_size=batch_size(config) // processes,
        train=True,
        seed=config.seed + 1,
        process_count=processes,
        rows=sharding.process_rows(sharding.row_sharding(mesh), batch_size(config))
        if split
        else None,
    )

    def conditioning(i):
        frames = clips.batch(i)["videos"][:, :c]
        if mesh is None:
            return jnp.asarray(frames)
        layout = sharding.row_sharding(mesh) if split else sharding.replicated(mesh)
        return jax.make_array_from_process_local_data(layout, frames)

    return conditioning


def standing_key(config: ml_collections.ConfigDict, step: int) -> jax.Array:
    """The key of a checkpoint's standing statistics: the same for every caller."""
    return jax.random.fold_in(jax.random.key(config.seed + 0x57A7), step)


def cache_settings(config: ml_collections.ConfigDict, truncation: float) -> dict:
    """Every setting standing statistics depend on besides the weights: the batches (count,
    size, seed), the truncation of z, the compute dtype, and DVD-GAN-FP's conditioning
    frames (their clips' dataset and split)."""
    settings = {
        "batches": config.eval.standing_stats_batches,
        "size": batch_size(config),
        "seed": config.seed,
        "truncation": float(truncation),
        "dtype": config.model.dtype,
        "conditioning_frames": config.model.num_conditioning_frames,
    }
    if config.model.num_conditioning_frames:
        data = config.data
        settings["conditioning_clips"] = [data.dataset, data.builder_config, data.train_split]
    return settings


def cached(
    workdir: str,
    config: ml_collections.ConfigDict,
    step: int,
    ema_params,
    g_vars,
    truncation: float = 1.0,
) -> dict:
    """`StandingStatistics` of a checkpoint, computed once and kept in
    `workdir/standing_stats/`, so later sample or evaluate calls on that step reuse it.

    The file name holds a digest of every setting the statistics depend on
    (`cache_settings`) and one of the EMA weights (a run restarted from scratch in the same
    workdir never reads another run's file). Only process 0 writes (an atomic rename, so a
    reader never sees half a file); the computation involves no other process, so every
    process may compute or read independently.
    """
    batches = config.eval.standing_stats_batches
    if batches == 0:
        return g_vars
    directory = epath.Path(workdir) / "standing_stats"
    size = batch_size(config)
    settings = hashlib.sha1(json.dumps(cache_settings(config, truncation), sort_keys=True).encode())
    weights = hashlib.sha1()
    for leaf in jax.tree.leaves(ema_params):
        weights.update(np.asarray(leaf).tobytes())
    name = f"step_{step:07d}_{settings.hexdigest()[:8]}_{weights.hexdigest()[:12]}.msgpack"
    path = directory / name
    target = {name: g_vars[name] for name in STATISTICS}
    if path.exists():
        try:
            restored = serialization.from_bytes(target, path.read_bytes())
            return {**g_vars, **jax.tree.map(jnp.asarray, restored)}
        except (ValueError, KeyError) as e:
            logging.warning("Recomputing standing statistics: %s is unreadable (%s).", path, e)
    logging.info("Standing statistics of step %d: %d batches of %d.", step, batches, size)
    standing = StandingStatistics(config, truncation=truncation)(
        ema_params, g_vars, standing_key(config, step), real_conditioning(config)
    )
    if jax.process_index() == 0:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            state = {name: jax.tree.map(np.asarray, standing[name]) for name in STATISTICS}
            partial = directory / f".{path.name}.tmp"
            partial.write_bytes(serialization.to_bytes(state))
            partial.rename(path)
        except OSError as e:
            logging.warning("Standing statistics not cached (%s): %s", path, e)
    return standing
