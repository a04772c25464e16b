"""The HTML report of a run directory: verdict, tables, figures (embedded, and as PNG/SVG files beside it)."""

from __future__ import annotations

import base64
import html
import io
import zipfile
import zlib
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from lcnflow._files import atomic_write
from lcnflow.record import ReportError, RunRecord, read_record
from lcnflow.report.figures import FIGURES, STYLE, RunData

__all__ = ["REQUIRED_ARRAYS", "ReportError", "build_report", "load_run"]


#: Figures this wide (inches) fill the page; narrower ones are shown at the same scale, not blown up.
_FULL_WIDTH_INCHES = 11.0

#: Arrays of ``trajectory.npz`` every report needs (``true_filter`` and ``hessian_eigenvalues`` are optional).
REQUIRED_ARRAYS = ("times", "losses", "gradient_norms", "trajectory", "final_filter_trajectory",
                   "invariants_trajectory", "init", "limit", "final_filter", "optimum_filter", "example_inputs",
                   "example_targets", "example_outputs_init", "example_outputs_limit", "example_outputs_optimum")


def _check_arrays(arrays: dict[str, np.ndarray], record: RunRecord, path: Path) -> None:
    """Refuse ``trajectory.npz`` arrays that are missing, not real numbers, or of sizes that do not fit the record."""
    for name in REQUIRED_ARRAYS:
        if name not in arrays:
            raise ReportError(f"report: {path}: array {name!r} is missing; the file is damaged or not written by "
                              "`lcnflow run`")
    for name, arr in arrays.items():
        if arr.dtype.kind not in "biuf":
            raise ReportError(f"report: {path}: array {name!r} must hold real numbers, got dtype {arr.dtype}")
    n = arrays["times"].shape[0] if arrays["times"].ndim == 1 else -1
    arch = record.architecture
    p, depth = arch.num_params, arch.depth
    width = sum(c * c for c in arch.channels[1:-1]) if arch.multichannel else 0
    expected = {"times": (n,), "losses": (n,), "gradient_norms": (n,), "trajectory": (n, p),
                "invariants_trajectory": (n, width or max(depth - 1, 0)), "init": (p,), "limit": (p,)}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ReportError(f"report: {path}: array {name!r} has shape {arrays[name].shape}, expected {shape} "
                              f"({n} recorded points, {p} parameters); the file is damaged")
    if arrays["final_filter_trajectory"].shape[:1] != (n,):
        shape = arrays["final_filter_trajectory"].shape
        raise ReportError(f"report: {path}: array 'final_filter_trajectory' has shape {shape}, expected {n} rows; "
                          "the file is damaged")


