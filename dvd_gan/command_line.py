"""What the command-line faces share: flag parsing that explains a bad config override."""

import importlib.util
import logging as std_logging
import os
import sys

from absl import flags, logging
from etils import epath


def load_config_file(spec: str):
    """The ConfigDict of 'path/to/config.py[:argument]', as config_flags builds it."""
    path, _, argument = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_dvd_gan_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(argument) if argument else module.get_config()


def explain_override(argv: list[str]) -> str | None:
    """For the first `--config.<path>=...` whose path is not a field: which name is wrong
    and what the valid names are there. None when every path exists."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None or not os.path.exists(spec.partition(":")[0]):
        return None
    config = load_config_file(spec)
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        dotted = arg[2:].split("=", 1)[0]
        node, names = config, dotted.split(".")[1:]
        for depth, name in enumerate(names):
            parent = ".".join(["config", *names[:depth]])
            if not hasattr(node, "keys") or name not in node:
                valid = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none"
                return (
                    f"Unknown config field {dotted!r}: {parent} has no field {name!r}.\n"
                    f"Valid names in {parent}: {valid}"
                )
            node = node[name]
    return None


def define_cpu_convolutions_flag():
    """`--cpu_convolutions` for a tool that compiles the models (see dvd_gan/compiler.py)."""
    return flags.DEFINE_enum(
        "cpu_convolutions", "xla", ["xla", "ynnpack"], "CPU convolution kernels (compiler.py)."
    )


def apply_cpu_convolutions(flag_value: str):
    """Sets this process's CPU convolution kernels from `--cpu_convolutions`."""
    from dvd_gan.compiler import set_cpu_convolutions

    set_cpu_convolutions(flag_value)


def fatal(message: str):
    """Ends the program with one line on stderr, `FATAL: message`, and exit status 1."""
    sys.exit(f"FATAL: {message}")


def require_workdir(workdir: str):
    """A one-line FATAL unless `workdir` holds a dvd_gan.main run (its config.json)."""
    if not epath.Path(workdir, "config.json").is_file():
        fatal(f"{workdir} is not a dvd_gan.main workdir (it has no config.json).")


def quiet_library_logs():
    """Keeps Orbax's INFO records (several per save) off the console; warnings still show."""
    logging.get_absl_handler().addFilter(
        lambda record: record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname
    )


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parser, but a bad --config.<field> override ends the program with a
    message naming the field and the valid names (or the expected type), before anything
    is written."""
    for arg in argv:
        path = arg.removeprefix("--config=").partition(":")[0]
        if arg.startswith("--config=") and not os.path.isfile(path):
            print(f"FATAL: config file {path} does not exist.", file=sys.stderr)
            sys.exit(2)
    try:
        return flags.FLAGS(argv)
    except Exception as e:
        message = explain_override(argv)
        if message is None:
            if isinstance(e, flags.Error):
                message = f"{e}\nPass --helpshort for the flags."
            else:
                raise
        print(f"FATAL: {message}", file=sys.stderr)
        sys.exit(2)
