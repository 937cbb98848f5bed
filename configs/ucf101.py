"""DVD-GAN on UCF-101: 16 frames at 128x128, class-conditional, trained on train+test as in
the paper. Uses TFDS's own `ucf101` builder (256x256 frames, resized and cropped here)."""

from configs import default


def get_config():
    config = default.get_config()
    config.data.dataset = "ucf101"
    config.data.builder_config = "ucf101_1_256"
    config.data.train_split = "train+test"
    config.data.eval_split = "test"
    config.data.num_frames = 16
    config.data.resolution = 128
    config.data.frame_stride = 1  # uncertain: the paper does not state UCF-101's stride.
    config.model.num_classes = 101
    return config
