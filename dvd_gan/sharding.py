"""Devices, processes and data layout: the JAX distributed runtime, the device mesh, and
the assembly of per-process batches into global arrays. Training and evaluation both lay
out their work with these; the train state's own layout is in training/state.py.

The mesh has two axes, 'data' x 'model' (model = `config.mesh.model_axis`, 1 by default).
The global batch is split over 'data'. Axis types are Auto, so XLA's partitioner places
everything not fixed by jit's in/out shardings by propagation.
"""

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

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


def row_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of [B, ...] arrays: rows split over the data axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of [d_steps, B, ...] batches: the batch axis split over the data axis."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """This process's share of the global batch, after checking that it divides evenly."""
    shards = max(mesh.shape[DATA_AXIS], jax.process_count())
    if global_batch_size % shards:
        raise ValueError(
            f"batch_size={global_batch_size} is not divisible by the {shards} data shards "
            f"(devices / mesh.model_axis, and processes); use a multiple of {shards}, e.g. "
            f"--config.batch_size={max(shards, global_batch_size // shards * shards)}."
        )
    return global_batch_size // jax.process_count()


def process_rows(sharding: NamedSharding, batch_size: int, axis: int = 0) -> list[int]:
    """The rows (indices along `axis`) of a batch of `batch_size` laid out by `sharding` that
    this process's devices hold, in the order `jax.make_array_from_process_local_data`
    expects them in the process's share."""
    shape = tuple(batch_size if i == axis else 1 for i in range(axis + 1))
    rows = set()
    for index in sharding.addressable_devices_indices_map(shape).values():
        rows.update(range(*index[axis].indices(batch_size)))
    return sorted(rows)


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """This process's share of a batch -> global arrays laid out by `sharding`."""
    return {
        name: jax.make_array_from_process_local_data(sharding, value)
        for name, value in local.items()
    }
