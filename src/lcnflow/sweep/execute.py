r"""Running a sweep: batches of runs, shared problems, incremental results, resume.

:func:`run_sweep` expands and validates the grid (nothing runs if a cell is invalid), opens the sweep directory
(refusing one made by a different sweep), skips the runs already on disk, and sends the rest to worker processes as
*batches* — tasks of many runs each, so per-task overhead stays small.  Inside a batch, runs that share
architecture, loss and data (equal :attr:`~lcnflow.sweep.grid.Run.problem`) share one
:class:`~lcnflow.EmpiricalRisk` (its statistics ``G``, ``b`` and the data condition are computed once) and one
function-space optimum ``ℒ*``, and gradient-flow runs that also share their flow options (they differ only in
``w(0)``: init seed or scale) run as one batch of :func:`~lcnflow.dynamics.batch.iter_flows`; each worker process
also keeps the last few problems it built, so later batches of the same problem reuse them.  Finished batches are
written as Parquet parts (:class:`~lcnflow.sweep.store.SweepStore`) by the driving process, so a sweep killed at any
moment loses at most the batches in flight.

Executors: by default the local one (:class:`~lcnflow.sweep.local.LocalPool`): ``workers`` processes, one thread
each, the driving process idle in a blocking wait between batches (it costs no core), batches of up to
:data:`MAX_BATCH` runs, and whatever has finished by the time it wakes written as one part.
``scheduler="tcp://host:port"`` runs the batches on an existing Dask cluster unchanged, and ``client=`` on an
existing :class:`distributed.Client` (e.g. of a ``dask_jobqueue.SLURMCluster``).

Runs are deterministic given their config (seeds included), so a sweep gives the same rows (up to the timing
columns) whatever the executor, the number of workers or the batching.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import traceback
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lcnflow import __version__
from lcnflow.sweep.grid import Run, SweepError, SweepPlan, SweepSpec, column_value, expand, load_sweep, sweep_from_dict
from lcnflow.sweep.local import LocalPool
from lcnflow.sweep.store import SweepStore, read_results

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from distributed import Client, LocalCluster

__all__ = ["SweepOutcome", "auto_batch_size", "batches", "default_workers", "local_cluster", "run_batch", "run_sweep"]

#: Problems (risk, optimum) each worker process keeps between batches.
PROBLEM_CACHE_SIZE = 4
#: Largest automatic batch size (runs per task) on a Dask cluster as cut, before the finished runs show what a run
#: costs (:class:`_Queue` then tops up batches of cheap runs, to at most :data:`MAX_BATCH`).
MAX_AUTO_BATCH = 64
#: Largest automatic batch: the local executor's from the start (its workers keep their problems and the driver waits
#: idle, so batches can be larger: fewer parts to write; a killed sweep loses at most the batches in flight), a Dask
#: task's once the finished runs show that runs are cheap (:data:`TAIL_BATCH_SECONDS`): a Dask task costs the client
#: and the scheduler a few milliseconds of CPU, 10 % of a task of 64 runs of a millisecond.
MAX_BATCH = 256
#: Automatic batches shrink so that about this many remain per worker thread: large batches first (few parts,
#: little overhead), small ones at the end (no worker idles while another finishes a long batch).
BATCHES_PER_THREAD = 4
#: Near the end of a sweep the automatic batches shrink (guided scheduling, :func:`batches`).  A batch of runs that
#: the runs finished so far show to be cheap is topped up from the batches after it, to as many runs as take about
#: this many seconds, at most the guided size of the runs left (:func:`auto_batch_size`, at most
#: :data:`MAX_BATCH`) and at least :data:`~lcnflow.dynamics.batch.BATCH_RUNS` (the runs of a batch advance
#: together, so two cheap runs cost nearly what 64 cost).  The workers then end at most about this far apart.
TAIL_BATCH_SECONDS = 0.25
#: Longest traceback text kept per failed run.
MAX_TRACEBACK = 4000

_PROBLEMS: OrderedDict[str, tuple[Any, float | None, str | None]] = OrderedDict()


# ---------------------------------------------------------------------------------------------------- worker side
def _problem(key: str, cfg: Any) -> tuple[Any, float | None, str | None]:
    """``(problem, ℒ*, notes)`` of a problem (:class:`~lcnflow.experiments.Problem`), built once per worker process
    (LRU cache of a few problems)."""
    from lcnflow.experiments import build_problem, function_space_optimum

    if key in _PROBLEMS:
        _PROBLEMS.move_to_end(key)
        return _PROBLEMS[key]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problem = build_problem(cfg)
        try:
            opt: float | None = float(function_space_optimum(problem.risk).value)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):
            opt = None
    notes = "\n".join(dict.fromkeys(str(w.message) for w in caught)) or None
    _PROBLEMS[key] = (problem, opt, notes)
    while len(_PROBLEMS) > PROBLEM_CACHE_SIZE:
        _PROBLEMS.popitem(last=False)
    return problem, opt, notes


def _problem_key(problem: str, cfg: Any) -> str:
    """The cache key of a problem: its hash, plus size and time stamp of its data files (``source = "file"``)."""
    if cfg.data.source != "file":
        return problem
    stamps = []
    for name in (cfg.data.path, cfg.data.targets_path):
        try:
            st = os.stat(name) if name else None
        except OSError:
            st = None
        stamps.append(f"{st.st_size}:{st.st_mtime_ns}" if st else "-")
    return f"{problem}|{'|'.join(stamps)}"


def _error_row(run_id: str, exc: BaseException, setup_time: float = 0.0) -> dict[str, Any]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"run_id": run_id, "status": "error", "error": f"{type(exc).__name__}: {exc}",
            "traceback": tb[-MAX_TRACEBACK:], "setup_time": setup_time}


#: Keys a sweep's runs most often differ by: a run's config is its group's validated config with a new ``[init]``.
_INIT_KEYS = ("init.seed", "init.scale")
#: Validated configs of run groups (the sweep's base with the overrides other than :data:`_INIT_KEYS`), per process.
_CONFIGS: OrderedDict[str, Any] = OrderedDict()


def _base_key(base: Mapping[str, Any]) -> str | None:
    """The base config's part of :func:`_run_config`'s cache key (None where it is not JSON)."""
    try:
        return json.dumps(base, sort_keys=True)
    except (TypeError, ValueError):
        return None


def _run_config(base: Mapping[str, Any], overrides: Mapping[str, Any], base_key: str | None = None) -> Any:
    """``config_from_dict(base, overrides)``, validating the whole config once per group of runs that differ only in
    ``init.seed``/``init.scale`` and only the ``[init]`` section for each run (the whole validation builds the
    architecture: most of a run's setup).  Where the shortcut does not apply or a value is refused, the whole
    validation runs, so a refused value gets the message a single run gives.  ``base_key``: :func:`_base_key` of
    ``base`` when the caller has it (the runs of a task share their base), else computed here."""
    from lcnflow.experiments import config_from_dict
    from lcnflow.experiments.config import InitConfig

    init = {k.split(".", 1)[1]: v for k, v in overrides.items() if k in _INIT_KEYS}
    rest = {k: v for k, v in overrides.items() if k not in _INIT_KEYS}
    if base_key is None:
        base_key = _base_key(base)
    try:
        key = None if base_key is None else f"{base_key}|{json.dumps(rest, sort_keys=True)}"
    except (TypeError, ValueError):  # (values that are not JSON: no shortcut)
        key = None
    if key is None:
        return config_from_dict(base, overrides)
    cfg = _CONFIGS.get(key)
    if cfg is None:
        cfg = config_from_dict(base, rest)
        _CONFIGS[key] = cfg
        while len(_CONFIGS) > PROBLEM_CACHE_SIZE:
            _CONFIGS.popitem(last=False)
    if not init:
        return cfg
    try:
        return cfg.model_copy(update={"init": InitConfig.model_validate({**cfg.init.model_dump(), **init})})
    except ValueError:
        return config_from_dict(base, overrides)


def _prepare(base: Mapping[str, Any], run_id: str, overrides: Mapping[str, Any], problem: str,
             verify: bool = False, base_key: str | None = None) -> tuple | dict[str, Any]:
    """``(problem, ℒ*, notes, spec, setup seconds)`` of one run (its config validated, its problem built or taken
    from the cache, its ``w(0)`` drawn and checked), or its error row (``base_key``: see :func:`_run_config`)."""
    from lcnflow.experiments import RunSpec
    from lcnflow.experiments.config import GradientFlowConfig

    start = time.perf_counter()
    try:
        cfg = _run_config(base, overrides, base_key)
        if verify and isinstance(cfg.flow, GradientFlowConfig):
            cfg = cfg.model_copy(update={"flow": cfg.flow.model_copy(update={"verify": True})})
        shared, opt, notes = _problem(_problem_key(problem, cfg), cfg)
        spec = RunSpec.from_config(cfg, shared)
    except Exception as exc:  # recorded with the run, never lost
        return _error_row(run_id, exc, time.perf_counter() - start)
    return shared, opt, notes, spec, time.perf_counter() - start


def _result_row(run_id: str, result: Any, opt: float | None, notes: str | None, setup: float,
                caught: Sequence[warnings.WarningMessage]) -> dict[str, Any]:
    run_notes = list(dict.fromkeys(str(w.message) for w in caught))
    if notes:
        run_notes.insert(0, notes)
    # the row: the result's flat fields (FlowResult.scalars, the same as in result.json) and the sweep's own
    # columns (SWEEP_FIELDS of lcnflow.sweep.store)
    return {
        "run_id": run_id,
        "status": "ok",
        **result.scalars(),
        "optimum_loss": opt,
        **_best_columns(result.critical_point, opt),
        "final_filter": np.asarray(result.final_filter, dtype=np.float64).ravel().tolist(),
        "final_filter_shape": list(np.shape(result.final_filter)),
        "limit": [np.asarray(w, dtype=np.float64).ravel().tolist() for w in result.limit],
        "setup_time": setup,
        "notes": "\n".join(run_notes) or None,
    }


def _one_run(base: Mapping[str, Any], run_id: str, overrides: Mapping[str, Any], problem: str,
             verify: bool = False) -> dict[str, Any]:
    """One run alone: its row."""
    prepared = _prepare(base, run_id, overrides, problem, verify)
    if isinstance(prepared, dict):
        return prepared
    shared, opt, notes, spec, setup = prepared
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = shared.run(spec)
    except Exception as exc:  # recorded with the run, never lost
        return _error_row(run_id, exc, setup)
    return _result_row(run_id, result, opt, notes, setup, caught)


def _flow_group(group: list[tuple[str, tuple]]) -> list[dict[str, Any]]:
    """Rows of gradient-flow runs that share one problem and one set of flow options, run as one batch
    (:func:`~lcnflow.dynamics.batch.iter_flows`): the warnings of each run stay with its row, and a run that raises
    is recorded and the batch goes on with the next."""
    from lcnflow.dynamics.batch import iter_flows, recording_warnings
    from lcnflow.model.conv import flatten

    shared, _, _, spec, _ = group[0][1]
    opts = spec.config.flow.options()
    rows: list[dict[str, Any]] = []
    with recording_warnings() as caught:  # (each run's own: those raised as its result comes)
        while len(rows) < len(group):
            rest = group[len(rows):]
            flows = iter_flows(shared.risk, [flatten(p[3].init) for _, p in rest], opts, checked=True)
            for run_id, (_, opt, notes, _, setup) in rest:
                try:
                    result = next(flows)
                except Exception as exc:  # recorded with the run; the batch goes on with the next run
                    del caught[:]
                    rows.append(_error_row(run_id, exc, setup))
                    break
                rows.append(_result_row(run_id, result, opt, notes, setup, caught))
                del caught[:]
    return rows


def _best_columns(cp: Any, opt: float | None) -> dict[str, Any]:
    """``best_loss`` (ℒ*_M) and ``best_exact`` of a classified run (None when unclassified).  When the unconstrained
    optimum was reached, ℒ*_M = ℒ* (exact)."""
    if cp is None:
        return {"best_loss": None, "best_exact": None}
    best = cp.best
    return {"best_loss": float(best.value) if best is not None else opt,
            "best_exact": bool(best.exact) if best is not None else True}


def run_batch(base: Mapping[str, Any], runs: Sequence[tuple]) -> list[dict[str, Any]]:
    """Run a batch of sweep runs in this process (the task a Dask worker executes).

    Parameters
    ----------
    base : mapping
        The sweep's base config (nested dicts).
    runs : sequence of (run_id, overrides, problem) or (run_id, overrides, problem, verify)
        Each run's identifier, its ``{"dotted.key": value}`` overrides and its problem key; runs with the same
        problem key share one prepared problem (data, :class:`~lcnflow.EmpiricalRisk`, ``ℒ*``).  ``verify`` (default
        false) re-integrates a gradient-flow run at 100× tighter tolerances (``flow.verify``).

    Returns
    -------
    list of dict
        One result row per run (the result columns of :data:`~lcnflow.sweep.store.RESULT_FIELDS` plus ``run_id``).
        A run that raises gives a row with ``status = "error"`` and the error; it never stops the batch.
    """
    from lcnflow.experiments.config import GradientFlowConfig

    rows: dict[str, dict[str, Any]] = {}
    groups: dict[tuple, list[tuple[str, tuple]]] = {}
    base_key = _base_key(base)
    for run in runs:
        run_id = run[0]
        prepared = _prepare(base, *run[:4], base_key=base_key)
        if isinstance(prepared, dict):
            rows[run_id] = prepared
            continue
        shared, _, _, spec, setup = prepared
        flow = spec.config.flow
        if isinstance(flow, GradientFlowConfig):  # grouped by problem and flow options: run as one batch
            groups.setdefault((id(shared), flow.options()), []).append((run_id, prepared))
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = shared.run(spec)
        except Exception as exc:  # recorded with the run, never lost
            rows[run_id] = _error_row(run_id, exc, setup)
            continue
        rows[run_id] = _result_row(run_id, result, prepared[1], prepared[2], setup, caught)
    for group in groups.values():
        for (run_id, _), row in zip(group, _flow_group(group), strict=True):
            rows[run_id] = row
    return [rows[run[0]] for run in runs]


def _worker_probe() -> dict[str, Any]:
    """Imported and run on each worker before the sweep: loads lcnflow and its compiled kernels (off the hot path)
    and reports its version."""
    import lcnflow.experiments  # noqa: F401  (warm the import)
    from lcnflow.dynamics.integrate import warm_up

    return {"version": __version__, "pid": os.getpid(), "warm_up_seconds": warm_up()}


# ---------------------------------------------------------------------------------------------------- driver side
@dataclass
class SweepOutcome:
    """What one call of :func:`run_sweep` did.

    Attributes
    ----------
    out : Path
        The sweep directory.
    num_runs : int
        Runs in the sweep.
    skipped : int
        Runs already on disk when this call started (resumed).
    completed : int
        Runs finished by this call (including failed ones).
    failed : int
        Runs of this call recorded with an error.
    certified : int
        Runs of this call with a certified limit.
    wall_time : float
        Seconds of this call, from validation to the last part written.
    run_time : float
        Seconds from the first task submitted to the last part written (excludes validation and cluster start).
    batch_size : int
        Runs in the largest batch submitted.
    num_batches : int
        Tasks submitted (before any retry of suspects).
    num_workers : int
        Worker threads of the cluster when the sweep started.
    interrupted : bool
        Stopped early (Ctrl-C): rerun to resume.
    timings : dict
        ``validate_seconds`` (expanding and validating the grid) and ``cluster_seconds`` (starting or connecting to
        the cluster and warming its workers).
    """

    out: Path
    num_runs: int
    skipped: int = 0
    completed: int = 0
    failed: int = 0
    certified: int = 0
    wall_time: float = 0.0
    run_time: float = 0.0
    batch_size: int = 0
    num_batches: int = 0
    num_workers: int = 0
    interrupted: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        """Runs still missing from the directory."""
        return self.num_runs - self.skipped - self.completed

    @property
    def runs_per_minute(self) -> float:
        """Runs finished per minute of :attr:`run_time`."""
        return 60.0 * self.completed / self.run_time if self.run_time > 0 else math.nan

    @property
    def runs_per_second(self) -> float:
        """Runs finished per second of :attr:`run_time`."""
        return self.completed / self.run_time if self.run_time > 0 else math.nan

    def read(self) -> pa.Table:
        """All result rows in the directory (see :func:`~lcnflow.sweep.store.read_results`)."""
        return read_results(self.out)

    def summary(self) -> str:
        """One line a person can read."""
        rate = f", {self.runs_per_second:.3g} runs/s" if self.completed else ""
        skip = f", {self.skipped} already done" if self.skipped else ""
        stop = " (interrupted: rerun the same command to resume)" if self.interrupted else ""
        return (f"{self.completed} runs finished ({self.failed} failed, {self.certified} certified){skip}; "
                f"{self.num_runs - self.remaining} of {self.num_runs} in {self.out}; {self.wall_time:.1f} s"
                f"{rate}{stop}")


def default_workers() -> int:
    """Worker processes of the default local cluster: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


def auto_batch_size(num_runs: int, num_threads: int, max_batch: int = MAX_AUTO_BATCH) -> int:
    """Runs in the next automatic batch when ``num_runs`` remain: ``⌈num_runs / (4 · threads)⌉``, in
    ``[1, max_batch]`` (64 by default)."""
    if num_runs <= 0:
        return 1
    return int(min(max_batch, max(1, math.ceil(num_runs / (BATCHES_PER_THREAD * max(1, num_threads))))))


def batches(runs: Sequence[Run], batch_size: int | None = None, threads: int = 1,
            max_batch: int = MAX_AUTO_BATCH) -> list[list[Run]]:
    """Split runs into batches, runs of one problem kept together where possible.

    Runs are ordered by problem (first appearance), then by grid index, and cut into consecutive chunks, so a batch
    mostly holds runs that share one problem.  Chunks have ``batch_size`` runs (the last may have fewer), or, when
    ``batch_size`` is None, decreasing sizes :func:`auto_batch_size` of the runs left for ``threads`` worker threads
    (guided scheduling).

    Parameters
    ----------
    runs : sequence of Run
    batch_size : int, optional
    threads : int
        Worker threads of the cluster (for automatic sizes).
    max_batch : int
        Largest automatic size.

    Returns
    -------
    list of list of Run
    """
    first: dict[str, int] = {}
    for r in runs:
        first.setdefault(r.problem, len(first))
    ordered = sorted(runs, key=lambda r: (first[r.problem], r.index))
    out, i = [], 0
    while i < len(ordered):
        size = batch_size if batch_size is not None else auto_batch_size(len(ordered) - i, threads, max_batch)
        out.append(ordered[i:i + size])
        i += size
    return out


class _Queue:
    """The batches of a sweep still to submit, in order (:meth:`pop`), and the time its finished runs took
    (:meth:`observe`), from which automatic batches of cheap runs are topped up (:data:`TAIL_BATCH_SECONDS`) for
    ``threads`` worker threads."""

    def __init__(self, work: list[list[Run]], top_up: bool, threads: int = 1):
        self._batches = list(reversed(work))  # (pop() from the end: submitted in order)
        self._left = sum(len(b) for b in work)
        self._top_up = top_up
        self._threads = threads
        self._seconds = 0.0
        self._runs = 0
        self.submitted = 0
        self.largest = 0

    def __bool__(self) -> bool:
        return bool(self._batches)

    def observe(self, results: Sequence[Mapping[str, Any]]) -> None:
        """Count the time of finished runs (their flow and setup time; failed runs count as runs of no time)."""
        for row in results:
            self._seconds += float(row.get("wall_time") or 0.0) + float(row.get("setup_time") or 0.0)
        self._runs += len(results)

    def pop(self) -> list[Run]:
        """The next batch: the first in the queue, topped up from the next ones where its runs are cheap."""
        from lcnflow.dynamics.batch import BATCH_RUNS

        batch = self._batches.pop()
        if self._top_up and self._runs and self._batches:
            per_run = self._seconds / self._runs
            guided = max(BATCH_RUNS, auto_batch_size(self._left, self._threads, MAX_BATCH))
            want = min(guided, int(TAIL_BATCH_SECONDS / per_run) if per_run > 0 else guided)
            while len(batch) < want and self._batches:
                following = self._batches.pop()
                take = want - len(batch)
                batch = batch + following[:take]
                if following[take:]:
                    self._batches.append(following[take:])
        self._left -= len(batch)
        self.submitted += 1
        self.largest = max(self.largest, len(batch))
        return batch

    def push_back(self, batch: list[Run]) -> None:
        """Put back the batch :meth:`pop` gave (it could not be submitted)."""
        self._batches.append(batch)
        self._left += len(batch)
        self.submitted -= 1


class _Isolation:
    """Which run kills its worker, on either executor.

    When a task's worker dies (a crash, or out of memory), every run of it becomes a *suspect*: the culprit may be a
    run of another task on the same worker.  Suspects run again as tasks of one run each, in parallel, before any
    further batch; a single run whose worker dies too runs once more *alone*, with nothing else in flight, and only a
    run whose worker dies while it runs alone is the culprit (recorded as failed).
    """

    def __init__(self) -> None:
        self._suspects: list[Run] = []  # to run again as single-run tasks, in parallel
        self._lonely: list[Run] = []  # single runs whose worker died too: each to run alone
        self._singles: set[Any] = set()  # tasks of one suspect
        self._alone: set[Any] = set()  # tasks of one run with nothing else in flight

    def died(self, task: Any, batch: list[Run]) -> bool:
        """The worker of ``task`` (the runs ``batch``) died: True if it ran alone (its run is the culprit), else its
        runs run again (False)."""
        if task in self._alone:
            return True
        (self._lonely if task in self._singles else self._suspects).extend(batch)
        return False

    def finished(self, task: Any) -> None:
        """Forget ``task`` (it has finished, one way or another)."""
        self._alone.discard(task)
        self._singles.discard(task)

    def fill(self, submit: Callable[[list[Run]], Any], queue: _Queue, in_flight: Mapping[Any, Any], limit: int) -> bool:
        """Submit what runs next: a run waiting to run alone once nothing is ``in_flight`` (nothing else meanwhile),
        else the suspects as single-run tasks, then batches from ``queue``, while fewer than ``limit`` tasks are in
        flight.  ``submit(batch)`` returns the task, or None where it could not be submitted (nothing is lost then).
        Returns False when a submission failed."""
        if self._lonely:
            if in_flight:
                return True
            task = submit([self._lonely[0]])
            if task is None:
                return False
            self._alone.add(task)
            self._lonely.pop(0)
            return True
        while (self._suspects or queue) and len(in_flight) < limit:
            if self._suspects:
                task = submit([self._suspects[0]])
                if task is None:
                    return False
                self._singles.add(task)
                self._suspects.pop(0)
            else:
                batch = queue.pop()
                if submit(batch) is None:
                    queue.push_back(batch)
                    return False
        return True


def _row(plan: SweepPlan, run: Run, result: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"run_id": run.run_id, "run_index": run.index, "cell": run.cell}
    for key, kind in plan.columns.items():
        row[key] = column_value(kind, run.values.get(key))
    row.update({k: v for k, v in result.items() if k != "run_id"})
    return row


def local_cluster(workers: int | None = None) -> LocalCluster:
    """A local Dask cluster set up for sweeps (``run_sweep(..., client=Client(local_cluster()))``); a sweep without
    ``client`` or ``scheduler`` uses the local executor instead (:mod:`lcnflow.sweep.local`), which costs the driving
    process no core (a local cluster's scheduler runs in it).

    ``workers`` processes (default :func:`default_workers`), one thread each (distributed also limits BLAS to one
    thread per worker), the dashboard on a free port if Bokeh is installed, and the workers' statistical profiler
    off: it samples every thread's stack every 10 ms, which costs these GIL-bound runs 10–20 % of their speed.

    Parameters
    ----------
    workers : int, optional

    Returns
    -------
    distributed.LocalCluster
        Close it when done (or use it as a context manager).
    """
    import dask
    from distributed import LocalCluster

    n = default_workers() if workers is None else workers
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        # (the workers' own log lines would only repeat, as tracebacks, what the sweep records and reports;
        # LCNFLOW_DEBUG=1 shows their errors)
        return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                            silence_logs=logging.ERROR if os.environ.get("LCNFLOW_DEBUG") else logging.CRITICAL)


