"""Measures the input pipeline alone: clips per second on this host for a config.

    python -m dvd_gan.data.benchmark --config=configs/kinetics600.py:48x128 [--batches=20]

Prints one JSON line: `clips_per_s` and `frames_per_s` (median over the timed batches, after
`--warmup` batches), with the host batch size and decoding threads. The host batch is the
config's global batch divided by `--process_count` (the hosts that would share it).
"""

import json
import time

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from dvd_gan.data.pipeline import ClipPipeline, tfds_name

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, path[:variant].")
_BATCHES = flags.DEFINE_integer("batches", 20, "Batches to time.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Batches to run before timing.")
_PROCESS_COUNT = flags.DEFINE_integer("process_count", 1, "Hosts sharing the global batch.")
_SPLIT = flags.DEFINE_string("split", None, "Split to read (default: the config's train split).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    batch_size = config.batch_size // _PROCESS_COUNT.value
    split = _SPLIT.value or config.data.train_split
    pipeline = ClipPipeline(
        config.data,
        split,
        batch_size=batch_size,
        train=True,
        seed=config.seed,
        output_uint8=True,
    )
    batches = pipeline.batches()
    for _ in range(_WARMUP.value):
        next(batches)
    times = []
    for _ in range(_BATCHES.value):
        start = time.perf_counter()
        next(batches)
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    print(
        json.dumps(
            {
                "dataset": tfds_name(config.data),
                "split": split,
                "process_count": _PROCESS_COUNT.value,
                "host_batch_size": batch_size,
                "num_frames": config.data.num_frames,
                "resolution": config.data.resolution,
                "num_workers": config.data.num_workers,
                "median_batch_s": round(median, 4),
                "clips_per_s": round(batch_size / median, 2),
                "frames_per_s": round(batch_size * config.data.num_frames / median, 1),
            }
        )
    )


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
