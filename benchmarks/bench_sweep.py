"""Sweep throughput: ``lcnflow sweep`` (local executor) against a plain ``multiprocessing.Pool`` loop, end to end.

The problem is B1 (``problems.py``) expressed as an experiment config: 1D ``k = (3, 3, 3)``, ``d_0 = 64``,
``m = 500`` standard Gaussian inputs, targets from a planted random length-7 filter without noise (the ``planted``
source with ``target = "filter"``, ``noise_std = 0``), square loss, initialization ``N(0, 0.5²)``, gradient flow
with the default settings; one run per init seed ``0 … N−1`` (``--seeds``, default 1000).  Methods, each timed end
to end in this process tree (worker start included):

* **lcnflow sweep (local executor)** — :func:`lcnflow.sweep.run_sweep` without a cluster, as ``lcnflow sweep
  --workers W`` runs it: ``W`` worker processes, batches of runs of one problem, results written as Parquet parts
  (with fsync) into a temporary directory.  The driving process's CPU time is reported ("driver CPU").
* **lcnflow sweep (Dask local cluster)** (``--dask``) — the same through a local ``distributed`` cluster, whose
  scheduler runs in the driving process.
* **lcnflow sweep --scheduler** (``--scheduler``) — the same through ``run_sweep(..., scheduler=ADDRESS)`` on a
  ``dask scheduler`` and ``W`` single-threaded ``dask worker`` processes on the loopback interface, started (and
  warmed by a 20-run sweep) outside the timing, as a user starts a cluster by hand; its rows are compared with the
  local executor's, run by run.
* **Pool, risk built once per process** — ``multiprocessing.Pool(W)`` (fork) whose initializer builds the problem
  (``build_problem``), ``pool.map`` over the seeds of ``gradient_flow(risk, random_init(arch, 0.5, seed=s))``: the
  plain loop a user who knows the API writes.  The ratio is its end-to-end time over the sweep's.
* **Pool, naive** and **serial, risk once** (``--all``) — ``run_experiment`` per seed in a Pool, and one process.

Agreement (``--check K``, default 20): for K seeds spread over the range, the sweep's row (kind, certification,
loss) against the same run done alone (``run_experiment`` of the config with that seed): kind and certification
identical, loss within 1e-8 (relative to max(1, |loss|)).  ``--profile`` adds a cProfile of one batch of runs in
this process (where a worker's time goes).  ``bench_batched_losses.py`` compares ``gradient_flows`` with single
``gradient_flow`` calls for every built-in loss.

Timings on a shared machine are noisy: methods are interleaved and ``--repeats`` gives medians.

Run: ``python benchmarks/bench_sweep.py [--quick] [--seeds N] [--workers W] [--repeats R] [--dask] [--scheduler]
[--profile]``.
"""

from __future__ import annotations

import os
import sys

# One BLAS thread per process for every method, as Dask workers have (distributed sets these for its workers):
# with the default, forked Pool workers each start a BLAS thread pool and oversubscribe the cores.  Set before NumPy
# is imported; --blas-threads-default leaves them alone to show that effect.
_BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
if "--blas-threads-default" not in sys.argv:
    for _var in _BLAS_VARS:
        os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import multiprocessing as mp  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import lcnflow as lf  # noqa: E402
from common import machine_info  # noqa: E402
from lcnflow.experiments import RunSpec, build_problem, config_from_dict, run_experiment  # noqa: E402
from lcnflow.sweep.execute import local_cluster, run_sweep  # noqa: E402

BASE: dict[str, Any] = {
    "name": "B1-seeds",
    "description": "B1 from many initializations: 1D k=(3,3,3), d0=64, m=500, planted length-7 filter, square loss.",
    "architecture": {"input_size": 64, "filter_sizes": [3, 3, 3]},
    "loss": {"name": "square"},
    "data": {"source": "planted", "num_samples": 500, "inputs": "gaussian", "target": "filter", "noise": "gaussian",
             "noise_std": 0.0, "seed": 0},
    "init": {"scale": 0.5, "seed": 0},
    "flow": {"method": "gradient_flow"},
}

_PROBLEM: Any = None


def _naive(seed: int) -> tuple[bool, float]:
    """Build everything and run one seed (what a user without sweeps writes); (certified, seconds)."""
    start = time.perf_counter()
    certified = bool(run_experiment(config_from_dict(BASE, {"init.seed": seed})).certified)
    return certified, time.perf_counter() - start


def _init_worker() -> None:
    global _PROBLEM
    _PROBLEM = build_problem(config_from_dict(BASE))


