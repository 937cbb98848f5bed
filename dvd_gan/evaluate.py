"""Evaluates videos: any model's (files, folders, TFDS) under a named protocol, or a run's
EMA generator against its dataset.

    python -m dvd_gan.evaluate --real=REAL --fake=FAKE [--protocol=dvd_gan]
        [--metrics=fvd,kvd] [--num_runs=N] [--num_frames=16] [--frame_stride=1]
        [--num_videos=2048] [--resolution=N] [--subset=first] [--seed=0]
    python -m dvd_gan.evaluate --workdir=DIR [--metrics=fvd,kvd,is,fid] [--num_videos=2048]
        [--split=test] [--step=N] [--num_runs=N] [--c3d_weights=c3d.npz]

REAL and FAKE are each an .npz (`videos`, uint8 [N, T, H, W, 3], what `dvd_gan.sample`
writes), a folder of video files (.mp4, .avi, .webm, .mkv, .mov, .gif; searched
recursively), a folder of clip folders of .png/.jpg frames, or (REAL) a prepared dataset,
`tfds:NAME[/CONFIG]:SPLIT`. Protocols: dvd_gan, fvd_16f, fvd2048_16f, fvd2048_128f,
fvd2048_128f_subsample8f (see dvd_gan/evaluation/protocols.py); the flags override them.

Prints one JSON object on stdout: every metric (`fvd`, `kvd`, `fid`, `is`, `c3d_is`,
`diversity`, `motion`; for runs on one labelled digit per clip the digit classifier's
`class_accuracy`, `identity_consistency`, `identity_kept`, `position_error` with its
baselines, see dvd_gan/evaluation/digits.py), with --num_runs > 1 the mean over runs,
`<metric>_runs_std` and `runs`; `clips` and `skipped` (videos passed over, by name and
reason); and under `protocol` everything each number depends on, with the protocol's
fingerprint. Progress
goes to stderr. With --workdir the result also goes to DIR/eval/step_<step>.json and to
TensorBoard.
"""

import json
import os

from absl import app, flags

from dvd_gan.command_line import fatal, parse_flags, quiet_library_logs, require_workdir

_WORKDIR = flags.DEFINE_string("workdir", None, "A dvd_gan.main workdir.")
_REAL = flags.DEFINE_string("real", None, "Real videos: .npz, folder, or tfds:NAME:SPLIT.")
_FAKE = flags.DEFINE_string("fake", None, "Generated videos: .npz or folder.")
_METRICS = flags.DEFINE_string(
    "metrics",
    "fvd",
    "Comma-separated: fvd, kvd, fid, is, c3d_is, diversity, motion, mass_variation; with "
    "--workdir of a one-digit Moving-MNIST run also class_accuracy, identity_consistency, "
    "identity_kept, position_error.",
)
_PROTOCOL = flags.DEFINE_string("protocol", "dvd_gan", "Named protocol (with --real/--fake).")
_NUM_VIDEOS = flags.DEFINE_integer(
    "num_videos", None, "Clips per side (default: the protocol's; a workdir: 2048)."
)
_NUM_FRAMES = flags.DEFINE_integer("num_frames", None, "Frames per clip (overrides).")
_FRAME_STRIDE = flags.DEFINE_integer("frame_stride", None, "Take every k-th frame (overrides).")
_RESOLUTION = flags.DEFINE_integer("resolution", None, "Resize frames to N x N (overrides).")
_SUBSET = flags.DEFINE_enum(
    "subset", None, ["first", "random"], "Which videos when a source has more (overrides)."
)
_NUM_RUNS = flags.DEFINE_integer("num_runs", 1, "Independent runs, seeds seed..seed+N-1.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the first run (z, random clips).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir of a tfds: source.")
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", None, "Real-feature cache (default ~/.cache/dvd_gan/real_statistics)."
)
_SPLIT = flags.DEFINE_string("split", None, "Real split (--workdir; default: eval split).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (--workdir; default: newest).")
_C3D_WEIGHTS = flags.DEFINE_string(
    "c3d_weights", None, "C3D weights for c3d_is (see docs/evaluation.md)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Videos per I3D batch.")

PROTOCOL_FLAGS = (_NUM_FRAMES, _FRAME_STRIDE, _RESOLUTION, _SUBSET)


