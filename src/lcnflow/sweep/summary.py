r"""Summaries of a sweep: a table per grid cell, figures, and a self-contained ``summary.html``.

Each run gets one **outcome**, the first that applies:

========================  ============================================================================

The table per cell (a combination of the non-seed grid values) gives the count, the converged and certified
percentages, the percentage of each outcome with its 95 % Wilson score interval (``ci95_<outcome>``, a cell of 8
runs with 7 spurious reads 87.5 % in 53–98), quantiles of the final loss ``L(w*)`` and of the gap ``L(w*) − ℒ*`` to
the function-space optimum, the percentage of runs that are global on ``M`` and the gap ``L(w*) − ℒ*_M`` to the best
the architecture can do (with the percentage of runs whose ``ℒ*_M`` is only a best-found bound), and the median run
time.  See docs/classification.md for the meanings.  The figures show the outcome fractions against each varied
key, the histogram of the final losses, and the distinct final filters ``v* = π(w*)`` each cell converged to.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lcnflow import __version__
from lcnflow._files import atomic_write
from lcnflow.analysis.limits import same_limit
from lcnflow.experiments.compare import wilson_interval
from lcnflow.sweep.grid import canonical_json
from lcnflow.sweep.store import KIND_TYPES, outcomes, read_results, read_sweep_info

__all__ = ["OUTCOMES", "SweepSummary", "category_order", "distinct_limits", "limit_cells", "outcomes", "summarize"]

#: Outcomes of a run, in the priority order used to assign them (see the module docstring).
OUTCOMES = ("error", "uncertified_endpoint", "unclassified", "global_minimum", "spurious", "strict_saddle",
            "degenerate", "undecided_on_m", "local_minimum")


def outcome_label(outcome: str) -> str:
    """An outcome in words: ``"strict saddle"``, ``"undecided on M"``."""
    return outcome.replace("_", " ").replace(" on m", " on M")


#: Outcomes always shown in the table (others only when they occur).
MAIN_OUTCOMES = ("global_minimum", "strict_saddle", "spurious", "degenerate")
COLORS = {
    "global_minimum": "#2e8b57", "local_minimum": "#7fb3d5", "strict_saddle": "#d17a00", "spurious": "#c0392b",
    "degenerate": "#8e44ad", "undecided_on_m": "#a9cce3",
    "unclassified": "#bdbdbd", "uncertified_endpoint": "#555555", "error": "#000000",
}
_STYLE: dict[str, Any] = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 7.5, "legend.frameon": False,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
    "axes.spines.right": False, "figure.dpi": 100, "savefig.dpi": 130,
}
#: Quantiles of the final loss reported per cell.
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
#: Gaps ``L(w*) − ℒ*`` below this (relative to ``max(1, |ℒ*|)``) are drawn at this floor on the log axis.
GAP_FLOOR = 1e-16
#: Cells and limits per cell shown in the distinct-limits figure.
MAX_LIMIT_CELLS, MAX_LIMITS = 6, 6


def distinct_limits(filters: Sequence[Sequence[float]], labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Group final filters that are the same limit (:func:`lcnflow.analysis.limits.same_limit`; greedy, in order).

    Parameters
    ----------
    filters : sequence of vectors
        Final filters ``v* = π(w*)`` (flattened), e.g. of one cell.
    labels : sequence of str, optional
        An outcome per filter; each group reports the most common one.

    Returns
    -------
    list of dict
        ``{"filter": list, "count": int, "outcome": str or None}``, by decreasing count.
    """
    groups: list[dict[str, Any]] = []
    for i, f in enumerate(filters):
        v = np.asarray(f, dtype=np.float64)
        for g in groups:
            rep = g["_rep"]
            if same_limit(v, rep):
                g["count"] += 1
                if labels is not None:
                    g["_labels"].append(labels[i])
                break
        else:
            groups.append({"_rep": v, "count": 1, "_labels": [labels[i]] if labels is not None else []})
    groups.sort(key=lambda g: -g["count"])
    out = []
    for g in groups:
        labs = g["_labels"]
        common = max(set(labs), key=labs.count) if labs else None
        out.append({"filter": g["_rep"].tolist(), "count": g["count"], "outcome": common})
    return out


