r"""Figures of a finished run, drawn with Matplotlib's object API on the Agg canvas (no pyplot, no global state).

Every function takes a :class:`RunData` (the content of a run directory) and returns a
:class:`matplotlib.figure.Figure`, or ``None`` when the figure does not apply (e.g. roots for a 2D network).
Time axes are flow time ``t`` (for gradient descent the flow-time equivalent ``Σ η``), logarithmic, so ``t = 0`` is
not shown.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter
from numpy.polynomial import polynomial as P

__all__ = ["FIGURES", "STYLE", "RunData", "polynomial_roots", "shared_roots"]

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
#: Roots closer than this (relative to ``1 + |ρ|``) count as shared (as in :mod:`lcnflow.flow.critical`).
ROOT_TOL = 1e-5


@dataclass
class RunData:
    """The content of a run directory: ``result.json`` as a dict and ``trajectory.npz`` as arrays."""

    record: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def arch(self) -> dict[str, Any]:
        """``record["architecture"]``."""
        return self.record["architecture"]

    @property
    def is_descent(self) -> bool:
        """Whether the run was gradient descent (time is then ``Σ η``)."""
        return self.record["solver"]["method"] == "gradient_descent"

    def layer_filters(self, flat: np.ndarray) -> list[np.ndarray]:
        """Split a flat parameter vector into the layers' filters."""
        out, start = [], 0
        for shape in self.arch["filter_shapes"]:
            n = math.prod(shape)
            out.append(np.asarray(flat[start : start + n]).reshape(shape))
            start += n
        return out

    def layer_slices(self) -> list[slice]:
        """Slices of the layers in a flat parameter vector."""
        sl, start = [], 0
        for shape in self.arch["filter_shapes"]:
            n = math.prod(shape)
            sl.append(slice(start, start + n))
            start += n
        return sl


def _time_label(run: RunData) -> str:
    return "iteration time t = Σ η (flow-time equivalent)" if run.is_descent else "flow time t"


def _positive_times(run: RunData) -> np.ndarray:
    return run.arrays["times"] > 0


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
def convergence(run: RunData) -> Figure:
    """Loss, loss above the limit, and gradient norm against time (log–log), stopping point marked."""
    a, res = run.arrays, run.record["result"]
    ok = _positive_times(run)
    t, loss, gn = a["times"][ok], a["losses"][ok], a["gradient_norms"][ok]
    t_stop = res["t_final"]
    fig = _new_figure(10.5, 3.2)
    axes = fig.subplots(1, 3)
    opt = run.record["function_space_optimum"]["value"]
    limit = res["loss"]

    ax = axes[0]
    ax.loglog(t, loss, color=LIMIT, label="L(w(t))")
    end = "limit L(w*)" if res["converged"] else "end of the run: L"
    if limit is not None:  # None: the run ended on a non-finite risk (it diverged)
        ax.axhline(limit, color=LIMIT, ls="--", lw=0.9, label=f"{end} = {limit:.4g}")
    if opt is not None and opt > 0:
        ax.axhline(opt, color=OPTIMUM, ls=":", lw=1.2, label=f"function-space optimum ℒ* = {opt:.4g}")
    ax.set(xlabel=_time_label(run), ylabel="risk L", title="Risk")
    ax.legend(loc="best")

    ax = axes[1]
    gap = loss - (limit if limit is not None else np.inf)
    good = gap > 1e-15 * max(1.0, abs(limit if limit is not None else 0.0))
    if good.any() and res["converged"]:
        ax.loglog(t[good], gap[good], color=LIMIT)
    else:
        ax.text(0.5, 0.5, "no limit: the run did not converge" if not res["converged"] else "L(w(t)) = L(w*)",
                transform=ax.transAxes, ha="center", va="center", color=ALERT)
        ax.set_xscale("log")
    ax.set(xlabel=_time_label(run), ylabel="L(w(t)) − L(w*)", title="Risk above the limit")

    ax = axes[2]
    ax.loglog(t, gn, color=LIMIT, label="‖∇L(w(t))‖")
    gtol = res.get("options", {}).get("gtol")
    if gtol:
        ax.axhline(gtol, color=START, ls="--", lw=0.9, label=f"gtol = {gtol:.2g}")
    if res["converged"] and res["gradient_norm"] and res["gradient_norm"] > 0:
        word = "certified" if res["certified"] else "polished (not certified)"
        ax.plot([t_stop], [res["gradient_norm"]], marker="*", ms=11, color=TRUTH if res["certified"] else ALERT,
                ls="none", label=f"{word} ‖∇L(w*)‖ = {res['gradient_norm']:.2g}")
    ax.set(xlabel=_time_label(run), ylabel="gradient norm ‖∇L‖", title="Gradient norm")
    ax.legend(loc="best")
    for ax in axes:
        if t_stop > 0:
            ax.axvline(t_stop, color=ALERT if not res["converged"] else TRUTH, lw=0.9, ls="-.")
    axes[0].plot([], [], color=TRUTH if res["converged"] else ALERT, ls="-.", lw=0.9, label=f"stop at t = {t_stop:.3g}")
    axes[0].legend(loc="best")
    return _finish(fig)


