"""The TPU-pod and SLURM launchers, through --dry_run: every command they would run; the
evaluation-curve script on a real run."""

import json
import os
import shutil
import subprocess

import pytest
from conftest import ROOT


def _launch(script, *args):
    return subprocess.run(
        ["bash", str(ROOT / "launch" / script), *args], capture_output=True, text=True, cwd=ROOT
    )


def test_tpu_pod_dry_run_prints_every_gcloud_command():
    result = _launch(
        "tpu_pod.sh", "--name=dvd", "--zone=us-central1-a", "--accelerator=v3-32",
        "--config=configs/kinetics600.py:48x128", "--workdir=gs://bucket/run",
        "--data_dir=gs://bucket/tfds", "--project=proj", "--delete", "--dry_run",
        "--", "--config.train.num_steps=10",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    create = next(line for line in lines if " tpu-vm create " in line)
    assert "--accelerator-type=v3-32" in create and "--zone=us-central1-a" in create
    assert "--project=proj" in create
    assert any(" tpu-vm scp " in line and "--worker=all" in line for line in lines)
    install, train = [line for line in lines if " tpu-vm ssh " in line]
    assert "--worker=all" in install and "launch/venv.sh" in install and "tpu" in install
    assert "--worker=all" in train and "dvd_gan.main" in train and "--jax_distributed" in train
    assert "kinetics600.py:48x128" in train and "gs://bucket/run" in train
    assert "gs://bucket/tfds" in train and "num_steps=10" in train
    assert "JAX_COMPILATION_CACHE_DIR=gs://bucket/jax_compilation_cache" in train
    assert " tpu-vm delete dvd " in lines[-1]


def test_tpu_pod_refuses_a_local_workdir_and_missing_arguments():
    local = _launch(
        "tpu_pod.sh", "--name=dvd", "--zone=z", "--accelerator=v3-8", "--config=c.py",
        "--workdir=/tmp/run", "--data_dir=gs://b/t", "--dry_run",
    )  # fmt: skip
    assert local.returncode != 0 and "GCS" in local.stderr
    missing = _launch("tpu_pod.sh", "--name=dvd", "--dry_run")
    assert missing.returncode != 0 and "Missing --zone" in missing.stderr


def test_slurm_dry_run_prints_the_sbatch_script():
    result = _launch(
        "gpu_slurm.sh", "--nodes=4", "--gpus_per_node=8", "--config=configs/ucf101.py",
        "--workdir=/shared/run", "--data_dir=/shared/tfds", "--partition=a100", "--dry_run",
        "--", "--config.model.dtype=bfloat16",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --partition=a100", "#SBATCH --signal=TERM@300"):  # fmt: skip
        assert line in out
    srun = next(line for line in out.splitlines() if line.startswith("srun "))
    assert "dvd_gan.main" in srun and "--jax_distributed" in srun
    assert "--config=configs/ucf101.py" in out and "--workdir=/shared/run" in out
    assert "--config.model.dtype=bfloat16" in out and "sbatch" in out.splitlines()[-1]


def test_accelerator_benchmark_names_its_benchmarks(tmp_path):
    result = _launch("accelerator_benchmark.sh", str(tmp_path), "12x64x")
    assert result.returncode == 2
    assert "Unknown benchmark 12x64x; use 12x64, 48x128, sample or profile." in result.stderr


def test_cpu_benchmark_names_its_settings(tmp_path):
    result = _launch("cpu_benchmark.sh", str(tmp_path), "smoke", "w8b3")
    assert result.returncode == 2 and not list(tmp_path.iterdir())  # checked before any run
    assert "Unknown setting w8b3; use smoke, main, w8b2, w8b8, w16b2 or w16b8." in result.stderr


@pytest.mark.slow
def test_eval_curve_evaluates_start_middle_end_and_plots(smoke_workdir, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(smoke_workdir, workdir)
    shutil.rmtree(workdir / "eval")
    env = {**os.environ, "NUM_VIDEOS": "4", "BATCH_SIZE": "4"}
    result = subprocess.run(
        ["bash", str(ROOT / "launch" / "eval_curve.sh"), str(workdir)],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    steps = sorted(int(p.stem.removeprefix("step_")) for p in (workdir / "eval").glob("*.json"))
    assert steps == [0, 2], "the run's one checkpoint (2) and its start"
    for step in steps:
        report = json.loads((workdir / "eval" / f"step_{step:07d}.json").read_text())
        assert {"fvd", "diversity", "motion", "motion_real"} <= set(report)
    assert (workdir / "curves.png").stat().st_size > 1000
    bad = subprocess.run(
        ["bash", str(ROOT / "launch" / "eval_curve.sh"), str(tmp_path / "nothing")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_local_launcher_refuses_an_unknown_job_before_any_set_up():
    result = _launch("local.sh", "conditionl")
    assert result.returncode == 2
    assert "Unknown job 'conditionl'; use main, conditional or prediction." in result.stderr
