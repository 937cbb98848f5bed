"""What one real train step does: every D_T input transform trains, D and G update counts,
the DVD-GAN-FP step's videos and gradients, and the EMA generator's standing statistics."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from dvd_gan import models, sharding
from dvd_gan.models.discriminators import (
    TEMPORAL_D_INPUTS,
    FrameScorer,
    SpatialDiscriminator,
    TemporalDiscriminator,
)
from dvd_gan.training import state as state_lib
from dvd_gan.training.standing_stats import StandingStatistics, standing_inputs
from dvd_gan.training.step import accumulated_gradients, jit_train_step, memory_advice


def _batch(config, batch_size, seed=0):
    size = config.data.resolution
    shape = (config.train.d_steps, batch_size, config.data.num_frames, size, size, 3)
    rng = np.random.default_rng(seed)
    return {
        "videos": rng.integers(0, 256, shape, dtype=np.uint8),
        "labels": np.zeros(shape[:2], np.int32),
    }


def _steps(config, num_steps, batch_size=4):
    """(initial state, state after `num_steps` steps, metrics of each) on one device."""
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    initial = state_lib.init_state_on_mesh(config, mesh, jax.random.key(0))
    initial_host = jax.device_get(initial)
    step = jit_train_step(config, mesh)
    state, history = initial, []
    for i in range(num_steps):
        state, metrics = step(state, _batch(config, batch_size, i))
        history.append(jax.device_get(metrics))
    return initial_host, jax.device_get(state), history


def _adam_count(opt_state) -> int:
    counts = [
        int(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(opt_state)
        if "count" in jax.tree_util.keystr(path)
    ]
    assert len(counts) == 1, counts
    return counts[0]


@pytest.mark.parametrize("phi", TEMPORAL_D_INPUTS)
def test_every_temporal_d_input_trains_a_step(phi):
    config = tiny_config(16, num_frames=4, temporal_d_input=phi)
    _, state, history = _steps(config, 1)
    assert int(state.step) == 1
    assert all(np.isfinite(v) for v in history[0].values()), history[0]


def test_d_steps_discriminator_updates_per_generator_update_and_lazy_r1():
    """Also: the lazy R1 penalty is computed on every r1_every-th step only."""
    config = tiny_config(16, num_frames=4)
    config.train.d_steps = 3
    config.train.r1_gamma = 1.0
    config.train.r1_every = 2
    _, state, history = _steps(config, 3)
    assert _adam_count(state.g_opt_state) == 3
    assert _adam_count(state.d_opt_state) == 3 * 3
    penalties = [float(m["r1_penalty"]) for m in history]
    assert penalties[0] > 0 and penalties[2] > 0 and penalties[1] == 0, penalties


def test_prediction_step_conditions_on_real_frames_and_scores_generated_ones():
    """Inside a real DVD-GAN-FP train step (jitted, 2 D updates and a G update), recorded
    through Flax's method interception: every fake video D sees starts with the real clip's
    C conditioning frames; every frame D_S scores is a generated frame of its video (never
    a conditioning frame); and G's update changes the conditioning stack's parameters."""
    c, k = 2, 2
    config = tiny_config(16, num_frames=5, num_conditioning_frames=c, k_frames=k)
    batch = _batch(config, batch_size=2)
    records = []

    def record(kind, value):
        records.append((kind, np.asarray(value)))

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name == "__call__":
            kind = None
            if isinstance(module, SpatialDiscriminator | TemporalDiscriminator):
                kind = type(module).__name__
            elif isinstance(module, FrameScorer) and isinstance(
                module.parent, SpatialDiscriminator
            ):
                kind = "scored"
            if kind:
                jax.debug.callback(functools.partial(record, kind), args[0], ordered=True)
        return next_fun(*args, **kwargs)

    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    state = state_lib.init_state_on_mesh(config, mesh, jax.random.key(0))
    initial = jax.device_get(state)
    with nn.intercept_methods(interceptor):  # traced, so recorded, inside the context
        state, _ = jit_train_step(config, mesh)(state, batch)
    state = jax.device_get(state)

    real = np.asarray(batch["videos"], np.float32) / 127.5 - 1.0  # [d_steps, B, T, H, W, 3]
    d_calls = [v for kind, v in records if kind == "SpatialDiscriminator"]
    scored = [v for kind, v in records if kind == "scored"]
    temporal = [v for kind, v in records if kind == "TemporalDiscriminator"]
    # Per D update D_S and D_T see [real; fake] (4 rows); in G's update the fake alone.
    assert [len(v) for v in d_calls] == [len(v) for v in temporal] == [4, 4, 2]
    for i, (spatial_videos, temporal_videos) in enumerate(zip(d_calls, temporal, strict=True)):
        np.testing.assert_array_equal(spatial_videos, temporal_videos)
        conditioning = real[min(i, 1), :, :c]
        fakes = spatial_videos[-2:]
        np.testing.assert_allclose(fakes[:, :c], conditioning, atol=1e-6)
    for videos, frames in zip(d_calls, scored, strict=True):
        frames = frames.reshape(len(videos), k, *frames.shape[1:])
        for row, video in enumerate(videos):
            for frame in frames[row]:
                distances = np.abs(video - frame).max(axis=(1, 2, 3))
                assert distances[c:].min() == 0.0, "D_S scored a frame of another video"
                assert distances[:c].min() > 0.1, "D_S scored a conditioning frame"
    before = jax.tree_util.tree_leaves(initial.generator["params"]["conditioning"])
    after = jax.tree_util.tree_leaves(state.generator["params"]["conditioning"])
    assert all(not np.allclose(a, b) for a, b in zip(before, after, strict=True))


def test_standing_statistics_are_the_ema_generators_batch_statistics():
    """After steps in which the EMA weights moved away from G's, the sampler's statistics
    are the mean over the standing batches of the EMA generator's per-time-step batch
    statistics, computed here another way (the run's own momentum from zero statistics,
    divided back out), and differ from the raw generator's running averages."""
    config = tiny_config(16, num_frames=4)
    config.train.ema_start = 0
    config.train.ema_decay = 0.5
    config.eval.standing_stats_batches = 3
    config.eval.batch_size = 4
    _, state, _ = _steps(config, 3)
    ema, g_vars = state.ema_params, state.generator
    assert not np.allclose(
        jax.tree_util.tree_leaves(ema)[0], jax.tree_util.tree_leaves(g_vars["params"])[0]
    )
    key = jax.random.key(7)
    standing = StandingStatistics(config)(ema, g_vars, key)

    generator = models.build(config.model)[0]
    momentum = config.model.bn_momentum
    apply = jax.jit(
        functools.partial(generator.apply, train=True, mutable=["batch_stats", "spectral_stats"])
    )
    zeros = jax.tree.map(jnp.zeros_like, g_vars["batch_stats"])
    spectral, batch_means = g_vars["spectral_stats"], []
    for i in range(3):
        z, labels = standing_inputs(config, jax.random.fold_in(key, i), 4)
        variables = {**g_vars, "params": ema, "batch_stats": zeros, "spectral_stats": spectral}
        _, updated = apply(variables, z, labels)
        spectral = updated["spectral_stats"]
        batch_means.append(jax.tree.map(lambda s: s / (1.0 - momentum), updated["batch_stats"]))
    expected = jax.tree.map(lambda *s: sum(s) / 3, *batch_means)

    paths = jax.tree_util.tree_leaves_with_path(standing["batch_stats"])
    assert len(paths) >= 10
    for (path, got), want, raw in zip(
        paths,
        jax.tree_util.tree_leaves(expected),
        jax.tree_util.tree_leaves(g_vars["batch_stats"]),
        strict=True,
    ):
        name = jax.tree_util.keystr(path)
        assert got.shape[0] == 4, name  # per time step
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
        assert not np.allclose(got, raw, rtol=1e-3, atol=1e-4), name
    off = config.copy_and_resolve_references()
    off.eval.standing_stats_batches = 0
    assert StandingStatistics(off)(ema, g_vars, key) is g_vars


