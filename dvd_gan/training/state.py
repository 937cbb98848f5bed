"""The train state and its initialisation."""

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from dvd_gan import models


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
