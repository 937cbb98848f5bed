"""DVD-GAN-FP on Kinetics-600: predict 11 frames from 5 conditioning frames at 64x64, stride 1.

Unconditional on the class (uncertain: the prediction baselines the paper compares with
use no labels). The paper trains prediction for up to 1M steps.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.dataset = "kinetics600"
    config.data.builder_config = "64"
    config.data.num_frames = 16
    config.data.num_conditioning_frames = 5
    config.data.resolution = 64
    config.data.frame_stride = 1
    config.model.num_classes = 0
    config.train.num_steps = 1_000_000
    return config
