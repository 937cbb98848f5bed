"""The train step across device counts and processes, and the training command: resume
after SIGKILL, SIGTERM, a corrupted checkpoint, divergence, bad config fields."""

import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import (
    ROOT,
    free_port,
    run_module,
    sgd_like,
    start_worker,
    tiny_config,
    wait_for_workers,
)

from dvd_gan import sharding
from dvd_gan.training import state as state_lib
from dvd_gan.training.state import init_state
from dvd_gan.training.step import jit_train_step

# Agreement between layouts of the same step, trained with `sgd_like` so that an update is
# proportional to its gradient. Sums over the batch (BatchNorm statistics, losses,
# gradients) are added in another order, so values differ by float32 rounding: bounds
# relative to how far each tensor moved from its initial value, and to each metric.
UPDATE_RTOL = 5e-4
METRIC_RTOL = 1e-4


def _batch(config, batch_size, seed):
    rng = np.random.default_rng(seed)
    shape = (config.train.d_steps, batch_size, config.data.num_frames, 16, 16, 3)
    return {
        "videos": rng.integers(0, 256, shape, dtype=np.uint8),
        "labels": rng.integers(0, 3, shape[:2]).astype(np.int32),
    }


def _run_steps(config, devices, num_steps, batch_size=8, model_axis=1):
    """`num_steps` train steps on a (data, model) mesh of `devices`, on fixed batches."""
    mesh = sharding.make_mesh(devices=devices, model_axis=model_axis)
    batch_layout = sharding.stacked_batch_sharding(mesh)
    state = state_lib.init_state_on_mesh(config, mesh, jax.random.key(0))
    step = jit_train_step(config, mesh)
    history = []
    for i in range(num_steps):
        batch = jax.device_put(_batch(config, batch_size, i), batch_layout)
        state, metrics = step(state, batch)
        history.append(jax.device_get(metrics))
    return jax.device_get(state), history, step


def _assert_updates_close(initial, a, b):
    """Each tensor of the train states `a` and `b` agrees within
    UPDATE_RTOL of how far it moved from `initial` (its largest change). A tensor whose
    gradient is zero in exact arithmetic (a convolution's bias before BatchNorm) moves by
    rounding alone: its floor is a thousandth of the largest change in the state. Integers
    (the step, the base key) are equal."""
    leaves_0 = jax.tree_util.tree_leaves_with_path(initial)
    leaves_a = jax.tree_util.tree_leaves(a)
    leaves_b = jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b) == len(leaves_0)
    moved = [
        np.max(np.abs(np.subtract(y, x0, dtype=np.float64)), initial=0.0)
        for (_, x0), y in zip(leaves_0, leaves_b, strict=True)
    ]
    floor = 1e-3 * max(moved)
    for (path, x0), x, y, change in zip(leaves_0, leaves_a, leaves_b, moved, strict=True):
        name = jax.tree_util.keystr(path)
        if not np.issubdtype(np.asarray(x0).dtype, np.floating):
            np.testing.assert_array_equal(x, y, err_msg=name)
            continue
        difference = np.max(np.abs(np.subtract(x, y, dtype=np.float64)), initial=0.0)
        assert difference <= UPDATE_RTOL * max(change, floor), (name, difference, change)


def _assert_runs_close(config, state_a, metrics_a, state_b, metrics_b):
    """Every step's metrics and the final train states of two runs from the same initial
    state agree."""
    for step_a, step_b in zip(metrics_a, metrics_b, strict=True):
        for name in step_a:
            np.testing.assert_allclose(
                step_a[name], step_b[name], rtol=METRIC_RTOL, atol=1e-6, err_msg=name
            )
    _assert_updates_close(jax.device_get(init_state(config, jax.random.key(0))), state_a, state_b)


@pytest.fixture(scope="module")
def step_results():
    config = sgd_like(tiny_config(num_frames=4, num_classes=3))
    config.train.ema_start = 1
    config.train.ema_decay = 0.5
    one = _run_steps(config, jax.devices()[:1], 3)
    eight = _run_steps(config, jax.devices()[:8], 3)
    return config, one, eight


def test_parameter_sharding_equals_the_data_parallel_step(step_results):
    config, _, (state_8, metrics_8, _) = step_results
    config = config.copy_and_resolve_references()
    config.mesh.min_shard_size = 64  # split even this tiny model's kernels
    mesh = sharding.make_mesh(devices=jax.devices()[:8], model_axis=2)
    shardings = jax.tree_util.tree_leaves(state_lib.state_shardings(config, mesh))
    split = [s for s in shardings if sharding.MODEL_AXIS in s.spec]
    assert len(split) > 20, "the test must really split parameters"
    state_2d, metrics_2d, _ = _run_steps(config, jax.devices()[:8], 3, model_axis=2)
    _assert_runs_close(config, state_8, metrics_8, state_2d, metrics_2d)


