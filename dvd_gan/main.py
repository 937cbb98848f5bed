"""Trains DVD-GAN.

    python -m dvd_gan.main --config=configs/<file>.py[:<variant>] --workdir=DIR \
        [--config.<field>=<value> ...]

Restarting with the same --workdir resumes from its newest good checkpoint. Multi-host:
--coordinator_address/--num_processes/--process_id, or --jax_distributed to let
jax.distributed.initialize() read a TPU pod's or SLURM's environment.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from dvd_gan.command_line import (
    apply_cpu_convolutions,
    define_cpu_convolutions_flag,
    parse_flags,
    quiet_library_logs,
)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, path[:variant].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_CPU_CONVOLUTIONS = define_cpu_convolutions_flag()
_FROM_ENVIRONMENT = flags.DEFINE_bool(
    "jax_distributed", False, "Start jax.distributed from the TPU pod / SLURM environment."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # Imported after flag parsing so that a bad flag fails fast, before JAX and TF load.
    from dvd_gan import sharding
    from dvd_gan.training import loop
    from dvd_gan.training.checkpointing import CheckpointMismatchError
    from dvd_gan.training.memory import DoesNotFitError

    quiet_library_logs()
    config = _CONFIG.value
    apply_cpu_convolutions(_CPU_CONVOLUTIONS.value)
    sharding.initialize_distributed(
        _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _FROM_ENVIRONMENT.value
    )
    logging.info("Config:\n%s", config)
    try:
        loop.train_and_evaluate(config, os.path.expanduser(_WORKDIR.value))
    except (CheckpointMismatchError, DoesNotFitError, FloatingPointError, FileNotFoundError) as e:
        # Errors a user acts on (wrong workdir, divergence, data not prepared): the message
        # says what to do; a traceback would only bury it.
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(1)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=parse_flags)
