"""`python -m dvd_gan.benchmark`: a measured run, a paper config compiled on the CPU, and an
ahead-of-time compile for a TPU slice (libtpu, from the test extra)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from conftest import ROOT, run_module, xla_flags

from dvd_gan import cost
from dvd_gan.compiler import compiler_options

KEYS = {
    "step_time_s", "clips_per_s", "compile_s", "flops_per_step", "flops_per_s",
    "matmul_flops_per_s", "mfu", "mfu_vs_matmul", "peak_memory_bytes", "params", "program_ops",
}  # fmt: skip


def _report(*args, **kwargs):
    result = run_module("dvd_gan.benchmark", *args, **kwargs)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def profile_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("profile")


@pytest.fixture(scope="module")
def measured_report(profile_dir):
    # One device, as on a laptop: 8 simulated ones on 2 cores would profile collectives.
    return _report(
        "--config=configs/smoke.py",
        "--steps=2",
        f"--profile_dir={profile_dir}",
        env={**os.environ, "XLA_FLAGS": xla_flags(1)},
    )


@pytest.mark.slow
def test_benchmark_reports_every_key_for_a_measured_run(measured_report):
    report = measured_report
    assert set(report) >= KEYS
    assert report["step_time_s"] > 0 and report["flops_per_step"] > 0
    assert report["program_ops"] > 1000  # a GAN step of three networks
    assert report["mfu"] is None  # no known peak for a CPU
    assert 0 < report["mfu_vs_matmul"] < 2
    assert report["clips_per_s"] == report["batch_size"] * 2 / report["step_time_s"]
    assert set(report["params"]) == {"G", "D_S", "D_T"}


@pytest.mark.slow
def test_profile_sums_the_time_of_each_op_kind(measured_report, profile_dir):
    assert list(profile_dir.glob("plugins/profile/*/*.xplane.pb"))  # for TensorBoard/Perfetto
    top = measured_report["top_ops"]
    assert measured_report["ops"] > 100 and len(top) == 15
    shares = [share for _, _, share in top]
    assert shares == sorted(shares, reverse=True) and 0.5 < sum(shares) <= 1.0
    assert any("conv" in kind for kind, _, _ in top[:5])  # convolutions dominate a GAN step
    assert 0.05 < measured_report["convolution_share"] < 1.0
    # Convolutions run slower than a large matmul, but not absurdly so.
    rate = measured_report["convolution_flops_per_s"]
    assert (
        0.01 * measured_report["matmul_flops_per_s"] < rate < measured_report["matmul_flops_per_s"]
    )


def test_op_times_follow_asynchronous_convolutions_to_their_end():
    """XLA:CPU's convolution event marks its start; its work runs until 'end: NAME'."""
    events = [
        (0, 1, "conv_general_dilated.1"),
        (0, 100, "ThunkExecutor::Execute"),  # the executor, not an op
        (10, 30, "fusion.2"),  # runs while the convolution is in flight
        (45, 50, "end: conv_general_dilated.1"),
        (60, 70, "fusion.3"),
    ]
    times, count = cost.exclusive_op_times(events)
    assert count == 3
    assert times == {"conv_general_dilated.1": 30, "fusion.2": 20, "idle": 10, "fusion.3": 10}


def test_convolution_flops_from_hlo_text():
    x = jnp.zeros((2, 8, 8, 3))
    kernel = jnp.zeros((3, 3, 3, 5))
    numbers = ("NHWC", "HWIO", "NHWC")
    conv = jax.jit(
        lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=numbers),
        compiler_options=compiler_options(),
    )
    flops = cost.convolution_flops(conv.lower(x, kernel).compile().as_text())
    assert list(flops.values()) == [2 * 2 * 8 * 8 * 5 * 3 * 3 * 3]


@pytest.mark.slow
def test_compile_only_for_a_paper_config_on_the_cpu():
    report = _report(
        "--config=configs/kinetics600.py:12x64", "--compile_only", "--per_device_batch=1"
    )
    assert report["params"]["G"] > 300e6 and report["flops_per_step"] > 1e12
    assert report["peak_memory_bytes"] > 8e9  # 634M parameters, Adam moments and the EMA
    assert "step_time_s" not in report


@pytest.mark.slow
def test_cost_table_compiles_ahead_of_time_for_a_tpu_slice(tmp_path):
    """launch/cost_table.sh: the TPU compiler's figures as JSON, then the README table."""
    env = {**os.environ, "DVD_GAN_EXTRAS": "test", "TOPOLOGIES": "v3:2x2", "REMATS": "full"}
    result = subprocess.run(
        [str(ROOT / "launch/cost_table.sh"), str(tmp_path), "configs/smoke.py"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    report = json.loads((tmp_path / "smoke_v3_2x2_full.json").read_text())
    assert report["device"] == "TPU v3" and report["devices"] == 8
    assert report["batch_size"] == 8 and report["flops_per_step"] > 0
    assert report["overrides"] == {"model.dtype": "bfloat16", "model.remat": "full"}
    assert 0 < report["peak_memory_bytes"] < 16 * 2**30
    header, _, row = result.stdout.strip().splitlines()[-3:]  # after any set-up messages
    assert "TPU v3 GiB/core, remat full" in header
    assert row.startswith("| configs/smoke.py | 4×16² |") and row.endswith("✓ |")


@pytest.mark.slow
def test_cost_table_refuses_results_that_are_not_tpu_compiles(tmp_path, measured_report):
    (tmp_path / "cpu.json").write_text(json.dumps(measured_report))
    result = run_module("dvd_gan.cost_table", str(tmp_path / "cpu.json"), check=False)
    assert result.returncode != 0 and "lack a topology" in result.stderr


@pytest.mark.slow
def test_sampling_benchmark():
    report = _report("--config=configs/smoke.py", "--sample", "--sample_videos=2")
    assert report["sample_videos"] == 2 and report["sample_time_s"] > 0


def test_the_benchmark_needs_neither_tensorflow_nor_tfds():
    """Accelerator machines with JAX but no TensorFlow run it as it is."""
    script = (
        "import sys, dvd_gan.benchmark, dvd_gan.cost; "
        "print(sorted(m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
