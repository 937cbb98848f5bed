"""The main job: DVD-GAN on the embedded Moving MNIST (`moving_mnist_local`, made locally
from real MNIST digits; nothing is downloaded), sized to train on a 2-core CPU in about
15 minutes: 8 frames at 16x16, widths of 16 channels, global batch 16.

The architecture, losses, 2 D steps per G step, Adam betas and EMA are the paper's; the
widths, batch, learning rates and EMA schedule are scaled to the short run (the paper's
0.9999 decay from step 20k would never start).
"""

from configs import default


def get_config():
    config = default.get_config()
    config.batch_size = 16
    config.data.dataset = "moving_mnist_local"
    config.data.builder_config = "standard"
    config.data.train_split = "train"
    config.data.eval_split = "test"
    config.data.num_frames = 8
    config.data.resolution = 16
    config.data.frame_stride = 1
    config.data.num_workers = 2
    config.model.num_classes = 0
    config.model.ch = 16
    config.model.d_ch = 16
    config.model.k_frames = 4
    config.train.num_steps = 900
    config.train.g_learning_rate = 2e-4
    config.train.d_learning_rate = 4e-4
    config.train.ema_decay = 0.99
    config.train.ema_start = 100
    config.train.log_every = 20
    config.train.checkpoint_every = 100
    config.train.sample_every = 100
    config.train.num_samples = 16
    return config
