"""Standing statistics: the BatchNorm statistics that belong to the EMA generator.

G's running averages are those of the raw weights; the EMA weights lag them by about
1 / (1 - decay) steps, so pairing the two samples a network that never existed. As BigGAN
does for its EMA generator, every sample and evaluation instead first runs the EMA weights
in train mode over `eval.standing_stats_batches` batches of fresh z (and labels, and real
conditioning frames in DVD-GAN-FP) and uses the mean over those batches of each per-time-step
batch mean and variance. The spectral-norm vectors are carried through the same passes, so
they converge to the EMA weights' own singular vectors. With 0 batches the raw generator's
statistics are used as they are.
"""

import copy
import hashlib

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
from dvd_gan.data.pipeline import ClipPipeline

STATISTICS = ("batch_stats", models.SPECTRAL_STATS)


def standing_inputs(config: ml_collections.ConfigDict, key: jax.Array, size: int):
    """One standing batch's z ~ N(0, I) [size, z_dim] and uniformly drawn labels [size]."""
    z_key, label_key = jax.random.split(key)
    z = jax.random.normal(z_key, (size, config.model.z_dim), jnp.float32)
    labels = jax.random.randint(label_key, (size,), 0, max(config.model.num_classes, 1))
    return z, labels


def _batch_statistics_function(config: ml_collections.ConfigDict, mesh: Mesh | None):
    """`fn(ema_params, g_vars, key, conditioning) -> (batch_stats, spectral_stats)` of one
    batch of `batch_size(config, mesh)` fresh z: a G whose BatchNorm momentum is 0 stores
    the batch's own statistics as its 'running' ones."""
    model_config = copy.deepcopy(config.model)
    model_config.bn_momentum = 0.0
    generator = models.build(model_config)[0]
    size = batch_size(config, mesh)

    def rows(x):
        if mesh is None:
            return x
        return jax.lax.with_sharding_constraint(x, sharding.row_sharding(mesh))

    def batch_statistics(ema_params, g_vars, key, conditioning):
        z, labels = jax.tree.map(rows, standing_inputs(config, key, size))
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


def batch_size(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> int:
    """Videos per standing-statistics batch: evaluation's batch, rounded up to a multiple of
    the data axis. Each BatchNorm statistic pools B x H x W values, so the mean over batches
    hardly depends on B; evaluation's batch fits wherever sampling does."""
    shards = 1 if mesh is None else mesh.shape[sharding.DATA_AXIS]
    return -(-config.eval.batch_size // shards) * shards


class StandingStatistics:
    """`standing(ema_params, g_vars, key, conditioning=None) -> g_vars` with the EMA
    generator's standing statistics in place of the raw generator's.

    `conditioning(i)` gives batch i's conditioning frames [`batch_size(config, mesh)`, C,
    H, W, 3] in [-1, 1] (DVD-GAN-FP only). With a `mesh` the batches are split over its
    data axis, as in training, so a multi-host or model-sharded state is used where it
    lives. Compiles once: build it once per run.
    """

    def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh | None = None):
        self.num_batches = config.eval.standing_stats_batches
        if self.num_batches < 0:
            raise ValueError(
                f"eval.standing_stats_batches={self.num_batches}; use 0 (off) or more."
            )
        self.needs_conditioning = config.model.num_conditioning_frames > 0
        self._batch_statistics = _batch_statistics_function(config, mesh)

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
    of `batch_size(config, mesh)` (each process reads its share), in [-1, 1] on the mesh's
    rows; None for synthesis."""
    c = config.model.num_conditioning_frames
    if not c:
        return None
    clips = ClipPipeline(
        config.data,
        config.data.train_split,
        batch_size=batch_size(config, mesh) // jax.process_count(),
        train=True,
        seed=config.seed + 1,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )

    def conditioning(i):
        frames = clips.batch(i)["videos"][:, :c]
        if mesh is None:
            return jnp.asarray(frames)
        return jax.make_array_from_process_local_data(sharding.row_sharding(mesh), frames)

    return conditioning


def standing_key(config: ml_collections.ConfigDict, step: int) -> jax.Array:
    """The key of a checkpoint's standing statistics: the same for every caller."""
    return jax.random.fold_in(jax.random.key(config.seed + 0x57A7), step)


def cached(workdir: str, config: ml_collections.ConfigDict, step: int, ema_params, g_vars) -> dict:
    """`StandingStatistics` of a checkpoint, computed once and kept in
    `workdir/standing_stats/`, so later sample or evaluate calls on that step reuse it.

    The file name holds every setting the statistics depend on and a digest of the EMA
    weights (a run restarted from scratch in the same workdir never reads another run's
    file). Only process 0 writes (an atomic rename, so a reader never sees half a file);
    the computation involves no other process, so every process may compute or read
    independently.
    """
    batches = config.eval.standing_stats_batches
    if batches == 0:
        return g_vars
    directory = epath.Path(workdir) / "standing_stats"
    size = batch_size(config)
    digest = hashlib.sha1()
    for leaf in jax.tree.leaves(ema_params):
        digest.update(np.asarray(leaf).tobytes())
    name = f"step_{step:07d}_batches{batches}_size{size}_{digest.hexdigest()[:12]}.msgpack"
    path = directory / name
    target = {name: g_vars[name] for name in STATISTICS}
    if path.exists():
        try:
            restored = serialization.from_bytes(target, path.read_bytes())
            return {**g_vars, **jax.tree.map(jnp.asarray, restored)}
        except (ValueError, KeyError) as e:
            logging.warning("Recomputing standing statistics: %s is unreadable (%s).", path, e)
    logging.info("Standing statistics of step %d: %d batches of %d.", step, batches, size)
    standing = StandingStatistics(config)(
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
