"""What the command line prints when its output is piped: plain lines without trailing spaces, whole words where a
number alone would mislead (the phase a long step is in, the meaning of a Łojasiewicz exponent below ½, an SGD
endpoint that is not a limit).

Runs use a tiny planted problem, so each command takes a few seconds.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

from lcnflow.cli_support import TrailingSpaceStripper

TINY = ["--set", "data.source=planted", "--set", "data.num_samples=20", "--set", "architecture.input_size=14",
        "--set", "architecture.filter_sizes=[3,2,2]", "--set", "init.scale=0.5"]


def lcnflow(*args: str) -> subprocess.CompletedProcess:
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "lcnflow.cli", *args], capture_output=True, text=True, timeout=300,
                          env=env)


# ------------------------------------------------------------------------------------------------ trailing spaces
def test_stripper_removes_spaces_before_line_breaks_across_writes(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buf)
    s = TrailingSpaceStripper()
    for chunk in ["a  ", " ", "\nb c", "   ", "d   \n\n", "  e  \n", "f  "]:
        assert s.write(chunk) == len(chunk)
    # inner spaces are kept, spaces before a line break go, spaces at the very end are held back
    assert buf.getvalue() == "a\nb c   d\n\n  e\nf"
    s.write(" g")
    assert buf.getvalue().endswith("f   g")


@pytest.mark.parametrize("command", [["run", *TINY], ["describe", *TINY], ["check-data", *TINY],
                                     ["run", *TINY, "--set", "flow.method=sgd", "--set", "flow.epochs=20"]],
                         ids=["run", "describe", "check-data", "run-sgd"])
def test_piped_output_has_no_trailing_spaces(command):
    proc = lcnflow(*command)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) >= 3
    padded = [line for line in lines if line != line.rstrip()]
    assert not padded, padded


# ------------------------------------------------------------------------------------------------ Łojasiewicz θ < ½
def test_lojasiewicz_caveat_only_below_one_half():
    from lcnflow.dynamics.result import lojasiewicz_caveat

    for theta in (None, float("nan"), 0.5, 0.4951, 0.62, 0.99):
        assert lojasiewicz_caveat(theta) is None, theta
    for theta in (0.49, 0.31, 0.0, -0.2):  # printed as 0.49 or less: the words say what it means
        words = lojasiewicz_caveat(theta)
        assert "below ½" in words and "[½, 1)" in words and "unreliable" in words and "degenerate" in words


def test_theta_below_one_half_is_explained_wherever_it_is_printed(tmp_path):
    """The run's summary, the command line's verdict and the HTML report all add the caveat to a fitted θ < ½ (a
    record whose fit is set to 0.31) and none to θ = 0.5."""
    import dataclasses
    import json

    import lcnflow as lf
    from lcnflow.cli import _summary
    from lcnflow.cli_support import console
    from lcnflow.record import RunRecord
    from lcnflow.report.html import _page

    arch = lf.Architecture(12, [2, 2])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 12))
    risk = lf.EmpiricalRisk(arch, lf.get_loss("square"), lf.Dataset(X, rng.standard_normal((20, 10))))
    res = lf.gradient_flow(risk, lf.random_init(arch, scale=0.5, seed=1))
    for theta, shown in ((0.31, True), (0.5, False)):
        changed = dataclasses.replace(res, lojasiewicz_exponent=theta)
        assert ("below ½" in changed.summary()) == shown
    proc = lcnflow("run", *TINY, "--json")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    for theta, shown in ((0.31, True), (0.5, False)):
        rec["result"]["lojasiewicz_exponent"] = theta
        record = RunRecord.from_json_dict(rec)
        buf = io.StringIO()
        con = console()
        con.file = buf
        _summary(con, record, None, None)
        assert ("θ ≈ 0.31 (below ½" in buf.getvalue()) == shown, buf.getvalue()
        assert ("below ½, outside the range [½, 1)" in _page(record, [], "")) == shown


# ------------------------------------------------------------------------------------------------ SGD's endpoint
def test_sgd_endpoint_is_not_called_converged():
    """An SGD run with a constant step ends with a large gradient at its last iterate; the command line calls it
    an endpoint polished to a certified critical point (or not certified), never "converged yes", and shows that
    gradient norm beside it."""
    import json
    import re

    sgd = [*TINY, "--set", "flow.method=sgd", "--set", "flow.epochs=20", "--set", "flow.batch_size=4"]
    proc = lcnflow("run", *sgd)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert not re.search(r"^converged", out, re.M), out
    rec = json.loads(lcnflow("run", *sgd, "--json").stdout)["result"]
    (row,) = [line for line in out.splitlines() if line.startswith("endpoint")]
    if rec["certified"]:
        assert "polished to a certified critical point" in row and "not a limit" in row
    else:
        assert "not certified" in row
    assert f"{rec['flow_gradient_norm']:.2e}" in row


# ------------------------------------------------------------------------------------------------ phases
def test_run_announces_its_phases_in_order():
    """Between steps a run names what it does: polishing a candidate, classifying it, ℒ*_M (for a non-filling
    architecture, where M is not all filters) and the experiment's ℒ*, last."""
    from lcnflow.analysis import phases
    from lcnflow.experiments import execute, load_config

    seen: list[str] = []
    cfg = load_config(None, ["data.source=planted", "data.num_samples=20", "architecture.input_size=15",
                             "architecture.filter_sizes=[3,3]", "architecture.strides=[2,1]", "init.scale=0.5"])
    steps = [0]
    with phases.listening(seen.append):
        run = execute(cfg, callback=lambda *a: steps.__setitem__(0, steps[0] + 1))
    assert run.result.certified and steps[0] > 0
    for phase in (phases.POLISHING, phases.CLASSIFYING, phases.SEARCHING_M, phases.FUNCTION_SPACE_OPTIMUM):
        assert phase in seen, (phase, seen)
    assert seen.index(phases.POLISHING) < seen.index(phases.CLASSIFYING)
    assert seen[-1] == phases.FUNCTION_SPACE_OPTIMUM
    phases.announce(phases.POLISHING)  # outside the block nobody listens
    assert seen[-1] == phases.FUNCTION_SPACE_OPTIMUM


def test_progress_line_names_the_phase():
    from rich.console import Console

    from lcnflow.analysis import phases
    from lcnflow.cli import _progress
    from lcnflow.experiments import load_config, prepare

    exp = prepare(load_config(None, TINY[1::2]))
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True, width=200)
    with _progress(con, exp) as callback:
        callback(1.5, np.zeros(3), 0.25, 1e-3)
        phases.announce(phases.SEARCHING_M)
        import time

        time.sleep(0.3)  # the display refreshes 10 times a second
    text = buf.getvalue()
    assert "gradient flow · searching M for ℒ*_M …" in text and "t = 1.5" in text
