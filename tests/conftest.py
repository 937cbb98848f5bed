"""Shared test set-up: eight simulated CPU devices (set before JAX starts) and tiny configs."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from configs import smoke  # noqa: E402


def tiny_config(resolution=16, num_frames=4, num_conditioning_frames=0, num_classes=0, **model):
    """The smoke config at a given size; `model` overrides config.model fields."""
    config = smoke.get_config()
    config.data.resolution = resolution
    config.data.num_frames = num_frames
    config.data.num_conditioning_frames = num_conditioning_frames
    config.model.num_classes = num_classes
    for name, value in model.items():
        setattr(config.model, name, value)
    return config


@pytest.fixture
def make_config():
    return tiny_config
