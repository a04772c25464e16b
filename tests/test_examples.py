"""The examples run, in their fast mode, and print what they promise."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=300,
                          cwd=EXAMPLES, env={**os.environ, "LCNFLOW_FAST": "1", "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_quickstart():
    out = run_example("quickstart.py")
    assert "certified" in out and "data condition satisfied" in out


def test_robust_outliers_pseudo_huber_beats_the_square_loss():
    out = run_example("robust_outliers.py")
    rows = [re.split(r"\s{2,}", line) for line in out.splitlines()]
    errors = {row[0].split()[0]: float(row[1]) for row in rows if len(row) > 2 and row[1][:1].isdigit()}
    assert set(errors) == {"square", "pseudo_huber", "log_cosh"}, out
    assert errors["pseudo_huber"] < errors["square"] / 10


def test_gf_vs_gd():
    out = run_example("gf_vs_gd.py")
    assert "gradient flow" in out and "descent η = 0.5·2/λ_max" in out and "grows without bound" in out


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="needs scikit-image (lcnflow[images])")
def test_deblur_images():
    out = run_example("deblur_images.py")
    rows = [re.split(r"\s{2,}", line) for line in out.splitlines()]
    psnr = {row[0]: float(row[1]) for row in rows if len(row) == 2 and row[1][:1].isdigit()}
    assert psnr["LCN at its limit w*"] > psnr["blurred input (no filter)"] + 0.5, out
    assert psnr["optimal final filter v̂"] >= psnr["LCN at its limit w*"] - 1e-9, out


def test_readme_python_example_runs():
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", readme, re.S)[0]
    assert len(code.strip().splitlines()) <= 10
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "data condition satisfied" in proc.stdout and "certified" in proc.stdout
