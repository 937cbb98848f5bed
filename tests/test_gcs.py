"""A pod run's storage: the commands with gs:// workdirs and data dirs, against a real GCS
server on 127.0.0.1 (the `gcs_bucket` fixture). Every byte goes through the project's own
storage layer and the libraries' GCS clients, over HTTP; nothing is mocked."""

import json
import os
import signal

import numpy as np
import pytest
from conftest import (
    checkpoint_steps,
    fresh,
    generator_params,
    run_module,
    start_training,
    train_args,
    wait_for,
)
from etils import epath

from dvd_gan import storage

pytestmark = pytest.mark.slow


def _names(path) -> list[str]:
    return sorted(p.name for p in fresh(path).iterdir())


def test_copy_tree_and_mirror_reach_the_bucket(gcs_bucket, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.bin").write_bytes(b"\1" * 1000)
    (tmp_path / "a" / "first.json").write_text("{}")
    (tmp_path / "z.txt").write_text("z")
    target = epath.Path(gcs_bucket) / "copied"
    assert storage.copy_tree(tmp_path, target, last=("first.json",)) == 1003
    assert (target / "a" / "b" / "x.bin").read_bytes() == b"\1" * 1000
    assert _names(target / "a") == ["b", "first.json"]
    assert storage.copy_tree(target, tmp_path / "back") == 1003  # and from the bucket
    assert (tmp_path / "back" / "a" / "b" / "x.bin").read_bytes() == b"\1" * 1000

    mirror = storage.LocalMirror(epath.Path(gcs_bucket) / "mirrored")
    with open(os.path.join(mirror.directory, "events"), "ab") as f:
        f.write(b"one")
    mirror.sync()
    with open(os.path.join(mirror.directory, "events"), "ab") as f:
        f.write(b"two")
    mirror.close()
    assert (epath.Path(gcs_bucket) / "mirrored" / "events").read_bytes() == b"onetwo"
    assert not os.path.exists(mirror.directory)


@pytest.fixture(scope="module")
def gcs_data_dir(gcs_bucket):
    """moving_mnist_local/small built by the prepare command straight into the bucket."""
    data_dir = f"{gcs_bucket}/tfds"
    result = run_module(
        "dvd_gan.data.prepare", "--dataset=moving_mnist_local/small", f"--data_dir={data_dir}"
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["examples"] == {"train": 512, "test": 128}
    assert summary["data_dir"].startswith(data_dir) and summary["size_bytes"] > 0
    return data_dir


def test_prepare_refuses_a_beam_build_to_gcs(gcs_bucket):
    result = run_module(
        "dvd_gan.data.prepare",
        "--dataset=moving_mnist_local/small",
        f"--data_dir={gcs_bucket}/beam_tfds",
        "--beam_pipeline_options=runner=DirectRunner",
        check=False,
    )
    assert result.returncode != 0
    assert "cannot write ArrayRecord files to gs://" in result.stderr
    assert not epath.Path(f"{gcs_bucket}/beam_tfds").exists()


def test_a_run_on_gcs_resumes_bit_exactly_and_sets_a_broken_checkpoint_aside(
    gcs_bucket, gcs_data_dir, uninterrupted_run, tmp_path
):
    """The smoke run with a gs:// workdir, data dir and compilation cache: killed after its
    second checkpoint and restarted, it keeps 2 checkpoints through two rotations and ends
    with the parameters of the same run done locally in one go; its newest checkpoint
    broken, the next start sets it aside and redoes the steps from the previous one."""
    workdir = f"{gcs_bucket}/run"
    args = train_args(workdir, gcs_data_dir, 8, 2, "--config.train.keep_checkpoints=2")
    environment = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": f"{gcs_bucket}/jax_cache",
        "JAX_LOG_COMPILES": "1",  # logs each persistent-cache hit
    }
    log = tmp_path / "killed.log"
    process = start_training(log, *args, env=environment)
    wait_for(lambda: 4 in checkpoint_steps(workdir), process, log)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _names(f"{gcs_bucket}/jax_cache")

    restarted = run_module("dvd_gan.main", *args, env=environment)
    assert "Persistent compilation cache hit for 'jit_train_step'" in restarted.stderr
    assert checkpoint_steps(workdir) == [6, 8]  # 2 and 4 rotated out
    expected = generator_params(uninterrupted_run, 8)
    resumed = generator_params(workdir, 8)
    for name, value in expected.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
    assert _names(f"{workdir}/samples") == ["step_0000008.gif", "step_0000008.png"]
    assert (fresh(workdir) / "config.json").exists()
    events = _names(f"{workdir}/tensorboard")
    assert events and all(name.startswith("events.out.tfevents") for name in events)

    for path in storage.files_under(fresh(workdir) / "checkpoints" / "8"):
        if path.stat().length > 100:
            path.write_bytes(b"\0" * path.stat().length)
    result = run_module("dvd_gan.main", *args, env=environment)
    assert "cannot be restored" in result.stderr
    assert any(n.startswith("8.unrestorable-") for n in _names(f"{workdir}/checkpoints"))
    assert "Resumed from the checkpoint at step 6" in result.stderr
    redone = generator_params(workdir, 8)
    for name, value in expected.items():
        np.testing.assert_array_equal(redone[name], value, err_msg=name)

    # The commands that read a run: sample and evaluate, on the bucket.
    output = f"{gcs_bucket}/samples.npz"
    run_module("dvd_gan.sample", f"--workdir={workdir}", "--num_videos=4", f"--output={output}")
    with fresh(output).open("rb") as f, np.load(f) as samples:
        assert samples["videos"].shape == (4, 4, 16, 16, 3)
    run_module(
        "dvd_gan.evaluate",
        f"--workdir={workdir}",
        "--metrics=diversity,motion",
        "--num_videos=4",
        "--batch_size=4",
    )
    evaluation = json.loads((fresh(workdir) / "eval" / "step_0000008.json").read_text())
    assert evaluation["step"] == 8 and "diversity" in evaluation
    assert len(_names(f"{workdir}/tensorboard")) > len(events)
