"""The train state, its initialisation, and its layout on a device mesh.

The train state is replicated, except that with a 'model' axis > 1 every large parameter,
its Adam moments and its EMA are split along their last (output) dimension over 'model',
dividing their memory (parameter sharding for the largest configs). BatchNorm's mean and
variance are computed over the global batch (cross-replica) by construction.
"""

import functools

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dvd_gan import models
from dvd_gan.compiler import jit
from dvd_gan.sharding import MODEL_AXIS


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; each field is one checkpoint item.

    `generator`, `spatial_d`, `temporal_d` are Flax variable dicts: 'params' plus G's
    'batch_stats' and every network's 'spectral_stats'. `ema_params` is the EMA of G's
    params, used (with G's statistics) for samples and evaluation. `step` counts completed
    G updates; `rng` is the base key (raw uint32 data), folded with the step for each step.
    """

    step: jax.Array
    rng: jax.Array
    generator: dict
    ema_params: dict
    spatial_d: dict
    temporal_d: dict
    g_opt_state: optax.OptState
    d_opt_state: optax.OptState


def optimizers(train_config: ml_collections.ConfigDict):
    """(G's Adam, D's Adam): one optimizer for D_S and D_T together."""

    def adam(learning_rate):
        return optax.adam(
            learning_rate,
            b1=train_config.adam_b1,
            b2=train_config.adam_b2,
            eps=train_config.adam_eps,
        )

    return adam(train_config.g_learning_rate), adam(train_config.d_learning_rate)


def discriminator_params(state: TrainState) -> dict:
    """The pytree D's optimizer updates."""
    return {"spatial": state.spatial_d["params"], "temporal": state.temporal_d["params"]}


def init_state(config: ml_collections.ConfigDict, rng: jax.Array) -> TrainState:
    """A fresh TrainState; jit it with `out_shardings` to create it on the devices."""
    init_key, base_key = jax.random.split(rng)
    g_vars, ds_vars, dt_vars = models.init(config.model, init_key)
    g_tx, d_tx = optimizers(config.train)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        rng=jax.random.key_data(base_key),
        generator=g_vars,
        # A copy, not an alias: the state is donated to the step, and two leaves sharing one
        # buffer cannot both be donated.
        ema_params=jax.tree_util.tree_map(jnp.copy, g_vars["params"]),
        spatial_d=ds_vars,
        temporal_d=dt_vars,
        g_opt_state=g_tx.init(g_vars["params"]),
        d_opt_state=None,
    )
    return state.replace(d_opt_state=d_tx.init(discriminator_params(state)))


def state_shapes(config: ml_collections.ConfigDict) -> TrainState:
    """Shapes and dtypes of every leaf of the state, computed without allocating it."""
    return jax.eval_shape(functools.partial(init_state, config), jax.random.key(0))


def abstract_state(config: ml_collections.ConfigDict, shardings) -> TrainState:
    """`state_shapes` as ShapeDtypeStructs with shardings (what Orbax restores into and
    what ahead-of-time compilation takes). `shardings` is one sharding for every leaf, or a
    pytree of them like the state."""
    shapes = state_shapes(config)
    if not isinstance(shardings, TrainState):
        shardings = jax.tree_util.tree_map(lambda _: shardings, shapes)
    return jax.tree_util.tree_map(
        lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
        shapes,
        shardings,
    )


def state_shardings(config: ml_collections.ConfigDict, mesh: Mesh) -> TrainState:
    """A sharding for every leaf of the train state (a pytree like the state).

    Replicated, except leaves of at least `config.mesh.min_shard_size` elements whose last
    dimension the 'model' axis divides: those are split along it.
    """
    model = mesh.shape[MODEL_AXIS]

    def sharding(leaf):
        shape = getattr(leaf, "shape", ())
        split = (
            model > 1
            and len(shape) >= 2
            and shape[-1] % model == 0
            and np.prod(shape) >= config.mesh.min_shard_size
        )
        if split:
            return NamedSharding(mesh, PartitionSpec(*([None] * (len(shape) - 1)), MODEL_AXIS))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree_util.tree_map(sharding, state_shapes(config))


def init_state_on_mesh(config: ml_collections.ConfigDict, mesh: Mesh, rng: jax.Array) -> TrainState:
    """A fresh train state created directly on the mesh's devices, laid out by
    `state_shardings` (never assembled on one device first)."""
    init = jit(functools.partial(init_state, config), out_shardings=state_shardings(config, mesh))
    return init(rng)
