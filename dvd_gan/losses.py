"""DVD-GAN's losses (docs/design.md, section 2): hinge for each discriminator on its total score
(D_S after its frame sum, D_T after its time sum), and -D for the generator (no hinge),
summed over D_S and D_T.

All scores are [B] float arrays; every function returns a scalar (mean over the batch).
"""

import jax.numpy as jnp
from jax.nn import relu


def hinge_discriminator_loss(real_scores, fake_scores):
    """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))] for one discriminator."""
    return jnp.mean(relu(1.0 - real_scores)) + hinge_fake_loss(fake_scores)


def hinge_fake_loss(scores):
    """E[relu(1 + D(x))]: the hinge of clips one discriminator must score as fakes."""
    return jnp.mean(relu(1.0 + scores))


def generator_adversarial_loss(fake_scores):
    """-E[D(G(z))] for one discriminator."""
    return -jnp.mean(fake_scores)


def discriminator_loss(real_spatial, fake_spatial, real_temporal, fake_temporal):
    """L_D = hinge(D_S) + hinge(D_T). Returns (total, {'spatial': ..., 'temporal': ...})."""
    spatial = hinge_discriminator_loss(real_spatial, fake_spatial)
    temporal = hinge_discriminator_loss(real_temporal, fake_temporal)
    return spatial + temporal, {"spatial": spatial, "temporal": temporal}


def mismatched_label_loss(spatial, temporal):
    """E[relu(1 + D_S(x, y'))] + E[relu(1 + D_T(x, y'))]: real clips x given a wrong class
    y' are scored as fakes (the matching-aware discriminator of Reed et al., 2016)."""
    return hinge_fake_loss(spatial) + hinge_fake_loss(temporal)


def generator_loss(fake_spatial, fake_temporal):
    """L_G = -E[D_S(G(z))] - E[D_T(G(z))]."""
    return generator_adversarial_loss(fake_spatial) + generator_adversarial_loss(fake_temporal)