def _once(seed: int) -> tuple[bool, float]:
    """Risk built once per process (``_init_worker``); draw ``w(0)`` and run ``gradient_flow``."""
    start = time.perf_counter()
    arch = _PROBLEM.architecture
    result = lf.gradient_flow(_PROBLEM.risk, lf.random_init(arch, BASE["init"]["scale"], seed))
    return bool(result.certified), time.perf_counter() - start


def bench_pool(fn, seeds: int, workers: int, initializer=None) -> dict[str, float]:
    start = time.perf_counter()
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=initializer) as pool:
        pool.map(abs, range(workers))  # make sure the workers are up (and initialized)
        ready = time.perf_counter()
        results = pool.map(fn, range(seeds))
        done = time.perf_counter()
    return {"startup": ready - start, "run": done - ready, "total": time.perf_counter() - start,
            "certified": sum(c for c, _ in results), "runs": seeds, "busy": sum(t for _, t in results),
            "workers": workers}


def bench_serial(seeds: int) -> dict[str, float]:
    problem = build_problem(config_from_dict(BASE))
    start = time.perf_counter()
    certified = 0
    for seed in range(seeds):
        cfg = config_from_dict(BASE, {"init.seed": seed})
        certified += problem.run(RunSpec.from_config(cfg, problem)).certified
    run = time.perf_counter() - start
    return {"startup": 0.0, "run": run, "total": run, "certified": certified, "runs": seeds, "busy": run,
            "workers": 1}


def bench_sweep(seeds: int, workers: int, keep: dict | None = None) -> dict[str, float]:
    """``run_sweep`` with the local executor (what ``lcnflow sweep --workers W`` runs), end to end."""
    spec = {**BASE, "grid": {"init.seed": {"range": [0, seeds]}}}
    out = tempfile.mkdtemp(prefix="lcnflow-bench-sweep-")
    try:
        start, cpu = time.perf_counter(), time.process_time()
        outcome = run_sweep(spec, os.path.join(out, "results"), workers=workers, progress=False)
        total, driver_cpu = time.perf_counter() - start, time.process_time() - cpu
        table = outcome.read()
        if keep is not None:
            keep["table"] = table
        return _sweep_figures(outcome, table, out, total, driver_cpu, workers)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _sweep_figures(outcome, table, out: str, total: float, driver_cpu: float, workers: int) -> dict[str, float]:
    """A finished sweep's row of the table: times, runs, batches, Parquet parts in ``out`` and the runs' busy time."""
    busy = sum(table.column("wall_time").to_pylist()) + sum(table.column("setup_time").to_pylist())
    parts = len(list(Path(out, "results", "runs").glob("part-*.parquet")))
    return {"startup": total - outcome.run_time, "run": outcome.run_time, "total": total,
            "certified": outcome.certified, "runs": outcome.completed, "batch": outcome.batch_size,
            "batches": outcome.num_batches, "parts": parts, "busy": busy, "workers": workers,
            "driver_cpu": driver_cpu}


def bench_dask(seeds: int, workers: int) -> dict[str, float]:
    """The same sweep on a local Dask cluster (its scheduler runs in this process), end to end."""
    from distributed import Client

    spec = {**BASE, "grid": {"init.seed": {"range": [0, seeds]}}}
    out = tempfile.mkdtemp(prefix="lcnflow-bench-sweep-")
    try:
        start, cpu = time.perf_counter(), time.process_time()
        cluster = local_cluster(workers)
        client = Client(cluster)
        try:
            outcome = run_sweep(spec, os.path.join(out, "results"), client=client, progress=False)
        finally:
            client.close()
            cluster.close()
        total, driver_cpu = time.perf_counter() - start, time.process_time() - cpu
        return _sweep_figures(outcome, outcome.read(), out, total, driver_cpu, workers)
    finally:
        shutil.rmtree(out, ignore_errors=True)


class LoopbackCluster:
    """A ``dask scheduler`` and ``W`` single-threaded ``dask worker`` processes on the loopback interface, started as
    a user starts them by hand (``--scheduler`` of ``lcnflow sweep``), warmed by a 20-run sweep; a context manager."""

    def __init__(self, workers: int):
        import socket
        import subprocess

        dask = str(Path(sys.executable).with_name("dask"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        env = {**os.environ, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
        self.procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                        "--no-dashboard"], **quiet)]
        time.sleep(2.0)
        self.procs.append(subprocess.Popen([dask, "worker", self.address, "--nthreads", "1", "--nworkers",
                                            str(workers), "--no-dashboard"], **quiet))
        out = tempfile.mkdtemp(prefix="lcnflow-bench-sweep-")
        try:  # (the first sweep also waits for the workers to connect and import lcnflow)
            run_sweep({**BASE, "grid": {"init.seed": {"range": [0, 20]}}}, os.path.join(out, "r"),
                      scheduler=self.address, progress=False)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            proc.wait(timeout=30)


