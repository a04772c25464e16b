r"""Figures of a finished run, drawn with Matplotlib's object API on the Agg canvas (no pyplot, no global state).

Every function takes a :class:`RunData` (the content of a run directory) and returns a
:class:`matplotlib.figure.Figure`, or ``None`` when the figure does not apply (e.g. roots for a 2D network).
Time axes are flow time ``t`` (for gradient descent the flow-time equivalent ``Σ η``), logarithmic, so ``t = 0`` is
not shown.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from lcnflow.analysis.critical import ROOT_TOL, dilate_1d, finite_roots
from lcnflow.record import ArchitectureSummary, ResultSummary, RunRecord

__all__ = ["FIGURES", "STYLE", "RunData", "plot_result", "polynomial_roots", "shared_roots"]

#: Matplotlib settings of every figure (applied with ``matplotlib.rc_context``).
STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.4,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "svg.fonttype": "none",
}
START, LIMIT, OPTIMUM, TRUTH, ALERT = "#9a9a9a", "#1f5fa8", "#d17a00", "#2e8b57", "#c0392b"
#: Shading of the plateaus a run crossed (its itinerary).
PLATEAU = "#8e44ad"
# Roots closer than ROOT_TOL (relative to ``1 + |ρ|``) count as shared: the tolerance of lcnflow.analysis.critical.


@dataclass
class RunData:
    """The content of a run directory: ``result.json`` as a :class:`~lcnflow.record.RunRecord` and
    ``trajectory.npz`` as arrays."""

    record: RunRecord
    arrays: dict[str, np.ndarray]

    @property
    def arch(self) -> ArchitectureSummary:
        """``record.architecture``."""
        return self.record.architecture

    @property
    def is_descent(self) -> bool:
        """Whether the run was gradient descent (time is then ``Σ η``)."""
        return self.record.solver.method == "gradient_descent"

    @property
    def multichannel(self) -> bool:
        """Whether the network has channels (``architecture.channels`` not all 1): figures drawn per coefficient of a
        one-channel filter are left out for it."""
        return self.arch.multichannel

    def layer_filters(self, flat: np.ndarray) -> list[np.ndarray]:
        """Split a flat parameter vector into the layers' filters."""
        out, start = [], 0
        for shape in self.arch.filter_shapes:
            n = math.prod(shape)
            out.append(np.asarray(flat[start : start + n]).reshape(shape))
            start += n
        return out

    def layer_slices(self) -> list[slice]:
        """Slices of the layers in a flat parameter vector."""
        sl, start = [], 0
        for shape in self.arch.filter_shapes:
            n = math.prod(shape)
            sl.append(slice(start, start + n))
            start += n
        return sl


def _time_label(run: RunData) -> str:
    return "iteration time t = Σ η (flow-time equivalent)" if run.is_descent else "flow time t"


def _time_axis(times: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(mask, log)``: the recorded points drawn against time, and whether the time axis is logarithmic.

    Normally the points with ``t > 0`` on a log axis.  A run that stopped at ``t = 0`` (its initial point already met
    the stopping test) has no such point: then its single point is drawn at ``t = 0`` on a linear axis.
    """
    times = np.asarray(times)
    positive = times > 0
    if positive.any():
        return positive, True
    return np.ones(times.shape, bool), False


def _stopped_at_zero(ax) -> None:
    ax.text(0.5, 0.3, "the run stopped at t = 0:\nits initial point met the stopping test", transform=ax.transAxes,
            ha="center", va="top", fontsize=7.5, color=ALERT)
    ax.set_xlim(-1, 1)
    ax.set_xticks([0])


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power_of_ten(value: float, _pos: int | None = None) -> str:
    """Tick label ``10ⁿ`` in plain Unicode (Matplotlib's default uses mathtext, which is slow to lay out)."""
    if value == 0:
        return "0"
    exponent = math.log10(abs(value))
    if abs(exponent - round(exponent)) > 1e-9:
        return ""
    n = round(exponent)
    text = {0: "1", 1: "10"}.get(n, "10" + str(n).translate(_SUPERSCRIPT))
    return ("−" if value < 0 else "") + text


def _finish(fig: Figure) -> Figure:
    """Plain-Unicode labels on every logarithmic axis."""
    for ax in fig.axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale in ("log", "symlog"):
                axis.set_major_formatter(FuncFormatter(_power_of_ten))
                axis.set_minor_formatter(NullFormatter())
    return fig


# ---------------------------------------------------------------------------------------------------- convergence
def _loggable(values: np.ndarray) -> bool:
    """Whether a log axis can show ``values``: all positive, some finite."""
    values = np.asarray(values, dtype=np.float64)
    return bool(values.size and np.all(values > 0) and np.any(np.isfinite(values)))


def _shade_plateaus(axes, itinerary: list[tuple[float, float, str, int | None]], t: np.ndarray) -> None:
    """Shade each plateau ``(t_enter, t_leave, kind, index)`` of the run's itinerary and name its critical point."""
    if not itinerary or t.size == 0:
        return
    for n, (t_enter, t_leave, kind_name, index) in enumerate(itinerary):
        lo = max(float(t_enter), float(t[0]))
        hi = float(t_leave)
        kind = str(kind_name).replace("_", " ")
        what = f"plateau {n + 1}: {kind}" + (f", index {index}" if index is not None else "")
        for j, ax in enumerate(axes):
            ax.axvspan(lo, hi, color=PLATEAU, alpha=0.18, lw=0, label=what if j == 0 else None)


#: :func:`log_time_hides_descent` is true when the log time axis leaves less than this fraction of its width to the
#: time after the escape from the start.
AFTER_ESCAPE_WIDTH = 0.2


def log_time_hides_descent(times: np.ndarray, losses: np.ndarray) -> bool:
    """Whether a log time axis squeezes what follows the escape from the start into a sliver at its right end.

    The escape is the first recorded time at which the risk has fallen by a tenth of its whole descent
    ``L(0) − L(end)``.  A log axis from the first positive time ``t₁`` to the last ``t_end`` gives the part after
    the escape ``t_e`` the fraction ``log(t_end/t_e) / log(t_end/t₁)`` of its width; below
    :data:`AFTER_ESCAPE_WIDTH` the descent and the approach to the limit are not readable on it.
    """
    t = np.asarray(times, dtype=float)
    loss = np.asarray(losses, dtype=float)
    ok = np.isfinite(loss) & np.isfinite(t)
    t, loss = t[ok], loss[ok]
    positive = t > 0
    if positive.sum() < 3:
        return False
    drop = loss[0] - loss[-1]
    if not drop > 0:
        return False
    escaped = np.nonzero((loss[0] - loss >= 0.1 * drop) & positive)[0]
    if escaped.size == 0:
        return False
    t1, te, tend = t[positive][0], t[escaped[0]], t[-1]
    if not tend > t1:
        return False
    return bool(np.log(tend / max(te, t1)) < AFTER_ESCAPE_WIDTH * np.log(tend / t1))


def recorded_arc_length(trajectory: np.ndarray) -> np.ndarray:
    """``s_n = Σ_{m<n} ‖w_{m+1} − w_m‖`` over the recorded points: the arc length of the polygon through them (a
    lower bound of the trajectory's arc length to each point), ``s_0 = 0``."""
    traj = np.asarray(trajectory, dtype=float)
    if traj.shape[0] == 0:
        return np.zeros(0)
    steps = np.linalg.norm(np.diff(traj.reshape(traj.shape[0], -1), axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(steps), steps, 0.0))])


