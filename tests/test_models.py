"""The three networks and the FP conditioning stack against docs/design.md, section 1."""

import functools

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from dvd_gan import losses, models
from dvd_gan.models.blocks import DiscriminatorBlock, GeneratorBlock
from dvd_gan.models.conv_gru import ConvGRU, _ConvGRURecurrence
from dvd_gan.models.discriminators import TEMPORAL_D_INPUTS
from dvd_gan.models.layers import (
    SPECTRAL_STATS,
    ClassEmbedding,
    ConditionalBatchNorm,
    TimeStackedConv,
    avg_pool,
    conv_general_dilated,
    float32_affine,
    upsample_2x,
)

KEY = jax.random.key(0)


def jit_apply(module, **static):
    """`module.apply` jitted with static keyword arguments (train, mutable, method, ...)."""
    return jax.jit(functools.partial(module.apply, **static))


def _generator_vars(config, batch_size=2):
    generator = models.build(config.model)[0]
    x = models.example_inputs(config.model, batch_size)
    variables = generator.init(KEY, x["z"], x["labels"], conditioning=x["conditioning"])
    return generator, variables


# Compiles dominate on the CPU, so the tests share a few initialised generators.
GENERATOR_CONFIGS = {
    "unconditional_16x12": dict(resolution=16, num_frames=12, ch=1),
    "conditional_16x5": dict(resolution=16, num_frames=5, num_classes=3),
    "prediction_16x6": dict(resolution=16, num_frames=6, num_conditioning_frames=2, num_classes=3),
    "prediction_64x5": dict(resolution=64, num_frames=5, num_conditioning_frames=2, ch=1),
    "conditional_128x2": dict(resolution=128, num_frames=2, num_classes=3, ch=1),
    "conditional_256x2": dict(resolution=256, num_frames=2, num_classes=3, ch=1),
}


@pytest.fixture(scope="module")
def generators():
    cache = {}

    def get(name):
        if name not in cache:
            config = tiny_config(**GENERATOR_CONFIGS[name])
            cache[name] = (config, *_generator_vars(config))
        return cache[name]

    return get


def _z(batch_size, seed=1):
    return jax.random.normal(jax.random.key(seed), (batch_size, 120))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["unconditional_16x12", "conditional_16x5", "conditional_128x2", "conditional_256x2"]
)
def test_generator_output_shape_and_range(generators, name):
    config, generator, variables = generators(name)
    videos = jit_apply(generator, train=False)(variables, _z(2), jnp.array([0, 2]))
    size, num_frames = config.data.resolution, config.data.num_frames
    assert videos.shape == (2, num_frames, size, size, 3)
    assert videos.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(videos)))
    assert float(jnp.max(jnp.abs(videos))) <= 1.0
    assert float(jnp.std(videos)) > 0.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["prediction_16x6", "prediction_64x5"])
def test_prediction_generator_makes_the_remaining_frames(generators, name):
    config, generator, variables = generators(name)
    size, num_frames = config.data.resolution, config.data.num_frames
    frames = jax.random.uniform(KEY, (2, 2, size, size, 3), minval=-1, maxval=1)
    apply = jit_apply(generator, train=False)
    labels = jnp.array([0, 1])
    videos = apply(variables, _z(2), labels, conditioning=frames)
    assert videos.shape == (2, num_frames - 2, size, size, 3)
    assert float(jnp.max(jnp.abs(videos))) <= 1.0
    other = apply(variables, _z(2), labels, conditioning=-frames)
    assert not np.allclose(videos, other), "the conditioning frames must change the output"
    with pytest.raises(ValueError, match="conditioning frames shaped"):
        generator.apply(variables, _z(2), labels, train=False)


