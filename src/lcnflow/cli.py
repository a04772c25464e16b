"""The ``lcnflow`` command line: run experiments, check data, describe architectures, build reports.

::

    lcnflow run [CONFIG.toml] [--out DIR] [--json] [--quiet] [--set key=value …]
    lcnflow check-data [CONFIG.toml] [--set key=value …] [--json]
    lcnflow describe [CONFIG.toml] [--set key=value …] [--json]
    lcnflow report DIR
    lcnflow sweep SWEEP.toml --out DIR [--workers N | --scheduler ADDRESS] [--batch-size B] [--dry-run] [--quiet]
    lcnflow summarize DIR [--no-html] [--json]

Without a CONFIG, commands use the built-in default experiment.  Exit codes: 0 success (whether or not the run
converged: the verdict is data, not an error), 2 bad input (the message names the field), 1 internal error
(``LCNFLOW_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from lcnflow import __version__
from lcnflow._files import atomic_write
from lcnflow.cli_support import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    BadInput,
    LcnflowGroup,
    console,
    guard,
    run_app,
)
from lcnflow.record import ArchitectureSummary, RunRecord, Timings, is_run_record
from lcnflow.sweep.cli import register as register_sweep_commands

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_OK", "BadInput", "app", "main"]

app = typer.Typer(
    name="lcnflow",
    cls=LcnflowGroup,
    help="Linear convolutional networks trained by gradient flow: certified, classified limits.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

@contextmanager
def _input_phase() -> Iterator[None]:
    """Turn the library's input errors (``ValueError`` with a field-naming message, missing files) into BadInput."""
    try:
        yield
    except (ValueError, OSError) as exc:
        raise BadInput(str(exc)) from exc


def _console(stderr: bool = False) -> Console:
    return console(stderr)


def _stderr() -> Console:
    return console(stderr=True)