def convergence(run: RunData) -> Figure:
    """Loss, loss above the limit, and gradient norm against time (log–log), stopping point marked; when the log
    time axis hides what follows the escape (:func:`log_time_hides_descent`), a second row against arc length."""
    a, res = run.arrays, run.record.result
    ok, logt = _time_axis(a["times"])
    t, loss, gn = a["times"][ok], a["losses"][ok], a["gradient_norms"][ok]
    t_stop = res.t_final
    by_arc = logt and "trajectory" in a and log_time_hides_descent(a["times"], a["losses"])
    fig = _new_figure(10.5, 7.6 if by_arc else 4.3)
    grid = fig.subplots(2 if by_arc else 1, 3, squeeze=False)
    axes = grid[0]
    opt = run.record.function_space_optimum.value
    limit = res.loss
    marker = None if logt else "o"
    stop_color = TRUTH if res.converged else ALERT

    ax = axes[0]
    ax.plot(t, loss, color=LIMIT, marker=marker, label=r"$L(w(t))$")
    end = r"limit $L(w^*)$" if res.converged else "end of the run: $L$"
    if limit is not None:  # None: the run ended on a non-finite risk (it diverged)
        ax.axhline(limit, color=LIMIT, ls="--", lw=0.9, label=f"{end} = {limit:.4g}")
    if opt is not None and opt > 0:
        ax.axhline(opt, color=OPTIMUM, ls=":", lw=1.2, label=rf"function-space optimum $\mathcal{{L}}^*$ = {opt:.4g}")
    ax.plot([], [], color=stop_color, ls="-.", lw=0.9, label=f"stop at t = {t_stop:.3g}")
    ax.set(xlabel=_time_label(run), ylabel="risk L", title="Risk")

    ax = axes[1]
    gap = loss - (limit if limit is not None else np.inf)
    good = gap > 1e-15 * max(1.0, abs(limit if limit is not None else 0.0))
    if good.any() and res.converged:
        ax.plot(t[good], gap[good], color=LIMIT, marker=marker)
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no limit: the run did not converge" if not res.converged else r"$L(w(t)) = L(w^*)$",
                transform=ax.transAxes, ha="center", va="center", color=ALERT)
    ax.set(xlabel=_time_label(run), ylabel=r"$L(w(t)) - L(w^*)$", title="Risk above the limit")

    ax = axes[2]
    ax.plot(t, np.maximum(gn, 1e-300), color=LIMIT, marker=marker, label=r"$\|\nabla L(w(t))\|$")
    if res.converged and res.gradient_norm and res.gradient_norm > 0:
        word = "certified" if res.certified else "polished (not certified)"
        ax.plot([t_stop], [res.gradient_norm], marker="*", ms=11, color=TRUTH if res.certified else ALERT,
                ls="none", label=rf"{word} $\|\nabla L(w^*)\|$ = {res.gradient_norm:.2g}")
    if _loggable(gn):
        ax.set_yscale("log")
    ax.set(xlabel=_time_label(run), ylabel=r"gradient norm $\|\nabla L\|$", title="Gradient norm")
    _shade_plateaus(axes, [(p.t_enter, p.t_leave, p.kind, p.index) for p in res.itinerary], t)
    for ax in axes:
        ax.set_xscale("log" if logt else "linear")
        if logt and t_stop > 0:
            ax.axvline(t_stop, color=stop_color, lw=0.9, ls="-.")
        if not logt:
            _stopped_at_zero(ax)
    axes[0].set_yscale("log" if _loggable(loss) and (limit is None or limit > 0) else "linear")
    for ax in (axes[0], axes[2]):  # below the panel, never on the curves
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
    if by_arc:
        _against_arc_length(grid[1], a, res, limit)
    return _finish(fig)


