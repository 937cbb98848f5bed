"""DVD-GAN's networks: `build(model_config)` returns (generator, spatial_d, temporal_d),
defined in `generator.py` and `discriminators.py`."""

from dvd_gan.models.factory import (
    build,
    count_parameters,
    example_inputs,
    init,
    resolve_dtype,
    resolve_platform_settings,
)
from dvd_gan.models.layers import SPECTRAL_STATS

__all__ = [
    "SPECTRAL_STATS",
    "build",
    "count_parameters",
    "example_inputs",
    "init",
    "resolve_dtype",
    "resolve_platform_settings",
]
