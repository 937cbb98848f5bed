"""Draws a run's evaluation curves (FVD, and the pixel statistics beside the real clips')
against the training step, from the `eval/step_<step>.json` files in its workdir.

    python -m dvd_gan.plot_curves --workdir=DIR --output=curves.png
"""

import json
import sys

from absl import app, flags

from dvd_gan.command_line import parse_flags

_WORKDIR = flags.DEFINE_string("workdir", None, "A dvd_gan.main workdir with eval/*.json.")
_OUTPUT = flags.DEFINE_string("output", None, "Output image (.png, .svg or .pdf).")

PANELS = (
    ("fvd", "FVD (lower is better)"),
    ("diversity", "pixel std across videos"),
    ("motion", "mean frame-to-frame change"),
)


def read_evaluations(workdir: str) -> list[dict]:
    """The run's evaluation results, in step order; each file's step is in its name."""
    from etils import epath

    directory = epath.Path(workdir) / "eval"
    results = []
    for path in sorted(directory.glob("step_*.json")):
        result = json.loads(path.read_text())
        result.setdefault("step", int(path.stem.removeprefix("step_")))
        results.append(result)
    return sorted(results, key=lambda r: r["step"])


def draw(results: list[dict], output: str):
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    panels = [(key, title) for key, title in PANELS if any(key in r for r in results)]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for axis, (key, title) in zip(axes[0], panels, strict=True):
        points = [(r["step"], r[key]) for r in results if key in r]
        axis.plot(*zip(*points, strict=True), marker="o", label="generated (EMA)")
        real = [(r["step"], r[f"{key}_real"]) for r in results if f"{key}_real" in r]
        if real:
            axis.plot(*zip(*real, strict=True), linestyle="--", color="grey", label="real clips")
            axis.legend(fontsize=8)
        count = next(r["protocol"][key].get("num_videos") for r in results if key in r)
        axis.set_title(f"{title}\n({count} videos per point)", fontsize=9)
        axis.set_xlabel("training step")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(output, dpi=110)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    results = read_evaluations(_WORKDIR.value)
    if not results:
        sys.exit(
            f"FATAL: no eval/step_*.json in {_WORKDIR.value}; evaluate checkpoints first "
            f"(python -m dvd_gan.evaluate --workdir={_WORKDIR.value} --step=N) or train with "
            f"--config.eval.every=N."
        )
    draw(results, _OUTPUT.value)
    print(
        f"Wrote {_OUTPUT.value}: {len(results)} evaluations, steps {results[0]['step']}-"
        f"{results[-1]['step']}."
    )


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir", "output"])
    app.run(main, flags_parser=parse_flags)
