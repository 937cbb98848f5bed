"""One process of the data-stream test (test_data.py): the training loop's own pipeline and
batch layout on NUM_PROCESSES real processes.

    python tests/data_stream_worker.py OUT.npz DATA_DIR NUM_PROCESSES PROCESS_ID START STEPS \
        [COORDINATOR]

Starts JAX's distributed runtime when NUM_PROCESSES > 1 (8 CPU devices in all), reads this
process's rows of the global batches of steps START .. START + STEPS - 1 as the training
loop does, assembles the global arrays, and (process 0) writes them, gathered, to OUT.npz.
"""

import os
import sys

out, data_dir = sys.argv[1:3]
num_processes, process_id, start, steps = map(int, sys.argv[3:7])
coordinator = sys.argv[7] if len(sys.argv) > 7 else None
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.conftest import tiny_config, xla_flags  # noqa: E402  (imports no JAX)

os.environ["XLA_FLAGS"] = xla_flags(8 // num_processes)
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from dvd_gan import sharding  # noqa: E402
from dvd_gan.training.loop import training_pipeline  # noqa: E402


def main():
    sharding.initialize_distributed(coordinator, num_processes, process_id, False)
    config = tiny_config()
    config.data.data_dir = data_dir
    config.data.builder_config = "small"
    config.data.random_flip = True
    config.batch_size = 8
    mesh = sharding.make_mesh()
    layout = sharding.stacked_batch_sharding(mesh)
    host_batch_size = sharding.local_batch_size(config.batch_size, mesh)
    rows = sharding.process_rows(layout, config.batch_size, axis=1)
    batches = training_pipeline(config, host_batch_size, rows).batches(
        start=start * config.train.d_steps
    )
    gathered = {}
    for step in range(start, start + steps):
        local = [next(batches) for _ in range(config.train.d_steps)]
        batch = sharding.global_batch(
            {k: np.stack([b[k] for b in local]) for k in local[0]}, layout
        )
        for name, value in batch.items():
            gathered[f"{step}/{name}"] = multihost_utils.process_allgather(value, tiled=True)
    if jax.process_index() == 0:
        np.savez(out, **gathered)


if __name__ == "__main__":
    main()