@pytest.fixture(scope="module")
def accumulation_results():
    """One step of the same state and batch (4 clips), whole and as 2 micro-batches."""
    results = {}
    for steps in (1, 2):
        config = tiny_config(16, num_frames=4)
        config.train.d_steps = 1
        config.train.accumulation_steps = steps
        results[steps] = _steps(config, 1)
    return results


def _adam_moments(opt_state, name: str) -> list[np.ndarray]:
    return [
        np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(opt_state)
        if f".{name}" in jax.tree_util.keystr(path)
    ]


def test_accumulated_discriminator_gradient_equals_the_full_batch_one():
    """D has no BatchNorm and draws each clip's random frames (D_S) and crop (D_T) from its
    row in the whole batch: on the same clips, two micro-batches' averaged gradients are the
    full batch's, to float32 rounding relative to each tensor's scale."""
    config = tiny_config(16, num_frames=4, temporal_d_input="random_half_crop")
    _, spatial_d, temporal_d = models.build(config.model)
    _, ds_vars, dt_vars = models.init(config.model, jax.random.key(0), 4)
    params = {"spatial": ds_vars["params"], "temporal": dt_vars["params"]}
    videos = jax.random.uniform(jax.random.key(1), (4, 4, 16, 16, 3), minval=-1, maxval=1)
    rngs = {"frames": jax.random.key(2)}

    def grad_fn(params, videos, labels, rows, index):
        def loss(params):
            ds = spatial_d.apply(
                {**ds_vars, "params": params["spatial"]}, videos, labels, rows=rows, rngs=rngs
            )
            dt = temporal_d.apply(
                {**dt_vars, "params": params["temporal"]}, videos, labels, rows=rows, rngs=rngs
            )
            return jnp.mean(nn.relu(1.0 - ds)) + jnp.mean(nn.relu(1.0 + dt))

        value, grads = jax.value_and_grad(loss)(params)
        return grads, ({"loss": value},)

    inputs = (videos, jnp.zeros(4, jnp.int32), jnp.arange(4))
    whole, (whole_metrics,) = accumulated_gradients(grad_fn, params, inputs, 1)
    split, (split_metrics,) = accumulated_gradients(grad_fn, params, inputs, 2)
    leaves = jax.tree_util.tree_leaves(whole)
    assert len(leaves) > 10
    for a, b in zip(leaves, jax.tree_util.tree_leaves(split), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(a).max() + 1e-12)
    np.testing.assert_allclose(whole_metrics["loss"], split_metrics["loss"], rtol=1e-5)


