"""`python -m dvd_gan.sample`: files that read back, determinism, options."""

import av
import jax
import numpy as np
import pytest
from conftest import run_module

from dvd_gan import sharding
from dvd_gan.generation import standing_stats
from dvd_gan.training import state as state_lib
from dvd_gan.training.checkpointing import load_config, restore_generator

pytestmark = pytest.mark.slow  # compiles train steps or trains in subprocesses


def _sample(workdir, output, *flags):
    return run_module(
        "dvd_gan.sample", f"--workdir={workdir}", f"--output={output}", "--num_videos=6", *flags
    )


def test_npz_output_is_deterministic_per_seed(smoke_workdir, tmp_path):
    """Also: the first call computes the EMA generator's standing statistics and caches
    them in the workdir; the second reads them (the file is not written again)."""
    _sample(smoke_workdir, tmp_path / "a.npz", "--seed=3")
    (cache,) = (smoke_workdir / "standing_stats").glob("step_0000002_*.msgpack")
    written = cache.stat().st_mtime_ns
    _sample(smoke_workdir, tmp_path / "b.npz", "--seed=3")
    assert cache.stat().st_mtime_ns == written
    _sample(smoke_workdir, tmp_path / "c.npz", "--seed=4", "--truncation=0.5")
    a, b, c = (np.load(tmp_path / f"{x}.npz") for x in "abc")
    assert a["videos"].shape == (6, 4, 16, 16, 3) and a["videos"].dtype == np.uint8
    assert a["labels"].shape == (6,) and a["labels"].dtype == np.int32
    np.testing.assert_array_equal(a["videos"], b["videos"])
    assert not np.array_equal(a["videos"], c["videos"])


def test_gif_and_mp4_grids_read_back(smoke_workdir, tmp_path):
    for name in ("grid.gif", "grid.mp4"):
        _sample(
            smoke_workdir, tmp_path / name, "--interpolate" if name.endswith("gif") else "--seed=1"
        )
        with av.open(str(tmp_path / name)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 4, name
        assert frames[0].ndim == 3 and frames[0].shape[0] >= 16 and frames[0].shape[1] >= 16 * 2


def test_bad_output_extension_is_refused(smoke_workdir, tmp_path):
    result = run_module(
        "dvd_gan.sample",
        f"--workdir={smoke_workdir}",
        f"--output={tmp_path / 'x.avi'}",
        check=False,
    )
    assert result.returncode != 0 and ".npz" in result.stderr


def test_step_zero_is_the_runs_initial_state(smoke_workdir):
    """Step 0 is never checkpointed; it is recreated from the config, and equals the state
    the training loop initialised on its mesh of eight devices."""
    config = load_config(str(smoke_workdir))
    _, step, ema, g_vars = restore_generator(str(smoke_workdir), 0)
    mesh = sharding.make_mesh(devices=jax.devices()[:8])
    initial = state_lib.init_state_on_mesh(config, mesh, jax.random.key(config.seed))
    assert step == 0
    for restored, original in (
        (ema, initial.ema_params),
        (g_vars, initial.generator),
    ):
        for a, b in zip(
            jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(original), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_loop_and_commands_use_the_same_standing_statistics(smoke_workdir):
    """The loop's standing statistics (on its mesh of eight devices) and the cached ones of
    the sample and evaluate commands (no mesh) are the same for a step, also when
    eval.batch_size (4 here) does not fill the mesh's data axis. A truncated z has its
    own statistics, computed with z of that scale and cached under another name."""
    config = load_config(str(smoke_workdir))
    _, step, ema, g_vars = restore_generator(str(smoke_workdir))
    assert standing_stats.batch_size(config) % 8 != 0
    mesh = sharding.make_mesh(devices=jax.devices()[:8])
    on_mesh = jax.device_put((ema, g_vars), sharding.replicated(mesh))
    key = standing_stats.standing_key(config, step)
    loop = standing_stats.StandingStatistics(config, mesh)(*on_mesh, key)
    commands = standing_stats.cached(str(smoke_workdir), config, step, ema, g_vars)
    truncated = standing_stats.cached(str(smoke_workdir), config, step, ema, g_vars, 0.5)
    expected = standing_stats.StandingStatistics(config, truncation=0.5)(ema, g_vars, key)
    pairs = [(loop, commands, True), (truncated, expected, True), (truncated, commands, False)]
    for a, b, equal in pairs:
        leaves = zip(
            jax.tree_util.tree_leaves(a["batch_stats"]),
            jax.tree_util.tree_leaves(b["batch_stats"]),
            strict=True,
        )
        same = [np.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in leaves]
        assert all(same) if equal else not any(same)
    assert len(list((smoke_workdir / "standing_stats").glob(f"step_{step:07d}_*"))) >= 2
