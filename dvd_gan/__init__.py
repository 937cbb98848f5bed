"""DVD-GAN in JAX/Flax: models, losses, data, training, evaluation and sampling."""
