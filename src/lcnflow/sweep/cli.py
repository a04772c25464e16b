"""Command-line front end of sweeps: ``sweep`` and ``summarize``.

::

    lcnflow sweep SWEEP.toml --out DIR [--workers N | --scheduler tcp://host:8786] [--batch-size B] [--dry-run]
    lcnflow summarize DIR [--no-html] [--json]

The commands are plain functions (:func:`sweep_command`, :func:`summarize_command`) registered on a Typer app by
:func:`register`; :data:`app` is a standalone app with both (``python -m lcnflow.sweep …``).  Exit codes as for
``lcnflow run``: 0 success (failed runs are data, not an error), 2 bad input (the message names the field),
1 internal error (``LCNFLOW_DEBUG=1`` shows the traceback), 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lcnflow._signals import interrupt_exit_code
from lcnflow.cli_support import BadInput, LcnflowGroup, console, guard, run_app

__all__ = ["app", "main", "register", "summarize_command", "sweep_command"]

_console = console
#: Bad input of the sweep commands: the library's ``ValueError`` (``SweepError``, ``ConfigError``) and ``OSError``
#: (an unreadable file), whose messages name the field.
_guard = guard(bad_input=(BadInput, ValueError, OSError),
               interrupted="interrupted (finished runs are saved; rerun the command to resume)")


# ---------------------------------------------------------------------------------------------------- sweep
@_guard
def sweep_command(
    sweep_file: Annotated[str, typer.Argument(metavar="SWEEP.toml",
                                              help="Sweep file: an experiment config plus a [grid] of keys to vary.")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR",
                                      help="Results directory (Parquet dataset); an existing one of the same sweep is "
                                           "resumed.")],
    workers: Annotated[int | None, typer.Option("--workers", "-w", min=1, metavar="N",
                                                help="Worker processes on this machine (default: all CPUs).")
                       ] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", metavar="ADDRESS",
                                                  help="Use a running Dask scheduler, e.g. tcp://host:8786.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", "-b", min=1, metavar="B",
                                                   help="Runs per task (default: [sweep] batch_size, else automatic)."
                                                   )] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate the grid and show the plan; run nothing.")
                       ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line.")] = False,
) -> None:
    """Run a sweep (every config of the grid) on this machine's cores or a Dask cluster; resumable, results as Parquet
    in DIR."""
    from lcnflow.sweep.execute import run_sweep
    from lcnflow.sweep.grid import expand, load_sweep

    plan = expand(load_sweep(sweep_file))
    console = _console()
    if not os.environ.get("LCNFLOW_DEBUG"):  # the outcome says what went wrong; Dask's own tracebacks only add noise
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
    if dry_run:
        _show_plan(console, plan, out)
        return
    outcome = run_sweep(plan, out, workers=workers, scheduler=scheduler, batch_size=batch_size,
                        progress=None if not quiet else False)
    if not quiet:
        console.print(escape(outcome.summary()))
        if outcome.completed == 0 and outcome.remaining == 0:
            console.print("nothing to do: every run is already in the directory")
        console.print(f"summarize with: lcnflow summarize {escape(str(out))}")
    if outcome.interrupted:
        raise typer.Exit(interrupt_exit_code())


def _show_plan(console: Console, plan: Any, out: Path) -> None:
    from lcnflow.sweep.store import read_results

    spec = plan.spec
    console.print(f"[bold]lcnflow sweep[/] (dry run) · {len(plan.runs)} runs in {len(plan.cells)} cell(s), "
                  f"{len({r.problem for r in plan.runs})} distinct problem(s); fingerprint {plan.fingerprint}")
    t = Table(show_edge=False, header_style="bold")
    t.add_column("grid key")
    t.add_column("values", justify="right")
    t.add_column("first … last")
    for d in spec.dimensions:
        vals = d.values
        show = json.dumps(vals[0]) if len(vals) == 1 else f"{json.dumps(vals[0])} … {json.dumps(vals[-1])}"
        t.add_row(d.name, str(len(vals)), escape(show))
    console.print(t)
    if (out / "sweep.json").is_file():
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                done = read_results(out, columns=["run_id"]).num_rows
            for w in caught:
                console.print(f"[yellow]warning: {escape(str(w.message))}[/]")
            console.print(f"{out}: {done} run(s) already finished there")
        except ValueError as exc:
            console.print(f"[yellow]{escape(str(exc))}[/]")
    console.print("all cells valid; nothing was run")


# ---------------------------------------------------------------------------------------------------- summarize
@_guard
def summarize_command(
    directory: Annotated[str, typer.Argument(metavar="DIR", help="A sweep directory (lcnflow sweep --out DIR).")],
    no_html: Annotated[bool, typer.Option("--no-html", help="Print the table only; write no files.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the per-cell table as JSON and nothing else; "
                                                "write no files.")] = False,
) -> None:
    """Summarize a sweep: outcomes per grid cell, loss quantiles, time; writes DIR/summary.html and summary.csv
    (not with --no-html or --json)."""
    from lcnflow.sweep.summary import summarize, summary_json

    files = not (no_html or json_output)
    failure = None
    with warnings.catch_warnings():  # (problems with the parts are printed below, one line each)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            summary = summarize(directory, html_file=files, csv_file=files, figures=files)
        except OSError as exc:  # writing summary.html / summary.csv (a full disk): the table is still printed
            failure = (f"summarize: cannot write summary.html and summary.csv into {directory} "
                       f"({exc.strerror or exc}); the files there are unchanged or complete, the table is printed "
                       "above")
            summary = summarize(directory, html_file=False, csv_file=False, figures=False)
    for problem in summary.problems:
        sys.stderr.write(f"warning: {' '.join(problem.split())}\n")
    if json_output:
        sys.stdout.write(json.dumps(summary_json(summary), indent=2, ensure_ascii=False) + "\n")
        if failure is not None:
            raise BadInput(failure)
        return
    console = _console()
    info = summary.info
    console.print(f"[bold]lcnflow summarize[/] · {escape(str(directory))}: {summary.num_finished} of "
                  f"{info['num_runs']} runs finished, {info['num_cells']} cell(s)")
    _print_table(console, summary)
    if failure is not None:
        raise BadInput(failure)
    if summary.html_path is not None:
        console.print(f"wrote {escape(str(summary.html_path))} and {escape(str(summary.csv_path))}")


_SHORT = {"runs": "runs", "pct_converged": "conv %", "pct_certified": "cert %", "pct_global_minimum": "global %",
          "pct_strict_saddle": "saddle %", "pct_local_minimum": "local %",
          "pct_undecided_on_m": "undecided on M %", "pct_uncertified_endpoint": "uncertified %",
          "pct_spurious": "spurious %", "pct_degenerate": "degen %", "pct_unclassified": "unclass %",
          "pct_error": "error %",
          "loss_q50": "L median", "gap_best_median": "L − ℒ*_M med", "pct_best_bound": "ℒ*_M bound %",
          "pct_degenerate_hessian": "degenerate H %",
          "wall_time_median": "time med (s)"}


def _print_table(console: Console, summary: Any) -> None:
    t = summary.table
    cell_keys = summary.info["cell_keys"]
    cols = [*cell_keys, "runs", "pct_converged", "pct_certified", *[f"pct_{o}" for o in summary.shown_outcomes],
            "loss_q50", "gap_best_median", "pct_best_bound", "pct_degenerate_hessian", "wall_time_median"]
    # the gap to ℒ*_M, the best the architecture can do (ℒ* itself for a filling one); whether ℒ*_M is only a
    # best-found bound where some runs' is
    cols = [c for c in cols if c in t.column_names
            and (c not in ("pct_best_bound", "pct_degenerate_hessian")
                 or any(v for v in t.column(c).to_pylist() if v == v))]
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for c in cols:
        name = c.split(".")[-1] if c in cell_keys else _SHORT.get(c, c)
        table.add_column(escape(name), justify="right", no_wrap=c in cell_keys)
    for row in t.to_pylist():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float):
                text = "—" if math.isnan(v) else (f"{v:.1f}" if c.startswith("pct_") else f"{v:.3g}")
            else:
                text = "—" if v is None else (json.dumps(v, separators=(",", ":")) if isinstance(v, list) else str(v))
            cells.append(escape(text))
        table.add_row(*cells)
    console.print(table)


# ---------------------------------------------------------------------------------------------------- apps
def register(target: typer.Typer) -> None:
    """Add the ``sweep`` and ``summarize`` commands to a Typer app (the main ``lcnflow`` CLI)."""
    target.command("sweep")(sweep_command)
    target.command("summarize")(summarize_command)


app = typer.Typer(
    name="lcnflow-sweep",
    cls=LcnflowGroup,
    help="Sweeps of lcnflow experiments (local worker processes or Dask): run a grid of configs, summarize the "
         "outcomes.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the standalone sweep CLI with ``argv``; return the exit code."""
    return run_app(app, argv)