def _against_arc_length(axes, a: dict, res: ResultSummary, limit: float | None) -> None:
    """Risk, risk above the limit and gradient norm against the recorded arc length (linear), every point drawn."""
    s = recorded_arc_length(a["trajectory"])
    loss, gn = a["losses"], a["gradient_norms"]
    label = "arc length along the recorded points Σ‖Δw‖"
    axes[0].plot(s, loss, color=LIMIT, marker=".", ms=3)
    if _loggable(loss) and (limit is None or limit > 0):
        axes[0].set_yscale("log")
    axes[0].set(xlabel=label, ylabel="risk L", title="Risk against arc length")
    gap = loss - (limit if limit is not None else np.inf)
    good = gap > 1e-15 * max(1.0, abs(limit if limit is not None else 0.0))
    if good.any() and res.converged:
        axes[1].plot(s[good], gap[good], color=LIMIT, marker=".", ms=3)
        axes[1].set_yscale("log")
    axes[1].set(xlabel=label, ylabel=r"$L(w(t)) - L(w^*)$", title="Risk above the limit")
    axes[2].plot(s, np.maximum(gn, 1e-300), color=LIMIT, marker=".", ms=3)
    if _loggable(gn):
        axes[2].set_yscale("log")
    axes[2].set(xlabel=label, ylabel=r"gradient norm $\|\nabla L\|$", title="Gradient norm")


# ---------------------------------------------------------------------------------------------------- invariants
def invariants(run: RunData) -> Figure | None:
    r"""Drift of the conserved quantities ``δ_i = ‖w^{(i+1)}‖² − ‖w^{(i)}‖²`` along the recorded trajectory.

    Normalised as :attr:`lcnflow.FlowResult.invariant_drift` (the summary's "invariant drift"):
    ``|δ_i(t) − δ_i(0)| / max(‖w(0)‖², ‖w(t)‖²)``, so the curve's maximum is that number up to the points recorded.
    """
    inv = run.arrays["invariants_trajectory"]
    if inv.shape[1] == 0:
        return None
    ok, logt = _time_axis(run.arrays["times"])
    traj = run.arrays["trajectory"]
    scale = np.maximum(np.maximum(np.sum(traj * traj, axis=1), float(traj[0] @ traj[0])), 1e-300)
    drift = np.abs(inv - inv[0]) / scale[:, None]
    floor = 1e-17
    fig = _new_figure(5.2, 3.4)
    ax = fig.subplots()
    if run.multichannel:  # the entries of each c_i × c_i matrix Δ_i: one curve per matrix, its largest entry
        sizes = run.arch.channels[1:-1]
        bounds = np.cumsum([0, *(c * c for c in sizes)])
        curves = [(np.max(drift[:, a:b], axis=1), rf"$\Delta_{{{i + 1}}}$ (layers {i + 1}, {i + 2}; largest entry)")
                  for i, (a, b) in enumerate(itertools.pairwise(bounds))]
    else:
        curves = [(drift[:, i], rf"$\delta_{{{i + 1}}}$ (layers {i + 1}, {i + 2})") for i in range(inv.shape[1])]
    for values, label in curves:
        ax.plot(run.arrays["times"][ok], np.maximum(values[ok], floor), label=label, marker=None if logt else "o")
    ax.axhline(np.finfo(float).eps, color=START, ls=":", lw=0.9, label="machine ε")
    ax.set_yscale("log")
    ax.set_xscale("log" if logt else "linear")
    if not logt:
        _stopped_at_zero(ax)
    kind = "changed by every step of size η" if run.is_descent else "zero for the exact flow"
    ax.set(xlabel=_time_label(run), ylabel=r"$|\delta_i(t) - \delta_i(0)|\ /\ \max(\|w(0)\|^2, \|w(t)\|^2)$",
           title=f"Conserved quantities: drift ({kind})")
    ax.legend(loc="best")
    return _finish(fig)


# ---------------------------------------------------------------------------------------------------- filters
#: Coefficient paths get a legend when a panel has at most this many coefficients.
MAX_LEGEND_COEFFICIENTS = 16


def _coefficient_labels(symbol: str, shape: tuple[int, ...]) -> list[str]:
    """Mathtext names of a filter's coefficients: ``w^{(1)}_j`` in 1D, ``w^{(1)}_{r,c}`` in 2D (row-major)."""
    if len(shape) == 1:
        return [f"${symbol}_{{{j}}}$" for j in range(shape[0])]
    return [f"${symbol}_{{{','.join(map(str, idx))}}}$" for idx in np.ndindex(*shape)]


