"""One process of a real multi-process training step, for test_step_layouts.py.

    python tests/distributed_worker.py OUT.npz DEVICES NUM_PROCESSES PROCESS_ID [COORDINATOR]

Starts JAX's distributed runtime (gloo CPU collectives) when NUM_PROCESSES > 1, builds the
mesh over every process's devices, feeds this process's share of a fixed global batch
(`jax.make_array_from_process_local_data`), runs two train steps, and (process 0) writes
the resulting state and metrics to OUT.npz.
"""

import os
import sys

out, devices, num_processes, process_id = sys.argv[1], *map(int, sys.argv[2:5])
coordinator = sys.argv[5] if len(sys.argv) > 5 else None
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.conftest import sgd_like, tiny_config, xla_flags  # noqa: E402  (imports no JAX)

# Eigen's single-threaded convolutions in every process: a process of one device otherwise
# splits them over threads, another summation order, and D_T's first-block gradients are
# ill-conditioned enough (real and fake terms cancel) that the order alone moves some of them
# by up to 5% (measured by toggling this flag alone on one device).
os.environ["XLA_FLAGS"] = f"{xla_flags(devices)} --xla_cpu_multi_thread_eigen=false"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from dvd_gan import sharding  # noqa: E402
from dvd_gan.training import state as state_lib  # noqa: E402
from dvd_gan.training.step import jit_train_step  # noqa: E402

GLOBAL_BATCH = 8


def fixed_batch(config, step):
    """The same global batch in every process: [d_steps, B, T, H, W, 3] uint8, labels."""
    rng = np.random.default_rng(step)
    shape = (config.train.d_steps, GLOBAL_BATCH, config.data.num_frames) + (16, 16, 3)
    return {
        "videos": rng.integers(0, 256, shape, dtype=np.uint8),
        "labels": rng.integers(0, 3, shape[:2]).astype(np.int32),
    }


def main():
    sharding.initialize_distributed(coordinator, num_processes, process_id, False)
    config = sgd_like(tiny_config(num_frames=4, num_classes=3))
    config.batch_size = GLOBAL_BATCH
    mesh = sharding.make_mesh()
    batch_layout = sharding.stacked_batch_sharding(mesh)
    state = state_lib.init_state_on_mesh(config, mesh, jax.random.key(0))
    step = jit_train_step(config, mesh)
    share = GLOBAL_BATCH // jax.process_count()
    rows = slice(jax.process_index() * share, (jax.process_index() + 1) * share)
    for i in range(2):
        local = {k: v[:, rows] for k, v in fixed_batch(config, i).items()}
        state, metrics = step(state, sharding.global_batch(local, batch_layout))
    if jax.process_index() == 0:
        leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state))
        arrays = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}
        arrays.update({f"metric/{k}": np.asarray(v) for k, v in jax.device_get(metrics).items()})
        np.savez(out, **arrays)


if __name__ == "__main__":
    main()
