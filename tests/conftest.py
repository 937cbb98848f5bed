"""Shared test set-up: eight simulated CPU devices (set before JAX starts), a compilation
cache shared with the subprocesses the tests start, tiny configs, and a prepared dataset."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Every `python -m dvd_gan.main` a test starts compiles the same small programs: a cache
# shared by this session's processes turns most of those compiles into reads.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="dvd_gan_test_jax_cache_")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402

from configs import smoke  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(resolution=16, num_frames=4, num_conditioning_frames=0, num_classes=0, **model):
    """The smoke config at a given size; `model` overrides config.model fields."""
    config = smoke.get_config()
    config.data.resolution = resolution
    config.data.num_frames = num_frames
    config.data.num_conditioning_frames = num_conditioning_frames
    config.model.num_classes = num_classes
    for name, value in model.items():
        setattr(config.model, name, value)
    return config


def run_module(module: str, *args: str, check: bool = True, **kwargs):
    """Runs `python -m module args...` from the repository root, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
        **kwargs,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_worker(script: str, *args: str) -> subprocess.Popen:
    """Starts `python tests/SCRIPT args...`: one real process of a multi-process test."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / script), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_workers(*processes: subprocess.Popen, timeout: float = 600):
    for process in processes:
        output = process.communicate(timeout=timeout)[0]
        assert process.returncode == 0, output


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory):
    """moving_mnist_local/small (512 train, 128 test clips) prepared offline, by the
    prepare command, in a data dir of this session."""
    path = str(tmp_path_factory.mktemp("tfds"))
    summary = prepare("moving_mnist_local/small", path)
    assert summary["examples"] == {"train": 512, "test": 128}
    assert summary["file_format"] == "array_record"
    return path


@pytest.fixture(scope="session")
def smoke_workdir(tmp_path_factory, mnist_data_dir):
    """A 2-step smoke run with in-training FVD (4 videos) at steps 0 and 2."""
    workdir = tmp_path_factory.mktemp("smoke_run")
    run_module(
        "dvd_gan.main",
        "--config=configs/smoke.py",
        f"--workdir={workdir}",
        f"--config.data.data_dir={mnist_data_dir}",
        "--config.train.num_steps=2",
        "--config.train.num_samples=4",
        "--config.eval.every=2",
        "--config.eval.num_videos=4",
        "--config.eval.batch_size=4",
        f"--config.eval.stats_dir={tmp_path_factory.mktemp('real_stats')}",
    )
    return workdir


def prepare(dataset: str, data_dir: str) -> dict:
    """Prepares `dataset` offline with the prepare command; its summary line."""
    result = run_module("dvd_gan.data.prepare", f"--dataset={dataset}", f"--data_dir={data_dir}")
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def single_digit_data_dir(tmp_path_factory):
    """moving_mnist_local/single_small (one labelled digit per clip; 512 train, 128 test)."""
    path = str(tmp_path_factory.mktemp("tfds_single"))
    assert prepare("moving_mnist_local/single_small", path)["examples"] == {
        "train": 512,
        "test": 128,
    }
    return path


def single_digit_run(tmp_path_factory, data_dir: str, name: str, *overrides: str):
    """A 2-step run of the smoke model on one-digit clips, samples written at each step."""
    workdir = tmp_path_factory.mktemp(name)
    run_module(
        "dvd_gan.main",
        "--config=configs/smoke.py",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        "--config.data.builder_config=single_small",
        "--config.train.num_steps=2",
        "--config.train.sample_every=1",
        "--config.eval.standing_stats_batches=2",
        "--config.eval.batch_size=4",
        f"--config.eval.stats_dir={tmp_path_factory.mktemp(name + '_stats')}",
        *overrides,
    )
    return workdir


@pytest.fixture(scope="session")
def prediction_workdir(tmp_path_factory, single_digit_data_dir):
    """DVD-GAN-FP on one-digit clips: 2 real frames, 2 predicted, 4 samples."""
    return single_digit_run(
        tmp_path_factory,
        single_digit_data_dir,
        "prediction_run",
        "--config.data.num_conditioning_frames=2",
        "--config.train.num_samples=4",
    )


@pytest.fixture(scope="session")
def conditional_workdir(tmp_path_factory, single_digit_data_dir):
    """Class-conditional on one-digit clips, 10 classes, 20 samples (2 per class)."""
    return single_digit_run(
        tmp_path_factory,
        single_digit_data_dir,
        "conditional_run",
        "--config.model.num_classes=10",
        "--config.train.num_samples=20",
    )