def test_generator_batch_norm_statistics_are_per_time_step(generators):
    _, generator, variables = generators("conditional_16x5")
    stats = jax.tree_util.tree_leaves_with_path(variables["batch_stats"])
    assert len(stats) >= 2 * (2 * 2 * 2 + 1)  # mean+var per CBN (2 per block) and the head
    for path, leaf in stats:
        assert leaf.ndim == 2 and leaf.shape[0] == 5, (jax.tree_util.keystr(path), leaf.shape)
    apply = jit_apply(generator, train=True, mutable=["batch_stats", SPECTRAL_STATS])
    _, updated = apply(variables, _z(4), jnp.array([0, 1, 0, 1]))
    mean = updated["batch_stats"]["head_bn"]["bn"]["mean"]
    assert not np.allclose(mean[0], mean[-1]), "per-step statistics must differ between steps"


def test_spectral_norm_constrains_every_generator_layer(generators):
    """Every weight of an unconditional G (kernels of ndim >= 2: the projection, ConvGRU
    gates, block and skip convolutions, CBN gain and bias maps, the head) is normalised:
    scaling any one of them x10 leaves the output unchanged."""
    _, generator, variables = generators("unconditional_16x12")
    apply = jit_apply(generator, train=False)
    z, labels = _z(2), jnp.array([0, 0])
    before = apply(variables, z, labels)
    kernels = [
        path
        for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"])
        if leaf.ndim >= 2
    ]
    assert len(kernels) >= 20, "the test must see every layer"
    for path in kernels:
        scaled = jax.tree_util.tree_map_with_path(
            lambda p, x, path=path: x * 10.0 if p == path else x, variables["params"]
        )
        after = apply({**variables, "params": scaled}, z, labels)
        np.testing.assert_allclose(
            before, after, rtol=1e-4, atol=1e-5, err_msg=jax.tree_util.keystr(path)
        )


def test_conditional_batch_norm_learns_an_affine_without_conditioning():
    """With c = 0 (what an unconditional G's z is on average) the learnable bias terms of
    the gain and bias maps still scale and shift every channel."""
    norm = ConditionalBatchNorm(momentum=0.9, epsilon=1e-5)
    x = jax.random.normal(KEY, (4, 3, 5, 5, 6)) * 3.0 + 1.0
    cond = jnp.zeros((4, 8))
    variables = norm.init(KEY, x, cond, train=True)
    params = variables["params"]
    assert params["gain"]["dense"]["bias"].shape == (6,)
    assert params["bias"]["dense"]["bias"].shape == (6,)
    scale, offset = jnp.linspace(0.5, 2.0, 6), jnp.linspace(-1.0, 1.0, 6)
    params = jax.tree_util.tree_map(lambda p: p, params)
    params["gain"]["dense"]["bias"] = scale - 1.0
    params["bias"]["dense"]["bias"] = offset
    y, _ = norm.apply({**variables, "params": params}, x, cond, train=True, mutable=True)
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 2, 3)), offset[None].repeat(3, 0), atol=1e-4)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 2, 3)), scale[None].repeat(3, 0), rtol=1e-3)


def test_grey_generator_makes_equal_channels():
    config = tiny_config(16, num_frames=3, ch=2, output_channels=1)
    generator, variables = _generator_vars(config)
    videos = jit_apply(generator, train=False)(variables, _z(2), jnp.array([0, 0]))
    assert videos.shape == (2, 3, 16, 16, 3)
    np.testing.assert_array_equal(videos[..., 0], videos[..., 1])
    np.testing.assert_array_equal(videos[..., 0], videos[..., 2])
    assert variables["params"]["head_conv"]["conv"]["kernel"].shape[-1] == 1


