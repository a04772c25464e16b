"""Sweeps without a cluster: grid files, expansion and validation, run ids, the Parquet store, batches, summaries.

The tests that start Dask clusters (end to end, worker-count independence, SIGKILL and resume) are in
``test_sweep_run.py``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pytest
from typer.testing import CliRunner

import lcnflow.sweep as sw
from lcnflow.experiments import build_problem as real_build_problem
from lcnflow.experiments import config_from_dict, run_experiment
from lcnflow.sweep import execute as sweep_execute
from lcnflow.sweep.cli import app
from lcnflow.sweep.execute import _row, auto_batch_size, batches, run_batch
from lcnflow.sweep.grid import SweepError, expand, load_sweep, sweep_from_dict
from lcnflow.sweep.store import RESULT_FIELDS, SweepStore, read_results, results_schema
from lcnflow.sweep.summary import OUTCOMES, distinct_limits, outcomes, summarize
from sweep_helpers import tiny_sweep

BASE = {
    "name": "tiny",
    "architecture": {"input_size": 12, "filter_sizes": [2, 2]},
    "data": {"source": "planted", "num_samples": 30, "noise_std": 0.1},
    "init": {"scale": 0.5},
}


def _toml(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


SWEEP_TOML = tiny_sweep(
    '"architecture.filter_sizes" = [[2, 2], [3, 2]]\n'
    'init.scale = [0.01, 1]\n'
    'init.seed = {range = [0, 3]}', noise_std=0.1)


# ---------------------------------------------------------------------------------------------------- grid
def test_grid_is_the_product_in_file_order(tmp_path):
    plan = expand(load_sweep(_toml(tmp_path, SWEEP_TOML)))
    assert len(plan.runs) == 2 * 2 * 3
    assert plan.spec.varied_keys == ["architecture.filter_sizes", "init.scale", "init.seed"]
    assert plan.cell_keys == ["architecture.filter_sizes", "init.scale"] and plan.seed_keys == ["init.seed"]
    # last dimension fastest, like nested loops in file order
    seq = [(r.values["architecture.filter_sizes"], r.values["init.scale"], r.values["init.seed"]) for r in plan.runs]
    expected = [(k, s, i) for k in ([2, 2], [3, 2]) for s in (0.01, 1.0) for i in range(3)]
    assert seq == expected
    assert [r.index for r in plan.runs] == list(range(12))
    assert [r.cell for r in plan.runs] == [c for c in range(4) for _ in range(3)]
    assert len(plan.cells) == 4
    # every run's config is the base with its overrides, and its resolved values are what the config holds
    for run in plan.runs[::5]:
        cfg = plan.config(run)
        assert cfg.init.seed == run.values["init.seed"] and cfg.init.scale == run.values["init.scale"]
        assert cfg.architecture.filter_sizes == run.values["architecture.filter_sizes"]
        assert cfg.data.num_samples == 30
    # problems: architecture/loss/data only — init scale and seed share one problem
    assert len({r.problem for r in plan.runs}) == 2
    assert plan.columns == {"architecture.filter_sizes": "list[int]", "init.scale": "float", "init.seed": "int",
                            "data.seed": "int"}


def test_quoted_and_dotted_keys_and_int_float_spellings_give_the_same_runs(tmp_path):
    a = expand(load_sweep(_toml(tmp_path, SWEEP_TOML, "a.toml")))
    b_text = SWEEP_TOML.replace('"architecture.filter_sizes"', "architecture.filter_sizes").replace(
        "init.scale = [0.01, 1]", '"init.scale" = [1e-2, 1.0]')
    b = expand(load_sweep(_toml(tmp_path, b_text, "b.toml")))
    assert [r.run_id for r in a.runs] == [r.run_id for r in b.runs]
    assert len({r.run_id for r in a.runs}) == len(a.runs)
    # the ids do not depend on the process (hash randomization); importing lcnflow does not import the sweeps, and
    # importing the sweeps does not import Dask or Matplotlib (they load when a sweep runs or is summarized)
    code = ("import sys, lcnflow; assert 'lcnflow.sweep' not in sys.modules and 'dask' not in sys.modules; "
            "from lcnflow.sweep.grid import expand, load_sweep; "
            "assert 'distributed' not in sys.modules and 'matplotlib' not in sys.modules; "
            f"print(' '.join(r.run_id for r in expand(load_sweep({str(tmp_path / 'a.toml')!r})).runs))")
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == [r.run_id for r in a.runs]


@pytest.mark.parametrize(
    ("entry", "values"),
    [
        ({"range": [3]}, [0, 1, 2]),
        ({"range": [2, 8, 3]}, [2, 5]),
        ({"values": [4, 5]}, [4, 5]),
        ({"linspace": [0.5, 1.5, 3]}, [0.5, 1.0, 1.5]),
        ({"logspace": [-2, 0, 3]}, [0.01, 0.1, 1.0]),
    ],
)
def test_grid_forms(entry, values):
    key = "init.seed" if "range" in entry or "values" in entry else "init.scale"
    spec = sweep_from_dict({**BASE, "grid": {key: entry}})
    got = spec.dimensions[0].values
    assert got == pytest.approx(values, rel=1e-15)
    assert len(expand(spec).runs) == len(values)


@pytest.mark.parametrize(
    ("grid", "words"),
    [
        ({"init.scale": 0.5}, ["grid.init.scale", "0.5", "list of values"]),
        ({"init.scale": []}, ["grid.init.scale", "no values"]),
        ({"init.seed": {"range": [1.5, 3]}}, ["grid.init.seed.range", "integers", "1.5"]),
        ({"init.seed": {"range": [0, 5, 0]}}, ["grid.init.seed.range", "step"]),
        ({"init.seed": {"rnage": [0, 5]}}, ["grid.init.seed", "rnage", "range"]),
        ({"init.scale": {"logspace": [-2, 0]}}, ["grid.init.scale.logspace", "[start, stop, count]"]),
        ({"init.scale": [0.1, 0.1]}, ["grid.init.scale", "0.1", "twice"]),
        ({}, ["grid", "empty"]),
        ({"cases": [{"loss": {"name": "square"}}, {"loss": {"name": "square"}}]}, ["grid.cases", "same"]),
        ({"loss.name": ["square"], "cases": [{"loss": {"name": "log_cosh"}}]}, ["grid.loss.name", "two grid"]),
    ],
)
def test_malformed_grids_name_the_key_and_value(grid, words):
    with pytest.raises(SweepError) as info:
        expand(sweep_from_dict({**BASE, "grid": grid}))
    for w in words:
        assert w in str(info.value)


def test_invalid_cell_is_refused_before_anything_runs(tmp_path):
    text = SWEEP_TOML.replace("init.scale = [0.01, 1]", "init.scale = [0.01, -1]").replace(
        '"architecture.filter_sizes" = [[2, 2], [3, 2]]', '"architecture.filter_sizes" = [[2, 2], [3, 2], [13, 2]]')
    path = _toml(tmp_path, text)
    with pytest.raises(SweepError) as info:
        expand(load_sweep(path))
    msg = str(info.value)
    # 3 sizes × 2 scales: the 3 cells with scale −1 and the cell ([13, 2], 0.01) are invalid
    assert "4 invalid cell(s)" in msg and "nothing was run" in msg and "18 runs" in msg
    assert "init.scale: must be ≥ 0, got -1" in msg
    assert "architecture.filter_sizes = [13, 2]" in msg and "larger than its input size" in msg
    # the same through run_sweep and the CLI: no directory is created, exit code 2
    out = tmp_path / "out"
    with pytest.raises(SweepError):
        sw.run_sweep(path, out, workers=2)
    # (the local executor's workers start before the file is validated: they are ended with the refusal)
    assert not multiprocessing.active_children()
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(out)])
    assert result.exit_code == 2 and "init.scale" in result.output
    assert not out.exists()


def test_invalid_seed_value_is_refused():
    with pytest.raises(SweepError, match=r"init\.seed: must be ≥ 0, got -1"):
        expand(sweep_from_dict({**BASE, "grid": {"init.seed": [0, -1]}}))
    with pytest.raises(SweepError, match=r"init\.sed"):
        expand(sweep_from_dict({**BASE, "grid": {"init.sed": [0, 1]}}))


def test_cases_vary_keys_together():
    spec = sweep_from_dict({**BASE, "grid": {
        "cases": [{"loss": {"name": "square"}}, {"loss.name": "pseudo_huber", "loss.delta": 0.5}],
        "init.seed": {"range": [0, 2]},
    }})
    plan = expand(spec)
    assert len(plan.runs) == 4 and plan.cell_keys == ["loss.name", "loss.delta"]
    assert plan.columns["loss.name"] == "str" and plan.columns["loss.delta"] == "float"
    assert [plan.config(r).loss.name for r in plan.runs] == ["square", "square", "pseudo_huber", "pseudo_huber"]
    assert [r.values["loss.delta"] for r in plan.runs] == [None, None, 0.5, 0.5]
    assert len({r.problem for r in plan.runs}) == 2


def test_relative_data_paths_are_relative_to_the_sweep_file(tmp_path):
    path = _toml(tmp_path, """\
        [architecture]
        input_size = 12
        filter_sizes = [2, 2]
        [data]
        source = "file"
        path = "data/a.npz"
        [grid]
        data.path = ["data/a.npz", "data/b.npz"]
    """)
    spec = load_sweep(path)
    assert spec.base["data"]["path"] == str((tmp_path / "data/a.npz").resolve())
    assert spec.dimensions[0].values == [str((tmp_path / f"data/{n}.npz").resolve()) for n in "ab"]


def test_batches_keep_problems_together_and_cover_every_run_once():
    spec = sweep_from_dict({**BASE, "grid": {"init.seed": {"range": [0, 7]}, "data.seed": [0, 1, 2]}})
    plan = expand(spec)
    assert len({r.problem for r in plan.runs}) == 3  # data.seed changes the problem, init.seed does not
    parts = batches(plan.runs, 3)
    flat = [r.run_id for b in parts for r in b]
    assert sorted(flat) == sorted(r.run_id for r in plan.runs)
    # grouped by problem: each problem's runs form one contiguous stretch
    problems = [r.problem for b in parts for r in b]
    assert problems == sorted(problems, key=problems.index)
    assert [len(b) for b in parts] == [3] * 7
    # automatic sizes shrink towards the end (guided): large tasks first, no long task last
    guided = batches(plan.runs, None, threads=2)
    sizes = [len(b) for b in guided]
    assert sum(sizes) == 21 and sizes == sorted(sizes, reverse=True) and sizes[0] == 3 and sizes[-1] == 1
    assert auto_batch_size(1000, 2) == 64 and auto_batch_size(100, 2) == 13 and auto_batch_size(1, 8) == 1


def test_the_last_batches_are_topped_up_where_runs_are_cheap():
    # guided sizes shrink to single runs at the end; once finished runs show that a run is cheap, a small batch is
    # topped up from the next ones (in order, each run once) to TAIL_BATCH_SECONDS worth of runs, at most the guided
    # size of the runs left (at most MAX_BATCH) and at least BATCH_RUNS
    from lcnflow.dynamics.batch import BATCH_RUNS

    plan = expand(sweep_from_dict({**BASE, "grid": {"init.seed": {"range": [0, 600]}}}))
    work = batches(plan.runs, None, threads=2, max_batch=256)
    assert [len(b) for b in work][-3:] == [1, 1, 1]

    def drain(per_run_seconds, top_up=True, work=work):
        queue = sweep_execute._Queue(work, top_up, threads=2)
        out = [queue.pop()]  # (nothing observed yet: the first batch as cut)
        queue.observe([{"wall_time": per_run_seconds, "setup_time": 0.0}] * len(out[0]))
        while queue:
            out.append(queue.pop())
        assert queue.submitted == len(out)
        assert [r.run_id for b in out for r in b] == [r.run_id for b in work for r in b]
        return [len(b) for b in out]

    cheap = drain(1e-3)  # 0.25 s / 1 ms = 250 runs: a full compiled batch
    assert cheap[:1] == [len(work[0])] and min(cheap[:-1]) == BATCH_RUNS and cheap[-1] <= BATCH_RUNS
    costly = sweep_execute.TAIL_BATCH_SECONDS / 5  # five runs per batch at most
    assert min(drain(costly)[:-1]) == 5 and max(drain(costly)[-6:]) == 5
    assert drain(10.0) == [len(b) for b in work] == drain(1e-3, top_up=False)  # (slow runs; a fixed batch size)
    # a Dask cluster's batches are cut at MAX_AUTO_BATCH (the cost of a run unknown); cheap runs then grow them to
    # the guided size of the runs left (here ⌈runs left / 8⌉) where that is above BATCH_RUNS: few tasks, few parts
    many = expand(sweep_from_dict({**BASE, "grid": {"init.seed": {"range": [0, 3000]}}})).runs
    cut = batches(many, None, threads=2)
    assert max(len(b) for b in cut) == sweep_execute.MAX_AUTO_BATCH
    grown = drain(1e-4, work=cut)  # 0.25 s / 0.1 ms = 2 500 runs: the guided size decides
    left = 3000 - np.cumsum([0, *grown[:-1]])
    assert grown[0] == 64 and max(grown) == 256 and len(grown) < len(cut) / 2
    assert all(g == max(BATCH_RUNS, min(256, -(-n // 8))) for g, n in zip(grown[1:-1], left[1:-1], strict=True))
    assert drain(1 / 512, work=cut)[1] == 128  # (0.25 s of runs, fewer than the guided size)
    # a batch that could not be submitted goes back as it was
    queue = sweep_execute._Queue(work, True)
    first = queue.pop()
    queue.push_back(first)
    assert queue.pop() == first and queue.submitted == 1


def test_isolation_finds_the_run_that_kills_its_worker_with_single_runs_then_alone():
    # the rule both executors follow when a worker dies: the runs of its tasks rerun as single-run tasks, in parallel
    # and before any further batch; a single whose worker dies too reruns alone (nothing else in flight), and only a
    # run whose worker dies while alone is the culprit
    plan = expand(sweep_from_dict({**BASE, "grid": {"init.seed": {"range": [0, 12]}}}))
    queue = sweep_execute._Queue(batches(plan.runs, 4), False)
    isolation = sweep_execute._Isolation()
    in_flight: dict = {}
    counter = iter(range(100))

    def submit(batch):
        task = next(counter)
        in_flight[task] = batch
        return task

    assert isolation.fill(submit, queue, in_flight, 2) and [len(b) for b in in_flight.values()] == [4, 4]
    first, second = list(in_flight)
    assert not isolation.died(first, in_flight.pop(first))  # its 4 runs become suspects
    isolation.finished(first)
    isolation.fill(submit, queue, in_flight, 4)  # suspects first, as single runs, up to the limit
    singles = [t for t in in_flight if t != second]
    assert [in_flight[t] for t in singles] == [[r] for r in plan.runs[:3]]
    assert not isolation.died(singles[0], in_flight.pop(singles[0]))  # a single died too: it waits to run alone
    isolation.finished(singles[0])
    isolation.fill(submit, queue, in_flight, 8)  # nothing while other tasks are in flight
    assert len(in_flight) == 3
    for task in list(in_flight):  # the others finish
        in_flight.pop(task)
        isolation.finished(task)
    isolation.fill(submit, queue, in_flight, 8)
    (alone,) = in_flight
    assert in_flight[alone] == [plan.runs[0]]  # alone, nothing beside it
    assert isolation.died(alone, in_flight.pop(alone))  # died alone: the culprit, not rerun
    isolation.finished(alone)
    isolation.fill(submit, queue, in_flight, 8)  # then the suspect left, and the remaining batch
    assert list(in_flight.values()) == [[plan.runs[3]], plan.runs[8:]]
    # a submission that fails (a broken pool) loses nothing: the batch goes back to the queue
    queue = sweep_execute._Queue(batches(plan.runs, 4), False)
    assert not sweep_execute._Isolation().fill(lambda batch: None, queue, {}, 2)
    assert queue.pop() == plan.runs[:4]


# ---------------------------------------------------------------------------------------------------- running a batch
def test_run_batch_matches_run_experiment_and_shares_the_problem(monkeypatch):
    plan = expand(sweep_from_dict({**BASE, "grid": {"init.seed": {"range": [0, 4]}}}))
    built = []
    monkeypatch.setattr("lcnflow.experiments.build_problem",
                        lambda cfg: built.append(cfg) or real_build_problem(cfg))
    sweep_execute._PROBLEMS.clear()
    rows = run_batch(plan.spec.base, [(r.run_id, r.overrides, r.problem) for r in plan.runs])
    assert len(built) == 1  # one EmpiricalRisk for the four seeds
    assert [row["run_id"] for row in rows] == [r.run_id for r in plan.runs]
    for run, row in zip(plan.runs, rows, strict=True):
        direct = run_experiment(config_from_dict(BASE, run.overrides))
        assert row["status"] == "ok"
        assert row["loss"] == direct.loss and row["gradient_norm"] == direct.gradient_norm
        assert row["final_filter"] == direct.final_filter.ravel().tolist()
        assert row["limit"] == [w.ravel().tolist() for w in direct.limit]
        assert row["converged"] == direct.converged and row["certified"] == direct.certified
        assert row["kind"] == direct.critical_point.kind and row["origin"] == direct.critical_point.origin
        assert row["num_gradient_evaluations"] == direct.num_gradient_evaluations
        assert row["t_final"] == direct.t_final and row["message"] == direct.message
        assert row["optimum_loss"] <= row["loss"] + 1e-12
    # a later batch of the same problem in this process reuses it
    run_batch(plan.spec.base, [(plan.runs[0].run_id, plan.runs[0].overrides, plan.runs[0].problem)])
    assert len(built) == 1


def test_a_failing_run_is_recorded_with_its_error(tmp_path):
    good = tmp_path / "good.npz"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 12))
    y = x[:, :10] - 0.5 * x[:, 1:11] + 0.25 * x[:, 2:12]
    np.savez(good, inputs=x, targets=y)
    spec = sweep_from_dict({"architecture": {"input_size": 12, "filter_sizes": [2, 2]},
                            "data": {"source": "file", "path": str(good)},
                            "grid": {"data.path": [str(good), str(tmp_path / "missing.npz")],
                                     "init.seed": [0, 1]}})
    plan = expand(spec)
    sweep_execute._PROBLEMS.clear()
    rows = run_batch(plan.spec.base, [(r.run_id, r.overrides, r.problem) for r in plan.runs])
    status = [row["status"] for row in rows]
    assert status == ["ok", "ok", "error", "error"]
    for row in rows[2:]:
        assert row["error"].startswith("ConfigError: data.path: file not found") and "missing.npz" in row["error"]
        assert "Traceback" in row["traceback"] and "loss" not in row
    # rows with errors fit the schema and survive the store
    out = tmp_path / "out"
    with SweepStore(out, plan) as store:
        store.write([_row(plan, r, res) for r, res in zip(plan.runs, rows, strict=True)])
    table = read_results(out)
    assert table.column("status").to_pylist() == status
    assert table.column("loss").null_count == 2 and table.column("error").null_count == 2
    assert outcomes(table).to_pylist()[2:] == ["error", "error"]


# ---------------------------------------------------------------------------------------------------- store
def _write_some(out: Path, plan, n: int | None = None) -> list[dict]:
    sweep_execute._PROBLEMS.clear()
    runs = plan.runs[:n] if n else plan.runs
    results = run_batch(plan.spec.base, [(r.run_id, r.overrides, r.problem) for r in runs])
    rows = [_row(plan, r, res) for r, res in zip(runs, results, strict=True)]
    with SweepStore(out, plan) as store:
        for i in range(0, len(rows), 2):
            store.write(rows[i:i + 2])
    return rows


def test_store_writes_atomic_parts_readable_without_lcnflow(tmp_path):
    plan = expand(load_sweep(_toml(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    rows = _write_some(out, plan, 5)
    parts = sorted((out / "runs").iterdir())
    assert [p.suffix for p in parts] == [".parquet"] * 3  # no temporary files left
    assert (out / "sweep.toml").read_text() == textwrap.dedent(SWEEP_TOML)
    info = json.loads((out / "sweep.json").read_text())
    assert info["num_runs"] == 12 and info["fingerprint"] == plan.fingerprint
    # plain pyarrow: one row per run, every varied key, the seeds and the results as columns
    table = pads.dataset(out / "runs", format="parquet").to_table()
    assert table.num_rows == 5
    for col in ("run_id", "architecture.filter_sizes", "init.scale", "init.seed", "data.seed", "converged", "loss",
                "gradient_norm", "kind", "origin", "final_filter", "limit", "t_final", "num_gradient_evaluations",
                "wall_time", "message", "error"):
        assert col in table.column_names
    assert table.schema.field("limit").type == pa.list_(pa.list_(pa.float64()))
    assert sorted(table.column("run_id").to_pylist()) == sorted(r["run_id"] for r in rows)
    # list-valued keys are Arrow lists, like the filters
    assert table.schema.field("architecture.filter_sizes").type == pa.list_(pa.int64())
    assert table.column("architecture.filter_sizes").to_pylist()[0] == [2, 2]
    assert read_results(out).column("architecture.filter_sizes").to_pylist()[0] == [2, 2]
    assert info["cells"][0]["architecture.filter_sizes"] == [2, 2]
    assert results_schema(plan.columns).names[-len(RESULT_FIELDS):] == [f.name for f in RESULT_FIELDS]


def test_store_resume_rules(tmp_path):
    plan = expand(load_sweep(_toml(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    _write_some(out, plan, 4)
    with SweepStore(out, plan) as store:
        assert store.finished_ids() == {r.run_id for r in plan.runs[:4]}
        # a second writer is refused while the first holds the lock
        with pytest.raises(SweepError, match="another process is writing"):
            SweepStore(out, plan)
    # a different sweep is refused, naming what differs
    other = expand(load_sweep(_toml(tmp_path, SWEEP_TOML.replace("range = [0, 3]", "range = [0, 4]"), "o.toml")))
    with pytest.raises(SweepError, match=r"different sweep.*the grid differ"):
        SweepStore(out, other)
    changed = expand(load_sweep(_toml(tmp_path, SWEEP_TOML.replace("num_samples = 30", "num_samples = 31"), "c.toml")))
    with pytest.raises(SweepError, match="the base config differ"):
        SweepStore(out, changed)
    # a non-empty directory that is not a sweep, and a file, are refused
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(SweepError, match="not a sweep directory"):
        SweepStore(tmp_path / "busy", plan)
    with pytest.raises(SweepError, match="not a directory"):
        SweepStore(tmp_path / "busy" / "notes.txt", plan)


def test_damaged_part_is_set_aside_and_its_runs_redone(tmp_path):
    plan = expand(load_sweep(_toml(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    _write_some(out, plan, 4)
    first = sorted((out / "runs").glob("part-*.parquet"))[0]
    first.write_bytes(first.read_bytes()[:50])  # damaged from outside
    (out / "runs" / ".part-x.parquet.tmp").write_bytes(b"half")  # what a killed writer leaves
    with SweepStore(out, plan) as store, pytest.warns(RuntimeWarning, match="unreadable"):
        done = store.finished_ids()
    assert done == {r.run_id for r in plan.runs[2:4]}
    assert (out / "runs" / f".corrupt-{first.name}").exists()
    assert read_results(out).num_rows == 2  # readers see only whole parts
    with SweepStore(out, plan) as store:
        assert store.cleanup_temporaries() == 1


# ---------------------------------------------------------------------------------------------------- summary
def test_summary_table_and_html(tmp_path):
    plan = expand(load_sweep(_toml(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    rows = _write_some(out, plan)
    summary = summarize(out)
    t = summary.table
    assert t.num_rows == 4 and t.column("runs").to_pylist() == [3, 3, 3, 3]
    assert t.column("architecture.filter_sizes").to_pylist() == [[2, 2], [2, 2], [3, 2], [3, 2]]
    assert t.column("cell").to_pylist() == [0, 1, 2, 3]  # grid order
    pct = [c for c in t.column_names if c.startswith("pct_") and c[4:] in OUTCOMES]
    for row in t.to_pylist():
        assert math.isclose(sum(row[c] for c in pct), 100.0)
        assert row["loss_q00"] <= row["loss_q50"] <= row["loss_q100"]
    by_cell = {}
    for r in rows:
        by_cell.setdefault(r["cell"], []).append(r["loss"])
    assert t.column("loss_q50").to_pylist() == [float(np.median(by_cell[c])) for c in range(4)]
    html = summary.html_path.read_text()
    assert html.count("data:image/png;base64,") == len(summary.figures) >= 4
    assert "outcomes_vs_init_scale" in summary.figures and "distinct_limits" in summary.figures
    csv = summary.csv_path.read_text()
    assert csv.startswith('"cell","architecture.filter_sizes"') and '\n0,"[2,2]",' in csv  # lists as JSON text
    assert "<td class=\"key\">[3,2]</td>" in html
    # --json prints and leaves the files as they are (byte for byte, and not rewritten)
    html_before, csv_before = summary.html_path.read_bytes(), summary.csv_path.read_bytes()
    mtimes = (summary.html_path.stat().st_mtime_ns, summary.csv_path.stat().st_mtime_ns)
    summary.html_path.write_bytes(html_before + b"<!-- kept -->")
    result = CliRunner().invoke(app, ["summarize", str(out), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["num_finished"] == 12
    assert summary.html_path.read_bytes() == html_before + b"<!-- kept -->"
    assert summary.csv_path.read_bytes() == csv_before and summary.csv_path.stat().st_mtime_ns == mtimes[1]
    summary.html_path.unlink()
    summary.csv_path.unlink()
    assert CliRunner().invoke(app, ["summarize", str(out), "--json"]).exit_code == 0
    assert not summary.html_path.exists() and not summary.csv_path.exists()
    result = CliRunner().invoke(app, ["summarize", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not a sweep directory" in result.output


def test_outcomes_priority():
    table = pa.table({
        "status": ["ok", "ok", "ok", "ok", "ok", "ok", "error", "ok"],
        "converged": [True, True, True, True, True, False, None, True],
        "kind": ["global_minimum", "local_minimum", "strict_saddle", "degenerate", "strict_saddle", None, None, None],
        "spurious": [False, True, False, False, True, None, None, None],
    })
    assert outcomes(table).to_pylist() == ["global_minimum", "spurious", "strict_saddle", "degenerate", "spurious",
                                           "uncertified_endpoint", "error", "unclassified"]


def test_distinct_limits_groups_within_tolerance():
    a, b = [1.0, -2.0, 0.5], [0.0, 1.0, 1.0]
    filters = [a, b, [x + 1e-6 for x in a], a, [x * 1.01 for x in b]]
    groups = distinct_limits(filters, ["g", "s", "g", "g", "s"])
    assert [g["count"] for g in groups] == [3, 1, 1]
    assert groups[0]["outcome"] == "g" and groups[0]["filter"] == a


# ---------------------------------------------------------------------------------------------------- api & cli
def test_module_is_callable():
    assert callable(sw) and sw.sweep is sw.run_sweep
    assert sw.summarize.__module__ == "lcnflow.sweep.summary"
    assert set(sw.__all__) <= set(dir(sw))


def test_lcnflow_sweep_is_lazy():
    import lcnflow

    assert "__getattr__" in vars(lcnflow)  # lcnflow.sweep is resolved on first use
    code = ("import sys, lcnflow; assert 'lcnflow.sweep' not in sys.modules; "
            "s = lcnflow.sweep; assert callable(s) and s.summarize.__module__ == 'lcnflow.sweep.summary'; "
            "assert 'distributed' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_dry_run(tmp_path):
    path = _toml(tmp_path, SWEEP_TOML)
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "12 runs in 4 cell(s), 2 distinct problem(s)" in result.output
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["sweep", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not found" in result.output
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "o"), "--workers", "2",
                                      "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2 and "--workers" in result.output
    assert not (tmp_path / "o").exists()


def test_list_valued_keys_get_arrow_list_columns_and_other_structures_json_text():
    from lcnflow.sweep.grid import _column_kind, column_value
    from lcnflow.sweep.store import KIND_TYPES

    cases = [
        ([[3, 3], [2, 2, 2]], "list[int]", [3, 3]),
        ([[0.5, 1], [2, 2]], "list[float]", [0.5, 1.0]),
        ([[[3, 3], [2, 2]], [[2, 2]]], "list[list[int]]", [[3, 3], [2, 2]]),
        ([[[0.5, 1.0]], [[1, 2]]], "list[list[float]]", [[0.5, 1.0]]),
        ([[3, 3], [[2, 2]]], "json", "[3,3]"),  # lists of different depths
        ([[3, True]], "json", "[3,true]"),  # not numbers
        ([{"a": 1}], "json", '{"a":1}'),
    ]
    for values, kind, first in cases:
        assert _column_kind(values) == kind, values
        stored = column_value(kind, values[0])
        assert stored == first and type(stored) is type(first)
        # what is stored fits the column's Arrow type (raises otherwise)
        pa.array([column_value(kind, v) for v in values], KIND_TYPES[kind])


def test_a_sweep_begun_with_json_text_columns_resumes_with_them(tmp_path):
    plan = expand(load_sweep(_toml(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    with SweepStore(out, plan):
        pass
    info = json.loads((out / "sweep.json").read_text())  # as an older lcnflow wrote it: lists as JSON text
    info["columns"]["architecture.filter_sizes"] = "json"
    info["cells"] = [{**c, "architecture.filter_sizes": json.dumps(c["architecture.filter_sizes"],
                                                                    separators=(",", ":"))} for c in info["cells"]]
    (out / "sweep.json").write_text(json.dumps(info))
    plan = expand(load_sweep(_toml(tmp_path, SWEEP_TOML)))
    runs = plan.runs[:2]
    results = run_batch(plan.spec.base, [(r.run_id, r.overrides, r.problem) for r in runs])
    with SweepStore(out, plan) as store:  # opening it adopts the kinds on disk, before any row is built
        assert plan.columns["architecture.filter_sizes"] == "json"
        store.write([_row(plan, r, res) for r, res in zip(runs, results, strict=True)])
    table = read_results(out)
    assert table.column("architecture.filter_sizes").to_pylist() == ["[2,2]", "[2,2]"]
    assert summarize(out, figures=False).table.num_rows == 1


def test_relative_data_file_names_resolve_the_same_in_a_sweep_file_and_a_config_file(tmp_path):
    """``data.path``, ``data.targets_path`` and ``data.image`` (a photograph, not a bundled name) given relative to
    the file that names them: a sweep file's base, its grid values and a config file resolve them alike; bundled image
    names stay names."""
    from lcnflow.experiments.config import resolve_data_paths
    from lcnflow.sweep.grid import sweep_from_dict

    sub = tmp_path / "study"
    sub.mkdir()
    table = {"source": "image", "image": "photos/leaf.png", "input_size": [16, 16]}
    spec = sweep_from_dict({"data": dict(table), "grid": {"data.image": ["photos/a.png", "camera"]}}, folder=sub)
    assert spec.base["data"]["image"] == str((sub / "photos" / "leaf.png").resolve())
    (dim,) = spec.dimensions
    assert dim.values == [str((sub / "photos" / "a.png").resolve()), "camera"]
    assert resolve_data_paths(table, sub)["image"] == spec.base["data"]["image"]
    files = resolve_data_paths({"source": "file", "path": "x.npz", "targets_path": "/abs/y.npz"}, sub)
    assert files["path"] == str((sub / "x.npz").resolve()) and files["targets_path"] == "/abs/y.npz"
