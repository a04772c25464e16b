"""Many runs of one problem (``gradient_flows``) and the sweep's local executor.

Oracle for ``gradient_flows``: ``gradient_flow`` on each start alone (the single-run path, tested on its own against
independent integrations in test_flow.py / test_compiled_flow.py).  A batch changes what runs share, never what a
run computes, so the comparison is exact: same stop reason, kind, certificate, limit and loss (bit for bit; the
acceptance criterion is loss to 1e-8, and exact equality implies it).  Oracle for the local executor: the rows of
the same sweep run in this process (``run_batch``), and the sweep's plan for "every run exactly once".
"""

from __future__ import annotations

import multiprocessing as mp
import os
import textwrap
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest

import lcnflow as lf
import lcnflow.sweep as sw
from lcnflow.sweep import execute as sweep_execute
from lcnflow.sweep.execute import _row, run_batch
from lcnflow.sweep.grid import expand, load_sweep
from lcnflow.sweep.store import SweepStore, read_results
from sweep_helpers import tiny_sweep

#: Columns that measure time, not results.
TIMING = ("wall_time", "setup_time")


def _problem(loss: str = "square", m: int = 60) -> lf.EmpiricalRisk:
    rng = np.random.default_rng(3)
    arch = lf.Architecture(20, [3, 3, 3])
    x = rng.standard_normal((m, 20))
    v = rng.standard_normal(arch.final_filter_num_params)
    y = np.stack([np.correlate(row, v, mode="valid") for row in x])
    return lf.EmpiricalRisk(arch, loss, lf.Dataset(x, y + 0.05 * rng.standard_normal(y.shape)))


