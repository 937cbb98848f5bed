"""`python -m dvd_gan.sample`: files that read back, determinism, options."""

import json

import av
import jax
import numpy as np
from conftest import run_module

from dvd_gan import sharding
from dvd_gan.training import state as state_lib
from dvd_gan.training.checkpointing import load_config, restore_generator


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


def test_a_config_saved_before_a_field_existed_gets_its_default(tmp_path):
    saved = {"model": {"ch": 4}, "eval": {}, "train": {"num_steps": 3}}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = load_config(str(tmp_path))
    assert config.model.ch == 4 and config.train.num_steps == 3
    assert config.model.gru_candidate_activation == "relu"
    assert config.eval.standing_stats_batches == 16