# ---------------------------------------------------------------------------------------------------- invariants
def invariants(run: RunData) -> Figure | None:
    """Drift ``|δ_i(t) − δ_i(0)| / ‖w(0)‖²`` of the conserved quantities ``δ_i = ‖w^{(i+1)}‖² − ‖w^{(i)}‖²``."""
    inv = run.arrays["invariants_trajectory"]
    if inv.shape[1] == 0:
        return None
    ok = _positive_times(run)
    scale = max(float(run.arrays["init"] @ run.arrays["init"]), 1e-300)
    drift = np.abs(inv - inv[0]) / scale
    floor = 1e-17
    fig = _new_figure(5.2, 3.2)
    ax = fig.subplots()
    for i in range(inv.shape[1]):
        label = f"δ_{i + 1} (layers {i + 1}, {i + 2})"
        ax.loglog(run.arrays["times"][ok], np.maximum(drift[ok, i], floor), label=label)
    ax.axhline(np.finfo(float).eps, color=START, ls=":", lw=0.9, label="machine ε")
    kind = "per-step change η²(‖g_{i+1}‖² − ‖g_i‖²) accumulates" if run.is_descent else "zero for the exact flow"
    ax.set(xlabel=_time_label(run), ylabel="|δ_i(t) − δ_i(0)| / ‖w(0)‖²",
           title=f"Conserved quantities: drift ({kind})")
    ax.legend(loc="best")
    return _finish(fig)


# ---------------------------------------------------------------------------------------------------- filters
def filters(run: RunData) -> Figure:
    """Every coefficient of every layer, and of the final filter ``v = π(w)``, against time."""
    a = run.arrays
    ok = _positive_times(run)
    t = a["times"][ok]
    traj = a["trajectory"][ok]
    panels = [(f"layer {i + 1}: w^({i + 1})  (k = {_size(k)})", traj[:, sl])
              for i, (sl, k) in enumerate(zip(run.layer_slices(), run.arch["filter_sizes"], strict=True))]
    panels.append((f"final filter v = π(w)  (k_v = {_size(run.arch['final_filter_size'])})",
                   a["final_filter_trajectory"][ok]))
    ncol = min(len(panels), 4)
    nrow = math.ceil(len(panels) / ncol)
    fig = _new_figure(2.8 * ncol, 2.6 * nrow)
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    for ax, (title, coeffs) in zip(axes, panels, strict=False):
        for j in range(coeffs.shape[1]):
            ax.semilogx(t, coeffs[:, j], lw=1.1)
        ax.axhline(0, color="black", lw=0.5)
        ax.set(title=title, xlabel=_time_label(run).split(" (")[0], ylabel="coefficient value")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return _finish(fig)


