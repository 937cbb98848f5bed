"""Orbax checkpoints of the train state.

Each TrainState field is its own checkpoint item, so a sampler can restore the generator
and its EMA without the optimizer states. Saves are asynchronous; Orbax writes a step into a
temporary directory and renames it when complete, and removes old steps (beyond
`keep_checkpoints`) only after a newer one is complete, so the last good checkpoint is never
deleted or overwritten first.

On restore, the newest checkpoint is tried first. If its shapes do not match the config (the
model was changed), training stops with an error naming the mismatched entries. If it cannot
be read (a crash during a write, a corrupted file), the error is reported, the step directory
is set aside as `<step>.unrestorable-<time>` (kept for inspection, and out of the way of a
new save of that step), and the previous checkpoint is tried.
"""

import dataclasses
import functools
import json
import time

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from dvd_gan.compiler import jit
from dvd_gan.training.state import TrainState, abstract_state, init_state

# Orbax stores pytrees, not bare scalars: step and rng travel together as 'progress'.
PROGRESS = ("step", "rng")
ITEMS = ("progress",) + tuple(
    field.name for field in dataclasses.fields(TrainState) if field.name not in PROGRESS
)

# Orbax writes a replicated array cooperatively ("replica-parallel"): each device holding a
# copy transfers and writes one slice of it, which costs a compiled slice per array shape
# and device on the first save (on one host of 8 devices, hundreds of compiles for a small
# model, with nothing to gain: the slices come from the same host memory). Slices below
# this size are not worth it; above it (a paper config's large kernels over a pod's hosts)
# the writes are still shared.
MIN_REPLICA_SLICE_BYTES = 4 * 2**20
ocp.type_handlers.register_type_handler(
    jax.Array,
    ocp.type_handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES),
    override=True,
)


def to_items(state: TrainState) -> dict:
    """TrainState -> {checkpoint item: pytree}."""
    items = {name: getattr(state, name) for name in ITEMS if name != "progress"}
    return {"progress": {name: getattr(state, name) for name in PROGRESS}, **items}


def from_items(items: dict) -> TrainState:
    """The inverse of `to_items` (all items present)."""
    rest = {name: value for name, value in items.items() if name != "progress"}
    return TrainState(**items["progress"], **rest)


class CheckpointMismatchError(ValueError):
    """The checkpoint holds a different model than the config describes."""


def _flat_shapes(tree) -> dict[str, tuple]:
    """'a/b/0/c' -> shape, spelled alike for live pytrees and Orbax metadata (which turns
    NamedTuples into dicts)."""
    leaves = jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): tuple(leaf.shape)
        for path, leaf in leaves
    }


def shape_mismatches(expected: dict, found: dict) -> list[str]:
    """Human-readable differences between two {name: pytree of arrays or metadata}."""
    problems = []
    for item in expected:
        want, have = _flat_shapes(expected[item]), _flat_shapes(found.get(item, {}))
        problems += [f"{item}/{k}: missing from the checkpoint" for k in want.keys() - have.keys()]
        problems += [
            f"{item}/{k}: in the checkpoint, not in the model" for k in have.keys() - want.keys()
        ]
        problems += [
            f"{item}/{k}: checkpoint {have[k]} vs model {want[k]}"
            for k in sorted(want.keys() & have.keys())
            if want[k] != have[k]
        ]
    return sorted(problems)


