"""Sweeps: thousands of gradient-flow runs over a grid of configs, batched on Dask, resumable, summarized.

::

    import lcnflow

    outcome = lcnflow.sweep("sweep.toml", out="results")      # the module is callable: runs (or resumes) it
    summary = lcnflow.sweep.summarize("results")              # per-cell table, figures, results/summary.html
    table = lcnflow.sweep.read_results("results")             # pyarrow.Table, one row per run

The same from the command line: ``lcnflow sweep sweep.toml --out results`` and ``lcnflow summarize results``.

* :mod:`~lcnflow.sweep.grid` — sweep files (a base config plus ``[grid]``), expansion and validation, run ids;
* :mod:`~lcnflow.sweep.store` — the Parquet dataset, written one atomic part per batch, and resume;
* :mod:`~lcnflow.sweep.execute` — batches on dask.distributed (a local cluster, or ``scheduler=``/``client=``);
* :mod:`~lcnflow.sweep.summary` — outcomes per cell, figures, ``summary.html`` (:func:`summarize`).

Layering: this package builds on :mod:`lcnflow.experiments`; nothing below imports it, and importing it does not
import Dask (that happens when a sweep runs).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from lcnflow.sweep.execute import SweepOutcome, batches, run_batch, run_sweep
    from lcnflow.sweep.grid import Dimension, Run, SweepError, SweepPlan, SweepSpec, expand, load_sweep, sweep_from_dict
    from lcnflow.sweep.store import SweepStore, read_results, read_sweep_info
    from lcnflow.sweep.summary import OUTCOMES, SweepSummary, distinct_limits, outcomes, summarize

#: Public name → submodule defining it.  Loaded on first access, so ``import lcnflow.sweep.cli`` (what the main
#: command line does to register ``sweep`` and ``summarize``) stays light: no pyarrow, Dask or Matplotlib.  (The
#: summaries live in ``summary.py``, not ``summarize.py``, so that importing that submodule cannot replace the
#: function ``lcnflow.sweep.summarize`` by a module of the same name.)
_EXPORTS = {
    "SweepOutcome": "execute", "batches": "execute", "run_batch": "execute", "run_sweep": "execute",
    "Dimension": "grid", "Run": "grid", "SweepError": "grid", "SweepPlan": "grid", "SweepSpec": "grid",
    "expand": "grid", "load_sweep": "grid", "sweep_from_dict": "grid",
    "SweepStore": "store", "read_results": "store", "read_sweep_info": "store",
    "OUTCOMES": "summary", "SweepSummary": "summary", "distinct_limits": "summary", "outcomes": "summary",
    "summarize": "summary",
}
_SUBMODULES = ("cli", "execute", "grid", "store", "summary")

__all__ = [
    "OUTCOMES",
    "Dimension",
    "Run",
    "SweepError",
    "SweepOutcome",
    "SweepPlan",
    "SweepSpec",
    "SweepStore",
    "SweepSummary",
    "batches",
    "distinct_limits",
    "expand",
    "load_sweep",
    "outcomes",
    "read_results",
    "read_sweep_info",
    "run_batch",
    "run_sweep",
    "summarize",
    "sweep",
    "sweep_from_dict",
]


def __getattr__(name: str) -> Any:
    if name == "sweep":  # ``lcnflow.sweep.sweep(...)``: the same as calling the module
        name = "run_sweep"
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_SUBMODULES, "sweep"])


class _CallableModule(types.ModuleType):
    """Makes ``lcnflow.sweep(...)`` run a sweep while ``lcnflow.sweep.summarize`` etc. stay module attributes."""

    def __call__(self, *args: Any, **kwargs: Any) -> SweepOutcome:
        """Run (or resume) a sweep: :func:`lcnflow.sweep.execute.run_sweep`."""
        from lcnflow.sweep.execute import run_sweep

        return run_sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