_guard = guard


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lcnflow {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Linear convolutional networks trained by gradient flow: certified, classified limits."""


ConfigArg = Annotated[
    str | None,
    typer.Argument(metavar="CONFIG", help="TOML config file; without it, the built-in default experiment.",
                   show_default=False),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a config key, e.g. --set architecture.filter_sizes=[3,3] (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON to stdout and nothing else.")]
SvgOpt = Annotated[bool, typer.Option("--svg", help="Also write the figures as SVG (slower).")]


def _load(config: str | None, overrides: list[str] | None):
    from lcnflow.experiments import load_config

    with _input_phase():
        return load_config(config, overrides or [])


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _notes(console: Console, notes: list[str]) -> None:
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}")


# ---------------------------------------------------------------------------------------------------- run
@app.command()
@_guard
def run(
    config: ConfigArg = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", metavar="DIR", help="Write result.json, trajectory.npz, config.toml, report.html and "
        "figures/ into DIR (replacing those of an earlier run there; other files in DIR are kept).")] = None,
    json_output: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary (errors only).")] = False,
    set_: SetOpt = None,
    svg: SvgOpt = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace the contents of --out DIR even if it is not an lcnflow run.")] = False,
    verify: Annotated[bool, typer.Option(
        "--verify", help="Re-integrate at 100x tighter tolerances and say whether the limit is the same "
        "(same as --set flow.verify=true).")] = False,
) -> None:
    """Run an experiment (the built-in default without CONFIG) and print its verdict."""
    from lcnflow.experiments import execute, prepare

    cfg = _load(config, [*(set_ or []), "flow.verify=true"] if verify else set_)
    if out is not None:
        out = Path(os.path.abspath(out))  # "." and "a/.." name a directory that can be replaced as a whole
        _check_out_name(out)
        if out.is_symlink():  # a link to the run's folder: the run goes into that folder, the link stays
            out = out.resolve()
    staging = _stage_out(out, overwrite) if out is not None else None
    try:
        with _first_run_on_numpy() as background:
            _run(cfg, config, out, staging, json_output, quiet, svg, execute, prepare, background)
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _first_run_on_numpy() -> Iterator[bool]:
    """The first run in an environment: where Numba's cache does not yet hold lcnflow's compiled code, start its
    build in a background process and run on the NumPy reference path meanwhile (yields ``True``); otherwise yield
    ``False`` and change nothing (see :mod:`lcnflow.dynamics.compile_cache`)."""
    from lcnflow import kernels
    from lcnflow.dynamics.compile_cache import start_background_build

    background = start_background_build()  # (False where the code is ready or nothing can be cached)
    if not background:
        yield False
        return
    kernels.ENABLED = False
    try:
        yield True
    finally:
        kernels.ENABLED = True


def _run(cfg: Any, config: str | None, out: Path | None, staging: Path | None, json_output: bool, quiet: bool,
         svg: bool, execute: Callable[..., Any], prepare: Callable[..., Any], background: bool = False) -> None:
    err = _stderr()
    with _input_phase():
        exp = prepare(cfg)
    show = not (quiet or json_output)
    if show:
        _notes(err, exp.notes)
    n_notes = len(exp.notes)
    if show and err.is_terminal:
        with _progress(err, exp) as callback:
            result = execute(exp, callback=callback)
    else:
        result = execute(exp)
    if show:
        _notes(err, result.notes[n_notes:])
    record = result.record()
    if background:
        record = dataclasses.replace(record, timings=dataclasses.replace(record.timings, compiled_in_background=True))
    failure = None
    if out is not None and staging is not None:
        try:
            if show and err.is_terminal:
                with err.status("writing result.json, report.html and figures/ …"):
                    result.save(staging, record, formats=("png", "svg") if svg else ("png",))
            else:
                result.save(staging, record, formats=("png", "svg") if svg else ("png",))
            _replace_dir(staging, out)
        except OSError as exc:
            kept = (f"the earlier contents of {out} are unchanged" if out.is_dir() and any(out.iterdir())
                    else f"nothing was written to {out}")
            shown = "" if quiet else " The verdict is printed on stdout;"
            failure = (f"--out: cannot write the run into {out} ({exc.strerror or exc}); {kept}.{shown} free space "
                       "or choose another directory and rerun")
            out = None
    if json_output:
        _print_json(record.to_json_dict())
    elif not quiet:
        _summary(_console(), record, config, out)
    if failure is not None:
        raise BadInput(failure)


def _is_run_dir(directory: Path) -> bool:
    """Whether ``directory`` holds an lcnflow run (a ``result.json`` of format ``lcnflow-run/1``)."""
    try:
        record = json.loads((directory / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return is_run_record(record)


def _check_out_name(out: Path) -> None:
    """Refuse an ``--out`` with a name longer than the file system allows (exit 2, naming it)."""
    try:
        name_max = os.pathconf("/", "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in out.parts:
        if len(os.fsencode(part)) > name_max:
            raise BadInput(f"--out: the name {part[:40]}… is {len(os.fsencode(part))} bytes long, more than the "
                           f"{name_max} the file system allows for one name; choose a shorter one")


def _stage_out(out: Path, overwrite: bool) -> Path:
    """Check ``--out`` before anything runs and create the temporary directory the run is written into.

    The run is written into a hidden directory beside ``out`` and renamed into place when complete, so ``out`` holds
    either the earlier contents or the whole new run, never a mixture.  Refused (exit 2): ``out`` is a file; ``out``
    is a non-empty directory that is not an lcnflow run (unless ``overwrite``); its parent cannot be written.
    """
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out: {out} exists and is not a directory; give a directory for the run's files")
    if out.is_dir() and not overwrite and not _is_run_dir(out):
        try:
            entries = sorted(p.name for p in out.iterdir())
        except OSError as exc:
            raise BadInput(f"--out: cannot read the directory {out}: {exc.strerror or exc}") from None
        if entries:
            shown = ", ".join(entries[:5]) + (", …" if len(entries) > 5 else "")
            raise BadInput(f"--out: {out} is not empty and is not an lcnflow run (no result.json of an lcnflow "
                           f"run; found {shown}); give a new or empty directory, or --overwrite to replace its "
                           "contents")
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name[:64]}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise BadInput(f"--out: cannot write in {parent} ({exc.strerror or exc}); choose a writable "
                       "directory") from None
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    return staging


#: What ``lcnflow run --out DIR`` writes into DIR; every other entry of an earlier run's DIR is the user's.
RUN_OUTPUTS = frozenset({"result.json", "trajectory.npz", "config.toml", "report.html", "figures"})


def _replace_dir(staging: Path, out: Path) -> None:
    """Move the complete run in ``staging`` to ``out``, replacing what an earlier lcnflow run wrote there
    (:data:`RUN_OUTPUTS`) as a whole.  Other entries of an earlier run's directory (files the user put there) are
    kept, moved unchanged into the new one; only a directory that is not an lcnflow run, replaced with
    ``--overwrite``, loses them (the user asked for it)."""
    if not out.exists():
        os.rename(staging, out)
        return
    keep = _is_run_dir(out)
    try:
        cwd = Path.cwd()
    except OSError:
        cwd = None
    if cwd is not None and (cwd == out or out in cwd.parents):
        # the directory we stand in (``--out .``): keep it and replace its contents instead, entry by entry
        old = out / f".lcnflow-old-{os.getpid()}-{time.monotonic_ns()}"
        old.mkdir()
        for entry in list(out.iterdir()):
            if entry != old and (not keep or entry.name in RUN_OUTPUTS):
                os.rename(entry, old / entry.name)
        for entry in list(staging.iterdir()):
            os.rename(entry, out / entry.name)
        shutil.rmtree(old, ignore_errors=True)
        staging.rmdir()
        return
    carried: list[str] = []
    old = out.absolute().parent / f".{out.name[:64]}.old-{os.getpid()}-{time.monotonic_ns()}"
    try:
        if keep:  # the user's files go along into the new directory, unchanged (a rename, not a copy)
            for entry in sorted(out.iterdir()):
                if entry.name not in RUN_OUTPUTS:
                    os.rename(entry, staging / entry.name)
                    carried.append(entry.name)
        os.rename(out, old)
        os.rename(staging, out)
    except OSError:
        if old.exists() and not out.exists():
            os.rename(old, out)
        for name in carried:  # back where they were
            if (staging / name).exists() or (staging / name).is_symlink():
                os.rename(staging / name, out / name)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _progress(console: Console, exp: Any) -> Iterator[Callable[[float, np.ndarray, float, float], None]]:
    """A transient progress display of the flow time, the risk and the gradient norm, and of the phase a run is in
    between steps (Newton polishing, classification, the search for ℒ*_M, ℒ*: :mod:`lcnflow.analysis.phases`).

    No percentage: a run ends where its limit is certified, and a plateau can last any number of decades of time,
    so there is nothing honest to divide by."""
    from lcnflow.analysis.phases import listening

    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        label = {"gradient_flow": "gradient flow", "gradient_descent": "gradient descent",
                 "sgd": "stochastic gradient descent"}.get(exp.config.flow.method, exp.config.flow.method)
        task = progress.add_task(label, total=None, info="")
        last = [0.0]

        def callback(t: float, w: np.ndarray, loss: float, gnorm: float) -> None:
            """Update the display at most 20 times a second (``loss`` may be NaN between evaluations)."""
            now = time.monotonic()
            if now - last[0] < 0.05:
                return
            last[0] = now
            shown = f"L = {loss:.6g}  " if math.isfinite(loss) else ""
            state[0] = f"t = {t:.3g}  {shown}‖∇L‖ ≈ {gnorm:.2e}"
            progress.update(task, description=label, info=state[0])

        def phase(name: str) -> None:
            """Name the phase at once (it may last long, with no step to show); the last flow state stays."""
            progress.update(task, description=f"{label} · {name} …", info=state[0])

        state = [""]
        with listening(phase):
            yield callback


def _yes(flag: Any, yes: str = "yes", no: str = "no") -> str:
    return {True: f"[green]{yes}[/]", False: f"[red]{no}[/]"}.get(flag, "[yellow]unknown[/]")


def _num(x: Any, spec: str) -> str:
    """``x`` formatted with ``spec``; ``None`` (a non-finite number in a run record) is shown as "non-finite"."""
    if x is None:
        return "non-finite"
    return format(x, spec)


def _compile_part(timings: Timings) -> str:
    """The time line's compile part: Numba compiling the kernels (the first run in an environment; cached for the
    next ones) or loading them from its cache; nothing for a record without it."""
    seconds = timings.compile_seconds
    if timings.compiled_in_background:
        return " (NumPy path; compiled code being built in the background for later runs)"
    if seconds is None:
        return ""
    if timings.compilations:
        return f" + {_num(seconds, '.2f')} s compile (cached for later runs)"
    return f" + {_num(seconds, '.2f')} s loading compiled code"


def _channels_text(arch: ArchitectureSummary) -> str:
    """``, c = 2 → 4 → 1`` for an architecture with channels, else nothing."""
    return f", c = {' → '.join(str(c) for c in arch.channels)}" if arch.multichannel else ""


def _size(k: Any) -> str:
    return "×".join(str(v) for v in k) if isinstance(k, list | tuple) else str(k)


def _summary(console: Console, rec: RunRecord, config: str | None, out: Path | None) -> None:
    from lcnflow.dynamics.result import lojasiewicz_caveat

    arch, loss, data, res, verdict = rec.architecture, rec.loss, rec.data, rec.result, rec.verdict
    cond, hyp = data.condition, rec.hypotheses
    cp = res.critical_point
    origin = "built-in default" if config is None else config
    if config is None and rec.name != "mnist1d-deblur":
        origin = "built-in default with --set overrides"
    console.print(f"[bold]lcnflow run[/] · {escape(rec.name)} ({escape(origin)})")
    if rec.description:
        console.print(escape(rec.description), style="dim")
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    t.add_row("architecture",
              f"{arch.ndim}D, {arch.depth} layers: k = ({', '.join(_size(k) for k in arch.filter_sizes)}), "
              f"s = ({', '.join(_size(s) for s in arch.strides)}), d = "
              f"{' → '.join(_size(d) for d in arch.layer_sizes)}{_channels_text(arch)}")
    t.add_row("", f"final filter k_v = {_size(arch.final_filter_size)}, s_v = {_size(arch.final_stride)}; "
                  f"P = {arch.num_params}, dim M = {arch.function_space_dim}; filling: "
                  f"{_yes(arch.filling)}")
    params = ", ".join(f"{k} = {_num(v, 'g')}" for k, v in loss.params.items())
    t.add_row("loss", f"{loss.name}{f' ({params})' if params else ''}: {escape(loss.description)}")
    t.add_row("data", escape(data.description))
    ratio = 0.0 if cond.condition_number is None else 1.0 / cond.condition_number
    t.add_row("data condition", f"{_yes(cond.satisfied, 'holds', 'fails')}: rank H = {cond.rank} of "
                                f"k_v = {cond.final_filter_size}, σ_min/σ_max = {_num(ratio, '.3g')}")
    t.add_row("theorem", f"{_yes(hyp.covered, 'covered', 'not covered')}: {escape(hyp.consequence)}")
    for failure in hyp.failures:
        t.add_row("", f"[red]✗[/] {escape(failure)}")
    t.add_row("solver", f"{rec.solver.method.replace('_', ' ')} — {escape(res.integrator or rec.solver.integrator)}")
    certificate = (f"‖∇L‖ = {_num(res.flow_gradient_norm, '.2e')} at stop, "
                   f"{_num(res.gradient_norm, '.2e')} after polishing "
                   f"(moved {_num(res.polish_distance, '.2g')}); invariant drift "
                   f"{_num(res.invariant_drift, '.2g')}; arc length {_num(res.arc_length, '.4g')}")
    theta = res.lojasiewicz_exponent
    if theta is not None:
        certificate += f"; Łojasiewicz θ ≈ {_num(theta, '.2f')}"
        if caveat := lojasiewicz_caveat(theta):
            certificate += f" ({caveat})"
    if res.method == "sgd":  # SGD with a constant step keeps moving: its endpoint is polished, not a limit
        t.add_row("endpoint", (f"polished to a certified critical point — SGD's last iterate is not a limit: "
                               f"{certificate}") if res.certified else
                  (f"{_yes(False, no='not certified')} — no certified critical point next to SGD's last iterate "
                   f"(‖∇L‖ = {_num(res.flow_gradient_norm, '.2e')}); invariant drift "
                   f"{_num(res.invariant_drift, '.2g')}, arc length {_num(res.arc_length, '.4g')}"))
    elif res.converged:
        t.add_row("converged", f"{_yes(True)}, certified: {_yes(res.certified)} — {certificate}")
    else:
        t.add_row("converged", f"{_yes(False)} — invariant drift {_num(res.invariant_drift, '.2g')}, "
                               f"arc length {_num(res.arc_length, '.4g')}")
    t.add_row("", escape(res.message.split(";")[0]))
    style = "green" if verdict.kind == "global_minimum" and verdict.certified else (
        "red" if not verdict.converged else "yellow")
    t.add_row("limit", f"[{style}]{escape(verdict.headline)}[/]")
    for d in verdict.degeneracies:
        t.add_row("", f"· {escape(d)}")
    if verdict.nearest_critical_point:
        t.add_row("", f"· nearest critical point found (not the limit): {escape(verdict.nearest_critical_point)}")
    if verdict.limit_verified is not None:
        t.add_row("verified", _yes(verdict.limit_verified, "same limit at 100× tighter tolerances",
                                   "a DIFFERENT limit at 100× tighter tolerances"))
    for i, plateau in enumerate(verdict.itinerary):
        t.add_row("itinerary" if i == 0 else "", f"plateau {escape(plateau)}")
    if cp is not None and cp.spurious:
        t.add_row("", f"· {escape(cp.spurious_reason)}")
    t.add_row("optimum", escape(verdict.comparison))
    timings = rec.timings
    t.add_row("time", f"t = {_num(res.t_final, '.4g')} (flow time), {res.num_steps} steps, "
                      f"{res.num_gradient_evaluations} gradients, {res.num_hessian_evaluations} Hessians; "
                      f"{_num(timings.flow_seconds, '.2f')} s flow + "
                      f"{_num(timings.build_seconds, '.2f')} s data{_compile_part(timings)}")
    if out is not None:
        t.add_row("files", f"{escape(str(out))}/: result.json, trajectory.npz, config.toml, report.html, figures/")
    console.print(t)


# ---------------------------------------------------------------------------------------------------- check-data
@app.command("check-data")
@_guard
def check_data_command(config: ConfigArg = None, set_: SetOpt = None, json_output: JsonOpt = False) -> None:
    """Check the data condition (rank H = k_v) and the convergence theorem's hypotheses; nothing is integrated."""
    from lcnflow.experiments import check_data, prepare

    cfg = _load(config, set_)
    with _input_phase():
        exp = prepare(cfg)
    report = check_data(exp)
    if json_output:
        _print_json(report)
        return
    console = _console()
    _notes(_stderr(), exp.notes)
    data, hyp = report["data"], report["hypotheses"]
    cond = data["condition"]
    console.print(f"[bold]lcnflow check-data[/] · {escape(report['name'])}")
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    t.add_row("data", escape(data["description"]))
    t.add_row("shapes", f"m = {data['num_samples']}, inputs {_size(data['input_shape'])}, "
                        f"targets {_size(data['target_shape'])}")
    ratio = 0.0 if cond["condition_number"] is None else 1.0 / cond["condition_number"]
    t.add_row("rank H = k_v", f"{_yes(cond['satisfied'])}: rank {cond['rank']} of {cond['final_filter_size']} "
                              f"({cond['num_equations']} equations), "
                              f"σ_min = {_num(cond['smallest_singular_value'], '.3g')}, "
                              f"σ_max = {_num(cond['largest_singular_value'], '.3g')}, "
                              f"σ_min/σ_max = {_num(ratio, '.3g')}")
    t.add_row("rank X = d_0", f"{_yes(cond['inputs_full_row_rank'])}: {cond['inputs_rank']} of {cond['input_dim']} "
                              "(classical, stronger)")
    t.add_row("", escape(cond["explanation"]))
    t.add_row("analytic loss", _yes(hyp["analytic_loss"]))
    t.add_row("coercive loss", _yes(hyp["coercive_loss"]))
    t.add_row("theorem", f"{_yes(hyp['covered'], 'covered', 'not covered')}: {escape(hyp['consequence'])}")
    for failure in hyp["failures"]:
        t.add_row("", f"[red]✗[/] {escape(failure)}")
    console.print(t)


