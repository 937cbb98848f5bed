"""The main job: DVD-GAN on the embedded Moving MNIST (`moving_mnist_local`: two real MNIST
digits bouncing in a 64x64 frame, made locally; nothing is downloaded), resized to 32x32,
8 frames, sized to train on a 2-core CPU within the time docs/benchmarks.md records.

Variants, each the paper's mode on data where the right answer is known (one labelled
digit per clip, `moving_mnist_local/single`; dvd_gan/evaluation/digits.py checks them):
- `configs/moving_mnist.py` (no variant): the main job, unconditional synthesis;
- `:conditional`: class-conditional synthesis, 10 classes (G's class-conditional
  BatchNorm on [z; e(y)], D's projection of the class embedding), with a matching-aware D
  (`train.mismatched_label_weight`, not in the paper);
- `:prediction`: DVD-GAN-FP, G continues the first 2 real frames (two frames carry the
  digit's velocity) with 6 more, with a D_T that also scores real continuations after
  another clip's frames as fakes (`train.mismatched_conditioning_weight`, not in the paper).

The architecture, losses, 2 D steps per G step, Adam betas and EMA are the paper's. What
differs, and why (docs/design.md, section 5):
- the ConvGRU candidate is tanh, not ReLU: with ReLU the recurrent state of the second
  and third ConvGRU grew many-fold within a few hundred steps, carried almost no z,
  and reached the output through the blocks' skip convolutions: every z gave the same
  video, its shapes morphing over time;
- widths: G and D at 16 channels with thinner multipliers than the 32x32 row of the
  table, which costs several times more per step here;
- D_T sees 16x16 frames (avg2x2; digits 7 pixels tall) and keeps all 8 time
  steps (no time pooling in its 3D blocks), so it judges frame-to-frame motion; D_S
  scores k = 4 of the 8 frames;
- G makes one grey channel (the dataset is grey);
- batch, learning rates and the EMA schedule fit a run of about a thousand steps (the
  paper's 0.9999 decay from step 20k would never start).
"""

from configs import default

VARIANTS = ("unconditional", "conditional", "prediction")


def get_config(variant: str = "unconditional"):
    if variant not in VARIANTS:
        raise ValueError(f"Unknown moving_mnist variant {variant!r}; choose one of {VARIANTS}.")
    config = default.get_config()
    config.batch_size = 16
    config.data.dataset = "moving_mnist_local"
    config.data.builder_config = "standard"
    config.data.train_split = "train"
    config.data.eval_split = "test"
    config.data.num_frames = 8
    config.data.resolution = 32
    config.data.frame_stride = 1
    config.data.num_workers = 2
    config.model.num_classes = 0
    config.model.ch = 16
    config.model.d_ch = 16
    config.model.g_channel_multipliers = (8, 4, 2, 1)
    config.model.d_channel_multipliers = (1, 2, 4, 8)
    config.model.k_frames = 4
    config.model.temporal_d_input = "avg2x2"
    config.model.temporal_d_time_pooling = False
    config.model.output_channels = 1
    config.model.gru_candidate_activation = "tanh"
    config.train.num_steps = 1200
    config.train.g_learning_rate = 2e-4
    config.train.d_learning_rate = 4e-4
    config.train.ema_decay = 0.99
    config.train.ema_start = 200
    config.train.log_every = 50
    config.train.checkpoint_every = 200
    config.train.keep_checkpoints = 8
    config.train.sample_every = 200
    config.train.num_samples = 16
    if variant != "unconditional":
        # Fewer steps than the main job, so that each job, with the classifier's evaluation
        # after it, takes about as long on a 2-core CPU (docs/benchmarks.md).
        config.data.builder_config = "single"
        config.train.num_steps = 1000
    if variant == "conditional":
        config.model.num_classes = 10
        # D scores real clips with a wrong class as fakes: with the paper's projection alone
        # D ignored the class, since realism alone separated real from fake (docs/design.md,
        # section 6). e(y)'s rows start with a norm like z's (|z| ~ 11).
        config.train.mismatched_label_weight = 1.0
        config.model.g_class_embedding_scale = 11.0
        config.train.num_samples = 20  # two z per class: the grid shows a row per class
    elif variant == "prediction":
        config.data.num_conditioning_frames = 2
        # D_T scores real continuations after another clip's first frames as fakes, so that
        # it checks a continuation against its conditioning frames (docs/design.md, section 6).
        config.train.mismatched_conditioning_weight = 1.0
    return config
