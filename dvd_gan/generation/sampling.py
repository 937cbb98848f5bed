"""Videos from the EMA generator, and the grids that show them to a person."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dvd_gan import models
from dvd_gan.compiler import jit


def sample_inputs(config: ml_collections.ConfigDict, num_videos: int, seed: int, class_id=None):
    """Deterministic z ~ N(0, I) [N, z_dim] and labels [N] (cycling through the classes, or
    all `class_id`) for a given seed."""
    z = jax.random.normal(jax.random.key(seed), (num_videos, config.model.z_dim), jnp.float32)
    num_classes = max(config.model.num_classes, 1)
    if class_id is None:
        labels = jnp.arange(num_videos, dtype=jnp.int32) % num_classes
    else:
        if not 0 <= class_id < num_classes:
            raise ValueError(f"class_id={class_id} is outside [0, {num_classes}).")
        labels = jnp.full((num_videos,), class_id, jnp.int32)
    return z, labels


def sample_function(config: ml_collections.ConfigDict):
    """`sample(ema_params, g_vars, z, labels, conditioning=None)` -> uint8 [N, T', H, W, 3]:
    the EMA weights with G's BatchNorm running averages and spectral-norm state, eval mode.
    Not jitted: `make_sampler` jits it, evaluation jits it over a mesh."""
    generator = models.build(config.model)[0]

    def sample(ema_params, g_vars, z, labels, conditioning=None):
        videos = generator.apply(
            {**g_vars, "params": ema_params}, z, labels, conditioning=conditioning, train=False
        )
        return to_uint8(videos)

    return sample


def make_sampler(config: ml_collections.ConfigDict):
    """`sample_function(config)`, jitted."""
    return jit(sample_function(config))


def to_uint8(videos):
    """[-1, 1] floats -> uint8, rounding to the nearest level."""
    return jnp.round((jnp.clip(videos, -1.0, 1.0) + 1.0) * 127.5).astype(jnp.uint8)


def enlarge(videos: np.ndarray, min_size: int = 64) -> np.ndarray:
    """Repeats pixels (nearest neighbour) of videos [..., H, W, 3] until frames are at least
    `min_size` wide, so that small samples can be seen in a grid; exact multiples only."""
    factor = max(1, -(-min_size // min(videos.shape[-3:-1])))
    return np.repeat(np.repeat(videos, factor, axis=-3), factor, axis=-2)


def _columns(num_videos: int) -> int:
    return int(np.ceil(np.sqrt(num_videos)))


def video_grid(videos: np.ndarray, columns: int | None = None, gap: int = 1) -> np.ndarray:
    """uint8 videos [N, T, H, W, 3] -> one video [T, rows*(H+gap)-gap, cols*(W+gap)-gap, 3]
    tiling them, for an animated GIF."""
    n, t, h, w, c = videos.shape
    columns = columns or _columns(n)
    rows = -(-n // columns)
    grid = np.full((t, rows * (h + gap) - gap, columns * (w + gap) - gap, c), 255, np.uint8)
    for i, video in enumerate(videos):
        y, x = (i // columns) * (h + gap), (i % columns) * (w + gap)
        grid[:, y : y + h, x : x + w] = video
    return grid


def frame_grid(videos: np.ndarray, gap: int = 1) -> np.ndarray:
    """uint8 videos [N, T, H, W, 3] -> one image [N*(H+gap)-gap, T*(W+gap)-gap, 3]: a row per
    video, its frames left to right, for a PNG."""
    n, t, h, w, c = videos.shape
    return video_grid(videos.reshape(n * t, 1, h, w, c), columns=t, gap=gap)[0]


def outline_conditioning(videos: np.ndarray, num_conditioning: int) -> np.ndarray:
    """uint8 [N, T, H, W, 3] with its first `num_conditioning` frames framed in red."""
    marked = videos.copy()
    conditioning = marked[:, :num_conditioning]  # a view: writes go to `marked`
    for edge in (np.s_[:, :, :1], np.s_[:, :, -1:], np.s_[:, :, :, :1], np.s_[:, :, :, -1:]):
        conditioning[edge] = (255, 0, 0)
    return marked


@dataclasses.dataclass
class SampleGrids:
    video: np.ndarray  # uint8 [T, H', W', 3]: an animated grid
    frames: np.ndarray  # uint8 [H'', W'', 3]: a row per video, its frames left to right


def sample_grids(
    generated: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    conditioning: np.ndarray | None = None,
) -> SampleGrids:
    """The loop's grids of generated uint8 videos [N, T', H, W, 3]: for a class-conditional
    G, videos ordered by class (labels [N]) and a row per class in the animated grid; for
    DVD-GAN-FP, the conditioning frames [N, C, H, W, 3] in [-1, 1] first, outlined in red."""
    columns = None
    if num_classes:
        order = np.argsort(labels, kind="stable")
        generated = generated[order]
        conditioning = None if conditioning is None else np.asarray(conditioning)[order]
        columns = -(-len(generated) // len(np.unique(labels)))
    if conditioning is not None:
        frames = np.asarray(to_uint8(conditioning))
        generated = np.concatenate([frames, generated], axis=1)
        generated = outline_conditioning(generated, frames.shape[1])
    generated = enlarge(generated)
    return SampleGrids(video_grid(generated, columns), frame_grid(generated))
