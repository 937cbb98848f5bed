"""DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training",
2020) for videos: a departure from the paper, off in every paper config.

The same random transformation is applied to every frame of a clip, so that an
augmentation never looks like motion, and to real and generated clips alike, before both
discriminators, in D's updates and G's. Every operation is differentiable in the pixels,
so G's gradient passes through it. Hand-written (a few array ops): the published code is
PyTorch/TF and works on images, and no JAX library provides it for videos.
"""

import jax
import jax.numpy as jnp

AUGMENTATIONS = ("color", "translation", "cutout")
# The reference implementation's strengths: shifts of up to 1/8 of the frame, a cutout
# square of half its side.
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse(policy: str) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' -> () (off)."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(
            f"Unknown train.augment entries {unknown}; use a comma-separated subset of "
            f"{list(AUGMENTATIONS)}, or '' for none."
        )
    return names


def _color(videos, key):
    """Brightness, saturation and contrast, one factor of each per clip."""
    batch_size = videos.shape[0]
    k1, k2, k3 = jax.random.split(key, 3)
    per_clip = (batch_size, 1, 1, 1, 1)
    videos = videos + jax.random.uniform(k1, per_clip, minval=-0.5, maxval=0.5)
    grey = jnp.mean(videos, axis=-1, keepdims=True)
    videos = grey + (videos - grey) * jax.random.uniform(k2, per_clip, minval=0.0, maxval=2.0)
    mean = jnp.mean(videos, axis=(1, 2, 3, 4), keepdims=True)
    return mean + (videos - mean) * jax.random.uniform(k3, per_clip, minval=0.5, maxval=1.5)


def _translation(videos, key):
    """Shifts every clip by up to 1/8 of its size in y and x; uncovered pixels are black."""
    batch_size, _, height, width, _ = videos.shape
    pad_y, pad_x = round(height * TRANSLATION_RATIO), round(width * TRANSLATION_RATIO)
    padded = jnp.pad(
        videos,
        ((0, 0), (0, 0), (pad_y, pad_y), (pad_x, pad_x), (0, 0)),
        constant_values=-1.0,
    )
    key_y, key_x = jax.random.split(key)
    top = jax.random.randint(key_y, (batch_size,), 0, 2 * pad_y + 1)
    left = jax.random.randint(key_x, (batch_size,), 0, 2 * pad_x + 1)
    size = videos.shape[1:2] + (height, width) + videos.shape[4:]
    return jax.vmap(lambda v, y, x: jax.lax.dynamic_slice(v, (0, y, x, 0), size))(padded, top, left)


def _cutout(videos, key):
    """Zeroes one square of half the frame's side per clip, at the same place in every
    frame."""
    batch_size, _, height, width, _ = videos.shape
    half_y, half_x = round(height * CUTOUT_RATIO) // 2, round(width * CUTOUT_RATIO) // 2
    key_y, key_x = jax.random.split(key)
    centre_y = jax.random.randint(key_y, (batch_size, 1, 1), 0, height)
    centre_x = jax.random.randint(key_x, (batch_size, 1, 1), 0, width)
    rows = jnp.arange(height)[None, :, None]
    columns = jnp.arange(width)[None, None, :]
    inside = (jnp.abs(rows - centre_y) < half_y) & (jnp.abs(columns - centre_x) < half_x)
    return jnp.where(inside[:, None, :, :, None], 0.0, videos)


_OPERATIONS = {"color": _color, "translation": _translation, "cutout": _cutout}


def augment(videos, key, names: tuple[str, ...]):
    """videos [B, T, H, W, C] in [-1, 1] -> the same shape, each clip transformed by
    `names` (in AUGMENTATIONS order), one draw per clip shared by its frames."""
    for name in AUGMENTATIONS:
        if name in names:
            videos = _OPERATIONS[name](videos, jax.random.fold_in(key, AUGMENTATIONS.index(name)))
    return videos