def test_temporal_discriminator_3d_block_mixes_neighbouring_frames():
    """A change of frame t reaches D_T's first-block features at t - 1 and t + 1 (a 3x3x3
    kernel), and not frames three steps away (two convolutions reach two steps)."""
    config = tiny_config(16, num_frames=8, temporal_d_time_pooling=False)
    temporal_d = models.build(config.model)[2]
    videos = _videos(config, 2)
    variables = temporal_d.init({"params": KEY, "frames": KEY}, videos, None)

    def first_block(module, x):
        return module.blocks_3d[0](module.phi(x), False)

    features = jax.jit(functools.partial(temporal_d.apply, method=first_block))
    t = 3
    changed = videos.at[:, t].set(-videos[:, t])
    before, after = features(variables, videos), features(variables, changed)
    assert before.shape[1] == 8
    differs = np.asarray(jnp.max(jnp.abs(before - after), axis=(0, 2, 3, 4))) > 1e-6
    assert differs[t - 1] and differs[t] and differs[t + 1], differs
    assert not differs[t + 3] and not differs[t - 3], differs


def _videos(config, batch_size, seed=3):
    shape = (batch_size, config.data.num_frames, config.data.resolution, config.data.resolution, 3)
    return jax.random.uniform(jax.random.key(seed), shape, minval=-1, maxval=1)


def _discriminator_vars(config, spatial_d, temporal_d, batch_size=2):
    x = models.example_inputs(config.model, batch_size)
    rngs = {"params": KEY, "frames": KEY}
    return (
        spatial_d.init(rngs, x["videos"], x["labels"]),
        temporal_d.init(rngs, x["videos"], x["labels"]),
    )


def _frames_with_gradient(grad):
    return np.asarray(jnp.any(grad != 0, axis=(2, 3, 4)))  # [B, T]


@pytest.mark.parametrize("num_conditioning_frames", [0, 2])
def test_spatial_discriminator_sees_k_distinct_full_resolution_frames(num_conditioning_frames):
    config = tiny_config(
        16, num_frames=7, num_conditioning_frames=num_conditioning_frames, num_classes=3, k_frames=3
    )
    _, spatial_d, _ = models.build(config.model)
    videos, labels = _videos(config, 4), jnp.array([0, 1, 2, 1])
    variables = spatial_d.init({"params": KEY, "frames": KEY}, videos, labels)

    score = jax.jit(lambda v, key: spatial_d.apply(variables, v, labels, rngs={"frames": key}))
    score_grad = jax.jit(jax.grad(lambda v, key: jnp.sum(score(v, key))))
    per_frame_scores = jit_apply(spatial_d, method=lambda m, f, y: m.scorer(f, y, False))
    seen = np.zeros(7, bool)
    for seed in range(6):
        key = jax.random.key(seed)
        grad = score_grad(videos, key)
        used = _frames_with_gradient(grad)
        np.testing.assert_array_equal(used.sum(axis=1), 3)  # exactly k distinct frames each
        assert not used[:, :num_conditioning_frames].any(), "D_S must skip conditioning frames"
        seen |= used.any(axis=0)

        # D_S(x) is the sum of the per-frame scores of exactly those frames.
        index = np.stack([np.flatnonzero(row) for row in used])  # [B, k]
        frames = jnp.take_along_axis(videos, index[:, :, None, None, None], axis=1)
        per_frame = per_frame_scores(
            variables, frames.reshape((-1,) + frames.shape[2:]), jnp.repeat(labels, 3)
        )
        np.testing.assert_allclose(
            score(videos, key), per_frame.reshape(4, 3).sum(axis=1), rtol=1e-5, atol=1e-5
        )
    assert seen[num_conditioning_frames:].all(), "every generated frame gets sampled"

    # Full resolution: a pattern invisible after 2x2 pooling still changes D_S.
    pattern = _zero_sum_2x2_pattern(videos.shape)
    before = score(videos, KEY)
    after = score(videos + pattern, KEY)
    assert np.max(np.abs(before - after)) > 1e-3