def _check_cluster_options(workers: int | None, scheduler: str | None, client: Client | None) -> None:
    if client is not None and (workers is not None or scheduler is not None):
        raise SweepError("client: give either client, or scheduler/workers, not both")
    if scheduler is not None and workers is not None:
        raise SweepError(
            f"--workers: applies to the local executor only; with --scheduler {scheduler} the cluster's own "
            "workers run the sweep (start more with `dask worker`)"
        )
    if scheduler is not None and not (isinstance(scheduler, str) and scheduler.strip()):
        raise SweepError(f"--scheduler: expected an address such as tcp://host:8786, got {scheduler!r}")
    if scheduler is not None:
        scheme, _, rest = scheduler.strip().rpartition("://")
        if scheme.lower() in ("", "tcp", "tls", "ws", "wss"):
            host, colon, port = rest.rpartition(":")
            if not (colon and host.strip("[]") and port.isdigit() and 0 < int(port) < 65536):
                raise SweepError(f"--scheduler: {scheduler!r} names no host and port; give the address `dask "
                                 "scheduler` prints, such as tcp://localhost:8786")
    if workers is not None and not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
        raise SweepError(f"--workers: must be an integer ≥ 1, got {workers!r}")


@contextmanager
def _cluster(workers: int | None, scheduler: str | None, client: Client | None) -> Iterator[Client]:
    """A connected client: the given one, or one to ``scheduler``."""
    _check_cluster_options(workers, scheduler, client)
    if client is not None:
        yield client
        return
    from distributed import Client

    if scheduler is not None:
        try:
            c = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise SweepError(
                f"--scheduler: cannot connect to {scheduler!r}: {exc}; start one with `dask scheduler` and give "
                "the address it prints (tcp://host:8786)"
            ) from None
        try:
            yield c
        finally:
            c.close()
        return
    raise SweepError("scheduler: the local executor runs without a Dask client")  # (run_sweep never asks)