@dataclass
class SweepSummary:
    """The summary of a sweep directory.

    Attributes
    ----------
    out : Path
    info : dict
        ``sweep.json``.
    table : pyarrow.Table
        One row per cell with at least one finished run: the cell's values, counts, percentages, quantiles.
    num_finished : int
        Runs with a row on disk.
    figures : dict
        Figure name → PNG bytes.
    html_path, csv_path : Path or None
        Where ``summary.html`` and ``summary.csv`` were written.
    problems : list of str
        What reading the parts found wrong (a damaged part, a file the sweep did not write), one line each; the
        summary covers the other parts.
    """

    out: Path
    info: dict[str, Any]
    table: pa.Table
    num_finished: int
    figures: dict[str, bytes] = field(default_factory=dict)
    html_path: Path | None = None
    csv_path: Path | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def shown_outcomes(self) -> list[str]:
        """Outcomes with a column in the table (the main four, plus any other that occurs)."""
        return [o for o in OUTCOMES if f"pct_{o}" in self.table.column_names]


def _cell_label(cell: Mapping[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in cell.items()) or "all runs"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return canonical_json(v)
    if isinstance(v, str) and v.startswith("["):
        return v.replace(" ", "")
    return str(v)


def _hashable(v: Any) -> Any:
    """A grid value usable as a dictionary key: lists become tuples (recursively)."""
    return tuple(_hashable(x) for x in v) if isinstance(v, list | tuple) else v


def _category_key(value: Any) -> tuple | None:
    """Natural sort key of a grid value: numbers by value, lists of numbers (or their JSON text, as older sweeps
    stored them) by length, then entries."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return (0, float(value))
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (0, float(value))
    if isinstance(value, list | tuple):
        flat = np.asarray(value, dtype=object).ravel().tolist()
        if flat and all(isinstance(x, int | float) and not isinstance(x, bool) for x in flat):
            return (len(value), tuple(float(x) for x in flat))
    return None


def category_order(values: Sequence[Any], cells: Sequence[int] | None = None) -> list[Any]:
    """Distinct values of a grid column in a reading order.

    Numbers sort by value and filter sizes like ``[3, 3]`` by depth, then entries (not as text, which would put
    ``"[10,3]"`` before ``"[3,3]"``); anything else keeps the grid's order (by the first cell it appears in).
    """
    first: dict[Any, tuple[int, Any]] = {}
    for i, v in enumerate(values):
        pos = cells[i] if cells is not None else i
        key = _hashable(v)
        if key not in first or pos < first[key][0]:
            first[key] = (pos, v)
    uniq = [v for _, v in sorted(first.values(), key=lambda p: p[0])]
    keys = [_category_key(v) for v in uniq]
    if all(k is not None for k in keys):
        try:
            return [v for _, v in sorted(zip(keys, uniq, strict=True), key=lambda p: p[0])]
        except TypeError:  # numbers mixed with lists
            pass
    return uniq


def _cell_table(info: Mapping[str, Any], table: pa.Table, outcome: pa.Array) -> pa.Table:
    cells = info["cells"]
    cell_keys = info["cell_keys"]
    cell = table.column("cell").to_numpy()
    out_np = np.asarray(outcome.to_pylist(), dtype=object)
    conv = pc.fill_null(table.column("converged"), False).to_numpy(zero_copy_only=False)
    cert = pc.fill_null(table.column("certified"), False).to_numpy(zero_copy_only=False)
    loss = pc.fill_null(table.column("loss"), math.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    opt = pc.fill_null(table.column("optimum_loss"), math.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    wall = pc.fill_null(table.column("wall_time"), math.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    gap_best = pc.fill_null(table.column("gap_to_best"), math.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    on_m = np.asarray(table.column("on_function_space").to_pylist(), dtype=object)
    inexact = pc.fill_null(pc.invert(pc.fill_null(table.column("best_exact"), True)), False).to_numpy(
        zero_copy_only=False)
    degenerate = (pc.fill_null(table.column("degenerate_hessian"), False).to_numpy(zero_copy_only=False)
                  if "degenerate_hessian" in table.column_names else np.zeros(table.num_rows, bool))
    present = [o for o in OUTCOMES if o in MAIN_OUTCOMES or np.any(out_np == o)]
    cols: dict[str, list[Any]] = {"cell": []}
    for k in cell_keys:
        cols[k] = []
    cols.update({"runs": [], "errors": [], "pct_converged": [], "pct_certified": []})
    for o in present:
        cols[f"pct_{o}"] = []
    for o in present:
        cols[f"ci95_{o}"] = []  # 95 % Wilson score interval of the percentage, "lo–hi"
    for q in QUANTILES:
        cols[f"loss_q{round(100 * q):02d}"] = []
    cols.update({"gap_median": [], "gap_max": [], "pct_global_on_m": [], "gap_best_median": [], "gap_best_max": [],
                 "pct_best_bound": [], "pct_degenerate_hessian": [], "wall_time_median": [], "wall_time_total": []})
    for c in np.unique(cell):
        sel = cell == c
        n = int(sel.sum())
        cols["cell"].append(int(c))
        for k in cell_keys:
            cols[k].append(cells[int(c)].get(k) if int(c) < len(cells) else None)
        cols["runs"].append(n)
        cols["errors"].append(int(np.sum(out_np[sel] == "error")))
        cols["pct_converged"].append(100.0 * float(conv[sel].sum()) / n)
        cols["pct_certified"].append(100.0 * float(cert[sel].sum()) / n)
        for o in present:
            cols[f"pct_{o}"].append(100.0 * float(np.sum(out_np[sel] == o)) / n)
        for o in present:
            lo, hi = wilson_interval(int(np.sum(out_np[sel] == o)), n)
            cols[f"ci95_{o}"].append(f"{100 * lo:.0f}–{100 * hi:.0f}")
        ok = sel & np.isfinite(loss)
        qs = np.quantile(loss[ok], QUANTILES) if ok.any() else [math.nan] * len(QUANTILES)
        for q, v in zip(QUANTILES, qs, strict=True):
            cols[f"loss_q{round(100 * q):02d}"].append(float(v))
        gap = loss[ok & np.isfinite(opt)] - opt[ok & np.isfinite(opt)]
        cols["gap_median"].append(float(np.median(gap)) if gap.size else math.nan)
        cols["gap_max"].append(float(np.max(gap)) if gap.size else math.nan)
        cols["pct_global_on_m"].append(100.0 * float(np.sum(on_m[sel] == "global")) / n)
        gb = gap_best[ok & np.isfinite(gap_best)]
        cols["gap_best_median"].append(float(np.median(gb)) if gb.size else math.nan)
        cols["gap_best_max"].append(float(np.max(gb)) if gb.size else math.nan)
        cols["pct_best_bound"].append(100.0 * float(np.sum(inexact[sel])) / n)
        cols["pct_degenerate_hessian"].append(100.0 * float(np.sum(degenerate[sel & conv])) / n)
        w = wall[sel & np.isfinite(wall)]
        cols["wall_time_median"].append(float(np.median(w)) if w.size else math.nan)
        cols["wall_time_total"].append(float(np.sum(w)))
    kinds = info["columns"]
    fields = [pa.field("cell", pa.int64())]
    for k in cell_keys:
        fields.append(pa.field(k, KIND_TYPES.get(kinds[k], pa.string())))
    fields += [pa.field(name, pa.int64() if name in ("runs", "errors") else
                        pa.string() if name.startswith("ci95_") else pa.float64())
               for name in cols if name not in ("cell", *cell_keys)]
    return pa.table(cols, schema=pa.schema(fields))


def histogram_values(table: pa.Table) -> tuple[np.ndarray, str]:
    """What the final-loss histogram shows per run, and its axis label.

    ``log₁₀(L(w*) − ℒ*_M)``, the gap to the best the architecture can do, when every run with a finite loss has
    ``best_loss``; else ``log₁₀(L(w*) − ℒ*)`` when every one has the function-space optimum (equal for a filling
    architecture, where ``M`` is every filter; a lower value that no network reaches otherwise); else ``L(w*)``.
    Gaps below ``GAP_FLOOR·max(1, |reference|)`` are drawn at that floor.
    """
    loss = pc.fill_null(table.column("loss"), math.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    ok = np.isfinite(loss)

    def column(name: str) -> np.ndarray:
        if name not in table.column_names:
            return np.full(loss.shape, math.nan)
        return pc.fill_null(table.column(name), math.nan).to_numpy(zero_copy_only=False).astype(np.float64)

    for name, symbol, what in (("best_loss", "ℒ*_M", "gap to the best point of M"),
                               ("optimum_loss", "ℒ*", "gap to the function-space optimum")):
        ref = column(name)
        if ok.any() and np.all(np.isfinite(ref[ok])):
            floor = GAP_FLOOR * np.maximum(1.0, np.abs(ref))
            return (np.log10(np.maximum(loss - ref, floor)),
                    f"log₁₀(L(w*) − {symbol})  ({what}; floor {GAP_FLOOR:g}·max(1, {symbol}))")
    return loss, "final loss L(w*)"


def limit_cells(cells: Sequence[int], final_filters: Sequence[Sequence[float]], labels: Sequence[str],
                max_cells: int | None = None) -> tuple[list[tuple[int, int, list[dict[str, Any]], float]], int]:
    """The cells worth a look in the distinct-limits figure, and how many cells had limits at all.

    Parameters
    ----------
    cells, final_filters, labels : sequences, one entry per converged run
        Its cell, its final filter ``v*`` and its outcome.
    max_cells : int, optional
        How many cells to return (default :data:`MAX_LIMIT_CELLS`).

    Returns
    -------
    panels : list of ``(cell, runs, groups, non_global_fraction)``
        ``groups`` as from :func:`distinct_limits`; sorted by the number of distinct limits (most first), then the
        fraction of runs whose outcome is not ``global_minimum`` (most first), then the cell — the cells with one
        limit each and all runs global say the least, so they come last.
    num_cells : int
    """
    cells = np.asarray(cells)
    labels = np.asarray(labels, dtype=object)
    panels = []
    for c in np.unique(cells):
        idx = np.flatnonzero(cells == c)
        groups = distinct_limits([final_filters[i] for i in idx], [labels[i] for i in idx])
        panels.append((int(c), int(idx.size), groups, float(np.mean(labels[idx] != "global_minimum"))))
    panels.sort(key=lambda p: (-len(p[2]), -p[3], p[0]))
    return panels[: MAX_LIMIT_CELLS if max_cells is None else max_cells], len(panels)


# ---------------------------------------------------------------------------------------------------- figures
def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _figures(info: Mapping[str, Any], table: pa.Table, outcome: pa.Array, summary: pa.Table) -> dict[str, bytes]:
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figs: dict[str, bytes] = {}
    out_np = np.asarray(outcome.to_pylist(), dtype=object)
    present = [o for o in OUTCOMES if np.any(out_np == o)]
    with mpl.rc_context(_STYLE):
        # outcome fractions against each varied (non-seed) key, marginal over the others
        keys = list(info["cell_keys"]) or [None]
        for key in keys[:6]:
            if key is None:
                labels, groups = ["all runs"], [np.ones(table.num_rows, dtype=bool)]
                title, name = "Outcomes of all runs", "outcomes"
            else:
                col = [_hashable(v) for v in table.column(key).to_pylist()]
                order = category_order(col, table.column("cell").to_pylist())
                labels = [_short(list(v) if isinstance(v, tuple) else v) for v in order]
                groups = [np.array([c == v for c in col], dtype=bool) for v in order]
                title, name = f"Outcome fractions against {key}", f"outcomes_vs_{key.replace('.', '_')}"
            fig = Figure(figsize=(max(4.0, 0.7 * len(labels) + 2.5), 3.2))
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            x = np.arange(len(labels))
            bottom = np.zeros(len(labels))
            for o in present:
                frac = np.array([np.mean(out_np[g] == o) if g.any() else 0.0 for g in groups])
                ax.bar(x, frac, bottom=bottom, color=COLORS[o], label=outcome_label(o), width=0.7)
                bottom += frac
            ax.set_xticks(x, labels, rotation=30 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
            ax.set_ylim(0, 1)
            ax.set_ylabel("fraction of runs")
            ax.set_xlabel(key or "")
            ax.set_title(title)
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
            figs[name] = _png(fig)
        # histogram of final losses (gap to the best point of M, else to the function-space optimum, when known)
        loss = pc.fill_null(table.column("loss"), math.nan).to_numpy(zero_copy_only=False).astype(np.float64)
        ok = np.isfinite(loss)
        if ok.any():
            value, xlabel = histogram_values(table)
            fig = Figure(figsize=(6.0, 3.2))
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            data = [value[ok & (out_np == o)] for o in present if np.any(ok & (out_np == o))]
            labs = [o for o in present if np.any(ok & (out_np == o))]
            lo, hi = float(np.min(value[ok])), float(np.max(value[ok]))
            if hi <= lo:
                lo, hi = lo - 0.5, hi + 0.5
            bins = np.linspace(lo, hi, 41)
            ax.hist(data, bins=bins, stacked=True, color=[COLORS[o] for o in labs],
                    label=[outcome_label(o) for o in labs])
            ax.set_xlabel(xlabel)
            ax.set_ylabel("runs")
            ax.set_title(f"Final losses of {int(ok.sum())} runs")
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
            figs["final_losses"] = _png(fig)
        # distinct final filters: the cells with the most distinct limits, then the most non-global outcomes
        usable = ok & (out_np != "uncertified_endpoint")
        panels, num_cells = limit_cells(table.column("cell").to_numpy()[usable],
                                        [f for f, u in zip(table.column("final_filter").to_pylist(), usable,
                                                           strict=True) if u], out_np[usable])
        if panels:
            ncol = min(3, len(panels))
            nrow = math.ceil(len(panels) / ncol)
            fig = Figure(figsize=(4.2 * ncol, 2.9 * nrow))
            FigureCanvasAgg(fig)
            info_cells = info["cells"]
            for p, (c, n, groups, non_global) in enumerate(panels):
                ax = fig.add_subplot(nrow, ncol, p + 1)
                for rank, g in enumerate(groups[:MAX_LIMITS]):
                    v = np.asarray(g["filter"])
                    ax.plot(np.arange(v.size), v, marker="os^Dvp"[rank], ms=3.5, ls=("-", "--", ":", "-.")[rank % 4],
                            color=COLORS.get(g["outcome"], "#333333"), alpha=0.85,
                            label=f"{g['count']}/{n} {str(g['outcome']).replace('_', ' ')}")
                ax.set_xlabel("tap of v* (row-major)")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                label = _cell_label(info_cells[c]) if c < len(info_cells) else f"cell {c}"
                ax.set_title(f"cell {c}: {label}\n{len(groups)} distinct limit(s), "
                             f"{100 * non_global:.0f}% not global", fontsize=8)
                ax.legend(fontsize=6.5)
            shown = f"all {num_cells} cells" if len(panels) == num_cells else (
                f"the {len(panels)} of {num_cells} cells with the most distinct limits, then the most non-global runs")
            fig.suptitle(f"Distinct final filters v* = π(w*) (most frequent first) — {shown}")
            fig.tight_layout()
            figs["distinct_limits"] = _png(fig)
    return figs


# ---------------------------------------------------------------------------------------------------- HTML
def _fmt_cell(name: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return canonical_json(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if name.startswith("pct_"):
            return f"{value:.1f}"
        return f"{value:.4g}"
    return str(value)


_HEADERS = {
    "runs": "runs", "errors": "errors", "pct_converged": "converged %", "pct_certified": "certified %",
    "gap_median": "L − ℒ* median", "gap_max": "L − ℒ* max", "pct_global_on_m": "global on M %",
    "gap_best_median": "L − ℒ*_M median", "gap_best_max": "L − ℒ*_M max", "pct_best_bound": "ℒ*_M best found %",
    "pct_degenerate_hessian": "degenerate Hessian % (‖∇L‖ does not bound the distance to the limit)",
    "pct_undecided_on_m": "undecided on M %", "wall_time_median": "time median (s)",
    "wall_time_total": "time total (s)",
}


def header(name: str) -> str:
    """Human-readable column header of the summary table."""
    if name in _HEADERS:
        return _HEADERS[name]
    if name.startswith("pct_"):
        return outcome_label(name[4:]) + " %"
    if name.startswith("ci95_"):
        return outcome_label(name[5:]) + " % (95 % CI)"
    if name.startswith("loss_q"):
        q = int(name[6:])
        return {0: "loss min", 50: "loss median", 100: "loss max"}.get(q, f"loss q{q}")
    return name


#: Columns at most in one HTML table of the summary (wider ones are split, the cell's own columns repeated).
MAX_TABLE_COLUMNS = 14


def _table_html(t: pa.Table, columns: list[str], keys: list[str]) -> str:
    """One scrollable table of ``columns``; the cell's own columns (``keys``) stay in view when it scrolls."""
    esc = html.escape
    rows = t.to_pylist()

    def cls(c: str) -> str:
        return ' class="key"' if c in keys else ""

    # long keys ("architecture.filter_sizes") may break after their dots instead of running into the next header
    head = "".join(f"<th{cls(c)}>{esc(header(c)).replace('.', '.<wbr>')}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td{cls(c)}>{esc(_fmt_cell(c, r[c]))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _html(summary: SweepSummary) -> str:
    info, t = summary.info, summary.table
    esc = html.escape
    # two narrower tables instead of one wider than the page: outcomes, then losses, gaps and times
    keys = ["cell", *[k for k in info["cell_keys"] if k in t.column_names]]
    outcome_cols = [c for c in t.column_names if c in ("runs", "errors") or c.startswith(("pct_", "ci95_"))]
    other_cols = [c for c in t.column_names if c not in keys and c not in outcome_cols]
    width = max(4, MAX_TABLE_COLUMNS - len(keys))  # columns per table besides the cell's own, so each fits a page
    tables = "".join(
        f"<h3>{title}</h3>"
        + "".join(_table_html(t, keys + cols[i:i + width], keys) for i in range(0, len(cols), width))
        for title, cols in (("Outcomes (% of the cell's runs)", outcome_cols),
                            ("Final losses, gaps to ℒ*_M and ℒ*, and times", other_cols)) if cols)
    imgs = "".join(
        f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{esc(name.replace('_', ' '))}</figcaption></figure>"
        for name, png in summary.figures.items()
    )
    name = info.get("base", {}).get("name") or Path(info.get("source_path") or "sweep").stem
    desc = info.get("base", {}).get("description") or ""
    source = ""
    toml_path = summary.out / "sweep.toml"
    if toml_path.is_file():
        source = f"<h2>Sweep file</h2><pre>{esc(toml_path.read_text(encoding='utf-8'))}</pre>"
    legend = "".join(f'<span class="sw" style="background:{COLORS[o]}"></span>{esc(outcome_label(o))} '
                     for o in OUTCOMES)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lcnflow sweep: {esc(str(name))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }}
.scroll {{ max-width: 100%; overflow-x: auto; margin-bottom: 1em; }}
table {{ border-collapse: collapse; font-size: 12px; }} th, td {{ border: 1px solid #ddd; padding: 3px 6px; }}
th {{ background: #f4f4f4; max-width: 7em; white-space: normal; vertical-align: bottom; }}
td {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
td.key {{ text-align: left; background: #fafafa; }} th.key {{ background: #eef2f7; }}
figure {{ display: inline-block; margin: 0.5em; max-width: 100%; }} img {{ max-width: 100%; }}
pre {{ background: #f8f8f8; padding: 1em; overflow-x: auto; font-size: 12px; }}
.sw {{ display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.2em 0 0.8em; vertical-align: middle; }}
</style></head><body>
<h1>Sweep: {esc(str(name))}</h1>
<p>{esc(str(desc))}</p>
<p>{summary.num_finished} of {info['num_runs']} runs finished, {info['num_cells']} cell(s); varied:
{esc(', '.join(info['varied_keys']))}. Fingerprint {esc(info['fingerprint'])}. Summarized
{datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')} by lcnflow {esc(__version__)}.</p>
<p>Outcomes (first that applies): {legend}</p>
<h2>Per cell</h2>
{tables}
<h2>Figures</h2>
{imgs}
{source}
</body></html>
"""


def summarize(out: str | Path, *, html_file: bool = True, csv_file: bool = True, figures: bool = True) -> SweepSummary:
    """Summarize the sweep in ``out``: per-cell table, figures, ``summary.html`` and ``summary.csv``.

    Parameters
    ----------
    out : str or Path
        A sweep directory (works on a partial sweep: it summarizes the finished runs).
    html_file, csv_file : bool
        Write ``out/summary.html`` (figures embedded as base64 PNG) and ``out/summary.csv``.
    figures : bool
        Draw the figures (Matplotlib, Agg).

    Returns
    -------
    SweepSummary

    Raises
    ------
    SweepError
        If ``out`` is not a sweep directory.
    """
    out = Path(out)
    info = read_sweep_info(out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_results(out)
    for w in caught:  # (passed on to the caller: damaged parts, files the sweep did not write)
        warnings.warn(str(w.message), w.category, stacklevel=2)
    outcome = outcomes(table)
    cell_table = _cell_table(info, table, outcome)
    summary = SweepSummary(out, info, cell_table, table.num_rows,
                           problems=[str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)])
    if figures and table.num_rows:
        summary.figures = _figures(info, table, outcome, cell_table)
    if csv_file:
        summary.csv_path = out / "summary.csv"
        sink = pa.BufferOutputStream()
        pacsv.write_csv(_csv_ready(cell_table), sink)
        atomic_write(summary.csv_path, sink.getvalue().to_pybytes())
    if html_file:
        summary.html_path = out / "summary.html"
        atomic_write(summary.html_path, _html(summary))
    return summary


def _csv_ready(table: pa.Table) -> pa.Table:
    """``table`` with list columns as canonical JSON text (CSV holds no lists)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_list(f.type):
            text = pa.array([None if v is None else canonical_json(v) for v in table.column(i).to_pylist()],
                            pa.string())
            table = table.set_column(i, pa.field(f.name, pa.string()), text)
    return table


def summary_json(summary: SweepSummary) -> dict[str, Any]:
    """JSON-ready form of a summary (what ``lcnflow summarize --json`` prints); NaN becomes ``null``."""

    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    rows = [{k: clean(v) for k, v in row.items()} for row in summary.table.to_pylist()]
    return {"out": str(summary.out), "num_runs": summary.info["num_runs"], "num_finished": summary.num_finished,
            "problems": list(summary.problems), "cells": rows}
