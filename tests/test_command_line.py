"""What every command-line tool answers a user's mistake with: one `FATAL:` line naming the
problem and its fix, a non-zero exit status, no traceback."""

import numpy as np
import pytest
from conftest import run_module


@pytest.mark.parametrize(
    "module, flags",
    [
        ("dvd_gan.evaluate", ["--real=missing.npz", "--fake={tmp}/fake.npz"]),
        ("dvd_gan.evaluate", ["--real={tmp}/fake.npz", "--fake=missing_folder"]),
        ("dvd_gan.evaluate", ["--real={tmp}/fake.npz", "--fake=README.md"]),
        (
            "dvd_gan.evaluate",
            ["--real=tfds:moving_mnist_local/small:test", "--data_dir={tmp}", "--fake={tmp}"],
        ),
        ("dvd_gan.evaluate", ["--workdir=not-a-run"]),
        ("dvd_gan.sample", ["--workdir=not-a-run", "--output=x.npz"]),
        ("dvd_gan.main", ["--config=configs/missing.py", "--workdir={tmp}/run"]),
        ("dvd_gan.benchmark", ["--config=configs/missing.py:12x64"]),
        ("dvd_gan.plot_curves", ["--workdir=not-a-run", "--output={tmp}/curves.png"]),
        ("dvd_gan.cost_table", ["missing.json"]),
        (
            "dvd_gan.data.prepare",
            ["--dataset=kinetics600/64", "--manual_dir={tmp}/missing", "--data_dir={tmp}"],
        ),
    ],
)
def test_a_missing_path_is_one_fatal_line(module, flags, tmp_path):
    np.savez(tmp_path / "fake.npz", videos=np.zeros((2, 4, 8, 8, 3), np.uint8))
    result = run_module(module, *(f.format(tmp=tmp_path) for f in flags), check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    fatal = [line for line in result.stderr.splitlines() if line.startswith("FATAL")]
    assert len(fatal) == 1, result.stderr