def bench_scheduler(cluster: LoopbackCluster, seeds: int, workers: int, keep: dict) -> dict[str, float]:
    """The sweep through ``scheduler=`` (``lcnflow sweep --scheduler``) on the loopback cluster, end to end."""
    spec = {**BASE, "grid": {"init.seed": {"range": [0, seeds]}}}
    out = tempfile.mkdtemp(prefix="lcnflow-bench-sweep-")
    try:
        start, cpu = time.perf_counter(), time.process_time()
        outcome = run_sweep(spec, os.path.join(out, "results"), scheduler=cluster.address, progress=False)
        total, driver_cpu = time.perf_counter() - start, time.process_time() - cpu
        table = outcome.read()
        keep["table"] = table
        return _sweep_figures(outcome, table, out, total, driver_cpu, workers)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def same_rows(a, b) -> tuple[int, int]:
    """Runs (by init seed) of two sweep tables with the same kind and certification and a loss equal to 1e-8
    relative: ``(equal, total)``."""
    def rows(t):
        return {r["init.seed"]: r for r in t.select(["init.seed", "kind", "certified", "loss"]).to_pylist()}

    ra, rb = rows(a), rows(b)
    equal = sum(s in rb and ra[s]["kind"] == rb[s]["kind"] and ra[s]["certified"] == rb[s]["certified"]
                and abs(ra[s]["loss"] - rb[s]["loss"]) <= 1e-8 * max(1.0, abs(rb[s]["loss"])) for s in ra)
    return equal, len(ra)


def check_agreement(table, seeds: int, k: int) -> tuple[int, int, list[str]]:
    """The sweep's rows for ``k`` seeds spread over the range against the same runs done alone: ``(agreeing,
    checked, disagreements)``."""
    rows = {r["init.seed"]: r for r in table.select(["init.seed", "kind", "certified", "loss"]).to_pylist()}
    sample = sorted({round(i * (seeds - 1) / max(1, k - 1)) for i in range(k)}) if k > 0 else []
    bad = []
    for s in sample:
        alone = run_experiment(config_from_dict(BASE, {"init.seed": s}))
        row = rows[s]
        same = (row["kind"] == alone.kind and bool(row["certified"]) == bool(alone.certified)
                and abs(row["loss"] - alone.loss) <= 1e-8 * max(1.0, abs(alone.loss)))
        if not same:
            bad.append(f"seed {s}: sweep ({row['kind']}, {row['certified']}, {row['loss']!r}) vs alone "
                       f"({alone.kind}, {alone.certified}, {alone.loss!r})")
    return len(sample) - len(bad), len(sample), bad


def profile_batch(n: int) -> str:
    """cProfile of ``run_batch`` over ``n`` seeds in this process (one worker's work): the top entries by own time."""
    import cProfile
    import io
    import pstats

    from lcnflow.sweep.execute import run_batch
    from lcnflow.sweep.grid import expand, sweep_from_dict

    plan = expand(sweep_from_dict({**BASE, "grid": {"init.seed": {"range": [0, n]}}}))
    payload = [(r.run_id, r.overrides, r.problem) for r in plan.runs]
    run_batch(plan.spec.base, payload[:5])  # warm (problem built, kernels loaded)
    prof = cProfile.Profile()
    prof.enable()
    run_batch(plan.spec.base, payload)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
    return buf.getvalue()


def _rate(r: dict[str, float], key: str) -> float:
    return 60.0 * r["certified"] / r[key] if r[key] > 0 else float("nan")


