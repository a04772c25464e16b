r"""Gradient flow, gradient descent and stochastic gradient descent side by side, from one initialization.

:func:`compare_methods` runs the three from the same ``w(0)`` and reports where each ends (its outcome, and whether
two of them reach the same limit ``v* = π(w*)``) and how far the discrete iterates stay from the flow at matched
times: ``d_k = ‖w_k − w(t_k)‖`` with ``t_k`` the iterate's flow-time equivalent (``kη`` for a constant step, see
:func:`~lcnflow.stochastic_gradient_descent`).  :func:`distance_to_flow` measures how ``max_k d_k`` on ``[0, T]``
shrinks as ``η → 0``.

:func:`outcome_rates` turns many runs into outcome fractions per cell with 95 % Wilson score intervals, and
:func:`sgd_sweep` makes those runs: the flow and SGD over step sizes, batch sizes and seeds, from several
initializations.  Outcomes use the vocabulary of sweep summaries (``global_minimum``, ``spurious``,
``uncertified_endpoint`` …, :func:`outcome`); an SGD run counts as ``uncertified_endpoint`` unless its polished
endpoint was certified as a minimum.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lcnflow.analysis.limits import same_limit as same_final_filter
from lcnflow.flow import FlowResult, gradient_descent, gradient_flow, stochastic_gradient_descent
from lcnflow.model.conv import as_filters, flatten
from lcnflow.model.risk import EmpiricalRisk

__all__ = [
    "OUTCOMES",
    "Comparison",
    "MethodRun",
    "compare_methods",
    "distance_to_flow",
    "format_rates",
    "outcome",
    "outcome_rates",
    "same_limit",
    "sgd_sweep",
    "wilson_interval",
]

#: Outcomes of a run, in the order they are assigned (the first that applies), as in sweep summaries.
OUTCOMES = ("uncertified_endpoint", "unclassified", "global_minimum", "spurious", "strict_saddle", "degenerate",
            "undecided_on_m", "local_minimum")


def outcome(result: FlowResult) -> str:
    """Where a run ended, as one word (the first that applies).

    ``uncertified_endpoint`` (the run ended without a certified limit; SGD: its polished endpoint was not a certified
    minimum), ``unclassified`` (classification switched off), ``global_minimum``, ``spurious`` (rank-deficient
    origin, not critical on the function space), ``strict_saddle``, ``degenerate``, ``undecided_on_m`` (a minimum
    whose loss matches a best-found bound on ℒ*_M: neither shown global nor local on M), ``local_minimum``.
    """
    if not result.converged:
        return "uncertified_endpoint"
    cp = result.critical_point
    if cp is None:
        return "unclassified"
    if cp.kind == "global_minimum":
        return "global_minimum"
    if cp.spurious:
        return "spurious"
    if cp.kind in ("strict_saddle", "degenerate"):
        return cp.kind
    return "undecided_on_m" if cp.global_on_m is None else "local_minimum"


def same_limit(a: FlowResult, b: FlowResult) -> bool:
    r"""Whether two certified runs reached the same limit in function space
    (:func:`lcnflow.analysis.limits.same_limit` of their final filters).  ``False`` unless both are certified."""
    return bool(a.certified and b.certified and same_final_filter(a.final_filter, b.final_filter))


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    r"""Wilson score interval for a binomial proportion.

    With ``p̂ = k/n`` and ``z`` the ``(1 + confidence)/2`` normal quantile:

    .. math:: \frac{p̂ + z^2/(2n) ± z\sqrt{p̂(1−p̂)/n + z^2/(4n^2)}}{1 + z^2/n}.

    Unlike ``p̂ ± z·se`` it stays inside ``[0, 1]`` and is not empty at ``k = 0`` or ``k = n`` (``7/8`` gives
    ``[0.53, 0.98]``).

    Raises
    ------
    ValueError
        Unless ``0 ≤ successes ≤ trials``, ``trials ≥ 1`` and ``0 < confidence < 1``.
    """
    if not (isinstance(trials, int | np.integer) and trials >= 1):
        raise ValueError(f"trials: must be a positive integer, got {trials!r}")
    if not (isinstance(successes, int | np.integer) and 0 <= successes <= trials):
        raise ValueError(f"successes: must be an integer in [0, trials = {trials}], got {successes!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence!r}")
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    n, p = float(trials), successes / trials
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def outcome_rates(records: Iterable[tuple[Hashable, str]], confidence: float = 0.95) -> list[dict[str, Any]]:
    """Outcome fractions per cell with Wilson intervals.

    Parameters
    ----------
    records : iterable of (cell, outcome)
        One pair per run: any hashable cell label (e.g. ``("sgd", 0.003, 8)``) and the run's :func:`outcome`.
    confidence : float

    Returns
    -------
    list of dict
        Per cell, in first-seen order: ``cell``, ``runs`` and ``outcomes``, a dict ``outcome → {"count",
        "fraction", "interval"}`` for every outcome that occurred in any cell (count 0 included), in the order of
        :data:`OUTCOMES`.
    """
    counts: dict[Hashable, Counter] = {}
    seen: set[str] = set()
    for cell, out in records:
        counts.setdefault(cell, Counter())[out] += 1
        seen.add(out)
    names = [o for o in OUTCOMES if o in seen] + sorted(seen - set(OUTCOMES))
    rows = []
    for cell, c in counts.items():
        n = sum(c.values())
        rows.append({"cell": cell, "runs": n, "outcomes": {
            o: {"count": c[o], "fraction": c[o] / n, "interval": wilson_interval(c[o], n, confidence)} for o in names
        }})
    return rows


def format_rates(rows: Sequence[Mapping[str, Any]], cell_name: str = "cell") -> str:
    """A Markdown table of :func:`outcome_rates`: ``k/n (lo–hi %)`` per outcome, one row per cell."""
    if not rows:
        return ""
    names = list(rows[0]["outcomes"])
    head = f"| {cell_name} | runs | " + " | ".join(n.replace("_", " ") for n in names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 2)]
    for r in rows:
        cell = r["cell"] if isinstance(r["cell"], str) else ", ".join(str(x) for x in np.atleast_1d(r["cell"]))
        parts = [f"{o['count']}/{r['runs']} ({100 * o['interval'][0]:.0f}–{100 * o['interval'][1]:.0f} %)"
                 for o in r["outcomes"].values()]
        lines.append(f"| {cell} | {r['runs']} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- side by side
@dataclass
class MethodRun:
    """One discrete method of a :class:`Comparison`.

    Attributes
    ----------
    label : str
    result : FlowResult
    steps, times : ndarray
        Matched step indices ``k`` and their flow times ``t_k``.
    states : ndarray
        ``w_k`` (one row per matched step; after a run stopped early, its last iterate).
    distance_to_flow : ndarray
        ``‖w_k − w(t_k)‖``.
    outcome : str
    max_distance_to_flow : float
        ``max_k ‖w_k − w(t_k)‖`` over every step of the run (every ``s``-th step when the run is longer than
        :data:`DENSE_STEPS`), not only the matched steps above: a maximum at an escape from a plateau lasts a few
        dozen steps and falls between log-spaced samples.
    time_of_max : float
        ``t_k`` where that maximum is reached (its step is among ``steps``).
    """

    label: str
    result: FlowResult
    steps: np.ndarray
    times: np.ndarray
    states: np.ndarray
    distance_to_flow: np.ndarray
    outcome: str
    max_distance_to_flow: float = 0.0
    time_of_max: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (the result without its trajectory)."""
        return {"label": self.label, "outcome": self.outcome, "steps": self.steps.tolist(),
                "times": self.times.tolist(), "distance_to_flow": self.distance_to_flow.tolist(),
                "max_distance_to_flow": self.max_distance_to_flow, "time_of_max": self.time_of_max,
                "result": self.result.to_dict()}


