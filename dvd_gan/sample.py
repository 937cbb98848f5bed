"""Samples videos from a run's EMA generator.

    python -m dvd_gan.sample --workdir=DIR --num_videos=16 --output=samples.npz [--seed=0]
        [--truncation=1.0] [--class_id=K] [--interpolate] [--step=N]
        [--conditioning_split=test]   # DVD-GAN-FP: conditioning frames from this split

Outputs by extension: `.npz` holds `videos` (uint8 [N, T, H, W, 3]) and `labels` (int32
[N], the class each video was asked for), and for DVD-GAN-FP runs `real` (the whole real
clips, uint8 [N, T, H, W, 3]) and `num_conditioning` (C); `.gif` and `.mp4` hold one grid
video; `.png` one image, a row per video with its frames left to right. With
--truncation=s, z ~ N(0, s^2 I). --interpolate walks linearly in z from one sample to
another (same class), N steps. For DVD-GAN-FP runs the conditioning frames come from a
dataset split; `videos` holds the conditioning frames followed by the generated ones, and a
grid shows each real clip beside (a .png: above) its prediction, the conditioning frames
framed in red. The same seed gives the same videos.
"""

import os

import numpy as np
from absl import app, flags, logging

from dvd_gan.command_line import fatal, parse_flags, quiet_library_logs, require_workdir

_WORKDIR = flags.DEFINE_string("workdir", None, "A dvd_gan.main workdir.")
_OUTPUT = flags.DEFINE_string("output", None, "Output file: .npz, .gif, .mp4 or .png.")
_NUM_VIDEOS = flags.DEFINE_integer("num_videos", 16, "How many videos.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of z (and of nothing else).")
_TRUNCATION = flags.DEFINE_float("truncation", 1.0, "Standard deviation of z.")
_CLASS_ID = flags.DEFINE_integer("class_id", None, "Class of every video (default: cycle).")
_INTERPOLATE = flags.DEFINE_bool("interpolate", False, "Interpolate between two z.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
_CONDITIONING_SPLIT = flags.DEFINE_string(
    "conditioning_split", None, "DVD-GAN-FP: split of the conditioning clips (default: eval)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Videos generated per call.")
_FPS = flags.DEFINE_float("fps", 8.0, "Frame rate of .gif / .mp4 output.")

FORMATS = (".npz", ".gif", ".mp4", ".png")


def latent_inputs(config, num_videos, seed, truncation, class_id, interpolate):
    import jax.numpy as jnp

    from dvd_gan.generation import sampling

    z, labels = sampling.sample_inputs(config, num_videos, seed, class_id)
    if interpolate:
        weights = jnp.linspace(0.0, 1.0, num_videos)[:, None]
        z = (1.0 - weights) * z[0] + weights * z[-1]
        labels = jnp.full_like(labels, labels[0])
    return truncation * z, labels


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    extension = os.path.splitext(_OUTPUT.value)[1].lower()
    if extension not in FORMATS:
        fatal(f"--output must end in one of {FORMATS}; got {_OUTPUT.value!r}.")
    if _TRUNCATION.value <= 0:
        fatal("--truncation must be positive.")
    require_workdir(_WORKDIR.value)
    quiet_library_logs()
    import jax.numpy as jnp
    from etils import epath

    from dvd_gan.data.video_io import write_image, write_video
    from dvd_gan.evaluation.features import real_videos
    from dvd_gan.generation import sampling, standing_stats
    from dvd_gan.pixels import scale_to_unit_range
    from dvd_gan.training.checkpointing import restore_generator

    try:
        config, step, ema_params, g_vars = restore_generator(_WORKDIR.value, _STEP.value)
    except FileNotFoundError as e:
        fatal(str(e))
    g_vars = standing_stats.cached(
        _WORKDIR.value, config, step, ema_params, g_vars, _TRUNCATION.value
    )
    n = _NUM_VIDEOS.value
    z, labels = latent_inputs(
        config, n, _SEED.value, _TRUNCATION.value, _CLASS_ID.value, _INTERPOLATE.value
    )
    c = config.model.num_conditioning_frames
    real = None
    if c:
        split = _CONDITIONING_SPLIT.value or config.data.eval_split
        try:
            real = real_videos(config.data, split, n)
        except ValueError as e:
            fatal(str(e))
    sampler = sampling.make_sampler(config)
    chunks = []
    for start in range(0, n, _BATCH_SIZE.value):
        part = slice(start, start + _BATCH_SIZE.value)
        conditioning = None if real is None else scale_to_unit_range(jnp.asarray(real[part, :c]))
        chunks.append(np.asarray(sampler(ema_params, g_vars, z[part], labels[part], conditioning)))
    videos = np.concatenate(chunks)
    if c:
        videos = np.concatenate([real[:, :c], videos], axis=1)

    if extension == ".npz":
        arrays = {"videos": videos, "labels": np.asarray(labels, np.int32)}
        if c:  # what really happened after the conditioning frames, to compare with
            arrays.update(real=real, num_conditioning=np.int32(c))
        with epath.Path(_OUTPUT.value).open("wb") as f:
            np.savez_compressed(f, **arrays)
    else:
        shown = videos
        if c:  # each real clip beside (a .png: above) its prediction
            pairs = np.stack([real, sampling.outline_conditioning(videos, c)], axis=1)
            shown = pairs.reshape((-1,) + videos.shape[1:])
        shown = sampling.enlarge(shown)
        if extension == ".png":
            write_image(_OUTPUT.value, sampling.frame_grid(shown))
        else:
            columns = n if _INTERPOLATE.value else (2 * int(np.ceil(np.sqrt(n))) if c else None)
            write_video(_OUTPUT.value, sampling.video_grid(shown, columns=columns), fps=_FPS.value)
    logging.info("Wrote %d videos %s from step %d to %s", n, videos.shape, step, _OUTPUT.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir", "output"])
    app.run(main, flags_parser=parse_flags)
