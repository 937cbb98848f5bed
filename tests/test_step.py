"""What one real train step does: D and G update counts, lazy R1, the DVD-GAN-FP step's videos
and gradients, the EMA generator's standing statistics, accumulation and DiffAugment."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tiny_config

from dvd_gan import losses, models, sharding
from dvd_gan.generation.standing_stats import StandingStatistics, standing_inputs
from dvd_gan.models.discriminators import (
    FrameScorer,
    SpatialDiscriminator,
    TemporalDiscriminator,
)
from dvd_gan.training import state as state_lib
from dvd_gan.training.accumulation import accumulated_gradients
from dvd_gan.training.memory import memory_advice
from dvd_gan.training.state import discriminator_params
from dvd_gan.training.step import (
    SWAP_STREAM,
    StepParts,
    augmented,
    discriminator_batch_loss,
    discriminator_scores,
    discriminator_update,
    generate,
    generator_batch_loss,
    generator_update,
    jit_train_step,
    mismatched_labels,
    swapped_conditioning,
    update_inputs,
)


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


@pytest.fixture(scope="module")
def three_steps():
    """Three steps of one tiny config, shared by the tests below: 3 D updates per G update,
    lazy R1 every 2nd step, and an EMA from step 0 with decay 0.5 (so that it moves away
    from G's weights). Returns (config, initial state, final state, metrics of each step)."""
    config = tiny_config(16, num_frames=4)
    config.train.d_steps = 3
    config.train.r1_gamma = 1.0
    config.train.r1_every = 2
    config.train.ema_start = 0
    config.train.ema_decay = 0.5
    config.eval.standing_stats_batches = 3
    config.eval.batch_size = 4
    return config, *_steps(config, 3)


@pytest.mark.slow
def test_d_steps_discriminator_updates_per_generator_update_and_lazy_r1(three_steps):
    """Also: the lazy R1 penalty is computed on every r1_every-th step only."""
    _, _, state, history = three_steps
    assert _adam_count(state.g_opt_state) == 3
    assert _adam_count(state.d_opt_state) == 3 * 3
    penalties = [float(m["r1_penalty"]) for m in history]
    assert penalties[0] > 0 and penalties[2] > 0 and penalties[1] == 0, penalties


@pytest.mark.slow
def test_prediction_step_conditions_on_real_frames_and_scores_generated_ones():
    """Inside a real DVD-GAN-FP train step (jitted, 2 D updates and a G update), recorded
    through Flax's method interception: every fake video D sees starts with the real clip's
    C conditioning frames; with train.mismatched_conditioning_weight, D also sees each real
    continuation after the other clip's conditioning frames; every frame D_S scores is a
    generated frame of its video (never a conditioning frame); and G's update changes the
    conditioning stack's parameters."""
    c, k = 2, 2
    config = tiny_config(16, num_frames=5, num_conditioning_frames=c, k_frames=k)
    config.train.mismatched_conditioning_weight = 1.0
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
    # Per D update D_S and D_T see [real; fake; swapped] (6 rows); in G's update the fake.
    assert [len(v) for v in d_calls] == [len(v) for v in temporal] == [6, 6, 2]
    for i, (spatial_videos, temporal_videos) in enumerate(zip(d_calls, temporal, strict=True)):
        np.testing.assert_array_equal(spatial_videos, temporal_videos)
        conditioning = real[min(i, 1), :, :c]
        fakes = spatial_videos[2:4] if i < 2 else spatial_videos
        np.testing.assert_allclose(fakes[:, :c], conditioning, atol=1e-6)
        if i < 2:
            swapped = spatial_videos[4:]
            np.testing.assert_allclose(swapped[:, :c], conditioning[::-1], atol=1e-6)
            np.testing.assert_allclose(swapped[:, c:], real[i, :, c:], atol=1e-6)
    d_calls = [v[:4] for v in d_calls[:2]] + d_calls[2:]  # D_S's frames of swapped: unused
    scored = [
        v.reshape(-1, k, *v.shape[1:])[: len(d)] for v, d in zip(scored, d_calls, strict=True)
    ]
    for videos, frames in zip(d_calls, scored, strict=True):
        for row, video in enumerate(videos):
            for frame in frames[row]:
                distances = np.abs(video - frame).max(axis=(1, 2, 3))
                assert distances[c:].min() == 0.0, "D_S scored a frame of another video"
                assert distances[:c].min() > 0.1, "D_S scored a conditioning frame"
    before = jax.tree_util.tree_leaves(initial.generator["params"]["conditioning"])
    after = jax.tree_util.tree_leaves(state.generator["params"]["conditioning"])
    assert all(not np.allclose(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.slow
def test_standing_statistics_are_the_ema_generators_batch_statistics(three_steps):
    """After steps in which the EMA weights moved away from G's, the sampler's statistics
    are the mean over the standing batches of the EMA generator's per-time-step batch
    statistics, computed here another way (the run's own momentum from zero statistics,
    divided back out), and differ from the raw generator's running averages."""
    config, _, state, _ = three_steps
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


def _four_conditional_clips():
    """A tiny class-conditional config (D_T's random crop, so a clip's row in the batch
    matters), its initial state, and 4 clips [4, 4, 16, 16, 3] in [-1, 1] with labels."""
    config = tiny_config(16, num_frames=4, num_classes=3, temporal_d_input="random_half_crop")
    state = state_lib.init_state(config, jax.random.key(0))
    videos = jax.random.uniform(jax.random.key(1), (4, 4, 16, 16, 3), minval=-1, maxval=1)
    return config, state, videos, jnp.array([0, 1, 2, 1])


def _with_train(parts: StepParts, **fields) -> StepParts:
    """`parts` with these config.train fields changed (on a copy)."""
    train = parts.train.copy_and_resolve_references()
    for name, value in fields.items():
        setattr(train, name, value)
    return dataclasses.replace(parts, train=train)


@pytest.mark.slow
def test_r1_penalty_and_the_spectral_norm_vectors_of_the_updates():
    """In D's loss, R1 adds 0.5 * gamma * r1_every times the mean over real clips of
    |d(D_S + D_T)/d pixels|^2 (computed here directly, with the same random frames and
    crops; planted, a scale without r1_every fails); D's spectral-norm vectors after its
    loss are the same with R1 as without. G's update leaves every D vector untouched."""
    config, state, videos, labels = _four_conditional_clips()
    config.train.r1_gamma, config.train.r1_every = 2.0, 4
    parts = StepParts.from_config(config, None)
    off = _with_train(parts, r1_gamma=0.0)

    @jax.jit
    def losses_and_vectors(state, videos, labels, key):
        z, rngs = update_inputs(key, 4, parts)
        rows = jnp.arange(4)
        args = (discriminator_params(state), videos, z, labels, rows, 0)
        given = dict(state=state, key=key, rngs=rngs)
        with_r1, (metrics, *d_stats, _) = discriminator_batch_loss(*args, **given, parts=parts)
        without, (_, *d_stats_without, _) = discriminator_batch_loss(*args, **given, parts=off)

        def total_score(v):
            ds = parts.spatial_d.apply(state.spatial_d, v, labels, rows=rows, rngs=rngs)
            dt = parts.temporal_d.apply(state.temporal_d, v, labels, rows=rows, rngs=rngs)
            return jnp.sum(ds + dt)

        pixel_grads = jax.grad(total_score)(videos)
        direct = jnp.mean(jnp.sum(jnp.square(pixel_grads), axis=(1, 2, 3, 4)))
        after_g, _ = generator_update(state, labels, None, key, parts)
        return {
            "with_r1": with_r1,
            "without": without,
            "penalty": metrics["r1_penalty"],
            "direct": direct,
            "d_stats": d_stats,
            "d_stats_without": d_stats_without,
            "d_after_g": (after_g.spatial_d, after_g.temporal_d),
        }

    out = jax.device_get(losses_and_vectors(state, videos, labels, jax.random.key(2)))
    assert out["penalty"] > 0
    np.testing.assert_allclose(out["penalty"], out["direct"], rtol=1e-4)
    np.testing.assert_allclose(
        out["with_r1"] - out["without"], 0.5 * 2.0 * 4 * out["penalty"], rtol=1e-4
    )
    for a, b in zip(
        jax.tree_util.tree_leaves(out["d_stats"]),
        jax.tree_util.tree_leaves(out["d_stats_without"]),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    before = jax.device_get((state.spatial_d, state.temporal_d))
    for a, b in zip(
        jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(out["d_after_g"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
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


def _negated_gradient():
    """An optimizer whose update is minus the gradient: an update's change of the
    parameters (before - after) is then the gradient it applied."""
    return optax.GradientTransformation(
        lambda params: optax.EmptyState(),
        lambda grads, state, params=None: (jax.tree_util.tree_map(jnp.negative, grads), state),
    )


@pytest.fixture(scope="module")
def accumulation_gradients():
    """The gradients that the step's D and G updates apply with 2 micro-batches of a
    4-clip class-conditional batch (read off the parameters' change), what the definition
    gives (the mean of each micro-batch's gradient of its loss, G normalising each
    micro-batch by its own statistics), and the whole batch's gradient; and G's BatchNorm
    running averages after its update, with each micro-batch's."""
    config, state, videos, labels = _four_conditional_clips()
    config.batch_size, config.train.accumulation_steps = 4, 2
    parts = dataclasses.replace(
        StepParts.from_config(config, None),
        g_optimizer=_negated_gradient(),
        d_optimizer=_negated_gradient(),
    )
    whole = _with_train(parts, accumulation_steps=1)
    state = state.replace(d_opt_state=optax.EmptyState(), g_opt_state=optax.EmptyState())

    @jax.jit
    def gradients(state, videos, labels, key):
        z, rngs = update_inputs(key, 4, parts)
        rows = jnp.arange(4)
        given = dict(state=state, key=key, rngs=rngs)

        def per_micro_batch(loss, params, inputs, parts):
            """[(gradient, aux) of micro-batch 0, (gradient, aux) of micro-batch 1]."""
            return [
                jax.grad(loss, has_aux=True)(
                    params, *[x[j::2] for x in inputs], j, **given, parts=parts
                )
                for j in range(2)
            ]

        def mean(a, b):
            return jax.tree_util.tree_map(lambda x, y: (x + y) / 2, a, b)

        d_params = discriminator_params(state)
        updated, _ = discriminator_update(state, videos, labels, key, parts)
        d_inputs = (videos, z, labels, rows)
        d = {
            "applied": jax.tree_util.tree_map(
                jnp.subtract, d_params, discriminator_params(updated)
            ),
            "defined": mean(
                *[
                    gradient
                    for gradient, _ in per_micro_batch(
                        discriminator_batch_loss, d_params, d_inputs, parts
                    )
                ]
            ),
            "whole": jax.grad(discriminator_batch_loss, has_aux=True)(
                d_params, *d_inputs, 0, **given, parts=whole
            )[0],
        }
        g_params = state.generator["params"]
        updated, _ = generator_update(state, labels, None, key, parts)
        micro = per_micro_batch(
            lambda p, z, y, r, j, **kw: generator_batch_loss(p, z, y, None, r, j, **kw),
            g_params,
            (z, labels, rows),
            parts,
        )
        g = {
            "applied": jax.tree_util.tree_map(jnp.subtract, g_params, updated.generator["params"]),
            "defined": mean(*[gradient for gradient, _ in micro]),
            "whole": jax.grad(generator_batch_loss, has_aux=True)(
                g_params, z, labels, None, rows, 0, **given, parts=whole
            )[0],
        }
        running_averages = {
            "after_update": updated.generator["batch_stats"],
            "per_micro_batch": [stats["batch_stats"] for _, (_, stats) in micro],
        }
        return {"discriminator": d, "generator": g, "running_averages": running_averages}

    return jax.device_get(gradients(state, videos, labels, jax.random.key(2)))


@pytest.mark.slow
@pytest.mark.parametrize("network", ["discriminator", "generator"])
def test_accumulated_gradient_is_the_mean_of_the_micro_batches_gradients(
    accumulation_gradients, network
):
    """Each tensor of the applied gradient agrees with the definition to float32 rounding
    (1e-4 of the tensor's largest entry): a z, label or row of the wrong micro-batch, or a
    sum for a mean, fails. G's BatchNorm (in D's fakes, and in G's own update) normalises
    each micro-batch by its own statistics, so the whole batch's gradient differs by far
    more than that; without the per-micro-batch statistics the test would fail too."""
    gradients = accumulation_gradients[network]
    applied, defined, whole = (
        jax.tree_util.tree_leaves_with_path(gradients[k]) for k in ("applied", "defined", "whole")
    )
    assert len(applied) > 10
    # A tensor whose exact gradient is 0 (a convolution's bias before BatchNorm) holds
    # rounding alone: its floor is a thousandth of the largest gradient entry.
    floor = 1e-3 * max(np.abs(d).max() for _, d in defined)
    furthest_from_whole = 0.0
    for (path, a), (_, d), (_, w) in zip(applied, defined, whole, strict=True):
        scale = max(np.abs(d).max(), floor)
        np.testing.assert_allclose(a, d, rtol=0, atol=1e-4 * scale, err_msg=str(path))
        furthest_from_whole = max(furthest_from_whole, np.abs(w - d).max() / scale)
    assert furthest_from_whole > 1e-2, furthest_from_whole


@pytest.mark.slow
def test_accumulated_g_update_averages_the_micro_batches_running_averages(
    accumulation_gradients,
):
    """G's BatchNorm running averages after an accumulated update are the mean of the
    micro-batches' (each old * m + (1 - m) * its statistics), not the last one's."""
    averages = accumulation_gradients["running_averages"]
    first, last = averages["per_micro_batch"]
    paths = jax.tree_util.tree_leaves_with_path(averages["after_update"])
    assert len(paths) >= 10
    for (path, got), a, b in zip(
        paths, jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(last), strict=True
    ):
        np.testing.assert_allclose(got, (a + b) / 2, rtol=1e-6, atol=1e-7, err_msg=str(path))
    leaves = zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(last), strict=True)
    assert any(not np.allclose(a, b, rtol=1e-3) for a, b in leaves)


@pytest.mark.slow
def test_diffaugment_and_mismatched_labels_are_what_the_discriminators_score():
    """With train.augment and 2 micro-batches, D's loss on micro-batch j is the hinge loss
    of D_S's and D_T's scores of its augmented real and fake clips, plus
    mismatched_label_weight times the hinge of the augmented real clips given wrong
    classes, scored as fakes; G's loss is minus their scores of its augmented fakes; each
    micro-batch draws its own augmentation. Planted: the augmentation left out of D's loss,
    or of G's, fails; so do the micro-batch's index left out of the key and the mismatched
    term left out."""
    config, state, videos, labels = _four_conditional_clips()
    config.train.augment = "color,translation,cutout"
    config.train.mismatched_label_weight = 0.5
    config.batch_size, config.train.accumulation_steps = 4, 2
    parts = StepParts.from_config(config, None)
    key = jax.random.key(2)
    z, rngs = update_inputs(key, 4, parts)
    given = dict(state=state, key=key, rngs=rngs, parts=parts)

    @jax.jit
    def losses_given_and_direct(real, z, y, rows, j):
        """Micro-batch j's losses in the updates, and computed here."""
        d_loss, _ = discriminator_batch_loss(
            discriminator_params(state), real, z, y, rows, j, **given
        )
        g_loss, _ = generator_batch_loss(state.generator["params"], z, y, None, rows, j, **given)
        fake, _ = generate(state.generator, z, y, None, parts)
        both = augmented(jnp.concatenate([real, fake]), key, j, parts)
        scores = functools.partial(discriminator_scores, state.spatial_d, state.temporal_d)
        wrong = mismatched_labels(y, rows, key, 3)
        (ds, dt), _ = scores(
            jnp.concatenate([both, both[:2]]),
            jnp.concatenate([y, y, wrong]),
            jnp.concatenate([rows, rows + 4, rows]),
            rngs,
            parts,
            True,
        )
        (ds_g, dt_g), _ = scores(augmented(fake, key, j, parts), y, rows, rngs, parts, False)
        (real_s, fake_s, wrong_s), (real_t, fake_t, wrong_t) = (
            jnp.split(ds, 3),
            jnp.split(dt, 3),
        )
        return {
            "d_loss": d_loss,
            "d_direct": losses.discriminator_loss(real_s, fake_s, real_t, fake_t)[0]
            + 0.5 * losses.mismatched_label_loss(wrong_s, wrong_t),
            "g_loss": g_loss,
            "g_direct": losses.generator_loss(ds_g, dt_g),
            "changed": jnp.max(jnp.abs(both[:2] - real), axis=(1, 2, 3, 4)),
        }

    for j in range(2):
        micro_batch = (x[j::2] for x in (videos, z, labels, jnp.arange(4)))
        out = jax.device_get(losses_given_and_direct(*micro_batch, j))
        np.testing.assert_allclose(out["d_loss"], out["d_direct"], rtol=1e-5)
        np.testing.assert_allclose(out["g_loss"], out["g_direct"], rtol=1e-5)
        assert out["changed"].min() > 0.1, out["changed"]  # every real clip is transformed
    # Micro-batch 1 does not repeat micro-batch 0's draws: the same clips come out
    # differently (without micro-batches, the index plays no part).
    whole = _with_train(parts, accumulation_steps=1)
    np.testing.assert_array_equal(
        augmented(videos, key, 0, whole), augmented(videos, key, 1, whole)
    )
    assert not np.allclose(augmented(videos, key, 0, parts), augmented(videos, key, 1, parts))


def test_mismatched_labels_are_other_classes_drawn_per_row():
    """Never the clip's own class, every other class about equally often, and a function
    of the clip's row (a micro-batch draws what the whole batch does)."""
    labels = jnp.arange(3000) % 3
    rows = jnp.arange(3000)
    key = jax.random.key(0)
    wrong = np.asarray(mismatched_labels(labels, rows, key, 3))
    assert not np.any(wrong == np.asarray(labels))
    counts = np.bincount((wrong - np.asarray(labels)) % 3, minlength=3)
    assert counts[0] == 0 and abs(counts[1] - counts[2]) < 200, counts
    np.testing.assert_array_equal(mismatched_labels(labels[1::2], rows[1::2], key, 3), wrong[1::2])


def test_mismatched_labels_need_a_class_conditional_model():
    config = tiny_config(16, num_frames=4)
    config.train.mismatched_label_weight = 1.0
    with pytest.raises(ValueError, match="model.num_classes >= 2"):
        StepParts.from_config(config, None)


@pytest.mark.slow
def test_mismatched_conditioning_is_scored_by_the_temporal_d_as_fake():
    """With train.mismatched_conditioning_weight w, D's loss on a DVD-GAN-FP micro-batch
    grows by exactly w times the hinge of D_T's scores of its real continuations after the
    previous clip's conditioning frames, augmented, scored as fakes. Planted: the clips not
    swapped, D_S's scores used, or the augmentation left out: each fails."""
    c = 2
    config = tiny_config(16, num_frames=4, num_conditioning_frames=c)
    config.train.augment = "color,translation"
    config.batch_size, config.train.accumulation_steps = 6, 2
    state = state_lib.init_state(config, jax.random.key(0))
    real = jax.random.uniform(jax.random.key(1), (3, 4, 16, 16, 3), minval=-1, maxval=1)
    labels, rows = jnp.zeros(3, jnp.int32), jnp.array([1, 3, 5])
    key = jax.random.key(2)
    losses_by_weight = {}
    for weight in (0.0, 0.5):
        config.train.mismatched_conditioning_weight = weight
        parts = StepParts.from_config(config, None)
        z, rngs = update_inputs(key, 3, parts)
        loss, (metrics, *_) = jax.jit(
            functools.partial(
                discriminator_batch_loss, state=state, key=key, rngs=rngs, parts=parts
            )
        )(discriminator_params(state), real, z, labels, rows, 1)
        losses_by_weight[weight] = loss
    swapped = jnp.concatenate([real[jnp.array([2, 0, 1]), :c], real[:, c:]], axis=1)
    swapped = augmented(swapped, jax.random.fold_in(key, SWAP_STREAM), 1, parts)
    (_, dt), _ = discriminator_scores(
        state.spatial_d, state.temporal_d, swapped, labels, rows, rngs, parts, train=True
    )
    np.testing.assert_allclose(
        losses_by_weight[0.5] - losses_by_weight[0.0],
        0.5 * losses.hinge_fake_loss(dt),
        rtol=1e-4,
    )
    np.testing.assert_allclose(metrics["dt_real_mismatched_conditioning"], jnp.mean(dt), rtol=1e-5)


def test_swapped_conditioning_takes_the_previous_clips_frames():
    real = jnp.arange(3 * 4).reshape(3, 4, 1, 1, 1).astype(jnp.float32)
    swapped = np.asarray(swapped_conditioning(real, 2))[..., 0, 0, 0]
    np.testing.assert_array_equal(swapped, [[8, 9, 2, 3], [0, 1, 6, 7], [4, 5, 10, 11]])
    with pytest.raises(ValueError, match="at least 2 clips"):
        swapped_conditioning(real[:1], 2)


def test_mismatched_conditioning_needs_a_frame_conditional_model():
    config = tiny_config(16, num_frames=4)
    config.train.mismatched_conditioning_weight = 1.0
    with pytest.raises(ValueError, match="model.num_conditioning_frames > 0"):
        StepParts.from_config(config, None)


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
