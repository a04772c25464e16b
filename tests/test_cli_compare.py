"""``lcnflow compare``: gradient flow, gradient descent and SGD from one initialization, through the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lcnflow.cli import app

TINY = ["--set", "data.source=planted", "--set", "data.num_samples=20", "--set", "architecture.input_size=14",
        "--set", "architecture.filter_sizes=[3,2]", "--set", "init.scale=0.5"]

runner = CliRunner()


def test_compare_writes_the_table_json_and_the_figure(tmp_path):
    res = runner.invoke(app, ["compare", *TINY, "--step-size", "0.01", "--batch-size", "20", "--epochs", "400",
                              "--out", str(tmp_path / "cmp")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for word in ("gradient flow", "gradient descent", "SGD, B = 20"):
        assert word in res.output
    record = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    rows = {r["method"].split(",")[0]: r for r in record["table"]}
    # B = m: SGD without replacement is gradient descent, step for step, so both end where GD ends
    assert rows["SGD"]["loss"] == rows["gradient descent"]["loss"]
    assert rows["gradient descent"]["same_limit_as_flow"] is True  # η = 0.01 is far below 2/λ_max here
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000


def test_compare_refuses_a_batch_larger_than_the_data_by_name():
    res = runner.invoke(app, ["compare", *TINY, "--batch-size", "50"])
    assert res.exit_code == 2 and "batch_size" in res.output
