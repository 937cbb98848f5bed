"""The training command in subprocesses: resume after SIGKILL, SIGTERM, a corrupted
checkpoint, divergence, bad config fields."""

import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import ROOT, run_module


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