def check_arguments(metrics):
    if bool(_WORKDIR.value) == bool(_REAL.value or _FAKE.value):
        fatal("pass either --workdir, or --fake (and --real for fvd, kvd and fid).")
    if _NUM_RUNS.value < 1:
        fatal(f"--num_runs must be at least 1; got {_NUM_RUNS.value}.")
    if _WORKDIR.value:
        require_workdir(_WORKDIR.value)
        overridden = [f"--{f.name}" for f in PROTOCOL_FLAGS if f.value is not None]
        if _PROTOCOL.value != "dvd_gan" or overridden:
            fatal(
                f"a workdir is evaluated under its own config's dvd_gan protocol "
                f"({' '.join(overridden) or '--protocol=' + _PROTOCOL.value} given). For other "
                f"protocols write samples with `python -m dvd_gan.sample --output=fake.npz` and "
                f"pass --fake=fake.npz --real=tfds:NAME:SPLIT."
            )
        return
    from dvd_gan.evaluation.digits import METRICS as DIGIT_METRICS
    from dvd_gan.evaluation.video_metrics import REAL_FEATURE_METRICS

    digit_metrics = [name for name in metrics if name in DIGIT_METRICS]
    if digit_metrics:
        fatal(
            f"{', '.join(digit_metrics)} need the run that made the videos (the classes asked "
            f"for, the conditioning clips): pass --workdir of a moving_mnist_local/single run."
        )
    if not _FAKE.value:
        fatal("--fake is required with --real.")
    if not _REAL.value and set(REAL_FEATURE_METRICS) & set(metrics):
        fatal("--real is required for fvd, kvd and fid.")
    if _FAKE.value.startswith("tfds:"):
        fatal("--fake must be an .npz or a folder; a tfds: source is for --real.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from dvd_gan.evaluation import protocols, video_metrics

    try:
        metrics = video_metrics.parse_metrics(_METRICS.value)
        protocol = protocols.resolve(
            _PROTOCOL.value,
            num_frames=_NUM_FRAMES.value,
            frame_stride=_FRAME_STRIDE.value,
            num_videos=None if _WORKDIR.value else _NUM_VIDEOS.value,
            resolution=_RESOLUTION.value,
            subset=_SUBSET.value,
        )
    except ValueError as e:
        fatal(str(e))
    check_arguments(metrics)
    if _C3D_WEIGHTS.value and not os.path.exists(_C3D_WEIGHTS.value):
        fatal(f"--c3d_weights={_C3D_WEIGHTS.value} does not exist.")
    quiet_library_logs()
    # Sources are opened (and a bad one refused) before I3D's weights load and compile.
    sources = None if _WORKDIR.value else open_sources()
    from dvd_gan.evaluation.c3d import C3DLogits
    from dvd_gan.evaluation.features import I3DFeatures

    extractor = None
    if set(video_metrics.I3D_METRICS) & set(metrics):
        extractor = I3DFeatures(_BATCH_SIZE.value, protocol.i3d_resize)
    c3d = C3DLogits(_C3D_WEIGHTS.value) if "c3d_is" in metrics and _C3D_WEIGHTS.value else None
    if _WORKDIR.value:
        result = evaluate_workdir(metrics, extractor, c3d)
    else:
        result = evaluate_sources(sources, protocol, metrics, extractor, c3d)
    print(json.dumps(result))


def open_sources() -> tuple:
    """(real or None, fake) from --real and --fake; a bad source ends in one FATAL line."""
    from dvd_gan.evaluation import video_sources

    try:
        real = video_sources.open_source(_REAL.value, _DATA_DIR.value) if _REAL.value else None
        return real, video_sources.open_source(_FAKE.value)
    except video_sources.SourceError as e:
        fatal(str(e))


def evaluate_sources(sources, protocol, metrics, extractor, c3d) -> dict:
    from dvd_gan.evaluation import scoring, video_sources

    real, fake = sources
    try:
        scorer = scoring.SourceScorer(
            real,
            fake,
            _PROTOCOL.value,
            protocol,
            metrics,
            extractor,
            c3d,
            _CACHE_DIR.value,
            specs={"real": _REAL.value, "fake": _FAKE.value},
        )
        return scoring.score(scorer, _SEED.value, _NUM_RUNS.value)
    except video_sources.SourceError as e:
        fatal(str(e))


def evaluate_workdir(metrics, extractor, c3d) -> dict:
    from etils import epath

    from dvd_gan.evaluation import digits, protocols, scoring
    from dvd_gan.generation import standing_stats
    from dvd_gan.generation.evaluation import evaluate_generator, video_sampler
    from dvd_gan.summaries import MirroredWriter
    from dvd_gan.training.checkpointing import restore_generator

    try:
        config, step, ema_params, g_vars = restore_generator(_WORKDIR.value, _STEP.value)
        digit_metrics = [name for name in metrics if name in digits.METRICS]
        if digit_metrics:
            digits.check_metrics(digit_metrics, config)
    except (FileNotFoundError, ValueError) as e:
        fatal(str(e))
    g_vars = standing_stats.cached(_WORKDIR.value, config, step, ema_params, g_vars)
    config.eval.batch_size = _BATCH_SIZE.value
    sampler = video_sampler(config)
    runs = [
        evaluate_generator(
            config,
            ema_params,
            g_vars,
            metrics=metrics,
            num_videos=_NUM_VIDEOS.value or protocols.DEFAULT_GENERATED_VIDEOS,
            split=_SPLIT.value or config.data.eval_split,
            extractor=extractor,
            c3d=c3d,
            seed=_SEED.value + run,
            sampler=sampler,
        )
        for run in range(_NUM_RUNS.value)
    ]
    result = scoring.combine_runs(runs, _SEED.value)
    result["step"] = step
    directory = epath.Path(_WORKDIR.value) / "eval"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"step_{step:07d}.json").write_text(json.dumps(result, indent=2))
    writer = MirroredWriter(directory.parent / "tensorboard", asynchronous=False)
    writer.write_scalars(step, {f"eval/{k}": v for k, v in result.items() if k in metrics})
    writer.close()
    return result


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