def _probe_workers(client: Client) -> int:
    """Warm every worker (import lcnflow) and check versions; returns the number of worker threads."""
    if not client.scheduler_info().get("workers"):
        print("waiting for Dask workers to join the scheduler …", file=sys.stderr)
    try:
        client.submit(_worker_probe, pure=False).result()
        reports = client.run(_worker_probe)
    except ImportError as exc:
        raise SweepError(
            f"workers: cannot import lcnflow ({exc}); install the same lcnflow on every worker "
            "(pip install lcnflow, or the same editable checkout)"
        ) from None
    versions = {r["version"] for r in reports.values()}
    if versions - {__version__}:
        warnings.warn(f"workers run lcnflow {sorted(versions)}, this process {__version__}; results may differ",
                      RuntimeWarning, stacklevel=3)
    return max(1, sum(client.nthreads().values()))


def _resolve_spec(spec: str | Path | Mapping[str, Any] | SweepSpec | SweepPlan) -> SweepPlan:
    if isinstance(spec, SweepPlan):
        return spec
    if isinstance(spec, SweepSpec):
        return expand(spec)
    if isinstance(spec, Mapping):
        return expand(sweep_from_dict(spec))
    return expand(load_sweep(spec))


ProgressHook = Callable[[int, int, int], None]