def _same(a: lf.FlowResult, b: lf.FlowResult) -> None:
    assert (a.stop_reason, a.kind, a.certified, a.converged) == (b.stop_reason, b.kind, b.certified, b.converged)
    assert a.loss == b.loss and a.gradient_norm == b.gradient_norm and a.num_steps == b.num_steps
    for wa, wb in zip(a.limit, b.limit, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert a.message == b.message


@pytest.mark.parametrize("loss", ["square", "pseudo_huber"])
def test_gradient_flows_gives_each_start_the_result_of_gradient_flow(loss):
    risk = _problem(loss)
    inits = [lf.random_init(risk.arch, scale, seed=s) for s, scale in enumerate([0.5, 0.5, 0.05, 1.5, 0.5, 0.2])]
    batch = lf.gradient_flows(risk, inits, gtol=1e-9)
    assert len(batch) == len(inits)
    for init, got in zip(inits, batch, strict=True):
        _same(got, lf.gradient_flow(risk, init, gtol=1e-9))
    assert sum(r.certified for r in batch) >= 5  # (the comparison covers certified runs, not only failures)


def test_a_batch_of_runs_that_end_differently_gives_each_the_steps_it_takes_alone(monkeypatch):
    """Runs advanced together in compiled code (runs innermost) that end for different reasons and at different
    times — a minimum, a start whose equal layers the flow keeps equal (per-run pairs), a tiny start near the saddle
    at the origin, a run stopped at ``t_max`` — each give the result of the run alone, bit for bit; more runs than
    one batch holds (BATCH_RUNS lowered to 3) take the places of runs that ended, and more than a queue holds
    (QUEUE_RUNS lowered to 5) go in the next queue.  ``wall_time`` is each run's own time."""
    from lcnflow.dynamics import batch as batch_module

    monkeypatch.setattr(batch_module, "BATCH_RUNS", 3)
    monkeypatch.setattr(batch_module, "QUEUE_RUNS", 5)
    risk = _problem()
    equal = lf.random_init(risk.arch, 0.5, seed=7)
    equal = [equal[0], equal[0].copy(), equal[2]]  # layers 1 and 2 equal: the risk's symmetry keeps them equal
    inits = [lf.random_init(risk.arch, 0.5, seed=0), equal, lf.random_init(risk.arch, 1e-3, seed=1),
             lf.random_init(risk.arch, 0.5, seed=2), lf.random_init(risk.arch, 2.0, seed=3),
             lf.random_init(risk.arch, 0.5, seed=4)]
    for options in ({}, {"t_max": 3.0}, {"save_at": [0.05, 0.5, 5.0]}):
        batch = lf.gradient_flows(risk, inits, **options)
        alone = [lf.gradient_flow(risk, init, **options) for init in inits]
        for got, ref in zip(batch, alone, strict=True):
            _same(got, ref)
            assert got.num_gradient_evaluations == ref.num_gradient_evaluations
            assert got.num_hessian_evaluations == ref.num_hessian_evaluations
            np.testing.assert_array_equal(got.times, ref.times)
            np.testing.assert_array_equal(got.saved_states, ref.saved_states)
            assert 0 < got.wall_time < sum(r.wall_time for r in alone) * 5
        reasons = {str(r.stop_reason) for r in batch}
        assert reasons == ({"minimum", "t_max"} if "t_max" in options else {"minimum", "stable_saddle"})


def test_each_runs_warnings_come_with_its_own_result(monkeypatch):
    """A warning raised by one run's own work (here its packaging, which names its start) reaches the caller as that
    run's result is yielded, once; the other runs' results come without it; the caller's filters are untouched."""
    from lcnflow.dynamics import batch, driver

    risk = _problem()
    inits = [lf.flatten(lf.random_init(risk.arch, 0.5, seed=s)) for s in range(6)]
    real = driver._package
    warned = {1, 4}

    def package(risk, rec, *args, **kwargs):
        first = float(rec.states[0][0])
        for j in warned:
            if first == inits[j][0]:
                warnings.warn(f"run {j} says so", UserWarning, stacklevel=1)
        return real(risk, rec, *args, **kwargs)

    monkeypatch.setattr(driver, "_package", package)
    monkeypatch.setattr(batch, "BATCH_RUNS", 4)  # (runs joining a batch while others are in it)
    filters = list(warnings.filters)
    flows = batch.iter_flows(risk, inits, batch.FLOW_DEFAULTS)
    for j in range(len(inits)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            next(flows)
        assert [str(w.message) for w in caught if "says so" in str(w.message)] == (
            [f"run {j} says so"] if j in warned else []), j
    assert warnings.filters == filters


def test_gradient_flows_takes_a_2d_array_and_is_exported_everywhere():
    from lcnflow.dynamics import gradient_flows as from_dynamics
    from lcnflow.flow import gradient_flows as from_flow

    assert from_dynamics is from_flow is lf.gradient_flows
    risk = _problem()
    flat = np.stack([lf.flatten(lf.random_init(risk.arch, 0.5, seed=s)) for s in range(3)])
    rows = lf.gradient_flows(risk, flat, classify=False)
    for w0, got in zip(flat, rows, strict=True):
        _same(got, lf.gradient_flow(risk, w0, classify=False))


def test_gradient_flows_checks_every_start_before_running_any():
    risk = _problem()
    calls = []
    good = lf.random_init(risk.arch, 0.5, seed=0)
    with pytest.raises(ValueError, match=r"inits\[2\]"):
        lf.gradient_flows(risk, [good, good, [np.ones(3), np.ones(2), np.ones(3)]], callback=lambda *a: calls.append(1))
    with pytest.raises(ValueError, match=r"inits\[1\]: ‖w\(0\)‖"):  # below the float64 floor
        lf.gradient_flows(risk, [good, [1e-200 * w for w in good]], callback=lambda *a: calls.append(1))
    assert not calls  # nothing ran
    with pytest.raises(ValueError, match="inits: got no start"):
        lf.gradient_flows(risk, [])
    with pytest.raises(ValueError, match=r"inits: expected a 2D array.*shape \(9,\)"):
        lf.gradient_flows(risk, np.zeros(9))
    with pytest.raises(ValueError, match=r"flow\.rtol"):
        lf.gradient_flows(risk, [good], rtol=-1.0)
    with pytest.raises(ValueError, match=r"risk: expected a lcnflow\.EmpiricalRisk"):
        lf.gradient_flows("risk", [good])


# ---------------------------------------------------------------------------------------------------- sweeps
SWEEP_TOML = tiny_sweep(
    '"architecture.filter_sizes" = [[2, 2], [3, 2]]\n'
    'init.scale = [0.01, 1.0]\n'
    'init.seed = {range = [0, 4]}', noise_std=0.1)


def _sweep_file(tmp_path, text: str = SWEEP_TOML):
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _rows(table) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING and k != "outcome"} for row in table.to_pylist()]


