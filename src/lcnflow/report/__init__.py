"""Reports of finished runs: publication-quality figures (Matplotlib, Agg) and a self-contained HTML page.

:func:`build_report` reads a run directory (``result.json``, ``trajectory.npz``, ``config.toml`` — written by
:meth:`lcnflow.experiments.ExperimentRun.save`) and writes ``report.html`` with every figure embedded, plus
``figures/<name>.png`` and ``.svg``.  It needs nothing but those files, so ``lcnflow report DIR`` rebuilds the
report of any finished run.  :func:`load_run` reads the files: ``result.json`` as a typed
:class:`~lcnflow.record.RunRecord` (its schema is :mod:`lcnflow.record`).  :func:`plot_result` draws an in-memory
:class:`~lcnflow.FlowResult` instead.
"""

from lcnflow.record import RunRecord
from lcnflow.report.figures import FIGURES, STYLE, RunData, plot_result, polynomial_roots, shared_roots
from lcnflow.report.html import ReportError, build_report, load_run

__all__ = ["FIGURES", "STYLE", "ReportError", "RunData", "RunRecord", "build_report", "load_run", "plot_result",
           "polynomial_roots", "shared_roots"]
