"""DVD-GAN's networks: `build(model_config)` returns (generator, spatial_d, temporal_d)."""

from dvd_gan.models.discriminators import SpatialDiscriminator, TemporalDiscriminator
from dvd_gan.models.factory import (
    build,
    count_parameters,
    example_inputs,
    init,
    resolve_dtype,
    resolve_platform_settings,
)
from dvd_gan.models.generator import Generator
from dvd_gan.models.layers import SPECTRAL_STATS

__all__ = [
    "SPECTRAL_STATS",
    "Generator",
    "SpatialDiscriminator",
    "TemporalDiscriminator",
    "build",
    "count_parameters",
    "example_inputs",
    "init",
    "resolve_dtype",
    "resolve_platform_settings",
]
