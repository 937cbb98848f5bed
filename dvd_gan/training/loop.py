"""`train_and_evaluate(config, workdir)`: the whole training run, in sections.

Workdir layout: `config.json` (the resolved config), `checkpoints/<step>/` (Orbax),
`tensorboard/` (scalars and sample frames), `samples/step_<step>.gif|png` (EMA-generator
sample grids, fixed z), `eval/step_<step>.json` (in-training FVD with its protocol, when
`config.eval.every` > 0). Every process runs this function; only process 0 writes logs and
samples, all take part in checkpointing.
"""

import signal
import threading

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions
from etils import epath

from dvd_gan import models, sharding
from dvd_gan.data.pipeline import ClipPipeline
from dvd_gan.summaries import MirroredWriter
from dvd_gan.training.checkpointing import Checkpointer, from_items, save_config
from dvd_gan.training.generator_reports import GeneratorReports
from dvd_gan.training.memory import out_of_memory_explained
from dvd_gan.training.state import TrainState, abstract_state, init_state_on_mesh, state_shardings
from dvd_gan.training.step import jit_train_step


class PreemptionFlag:
    """Set by SIGTERM (a scheduler stopping the job); the loop then saves and exits."""

    def __init__(self):
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        del signum, frame
        logging.warning("SIGTERM received: saving a checkpoint at the current step, then exiting.")
        self.requested = True


def check_finite(history: list[tuple[int, dict]]):
    """Raises FloatingPointError naming the first step and metric that is not finite."""
    for step, metrics in history:
        for name, value in metrics.items():
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"Non-finite {name} = {value} at step {step}; stopping. The last good "
                    f"checkpoint is kept; lower the learning rates or check the data."
                )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    workdir = epath.Path(workdir)
    is_chief = jax.process_index() == 0
    # The workdir records the dtype and 3D convolution the run uses, not 'auto'.
    models.resolve_platform_settings(config.model, jax.devices()[0].platform)
    if is_chief:
        workdir.mkdir(parents=True, exist_ok=True)
        save_config(config, workdir)

    # -- Mesh: data x model over every device; large parameters split over 'model'.
    mesh = sharding.make_mesh(model_axis=config.mesh.model_axis)
    host_batch_size = sharding.local_batch_size(config.batch_size, mesh)
    state_sharding = state_shardings(config, mesh)
    batch_sharding = sharding.stacked_batch_sharding(mesh)

    # -- Input: this process's share of every batch; d_steps real batches per step.
    pipeline = training_pipeline(
        config, host_batch_size, sharding.process_rows(batch_sharding, config.batch_size, axis=1)
    )

    # -- State: restored from the newest good checkpoint, or initialised on the devices.
    checkpointer = Checkpointer(workdir / "checkpoints", keep=config.train.keep_checkpoints)
    target = abstract_state(config, state_sharding)
    restored = checkpointer.restore(target)
    if restored is None:
        state = init_state_on_mesh(config, mesh, jax.random.key(config.seed))
        logging.info("Initialised a new state.")
    else:
        step, items = restored
        state = from_items(items)
        logging.info("Resumed from the checkpoint at step %d.", step)
    start_step = int(state.step)

    # -- The update step: jitted once, state donated.
    train_step = jit_train_step(config, mesh)

    # -- Logging: TensorBoard and console from process 0; steps/s and ETA; optional profile.
    writer = MirroredWriter(workdir / "tensorboard", just_logging=not is_chief)
    if start_step == 0:
        writer.write_hparams(_flat_hparams(config))
    hooks = [
        periodic_actions.ReportProgress(
            num_train_steps=config.train.num_steps,
            writer=writer,
            every_steps=config.train.log_every,
        )
    ]
    if is_chief and config.train.profile_steps:
        hooks.append(
            periodic_actions.Profile(
                logdir=str(workdir), num_profile_steps=config.train.profile_steps
            )
        )

    # -- Reports on the EMA generator: sample grids and in-training FVD.
    reports = GeneratorReports(config, mesh, workdir, writer)

    # -- Loop.
    preemption = PreemptionFlag()
    batches = pipeline.batches(start=start_step * config.train.d_steps)
    history = []
    step = start_step
    logging.info("Training from step %d to %d.", start_step, config.train.num_steps)
    with metric_writers.ensure_flushes(writer):
        if step == 0 and reports.evaluation_due(0):
            reports.evaluate(state, 0)
        while step < config.train.num_steps:
            local = [next(batches) for _ in range(config.train.d_steps)]
            batch = sharding.global_batch(
                {k: np.stack([b[k] for b in local]) for k in local[0]}, batch_sharding
            )
            with out_of_memory_explained(config, mesh.shape[sharding.DATA_AXIS]):
                state, metrics = train_step(state, batch)
            step += 1
            history.append((step, metrics))
            for hook in hooks:
                hook(step)

            last = step == config.train.num_steps
            checkpoint_now = last or step % config.train.checkpoint_every == 0
            stop = preemption.requested or checkpointer.reached_preemption(step)
            if checkpoint_now or stop or step % config.train.log_every == 0:
                fetched = [(s, jax.device_get(m)) for s, m in history]
                history = []
                check_finite(fetched)  # before any save: never checkpoint a diverged state
                window = {k: float(np.mean([m[k] for _, m in fetched])) for k in fetched[-1][1]}
                writer.write_scalars(step, window)
            if checkpoint_now or stop:
                checkpointer.save(state, step)
                writer.flush()  # a remote workdir's events are as recent as its checkpoint
            if reports.samples_due(step):
                reports.write_samples(state, step)
            if reports.evaluation_due(step):
                reports.evaluate(state, step)
            if stop:
                logging.warning("Stopping at step %d on a preemption request.", step)
                break
    checkpointer.wait_until_finished()
    checkpointer.close()
    writer.close()
    logging.info(
        "Done at step %d. Checkpoints: %s; TensorBoard: %s; samples: %s",
        step,
        workdir / "checkpoints",
        workdir / "tensorboard",
        workdir / "samples",
    )
    return state


def training_pipeline(
    config: ml_collections.ConfigDict, host_batch_size: int, rows: list[int]
) -> ClipPipeline:
    """This process's `rows` of every global batch of the training stream, in uint8; a
    clear error when the model has fewer classes than the data."""
    pipeline = ClipPipeline(
        config.data,
        config.data.train_split,
        batch_size=host_batch_size,
        train=True,
        seed=config.seed,
        process_count=jax.process_count(),
        rows=rows,
        output_uint8=True,
    )
    if 0 < config.model.num_classes < pipeline.num_classes:
        raise ValueError(
            f"{config.data.dataset} has {pipeline.num_classes} classes but "
            f"model.num_classes={config.model.num_classes}; set --config.model.num_classes="
            f"{pipeline.num_classes} (or 0 for an unconditional model)."
        )
    return pipeline


def _flat_hparams(config: ml_collections.ConfigDict) -> dict:
    flat = {}

    def visit(prefix, node):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, ml_collections.ConfigDict):
                visit(f"{name}.", value)
            elif isinstance(value, bool | int | float | str):
                flat[name] = value
            else:
                flat[name] = str(value)

    visit("", config)
    return flat
