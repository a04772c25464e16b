"""Sweep throughput: certified runs per minute of ``lcnflow sweep`` against a plain ``multiprocessing.Pool`` loop.

The problem is B1 (``problems.py``) expressed as an experiment config: 1D ``k = (3, 3, 3)``, ``d_0 = 64``,
``m = 500`` standard Gaussian inputs, targets from a planted random length-7 filter without noise (the ``planted``
source with ``target = "filter"``, ``noise_std = 0``), square loss, initialization ``N(0, 0.5²)``, gradient flow
with the default settings; one run per init seed ``0 … N−1`` (``--seeds``, default 1000).  Methods:

* **lcnflow sweep** — :func:`lcnflow.sweep.run_sweep` on a local Dask cluster (``--workers`` processes, one
  thread each, automatic batches), results written as Parquet parts.  Cluster start (spawning workers, importing
  lcnflow there) is timed separately.
* **Pool, naive** — ``multiprocessing.Pool(workers).map`` over seeds of a function that builds the config, the data
  and the ``EmpiricalRisk`` and calls ``gradient_flow`` (``run_experiment``): what a user without sweeps writes.
* **Pool, risk once** — the same, but each worker process builds the data and the risk once (pool initializer)
  and each call only draws ``w(0)`` (``lcnflow.random_init``) and calls ``gradient_flow`` with its defaults (the
  config's flow settings are the defaults): the plain loop a user who knows the API writes.
* **serial, risk once** — one process, risk built once, on a subset of seeds: the per-core ceiling.

Pool workers are forked from a process that already imported lcnflow, so they pay no import time; Dask workers are
spawned and import it (that is in "startup").  Rates are certified runs per minute of the runs' own time ("steady"),
and of the whole call including startup ("end to end").  Timings on a shared machine are noisy: rerun with
``--repeats`` to see the spread.

Run: ``python benchmarks/bench_sweep.py [--quick] [--seeds N] [--workers W] [--repeats R]``.
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
import multiprocessing as mp  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
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


def bench_sweep(seeds: int, workers: int) -> dict[str, float]:
    from distributed import Client

    spec = {**BASE, "grid": {"init.seed": {"range": [0, seeds]}}}
    out = tempfile.mkdtemp(prefix="lcnflow-bench-sweep-")
    try:
        start = time.perf_counter()
        cluster = local_cluster(workers)  # what `lcnflow sweep` starts
        client = Client(cluster)
        client.run(lambda: __import__("lcnflow.sweep.execute"))
        ready = time.perf_counter()
        try:
            outcome = run_sweep(spec, os.path.join(out, "results"), client=client, progress=False)
        finally:
            client.close()
            cluster.close()
        total = time.perf_counter() - start
        table = outcome.read()
        busy = sum(table.column("wall_time").to_pylist()) + sum(table.column("setup_time").to_pylist())
        return {"startup": ready - start, "run": outcome.run_time, "total": total, "certified": outcome.certified,
                "runs": outcome.completed, "batch": outcome.batch_size, "batches": outcome.num_batches,
                "overhead": outcome.wall_time - outcome.run_time, "busy": busy, "workers": workers}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _rate(r: dict[str, float], key: str) -> float:
    return 60.0 * r["certified"] / r[key] if r[key] > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 seeds, serial on 40 (a smoke run)")
    parser.add_argument("--seeds", type=int, default=None, help="runs per method (default 1000; --quick 200)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="repeat each method; the median rate is shown")
    parser.add_argument("--blas-threads-default", action="store_true",
                        help="do not pin BLAS to one thread per process (shows the oversubscription of a plain Pool)")
    args = parser.parse_args()
    seeds = args.seeds or (200 if args.quick else 1000)
    serial_seeds = max(10, seeds // 5)
    methods = {
        "lcnflow sweep (Dask, batched)": lambda: bench_sweep(seeds, args.workers),
        "Pool, naive (risk rebuilt per call)": lambda: bench_pool(_naive, seeds, args.workers),
        "Pool, risk built once per process": lambda: bench_pool(_once, seeds, args.workers, _init_worker),
        "serial, risk once (1 process)": lambda: bench_serial(serial_seeds),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    load = os.getloadavg()
    for _ in range(args.repeats):  # interleaved, so slow phases of a shared machine hit every method
        for name, fn in methods.items():
            results[name].append(fn())
    print(f"# Sweep throughput — B1, {seeds} init seeds, {args.workers} workers\n")
    blas = "default BLAS threads" if args.blas_threads_default else "BLAS pinned to 1 thread per process"
    print(f"{machine_info()}; {blas}; started {stamp}, load average before {load[0]:.2f}, after "
          f"{os.getloadavg()[0]:.2f}; median of {args.repeats} repeat(s)\n")
    print("| method | runs | certified | startup s | run s | per run ms | busy | certified runs/min (steady) | "
          "certified runs/min (end to end) | end to end vs plain Pool (risk once) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    plain = statistics.median(_rate(r, "total") for r in results["Pool, risk built once per process"])
    for name, rs in results.items():
        steady = statistics.median(_rate(r, "run") for r in rs)
        total = statistics.median(_rate(r, "total") for r in rs)
        per_run = statistics.median(1e3 * r["busy"] / r["runs"] for r in rs)
        busy = statistics.median(r["busy"] / (r["workers"] * r["run"]) for r in rs)
        r = rs[len(rs) // 2]
        print(f"| {name} | {r['runs']} | {r['certified']} | {statistics.median(x['startup'] for x in rs):.2f} | "
              f"{statistics.median(x['run'] for x in rs):.2f} | {per_run:.1f} | {100 * busy:.0f} % | {steady:.0f} | "
              f"{total:.0f} | {total / plain:.2f}× |")
    sweep = results["lcnflow sweep (Dask, batched)"][0]
    print(f"\n'per run ms': time inside each run's call (flow, plus config and — where rebuilt — data and risk); "
          f"'busy': that time summed over runs / (workers × run s), the share of the run phase the workers spent in "
          f"runs (the rest is scheduling, transfer, writing, idling).  On a shared machine 'per run ms' absorbs "
          f"other users' load; 'busy' does not.  Sweep: {sweep['batches']:.0f} batches of at most "
          f"{sweep['batch']:.0f} runs; validation, directory setup and worker check {sweep['overhead']:.2f} s "
          f"outside the run phase.")


if __name__ == "__main__":
    main()