def load_run(run_dir: str | Path) -> RunData:
    """Read and check ``result.json`` and ``trajectory.npz`` of a run directory.

    The record is read with :func:`~lcnflow.record.read_record` (every field of
    :class:`~lcnflow.record.RunRecord` present with its type, fields added later read with their defaults), and the
    arrays of :data:`REQUIRED_ARRAYS` must be present, real and of sizes that fit the record.

    Raises
    ------
    ReportError
        If the directory or a file is missing, unreadable or damaged; the message names the file and the field.
    """
    d = Path(run_dir)
    if not d.is_dir():
        raise ReportError(f"report: {d} is not a directory (give the --out folder of `lcnflow run`)")
    files = {name: d / name for name in ("result.json", "trajectory.npz")}
    for path in files.values():
        if not path.is_file():
            raise ReportError(f"report: {path} is missing; {d} is not a finished run (run `lcnflow run --out {d}`)")
    record = read_record(files["result.json"])
    try:
        with np.load(files["trajectory.npz"], allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise ReportError(f"report: cannot read {files['trajectory.npz']}: it is damaged or not an .npz archive "
                          f"({type(exc).__name__}: {exc})") from None
    except (AttributeError, TypeError):  # a single .npy array under the .npz name
        raise ReportError(f"report: {files['trajectory.npz']} is not an .npz archive of arrays") from None
    _check_arrays(arrays, record, files["trajectory.npz"])
    return RunData(record, arrays)


def _fig_bytes(fig, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    return buf.getvalue()


def build_report(
    run_dir: str | Path, formats: tuple[str, ...] = ("png",), figures: tuple[str, ...] | None = None
) -> Path:
    """Write ``report.html`` and ``figures/<name>.<fmt>`` into a run directory; return the HTML path.

    Parameters
    ----------
    run_dir : str or Path
        A directory written by :meth:`lcnflow.experiments.ExperimentRun.save`.
    formats : tuple of str
        Image files written beside the report, e.g. ``("png", "svg")`` (the HTML embeds PNG and is self-contained
        either way).
    figures : tuple of str, optional
        Only these figures (stems of :data:`~lcnflow.report.FIGURES`, e.g. ``("convergence", "roots")``); default all.

    Returns
    -------
    Path
    """
    known = [stem for stem, _, _ in FIGURES]
    if figures is not None and (unknown := [f for f in figures if f not in known]):
        raise ReportError(f"report: unknown figure(s) {', '.join(unknown)}; valid: {', '.join(known)}")
    run = load_run(run_dir)
    out = Path(run_dir)
    fig_dir = out / "figures"
    files: list[tuple[Path, bytes]] = []  # written only once every figure and the page are built
    blocks = []
    with matplotlib.rc_context(STYLE):
        for stem, make, caption in FIGURES:
            try:
                fig = make(run) if figures is None or stem in figures else None
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
                raise ReportError(f"report: cannot draw the figure {stem!r} from the files in {out}: "
                                  f"{type(exc).__name__}: {exc}; the run files are damaged or from another "
                                  "lcnflow version (rerun the experiment with --out)") from None
            if fig is None:
                continue
            png = _fig_bytes(fig, "png")
            fig.set_layout_engine("none")  # keep the layout computed for the PNG (constrained layout is slow)
            for fmt in formats:
                files.append((fig_dir / f"{stem}.{fmt}", png if fmt == "png" else _fig_bytes(fig, fmt)))
            fig.clear()
            data = base64.b64encode(png).decode("ascii")
            width = min(100.0, 100.0 * float(fig.get_figwidth()) / _FULL_WIDTH_INCHES)  # same scale for all
            blocks.append(
                f'<figure id="fig-{stem}"><img alt="{html.escape(stem)}" style="width:{width:.0f}%" '
                f'src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    try:  # shown as text only; a damaged file is shown as far as it can be decoded
        config_text = (out / "config.toml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        config_text = ""
    path = out / "report.html"
    try:
        page = _page(run.record, blocks, config_text)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ReportError(f"report: {out / 'result.json'}: cannot lay out the report ({type(exc).__name__}: {exc}); "
                          "the file is damaged or from another lcnflow version") from None
    fig_dir.mkdir(exist_ok=True)
    for file, data in files:
        atomic_write(file, data)
    atomic_write(path, page)
    return path


# ---------------------------------------------------------------------------------------------------- HTML
def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any, spec: str = ".4g") -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def _size(k: Any) -> str:
    return "×".join(str(v) for v in k) if isinstance(k, list | tuple) else str(k)


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<section class="card"><h2>{_e(title)}</h2><table>{body}</table></section>'


def _yes(flag: Any) -> str:
    return {True: '<span class="yes">yes</span>', False: '<span class="no">no</span>'}.get(flag, "unknown")


def _page(rec: RunRecord, figures: list[str], config_text: str) -> str:
    from lcnflow.dynamics.result import lojasiewicz_caveat

    arch, loss, data, res = rec.architecture, rec.loss, rec.data, rec.result
    verdict, opt, hyp = rec.verdict, rec.function_space_optimum, rec.hypotheses
    cond = data.condition
    cp = res.critical_point
    tone = "bad" if not verdict.converged else ("ok" if verdict.certified and verdict.kind == "global_minimum"
                                                else "warn")
    verdict_rows = [
        ("converged", _yes(verdict.converged)),
        ("certified", _yes(verdict.certified) + f" — ‖∇L(w*)‖ = {_num(res.gradient_norm, '.3g')} "
         f"(certified when ≤ {_num(res.options.get('certify_tol'), '.3g')} · S, S the size of the terms of ∇L)"),
        ("stopped because", _e(res.message.split(";")[0])),
        ("kind", _e((verdict.kind or "not classified").replace("_", " "))),
        ("origin", _e(verdict.origin or "—") + (" — <b>spurious</b>" if verdict.spurious else "")),
        ("degeneracies", _e("; ".join(verdict.degeneracies) or "none")),
        ("versus the optimum", _e(verdict.comparison)),
        *([("nearest critical point", _e(verdict.nearest_critical_point) + " (not the run's limit)")]
          if verdict.nearest_critical_point else []),
        *([("verified", _yes(verdict.limit_verified) + " — the same limit at 100× tighter tolerances")]
          if verdict.limit_verified is not None else []),
        ("itinerary", "<br>".join(f"plateau {i + 1}: {_e(p)}" for i, p in enumerate(verdict.itinerary))
         or "no plateau"),
        ("theorem hypotheses", _yes(hyp.covered) + " — " + _e(hyp.consequence)),
    ]
    verdict_html = (
        f'<section class="verdict {tone}"><h2>Verdict: {_e(verdict.headline)}</h2><table>'
        + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in verdict_rows)
        + "</table></section>"
    )
    layers = " → ".join(_size(s) for s in arch.layer_sizes)
    arch_rows = [
        ("dimension / depth", f"{arch.ndim}D, N = {arch.depth} layers"),
        ("filter sizes k", _e(", ".join(_size(k) for k in arch.filter_sizes))),
        ("strides s", _e(", ".join(_size(s) for s in arch.strides))),
        ("signal sizes d_0 → d_N", _e(layers)),
        ("final filter k_v, stride s_v", f"{_e(_size(arch.final_filter_size))}, {_e(_size(arch.final_stride))}"),
        ("parameters P, dim M", f"{arch.num_params}, {arch.function_space_dim}"),
        ("filling", _yes(arch.filling) + " — " + _e(arch.filling_reason)),
    ]
    if arch.dropped_inputs:
        arch_rows.append(("dropped inputs", _e("; ".join(f"layer {d.layer}: last {_size(d.count)}"
                                                        for d in arch.dropped_inputs))))
    props = ", ".join(f"{k} {_num(getattr(loss, k)) if k == 'growth' else ('yes' if getattr(loss, k) else 'no')}"
                      for k in ("analytic", "convex", "coercive", "growth") if getattr(loss, k) is not None)
    loss_rows = [("loss", _e(loss.name)), ("ℓ(r)", _e(loss.description)), ("declared properties", _e(props))]
    data_rows = [
        ("source", _e(data.source)),
        ("description", _e(data.description)),
        ("samples m", str(data.num_samples)),
        ("input / target shape", f"{_e(_size(data.input_shape))} / {_e(_size(data.target_shape))}"),
        ("data condition rank H = k_v", _yes(cond.satisfied) + f" — rank {cond.rank} of "
         f"{cond.final_filter_size}, σ_min/σ_max = {_num(_ratio(cond.condition_number), '.3g')}"),
        ("classical rank X = d_0", _yes(cond.inputs_full_row_rank) + f" — {cond.inputs_rank} of "
         f"{cond.input_dim}"),
    ]
    solver = rec.solver
    cert_rows = [
        ("method", _e(f"{solver.method.replace('_', ' ')}: {solver.integrator}")),
        ("flow time t, steps", f"{_num(res.t_final)}, {res.num_steps}"),
        ("L(w*)", _num(res.loss, ".10g")),
        ("‖∇L‖ at stop → after polishing", f"{_num(res.flow_gradient_norm, '.3g')} → "
         f"{_num(res.gradient_norm, '.3g')} (moved {_num(res.polish_distance, '.3g')})"),
        ("invariant drift", _num(res.invariant_drift, ".3g")),
        ("arc length", _num(res.arc_length, ".5g")),
        ("Łojasiewicz exponent θ (fit)", _num(res.lojasiewicz_exponent, ".3f") + (
            f" ({_e(caveat)})" if (caveat := lojasiewicz_caveat(res.lojasiewicz_exponent)) else "")),
        ("gradients / Hessians", f"{res.num_gradient_evaluations} / {res.num_hessian_evaluations}"),
        ("wall time", f"{_num(res.wall_time, '.3g')} s (data {_num(rec.timings.build_seconds, '.2g')} s)"),
    ]
    limit_rows = [
        ("‖∇ℒ(v*)‖ (function space)", _num(cp.function_space_gradient_norm if cp else None, ".3g")),
        ("rank dπ(w*) / dim M", f"{cp.dpi_rank if cp else '—'} / {cp.function_space_dim if cp else '—'}"),
        ("spurious", _e(cp.spurious_reason if cp else "—")),
        ("ℒ* = min of ℒ over all filters of size k_v",
         _num(opt.value, ".10g") + (" (global minimum of L: filling)" if opt.exact else " (lower bound)")),
        ("gap L(w*) − ℒ*", _num(verdict.gap_to_optimum, ".3g")),
    ]
    notes = "".join(f"<li>{_e(n)}</li>" for n in rec.notes)
    notes_html = f'<section class="card"><h2>Notes</h2><ul>{notes}</ul></section>' if notes else ""
    grid = "".join([
        _table("Architecture", arch_rows), _table("Loss", loss_rows), _table("Data", data_rows),
        _table("Solver and certificate", cert_rows), _table("The limit", limit_rows),
    ])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lcnflow — {_e(rec.name)}</title>
<style>{_CSS}</style></head>
<body><main>
<header><h1>lcnflow run: {_e(rec.name)}</h1><p>{_e(rec.description)}</p>
<p class="meta">lcnflow {_e(rec.lcnflow_version)} · {_e(rec.created)}</p></header>
{verdict_html}
<div class="grid">{grid}</div>
{notes_html}
<h2 class="figs">Figures</h2>
{''.join(figures)}
<section class="card"><h2>Configuration (config.toml — repeat with <code>lcnflow run config.toml</code>)</h2>
<pre>{_e(config_text)}</pre></section>
</main></body></html>
"""


def _ratio(condition_number: float | None) -> float | None:
    """``σ_min/σ_max`` from the condition number (``None`` there: infinite, so 0)."""
    if condition_number is None:
        return 0.0
    return 1.0 / condition_number if condition_number > 0 else None


_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#222;background:#f6f7f9;margin:0}
main{max-width:1120px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.05em;margin:0 0 8px}
header p{margin:2px 0;color:#444}.meta{font-size:.85em;color:#777}
.card,.verdict{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:14px 16px;margin:14px 0}
.verdict{border-left:6px solid #888}.verdict.ok{border-left-color:#2e8b57}
.verdict.warn{border-left-color:#d17a00}.verdict.bad{border-left-color:#c0392b}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:0 14px}
table{border-collapse:collapse;width:100%;font-size:.9em}
th{text-align:left;vertical-align:top;color:#555;font-weight:600;padding:3px 10px 3px 0;width:38%}
td{padding:3px 0;vertical-align:top}
.yes{color:#2e8b57;font-weight:600}.no{color:#c0392b;font-weight:600}
figure{background:#fff;border:1px solid #dde1e6;border-radius:8px;margin:14px 0;padding:12px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:.88em;color:#444;margin-top:6px}
pre{font-size:.8em;overflow-x:auto;background:#f3f4f6;padding:10px;border-radius:6px}
h2.figs{margin-top:26px}
"""
