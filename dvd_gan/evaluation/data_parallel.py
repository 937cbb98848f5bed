"""Evaluation's batches, spread over every device of every process.

Evaluation in a multi-host run is one SPMD computation, like training: every process passes
the same host arrays (the same z, the same real clips, the same generated videos), each
device computes its rows of every batch, and every process gets all the outputs back. N
videos thus cost each host N / hosts of the generation and feature work, and every process
ends with the same features and metrics (process 0 writes them).
"""

import math

import jax
import numpy as np
from jax.sharding import Mesh

from dvd_gan.compiler import jit
from dvd_gan.evaluation.progress import Progress
from dvd_gan.sharding import DATA_AXIS, make_mesh, replicated, row_sharding


class DataParallel:
    """`fn(*constants, *batch)` over fixed-size batches of host arrays, each batch split over
    `mesh`'s 'data' axis (default: the training mesh's layout over every device of every
    process, without a model axis).

        features = DataParallel(fn, batch_size=16)
        outputs = features((variables,), (videos,))  # fn's outputs for every row, on the host

    The batch size is rounded up to a multiple of the data axis and the last batch is
    zero-padded, so `fn` compiles once. `constants` are passed as they are: put them on the
    mesh once with `place`.
    """

    def __init__(self, fn, batch_size: int, mesh: Mesh | None = None):
        self.mesh = mesh or make_mesh()
        shards = self.mesh.shape[DATA_AXIS]
        self.batch_size = math.ceil(batch_size / shards) * shards
        self._rows = row_sharding(self.mesh)
        self._replicated = replicated(self.mesh)
        # Replicated outputs: every process can read all of them.
        self._fn = jit(
            fn, platform=self.mesh.devices.flat[0].platform, out_shardings=self._replicated
        )

    def place(self, tree):
        """`tree`'s arrays on the mesh: those already on its devices (a training state,
        perhaps sharded) stay as they are; host arrays (the same in every process) and
        arrays elsewhere (restored to one device) are copied to every device."""
        devices = set(self.mesh.devices.flat)

        def put(x):
            if isinstance(x, jax.Array) and x.sharding.device_set == devices:
                return x
            return jax.device_put(x, self._replicated)

        return jax.tree.map(put, tree)

    def __call__(self, constants: tuple, batched: tuple, description: str | None = None):
        """`batched`: host arrays [N, ...] (or None, passed as None) -> fn's outputs [N, ...].
        With a `description`, a progress line per batch goes to stderr."""
        n = len(next(x for x in batched if x is not None))
        outputs = []
        progress = Progress(description, n) if description else None
        for start in range(0, n, self.batch_size):
            count = min(self.batch_size, n - start)
            batch = [None if x is None else self._put(x[start : start + count]) for x in batched]
            result = self._fn(*constants, *batch)
            outputs.append(jax.tree.map(lambda o, count=count: np.asarray(o)[:count], result))
            if progress:
                progress.update(start + count)
        return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)

    def _put(self, rows) -> jax.Array:
        rows = np.asarray(rows)
        if len(rows) < self.batch_size:
            padding = np.zeros((self.batch_size - len(rows),) + rows.shape[1:], rows.dtype)
            rows = np.concatenate([rows, padding])
        return jax.device_put(rows, self._rows)