@dataclass
class Comparison:
    """Gradient flow and discrete methods from one ``w(0)``: see :func:`compare_methods`.

    Attributes
    ----------
    flow : FlowResult
    flow_outcome : str
    runs : dict of str → MethodRun
        ``"gradient_descent"`` and/or ``"sgd"``.
    scale : float
        ``max(‖w(0)‖, ‖w*_flow‖)``: distances are small when small against it.
    """

    flow: FlowResult
    flow_outcome: str
    runs: dict[str, MethodRun] = field(default_factory=dict)
    scale: float = 1.0

    def same_limit_as_flow(self, name: str) -> bool:
        """Whether run ``name`` reached the flow's limit (see :func:`same_limit`)."""
        return same_limit(self.flow, self.runs[name].result)

    def table(self) -> list[dict[str, Any]]:
        """One row per method: outcome, certified, ``L``, same limit as the flow, largest distance to the flow."""
        rows = [{"method": "gradient flow", "outcome": self.flow_outcome, "certified": self.flow.certified,
                 "loss": self.flow.loss, "same_limit_as_flow": True, "max_distance_to_flow": 0.0,
                 "polish_distance": self.flow.polish_distance}]
        for name, run in self.runs.items():
            rows.append({"method": run.label, "outcome": run.outcome, "certified": run.result.certified,
                         "loss": run.result.loss, "same_limit_as_flow": self.same_limit_as_flow(name),
                         "max_distance_to_flow": run.max_distance_to_flow,
                         "polish_distance": run.result.polish_distance})
        return rows

    def summary(self) -> str:
        """A few lines a person can read."""
        lines = []
        for row in self.table():
            lines.append(
                f"{row['method']:<48} {row['outcome'].replace('_', ' '):<16} L = {row['loss']:.8g}"
                + ("" if row["method"] == "gradient flow" else
                   f"  same limit as the flow: {'yes' if row['same_limit_as_flow'] else 'no'};"
                   f" max ‖w_k − w(t_k)‖ = {row['max_distance_to_flow']:.3g} (scale {self.scale:.3g});"
                   f" polish moved {row['polish_distance']:.2g}")
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"flow": self.flow.to_dict(), "flow_outcome": self.flow_outcome, "scale": self.scale,
                "runs": {k: r.to_dict() for k, r in self.runs.items()}, "table": self.table()}

    def plot(self, path: str | None = None):
        """Loss curves ``L(t)`` of all methods in one figure, and ``‖w_k − w(t_k)‖`` against ``t``.

        Returns the Matplotlib figure (saved to ``path`` when given).
        """
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
        floor = min([self.flow.loss] + [r.result.loss for r in self.runs.values()])
        for label, res, style in [("gradient flow", self.flow, "-k")] + [
                (r.label, r.result, s) for r, s in zip(self.runs.values(), ("--", ":"), strict=False)]:
            t, loss = res.times[1:], res.losses[1:]
            ok = np.isfinite(loss)
            ax1.loglog(t[ok], np.maximum(loss[ok] - floor, 1e-16), style, label=label)
        ax1.set(xlabel="flow time t", ylabel="L(w(t)) − min over methods", title="Loss curves")
        ax1.legend()
        for run in self.runs.values():
            ok = run.times > 0
            ax2.loglog(run.times[ok], np.maximum(run.distance_to_flow[ok], 1e-16), ".-", label=run.label)
        ax2.set(xlabel="t = Σ η_k", ylabel="‖w_k − w(t_k)‖", title="Distance to the flow at matched times")
        ax2.legend()
        fig.tight_layout()
        if path is not None:
            fig.savefig(path)
        return fig