def _zero_sum_2x2_pattern(shape, seed=5):
    """Random amplitudes per 2x2 block times [[1, -1], [-1, 1]]: every block sums to zero."""
    b, t, h, w, c = shape
    amplitude = jax.random.uniform(jax.random.key(seed), (b, t, h // 2, w // 2, c))
    amplitude = jnp.repeat(jnp.repeat(amplitude, 2, axis=2), 2, axis=3)
    sign = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
    return amplitude * jnp.tile(sign, (h // 2, w // 2))[None, None, :, :, None]


def test_temporal_discriminator_depends_on_video_only_through_2x2_pooling():
    config = tiny_config(16, num_frames=8, num_classes=3)
    _, _, temporal_d = models.build(config.model)
    videos, labels = _videos(config, 3), jnp.array([0, 1, 2])
    variables = temporal_d.init({"params": KEY}, videos, labels)
    pattern = _zero_sum_2x2_pattern(videos.shape)
    assert float(jnp.max(jnp.abs(pattern))) > 0.1
    score = jax.jit(lambda v: temporal_d.apply(variables, v, labels))
    before = score(videos)
    np.testing.assert_allclose(before, score(videos + pattern), rtol=1e-5, atol=1e-5)
    # ...while a pattern that survives pooling does change it.
    shifted = score(videos + jnp.abs(pattern))
    assert np.max(np.abs(before - shifted)) > 1e-3


@pytest.mark.parametrize("phi", TEMPORAL_D_INPUTS)
def test_temporal_discriminator_input_transforms(phi):
    """Each phi gives D_T its input size, scores every clip, and passes a gradient to every
    D_T parameter (the scores, not a hinge loss, whose bias gradient can cancel). Inside the
    train step, avg2x2 (the smoke config's) and random_half_crop (tests/test_step.py's
    conditional clips) run too; the step handles D_T the same way whatever its phi."""
    config = tiny_config(16, num_frames=4, temporal_d_input=phi)
    _, _, temporal_d = models.build(config.model)
    videos = _videos(config, 2)
    rngs = {"params": KEY, "frames": KEY}
    variables = temporal_d.init(rngs, videos, None)
    phi_x = temporal_d.apply(variables, videos, method="phi", rngs={"frames": KEY})
    size = {"identity": 16, "avg2x2": 8, "avg4x4": 4, "random_half_crop": 8}[phi]
    assert phi_x.shape == (2, 4, size, size, 3)
    if phi == "random_half_crop":  # a crop of the video, at some position
        crops = [videos[:, :, y : y + 8, x : x + 8] for y in range(9) for x in range(9)]
        assert any(np.allclose(phi_x[0], crop[0]) for crop in crops)

    def total_score(params):
        scores = temporal_d.apply({**variables, "params": params}, videos, None, rngs=rngs)
        assert scores.shape == (2,)
        return scores.sum()

    grads = jax.jit(jax.grad(total_score))(variables["params"])
    for path, grad in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(grad)) and np.any(grad != 0), jax.tree_util.keystr(path)


@pytest.mark.parametrize("which", [1, 2])
def test_spectral_norm_constrains_every_discriminator_layer(which):
    config = tiny_config(16, num_frames=4, num_classes=3)
    network = models.build(config.model)[which]
    videos, labels = _videos(config, 2), jnp.array([0, 2])
    rngs = {"params": KEY, "frames": KEY}
    variables = network.init(rngs, videos, labels)
    update = jit_apply(network, train=True, mutable=[SPECTRAL_STATS])
    for _ in range(30):  # let the power iteration converge
        _, state = update(variables, videos, labels, rngs=rngs)
        variables = {**variables, **state}
    kernels = [leaf for leaf in jax.tree_util.tree_leaves(variables["params"]) if leaf.ndim >= 2]
    assert len(kernels) >= 10
    scaled = {
        **variables,
        "params": jax.tree_util.tree_map(
            lambda p: p * 10.0 if p.ndim >= 2 else p, variables["params"]
        ),
    }
    score = jit_apply(network)
    before = score(variables, videos, labels, rngs=rngs)
    after = score(scaled, videos, labels, rngs=rngs)
    np.testing.assert_allclose(
        before, after, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(before)))
    )


@pytest.mark.slow
def test_gradients_reach_every_parameter(generators):
    _, generator, g_vars = generators("prediction_16x6")
    config = tiny_config(**GENERATOR_CONFIGS["prediction_16x6"], k_frames=2)
    _, spatial_d, temporal_d = models.build(config.model)
    ds_vars, dt_vars = _discriminator_vars(config, spatial_d, temporal_d)
    real, labels = _videos(config, 2), jnp.array([1, 2])
    rngs = {"frames": KEY}

    def fake_video(g_params):
        generated = generator.apply(
            {**g_vars, "params": g_params},
            _z(2),
            labels,
            conditioning=real[:, :2],
            train=True,
            mutable=["batch_stats", SPECTRAL_STATS],
        )[0]
        return jnp.concatenate([real[:, :2], generated], axis=1)

    def g_loss(g_params):
        video = fake_video(g_params)
        return losses.generator_loss(
            spatial_d.apply(ds_vars, video, labels, rngs=rngs),
            temporal_d.apply(dt_vars, video, labels),
        )

    def d_scores(d_params):
        # The scores, not the hinge loss: in the hinge loss the output bias's gradient
        # cancels exactly between real and fake while every score is inside the margin.
        video = jnp.concatenate([real, fake_video(g_vars["params"])])
        ds = {**ds_vars, "params": d_params[0]}
        dt = {**dt_vars, "params": d_params[1]}
        both = jnp.concatenate([labels, labels])
        return jnp.sum(
            spatial_d.apply(ds, video, both, rngs=rngs) + temporal_d.apply(dt, video, both)
        )

    g_grads = jax.jit(jax.grad(g_loss))(g_vars["params"])
    d_grads = jax.jit(jax.grad(d_scores))((ds_vars["params"], dt_vars["params"]))
    for name, grads in [("G", g_grads), ("D_S", d_grads[0]), ("D_T", d_grads[1])]:
        for path, grad in jax.tree_util.tree_leaves_with_path(grads):
            assert float(jnp.max(jnp.abs(grad))) > 0, f"{name}{jax.tree_util.keystr(path)}"
    assert "conditioning" in g_grads and "class_embedding" in g_grads


def _reference_gru(params, x_seq, h0, activation=jax.nn.relu):
    """The ConvGRU equations written directly on concatenated inputs."""

    def conv(x, k):
        return jax.lax.conv_general_dilated(
            x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    h, outputs = h0, []
    for t in range(x_seq.shape[1]):
        x = x_seq[:, t]
        hx = jnp.concatenate([h, x], -1)
        r = jax.nn.sigmoid(conv(hx, params["reset_kernel"]) + params["reset_bias"])
        u = jax.nn.sigmoid(conv(hx, params["update_kernel"]) + params["update_bias"])
        xrh = jnp.concatenate([x, r * h], -1)
        c = activation(conv(xrh, params["candidate_kernel"]) + params["candidate_bias"])
        h = u * h + (1 - u) * c
        outputs.append(h)
    return jnp.stack(outputs, 1)


@pytest.mark.parametrize(
    "constant_input,zero_state,candidate",
    [(False, False, "relu"), (True, True, "relu"), (False, False, "tanh")],
)
def test_conv_gru_matches_the_equations(constant_input, zero_state, candidate):
    recurrence = _ConvGRURecurrence(
        features=5, kernel_size=3, dtype=jnp.float32, candidate_activation=candidate
    )
    x = jax.random.normal(jax.random.key(1), (2, 4, 6, 6, 3))
    h0 = jnp.zeros((2, 6, 6, 5)) if zero_state else jax.random.normal(KEY, (2, 6, 6, 5))
    x_in = x[:, 0] if constant_input else x
    params = recurrence.init(KEY, x_in, h0, 4)["params"]
    params = jax.tree_util.tree_map(lambda p: p + 0.1 * jax.random.normal(KEY, p.shape), params)
    ours = recurrence.apply({"params": params}, x_in, None if zero_state else h0, 4)
    x_seq = jnp.repeat(x[:, :1], 4, axis=1) if constant_input else x
    activation = {"relu": jax.nn.relu, "tanh": jnp.tanh}[candidate]
    expected = _reference_gru(params, x_seq, h0, activation)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def test_float32_affine_sums_a_bfloat16_bias_gradient_in_float32():
    """A bias added to a bf16 activation of 32k positions per channel: its gradient within
    1% of f32 arithmetic's (adding it in bf16 sums the gradient in bf16: about 12% off)."""
    x = jax.random.normal(jax.random.key(0), (8, 4, 16, 16, 32))
    weights = jax.random.normal(jax.random.key(1), x.shape)

    def loss(bias, dtype):
        y = float32_affine(x.astype(dtype), 1.0, bias)
        assert y.dtype == dtype
        return jnp.sum(y.astype(jnp.float32) * weights)

    bias = jnp.zeros(32)
    reference = jax.grad(loss)(bias, jnp.float32)
    mixed = jax.grad(loss)(bias, jnp.bfloat16)
    assert jnp.linalg.norm(mixed - reference) / jnp.linalg.norm(reference) < 0.01


def test_bfloat16_conv_gru_keeps_its_state_in_float32():
    """48 steps in bfloat16 against float32, same parameters and inputs: the state stays
    within 0.45% (mean relative error) at every step from the 8th on. Measured: 0.36-0.38%
    with the state kept in float32; rounding it to bfloat16 at every step gives 0.55%,
    which fails. (The error does not grow over the steps either way: the GRU contracts.)"""
    steps = 48
    x = jax.random.normal(jax.random.key(1), (4, steps, 8, 8, 16))
    h0 = jax.random.normal(jax.random.key(2), (4, 8, 8, 16))

    def gru(dtype):
        return ConvGRU(16, candidate_activation="tanh", dtype=dtype)

    variables = gru(jnp.float32).init(KEY, x, h0, steps, False)
    reference = gru(jnp.float32).apply(variables, x, h0, steps, False)
    bf16 = gru(jnp.bfloat16).apply(variables, x, h0, steps, False)
    error = jnp.mean(jnp.abs(bf16.astype(jnp.float32) - reference), axis=(0, 2, 3, 4))
    relative = np.asarray(error / jnp.mean(jnp.abs(reference), axis=(0, 2, 3, 4)))
    assert relative[7:].max() <= 4.5e-3, relative


def test_bilinear_upsampling_matches_jax_image_resize():
    x = jax.random.normal(KEY, (2, 5, 7, 3))
    expected = jax.image.resize(x, (2, 10, 14, 3), "bilinear")
    np.testing.assert_allclose(upsample_2x(x, "bilinear"), expected, rtol=1e-5, atol=1e-6)
    assert upsample_2x(x, "nearest").shape == (2, 10, 14, 3)
    with pytest.raises(ValueError, match="bilinear"):
        upsample_2x(x, "cubic")


def test_unconditional_model_ignores_labels_and_rejects_bad_settings(generators):
    _, generator, variables = generators("unconditional_16x12")
    apply = jit_apply(generator)
    a = apply(variables, _z(2), jnp.array([0, 1]))
    b = apply(variables, _z(2), jnp.array([5, 9]))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="k_frames"):
        bad = tiny_config(16, num_frames=4, k_frames=5)
        models.init(bad.model, KEY)
    with pytest.raises(ValueError, match="g_channel_multipliers"):
        models.build(tiny_config(16, g_channel_multipliers=(8, 4)).model)
    with pytest.raises(ValueError, match="model.dtype"):
        models.build(tiny_config(16, dtype="float16").model)


def test_hinge_losses_on_hand_computed_scores():
    real = jnp.array([2.0, 0.5, -1.0])
    fake = jnp.array([-2.0, 0.0, 1.5])
    # relu(1 - real) = [0, 0.5, 2]: mean 5/6; relu(1 + fake) = [0, 1, 2.5]: mean 7/6.
    np.testing.assert_allclose(losses.hinge_discriminator_loss(real, fake), 2.0, rtol=1e-6)
    total, parts = losses.discriminator_loss(real, fake, real + 1.0, fake - 1.0)
    # Second discriminator: relu(1 - (real + 1)) = [0, 0, 1]; relu(fake) = [0, 0, 1.5].
    np.testing.assert_allclose(parts["temporal"], 1.0 / 3 + 1.5 / 3, rtol=1e-6)
    np.testing.assert_allclose(total, 2.0 + 2.5 / 3, rtol=1e-6)
    np.testing.assert_allclose(losses.generator_adversarial_loss(fake), 0.5 / 3, rtol=1e-6)
    np.testing.assert_allclose(
        losses.generator_loss(fake, fake - 1.0), 0.5 / 3 + 3.5 / 3, rtol=1e-6
    )
    # Real clips given a wrong class, scored as fakes: relu(1 + real) = [3, 1.5, 0] and
    # relu(1 + (real - 1)) = [2, 0.5, 0].
    np.testing.assert_allclose(
        losses.mismatched_label_loss(real, real - 1.0), 4.5 / 3 + 2.5 / 3, rtol=1e-6
    )


@pytest.mark.parametrize("scale", [1.0, 11.0])
def test_class_embedding_rows_have_the_configured_norm(scale):
    """G's lookup table starts with orthogonal rows of norm `model.g_class_embedding_scale`."""
    embedding = ClassEmbedding(10, 120, use_spectral_norm=False, init_scale=scale)
    variables = embedding.init(jax.random.key(0), jnp.arange(10), update_stats=False)
    table = np.asarray(embedding.apply(variables, jnp.arange(10), update_stats=False))
    np.testing.assert_allclose(np.linalg.norm(table, axis=1), scale, rtol=1e-5)
    np.testing.assert_allclose(table @ table.T, scale**2 * np.eye(10), atol=1e-4 * scale**2)


def test_time_stacked_conv_equals_native_3d_conv():
    x = jax.random.normal(KEY, (2, 5, 6, 6, 3))
    stacked = TimeStackedConv(4, (3, 3, 3))
    native = flax.linen.Conv(4, (3, 3, 3), padding="SAME")
    params = stacked.init(KEY, x)
    params = jax.tree_util.tree_map(lambda p: p + jax.random.normal(KEY, p.shape), params)
    assert jax.tree_util.tree_map(jnp.shape, params) == jax.tree_util.tree_map(
        jnp.shape, native.init(KEY, x)
    )
    np.testing.assert_allclose(
        stacked.apply(params, x), native.apply(params, x), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize(
    "input_shape, kernel_shape",
    [
        ((3, 2, 2, 5), (3, 3, 5, 4)),  # the 2x2 maps at the end of the discriminators
        ((3, 1, 2, 5), (3, 3, 5, 4)),
        ((2, 2, 3, 3, 5), (3, 3, 3, 5, 4)),  # 3D
        ((2, 4, 4, 5), (3, 3, 5, 4)),  # not smaller than the kernel: XLA's convolution
        ((2, 6, 5, 5), (1, 1, 5, 4)),  # 1x1: a matmul over channels
        ((2, 3, 4, 4, 5), (1, 1, 1, 5, 4)),  # 1x1x1
    ],
)
def test_matmul_convolutions_equal_xla_convolution(input_shape, kernel_shape):
    x = jax.random.normal(KEY, input_shape)
    kernel = jax.random.normal(jax.random.key(1), kernel_shape)
    spatial = "DHW"[-(len(input_shape) - 2) :]
    numbers = jax.lax.conv_dimension_numbers(
        input_shape, kernel_shape, (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
    )

    def loss(x, kernel, conv):
        y = conv(x, kernel, (1,) * (x.ndim - 2), "SAME", dimension_numbers=numbers)
        return jnp.sum(jnp.sin(y))

    ours = jax.value_and_grad(loss, (0, 1))(x, kernel, conv_general_dilated)
    xla = jax.value_and_grad(loss, (0, 1))(x, kernel, jax.lax.conv_general_dilated)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(xla), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "shape, window",
    [((2, 8, 6, 3), (2, 2)), ((2, 5, 8, 6, 3), (2, 2, 2)), ((2, 5, 8, 6, 3), (1, 2, 2))],
)
def test_average_pooling_equals_flax_valid_pooling(shape, window):
    """Also where time (5 frames) does not fill the last window: it is dropped."""
    x = jax.random.normal(KEY, shape)

    def loss(x, pool):
        return jnp.sum(jnp.sin(pool(x)))

    ours = jax.value_and_grad(loss)(x, lambda x: avg_pool(x, window))
    flax_pool = jax.value_and_grad(loss)(
        x, lambda x: flax.linen.avg_pool(x, window, strides=window, padding="VALID")
    )
    for a, b in zip(ours, flax_pool, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _conv(x, params, name):
    """The block's spectrally-normalised convolution `name`, in plain JAX."""
    kernel = params[name]["conv"]["kernel"]
    y = jax.lax.conv_general_dilated(
        x, kernel, (1,) * (x.ndim - 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + params[name]["conv"]["bias"]


def test_discriminator_block_is_biggans_order():
    """Pooling the skip before its 1x1 convolution computes BigGAN's Conv1 -> AvgPool2."""
    block = DiscriminatorBlock(6, downsample=True)
    x = jax.random.normal(KEY, (2, 8, 8, 3))
    variables = block.init(KEY, x, False)
    params = jax.tree_util.tree_map(
        lambda p: p + 0.1 * jax.random.normal(KEY, p.shape), variables["params"]
    )
    # The sigmas this call divides by are the ones it stores.
    ours, state = block.apply({**variables, "params": params}, x, True, mutable=[SPECTRAL_STATS])
    normalised = jax.tree_util.tree_map(lambda p: p, params)
    for name in ("conv1", "conv2", "skip"):
        sigma = state[SPECTRAL_STATS][name]["sn"]["conv/kernel/sigma"]
        normalised[name]["conv"]["kernel"] = params[name]["conv"]["kernel"] / sigma
    h = _conv(jax.nn.relu(_conv(jax.nn.relu(x), normalised, "conv1")), normalised, "conv2")
    expected = avg_pool(h, (2, 2)) + avg_pool(_conv(x, normalised, "skip"), (2, 2))
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def test_generator_block_skip_is_biggans_order():
    """Upsampling the skip after its 1x1 convolution computes BigGAN's Up -> Conv1."""
    block = GeneratorBlock(5, upsample=True)
    x = jax.random.normal(KEY, (2, 3, 4, 4, 6))
    cond = jax.random.normal(KEY, (2, 7))
    variables = block.init(KEY, x, cond, False)
    params = jax.tree_util.tree_map(
        lambda p: p + 0.1 * jax.random.normal(KEY, p.shape), variables["params"]
    )
    params["conv1"]["conv"]["kernel"] *= 0.0
    params["conv2"]["conv"]["kernel"] *= 0.0
    ours, state = block.apply(
        {**variables, "params": params}, x, cond, True, mutable=[SPECTRAL_STATS, "batch_stats"]
    )
    sigma = state[SPECTRAL_STATS]["skip"]["sn"]["conv/kernel/sigma"]
    skip = {"skip": {"conv": {**params["skip"]["conv"]}}}
    skip["skip"]["conv"]["kernel"] = params["skip"]["conv"]["kernel"] / sigma
    frames = x.reshape(6, 4, 4, 6)
    expected = (
        _conv(upsample_2x(frames, "bilinear"), skip, "skip") + (params["conv2"]["conv"]["bias"])
    )
    np.testing.assert_allclose(ours.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)