class Checkpointer:
    """Saves and restores TrainStates under `directory` (a local path or gs://...)."""

    def __init__(self, directory: str, keep: int = 3):
        self.directory = epath.Path(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=True
        )
        # Handlers named up front, so that metadata can be read before any restore.
        handlers = {name: ocp.StandardCheckpointHandler() for name in ITEMS}
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=handlers
        )

    def save(self, state: TrainState, step: int):
        """Starts an asynchronous save of `state` as `step` (returns once the arrays are
        copied off the devices)."""
        args = {name: ocp.args.StandardSave(tree) for name, tree in to_items(state).items()}
        self.manager.save(step, args=ocp.args.Composite(**args), force=True)

    def restore(
        self, abstract_state: TrainState, items=ITEMS, step: int | None = None
    ) -> tuple[int, dict] | None:
        """(step, {item: restored}) from the newest restorable checkpoint (or exactly `step`),
        None if there is none. `abstract_state` gives the shapes, dtypes and shardings."""
        abstract_items = to_items(abstract_state)
        steps = sorted(self.manager.all_steps(), reverse=True)
        if step is not None:
            if step not in steps:
                raise FileNotFoundError(
                    f"No checkpoint of step {step} in {self.directory}: {steps}"
                )
            steps = [step]
        for step in steps:
            expected = {name: abstract_items[name] for name in items}
            try:
                found = dict(self.manager.item_metadata(step))
            except Exception as e:  # any unreadable metadata: try the previous step
                self._set_aside(step, e)
                continue
            problems = shape_mismatches(expected, {k: found.get(k) or {} for k in items})
            if problems:
                shown = "\n  ".join(problems[:25])
                raise CheckpointMismatchError(
                    f"The checkpoint at step {step} in {self.directory} does not match the "
                    f"model of this config ({len(problems)} entries differ):\n  {shown}\n"
                    f"Use the config the run was started with, or a new --workdir."
                )
            args = {name: ocp.args.StandardRestore(expected[name]) for name in items}
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(**args))
            except Exception as e:  # any unreadable data: try the previous step
                self._set_aside(step, e)
                continue
            return step, {name: restored[name] for name in items}
        return None

    def _set_aside(self, step: int, error: Exception):
        target = f"{step}.unrestorable-{time.strftime('%Y%m%d-%H%M%S')}"
        logging.error(
            "Checkpoint %d in %s cannot be restored (%s: %s); moving it to %s and trying the "
            "previous one.",
            step, self.directory, type(error).__name__, error, target,
        )  # fmt: skip
        if jax.process_index() == 0:
            (self.directory / str(step)).rename(self.directory / target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"set_aside_checkpoint_{step}")
        self.manager.reload()

    def reached_preemption(self, step: int) -> bool:
        """Orbax's preemption signal (TPU maintenance events, or SIGTERM under
        jax.distributed), agreed on by all processes at the same step."""
        return self.manager.reached_preemption(step)

    def wait_until_finished(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.close()


# -- A run's workdir: its config, and its generator for sampling and evaluation.


def save_config(config: ml_collections.ConfigDict, workdir: epath.Path):
    path = workdir / "config.json"
    text = config.to_json_best_effort(indent=2, sort_keys=True)
    if path.exists() and path.read_text() != text:
        previous = workdir / f"config.{len(list(workdir.glob('config.*.json')))}.json"
        path.rename(previous)
        logging.warning("The config differs from the run's previous one, now %s.", previous)
    path.write_text(text)


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The resolved config a run saved in its workdir (every field, as `save_config`
    wrote it)."""
    path = epath.Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {workdir} a dvd_gan.main workdir?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def restore_generator(workdir: str, step: int | None = None):
    """(config, step, EMA params, G's variables) from a run's checkpoint, without the
    discriminators or optimizer states. Step 0 is the run's initial state, recreated from
    its config (initialisation is a function of `config.seed`), so the untrained generator
    can be evaluated like any checkpoint."""
    config = load_config(workdir)
    if step == 0:
        state = jit(functools.partial(init_state, config))(jax.random.key(config.seed))
        return config, 0, state.ema_params, state.generator
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = abstract_state(config, device)
    checkpointer = Checkpointer(epath.Path(workdir) / "checkpoints")
    restored = checkpointer.restore(
        target, items=("progress", "generator", "ema_params"), step=step
    )
    checkpointer.close()
    if restored is None:
        raise FileNotFoundError(f"No restorable checkpoint in {workdir}/checkpoints.")
    step, items = restored
    return config, step, items["ema_params"], items["generator"]