def test_run_batch_groups_runs_of_one_problem_and_keeps_each_runs_row(tmp_path):
    """A batch of runs of two problems, in mixed order, gives the rows of each run alone (run_batch of one run)."""
    plan = expand(load_sweep(_sweep_file(tmp_path)))
    runs = plan.runs[::-1]  # problems interleaved
    payload = [(r.run_id, r.overrides, r.problem) for r in runs]
    sweep_execute._PROBLEMS.clear()
    together = run_batch(plan.spec.base, payload)
    alone = [run_batch(plan.spec.base, [p])[0] for p in payload]
    strip = [{k: v for k, v in row.items() if k not in TIMING} for row in together]
    assert [r["run_id"] for r in together] == [r.run_id for r in runs]
    assert strip == [{k: v for k, v in row.items() if k not in TIMING} for row in alone]


def test_run_batch_keeps_each_runs_warnings_in_its_own_row(tmp_path, monkeypatch):
    """A warning raised by one run's own work lands in that run's row (its notes) in a batch exactly as when the
    run is done alone, and in no other row."""
    from lcnflow.dynamics import driver

    real = driver._package

    def package(risk, rec, *args, **kwargs):
        warnings.warn(f"started at {rec.states[0].tolist()!r}", UserWarning, stacklevel=1)
        return real(risk, rec, *args, **kwargs)

    monkeypatch.setattr(driver, "_package", package)
    plan = expand(load_sweep(_sweep_file(tmp_path)))
    payload = [(r.run_id, r.overrides, r.problem) for r in plan.runs]
    sweep_execute._PROBLEMS.clear()
    together = run_batch(plan.spec.base, payload)
    alone = [run_batch(plan.spec.base, [p])[0] for p in payload]
    notes = [row["notes"] for row in together]
    assert all(n is not None and n.count("started at") == 1 for n in notes)
    assert len(set(notes)) == len(notes)  # (every run its own start)
    assert notes == [row["notes"] for row in alone]


def test_local_executor_matches_in_process_rows_and_shows_runs_per_second(tmp_path):
    path = _sweep_file(tmp_path)
    plan = expand(load_sweep(path))
    calls = []
    outcome = sw.run_sweep(path, tmp_path / "out", workers=2, on_batch=lambda *a: calls.append(a))
    assert outcome.completed == 16 and outcome.failed == 0 and outcome.num_workers == 2
    assert calls[-1] == (16, 0, 16)
    assert " runs/s" in outcome.summary() and outcome.runs_per_second > 0
    sweep_execute._PROBLEMS.clear()
    here = run_batch(plan.spec.base, [(r.run_id, r.overrides, r.problem) for r in plan.runs])
    expected = [{k: v for k, v in _row(plan, r, res).items() if k not in TIMING}
                for r, res in zip(plan.runs, here, strict=True)]
    got = _rows(read_results(tmp_path / "out"))  # (every column; a row dict holds only the columns it sets)
    assert [{k: row[k] for k in want} for row, want in zip(got, expected, strict=True)] == expected
    assert all(row[k] is None for row, want in zip(got, expected, strict=True) for k in row if k not in want)


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="the workers inherit the patch by fork")
def test_local_executor_isolates_a_run_that_kills_its_worker(tmp_path, monkeypatch):
    path = _sweep_file(tmp_path, SWEEP_TOML.replace('"architecture.filter_sizes" = [[2, 2], [3, 2]]\n', "")
                       .replace("init.scale = [0.01, 1.0]\n", "").replace("range = [0, 4]", "range = [0, 12]"))
    original = sweep_execute._prepare

    def crashing(base, run_id, overrides, problem, verify=False, **kwargs):
        if overrides.get("init.seed") in (5, 6):
            os._exit(13)  # as a segfault or the out-of-memory killer would
        return original(base, run_id, overrides, problem, verify, **kwargs)

    monkeypatch.setattr(sweep_execute, "_prepare", crashing)  # (forked workers inherit it)
    outcome = sw.run_sweep(path, tmp_path / "out", workers=2, batch_size=3)
    assert outcome.completed == 12 and outcome.failed == 2
    rows = read_results(tmp_path / "out").to_pylist()
    assert [r["init.seed"] for r in rows] == list(range(12))
    assert [r["status"] for r in rows] == ["ok"] * 5 + ["error"] * 2 + ["ok"] * 5
    assert rows[5]["error"].startswith("WorkerDied") and rows[6]["error"].startswith("WorkerDied")


