"""DVD-GAN-FP on BAIR robot pushing (small): 15 frames predicted from 1, 64x64, unconditional.
Uses TFDS's own `bair_robot_pushing_small` builder."""

from configs import default


def get_config():
    config = default.get_config()
    config.data.dataset = "bair_robot_pushing_small"
    config.data.builder_config = ""  # the dataset's default TFDS config
    config.data.eval_split = "test"
    config.data.num_frames = 16
    config.data.num_conditioning_frames = 1
    config.data.resolution = 64
    config.data.frame_stride = 1
    config.model.num_classes = 0
    config.train.num_steps = 1_000_000
    return config
