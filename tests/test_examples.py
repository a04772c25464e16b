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
    # this checkout's package first (a relative PYTHONPATH would not survive cwd=EXAMPLES)
    path = os.pathsep.join([str(EXAMPLES.parent / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "LCNFLOW_FAST": "1", "MPLBACKEND": "Agg", "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=300,
                          cwd=EXAMPLES, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_quickstart():
    out = run_example("quickstart.py")
    assert re.search(r"^data condition satisfied: rank H = 7 of k_v = 7", out, re.M), out
    # the summary's first line starts with the outcome ("converged, certified" or "NOT converged …"), and the
    # polished gradient norm it quotes, relative to the problem's scale S, is below the default certify_tol 1e-10·S
    assert re.search(r"^converged, certified \(", out, re.M), out
    relative = float(re.search(r"= (\S+)·S after polishing", out).group(1))
    assert relative <= 1e-10
    # planted LCN target with small noise, filling architecture: the limit is the function-space optimum
    assert "limit: global minimum (origin: global, not spurious)" in out


def test_robust_outliers_pseudo_huber_beats_the_square_loss():
    out = run_example("robust_outliers.py")
    rows = [re.split(r"\s{2,}", line) for line in out.splitlines()]
    errors = {row[0].split()[0]: float(row[1]) for row in rows if len(row) > 2 and row[1][:1].isdigit()}
    assert set(errors) == {"square", "pseudo_huber", "log_cosh"}, out
    assert errors["pseudo_huber"] < errors["square"] / 10


def test_gf_vs_gd():
    out = run_example("gf_vs_gd.py")
    rows = {row[0]: row for row in (re.split(r"\s{2,}", line) for line in out.splitlines()) if len(row) == 9}
    flow = rows["gradient flow"]
    assert flow[2] == "yes" and flow[8].startswith("certified")
    for fraction in ("0.5", "0.95"):  # steps below the stability limit: the flow's limit, to rounding
        row = rows[f"descent η = {fraction}·2/λ_max"]
        assert row[2] == "yes" and float(row[5]) < 1e-8, row
    for name, row in rows.items():  # a fixed step settles only where λ_max ≤ 2/η (η printed to 3 digits: 5e-3)
        if name.startswith("descent") and row[2] == "yes":
            assert float(row[7]) * float(row[1]) <= 2 * (1 + 5e-3), row
    beyond = rows["descent η = 3·2/λ_max"]
    assert beyond[2] == "no" and "grows without bound" in beyond[8]


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="needs scikit-image (lcnflow[images])")
def test_deblur_images():
    out = run_example("deblur_images.py")
    rows = [re.split(r"\s{2,}", line) for line in out.splitlines()]
    psnr = {row[0]: float(row[1]) for row in rows if len(row) == 2 and row[1][:1].isdigit()}
    assert psnr["LCN at its limit w*"] > psnr["blurred input (no filter)"] + 0.5, out
    assert psnr["optimal final filter v̂"] >= psnr["LCN at its limit w*"] - 1e-9, out