SWEEP = "lcnflow sweep (local executor)"
SCHEDULER = "lcnflow sweep --scheduler (loopback dask scheduler, single-threaded workers)"
POOL = "Pool, risk built once per process"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 seeds, 5 checked (a smoke run)")
    parser.add_argument("--seeds", type=int, default=None, help="runs per method (default 1000; --quick 200)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="repeat each method; medians are shown")
    parser.add_argument("--check", type=int, default=None, help="seeds checked against single runs (default 20)")
    parser.add_argument("--dask", action="store_true", help="also the sweep on a local Dask cluster")
    parser.add_argument("--scheduler", action="store_true",
                        help="also the sweep through --scheduler on a loopback `dask scheduler` with W single-threaded "
                             "`dask worker` processes (started and warmed outside the timing)")
    parser.add_argument("--all", action="store_true", help="also the naive Pool and the serial loop")
    parser.add_argument("--profile", action="store_true", help="profile one batch of runs in this process")
    parser.add_argument("--blas-threads-default", action="store_true",
                        help="do not pin BLAS to one thread per process (shows the oversubscription of a plain Pool)")
    args = parser.parse_args()
    seeds = args.seeds or (200 if args.quick else 1000)
    check = args.check if args.check is not None else (5 if args.quick else 20)
    kept: dict = {}
    methods = {
        SWEEP: lambda: bench_sweep(seeds, args.workers, kept),
        POOL: lambda: bench_pool(_once, seeds, args.workers, _init_worker),
    }
    if args.dask:
        methods["lcnflow sweep (Dask local cluster)"] = lambda: bench_dask(seeds, args.workers)
    scheduled: dict = {}
    stack = contextlib.ExitStack()
    if args.scheduler:
        cluster = stack.enter_context(LoopbackCluster(args.workers))
        methods[SCHEDULER] = lambda: bench_scheduler(cluster, seeds, args.workers, scheduled)
    if args.all:
        methods["Pool, naive (risk rebuilt per call)"] = lambda: bench_pool(_naive, seeds, args.workers)
        methods["serial, risk once (1 process)"] = lambda: bench_serial(max(10, seeds // 5))
    results: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    load = os.getloadavg()
    with stack:
        for _ in range(args.repeats):  # interleaved, so slow phases of a shared machine hit every method
            for name, fn in methods.items():
                results[name].append(fn())
    load_after = os.getloadavg()
    print(f"# Sweep throughput — B1, {seeds} init seeds, {args.workers} workers\n")
    blas = "default BLAS threads" if args.blas_threads_default else "BLAS pinned to 1 thread per process"
    print(f"{machine_info()}; {blas}; started {stamp}, load average before {load[0]:.2f}, after "
          f"{load_after[0]:.2f}; median of {args.repeats} repeat(s), methods interleaved\n")
    print("| method | runs | certified | end to end s | startup s | run s | per run ms | busy | driver CPU s | "
          "parts | certified runs/s (end to end) | speed vs Pool (end to end) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    plain = statistics.median(r["total"] for r in results[POOL])
    for name, rs in results.items():
        total = statistics.median(r["total"] for r in rs)
        per_run = statistics.median(1e3 * r["busy"] / r["runs"] for r in rs)
        busy = statistics.median(r["busy"] / (r["workers"] * r["run"]) for r in rs)
        cpu = f"{statistics.median(r['driver_cpu'] for r in rs):.2f}" if "driver_cpu" in rs[0] else "—"
        parts = f"{rs[0]['parts']:.0f}" if "parts" in rs[0] else "—"
        r = rs[len(rs) // 2]
        print(f"| {name} | {r['runs']} | {r['certified']} | {total:.2f} | "
              f"{statistics.median(x['startup'] for x in rs):.2f} | {statistics.median(x['run'] for x in rs):.2f} | "
              f"{per_run:.2f} | {100 * busy:.0f} % | {cpu} | {parts} | {r['certified'] / total:.0f} | "
              f"{plain / total:.2f}× |")
    sweep = results[SWEEP][0]
    print(f"\n'per run ms': time inside each run's call (flow, plus config and — where rebuilt — data and risk); "
          f"'busy': that time summed over runs / (workers × run s); 'driver CPU': CPU seconds of the process that "
          f"drives the sweep (for the Dask cluster its scheduler included).  Sweep: {sweep['batches']:.0f} batches of "
          f"at most {sweep['batch']:.0f} runs, written as {sweep['parts']:.0f} Parquet parts.")
    if args.scheduler:
        equal, n = same_rows(scheduled["table"], kept["table"])
        local = statistics.median(r["total"] for r in results[SWEEP])
        through = statistics.median(r["total"] for r in results[SCHEDULER])
        print(f"\nThrough --scheduler: {through:.2f} s against {local:.2f} s on the local executor "
              f"({through / local:.2f}×); {equal} of {n} runs with the same kind, certification and loss (1e-8).")
    if check:
        ok, n, bad = check_agreement(kept["table"], seeds, check)
        print(f"\nAgreement with single runs (run_experiment per seed), {n} seeds spread over 0…{seeds - 1}: {ok} of "
              f"{n} with identical kind and certification and loss within 1e-8.")
        for line in bad:
            print(f"* {line}")
    if args.profile:
        print("\nProfile of one batch of runs in this process (cumulative time):\n\n```")
        print(profile_batch(min(seeds, 300)).strip())
        print("```")


if __name__ == "__main__":
    main()
