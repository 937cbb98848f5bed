"""Out-of-memory errors of the train step turned into advice: what the step needs, what the
device has, and the settings that fit."""

import contextlib
import math
import re

import jax
import ml_collections


class DoesNotFitError(RuntimeError):
    """The train step needs more memory per device than the device has; the message says
    which settings fit."""


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT])i?B?\b")
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def memory_advice(
    error_text: str, config: ml_collections.ConfigDict, shards: int = 1
) -> str | None:
    """For XLA's out-of-memory error, one line: what the step needs and what the device has
    (XLA's own figures, where its message gives them) and the settings that fit, leaving
    out those already in force: more accumulation steps (only counts that split the batch
    over the `shards` data shards), `remat=full`, bfloat16, parameter sharding. None for
    any other error."""
    if "RESOURCE_EXHAUSTED" not in error_text and "Out of memory" not in error_text:
        return None
    sizes = [float(n) * _UNITS[u] for n, u in _SIZE.findall(error_text)]
    steps = config.train.accumulation_steps
    factor = 2
    figures = "XLA ran out of device memory compiling or running the train step"
    if len(sizes) >= 2 and sizes[1] > 0:
        need, have = sizes[0], sizes[1]
        factor = max(2, math.ceil(need / have))
        figures = (
            f"the train step needs {need / 2**30:.2f} GiB per device, which has "
            f"{have / 2**30:.2f} GiB"
        )
    fixes = []
    valid = [
        n for n in range(steps + 1, config.batch_size + 1) if config.batch_size % (n * shards) == 0
    ]
    if valid:
        suggested = next((n for n in valid if n >= steps * factor), valid[-1])
        fixes.append(
            f"--config.train.accumulation_steps={suggested} (micro-batches of "
            f"{config.batch_size // suggested})"
        )
    if config.model.remat != "full":
        fixes.append("--config.model.remat=full")
    if config.model.dtype != "bfloat16":
        fixes.append("--config.model.dtype=bfloat16")
    fixes.append(
        "--config.mesh.model_axis=N (parameters split over N devices)"
        if config.mesh.model_axis == 1
        else "more devices on the model axis"
    )
    return f"{figures}. Fit it with {', or '.join(fixes)} (docs/scaling.md)."


@contextlib.contextmanager
def out_of_memory_explained(config: ml_collections.ConfigDict, shards: int = 1):
    """Turns XLA's out-of-memory error inside the block (compiling or running the train
    step over `shards` data shards) into a DoesNotFitError saying which settings fit
    (`memory_advice`)."""
    try:
        yield
    except jax.errors.JaxRuntimeError as error:
        advice = memory_advice(str(error), config, shards)
        if advice is None:
            raise
        raise DoesNotFitError(advice) from None