def test_step_on_one_and_eight_devices_agrees(step_results):
    config, (state_1, metrics_1, _), (state_8, metrics_8, _) = step_results
    assert int(state_1.step) == int(state_8.step) == 3
    _assert_runs_close(config, state_1, metrics_1, state_8, metrics_8)


def test_step_traces_once_and_updates_everything(step_results):
    config, (state, history, step), _ = step_results
    assert step._cache_size() == 1, "a second step must not recompile"
    initial = jax.device_get(init_state(config, jax.random.key(0)))
    for name in ("generator", "spatial_d", "temporal_d"):
        before = jax.tree_util.tree_leaves(getattr(initial, name)["params"])
        after = jax.tree_util.tree_leaves(getattr(state, name)["params"])
        assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True)), name
    assert np.any(state.generator["batch_stats"]["head_bn"]["bn"]["mean"] != 0)
    for metrics in history:
        assert set(metrics) >= {"d_loss", "g_loss", "ds_real", "dt_fake", "g_grad_norm"}
        assert all(np.isfinite(v) for v in metrics.values())


def test_bfloat16_step_agrees_with_float32():
    """bf16 computation (f32 parameters, optimizer and statistics) against f32, one step.
    Losses and scores agree within 5%. Adam with beta1 = 0 moves a parameter by at most
    lr * sqrt(1 + beta2) per update (lr * sign(gradient) on the first), so two runs differ
    by at most twice that per update, reached only where bf16 rounding flips the sign of
    a near-zero gradient: a small fraction of the parameters."""
    config = tiny_config(num_frames=4, num_classes=3)
    results = {}
    for dtype in ("float32", "bfloat16"):
        config.model.dtype = dtype
        results[dtype] = _run_steps(config, jax.devices()[:1], 1)
    (state_32, [m32], _), (state_16, [m16], _) = results["float32"], results["bfloat16"]
    for name in ("d_loss", "g_loss", "ds_real", "ds_fake", "dt_real", "dt_fake"):
        np.testing.assert_allclose(m16[name], m32[name], rtol=0.05, atol=0.05, err_msg=name)
    lr = max(config.train.g_learning_rate, config.train.d_learning_rate)
    bound = 2 * config.train.d_steps * lr * np.sqrt(1 + config.train.adam_b2) * 1.001
    flipped, total = 0, 0
    for name in ("generator", "spatial_d", "temporal_d"):
        for a, b in zip(
            jax.tree_util.tree_leaves(getattr(state_32, name)["params"]),
            jax.tree_util.tree_leaves(getattr(state_16, name)["params"]),
            strict=True,
        ):
            assert a.dtype == b.dtype == np.float32
            difference = np.abs(a - b)
            assert np.all(difference <= bound), name
            flipped += int(np.sum(difference > lr))
            total += a.size
    assert flipped / total < 0.05, flipped / total


def test_ema_copies_before_its_start_and_averages_after():
    config = tiny_config(num_frames=4, num_classes=3)
    config.train.ema_start = 1
    config.train.ema_decay = 0.5
    g_before = None
    state = None
    for num_steps in (1, 2):
        state, _, _ = _run_steps(config, jax.devices()[:1], num_steps)
        if num_steps == 1:  # step 0 < ema_start: the EMA is a copy of G
            for e, g in zip(
                jax.tree_util.tree_leaves(state.ema_params),
                jax.tree_util.tree_leaves(state.generator["params"]),
                strict=True,
            ):
                np.testing.assert_array_equal(e, g)
            g_before = state.generator["params"]
    # step 1 >= ema_start: ema = 0.5 * ema + 0.5 * g, with ema == g after step 1.
    expected = jax.tree_util.tree_map(
        lambda old, new: 0.5 * old + 0.5 * new, g_before, state.generator["params"]
    )
    for e, x in zip(
        jax.tree_util.tree_leaves(state.ema_params),
        jax.tree_util.tree_leaves(expected),
        strict=True,
    ):
        np.testing.assert_allclose(e, x, rtol=1e-6, atol=1e-7)


def test_two_processes_equal_one_process_with_the_full_batch(tmp_path):
    coordinator = f"127.0.0.1:{free_port()}"
    worker = "distributed_worker.py"
    two = [
        start_worker(worker, str(tmp_path / "two.npz"), "2", "2", str(i), coordinator)
        for i in range(2)
    ]
    one = start_worker(worker, str(tmp_path / "one.npz"), "1", "1", "0")
    wait_for_workers(one, *two)
    multi, single = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    assert sorted(multi.files) == sorted(single.files)
    # Still Adam's bounds (a few learning rates): under `sgd_like` the two processes' D_T
    # biases differed by 1.7% of their update, beyond the in-process layouts' 5e-4 and not
    # yet explained (issue 21).
    for name in single.files:
        tolerance = (
            dict(rtol=1e-3, atol=1e-4) if name.startswith("metric/") else dict(rtol=1e-3, atol=5e-3)
        )
        np.testing.assert_allclose(multi[name], single[name], err_msg=name, **tolerance)


