"""`python -m dvd_gan.plot_curves`: a figure from a run's eval/*.json, a clear error without."""

import json

import numpy as np
from conftest import run_module
from PIL import Image


def test_curves_are_drawn_from_eval_files(tmp_path):
    (tmp_path / "eval").mkdir()
    for step, fvd in ((0, 900.0), (500, 300.0), (1000, 150.0)):
        result = {
            "fvd": fvd,
            "diversity": 10.0 + step / 100,
            "diversity_real": 25.0,
            "protocol": {"fvd": {"num_videos": 64}, "diversity": {"num_videos": 64}},
        }
        (tmp_path / "eval" / f"step_{step:07d}.json").write_text(json.dumps(result))
    output = tmp_path / "curves.png"
    result = run_module("dvd_gan.plot_curves", f"--workdir={tmp_path}", f"--output={output}")
    assert "3 evaluations, steps 0-1000" in result.stdout
    image = np.asarray(Image.open(output).convert("L"))
    assert image.shape[1] > 2 * image.shape[0], "two panels side by side"
    assert image.std() > 10, "the figure has content"


def test_a_workdir_without_evaluations_is_one_line(tmp_path):
    result = run_module(
        "dvd_gan.plot_curves", f"--workdir={tmp_path}", f"--output={tmp_path}/x.png", check=False
    )
    assert result.returncode != 0
    assert result.stderr.strip().startswith("FATAL: no eval/step_*.json")
    assert "Traceback" not in result.stderr