def run_sweep(
    spec: str | Path | Mapping[str, Any] | SweepSpec | SweepPlan,
    out: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Client | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
    on_batch: ProgressHook | None = None,
) -> SweepOutcome:
    """Run (or resume) a sweep: every run of the grid, results as a Parquet dataset in ``out``.

    Parameters
    ----------
    spec : str, Path, mapping, SweepSpec or SweepPlan
        A sweep file (TOML), or the sweep as nested dicts (see :func:`~lcnflow.sweep.grid.sweep_from_dict`).
    out : str or Path
        The sweep directory.  If it holds results of the same sweep, finished runs are skipped (resume); if it
        holds another sweep, nothing runs.
    workers : int, optional
        Worker processes of the local executor (default: the CPUs available).  Not with ``scheduler``/``client``.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``), used unchanged.
    client : distributed.Client, optional
        An existing client (e.g. of a ``dask_jobqueue.SLURMCluster``); left open.
    batch_size : int, optional
        Runs per task; default ``[sweep] batch_size`` of the file, else automatic: decreasing sizes, at most
        :data:`MAX_BATCH` on the local executor; on a Dask cluster at most 64 until finished runs show what a run
        costs, then as many cheap runs as take about :data:`TAIL_BATCH_SECONDS`, at most :data:`MAX_BATCH` (see
        :func:`batches`, :class:`_Queue`).
    progress : bool, optional
        Show a live progress bar on stderr (default: only when stderr is a terminal).
    on_batch : callable, optional
        ``on_batch(done, failed, total)`` after each part is written (runs of this call; ``total`` excludes skipped).

    Returns
    -------
    SweepOutcome

    Raises
    ------
    SweepError
        Invalid sweep file or grid (before anything runs), unusable ``out``, bad options or no cluster.
    """
    start = time.perf_counter()
    _check_cluster_options(workers, scheduler, client)
    pool = None
    if client is None and scheduler is None:  # the local executor: worker processes, the driver idle
        # (created first: the workers load the compiled kernels while the sweep is validated and its store read)
        pool = LocalPool(default_workers() if workers is None else workers)
        pool.start()
    try:
        plan = _resolve_spec(spec)
        timings = {"validate_seconds": time.perf_counter() - start}
        size = batch_size if batch_size is not None else plan.spec.batch_size
        if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
            raise SweepError(f"--batch-size: must be an integer ≥ 1, got {size!r}")
        with SweepStore(out, plan) as store:
            store.cleanup_temporaries()
            done = store.finished_ids()
            todo = [r for r in plan.runs if r.run_id not in done]
            outcome = SweepOutcome(Path(out), len(plan.runs), skipped=len(plan.runs) - len(todo))
            outcome.timings = timings
            t0 = time.perf_counter()
            if todo and pool is not None:
                pool.close_fd = store.lock_fd  # (workers created from now on close the inherited lock)
                timings["cluster_seconds"] = time.perf_counter() - t0
                outcome.num_workers = pool.workers
                work = batches(todo, size, pool.workers, max_batch=MAX_BATCH)
                _drive_local(pool, plan, store, work, outcome, pool.workers, progress, on_batch, size is None)
            elif todo:
                with _cluster(workers, scheduler, client) as c:
                    threads = _probe_workers(c)
                    timings["cluster_seconds"] = time.perf_counter() - t0
                    outcome.num_workers = threads
                    work = batches(todo, size, threads)
                    _drive(c, plan, store, work, outcome, threads, progress, on_batch, size is None)
    finally:
        if pool is not None:
            pool.close(kill=True)
    outcome.wall_time = time.perf_counter() - start
    return outcome


