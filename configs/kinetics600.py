"""DVD-GAN on Kinetics-600, class-conditional video synthesis (the paper's main setting).

Variants (frames x resolution): 12x64, 12x128, 12x256, 48x64, 48x128; choose one with
`--config=configs/kinetics600.py:48x128`. Frames are taken at stride 2 from 25 fps clips.
"""

from configs import default

VARIANTS = {
    "12x64": (12, 64),
    "12x128": (12, 128),
    "12x256": (12, 256),
    "48x64": (48, 64),
    "48x128": (48, 128),
}


def get_config(variant: str = "12x128"):
    if variant not in VARIANTS:
        raise ValueError(
            f"Unknown kinetics600 variant {variant!r}; choose one of {sorted(VARIANTS)}."
        )
    num_frames, resolution = VARIANTS[variant]
    config = default.get_config()
    config.data.dataset = "kinetics600"
    config.data.builder_config = str(resolution)
    config.data.num_frames = num_frames
    config.data.resolution = resolution
    config.data.frame_stride = 2
    config.model.num_classes = 600
    return config