def final_filter(run: RunData) -> Figure:
    """The final filter at the start, at the limit, the function-space optimum and the planted truth (1D)."""
    a = run.arrays
    if run.arch["ndim"] != 1:
        return None
    kv = a["final_filter"].size
    j = np.arange(kv)
    fig = _new_figure(5.2, 3.0)
    ax = fig.subplots()
    series = [("start v(0)", a["final_filter_trajectory"][0], START, "o", -0.24),
              ("limit v(w*)", a["final_filter"], LIMIT, "o", -0.08),
              ("optimum v̂ (argmin ℒ)", a["optimum_filter"], OPTIMUM, "s", 0.08)]
    if "true_filter" in a:
        series.append(("planted v°", a["true_filter"], TRUTH, "D", 0.24))
    for label, v, color, marker, dx in series:
        v = np.asarray(v).ravel()
        ax.vlines(j + dx, 0, v, color=color, lw=1.6)
        ax.plot(j + dx, v, marker, color=color, ms=4.5, label=label)
    ax.axhline(0, color="black", lw=0.6)
    ax.set(xlabel="tap index j", ylabel="coefficient v_j", title="Final filter", xticks=j)
    ax.legend(loc="best")
    return _finish(fig)


# ---------------------------------------------------------------------------------------------------- roots
def polynomial_roots(coeffs: np.ndarray) -> np.ndarray:
    """Finite roots of ``Σ_j c_j t^j`` (vanishing leading coefficients are roots at infinity and are dropped)."""
    c = np.asarray(coeffs, dtype=np.float64).ravel()
    scale = float(np.max(np.abs(c))) if c.size else 0.0
    if scale == 0.0:
        return np.zeros(0, complex)
    nz = np.nonzero(np.abs(c) > 1e-13 * scale)[0]
    deg = int(nz[-1])
    return np.sort_complex(P.polyroots(c[: deg + 1]).astype(complex)) if deg > 0 else np.zeros(0, complex)


def _dilated(w: np.ndarray, S: int) -> np.ndarray:
    out = np.zeros((w.size - 1) * S + 1)
    out[::S] = w
    return out


def shared_roots(layer_roots: list[np.ndarray], tol: float = ROOT_TOL) -> list[tuple[int, int, complex]]:
    """``(i, l, ρ)`` (1-based layers ``i < l``) for roots ρ that two layers' polynomials share."""
    out = []
    for i in range(len(layer_roots)):
        for j in range(i + 1, len(layer_roots)):
            for z in layer_roots[i]:
                if any(abs(z - u) <= tol * (1 + max(abs(z), abs(u))) for u in layer_roots[j]):
                    out.append((i + 1, j + 1, complex(z)))
    return out


def roots(run: RunData) -> Figure | None:
    """1D: roots of each layer polynomial ``p_{w^(i)}(t^{S_{i−1}})`` and of ``p_v`` at the start and at the limit."""
    if run.arch["ndim"] != 1:
        return None
    a = run.arrays
    S = [s[0] for s in run.arch["cumulative_strides"]]
    start = [polynomial_roots(_dilated(w, S[i])) for i, w in enumerate(run.layer_filters(a["init"]))]
    limit = [polynomial_roots(_dilated(w, S[i])) for i, w in enumerate(run.layer_filters(a["limit"]))]
    shared = shared_roots(limit)
    shared_pts = [z for _, _, z in shared]
    panels = [(f"layer {i + 1}" + (f"  p(t^{S[i]})" if S[i] > 1 else ""), start[i], limit[i], None)
              for i in range(len(limit))]
    panels.append(("final filter p_v", polynomial_roots(a["final_filter_trajectory"][0]),
                   polynomial_roots(a["final_filter"]), polynomial_roots(a["optimum_filter"])))
    every = np.concatenate([np.concatenate([p[1], p[2]] + ([p[3]] if p[3] is not None else [])) for p in panels])
    finite = np.abs(every[np.isfinite(every)]) if every.size else np.zeros(0)
    radius = float(np.clip(np.quantile(finite, 0.9) * 1.25 if finite.size else 1.5, 1.3, 6.0))
    ncol = min(len(panels), 4)
    nrow = math.ceil(len(panels) / ncol)
    fig = _new_figure(2.75 * ncol, 2.75 * nrow + 0.45)
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    theta = np.linspace(0, 2 * np.pi, 200)
    for ax, (title, z0, z1, zopt) in zip(axes, panels, strict=False):
        ax.plot(np.cos(theta), np.sin(theta), color="black", lw=0.5, ls=":")
        ax.axhline(0, color="black", lw=0.5)
        ax.axvline(0, color="black", lw=0.5)
        _scatter_roots(ax, z0, radius, dict(marker="o", mfc="none", mec=START, ms=6.5, mew=1.1))
        if zopt is not None:
            _scatter_roots(ax, zopt, radius, dict(marker="x", color=OPTIMUM, ms=7, mew=1.4))
        _scatter_roots(ax, z1, radius, dict(marker="o", color=LIMIT, ms=5))
        hits = [z for z in z1 if any(abs(z - s) <= ROOT_TOL * 10 * (1 + abs(s)) for s in shared_pts)]
        _scatter_roots(ax, np.array(hits, complex), radius, dict(marker="o", mfc="none", mec=ALERT, ms=12, mew=1.8))
        ax.set(xlim=(-radius, radius), ylim=(-radius, radius), title=title, xlabel="Re ρ", ylabel="Im ρ")
        ax.set_aspect("equal")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], marker="o", mfc="none", mec=START, ls="none", label="start"),
        Line2D([], [], marker="o", color=LIMIT, ls="none", label="limit"),
        Line2D([], [], marker="o", mfc="none", mec=ALERT, ms=10, mew=1.8, ls="none", label="root shared by two layers"),
        Line2D([], [], marker="x", color=OPTIMUM, ls="none", label="optimum v̂ (argmin ℒ)"),
        Line2D([], [], color="black", lw=0.5, ls=":", label="unit circle"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=5)
    if any(np.abs(every[np.isfinite(every)]) > radius):
        fig.suptitle(f"roots with |ρ| > {radius:.2g} drawn as triangles on the border, with their modulus",
                     fontsize=8, fontweight="normal")
    return _finish(fig)


