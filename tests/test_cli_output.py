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
