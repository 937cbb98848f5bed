"""A tiny configuration that runs a few training steps on a laptop CPU in well under a minute.

Same architecture as the paper, shrunk: 16x16 frames, 4 frames, widths of 4 channels.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.batch_size = 8
    config.data.dataset = "moving_mnist_local"
    config.data.builder_config = "small"  # 512 train clips: prepared in seconds
    config.data.eval_split = "test"
    config.data.num_frames = 4
    config.data.resolution = 16
    config.data.frame_stride = 1
    config.data.num_workers = 2
    config.model.num_classes = 0
    config.model.ch = 4
    config.model.d_ch = 4
    config.model.k_frames = 2
    config.train.num_steps = 3
    config.train.ema_start = 0
    return config
