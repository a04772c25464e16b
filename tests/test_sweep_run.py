"""Sweeps on real Dask clusters: end to end, worker-count independence, failures, SIGKILL and resume.

One 2-worker local cluster is shared by the module; the 1-worker comparison starts its own through the default
(embedded) path, and the kill test runs ``python -m lcnflow.sweep`` in its own process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import lcnflow.sweep as sw
from lcnflow.sweep.execute import local_cluster
from lcnflow.sweep.grid import expand, load_sweep
from sweep_helpers import tiny_sweep

distributed = pytest.importorskip("distributed")

SWEEP_TOML = tiny_sweep(
    '"architecture.filter_sizes" = [[2, 2], [3, 2]]\n'
    'init.scale = [0.01, 1.0]\n'
    'init.seed = {range = [0, 4]}', noise_std=0.1)

#: Columns that measure time, not results: they differ between executions of the same run.
TIMING = ("wall_time", "setup_time")


@pytest.fixture(scope="module")
def client():
    cluster = local_cluster(2)  # what `lcnflow sweep` starts
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _sweep_file(tmp_path: Path, text: str = SWEEP_TOML) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _rows(out: Path) -> list[dict]:
    table = sw.read_results(out)
    return [{k: v for k, v in row.items() if k not in TIMING} for row in table.to_pylist()]


def test_end_to_end_and_resume_is_a_no_op(tmp_path, client):
    path = _sweep_file(tmp_path)
    out = tmp_path / "out"
    calls = []
    outcome = sw.run_sweep(path, out, client=client, batch_size=3, on_batch=lambda *a: calls.append(a))
    plan = expand(load_sweep(path))
    assert outcome.completed == 16 and outcome.skipped == 0 and outcome.failed == 0 and outcome.remaining == 0
    assert outcome.num_workers == 2 and outcome.batch_size == 3
    # ⌈16/3⌉ batches; the batches finished when the driver wakes make one part file, each announced once
    assert calls[-1] == (16, 0, 16) and 1 <= len(calls) <= 6 and outcome.num_batches == 6
    assert [done for done, _, _ in calls] == sorted({done for done, _, _ in calls})
    assert len(list((out / "runs").glob("part-*.parquet"))) == len(calls)
    table = sw.read_results(out)
    assert table.num_rows == 16
    assert table.column("run_id").to_pylist() == [r.run_id for r in plan.runs]
    assert all(table.column("converged").to_pylist()) and all(table.column("certified").to_pylist())
    assert set(table.column("kind").to_pylist()) <= {"global_minimum", "local_minimum", "strict_saddle", "degenerate"}
    # limits are critical points: ‖∇L‖ tiny, and no better than the function-space optimum
    assert pc.max(table.column("gradient_norm")).as_py() < 1e-7
    gap = pc.subtract(table.column("loss"), table.column("optimum_loss"))
    assert pc.min(gap).as_py() > -1e-12
    # the final filter is π of the limit filters (1D, strides 1: polynomial product)
    for row in table.to_pylist()[::5]:
        v = np.array([1.0])
        for w in row["limit"]:
            v = np.convolve(v, w)
        np.testing.assert_allclose(v, row["final_filter"], rtol=1e-12, atol=1e-14)
    # plain pyarrow sees the same rows
    assert pads.dataset(out / "runs", format="parquet").count_rows() == 16
    # resume: nothing left, nothing rerun, and no cluster needed
    again = sw.run_sweep(path, out, workers=1)
    assert again.completed == 0 and again.skipped == 16 and again.num_workers == 0
    assert sw.read_results(out).num_rows == 16
    summary = sw.summarize(out)
    assert summary.table.column("runs").to_pylist() == [4, 4, 4, 4]


def test_one_and_two_workers_give_identical_rows(tmp_path, client):
    path = _sweep_file(tmp_path)
    two = sw.run_sweep(path, tmp_path / "two", client=client, batch_size=5)
    one = sw.run_sweep(path, tmp_path / "one", workers=1, batch_size=2)  # the embedded local cluster
    assert one.num_workers == 1 and two.num_workers == 2
    rows_one, rows_two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert len(rows_one) == 16
    assert rows_one == rows_two  # bit for bit: floats, filters, messages


def test_failing_runs_are_recorded_and_do_not_stop_the_sweep(tmp_path, client):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((25, 12))
    np.savez(tmp_path / "good.npz", inputs=x, targets=x[:, 1:11] - 0.3 * x[:, :10])
    path = _sweep_file(tmp_path, """\
        [architecture]
        input_size = 12
        filter_sizes = [2, 2]
        [data]
        source = "file"
        path = "good.npz"
        [grid]
        data.path = ["good.npz", "missing.npz"]
        init.seed = {range = [0, 3]}
    """)
    outcome = sw.run_sweep(path, tmp_path / "out", client=client, batch_size=2)
    assert outcome.completed == 6 and outcome.failed == 3
    table = sw.read_results(tmp_path / "out")
    rows = table.to_pylist()
    failed = [r for r in rows if r["status"] == "error"]
    assert len(failed) == 3
    for r in failed:
        assert r["error"].startswith("ConfigError: data.path: file not found") and r["loss"] is None
        assert r["data.path"].endswith("missing.npz")
    assert all(r["status"] == "ok" and r["converged"] for r in rows if r["data.path"].endswith("good.npz"))
    assert sw.summarize(tmp_path / "out", html_file=False).table.column("errors").to_pylist() == [0, 3]


def test_sigkill_then_resume_gives_every_run_exactly_once(tmp_path, client):
    text = SWEEP_TOML.replace("init.seed = {range = [0, 4]}", "init.seed = {range = [0, 20]}")
    path = _sweep_file(tmp_path, text)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lcnflow.sweep", "sweep", str(path), "--out", str(out), "--workers", "2",
         "--batch-size", "2", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "runs").glob("part-*.parquet"))) >= 2:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the sweep finished (or died) before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker processes, at once
        proc.wait(timeout=30)
    parts = sorted((out / "runs").glob("part-*.parquet"))
    written = sum(pq.read_table(p).num_rows for p in parts)  # every visible part is whole
    assert 4 <= written < 80
    resumed = sw.run_sweep(path, out, client=client)
    # (a part the index lists but whose rename the kill interrupted is put in place on resume: its runs count as done)
    assert resumed.skipped >= written and resumed.skipped + resumed.completed == 80
    table = sw.read_results(out)
    ids = table.column("run_id").to_pylist()
    assert len(ids) == 80 and len(set(ids)) == 80
    assert set(ids) == {r.run_id for r in expand(load_sweep(path)).runs}
    raw = pads.dataset(out / "runs", format="parquet").to_table()
    assert raw.num_rows == 80  # no run written twice, even counting every part
    assert not list((out / "runs").glob(".part-*.tmp"))


class CrashOnSeed(distributed.WorkerPlugin):
    """Makes the run with ``init.seed == seed`` kill its worker process (as a segfault or the OOM killer would)."""

    name = "crash-on-seed"

    def __init__(self, seed: int):
        self.seed = seed

    def setup(self, worker):
        import lcnflow.sweep.execute as ex

        self.original = original = ex._prepare  # (every run of a batch is prepared before the batch runs)

        def crashing(base, run_id, overrides, problem, verify=False, **kwargs):
            if overrides.get("init.seed") == self.seed:
                os._exit(13)
            return original(base, run_id, overrides, problem, verify, **kwargs)

        ex._prepare = crashing

    def teardown(self, worker):
        import lcnflow.sweep.execute as ex

        ex._prepare = self.original


def test_a_run_that_kills_its_worker_is_isolated_and_recorded(tmp_path, client):
    path = _sweep_file(tmp_path, SWEEP_TOML.replace('"architecture.filter_sizes" = [[2, 2], [3, 2]]\n', "")
                       .replace("init.scale = [0.01, 1.0]\n", "").replace("range = [0, 4]", "range = [0, 6]"))
    scheduler = client.cluster.scheduler
    allowed = scheduler.allowed_failures
    scheduler.allowed_failures = 0  # one death makes a KilledWorker (default 3: the culprit would kill 4 workers)
    client.register_plugin(CrashOnSeed(2))
    try:
        outcome = sw.run_sweep(path, tmp_path / "out", client=client, batch_size=3)
    finally:
        client.unregister_worker_plugin(CrashOnSeed.name)
        scheduler.allowed_failures = allowed
    assert outcome.completed == 6 and outcome.failed == 1
    rows = sw.read_results(tmp_path / "out").to_pylist()
    assert [r["init.seed"] for r in rows] == list(range(6))
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "ok", "ok", "ok"]
    assert rows[2]["error"].startswith("KilledWorker")
    # the cluster is whole again (the nanny restarted the worker) and runs sweeps as before
    client.wait_for_workers(2, timeout=60)
    assert sw.run_sweep(path, tmp_path / "again", client=client).failed == 0
