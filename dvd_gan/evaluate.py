"""Evaluates videos: a run's EMA generator against its dataset, or two files of videos.

    python -m dvd_gan.evaluate --workdir=DIR [--metrics=fvd,is,fid] [--num_videos=2048]
        [--split=test] [--step=N] [--c3d_weights=c3d.npz]
    python -m dvd_gan.evaluate --real=A.npz --fake=B.npz --metrics=fvd

Prints one JSON object: every metric (`fvd`, `fid`, `is`, `c3d_is`, with `*_std` for the
scores; `diversity` and `motion`, pixel statistics with `*_real` beside them) and under
`protocol` the full protocol of each. With --workdir it is also written
to DIR/eval/step_<step>.json and to TensorBoard. Files of videos are .npz with `videos`,
uint8 [N, T, H, W, 3] (what `python -m dvd_gan.sample` writes).
"""

import json
import os
import sys

import numpy as np
from absl import app, flags

from dvd_gan.command_line import parse_flags, quiet_library_logs

_WORKDIR = flags.DEFINE_string("workdir", None, "A dvd_gan.main workdir.")
_REAL = flags.DEFINE_string("real", None, ".npz of real videos (with --fake).")
_FAKE = flags.DEFINE_string("fake", None, ".npz of generated videos (with --real).")
_METRICS = flags.DEFINE_string(
    "metrics", "fvd", "Comma-separated: fvd, fid, is, c3d_is, diversity, motion."
)
_NUM_VIDEOS = flags.DEFINE_integer("num_videos", 2048, "Generated and real videos (--workdir).")
_SPLIT = flags.DEFINE_string("split", None, "Real split (default: the config's eval split).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the generated videos' z.")
_C3D_WEIGHTS = flags.DEFINE_string(
    "c3d_weights", None, "C3D weights for c3d_is (see docs/evaluation.md)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Videos per I3D batch.")


def load_videos(path: str) -> np.ndarray:
    with np.load(path) as data:
        if "videos" not in data:
            raise ValueError(f"{path} has no 'videos' array (found {data.files}).")
        videos = data["videos"]
    if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(
            f"{path}: 'videos' must be uint8 [N, T, H, W, 3]; got {videos.dtype} {videos.shape}."
        )
    return videos


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from dvd_gan.evaluation import video_metrics

    try:
        metrics = video_metrics.parse_metrics(_METRICS.value)
    except ValueError as e:
        sys.exit(f"FATAL: {e}")
    if bool(_WORKDIR.value) == bool(_REAL.value or _FAKE.value):
        sys.exit("FATAL: pass either --workdir, or --real and --fake.")
    if not _WORKDIR.value and not (
        _FAKE.value and (_REAL.value or set(metrics) <= {"is", "c3d_is", "diversity", "motion"})
    ):
        sys.exit("FATAL: --fake is required, and --real too for fvd and fid.")
    quiet_library_logs()
    from dvd_gan.evaluation.c3d import C3DLogits
    from dvd_gan.evaluation.features import I3DFeatures

    extractor = I3DFeatures(_BATCH_SIZE.value) if {"fvd", "fid", "is"} & set(metrics) else None
    c3d = C3DLogits(_C3D_WEIGHTS.value) if "c3d_is" in metrics and _C3D_WEIGHTS.value else None
    if _WORKDIR.value:
        result = evaluate_workdir(metrics, extractor, c3d)
    else:
        fake = load_videos(_FAKE.value)
        real = load_videos(_REAL.value) if _REAL.value else None
        result = video_metrics.compute(
            fake, metrics, extractor, real, c3d, {"real": _REAL.value, "fake": _FAKE.value}
        )
    print(json.dumps(result))


def evaluate_workdir(metrics, extractor, c3d) -> dict:
    from clu import metric_writers
    from etils import epath

    from dvd_gan.training import standing_stats
    from dvd_gan.training.evaluation import evaluate_generator
    from dvd_gan.training.loop import restore_generator

    config, step, ema_params, g_vars = restore_generator(_WORKDIR.value, _STEP.value)
    g_vars = standing_stats.cached(_WORKDIR.value, config, step, ema_params, g_vars)
    config.eval.batch_size = _BATCH_SIZE.value
    result = evaluate_generator(
        config,
        ema_params,
        g_vars,
        metrics=metrics,
        num_videos=_NUM_VIDEOS.value,
        split=_SPLIT.value or config.data.eval_split,
        extractor=extractor,
        c3d=c3d,
        seed=_SEED.value,
    )
    result["step"] = step
    directory = epath.Path(_WORKDIR.value) / "eval"
    directory.mkdir(exist_ok=True)
    (directory / f"step_{step:07d}.json").write_text(json.dumps(result, indent=2))
    writer = metric_writers.create_default_writer(os.path.join(_WORKDIR.value, "tensorboard"))
    writer.write_scalars(step, {f"eval/{k}": v for k, v in result.items() if k in metrics})
    writer.close()
    return result


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
