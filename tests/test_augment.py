"""DiffAugment for videos: one draw per clip shared by its frames, differentiable, and the
policy string's errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvd_gan.training import augment

KEY = jax.random.key(0)


def _static_clips(batch_size=6, frames=5, size=16):
    """Clips whose frames are all the same image: any per-frame difference after
    augmentation would come from the augmentation."""
    images = jax.random.uniform(KEY, (batch_size, 1, size, size, 3), minval=-1, maxval=1)
    return jnp.repeat(images, frames, axis=1)


@pytest.mark.parametrize(
    "names", [("color",), ("translation",), ("cutout",), augment.AUGMENTATIONS]
)
def test_every_frame_of_a_clip_gets_the_same_transformation(names):
    clips = _static_clips()
    out = augment.augment(clips, jax.random.key(1), names)
    assert out.shape == clips.shape
    np.testing.assert_allclose(out, jnp.repeat(out[:, :1], clips.shape[1], axis=1), atol=1e-6)
    changed = np.asarray(jnp.any(jnp.abs(out - clips) > 1e-6, axis=(1, 2, 3, 4)))
    assert changed.sum() >= len(changed) - 1, "nearly every clip must be transformed"
    assert not np.allclose(out[0], out[1] - clips[1] + clips[0]), "draws differ across clips"


def test_translation_shifts_content_and_fills_black():
    clips = _static_clips(batch_size=16)
    out = np.asarray(augment.augment(clips, jax.random.key(2), ("translation",)))
    source = np.asarray(clips)
    limit = round(16 * augment.TRANSLATION_RATIO)
    for clip, shifted in zip(source, out, strict=True):
        matches = [
            (dy, dx)
            for dy in range(-limit, limit + 1)
            for dx in range(-limit, limit + 1)
            if np.array_equal(
                shifted[:, max(dy, 0) : 16 + min(dy, 0), max(dx, 0) : 16 + min(dx, 0)],
                clip[:, max(-dy, 0) : 16 + min(-dy, 0), max(-dx, 0) : 16 + min(-dx, 0)],
            )
        ]
        assert matches, "each clip is a shifted copy of itself"
        dy, dx = matches[0]
        if dy > 0:
            assert np.all(shifted[:, :dy] == -1.0)


def test_gradients_pass_through_every_augmentation():
    clips = _static_clips()

    def total(x):
        return jnp.sum(augment.augment(x, jax.random.key(3), augment.AUGMENTATIONS) ** 2)

    grad = jax.grad(total)(clips)
    assert float(jnp.max(jnp.abs(grad))) > 0


def test_policy_names_are_checked():
    assert augment.parse("") == ()
    assert augment.parse("translation, cutout") == ("translation", "cutout")
    with pytest.raises(ValueError, match="Unknown train.augment entries.*'flip'"):
        augment.parse("translation,flip")