def _record(plan: SweepPlan, store: SweepStore, finished: Sequence[tuple[list[Run], Sequence[Mapping[str, Any]]]],
            outcome: SweepOutcome, bar: _ProgressBar, on_batch: ProgressHook | None, total: int,
            run_start: float) -> None:
    """Write the rows of finished batches as one part, and count them."""
    rows = []
    for batch, results in finished:
        by_id = {res["run_id"]: res for res in results}
        rows += [_row(plan, r, by_id.get(r.run_id) or _error_row(r.run_id, RuntimeError("no result")))
                 for r in batch]
    if not rows:
        return
    store.write(rows)
    failed = sum(row["status"] == "error" for row in rows)
    outcome.completed += len(rows)
    outcome.failed += failed
    outcome.certified += sum(bool(row.get("certified")) for row in rows)
    outcome.run_time = time.perf_counter() - run_start
    bar.update(len(rows), failed)
    if on_batch is not None:
        on_batch(outcome.completed, outcome.failed, total)


def _drive_local(pool: LocalPool, plan: SweepPlan, store: SweepStore, work: list[list[Run]], outcome: SweepOutcome,
                 workers: int, progress: bool | None, on_batch: ProgressHook | None, top_up: bool) -> None:
    """Send batches to the local worker processes (two per worker in flight), wait for them (blocking), write what
    has finished as one part, show progress.

    A worker that dies breaks the pool, and every batch in flight fails: their runs become *suspects* (the culprit
    may be any of them).  Once nothing is in flight, the pool is restarted and the suspects run again as
    :class:`_Isolation` says; a run whose worker dies while it runs alone is recorded as failed (``WorkerDied``).
    Ctrl-C stops the sweep: the workers are ended, the runs in flight run again on resume.
    With ``top_up`` (automatic batch sizes) batches of cheap runs are topped up (:class:`_Queue`).
    """
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    base = plan.spec.base
    total = sum(len(b) for b in work)
    queue = _Queue(work, top_up, workers)
    isolation = _Isolation()
    in_flight: dict[Any, list[Run]] = {}
    broken = False
    bar = _ProgressBar(total, outcome.skipped, enabled=progress)
    run_start = time.perf_counter()
    limit = 2 * workers

    def submit(batch: list[Run]) -> Any:
        """The batch's future, or None when the pool is found broken (a worker died since the last wait)."""
        nonlocal broken
        payload = [(r.run_id, r.overrides, r.problem, plan.spec.verifies(r.run_id)) for r in batch]
        try:
            fut = pool.submit(run_batch, base, payload)
        except BrokenProcessPool:
            broken = True
            return None
        in_flight[fut] = batch
        return fut

    def refill() -> None:
        nonlocal broken
        while True:
            if broken:  # (a worker died: wait for the tasks in flight to fail, then restart the pool)
                if in_flight:
                    return
                pool.restart()
                broken = False
            if isolation.fill(submit, queue, in_flight, limit):
                return

    try:
        refill()  # (the workers are forked here, before the progress bar starts its thread)
        with bar:
            while in_flight:
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                finished = []
                for fut in done:
                    batch = in_flight.pop(fut)
                    try:
                        finished.append((batch, fut.result()))
                        queue.observe(finished[-1][1])
                    except BrokenProcessPool:
                        broken = True
                        if isolation.died(fut, batch):  # its worker died with nothing else running
                            finished.append((batch, [_error_row(batch[0].run_id, WorkerDied(
                                "the worker process died while running this run alone (a crash, or out of memory)"
                            ))]))
                    except Exception as exc:  # the task itself failed (e.g. its arguments could not be pickled)
                        finished.append((batch, [_error_row(r.run_id, exc) for r in batch]))
                    isolation.finished(fut)
                _record(plan, store, finished, outcome, bar, on_batch, total, run_start)
                refill()
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        for fut in in_flight:
            fut.cancel()
    outcome.run_time = time.perf_counter() - run_start
    outcome.num_batches, outcome.batch_size = queue.submitted, queue.largest


