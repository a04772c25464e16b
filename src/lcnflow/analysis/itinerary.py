r"""The itinerary of a run: the plateaus it crossed and the critical points it passed on the way.

From a small initialization a deep LCN's flow first lingers near the origin (a degenerate saddle), then may linger
near further saddles before it settles — *saddle-to-saddle* dynamics.  On the record of a run (dense wherever the
run moves, and log-spaced in the time since each move: :class:`~lcnflow.dynamics.result.Recorder`) a **plateau** is a
stretch on which

* the loss stays within ``1e-3 Δ`` of one level (``Δ = L(w_0) − L(limit)``, the run's whole descent),
* while the time grows by a factor of at least ten: for the start's plateau the flow time itself
  (``t_leave ≥ 10 t₁``, ``t₁`` the first recorded time after 0), for any later one the time since the escape from
  the start (``t_leave − t_e ≥ 10 (t_enter − t_e)``, ``t_e`` the last recorded time on the start's level; a
  plateau reached an instant after a late escape is measured on its own time scale, not on ``log t`` from 0),
* above the final level by more than ``2e-3 Δ`` (the approach to the limit is not a plateau) and, after the escape,
  below the start's level by as much (nor is the departure from the start),
* while the flow is slow for the reason that makes it a plateau: near a critical point
  (``‖∇L‖ ≤ 1e-2 · S(w)``, :func:`~lcnflow.analysis.certify.gradient_scale`) or near the origin, where ``dπ`` is
  small (``D(w) ≤ 1e-2 D_ref``, the cofactor size of parameters of the problem's natural size).

A plateau at the level ``ℒ(0)`` is attributed to the origin ``w = 0`` (a critical point whenever the network has
two or more layers).  On any other plateau the state of least relative gradient is Newton-polished (within
``‖w‖``) and the critical point found is classified.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lcnflow.analysis.certify import _cofactor_size, gradient_scale, polish, reference_size
from lcnflow.analysis.critical import CriticalPoint, classify_critical_point
from lcnflow.analysis.symmetry import layer_norms
from lcnflow.model.risk import EmpiricalRisk

#: Loss tolerance of a plateau, relative to the run's whole descent.
LEVEL_RTOL = 1e-3
#: A plateau lasts at least this factor in time (in the time since the escape from the start, after it).
MIN_TIME_FACTOR = 10.0
#: A plateau lies above the final level by more than this many level tolerances.
ABOVE_FINAL = 2.0
#: Note of a plateau left unidentified because ``max_time`` ran out.
PLATEAU_OUT_OF_TIME = "not identified: max_time ran out"


@dataclass(frozen=True)
class Plateau:
    """One plateau of a run (see the module docstring).

    Attributes
    ----------
    t_enter, t_leave : float
        First and last recorded time on the plateau.
    loss : float
        The loss level (at the polished critical point when one was found, else the median on the plateau).
    critical_point : CriticalPoint or None
        Classification of the nearby critical point (``None`` when none was found).
    point : ndarray or None
        That critical point (flat parameters).
    distance : float
        How far it lies from the flow's state on the plateau.
    gradient_norm : float
        ``‖∇L‖`` at the critical point (or at the state, when none was found).
    note : str
        How the critical point was found.
    """

    t_enter: float
    t_leave: float
    loss: float
    critical_point: CriticalPoint | None
    point: np.ndarray | None
    distance: float
    gradient_norm: float
    note: str

    @property
    def kind(self) -> str:
        """Kind of the nearby critical point (``"higher_order_saddle"`` for a degenerate point along whose null
        directions ``L`` decreases), or ``"unidentified"``."""
        cp = self.critical_point
        if cp is None:
            return "unidentified"
        return "higher_order_saddle" if cp.kind == "degenerate" and cp.not_a_minimum else cp.kind

    @property
    def index(self) -> int | None:
        """Number of negative Hessian eigenvalues (on the symmetry complement) at the critical point (the
        classification's own count, with its scale-free threshold)."""
        return None if self.critical_point is None else self.critical_point.index

    def summary(self) -> str:
        """One line a person can read."""
        cp = self.critical_point
        what = "no critical point identified" if cp is None else (
            f"{self.kind.replace('_', ' ')}, index {self.index}, rank dπ {cp.dpi_rank}/{cp.function_space_dim}"
            + (f"; {'; '.join(cp.degeneracies)}" if cp.degeneracies and self.point is not None
               and np.any(self.point) else ""))  # at the origin every filter is zero: nothing more to name
        return f"t ∈ [{self.t_enter:.3g}, {self.t_leave:.3g}]: L ≈ {self.loss:.8g} — {what} ({self.note})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        cp = self.critical_point
        return {
            "t_enter": self.t_enter, "t_leave": self.t_leave, "loss": self.loss, "kind": self.kind,
            "index": self.index, "dpi_rank": cp.dpi_rank if cp else None,
            "degeneracies": list(cp.degeneracies) if cp else [],
            "distance": self.distance, "gradient_norm": self.gradient_norm, "note": self.note,
            "point": self.point.tolist() if self.point is not None else None,
        }


def find_plateaus(risk: EmpiricalRisk, times: np.ndarray, losses: np.ndarray, grads: np.ndarray,
                  states: np.ndarray, final_loss: float, certify_tol: float,
                  scale: Callable[[np.ndarray], float] | None = None,
                  w_ref: float | None = None, *, deadline: float = math.inf,
                  check_spurious: bool = True) -> list[Plateau]:
    """The plateaus of a recorded run, each with its nearby critical point (see the module docstring).

    ``scale(w)`` is the gradient scale ``S`` (default :func:`~lcnflow.analysis.certify.gradient_scale`), ``w_ref`` the
    natural size of the parameters (default :func:`~lcnflow.analysis.certify.reference_size` at the first state).
    Plateaus found after ``deadline`` (``time.perf_counter``) are listed without their critical point (note
    :data:`PLATEAU_OUT_OF_TIME`); ``check_spurious`` is passed to
    :func:`~lcnflow.analysis.critical.classify_critical_point`, whose walk over the fibre also stops at ``deadline``."""
    scale = scale or functools.partial(gradient_scale, risk)
    w_ref = w_ref if w_ref is not None else reference_size(risk, np.asarray(states[0]))
    times, losses, grads = (np.asarray(a, dtype=float) for a in (times, losses, grads))
    if times.size < 3 or not np.isfinite(final_loss):
        return []
    drop = float(losses[0]) - final_loss
    if not (drop > 1e-12 * max(abs(final_loss), abs(float(losses[0])), 1e-300)):
        return []
    tol = LEVEL_RTOL * drop
    arch = risk.arch
    rel = np.full(times.size, np.nan)
    slow = np.zeros(times.size, bool)
    d_ref = math.nan  # (set at the first flat stretch: most runs have none)

    def assess(idx):  # relative gradient and "slow" of the recorded states idx (only on flat stretches)
        nonlocal d_ref
        if math.isnan(d_ref):
            d_ref = _cofactor_size([w_ref / math.sqrt(arch.depth)] * arch.depth)
        for i in idx:
            if np.isnan(rel[i]):
                size = scale(states[i])
                rel[i] = grads[i] / size if size > 0 else 0.0
                slow[i] = rel[i] <= 1e-2 or _cofactor_size(layer_norms(arch, states[i])) <= 1e-2 * d_ref

    n = times.size
    # the scans below compare single numbers: on Python floats (the same IEEE arithmetic as NumPy's scalars, a
    # fraction of the cost)
    loss_list, time_list = losses.tolist(), times.tolist()
    start = 0  # the start's level: the last recorded time on it is the escape
    while start + 1 < n and math.isfinite(loss_list[start + 1]) and abs(loss_list[start + 1] - loss_list[0]) <= tol:
        start += 1
    t_escape = time_list[start]
    # A stretch from j can be a plateau only if it reaches past j (the next loss within tol of loss j) before the
    # last record, and lies above the final level: its level, within tol of loss j, exceeds the final loss by
    # ABOVE_FINAL·tol, so loss j exceeds it by more than tol (0.5·tol with room for rounding).  The scan visits only
    # such j, in order: every other start would end at once (most records have none).
    half = 0.5 * tol
    starts = [j for j in range(n - 2)
              if abs(loss_list[j + 1] - loss_list[j]) <= tol and loss_list[j] - final_loss > half]
    out: list[Plateau] = []
    resume = 0  # (the scan goes on after the last plateau found)
    for j in starts:
        if j < resume:
            continue
        k = j
        lo = hi = loss_list[j]
        while k + 1 < n and math.isfinite(loss_list[k + 1]):
            x = loss_list[k + 1]
            top, bottom = (x if x > hi else hi), (x if x < lo else lo)  # max(hi, x), min(lo, x)
            if not (top - bottom <= tol):  # (NaN levels end the stretch too)
                break
            k += 1
            lo, hi = bottom, top
        if j == 0:  # the start's plateau, in flow time
            t_a = time_list[0] if time_list[0] > 0 else time_list[min(1, n - 1)]
            grows = time_list[k] >= MIN_TIME_FACTOR * t_a
        else:  # in the time since the escape
            grows = (time_list[j] > t_escape
                     and time_list[k] - t_escape >= MIN_TIME_FACTOR * (time_list[j] - t_escape))
        long_flat = k > j and k < n - 1 and grows
        if long_flat:  # (the level only of stretches that can be plateaus)
            level = np.median(losses[j:k + 1])
            long_flat = level - final_loss > ABOVE_FINAL * tol and (j == 0 or losses[0] - level > ABOVE_FINAL * tol)
        if long_flat:
            assess(range(j, k + 1))
        if long_flat and slow[j:k + 1].any():
            if time.perf_counter() > deadline:
                out.append(Plateau(float(times[j]), float(times[k]), float(np.median(losses[j:k + 1])), None, None,
                                   math.nan, math.nan, PLATEAU_OUT_OF_TIME))
            else:
                out.append(_identify(risk, times, losses, states, rel, slow, j, k, certify_tol, scale, deadline,
                                     check_spurious))
            resume = k + 1
    return out


def _identify(risk, times, losses, states, rel, slow, j, k, certify_tol, scale, deadline, check_spurious) -> Plateau:
    seg = np.arange(j, k + 1)
    pick = seg[np.argmin(np.where(slow[seg], rel[seg], np.inf))]
    w = states[pick]
    level = float(np.median(losses[j:k + 1]))
    zero = np.zeros_like(w)
    drop = float(losses[0]) - float(losses[-1])
    if abs(level - risk.value(zero)) <= LEVEL_RTOL * drop and not np.any(risk.gradient(zero)):
        point, note, gnorm = zero, "the origin: the plateau is at the level ℒ(0) and w = 0 is critical", 0.0
    else:
        pol = polish(risk, w, gtol=1e-2 * certify_tol * scale(w), radius=float(np.linalg.norm(w)))
        if not (pol.accepted and pol.gradient_norm <= certify_tol * scale(pol.point)):
            return Plateau(float(times[j]), float(times[k]), level, None, None, pol.distance, pol.start_gradient_norm,
                           f"polishing did not find a critical point ({pol.message})")
        point, note, gnorm = pol.point, f"Newton-polished from the state at t = {times[pick]:.3g}", pol.gradient_norm
    cp = classify_critical_point(risk, point, compare_with_best=False, check_spurious=check_spurious,
                                 max_time=max(deadline - time.perf_counter(), 0.0), critical_rtol=None)
    return Plateau(float(times[j]), float(times[k]), float(risk.value(point)), cp, point,
                   float(np.linalg.norm(point - w)), float(gnorm), note)
