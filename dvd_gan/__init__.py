"""DVD-GAN in JAX/Flax: models, losses, data, training, evaluation and sampling."""

from dvd_gan import storage  # noqa: F401  (chooses the storage backend before any file access)
