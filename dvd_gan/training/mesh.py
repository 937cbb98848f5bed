"""Devices, processes and data layout: the JAX distributed runtime, the device mesh, the
train state's sharding, and the assembly of per-process batches into global arrays.

The mesh has two axes, 'data' x 'model' (model = `config.mesh.model_axis`, 1 by default).
The global batch is split over 'data'. The train state is replicated, except that with a
'model' axis > 1 every large parameter, its Adam moments and its EMA are split along their
last (output) dimension over 'model', dividing their memory (parameter sharding for the
largest configs). Axis types are Auto, so XLA's partitioner places everything in between
(z, generated videos, their concatenation with the real batch, gathered weights) by
propagation; jit's in/out shardings and one constraint on z fix the layout. BatchNorm's
mean and variance are computed over the global batch (cross-replica) by construction.
"""

import functools

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from dvd_gan.compiler import compiler_options
from dvd_gan.training.state import TrainState, init_state

DATA_AXIS = "data"
MODEL_AXIS = "model"


def initialize_distributed(
    coordinator_address: str | None,
    num_processes: int | None,
    process_id: int | None,
    from_environment: bool,
):
    """Starts JAX's distributed runtime when asked to.

    Explicit arguments name the coordinator and this process (any cluster, or several
    processes on one machine); `from_environment` calls `jax.distributed.initialize()` with
    none, which reads TPU pod and SLURM environments. CPU devices exchange collectives
    through gloo.
    """
    explicit = coordinator_address is not None or (num_processes or 1) > 1
    if not (explicit or from_environment):
        return
    # Only the CPU client uses this; on accelerators it changes nothing.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if explicit:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    else:
        jax.distributed.initialize()
    logging.info(
        "JAX distributed: process %d of %d, %d local of %d devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def make_mesh(devices=None, model_axis: int = 1) -> Mesh:
    """A (data, model) mesh over `devices` (default: all devices of all processes)."""
    devices = list(devices if devices is not None else jax.devices())
    if model_axis < 1 or len(devices) % model_axis:
        raise ValueError(f"mesh.model_axis={model_axis} must divide the {len(devices)} devices.")
    return jax.make_mesh(
        (len(devices) // model_axis, model_axis),
        (DATA_AXIS, MODEL_AXIS),
        axis_types=(AxisType.Auto, AxisType.Auto),
        devices=devices,
    )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def state_shardings(config, mesh: Mesh, state_shapes=None):
    """A sharding for every leaf of the train state (a pytree like the state).

    Replicated, except leaves of at least `config.mesh.min_shard_size` elements whose last
    dimension the 'model' axis divides: those are split along it.
    """
    if state_shapes is None:
        state_shapes = jax.eval_shape(functools.partial(init_state, config), jax.random.key(0))
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

    return jax.tree_util.tree_map(sharding, state_shapes)


def row_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of [B, ...] arrays: rows split over the data axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of [d_steps, B, ...] batches: the batch axis split over the data axis."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def init_state_on_mesh(config, mesh: Mesh, rng: jax.Array) -> TrainState:
    """A fresh train state created directly on the mesh's devices, laid out by
    `state_shardings` (never assembled on one device first)."""
    init = jax.jit(
        functools.partial(init_state, config),
        out_shardings=state_shardings(config, mesh),
        compiler_options=compiler_options(config.model.cpu_convolutions),
    )
    return init(rng)


def check_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """This process's share of the global batch, after checking that it divides evenly."""
    shards = max(mesh.shape[DATA_AXIS], jax.process_count())
    if global_batch_size % shards:
        raise ValueError(
            f"batch_size={global_batch_size} is not divisible by the {shards} data shards "
            f"(devices / mesh.model_axis, and processes); use a multiple of {shards}, e.g. "
            f"--config.batch_size={max(shards, global_batch_size // shards * shards)}."
        )
    return global_batch_size // jax.process_count()


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """This process's share of a batch -> global arrays laid out by `sharding`."""
    return {
        name: jax.make_array_from_process_local_data(sharding, value)
        for name, value in local.items()
    }
