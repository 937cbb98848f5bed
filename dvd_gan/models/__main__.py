"""Prints the parameter counts of G, D_S and D_T for a config, without allocating them.

python -m dvd_gan.models --config=configs/kinetics600.py:48x128 [--config.model.ch=64]
"""

import json

from absl import app, flags
from ml_collections import config_flags

from dvd_gan.models.factory import count_parameters

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, path[:variant].")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    counts = count_parameters(_CONFIG.value.model)
    counts["total"] = sum(counts.values())
    if _JSON.value:
        print(json.dumps(counts))
        return
    for name, count in counts.items():
        print(f"{name:<6}{count:>15,d}")


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