# -- The training command, in subprocesses.


def _train_args(workdir, data_dir, num_steps, checkpoint_every, *extra):
    return [
        "--config=configs/smoke.py",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        f"--config.train.num_steps={num_steps}",
        f"--config.train.checkpoint_every={checkpoint_every}",
        "--config.train.log_every=1",
        "--config.train.sample_every=1000",
        "--config.train.num_samples=4",
        *extra,
    ]


def _start(log: pathlib.Path, *args):
    """Starts `python -m dvd_gan.main args...` with its output going to `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dvd_gan.main", *args],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


def _checkpoint_steps(workdir):
    directory = pathlib.Path(workdir) / "checkpoints"
    if not directory.exists():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _wait_for(predicate, process, log, timeout=1200):
    """Polls `predicate` while `process` runs. The timeout is long: on a slow 2-core machine
    running another test file beside this one, the first step's compile alone takes minutes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            raise AssertionError(f"exited early:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"timed out:\n{log.read_text()[-3000:]}")


def _generator_params(workdir, step):
    manager = ocp.CheckpointManager(
        pathlib.Path(workdir) / "checkpoints",
        item_handlers={"generator": ocp.StandardCheckpointHandler()},
    )
    restored = manager.restore(step, args=ocp.args.Composite(generator=ocp.args.StandardRestore()))
    leaves = jax.tree_util.tree_leaves_with_path(restored["generator"])
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mnist_data_dir):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    run_module("dvd_gan.main", *_train_args(workdir, mnist_data_dir, 6, 2))
    assert _checkpoint_steps(workdir) == [2, 4, 6]
    assert sorted(p.suffix for p in (workdir / "samples").iterdir()) == [".gif", ".png"]
    assert (workdir / "config.json").exists() and any((workdir / "tensorboard").iterdir())
    return workdir


def test_sigkill_then_restart_equals_an_uninterrupted_run(uninterrupted, mnist_data_dir, tmp_path):
    args = _train_args(tmp_path, mnist_data_dir, 6, 2)
    log = tmp_path / "killed.log"
    process = _start(log, *args)
    _wait_for(lambda: 4 in _checkpoint_steps(tmp_path), process, log)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run_module("dvd_gan.main", *args)
    expected = _generator_params(uninterrupted, 6)
    resumed = _generator_params(tmp_path, 6)
    for name, value in expected.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)

    # A corrupted newest checkpoint: reported, set aside, the previous one used; training
    # redoes the lost steps and arrives at the same parameters again.
    step_6 = tmp_path / "checkpoints" / "6"
    for path in step_6.rglob("*"):
        if path.is_file() and path.stat().st_size > 100:
            path.write_bytes(b"\0" * path.stat().st_size)
    result = run_module("dvd_gan.main", *args)
    assert "cannot be restored" in result.stderr
    assert any(p.name.startswith("6.unrestorable-") for p in (tmp_path / "checkpoints").iterdir())
    assert "Resumed from the checkpoint at step 4" in result.stderr
    redone = _generator_params(tmp_path, 6)
    for name, value in expected.items():
        np.testing.assert_array_equal(redone[name], value, err_msg=name)


def test_sigterm_saves_the_current_step_and_exits_cleanly(mnist_data_dir, tmp_path):
    log = tmp_path / "train.log"
    process = _start(log, *_train_args(tmp_path, mnist_data_dir, 10_000, 5_000))
    _wait_for(lambda: log.read_text().count("d_loss=") >= 3, process, log)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=600)
    output = log.read_text()
    assert process.returncode == 0, output[-3000:]
    steps = _checkpoint_steps(tmp_path)
    assert len(steps) == 1 and 3 <= steps[0] < 5_000, steps
    assert "SIGTERM received" in output


def test_non_finite_loss_stops_the_run_naming_the_step(mnist_data_dir, tmp_path):
    result = run_module(
        "dvd_gan.main",
        *_train_args(tmp_path, mnist_data_dir, 20, 1, "--config.train.d_learning_rate=inf"),
        check=False,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    message = next(line for line in result.stderr.splitlines() if "Non-finite" in line)
    failed_step = int(message.split(" at step ")[1].split(";")[0])
    assert failed_step >= 1 and any(
        n in message for n in ("loss", "score", "norm", "_real", "_fake")
    )
    assert all(step < failed_step for step in _checkpoint_steps(tmp_path))


def test_unknown_config_field_lists_valid_names_and_writes_nothing(tmp_path):
    workdir = tmp_path / "never"
    result = run_module(
        "dvd_gan.main", "--config=configs/smoke.py", f"--workdir={workdir}",
        "--config.train.num_stepz=3", check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "config.train has no field 'num_stepz'" in result.stderr
    assert "num_steps" in result.stderr and "d_steps" in result.stderr
    assert not workdir.exists()
