"""Devices, processes and data layout: the JAX distributed runtime, the device mesh, and the
assembly of per-process batches into global arrays.

One mesh axis, 'data': the global batch is split over every device of every process, and
the train state is replicated. The axis type is Auto, so XLA's partitioner places the
intermediate arrays (z, generated videos, their concatenation with the real batch) by
propagation; jit's in/out shardings and one constraint on z fix the layout. BatchNorm's
mean and variance are then computed over the global batch (cross-replica) by construction.
"""

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


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


def make_mesh() -> Mesh:
    """A 1-D mesh over all devices of all processes."""
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of [d_steps, B, ...] batches: the batch axis split over the data axis."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def check_batch_size(global_batch_size: int):
    devices, processes = jax.device_count(), jax.process_count()
    if global_batch_size % devices:
        raise ValueError(
            f"batch_size={global_batch_size} is not divisible by the {devices} devices; "
            f"use a multiple of {devices} (e.g. --config.batch_size="
            f"{max(devices, global_batch_size // devices * devices)})."
        )
    return global_batch_size // processes


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """This process's share of a batch -> global arrays laid out by `sharding`."""
    return {
        name: jax.make_array_from_process_local_data(sharding, value)
        for name, value in local.items()
    }
