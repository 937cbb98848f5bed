"""Shared test set-up: eight simulated CPU devices (set before JAX starts), a compilation
cache shared with the subprocesses the tests start, tiny configs, and prepared datasets and
runs built once per session, even when pytest-xdist runs the tests in several workers."""

import fcntl
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile


def xla_flags(devices: int) -> str:
    """XLA flags of a test process with `devices` simulated CPU devices. The suite's time is
    mostly compiles of small programs: LLVM's optimisation level 1 compiles them faster than
    the default level 2 and runs them no slower (level 0 would slow the I3D and digit
    classifier runs down)."""
    return f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=1"


os.environ.setdefault("XLA_FLAGS", xla_flags(8))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Every `python -m dvd_gan.main` a test starts compiles the same small programs: a cache
# shared by this session's processes turns most of those compiles into reads.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # set by pytest-xdist's controller
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="dvd_gan_test_jax_cache_")
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


def sgd_like(config):
    """Adam with an epsilon far above sqrt(v) updates each parameter by lr/eps times its
    gradient: SGD with learning rate 0.01. Comparing layouts of a step then compares their
    gradients. Adam's own first update is lr * sign(gradient), whatever its size: it would
    hide a gradient off by any factor and turn a near-zero gradient's rounding into a step."""
    config.train.adam_eps = 1e3
    config.train.g_learning_rate = config.train.d_learning_rate = 10.0
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


def wait_for_workers(*processes: subprocess.Popen, timeout: float = 900):
    """Waits for every process; on a failure or a timeout, kills the rest (a process left
    waiting for a dead peer's collective would otherwise outlive the test)."""
    try:
        for process in processes:
            output = process.communicate(timeout=timeout)[0]
            assert process.returncode == 0, output
    finally:
        for process in processes:
            process.kill()


def built_once(tmp_path_factory, name: str, build) -> pathlib.Path:
    """A directory `name` filled by `build(path)` once per test session. pytest-xdist's
    workers each run the session fixtures, so the first to ask builds under a lock (stdlib
    fcntl: Linux and macOS are the platforms the suite runs on) and the others reuse it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the directory all workers' base temps share
    path, built = root / name, root / f"{name}.built"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            build(path)
            built.touch()
    return path


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory):
    """moving_mnist_local/small (512 train, 128 test clips) prepared offline, by the
    prepare command, in a data dir of this session."""

    def build(path):
        summary = prepare("moving_mnist_local/small", str(path))
        assert summary["examples"] == {"train": 512, "test": 128}
        assert summary["file_format"] == "array_record"

    return str(built_once(tmp_path_factory, "tfds", build))


@pytest.fixture(scope="session")
def smoke_workdir(tmp_path_factory, mnist_data_dir):
    """A 2-step smoke run with in-training FVD (4 videos) at steps 0 and 2."""

    def build(path):
        run_module(
            "dvd_gan.main",
            "--config=configs/smoke.py",
            f"--workdir={path / 'run'}",
            f"--config.data.data_dir={mnist_data_dir}",
            "--config.train.num_steps=2",
            "--config.train.num_samples=4",
            "--config.eval.every=2",
            "--config.eval.num_videos=4",
            "--config.eval.batch_size=4",
            f"--config.eval.stats_dir={path / 'real_stats'}",
        )

    return built_once(tmp_path_factory, "smoke_run", build) / "run"


def prepare(dataset: str, data_dir: str) -> dict:
    """Prepares `dataset` offline with the prepare command; its summary line."""
    result = run_module("dvd_gan.data.prepare", f"--dataset={dataset}", f"--data_dir={data_dir}")
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def single_digit_data_dir(tmp_path_factory):
    """moving_mnist_local/single_small (one labelled digit per clip; 512 train, 128 test)."""

    def build(path):
        summary = prepare("moving_mnist_local/single_small", str(path))
        assert summary["examples"] == {"train": 512, "test": 128}

    return str(built_once(tmp_path_factory, "tfds_single", build))


def single_digit_run(tmp_path_factory, data_dir: str, name: str, *overrides: str):
    """A 2-step run of the smoke model on one-digit clips, samples written at each step.
    Runs share one stats dir, so that their evaluations train one digit classifier."""
    stats_dir = built_once(tmp_path_factory, "single_digit_stats", lambda path: None)

    def build(path):
        run_module(
            "dvd_gan.main",
            "--config=configs/smoke.py",
            f"--workdir={path}",
            f"--config.data.data_dir={data_dir}",
            "--config.data.builder_config=single_small",
            "--config.train.num_steps=2",
            "--config.train.sample_every=1",
            "--config.eval.standing_stats_batches=2",
            "--config.eval.batch_size=4",
            f"--config.eval.stats_dir={stats_dir}",
            *overrides,
        )

    return built_once(tmp_path_factory, name, build)


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