#: Steps at which :func:`compare_methods` measures the distance to the flow, at most: every step of a run up to
#: this length, every ``s``-th step (``s = ⌈budget / DENSE_STEPS⌉``) beyond.
DENSE_STEPS = 50_000


def _dense_steps(budget: int, size: int) -> np.ndarray:
    """Every step index up to ``budget`` (every ``s``-th one when that would exceed :data:`DENSE_STEPS` steps or
    64 MiB of saved states of ``size`` numbers), and ``budget`` itself."""
    cap = max(1_000, min(DENSE_STEPS, (64 << 20) // (8 * max(size, 1))))
    stride = max(1, -(-budget // cap))
    return np.unique(np.concatenate([np.arange(0, budget + 1, stride), [max(budget, 0)]]))


def _matched_steps(budget: int, num: int) -> np.ndarray:
    """``0`` and about ``num`` log-spaced step indices up to ``budget``."""
    if budget <= 0:
        return np.zeros(1, dtype=int)
    return np.unique(np.concatenate([[0], np.geomspace(1, budget, num).round().astype(int)]))


def _flow_at(flow: FlowResult, times: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Flow states at ``times`` from ``saved_states`` (sorted times ``order``); times the flow never reached (it
    stopped at its limit) take its last state."""
    states = np.empty_like(flow.saved_states)
    states[order] = flow.saved_states
    missing = ~np.all(np.isfinite(states), axis=1) | (times > flow.t_final)
    states[missing] = flow.trajectory[-1]
    return states


def compare_methods(
    risk: EmpiricalRisk,
    init: Sequence[np.ndarray] | np.ndarray,
    step_size: float,
    batch_size: int,
    *,
    epochs: int | None = None,
    max_steps: int | None = None,
    seed: int = 0,
    gd: bool = True,
    gd_max_steps: int | None = None,
    sgd_options: Mapping[str, Any] | None = None,
    flow_options: Mapping[str, Any] | None = None,
    num_matched: int = 60,
) -> Comparison:
    r"""Run gradient flow, gradient descent (fixed step ``η``) and SGD (step ``η``, batch ``B``) from ``init``.

    SGD runs its budget (``epochs``/``max_steps``, as in :func:`~lcnflow.stochastic_gradient_descent`); GD runs until
    ``‖∇L‖ ≤ gtol`` (or ``gd_max_steps``).  Each iterate ``w_k`` up to SGD's budget (every step, or every ``s``-th
    beyond :data:`DENSE_STEPS`) is compared with the flow at the same time: ``d_k = ‖w_k − w(t_k)‖``, the flow's
    state coming from its dense output (after the flow stopped at its limit, the limit).  The largest ``d_k`` is
    ``max_distance_to_flow`` of each run; the run keeps ``d_k`` at about ``num_matched`` log-spaced steps and at
    the step of the maximum (the curve of :meth:`Comparison.plot`).

    Parameters
    ----------
    risk : EmpiricalRisk
    init : list of ndarray or flat ndarray
    step_size, batch_size : float, int
        ``η`` of GD and SGD, ``B`` of SGD.
    epochs, max_steps, seed
        SGD's budget and seed.
    gd : bool
        Also run gradient descent.
    gd_max_steps : int, optional
        GD's step limit (default ``max(SGD's budget, 100 000)``): GD stops when ``‖∇L‖ ≤ gtol``, and without
        reaching it its endpoint is not polished.
    sgd_options : mapping, optional
        Further keywords of :func:`~lcnflow.stochastic_gradient_descent` (schedule, momentum, sampling, …).
    flow_options : mapping, optional
        Keywords of :func:`~lcnflow.gradient_flow` (default ``rtol = 1e-9``, ``atol = 1e-12``, so the flow's own
        error is far below the distances measured).
    num_matched : int
        Log-spaced steps kept in each :class:`MethodRun` (the maximum is taken over every step regardless).

    Returns
    -------
    Comparison
    """
    w0 = flatten(as_filters(risk.arch, init, "init"))
    m = risk.num_samples
    per_epoch = -(-m // batch_size) if isinstance(batch_size, int) and batch_size >= 1 else 1
    if epochs is None and max_steps is None:
        epochs = 100
    budget = int(min(epochs * per_epoch if epochs is not None else math.inf, max_steps or math.inf))
    shown = _matched_steps(budget, num_matched)
    steps = np.union1d(shown, _dense_steps(budget, w0.size))
    sgd_res = stochastic_gradient_descent(risk, w0, step_size, batch_size, epochs=epochs, max_steps=max_steps,
                                          seed=seed, save_at_steps=steps, **dict(sgd_options or {}))
    sgd_times = sgd_res.saved_times
    reached = np.isfinite(sgd_times)
    runs_spec: list[tuple[str, str, FlowResult, np.ndarray, np.ndarray, np.ndarray]] = []
    if gd:
        kept: dict[int, np.ndarray] = {0: w0.copy()}
        wanted = set(steps.tolist())
        count = [0]

        def keep(t: float, w: np.ndarray, loss: float, gnorm: float) -> None:
            count[0] += 1
            if count[0] in wanted:
                kept[count[0]] = w.copy()

        gd_res = gradient_descent(risk, w0, step_size, max_steps=gd_max_steps or max(budget, 100_000), callback=keep)
        last = gd_res.trajectory[-1]
        gd_states = np.array([kept.get(int(k), last) for k in steps])
        gd_times = step_size * steps.astype(float)  # a run that stopped at its limit stays there
        runs_spec.append(("gradient_descent", f"gradient descent, η = {step_size:g}", gd_res, steps, gd_times,
                          gd_states))
    runs_spec.append(("sgd", f"SGD, B = {batch_size}, η = {step_size:g}", sgd_res, steps[reached],
                      sgd_times[reached], sgd_res.saved_states[reached]))
    all_times = np.concatenate([spec[4] for spec in runs_spec])
    # GD's kη and SGD's Σ η_i agree up to rounding: the flow is saved once per time (times within 1e-9 relative
    # merged, far below any distance measured here), since save points 1e-14 apart would make it crawl
    grid = np.unique(all_times)
    if grid.size:
        grid = grid[np.concatenate([[True], np.diff(grid) > 1e-9 * np.maximum(1.0, np.abs(grid[1:]))])]
    fopts = {"rtol": 1e-9, "atol": 1e-12, **dict(flow_options or {})}
    flow = gradient_flow(risk, w0, save_at=grid, **fopts)
    grid_states = _flow_at(flow, grid, np.arange(grid.size))
    flow_states = grid_states[np.clip(np.searchsorted(grid, all_times * (1 + 1e-9), side="right") - 1, 0, None)]
    scale = max(float(np.linalg.norm(w0)), float(np.linalg.norm(flatten(flow.limit))), 1e-300)
    cmp = Comparison(flow=flow, flow_outcome=outcome(flow), scale=scale)
    start = 0
    for name, label, res, k, t, states in runs_spec:
        ref = flow_states[start : start + t.size]
        start += t.size
        k = np.asarray(k)
        d = np.linalg.norm(states - ref, axis=1)
        top = int(np.argmax(d)) if d.size else 0
        keep = np.isin(k, shown)
        if d.size:
            keep[top] = True
        cmp.runs[name] = MethodRun(label, res, k[keep], t[keep], states[keep], d[keep], outcome(res),
                                   max_distance_to_flow=float(d[top]) if d.size else 0.0,
                                   time_of_max=float(t[top]) if d.size else 0.0)
    return cmp


def distance_to_flow(
    risk: EmpiricalRisk,
    init: Sequence[np.ndarray] | np.ndarray,
    step_sizes: Sequence[float],
    batch_size: int,
    t_end: float,
    *,
    seeds: Sequence[int] = (0,),
    sampling: str = "without_replacement",
    flow_options: Mapping[str, Any] | None = None,
) -> dict[float, float]:
    r"""``η ↦`` mean over seeds of ``max_{k: kη ≤ T} ‖w_k − w(kη)‖`` for constant-step SGD with batch ``B``.

    The flow is integrated once at ``rtol = 10⁻¹⁰`` (dense output at every ``kη``).  For reshuffled epochs the
    distance is of order ``η`` (over an epoch at a fixed point the batch gradients sum to the full gradient); with
    replacement the noise does not cancel and it is of order ``√η``.
    """
    w0 = flatten(as_filters(risk.arch, init, "init"))
    out: dict[float, float] = {}
    fopts = {"rtol": 1e-10, "atol": 1e-13, "classify": False, **dict(flow_options or {})}
    for eta in step_sizes:
        n = max(1, round(t_end / eta))
        steps = np.arange(n + 1)
        flow = gradient_flow(risk, w0, save_at=eta * steps, **fopts)
        ref = _flow_at(flow, eta * steps, np.arange(n + 1))
        dists = []
        for seed in seeds:
            res = stochastic_gradient_descent(risk, w0, eta, batch_size, max_steps=n, seed=seed, sampling=sampling,
                                              save_at_steps=steps, classify=False)
            dists.append(float(np.max(np.linalg.norm(res.saved_states - ref, axis=1))))
        out[float(eta)] = float(np.mean(dists))
    return out


def sgd_sweep(
    risk: EmpiricalRisk,
    inits: Sequence[Sequence[np.ndarray] | np.ndarray],
    *,
    step_sizes: Sequence[float],
    batch_sizes: Sequence[int],
    seeds: Sequence[int] = (0,),
    epochs: int | None = None,
    max_steps: int | None = None,
    flow_time: float | None = None,
    anneal: tuple[float, float] | None = None,
    flow: bool = True,
    sgd_options: Mapping[str, Any] | None = None,
    flow_options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Gradient flow from each init, and SGD from each init for every step size, batch size and seed.

    SGD's budget is ``epochs``/``max_steps``, or with ``flow_time = T`` the same flow time for every step size:
    ``⌈T/η⌉`` steps (``T`` is then the flow time ``Σ η_k`` for a constant step without momentum).  Comparing step
    sizes at a fixed number of epochs compares runs that travelled different flow times.

    ``anneal = (f, γ)`` (with ``flow_time``) runs the first ``⌈f·T/η⌉`` steps at ``η`` and the rest at ``γη`` (the
    ``"step"`` schedule with ``decay_steps = ⌈f·T/η⌉``), so that the iterates settle before the endpoint is
    polished; ``sgd_options`` may not then set a schedule.

    Returns
    -------
    list of dict
        One record per run: ``method`` (``"gradient_flow"`` or ``"sgd"``), ``step_size``, ``batch_size``,
        ``init`` (index), ``seed``, ``outcome``, ``loss``, ``certified``, ``same_limit_as_flow`` (SGD, when the flow
        ran), ``polish_distance``, ``t_final``, ``num_steps``, ``wall_time``, ``cell``.
        ``outcome_rates((r["cell"], r["outcome"]) for r in records)`` gives the table.
    """
    if anneal is not None and (flow_time is None or not (0 < anneal[0] <= 1 and 0 < anneal[1] <= 1)):
        raise ValueError(f"anneal: needs flow_time and a pair (fraction in (0, 1], factor in (0, 1]), got {anneal!r}")
    records: list[dict[str, Any]] = []
    for i, init in enumerate(inits):
        gf = None
        if flow:
            gf = gradient_flow(risk, init, **dict(flow_options or {}))
            records.append({"method": "gradient_flow", "step_size": None, "batch_size": None, "init": i,
                            "seed": None, "outcome": outcome(gf), "loss": gf.loss, "certified": gf.certified,
                            "same_limit_as_flow": True, "polish_distance": gf.polish_distance,
                            "t_final": gf.t_final, "num_steps": gf.num_steps, "wall_time": gf.wall_time,
                            "cell": "gradient flow"})
        for eta in step_sizes:
            for bs in batch_sizes:
                steps = max_steps if flow_time is None else math.ceil(flow_time / eta)
                opts = dict(sgd_options or {})
                if anneal is not None and flow_time is not None:
                    opts.update(schedule="step", decay_steps=math.ceil(anneal[0] * flow_time / eta),
                                decay_factor=anneal[1])
                for seed in seeds:
                    res = stochastic_gradient_descent(risk, init, eta, bs, epochs=epochs, max_steps=steps,
                                                      seed=seed, **opts)
                    records.append({
                        "method": "sgd", "step_size": eta, "batch_size": bs, "init": i, "seed": seed,
                        "outcome": outcome(res), "loss": res.loss, "certified": res.certified,
                        "same_limit_as_flow": same_limit(gf, res) if gf is not None else None,
                        "polish_distance": res.polish_distance, "t_final": res.t_final,
                        "num_steps": res.num_steps, "wall_time": res.wall_time,
                        "cell": f"SGD B = {bs}, η = {eta:g}",
                    })
    return records