# ---------------------------------------------------------------------------------------------------- compare
#: ``format`` of the compare.json that ``lcnflow compare --out`` writes.
COMPARE_FORMAT = "lcnflow-compare/1"


def _check_compare_out(out: Path) -> None:
    """Refuse (exit 2, before anything runs) an ``--out`` whose compare.json / compare.png lcnflow did not write."""
    _check_out_name(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out: {out} exists and is not a directory; give a directory for compare.json and "
                       "compare.png")
    record_path, figure = out / "compare.json", out / "compare.png"
    ours = False
    if record_path.exists():
        try:
            ours = json.loads(record_path.read_text(encoding="utf-8")).get("format") == COMPARE_FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise BadInput(f"--out: {record_path} exists and was not written by lcnflow compare; it is left as it "
                           "is: choose another directory, or move the file away")
    if figure.exists() and not ours:
        raise BadInput(f"--out: {figure} exists and was not written by lcnflow compare (no compare.json of "
                       "lcnflow beside it); it is left as it is: choose another directory, or move the file away")


@app.command()
@_guard
def compare(
    config: ConfigArg = None,
    set_: SetOpt = None,
    step_size: Annotated[float, typer.Option("--step-size", help="η of gradient descent and SGD.")] = 0.003,
    batch_size: Annotated[int, typer.Option("--batch-size", help="B: samples per SGD step.")] = 8,
    epochs: Annotated[int, typer.Option("--epochs", help="SGD's budget in passes over the data.")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Seed of SGD's minibatches.")] = 0,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", metavar="DIR", help="Write compare.json and compare.png (loss curves of the three methods, "
        "distance of the iterates to the flow) into DIR (replacing those of an earlier lcnflow compare).")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Gradient flow, gradient descent and SGD from the same initialization: where does each end?"""
    from lcnflow.experiments import prepare
    from lcnflow.experiments.compare import compare_methods
    from lcnflow.experiments.runner import jsonable

    cfg = _load(config, set_)
    if out is not None:
        _check_compare_out(out)
    with _input_phase():
        exp = prepare(cfg)
        result = compare_methods(exp.risk, exp.init, step_size, batch_size, epochs=epochs, seed=seed)
    record = {"format": COMPARE_FORMAT, **jsonable(result.to_dict())}
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
            png = io.BytesIO()
            import matplotlib.pyplot as plt

            plt.close(result.plot(png))  # (an open figure would outlive the command)
            # the figure first, the record last: a compare.json of this format always comes with its figure
            atomic_write(out / "compare.png", png.getvalue())
            atomic_write(out / "compare.json", json.dumps(record, indent=1, allow_nan=False))
        except OSError as exc:
            raise BadInput(f"--out: cannot write into {out} ({exc.strerror or exc}); the files there are "
                           "unchanged or complete") from None
    if json_output:
        _print_json(record)
        return
    console = _console()
    console.print(f"[bold]lcnflow compare[/] · {escape(cfg.name)}: the same w(0), η = {step_size:g}, SGD batch "
                  f"B = {batch_size}, {epochs} epochs")
    table = Table(show_edge=False, header_style="bold")
    for name in ("method", "outcome", "L", "same limit as the flow", "max ‖w_k − w(t_k)‖", "polish moved"):
        table.add_column(name)
    for row in result.table():
        table.add_row(escape(row["method"]), row["outcome"].replace("_", " "), f"{row['loss']:.8g}",
                      _yes(row["same_limit_as_flow"]), f"{row['max_distance_to_flow']:.3g}",
                      f"{row['polish_distance']:.2g}")
    console.print(table)
    if out is not None:
        console.print(f"files: {escape(str(out))}/compare.json, compare.png")


# ---------------------------------------------------------------------------------------------------- describe
@app.command()
@_guard
def describe(config: ConfigArg = None, set_: SetOpt = None, json_output: JsonOpt = False) -> None:
    """Describe the architecture: sizes per layer, final filter, parameters, function space, filling."""
    from lcnflow.experiments import architecture_summary

    cfg = _load(config, set_)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        arch = cfg.architecture.build()
    info = architecture_summary(arch)
    if json_output:
        _print_json(info)
        return
    console = _console()
    console.print(f"[bold]lcnflow describe[/] · {escape(cfg.name)}: {info['ndim']}D linear convolutional network, "
                  f"{info['depth']} layer(s)")
    table = Table(show_edge=False, header_style="bold")
    cs = info.get("channels", [])
    wide = any(c != 1 for c in cs)
    for name in ("layer", *(("c_in → c_out",) if wide else ()), "filter k", "stride s", "d_in", "d_out", "parameters"):
        table.add_column(name, justify="right")
    for i, row in enumerate(info["layers"]):
        table.add_row(str(row["layer"]), *((f"{cs[i]} → {cs[i + 1]}",) if wide else ()), _size(row["filter_size"]),
                      _size(row["stride"]), _size(row["input_size"]), _size(row["output_size"]), str(row["num_params"]))
    console.print(table)
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    shape = (f" (shape c_N × c_0 × k_v = {cs[-1]} × {cs[0]} × {_size(info['final_filter_size'])})" if wide else "")
    t.add_row("final filter", f"k_v = {_size(info['final_filter_size'])}, stride s_v = {_size(info['final_stride'])}"
                              f"{shape}")
    t.add_row("parameters", f"P = {info['num_params']}")
    if any(c != 1 for c in info.get("channels", [1])):
        t.add_row("channels", f"{' → '.join(str(c) for c in info['channels'])}; symmetry group of π: "
                              f"∏ GL(c_i) over the hidden signals, dimension Σ c_i² = {info['symmetry_dim']}")
        t.add_row("function space", f"dim M = {info['function_space_dim']} (rank of dπ at a generic point; the final "
                                    f"filter has {info['final_filter_num_params']} coefficients)")
    else:
        t.add_row("function space", f"dim M = P − (N − 1) = {info['function_space_dim']} "
                                    f"(final filter has {info['final_filter_num_params']} coefficients)")
    t.add_row("filling", f"{_yes(info['filling'], 'yes', 'no')}: {escape(info['filling_reason'])}")
    if info["dropped_inputs"]:
        for d in info["dropped_inputs"]:
            t.add_row("dropped inputs", f"layer {d['layer']} drops its last {_size(d['count'])} input(s) "
                                        "(the size rule ⌊(d_in − k)/s⌋ + 1 does not fit exactly)")
    else:
        t.add_row("dropped inputs", "none (every layer fits exactly)")
    console.print(t)


# ---------------------------------------------------------------------------------------------------- report
@app.command()
@_guard
def report(
    directory: Annotated[str, typer.Argument(metavar="DIR", help="A run directory written by `lcnflow run --out`.")],
    svg: SvgOpt = False,
) -> None:
    """(Re)build report.html and figures/ of a finished run."""
    from lcnflow.report import ReportError, build_report

    try:
        path = build_report(directory, ("png", "svg") if svg else ("png",))
    except ReportError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"report: cannot write report.html and figures/ into {directory} "
                       f"({exc.strerror or exc}); the files there are unchanged or complete") from None
    _console().print(f"wrote {escape(str(path))}")


register_sweep_commands(app)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code instead of exiting."""
    return run_app(app, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