def test_part_recorded_but_not_renamed_is_finished_on_resume(tmp_path, monkeypatch):
    """A writer killed after recording a part in the index and before renaming it into place (simulated: the rename
    raises a signal-like BaseException) leaves a temporary that resuming renames into place."""
    plan = expand(load_sweep(_sweep_file(tmp_path)))
    sweep_execute._PROBLEMS.clear()
    results = run_batch(plan.spec.base, [(r.run_id, r.overrides, r.problem) for r in plan.runs[:3]])
    rows = [_row(plan, r, res) for r, res in zip(plan.runs[:3], results, strict=True)]
    out = tmp_path / "out"

    class Killed(BaseException):
        pass

    def killed(*args):
        raise Killed

    with SweepStore(out, plan) as store:
        store.write(rows[:1])
        monkeypatch.setattr(os, "replace", killed)
        with pytest.raises(Killed):
            store.write(rows[1:])
        monkeypatch.undo()
    assert len(list((out / "runs").glob("part-*.parquet"))) == 1  # every visible part is listed
    assert len(list((out / "runs").glob(".part-*.tmp"))) == 1
    with SweepStore(out, plan) as store:
        assert store.cleanup_temporaries() == 0  # renamed into place, not removed
        assert store.finished_ids() == {r.run_id for r in plan.runs[:3]}
    parts = sorted((out / "runs").glob("part-*.parquet"))
    assert sum(pq.read_table(p).num_rows for p in parts) == 3
    assert read_results(out).num_rows == 3


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="the workers inherit the patch by fork")
def test_local_executor_gives_up_when_its_workers_die_as_they_start(tmp_path, monkeypatch):
    from lcnflow.sweep import local
    from lcnflow.sweep.grid import SweepError

    monkeypatch.setattr(local, "_worker_start", lambda fd: os._exit(3))
    with pytest.raises(SweepError, match=r"workers: the local worker processes died as they started, 3 times"):
        sw.run_sweep(_sweep_file(tmp_path), tmp_path / "out", workers=2)
    assert read_results(tmp_path / "out").num_rows == 0


def test_a_sweep_run_config_is_the_single_run_config_also_when_validated_once_per_group():
    """Runs of a group differ in init.seed/init.scale: the group's config is validated once and each run's [init]
    alone — the result equals config_from_dict of the run, and a refused value gets the single run's message."""
    from lcnflow.experiments import ConfigError, config_from_dict
    from lcnflow.sweep.execute import _run_config

    base = {"name": "t", "architecture": {"input_size": 16, "filter_sizes": [3, 3]},
            "data": {"source": "planted", "num_samples": 20}, "init": {"scale": 0.5}}
    for overrides in ({"init.seed": 3}, {"init.seed": 7, "init.scale": 0.1}, {"init.seed": 2, "loss.name": "log_cosh"},
                      {"init.scale": 0.2, "architecture.filter_sizes": [2, 2]}, {}):
        assert _run_config(base, overrides).to_dict() == config_from_dict(base, overrides).to_dict(), overrides
    for bad in ({"init.seed": -1}, {"init.scale": "x"}, {"init.seed": 1, "architecture.filter_sizes": [0]}):
        with pytest.raises(ConfigError) as single:
            config_from_dict(base, bad)
        with pytest.raises(ConfigError) as grouped:
            _run_config(base, bad)
        assert str(grouped.value) == str(single.value)
