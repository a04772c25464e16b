"""A campaign of wrong and extreme values for every config key, through the command line: each case ends with exit
0, or exit 2 and exactly one ``error:`` line — never an internal error (exit 1), a traceback or several lines.

Oracle: the exit code and stderr of each invocation against the documented contract (docs/reliability.md).
"""

from __future__ import annotations

import itertools

import pytest
from typer.testing import CliRunner

from lcnflow.cli import app

runner = CliRunner()

BASE = ["--set", "data.source=planted", "--set", "data.num_samples=30", "--set", "architecture.input_size=14",
        "--set", "architecture.filter_sizes=[3,2]"]
KEYS = ["architecture.input_size", "architecture.filter_sizes", "architecture.strides", "loss.name", "loss.delta",
        "data.seed", "data.num_samples", "data.noise_std", "init.scale", "init.seed", "init.filters",
        "flow.gtol", "flow.certify_tol", "flow.polish_radius", "flow.classify", "flow.max_record",
        "flow.blowup_factor", "flow.max_time", "flow.method", "flow.integrator", "flow.t_max", "flow.rtol",
        "flow.atol", "flow.max_steps", "flow.verify", "name", "data.source"]
VALUES = ["nan", "inf", "-inf", "-1", "0", "1e308", "1e-320", "true", "'x'", "[]", "[1]", "[[1,2],[3,4]]", "{}",
          "1.5", '""', "9223372036854775808", "-0.0"]


def _contract_holds(res) -> bool:
    err = res.stderr
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if res.exit_code == 0:
        return "Traceback" not in err and "internal error" not in err
    return res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ")


@pytest.mark.parametrize("command", ["describe", "check-data"])
def test_every_key_with_every_wrong_value_is_exit_0_or_one_error_line(command):
    failures = []
    for key, value in itertools.product(KEYS, VALUES):
        res = runner.invoke(app, [command, *BASE, "--set", f"{key}={value}"])
        if not _contract_holds(res):
            failures.append((key, value, res.exit_code, res.stderr[:200]))
    assert not failures, failures[:10]