def _scatter_roots(ax, z: np.ndarray, radius: float, style: dict) -> None:
    z = np.asarray(z, complex)
    inside = np.abs(z) <= radius
    ax.plot(z[inside].real, z[inside].imag, ls="none", **style)
    for u in z[~inside]:
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
    if run.arch["ndim"] != 2:
        return None
    a = run.arrays
    kv = tuple(run.arch["final_filter_size"])
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
    """Example inputs, network outputs (at the limit and at the optimum) and targets."""
    a = run.arrays
    x, y = a["example_inputs"], a["example_targets"]
    out, opt = a["example_outputs_limit"], a["example_outputs_optimum"]
    n = x.shape[0]
    if run.arch["ndim"] == 1:
        kv, sv = run.arch["final_filter_size"], run.arch["final_stride"]
        pos = np.arange(y.shape[1]) * sv + (kv - 1) / 2  # input position each output is centred on
        fig = _new_figure(3.5 * n, 2.9)
        axes = np.atleast_1d(fig.subplots(1, n))
        for j, ax in enumerate(axes):
            ax.plot(np.arange(x.shape[1]), x[j], color=START, lw=1.0, label="input x")
            ax.plot(pos, y[j], color="black", lw=1.6, label="target y")
            ax.plot(pos, out[j], color=LIMIT, lw=1.3, ls="--", label="output at limit")
            ax.plot(pos, opt[j], color=OPTIMUM, lw=1.1, ls=":", label="output of optimum v̂")
            ax.set(title=f"sample {j + 1}", xlabel="input position (sample index)", ylabel="signal value")
        axes[0].legend(loc="best")
        return _finish(fig)
    n = min(n, 2)
    cols = [("input x", x), ("output at limit", out), ("output of optimum v̂", opt), ("target y", y)]
    (kh, kw), (sh, sw) = run.arch["final_filter_size"], run.arch["final_stride"]
    h, w = x.shape[1:]
    fig = _new_figure(2.3 * len(cols), 2.3 * n + 0.3)
    axes = fig.subplots(n, len(cols), squeeze=False)
    for i in range(n):
        lo, hi = float(np.min(y[i])), float(np.max(y[i]))
        for j, (title, arr) in enumerate(cols):
            ax = axes[i, j]
            _bare(ax)
            img = arr[i]
            if j == 0:
                extent = (-0.5, w - 0.5, h - 0.5, -0.5)
            else:  # output pixel a sits over the input pixel its receptive field is centred on
                r0, c0 = (kh - 1) / 2, (kw - 1) / 2
                extent = (c0 - sw / 2, c0 + sw * (img.shape[1] - 0.5), r0 + sh * (img.shape[0] - 0.5), r0 - sh / 2)
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest", extent=extent)
            ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
            ax.set_title(title if i == 0 else "")
    return _finish(fig)


