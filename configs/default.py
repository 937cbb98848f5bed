"""Default configuration: every field of DVD-GAN, one comment each.

Other configs start from this one and override what their setting needs. Fields the paper
leaves open carry the decision recorded in docs/design.md, and can be switched from the command
line (`--config.model.ch=64`). The model reads its frame count, resolution and number of
conditioning frames through references to the data fields, so one override changes both.
"""

import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0  # Root of every random stream: init, z, data order, D_S frame choice.
    config.batch_size = 512  # Global batch (all hosts and devices together), per D or G update.

    data = config.data = ml_collections.ConfigDict()
    data.dataset = "kinetics600"  # Registered TFDS name (see README, Data).
    data.builder_config = "128"  # TFDS builder config (Kinetics: stored short side); "": default.
    data.data_dir = ml_collections.config_dict.placeholder(str)  # TFDS data dir; None: default.
    data.train_split = "train"  # Split to train on (TFDS split syntax, e.g. 'train+test').
    data.eval_split = "validation"  # Split that evaluation compares against.
    data.num_frames = 12  # Frames per clip T, conditioning frames included.
    data.resolution = 64  # Square frame size H = W fed to the model.
    data.num_conditioning_frames = 0  # C frames given to DVD-GAN-FP; 0 for synthesis.
    data.frame_stride = 2  # Take every n-th stored frame (2 for synthesis, 1 for prediction).
    data.random_flip = False  # Random horizontal flip of whole clips during training.
    data.num_workers = 8  # Decoding threads per host.
    data.prefetch_batches = 4  # Batches decoded ahead of the train step per host.

    model = config.model = ml_collections.ConfigDict()
    model.num_frames = data.get_ref("num_frames")  # Linked: T of the videos D sees.
    model.resolution = data.get_ref("resolution")  # Linked: output frame size.
    model.num_conditioning_frames = data.get_ref("num_conditioning_frames")  # Linked: C.
    model.num_classes = 600  # Classes for G's embedding and D's projection; 0: unconditional.
    model.z_dim = 120  # Latent size; z ~ N(0, I) during training.
    model.class_embedding_dim = 120  # Size of G's class embedding e(y).
    model.ch = 128  # Generator base width (uncertain in the paper).
    model.d_ch = 128  # Base width of both discriminators.
    # Per-resolution channel multipliers; None picks docs/design.md's table for the resolution.
    model.g_channel_multipliers = ml_collections.config_dict.placeholder(tuple)
    model.d_channel_multipliers = ml_collections.config_dict.placeholder(tuple)  # For D_S.
    model.dt_channel_multipliers = ml_collections.config_dict.placeholder(tuple)  # For D_T.
    model.g_upsample = "bilinear"  # G's x2 upsampling: 'bilinear' (paper figure) or 'nearest'.
    model.gru_kernel_size = 3  # ConvGRU kernel size.
    # ConvGRU candidate: relu (the paper) or tanh (bounded state; not in the paper).
    model.gru_candidate_activation = "relu"
    model.k_frames = 8  # Frames D_S samples per video.
    model.temporal_d_input = "avg2x2"  # phi: identity, avg2x2, avg4x4 or random_half_crop.
    model.temporal_d_3d_blocks = 2  # Leading 3D residual blocks of D_T.
    model.temporal_d_time_pooling = True  # D_T's 3D blocks also pool x2 in time.
    model.conv3d_impl = "auto"  # 3D convs: native, stacked (as 2D), auto (stacked on CPU).
    model.bn_momentum = 0.99  # Running-average decay of G's BatchNorm statistics.
    model.bn_epsilon = 1e-5  # BatchNorm variance epsilon.
    model.spectral_norm_steps = 1  # Power iterations per forward pass.
    model.g_class_embedding_spectral_norm = False  # SN on G's lookup table (BigGAN: off).
    # Norm of each row of G's lookup table at init (orthogonal rows: 1.0, as BigGAN). Larger
    # gives e(y) a weight in [z; e(y)] comparable to z's (|z| ~ sqrt(z_dim)); not in the paper.
    model.g_class_embedding_scale = 1.0
    model.output_channels = 3  # Channels of G's head: 3 (RGB) or 1 (grey, repeated to RGB).
    model.dtype = "auto"  # Compute dtype: auto (bf16 on TPU/GPU, f32 on CPU), float32, bfloat16.
    # Rematerialisation per G group and D block: none, full, or a jax.checkpoint_policies name.
    model.remat = "none"

    train = config.train = ml_collections.ConfigDict()
    train.num_steps = 300_000  # G updates (each preceded by d_steps D updates).
    train.d_steps = 2  # Discriminator updates per generator update.
    train.accumulation_steps = 1  # Micro-batches per D and G update; gradients averaged.
    train.g_learning_rate = 1e-4  # Adam learning rate of G.
    train.d_learning_rate = 5e-4  # Adam learning rate of D_S and D_T together.
    train.adam_b1 = 0.0  # Adam beta1.
    train.adam_b2 = 0.999  # Adam beta2.
    train.adam_eps = 1e-8  # Adam epsilon (uncertain).
    # DiffAugment before both discriminators (not in the paper): a comma-separated subset
    # of color, translation, cutout, the same draw for every frame of a clip; '': off.
    train.augment = ""
    # Weight of D's hinge on real clips given a wrong class, scored as fakes (not in the
    # paper; Reed et al.'s matching-aware D, 2016); 0: off. Class-conditional runs only.
    train.mismatched_label_weight = 0.0
    # Weight of D_T's hinge on real continuations after another clip's conditioning frames,
    # scored as fakes (not in the paper); 0: off. Frame-conditional (DVD-GAN-FP) runs only.
    train.mismatched_conditioning_weight = 0.0
    train.r1_gamma = 0.0  # Weight of an R1 penalty on real clips (not in the paper); 0: off.
    train.r1_every = 16  # Lazy R1: the penalty on every n-th step only, scaled by n.
    train.ema_decay = 0.9999  # Decay of the EMA of G's weights used for samples and eval.
    train.ema_start = 20_000  # Step from which the EMA averages; before it copies G.
    train.log_every = 50  # Steps between logged metrics (and non-finite checks).
    train.checkpoint_every = 1_000  # Steps between asynchronous checkpoints.
    train.keep_checkpoints = 3  # Newest checkpoints kept on disk.
    train.sample_every = 1_000  # Steps between EMA-generator sample grids (GIF, PNG, TB).
    train.num_samples = 16  # Videos in each sample grid (fixed z, so grids are comparable).
    train.profile_steps = 0  # Steps captured by a jax.profiler trace after warm-up (0: off).

    mesh = config.mesh = ml_collections.ConfigDict()
    mesh.model_axis = 1  # Devices per parameter shard; the rest form the data axis.
    mesh.min_shard_size = 2**18  # Smaller parameters stay replicated on the model axis.

    evaluation = config.eval = ml_collections.ConfigDict()
    evaluation.every = 0  # Steps between FVDs during training, also at 0 and the end; 0: off.
    evaluation.num_videos = 256  # Generated (and real) videos per in-training FVD.
    evaluation.batch_size = 16  # Videos per generator / I3D / standing-statistics batch.
    # Batches of fresh z whose BatchNorm statistics the EMA generator samples with (BigGAN's
    # standing statistics); 0: the raw generator's running averages.
    evaluation.standing_stats_batches = 16
    evaluation.stats_dir = ml_collections.config_dict.placeholder(str)  # Real-data cache.
    return config
