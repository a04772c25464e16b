"""Sweeps that verify a share of their runs (``[sweep] verify_fraction``) and record the itinerary columns."""

from __future__ import annotations

import pytest

from lcnflow.sweep.execute import run_batch
from lcnflow.sweep.grid import SweepError, expand, sweep_from_dict

BASE = {
    "architecture": {"input_size": 16, "filter_sizes": [2, 2, 2]},
    "data": {"source": "planted", "num_samples": 30, "target": "filter"},
    "init": {"scale": 1e-2},
}


def test_verify_fraction_picks_the_same_share_of_runs_by_id():
    spec = sweep_from_dict({**BASE, "grid": {"init.seed": {"range": [0, 400]}}, "sweep": {"verify_fraction": 0.25}})
    plan = expand(spec)
    chosen = [r.run_id for r in plan.runs if spec.verifies(r.run_id)]
    # a hash of the run id: about a quarter (binomial, n = 400: 100 ± 8.7; ±4 s.d.), the same every time
    assert 65 <= len(chosen) <= 135
    assert chosen == [r.run_id for r in expand(spec).runs if spec.verifies(r.run_id)]
    assert spec.to_dict()["sweep"] == {"verify_fraction": 0.25}
    none = sweep_from_dict({**BASE, "grid": {"init.seed": [0, 1]}})
    assert not any(none.verifies(r.run_id) for r in expand(none).runs)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", True])
def test_a_bad_verify_fraction_is_refused_by_name(bad):
    with pytest.raises(SweepError, match=r"sweep\.verify_fraction"):
        sweep_from_dict({**BASE, "grid": {"init.seed": [0, 1]}, "sweep": {"verify_fraction": bad}})


def test_verified_rows_say_whether_the_limit_is_the_same_and_carry_the_itinerary():
    plan = expand(sweep_from_dict({**BASE, "grid": {"init.seed": [0, 1]}}))
    rows = run_batch(plan.spec.base, [(r.run_id, r.overrides, r.problem, i == 0) for i, r in enumerate(plan.runs)])
    assert rows[0]["status"] == rows[1]["status"] == "ok", rows
    assert rows[0]["limit_verified"] is True and rows[1]["limit_verified"] is None
    for row in rows:
        assert row["stop_reason"] == "minimum" and row["kind"] != "uncertified_endpoint"
        # from scale 1e-2 at depth 3 the flow first crosses the plateau at the origin, then leaves it
        assert row["num_plateaus"] >= 1 and 0 < row["first_escape_time"] < row["t_final"]


def test_read_results_adds_each_runs_outcome(tmp_path):
    from lcnflow.sweep.execute import _row
    from lcnflow.sweep.store import SweepStore, read_results

    plan = expand(sweep_from_dict({**BASE, "grid": {"init.seed": [0, 1, 2]}}))
    results = run_batch(plan.spec.base, [(r.run_id, r.overrides, r.problem) for r in plan.runs])
    out = tmp_path / "out"
    with SweepStore(out, plan) as store:
        store.write([_row(plan, r, res) for r, res in zip(plan.runs, results, strict=True)])
    table = read_results(out)
    assert table.column_names[-1] == "outcome"
    for row in table.to_pylist():  # certified runs: their kind (spurious ones are named so), else uncertified
        expected = ("spurious" if row["spurious"] else row["kind"]) if row["converged"] else "uncertified_endpoint"
        assert row["outcome"] == expected
    assert "outcome" not in read_results(out, columns=["loss"]).column_names


def test_summary_gives_each_outcome_rate_with_its_wilson_interval(tmp_path):
    from scipy.stats import binomtest

    from lcnflow.sweep.execute import _row
    from lcnflow.sweep.store import SweepStore
    from lcnflow.sweep.summary import summarize

    plan = expand(sweep_from_dict({**BASE, "grid": {"init.seed": [0, 1, 2, 3, 4]}}))
    results = run_batch(plan.spec.base, [(r.run_id, r.overrides, r.problem) for r in plan.runs])
    out = tmp_path / "out"
    with SweepStore(out, plan) as store:
        store.write([_row(plan, r, res) for r, res in zip(plan.runs, results, strict=True)])
    table = summarize(out).table.to_pylist()
    assert len(table) == 1
    row = table[0]
    for name in (c for c in row if c.startswith("pct_") and f"ci95_{c[4:]}" in row):
        k = round(row[name] * row["runs"] / 100)
        ci = binomtest(k, row["runs"]).proportion_ci(0.95, method="wilson")
        assert row[f"ci95_{name[4:]}"] == f"{100 * ci.low:.0f}–{100 * ci.high:.0f}"