def test_accumulated_d_update_makes_each_micro_batch_its_fakes(accumulation_results):
    """With micro-batches G makes each one's fakes, normalised by its own statistics (as
    BigGAN's reference code does per accumulation), so D's update moves like the full
    batch's without equalling it."""
    (initial, _, whole_metrics), (_, split, split_metrics) = (
        accumulation_results[1],
        accumulation_results[2],
    )
    np.testing.assert_allclose(
        whole_metrics[0]["ds_real"], split_metrics[0]["ds_real"], rtol=1e-4
    )  # the real clips' scores do not depend on the fakes
    assert not np.isclose(whole_metrics[0]["ds_fake"], split_metrics[0]["ds_fake"], rtol=1e-6)
    for name in ("spatial_d", "temporal_d"):
        before = jax.tree_util.tree_leaves(getattr(initial, name)["params"])
        after = jax.tree_util.tree_leaves(getattr(split, name)["params"])
        assert max(np.abs(b - a).max() for a, b in zip(before, after, strict=True)) > 0


def test_accumulated_g_update_uses_micro_batch_statistics(accumulation_results):
    """G's BatchNorm normalises each micro-batch by its own statistics, so its update is
    close to, but not the same as, the full batch's; it is finite and counted once."""
    (initial, whole, _), (_, split, split_metrics) = (
        accumulation_results[1],
        accumulation_results[2],
    )
    assert _adam_count(split.g_opt_state) == 1 and _adam_count(split.d_opt_state) == 1
    assert np.isfinite(split_metrics[0]["g_loss"])
    moved = [
        np.abs(b - a).max()
        for a, b in zip(
            jax.tree_util.tree_leaves(initial.generator["params"]),
            jax.tree_util.tree_leaves(split.generator["params"]),
            strict=True,
        )
    ]
    assert max(moved) > 0
    differs = [
        not np.allclose(a, b, rtol=1e-6, atol=0)
        for a, b in zip(
            jax.tree_util.tree_leaves(whole.generator["params"]),
            jax.tree_util.tree_leaves(split.generator["params"]),
            strict=True,
        )
    ]
    assert any(differs)


def test_accumulation_that_does_not_split_the_batch_is_refused():
    config = tiny_config(16, num_frames=4)
    config.batch_size = 6
    config.train.accumulation_steps = 4
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    with pytest.raises(ValueError, match="multiple of accumulation_steps"):
        jit_train_step(config, mesh)


def test_out_of_memory_is_answered_with_settings_that_fit():
    """The figures of XLA's TPU error for kinetics600 48x128 at one clip per v3 core in
    float32 (an ahead-of-time compile this host cannot run within a test)."""
    config = tiny_config(16, num_frames=4)
    config.batch_size = 32
    xla = (
        "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. "
        "HLO temporaries (19.46G) exceeds available HBM (15.48G)"
    )
    advice = memory_advice(xla, config)
    assert advice.count("\n") == 0
    assert "19.46 GiB" in advice and "15.48 GiB" in advice
    assert "--config.train.accumulation_steps=2 (micro-batches of 16)" in advice
    assert "--config.model.remat=full" in advice and "bfloat16" in advice
    assert memory_advice("INVALID_ARGUMENT: shapes differ", config) is None


def test_out_of_memory_advice_leaves_out_settings_in_force_and_splits_over_shards():
    """The launcher's v3-32 example at 48x128 before micro-batches were kept split over the
    devices: one clip per core per micro-batch already, remat full, bfloat16."""
    config = tiny_config(16, num_frames=4)
    config.batch_size = 512
    config.train.accumulation_steps = 16
    config.model.remat = "full"
    config.model.dtype = "bfloat16"
    xla = "RESOURCE_EXHAUSTED: HLO temporaries (27.89G) exceeds available HBM (15.48G)"
    advice = memory_advice(xla, config, shards=32)
    assert "27.89 GiB" in advice
    assert "accumulation_steps" not in advice  # 512 / 32 shards / 16 steps is one clip
    assert "remat" not in advice and "bfloat16" not in advice
    assert "--config.mesh.model_axis=N" in advice
    config.train.accumulation_steps = 4  # 32 shards leave 8 and 16 steps
    advice = memory_advice(xla, config, shards=32)
    assert "--config.train.accumulation_steps=8 (micro-batches of 64)" in advice