class WorkerDied(RuntimeError):
    """A worker process of the local executor died while running a run alone."""


def _drive(client: Client, plan: SweepPlan, store: SweepStore, work: list[list[Run]], outcome: SweepOutcome,
           threads: int, progress: bool | None, on_batch: ProgressHook | None, top_up: bool) -> None:
    """Submit batches (a bounded number in flight), write the ones finished when it wakes as one part, show progress.

    When a task fails with :class:`distributed.KilledWorker` (its worker died: a crash, or out of memory), its runs
    run again as :class:`_Isolation` says; a run that kills its worker while it runs alone on the cluster is recorded
    as failed.  A cancelled task or a lost connection to the scheduler stops the sweep without recording anything for
    the runs in flight (they run again on resume).  With
    ``top_up`` (automatic batch sizes) batches of cheap runs are topped up (:class:`_Queue`).
    """
    from concurrent.futures import CancelledError

    from distributed import KilledWorker, as_completed

    base = plan.spec.base
    total = sum(len(b) for b in work)
    queue = _Queue(work, top_up, threads)
    counter = iter(range(sys.maxsize))
    isolation = _Isolation()
    in_flight: dict[Any, list[Run]] = {}
    bar = _ProgressBar(total, outcome.skipped, enabled=progress)
    run_start = time.perf_counter()
    limit = max(2, 2 * threads + 2)

    def submit(batch: list[Run], ac: Any) -> Any:
        payload = [(r.run_id, r.overrides, r.problem, plan.spec.verifies(r.run_id)) for r in batch]
        key = f"lcnflow-batch-{next(counter)}-{batch[0].run_id}-{len(batch)}"
        fut = client.submit(run_batch, base, payload, pure=False, key=key)
        in_flight[fut] = batch
        if ac is not None:
            ac.add(fut)
        return fut

    def refill(ac: Any = None) -> None:
        isolation.fill(lambda batch: submit(batch, ac), queue, in_flight, limit)

    refill()
    ac = as_completed(list(in_flight))
    try:
        with bar:
            for done in ac.batches():  # (every task finished since the last wake: one part)
                finished, lost = [], None
                for fut in done:
                    batch = in_flight.pop(fut)
                    try:
                        results = fut.result()
                    except KilledWorker as exc:  # (the culprit: it killed its worker with nothing else running)
                        results = [_error_row(batch[0].run_id, exc)] if isolation.died(fut, batch) else None
                    except (CancelledError, OSError) as exc:
                        lost, results = lost or exc, None
                    except Exception as exc:  # the task itself failed (e.g. it could not be unpickled on the worker)
                        results = [_error_row(r.run_id, exc) for r in batch]
                    isolation.finished(fut)
                    fut.release()
                    if results is not None:
                        queue.observe(results)
                        finished.append((batch, results))
                _record(plan, store, finished, outcome, bar, on_batch, total, run_start)
                if lost is not None:
                    raise SweepError(
                        f"scheduler: lost the tasks in flight ({type(lost).__name__}: {lost}); the finished runs are "
                        "saved — rerun the same command to resume"
                    ) from None
                refill(ac)
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        for fut in in_flight:
            fut.cancel()
    outcome.run_time = time.perf_counter() - run_start
    outcome.num_batches, outcome.batch_size = queue.submitted, queue.largest


class _ProgressBar:
    """Live bar (rich) with runs done / failed / rate / ETA; a no-op unless enabled (default: stderr is a TTY)."""

    def __init__(self, total: int, skipped: int, enabled: bool | None):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self.total, self.skipped = total, skipped
        self.done = self.failed = 0
        self.start = time.perf_counter()
        self.progress: Any = None

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

            self.progress = Progress(SpinnerColumn(), TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), console=self.console, transient=False)
            self.progress.start()
            note = f" (+{self.skipped} done before)" if self.skipped else ""
            self.task = self.progress.add_task("sweep", total=self.total, info=f"starting{note}")
        return self

    def update(self, n: int, failed: int) -> None:
        self.done += n
        self.failed += failed
        if self.progress is None:
            return
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        eta_text = "—" if not math.isfinite(eta) else time.strftime("%H:%M:%S", time.gmtime(eta))
        fail = f"[red]{self.failed} failed[/]" if self.failed else "0 failed"
        self.progress.update(self.task, completed=self.done,
                             info=f"{fail} · {rate:.3g} runs/s · ETA {eta_text}")

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