def _bare(ax) -> None:
    """An image panel: no grid, ticks or spines."""
    ax.grid(False)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


# ---------------------------------------------------------------------------------------------------- hessian
def hessian(run: RunData) -> Figure | None:
    """Eigenvalues of the Hessian of ``L`` at the limit, on the complement of the rescaling directions."""
    if "hessian_eigenvalues" not in run.arrays:
        return None
    eig = np.sort(run.arrays["hessian_eigenvalues"])
    scale = float(np.max(np.abs(eig))) if eig.size else 1.0
    tol = 1e-7 * max(scale, 1e-300)
    fig = _new_figure(5.2, 3.0)
    ax = fig.subplots()
    idx = np.arange(1, eig.size + 1)
    colors = np.where(eig < -tol, ALERT, np.where(np.abs(eig) <= tol, OPTIMUM, LIMIT))
    ax.vlines(idx, 0, eig, colors=colors, lw=1.4)
    ax.scatter(idx, eig, c=colors, s=22, zorder=3)
    if eig.size and eig[0] > tol:
        ax.set_yscale("log")
    else:
        small = np.abs(eig[np.abs(eig) > tol])
        ax.set_yscale("symlog", linthresh=float(small.min()) if small.size else max(tol, 1e-300))
    ax.axhline(0, color="black", lw=0.6)
    cp = run.record["result"].get("critical_point") or {}
    ax.set(xlabel="index (ascending)", ylabel="eigenvalue λ",
           title=f"Hessian spectrum at the limit: {cp.get('kind', '?').replace('_', ' ')}")
    ax.set_xticks(idx if idx.size <= 20 else idx[:: max(1, idx.size // 10)])
    handles = [Line2D([], [], marker="o", color=c, ls="none", label=lab) for c, lab in
               ((LIMIT, "λ > 0"), (OPTIMUM, "λ ≈ 0 (degenerate)"), (ALERT, "λ < 0 (descent direction)"))]
    ax.legend(handles=handles, loc="best")
    return _finish(fig)


def _size(k: Any) -> str:
    return "×".join(str(v) for v in k) if isinstance(k, list | tuple) else str(k)


#: ``(file stem, function, caption)`` for every figure, in report order.
FIGURES: list[tuple[str, Callable[[RunData], Figure | None], str]] = [
    ("convergence", convergence,
     "Risk and gradient norm against time on log–log axes. The dash-dotted line marks where the run stopped; the "
     "star is the certified gradient norm after Newton polishing. The dotted orange line is the function-space "
     "optimum ℒ* (the best any final filter can do; the global minimum of L when the architecture is filling)."),
    ("roots", roots,
     "Roots of each layer polynomial and of the final filter p_v in the complex plane, at the start (hollow) and at "
     "the limit (filled). Red rings mark roots shared by two layers — the rank-deficient points of π where "
     "gradient flow can stop short of the optimum (orange crosses: roots of the optimal final filter)."),
    ("final_filter", final_filter,
     "Final filter v = π(w): start, limit, the function-space optimum v̂, and the planted truth when there is one."),
    ("filter_images", filter_images,
     "Filters as images at the start and at the limit (blue negative, red positive; one colour scale per column)."),
    ("examples", examples,
     "Example inputs, the network's output at the limit, the output of the optimal final filter, and the target."),
    ("filters", filters, "Every coefficient of every layer, and of the final filter, along the trajectory."),
    ("invariants", invariants,
     "Drift of the conserved quantities δ_i = ‖w^(i+1)‖² − ‖w^(i)‖², relative to ‖w(0)‖²: an accuracy check of the "
     "integrator (exactly conserved by gradient flow; gradient descent changes them by η²(‖g_{i+1}‖² − ‖g_i‖²) "
     "per step)."),
    ("hessian", hessian,
     "Eigenvalues of the Hessian of L at the limit, restricted to the complement of the N − 1 rescaling directions: "
     "all positive — local minimum; a negative one — strict saddle; zeros — degenerate."),
]