def filters(run: RunData) -> Figure:
    """Every coefficient of every layer, and of the final filter ``v = π(w)``, against time (against the recorded arc
    length when the log time axis hides what follows the escape, :func:`log_time_hides_descent`)."""
    a = run.arrays
    ok, logt = _time_axis(a["times"])
    by_arc = logt and log_time_hides_descent(a["times"], a["losses"])
    if by_arc:
        ok = np.ones(a["times"].shape, bool)
        t = recorded_arc_length(a["trajectory"])
    else:
        t = a["times"][ok]
    traj = a["trajectory"][ok]
    shapes = [tuple(sh) for sh in run.arch.filter_shapes]
    kv = run.arch.final_filter_size
    kv_shape = tuple(kv) if isinstance(kv, list | tuple) else (kv,)
    if run.multichannel:  # (output channel, input channel, taps)
        kv_shape = (run.arch.channels[-1], run.arch.channels[0], *kv_shape)
    panels = [(f"layer {i + 1}: $w^{{({i + 1})}}$  (k = {_size(k)})", traj[:, sl],
               _coefficient_labels(f"w^{{({i + 1})}}", shapes[i]))
              for i, (sl, k) in enumerate(zip(run.layer_slices(), run.arch.filter_sizes, strict=True))]
    panels.append((rf"final filter $v = \pi(w)$  ($k_v$ = {_size(kv)})", a["final_filter_trajectory"][ok],
                   _coefficient_labels("v", kv_shape)))
    ncol = min(len(panels), 4)
    nrow = math.ceil(len(panels) / ncol)
    fig = _new_figure(2.8 * ncol, 3.6 * nrow)
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    for ax, (title, coeffs, labels) in zip(axes, panels, strict=False):
        for j in range(coeffs.shape[1]):
            ax.plot(t, coeffs[:, j], lw=1.1, label=labels[j], marker=None if logt else "o")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xscale("log" if logt and not by_arc else "linear")
        if not logt:
            _stopped_at_zero(ax)
        xlabel = "arc length Σ‖Δw‖ (recorded points)" if by_arc else _time_label(run).split(" (")[0]
        ax.set(title=title, xlabel=xlabel, ylabel="coefficient value")
        if coeffs.shape[1] <= MAX_LEGEND_COEFFICIENTS:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=min(coeffs.shape[1], 4),
                      handlelength=1.2, columnspacing=0.8)
        else:
            ax.text(0.02, 0.98, f"{coeffs.shape[1]} coefficients", transform=ax.transAxes, va="top", fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return _finish(fig)


def final_filter(run: RunData) -> Figure:
    """The final filter at the start, at the limit, the function-space optimum and the planted truth (1D)."""
    a = run.arrays
    if run.multichannel:
        return _final_filter_channels(run) if run.arch.ndim == 1 else None
    if run.arch.ndim != 1:
        return None
    kv = a["final_filter"].size
    j = np.arange(kv)
    fig = _new_figure(5.2, 3.6)
    ax = fig.subplots()
    series = [("start $v(0)$", a["final_filter_trajectory"][0], START, "o", -0.24),
              (r"limit $\pi(w^*)$", a["final_filter"], LIMIT, "o", -0.08),
              (r"optimum $\hat v = \arg\min\, \mathcal{L}$", a["optimum_filter"], OPTIMUM, "s", 0.08)]
    if "true_filter" in a:
        series.append((r"planted $v^\circ$", a["true_filter"], TRUTH, "D", 0.24))
    for label, v, color, marker, dx in series:
        v = np.asarray(v).ravel()
        ax.vlines(j + dx, 0, v, color=color, lw=1.6)
        ax.plot(j + dx, v, marker, color=color, ms=4.5, label=label)
    ax.axhline(0, color="black", lw=0.6)
    ax.set(xlabel="tap index j", ylabel="coefficient $v_j$", title="Final filter", xticks=j)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)  # below the stems, never on them
    return _finish(fig)


# ---------------------------------------------------------------------------------------------------- roots
def polynomial_roots(coeffs: np.ndarray) -> np.ndarray:
    """Finite roots of ``Σ_j c_j t^j``, sorted (vanishing leading coefficients are roots at infinity, dropped).

    The root finder of the classification (:mod:`lcnflow.analysis.critical`), so the figure shows the roots the verdict
    was decided on.
    """
    c = np.asarray(coeffs, dtype=np.float64).ravel()
    if not np.all(np.isfinite(c)):  # a diverged run: its polynomial has no roots to draw
        return np.zeros(0, complex)
    return finite_roots(c)


def shared_roots(layer_roots: list[np.ndarray], tol: float = ROOT_TOL) -> list[tuple[int, int, complex]]:
    """``(i, l, ρ)`` (1-based layers ``i < l``) for roots ρ that two layers' polynomials share.

    Two roots are shared when ``|a − b| ≤ tol · (1 + max(|a|, |b|))`` — the test of the classification.
    """
    out = []
    for i in range(len(layer_roots)):
        for j in range(i + 1, len(layer_roots)):
            for z in layer_roots[i]:
                if any(abs(z - u) <= tol * (1 + max(abs(z), abs(u))) for u in layer_roots[j]):
                    out.append((i + 1, j + 1, complex(z)))
    return out


#: A panel gets a zoom when at least two of its roots lie within this fraction of its radius from the origin.
ZOOM_FRACTION = 1 / 5


def _zoom_radius(points: np.ndarray, radius: float) -> float | None:
    """Radius of a zoom on the roots piled up near the origin, or None when none is needed."""
    mod = np.abs(points[np.isfinite(points)])
    near = mod[mod < ZOOM_FRACTION * radius]
    if near.size < 2:
        return None
    r = 1.3 * float(near.max())
    return r if r > 0 else 0.1 * radius


def _draw_roots(ax, z0, z1, zopt, shared_pts, radius: float, border: bool = True) -> None:
    """Roots inside ``radius``; those beyond it on the border with their modulus (``border``) or left out (zooms)."""
    theta = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(theta), np.sin(theta), color="black", lw=0.5, ls=":")
    ax.axhline(0, color="black", lw=0.5)
    ax.axvline(0, color="black", lw=0.5)
    _scatter_roots(ax, z0, radius, dict(marker="o", mfc="none", mec=START, ms=6.5, mew=1.1), border)
    if zopt is not None:
        _scatter_roots(ax, zopt, radius, dict(marker="x", color=OPTIMUM, ms=7, mew=1.4), border)
    _scatter_roots(ax, z1, radius, dict(marker="o", color=LIMIT, ms=5), border)
    hits = [z for z in z1 if any(abs(z - s) <= ROOT_TOL * 10 * (1 + abs(s)) for s in shared_pts)]
    _scatter_roots(ax, np.array(hits, complex), radius, dict(marker="o", mfc="none", mec=ALERT, ms=12, mew=1.8),
                   border)
    ax.set(xlim=(-radius, radius), ylim=(-radius, radius), xlabel="Re ρ", ylabel="Im ρ")
    ax.set_aspect("equal")


def _final_filter_channels(run: RunData) -> Figure:
    """1D with channels: the end-to-end filter ``v[o, c, :]`` of every (output, input) channel pair, at the start,
    at the limit and the function-space optimum."""
    a = run.arrays
    cs = run.arch.channels
    cN, c0 = cs[-1], cs[0]
    shape = (cN, c0, -1)
    start = a["final_filter_trajectory"][0].reshape(shape)
    limit, opt = a["final_filter"].reshape(shape), a["optimum_filter"].reshape(shape)
    fig = _new_figure(2.6 * c0 + 0.6, 2.2 * cN + 0.6)
    axes = np.asarray(fig.subplots(cN, c0, squeeze=False))
    taps = np.arange(limit.shape[2])
    for o in range(cN):
        for c in range(c0):
            ax = axes[o, c]
            ax.plot(taps, start[o, c], color=START, lw=1.0, marker="o", ms=3, label="start")
            ax.plot(taps, limit[o, c], color=LIMIT, lw=1.4, marker="o", ms=3, label="limit")
            ax.plot(taps, opt[o, c], color="black", lw=0.9, ls="--", label="optimum v̂")
            ax.axhline(0, color="black", lw=0.4)
            ax.set_title(f"out {o + 1} ← in {c + 1}", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    return _finish(fig)


def roots(run: RunData) -> Figure | None:
    """1D: roots of each layer polynomial ``p_{w^(i)}(t^{S_{i−1}})`` and of ``p_v`` at the start and at the limit.

    One radius for all panels (so they compare); roots beyond it sit on the border with their modulus.  Where roots
    pile up near the origin, a second row zooms on them.
    """
    if run.arch.ndim != 1 or run.multichannel:
        return None
    a = run.arrays
    S = [s[0] for s in run.arch.cumulative_strides]
    start = [polynomial_roots(dilate_1d(w, S[i])) for i, w in enumerate(run.layer_filters(a["init"]))]
    limit = [polynomial_roots(dilate_1d(w, S[i])) for i, w in enumerate(run.layer_filters(a["limit"]))]
    shared = shared_roots(limit)
    shared_pts = [z for _, _, z in shared]
    panels = [(f"layer {i + 1}" + (f": $p(t^{{{S[i]}}})$" if S[i] > 1 else ""), start[i], limit[i], None)
              for i in range(len(limit))]
    panels.append(("final filter $p_v$", polynomial_roots(a["final_filter_trajectory"][0]),
                   polynomial_roots(a["final_filter"]), polynomial_roots(a["optimum_filter"])))
    points = [np.concatenate([p[1], p[2]] + ([p[3]] if p[3] is not None else [])) for p in panels]
    every = np.concatenate(points)
    finite = np.abs(every[np.isfinite(every)]) if every.size else np.zeros(0)
    radius = float(np.clip(np.quantile(finite, 0.9) * 1.25 if finite.size else 1.5, 1.3, 6.0))
    zooms = [_zoom_radius(pts, radius) for pts in points]
    ncol = min(len(panels), 4)
    nblock = math.ceil(len(panels) / ncol)
    rows_per_block = 2 if any(z is not None for z in zooms) else 1
    fig = _new_figure(2.75 * ncol, 2.75 * nblock * rows_per_block + 0.45)
    grid = np.atleast_2d(fig.subplots(nblock * rows_per_block, ncol, squeeze=False))
    used = set()
    for n, ((title, z0, z1, zopt), zoom) in enumerate(zip(panels, zooms, strict=True)):
        block, col = divmod(n, ncol)
        ax = grid[block * rows_per_block, col]
        _draw_roots(ax, z0, z1, zopt, shared_pts, radius)
        ax.set_title(title)
        used.add(id(ax))
        if zoom is not None:
            zax = grid[block * rows_per_block + 1, col]
            _draw_roots(zax, z0, z1, zopt, shared_pts, zoom, border=False)
            zax.set_title(f"{title}, zoom: |Re ρ|, |Im ρ| ≤ {zoom:.2g}", fontweight="normal", fontsize=8)
            ax.add_patch(_square(zoom))
            used.add(id(zax))
    for ax in grid.ravel():
        if id(ax) not in used:
            ax.set_visible(False)
    handles = [
        Line2D([], [], marker="o", mfc="none", mec=START, ls="none", label="start"),
        Line2D([], [], marker="o", color=LIMIT, ls="none", label="limit"),
        Line2D([], [], marker="o", mfc="none", mec=ALERT, ms=10, mew=1.8, ls="none", label="root shared by two layers"),
        Line2D([], [], marker="x", color=OPTIMUM, ls="none", label=r"optimum $\hat v = \arg\min\, \mathcal{L}$"),
        Line2D([], [], color="black", lw=0.5, ls=":", label="unit circle"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=5)
    if any(np.abs(every[np.isfinite(every)]) > radius):
        fig.suptitle(f"roots with |ρ| > {radius:.2g} drawn as triangles on the border, with their modulus",
                     fontsize=8, fontweight="normal")
    return _finish(fig)


def _square(r: float):
    from matplotlib.patches import Rectangle

    return Rectangle((-r, -r), 2 * r, 2 * r, fill=False, ec="black", lw=0.7, ls="--")


def _scatter_roots(ax, z: np.ndarray, radius: float, style: dict, border: bool = True) -> None:
    z = np.asarray(z, complex)
    inside = np.abs(z) <= radius
    ax.plot(z[inside].real, z[inside].imag, ls="none", **style)
    for u in z[~inside] if border else ():
        edge = u / abs(u) * radius * 0.93
        outside_style = {**style, "marker": ">" if abs(edge.real) >= abs(edge.imag) else "^"}
        if edge.real < 0 and abs(edge.real) >= abs(edge.imag):
            outside_style["marker"] = "<"
        elif edge.imag < 0 and abs(edge.imag) > abs(edge.real):
            outside_style["marker"] = "v"
        ax.plot([edge.real], [edge.imag], ls="none", **outside_style)
        ax.annotate(f"|ρ|={abs(u):.3g}", (edge.real, edge.imag), fontsize=6.5, xytext=(0, 6),
                    textcoords="offset points", ha="center", color=style.get("color", style.get("mec")))


# ---------------------------------------------------------------------------------------------------- 2D filters
def filter_images(run: RunData) -> Figure | None:
    """2D: each layer's filter and the final filter as images, at the start and at the limit."""
    if run.arch.ndim != 2 or run.multichannel:
        return None
    a = run.arrays
    kv = tuple(run.arch.final_filter_size)
    cols = [(f"layer {i + 1}", w0, w1) for i, (w0, w1) in
            enumerate(zip(run.layer_filters(a["init"]), run.layer_filters(a["limit"]), strict=True))]
    cols.append(("final filter v", a["final_filter_trajectory"][0].reshape(kv), a["final_filter"].reshape(kv)))
    cols.append(("optimum v̂", None, a["optimum_filter"].reshape(kv)))
    if "true_filter" in a:
        cols.append(("planted v°", None, a["true_filter"].reshape(kv)))
    fig = _new_figure(1.9 * len(cols) + 0.6, 4.0)
    axes = fig.subplots(2, len(cols), squeeze=False)
    for j, (title, w0, w1) in enumerate(cols):
        vmax = max(float(np.max(np.abs(w))) for w in (w0, w1) if w is not None) or 1.0
        for i, (w, row) in enumerate(((w0, "start"), (w1, "limit"))):
            ax = axes[i, j]
            _bare(ax)
            if w is None:
                ax.set_axis_off()
                continue
            im = ax.imshow(w, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
            if w0 is None:
                ax.set_title(title)
            else:
                ax.set_title(f"{title}\n({row})" if i == 0 else f"({row})")
        fig.colorbar(im, ax=axes[:, j].tolist(), shrink=0.7, location="bottom", pad=0.02)
    return _finish(fig)


# ---------------------------------------------------------------------------------------------------- examples
def examples(run: RunData) -> Figure:
    """Example inputs, network outputs (at the limit and at the optimum) and targets (one-channel networks)."""
    if run.multichannel:
        return None
    a = run.arrays
    x, y = a["example_inputs"], a["example_targets"]
    out, opt = a["example_outputs_limit"], a["example_outputs_optimum"]
    n = x.shape[0]
    if run.arch.ndim == 1:
        kv, sv = run.arch.final_filter_size, run.arch.final_stride
        pos = np.arange(y.shape[1]) * sv + (kv - 1) / 2  # input position each output is centred on
        fig = _new_figure(3.5 * n, 3.3)
        axes = np.atleast_1d(fig.subplots(1, n))
        for j, ax in enumerate(axes):
            ax.plot(np.arange(x.shape[1]), x[j], color=START, lw=1.0, label="input $x$")
            ax.plot(pos, y[j], color="black", lw=1.6, label="target $y$")
            ax.plot(pos, out[j], color=LIMIT, lw=1.3, ls="--", label="output at the limit")
            ax.plot(pos, opt[j], color=OPTIMUM, lw=1.1, ls=":", label=r"output of the optimum $\hat v$")
            ax.set(title=f"sample {j + 1}", xlabel="input position (sample index)", ylabel="signal value")
        fig.legend(handles=axes[0].get_lines(), loc="outside lower center", ncol=4)  # off the curves
        return _finish(fig)
    n = min(n, 2)
    cols = [("input x", x), ("output at limit", out), ("output of optimum v̂", opt), ("target y", y)]
    (kh, kw), (sh, sw) = run.arch.final_filter_size, run.arch.final_stride
    h, w = x.shape[1:]
    fig = _new_figure(2.3 * len(cols) + 0.8, 2.3 * n + 0.3)
    axes = fig.subplots(n, len(cols), squeeze=False)
    for i in range(n):
        lo, hi = grey_range(y[i], [arr[i] for _, arr in cols])
        for j, (title, arr) in enumerate(cols):
            ax = axes[i, j]
            _bare(ax)
            img = arr[i]
            if j == 0:
                extent = (-0.5, w - 0.5, h - 0.5, -0.5)
            else:  # output pixel a sits over the input pixel its receptive field is centred on
                r0, c0 = (kh - 1) / 2, (kw - 1) / 2
                extent = (c0 - sw / 2, c0 + sw * (img.shape[1] - 0.5), r0 + sh * (img.shape[0] - 0.5), r0 - sh / 2)
            im = ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest", extent=extent)
            ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
            ax.set_title(title if i == 0 else "")
        # one grey scale per sample (the target's range, see grey_range; brighter or darker pixels saturate)
        fig.colorbar(im, ax=axes[i, :].tolist(), shrink=0.85, pad=0.02, label=f"sample {i + 1}: value")
    return _finish(fig)


def grey_range(target: np.ndarray, panels: list[np.ndarray]) -> tuple[float, float]:
    """The grey scale ``(lo, hi)`` of one sample's image panels: the target's range of values.

    A flat target (a constant patch, range at most ``1e-12`` of its size) has no range of its own: then the range of
    all the sample's ``panels``, and if those are flat as well, ``c ± max(|c|, 1)`` around the constant ``c``, so a
    constant image is drawn mid-grey (never black, as a zero-width range would draw it).
    """
    lo, hi = float(np.min(target)), float(np.max(target))

    def flat(a: float, b: float) -> bool:
        return not b - a > 1e-12 * max(abs(a), abs(b), 1e-300)

    if flat(lo, hi):
        lo = min(float(np.min(p)) for p in panels)
        hi = max(float(np.max(p)) for p in panels)
    if flat(lo, hi):
        c = 0.5 * (lo + hi)
        d = max(abs(c), 1.0)
        lo, hi = c - d, c + d
    return lo, hi


def _bare(ax) -> None:
    """An image panel: no grid, ticks or spines."""
    ax.grid(False)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


# ---------------------------------------------------------------------------------------------------- hessian
def hessian(run: RunData) -> Figure | None:
    """Eigenvalues of the Hessian of ``L`` at the limit, on the complement of the rescaling directions.

    Drawn as ``|λ|`` on a log axis with the sign in the marker (circle positive, triangle negative); eigenvalues
    within ``1e-7 · max|λ|`` of zero sit on a separate "≈ 0" line at the bottom, so no labels pile up at zero.
    """
    if "hessian_eigenvalues" not in run.arrays:
        return None
    eig = np.sort(np.asarray(run.arrays["hessian_eigenvalues"], dtype=np.float64))
    scale = float(np.max(np.abs(eig))) if eig.size else 0.0
    tol = 1e-7 * scale
    fig = _new_figure(5.2, 3.2)
    ax = fig.subplots()
    idx = np.arange(1, eig.size + 1)
    pos, neg, zero = eig > tol, eig < -tol, np.abs(eig) <= tol
    nonzero = np.abs(eig[~zero])
    cp = run.record.result.critical_point
    kind = (cp.kind if cp is not None else "?").replace("_", " ")
    ax.set(xlabel="index (ascending λ)", title=f"Hessian spectrum at the limit: {kind}")
    ax.set_xticks(idx if idx.size <= 20 else idx[:: max(1, idx.size // 10)])
    if nonzero.size:
        bottom = float(nonzero.min()) / 10
        ax.set_yscale("log")
        ax.vlines(idx[pos], bottom, eig[pos], color=LIMIT, lw=1.4)
        ax.plot(idx[pos], eig[pos], "o", color=LIMIT, label="λ > 0")
        ax.vlines(idx[neg], bottom, -eig[neg], color=ALERT, lw=1.4)
        ax.plot(idx[neg], -eig[neg], "v", color=ALERT, ms=7, label="λ < 0, at |λ|")
        ax.plot(idx[zero], np.full(int(zero.sum()), bottom), "s", color=OPTIMUM,
                label=f"λ ≈ 0 (|λ| ≤ {tol:.1g})")
        ax.set_ylim(bottom / 2, float(nonzero.max()) * 3)
        ax.set_ylabel("|λ|")
    else:
        ax.plot(idx, np.zeros(idx.size), "s", color=OPTIMUM, label="λ = 0")
        ax.set_ylim(-1, 1)
        ax.set_yticks([0])
        ax.set_ylabel("λ")
        ax.text(0.5, 0.75, "every eigenvalue is exactly 0", transform=ax.transAxes, ha="center", color=ALERT)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    return _finish(fig)


def _size(k: Any) -> str:
    return "×".join(str(v) for v in k) if isinstance(k, list | tuple) else str(k)


#: ``(file stem, function, caption)`` for every figure, in report order.
FIGURES: list[tuple[str, Callable[[RunData], Figure | None], str]] = [
    ("convergence", convergence,
     "Risk and gradient norm against time on log–log axes. The dash-dotted line marks where the run stopped; the "
     "star is the certified gradient norm after Newton polishing. The dotted orange line is the function-space "
     "optimum ℒ* (the best any final filter can do; the global minimum of L when the architecture is filling). "
     "A run that stopped at t = 0 shows its single point on a linear time axis. When the log time axis leaves less "
     "than a fifth of its width to what follows the escape from the start (a late escape), a second row draws the "
     "same curves against the arc length along the recorded points, which spreads the descent out."),
    ("roots", roots,
     "Roots of each layer polynomial and of the final filter p_v in the complex plane, at the start (hollow) and at "
     "the limit (filled), on one scale for all panels. Red rings mark roots shared by two layers — the "
     "rank-deficient points of π where gradient flow can stop short of the optimum (orange crosses: roots of the "
     "optimal final filter). Where roots crowd near the origin, the second row zooms on the dashed square."),
    ("final_filter", final_filter,
     "Final filter v = π(w): start, limit, the function-space optimum v̂, and the planted truth when there is one."),
    ("filter_images", filter_images,
     "Filters as images at the start and at the limit (blue negative, red positive; one colour scale per column)."),
    ("examples", examples,
     "Example inputs, the network's output at the limit, the output of the optimal final filter, and the target "
     "(images: one grey scale per sample, set by the target's range)."),
    ("filters", filters, "Every coefficient of every layer, and of the final filter, along the trajectory "
     "(legend: coefficient index; row-major in 2D): against time on a log axis, or against the arc length along the "
     "recorded points when that axis would squeeze everything after a late escape into its right end."),
    ("invariants", invariants,
     "Drift of the conserved quantities δᵢ = ‖w⁽ⁱ⁺¹⁾‖² − ‖w⁽ⁱ⁾‖² (with channels: the entries of the cᵢ × cᵢ "
     "matrices Δᵢ), divided by max(‖w(0)‖², ‖w(t)‖²) — the "
     "normalisation of the “invariant drift” in the summary and in result.json, whose value is the largest drift "
     "over every step (this plot shows the recorded points only, so its peak can be lower). An accuracy check of "
     "the integrator: gradient flow conserves them exactly; a gradient-descent step of size η changes them by "
     "η²(‖gᵢ₊₁‖² − ‖gᵢ‖²), gᵢ the gradient of layer i."),
    ("hessian", hessian,
     "Eigenvalues of the Hessian of L at the limit, restricted to the complement of the directions along which π "
     "does not change (the N − 1 rescalings; with channels the fibre of π), "
     "as |λ| on a log scale: all positive — local minimum; a negative one (triangle) — strict saddle; zeros "
     "(squares at the bottom) — degenerate."),
]


# ---------------------------------------------------------------------------------------------------- in memory
def plot_result(result: Any, risk: Any) -> Figure:
    """A figure of an in-memory :class:`~lcnflow.FlowResult`: risk and gradient norm against time, and (1D) roots.

    Parameters
    ----------
    result : FlowResult
        What :func:`lcnflow.gradient_flow` or :func:`lcnflow.gradient_descent` returned.
    risk : EmpiricalRisk
        The risk it was run on (for the architecture; the risk is not evaluated again).

    Returns
    -------
    matplotlib.figure.Figure
        Panels: ``L(w(t))`` with the limit's value; ``‖∇L(w(t))‖`` with ``gtol`` and the certified norm (against
        time on a log axis, or against the arc length along the recorded points when that axis would hide what
        follows a late escape, :func:`log_time_hides_descent`); in 1D the roots of every layer polynomial
        ``p_{w^(i)}(t^{S_{i−1}})`` at the start (hollow) and at the limit (filled), roots shared by two layers
        ringed.  Save it with ``fig.savefig("run.png")``.
    """
    import matplotlib

    arch = risk.arch
    times = np.asarray(result.times, dtype=np.float64)
    ok, logt = _time_axis(times)
    by_arc = logt and log_time_hides_descent(times, np.asarray(result.losses, dtype=np.float64))
    itinerary = [(p.t_enter, p.t_leave, p.kind, p.index) for p in getattr(result, "itinerary", [])]
    xlabel = "flow time t"
    if by_arc:  # every recorded point, against arc length; the plateaus' times mapped onto it
        ok = np.ones(times.shape, bool)
        arc = recorded_arc_length(np.asarray(result.trajectory, dtype=np.float64))
        itinerary = [(float(np.interp(t_enter, times, arc)), float(np.interp(t_leave, times, arc)), kind, index)
                     for t_enter, t_leave, kind, index in itinerary]
        xlabel = "arc length Σ‖Δw‖ (recorded points)"
    t = arc if by_arc else times[ok]
    marker = None if logt else "o"
    one_d = arch.ndim == 1
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(10.5 if one_d else 7.2, 3.9)
        axes = fig.subplots(1, 3 if one_d else 2)
        stop_color = TRUTH if result.converged else ALERT

        ax = axes[0]
        ax.plot(t, np.asarray(result.losses)[ok], color=LIMIT, marker=marker, label=r"$L(w(t))$")
        end = r"limit $L(w^*)$" if result.converged else "end of the run: $L$"
        if result.loss is not None and math.isfinite(result.loss):  # not finite: the run diverged
            ax.axhline(result.loss, color=LIMIT, ls="--", lw=0.9, label=f"{end} = {result.loss:.4g}")
        if _loggable(np.asarray(result.losses)):
            ax.set_yscale("log")
        ax.set(xlabel=xlabel, ylabel="risk L", title="Risk")

        ax = axes[1]
        gn = np.asarray(result.gradient_norms)[ok]
        ax.plot(t, gn, color=LIMIT, marker=marker, label=r"$\|\nabla L(w(t))\|$")
        if result.converged and result.gradient_norm is not None and result.gradient_norm > 0:
            word = "certified" if result.certified else "polished (not certified)"
            ax.plot([t[-1] if by_arc else result.t_final], [result.gradient_norm], marker="*", ms=11, ls="none",
                    color=TRUTH if result.certified else ALERT,
                    label=rf"{word} $\|\nabla L(w^*)\|$ = {result.gradient_norm:.2g}")
        if _loggable(gn):
            ax.set_yscale("log")
        ax.set(xlabel=xlabel, ylabel=r"$\|\nabla L\|$", title="Gradient norm")
        _shade_plateaus(axes[:2], itinerary, t)
        for ax in axes[:2]:
            ax.set_xscale("log" if logt and not by_arc else "linear")
            if logt and result.t_final > 0 and not by_arc:
                ax.axvline(result.t_final, color=stop_color, lw=0.9, ls="-.")
            if not logt:
                _stopped_at_zero(ax)
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2))

        if one_d:
            ax = axes[2]
            S = [s[0] for s in arch.cumulative_strides]
            init = result.trajectory[0]
            starts, limits, sl = [], [], 0
            for i, w in enumerate(result.limit):
                n = w.size
                starts.append(polynomial_roots(dilate_1d(np.asarray(init[sl : sl + n]), S[i])))
                limits.append(polynomial_roots(dilate_1d(np.asarray(w).ravel(), S[i])))
                sl += n
            shared_pts = [z for _, _, z in shared_roots(limits)]
            every = np.concatenate([*starts, *limits]) if starts else np.zeros(0, complex)
            finite = np.abs(every[np.isfinite(every)])
            radius = float(np.clip(np.quantile(finite, 0.9) * 1.25 if finite.size else 1.5, 1.3, 6.0))
            theta = np.linspace(0, 2 * np.pi, 200)
            ax.plot(np.cos(theta), np.sin(theta), color="black", lw=0.5, ls=":")
            ax.axhline(0, color="black", lw=0.5)
            ax.axvline(0, color="black", lw=0.5)
            palette = matplotlib.colormaps["tab10"]
            for i, (z0, z1) in enumerate(zip(starts, limits, strict=True)):
                color = palette(i % 10)
                _scatter_roots(ax, z0, radius, dict(marker="o", mfc="none", mec=color, ms=6.5, mew=1.0))
                _scatter_roots(ax, z1, radius, dict(marker="o", color=color, ms=5))
                ax.plot([], [], "o", color=color, label=f"layer {i + 1}")
            hits = [z for z1 in limits for z in z1 if any(abs(z - s) <= 10 * ROOT_TOL * (1 + abs(s))
                                                           for s in shared_pts)]
            _scatter_roots(ax, np.array(hits, complex), radius, dict(marker="o", mfc="none", mec=ALERT, ms=12,
                                                                      mew=1.8))
            if hits:
                ax.plot([], [], "o", mfc="none", mec=ALERT, ms=10, mew=1.8, label="shared by two layers")
            ax.set(xlim=(-radius, radius), ylim=(-radius, radius), xlabel="Re ρ", ylabel="Im ρ",
                   title="Roots: start (hollow), limit (filled)")
            ax.set_aspect("equal")
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
        return _finish(fig)
