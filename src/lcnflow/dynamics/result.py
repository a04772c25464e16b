"""The result of a gradient-flow or gradient-descent run, and the bookkeeping shared by both."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lcnflow.analysis.certify import layer_offsets
from lcnflow.analysis.critical import CriticalPoint
from lcnflow.analysis.itinerary import Plateau
from lcnflow.analysis.symmetry import invariants
from lcnflow.analysis.theorem import TheoremCheck
from lcnflow.dynamics.options import StopReason
from lcnflow.model.conv import Filters, flat_norm
from lcnflow.model.risk import compiled_kernels

#: A fitted Łojasiewicz exponent below this is reported with :func:`lojasiewicz_caveat` (it prints as 0.49 or less).
LOJASIEWICZ_BELOW_HALF = 0.495


def lojasiewicz_caveat(theta: float | None) -> str | None:
    """What a fitted Łojasiewicz exponent below ½ means, or ``None`` for ``θ ≥ ½`` (and for no fit).

    The Łojasiewicz inequality ``|L(w) − L(w*)|^θ ≤ C ‖∇L(w)‖`` of an analytic ``L`` holds with ``θ ∈ [½, 1)``
    (``θ = ½`` at a non-degenerate minimum, docs/theory.md): a fitted ``θ < ½`` is outside that range, so the fit
    does not measure the exponent — the recorded tail is too short or not yet in its asymptotic regime, or the limit
    is degenerate and approached too slowly for the record to show it.
    """
    if theta is None or not math.isfinite(theta) or theta >= LOJASIEWICZ_BELOW_HALF:
        return None
    return ("below ½, outside the range [½, 1) of the Łojasiewicz inequality (½ at a non-degenerate minimum): "
            "the fit is unreliable or the limit degenerate")

#: What produced a result, named as the config's ``flow.method``.
Method = Literal["gradient_flow", "gradient_descent", "sgd"]
#: What a run ended at: a certified limit's kind, a certified limit left unclassified, or no certificate.
RunKind = Literal["global_minimum", "local_minimum", "strict_saddle", "degenerate", "certified (not classified)",
                  "uncertified_endpoint"]

#: The flat fields of a result (:meth:`FlowResult.scalars`), name → type; any of them may be ``None`` where it does
#: not apply (floats may also be NaN: the loss of a run that blew up).  The one definition that ``to_dict``, the run
#: record's verdict and the sweep's result columns are derived from.
SCALAR_FIELDS: dict[str, type] = {
    "method": str,  # gradient_flow, gradient_descent, sgd
    "integrator": str,  # what ran, in words
    "converged": bool,
    "certified": bool,
    "kind": str,  # the certified limit's kind, or "uncertified_endpoint"
    "stop_reason": str,  # minimum, stable_saddle, t_max, max_steps, max_time, blowup, nonfinite, floor, callback, …
    "stable_set": str,  # with stop_reason stable_saddle: why the start lies on the saddle's stable set
    "origin": str,  # global, pure, rank_deficient (classified limits)
    "spurious": bool,
    "unconstrained_optimum_reached": bool,  # ℒ(v*) = ℒ*, i.e. ∇ℒ(v*) = 0
    "on_function_space": str,  # global / local on M, undecided (a best-found bound matched)
    "gap_to_best": float,  # L(w*) − ℒ*_M
    "degenerate_hessian": bool,  # the Hessian is singular beyond the rescaling directions: ‖∇L‖ does not bound the
    #                              distance to the limit (None in stores written before this column existed)
    "loss": float,
    "gradient_norm": float,  # after polishing
    "flow_gradient_norm": float,  # where the run stopped, before polishing
    "polish_distance": float,
    "polish_accepted": bool,
    "t_final": float,
    "num_steps": int,
    "num_gradient_evaluations": int,
    "num_hessian_evaluations": int,
    "num_candidates": int,
    "num_plateaus": int,  # plateaus crossed (the itinerary)
    "first_escape_time": float,  # when the first plateau was left
    "invariant_drift": float,
    "arc_length": float,
    "lojasiewicz_exponent": float,
    "nearest_distance": float,  # uncertified endpoint: distance to the nearest critical point found
    "limit_verified": bool,  # with verify: the same limit at 100× tighter tolerances
    "wall_time": float,
    "message": str,
}

#: Callback signature: ``callback(t, w_flat, loss, gradient_norm) -> bool | None``; returning True stops the run.
Callback = Callable[[float, np.ndarray, float, float], "bool | None"]


@dataclass
class FlowResult:
    """Everything a run produced: the limit, its certificate, its classification and the recorded trajectory.

    Attributes
    ----------
    converged : bool
        The run ended at a certified limit: a minimum, or a saddle whose stable set the start lies on (see
        ``stop_reason``).  A run that stopped for any other reason has no limit, only an *uncertified endpoint*.
    certified : bool
        Same as ``converged`` (kept as the name of the certificate: polished ``‖∇L‖ ≤ certify_tol · S`` within
        ``polish_radius · ‖w‖`` of the flow's state).
    limit : list of ndarray
        The certified limit (the polished point), or the uncertified endpoint.
    final_filter : ndarray
        ``π(limit)``.
    loss, gradient_norm : float
        ``L`` and ``‖∇L‖`` at ``limit``.
    flow_gradient_norm : float
        ``‖∇L‖`` where the run itself stopped (before polishing).
    polish_distance, polish_accepted, polish_message
        How far polishing moved, whether it was accepted, and why.
    t_final : float
        Flow time reached (gradient descent: ``Σ step sizes``).
    times, losses, gradient_norms, trajectory : ndarray
        The record: log-spaced in time (bounded size), always including the start and the end;
        ``trajectory[j]`` is the flat parameter vector at ``times[j]``.
    saved_times, saved_states : ndarray
        States at the requested ``save_at`` times (flat, one row per time).
    invariants : ndarray
        ``δ_i = ‖w^{(i+1)}‖² − ‖w^{(i)}‖²`` at the start.
    invariant_drift : float
        ``max_t max_i |δ_i(t) − δ_i(0)| / max(‖w(0)‖², ‖w(t)‖²)`` over the run (before polishing): zero for the
        exact flow, and of the order of the integrator's relative error otherwise.
    arc_length : float
        ``Σ ‖w_{n+1} − w_n‖`` over accepted steps.
    lojasiewicz_exponent : float or None
    lojasiewicz_fit : dict
        How the exponent was fitted (see :func:`~lcnflow.analysis.certify.lojasiewicz_fit`).
    num_gradient_evaluations, num_hessian_evaluations, num_steps : int
    wall_time : float
        Seconds, including polishing and classification.
    integrator : str
        The integrator (or iteration) actually used, in words: ``"LSODA (Adams/BDF switching, …)"``,
        ``"gradient descent, η = 0.1"``, …
    method : {"gradient_flow", "gradient_descent", "sgd"}
        Which method the run was: :func:`~lcnflow.gradient_flow`, :func:`~lcnflow.gradient_descent` or
        :func:`~lcnflow.stochastic_gradient_descent` (the config's ``flow.method``).
    message : str
        Why the run stopped, and the certificate's outcome.
    critical_point : CriticalPoint or None
        Classification of the certified limit; ``None`` for an uncertified endpoint (no label without a
        certificate).
    hypotheses : TheoremCheck or None
        The convergence theorem's hypotheses for this risk.
    options : dict
        The options the run used.
    stop_reason : StopReason
        ``minimum`` or ``stable_saddle`` (converged); else ``t_max``, ``max_steps``, ``max_time``, ``blowup``,
        ``nonfinite``, ``floor`` (the floating-point floor of ``‖∇L‖``), ``callback``, ``failed`` or (SGD) ``budget``
        (a :class:`~lcnflow.dynamics.options.StopReason`: a string).
    stable_set : str or None
        For ``stable_saddle``: why the start lies on the saddle's stable set.
    nearest_critical_point : CriticalPoint or None
        For an uncertified endpoint: the nearest critical point the run found (classified), at
        ``nearest_distance``.  It is not the run's limit.
    nearest_distance : float
    num_candidates : int
        States at which the run tried to stop (polished and classified).
    itinerary : list of Plateau
        The plateaus the run crossed, each with its nearby critical point (:mod:`lcnflow.analysis.itinerary`).
    limit_verified : bool or None
        With ``verify=True``: whether a re-integration at 100× tighter tolerances reached the same limit.
    verification : dict or None
        What the verification compared.
    """

    converged: bool
    certified: bool
    limit: Filters
    final_filter: np.ndarray
    loss: float
    gradient_norm: float
    flow_gradient_norm: float
    polish_distance: float
    polish_accepted: bool
    polish_message: str
    t_final: float
    times: np.ndarray
    losses: np.ndarray
    gradient_norms: np.ndarray
    trajectory: np.ndarray
    saved_times: np.ndarray
    saved_states: np.ndarray
    invariants: np.ndarray
    invariant_drift: float
    arc_length: float
    lojasiewicz_exponent: float | None
    lojasiewicz_fit: dict
    num_gradient_evaluations: int
    num_hessian_evaluations: int
    num_steps: int
    wall_time: float
    integrator: str
    message: str
    method: Method = "gradient_flow"
    critical_point: CriticalPoint | None = None
    hypotheses: TheoremCheck | None = None
    options: dict = field(default_factory=dict)
    stop_reason: StopReason | str = ""
    stable_set: str | None = None
    nearest_critical_point: CriticalPoint | None = None
    nearest_distance: float = math.nan
    num_candidates: int = 0
    itinerary: list[Plateau] = field(default_factory=list)
    limit_verified: bool | None = None
    verification: dict | None = None

    @property
    def kind(self) -> RunKind:
        """What the run ended at: the certified limit's kind, ``"certified (not classified)"``, or
        ``"uncertified_endpoint"``."""
        if not self.certified:
            return "uncertified_endpoint"
        return self.critical_point.kind if self.critical_point is not None else "certified (not classified)"

    # scipy.optimize.OptimizeResult-style aliases
    @property
    def success(self) -> bool:
        """Alias of ``converged``."""
        return self.converged

    @property
    def x(self) -> np.ndarray:
        """The limit as one flat vector."""
        return np.concatenate([w.ravel() for w in self.limit])

    @property
    def fun(self) -> float:
        """Alias of ``loss``."""
        return self.loss

    @property
    def nfev(self) -> int:
        """Alias of ``num_gradient_evaluations``."""
        return self.num_gradient_evaluations

    @property
    def nit(self) -> int:
        """Alias of ``num_steps``."""
        return self.num_steps

    def summary(self) -> str:
        """A few lines a person can read."""
        if self.method == "sgd":  # SGD keeps moving: the endpoint is polished onto a critical point or is not
            status = ("SGD endpoint polished to a certified critical point" if self.certified else
                      "SGD endpoint NOT certified (no certified critical point next to it)")
        else:
            status = "converged, certified" if self.certified else "NOT converged (uncertified endpoint)"
        lines = [
            f"{status} ({self.method.replace('_', ' ')}: {self.integrator}): {self.message}",
            f"  L = {self.loss:.12g}, ‖∇L‖ = {self.gradient_norm:.3g} (flow stopped at {self.flow_gradient_norm:.3g}, "
            f"polish moved {self.polish_distance:.3g}), t = {self.t_final:.4g}, {self.num_steps} steps, "
            f"{self.num_gradient_evaluations} gradients, {self.num_hessian_evaluations} Hessians, "
            f"{self.wall_time:.3g} s",
            f"  invariant drift {self.invariant_drift:.2g}, arc length {self.arc_length:.4g}, Łojasiewicz θ ≈ "
            + (f"{self.lojasiewicz_exponent:.3f}" if self.lojasiewicz_exponent is not None else "n/a")
            + (f" ({caveat})" if (caveat := lojasiewicz_caveat(self.lojasiewicz_exponent)) else ""),
        ]
        if self.critical_point is not None:
            lines.append(f"  limit: {self.critical_point.summary()}")
        elif self.nearest_critical_point is not None:
            lines.append(f"  uncertified endpoint; nearest critical point (distance {self.nearest_distance:.3g}): "
                         f"{self.nearest_critical_point.summary()}")
        for plateau in self.itinerary:
            lines.append(f"  plateau {plateau.summary()}")
        if self.limit_verified is not None:
            same = "same limit" if self.limit_verified else "DIFFERENT limit"
            lines.append(f"  verified at 100× tighter tolerances: {same}")
        if self.hypotheses is not None and not self.hypotheses.covered:
            lines.append("  not covered by the convergence theorem: " + "; ".join(self.hypotheses.failures))
        return "\n".join(lines)

    def scalars(self) -> dict[str, Any]:
        """The flat fields of :data:`SCALAR_FIELDS` (booleans, integers, floats, strings; ``None`` where a field
        does not apply): what a table of runs holds per run.

        The classification's fields (``origin``, ``spurious``, ``unconstrained_optimum_reached``,
        ``on_function_space``, ``gap_to_best``) are ``None`` when the limit was not classified.
        """
        cp = self.critical_point
        return {
            "method": self.method,
            "integrator": self.integrator,
            "converged": bool(self.converged),
            "certified": bool(self.certified),
            "kind": self.kind,
            "stop_reason": str(self.stop_reason),
            "stable_set": self.stable_set,
            "origin": cp.origin if cp is not None else None,
            "spurious": bool(cp.spurious) if cp is not None and cp.spurious is not None else None,
            "unconstrained_optimum_reached": bool(cp.unconstrained_optimum_reached) if cp is not None else None,
            "on_function_space": ({True: "global", False: "local", None: "undecided"}[cp.global_on_m]
                                  if cp is not None else None),
            "gap_to_best": float(cp.gap_to_best) if cp is not None else None,
            "degenerate_hessian": bool(cp.degenerate_hessian) if cp is not None else None,
            "loss": float(self.loss),
            "gradient_norm": float(self.gradient_norm),
            "flow_gradient_norm": float(self.flow_gradient_norm),
            "polish_distance": float(self.polish_distance),
            "polish_accepted": bool(self.polish_accepted),
            "t_final": float(self.t_final),
            "num_steps": int(self.num_steps),
            "num_gradient_evaluations": int(self.num_gradient_evaluations),
            "num_hessian_evaluations": int(self.num_hessian_evaluations),
            "num_candidates": int(self.num_candidates),
            "num_plateaus": len(self.itinerary),
            "first_escape_time": float(self.itinerary[0].t_leave) if self.itinerary else None,
            "invariant_drift": float(self.invariant_drift),
            "arc_length": float(self.arc_length),
            "lojasiewicz_exponent": (float(self.lojasiewicz_exponent) if self.lojasiewicz_exponent is not None
                                     else None),
            "nearest_distance": None if math.isnan(self.nearest_distance) else float(self.nearest_distance),
            "limit_verified": self.limit_verified,
            "wall_time": float(self.wall_time),
            "message": self.message,
        }

    def to_dict(self, include_trajectory: bool = False) -> dict[str, Any]:
        """JSON-ready dictionary: :meth:`scalars`, then the limit, the classification, the certificate's details
        and the options (and the recorded trajectory with ``include_trajectory``)."""
        out: dict[str, Any] = {
            **self.scalars(),
            "limit": [w.tolist() for w in self.limit],
            "final_filter": self.final_filter.tolist(),
            "polish_message": self.polish_message,
            "invariants": self.invariants.tolist(),
            "lojasiewicz_fit": self.lojasiewicz_fit,
            "critical_point": self.critical_point.to_dict() if self.critical_point else None,
            "hypotheses": self.hypotheses.to_dict() if self.hypotheses else None,
            "options": self.options,
            "nearest_critical_point": (self.nearest_critical_point.to_dict()
                                       if self.nearest_critical_point else None),
            "itinerary": [p.to_dict() for p in self.itinerary],
            "verification": self.verification,
        }
        if include_trajectory:
            out.update(
                times=self.times.tolist(),
                losses=self.losses.tolist(),
                gradient_norms=self.gradient_norms.tolist(),
                trajectory=self.trajectory.tolist(),
            )
        return out


#: A step is recorded once the arc length since the last recorded point reaches this fraction of that point's size
#: ``‖w‖`` (:class:`Recorder`).
ARC_STEP = 0.05
#: … or once the loss has fallen by about this fraction of the descent so far (at least ``1e-2·L(0)``) since then.
LOSS_STEP = 0.05


class Recorder:
    """Keeps a bounded record of a run, dense wherever the run moves, and the running certificate quantities.

    A step is recorded (the loss and gradient norm are evaluated for it) when one of these holds:

    * **arc length**: the path since the last recorded point is at least ``arc_step·‖w‖`` of that point (every
      escape, descent and turn is recorded, on a scale relative to where the run is: near the origin as well);
    * **loss change**: the loss has fallen since the last recorded point by about ``LOSS_STEP`` of the descent so far
      ``L(0) − min L`` (at least ``1e-2·|L(0)|``), estimated without evaluating it from ``ΔL = ∫‖∇L‖ ds ≈ Σ |Δw|²/h``
      over the steps (exact for the flow in the limit of small steps); a record by either rule is an *event*;
    * **time since the last event**: ``t − t_e ≥ r·(t_last − t_e)`` for the last event at ``t_e`` and the last
      record at ``t_last`` (the first record after an event at ``t_e + r·h``, ``h`` the step that ended at the
      event), with ``r = 10^(32/max_points)`` (about ``max_points/32`` points per decade of the time since the
      event): a plateau entered after a late escape is resolved on the scale of the time since that escape, not
      squeezed into one point per decade of absolute time;
    * **absolute time**: ``t ≥ r·t_a`` for the last record ``t_a`` made by this rule (log-spaced from ``t = 0``: the
      start's plateau; these records are exactly those of a compiled segment on the same steps).

    The arc-length test needs the step's state, the others only its time; :meth:`wants` answers before the step's
    loss is known, so a step that passes only the arc-length test makes the *next* step recorded.  Above
    ``max_points`` points every second one of the middle is dropped (the first and last are kept).  Steps taken
    in compiled code arrive through :meth:`absorb`, recorded by the same rules there (:meth:`rule_state` hands them
    the rules' state); a step that passes the arc-length or loss test is recorded itself, its loss evaluated then.
    """

    def __init__(self, arch, w0: np.ndarray, loss: float, gnorm: float, max_points: int = 400,
                 arc_step: float | None = ARC_STEP):
        self.arch = arch
        self.max_points = max_points
        self.arc_step = arc_step
        self._factor = 10 ** (32 / max_points)
        self._arc_since = 0.0  # arc length since the last recorded point
        self._fall_since = 0.0  # estimated fall of the loss since the last recorded point
        self._loss0 = float(loss)
        self._pending = False  # the arc-length test passed at a step that was not evaluated: record the next one
        self._event_t = 0.0  # time of the last arc-length event
        self._next_rel = math.inf  # next time by the time-since-the-event rule
        self._t_step = 0.0  # time of the last registered step
        self.times = [0.0]
        self.losses = [loss]
        self.gnorms = [gnorm]
        self.states = [w0.copy()]
        self._min_loss = loss if math.isfinite(loss) else math.inf  # the smallest finite recorded loss
        self.delta0 = invariants(arch, w0)
        self.norm0 = float(w0 @ w0)
        self.drift = 0.0
        self.arc = 0.0
        self._prev = w0
        self._next_t = 0.0
        self._last = (0.0, w0, loss, gnorm)

    @property
    def last(self) -> tuple[float, np.ndarray, float, float]:
        """``(t, w, loss, gradient_norm)`` of the last registered step."""
        return self._last

    def wants(self, t: float) -> bool:
        """Whether a step ending at ``t`` will be recorded (so its loss and gradient norm are needed)."""
        return self._pending or t >= self._next_t or t >= self._next_rel

    def step(self, t: float, w: np.ndarray, loss: float, gnorm: float) -> None:
        """Register an accepted step (``loss``/``gnorm`` may be NaN when :meth:`wants` is False)."""
        k = compiled_kernels()
        if (k is not None and self.delta0.size and w.dtype == np.float64 and w.flags.c_contiguous
                and not self.arch.is_multichannel):  # the compiled terms know the single-channel δ_i only
            arc, change, sq = k.step_terms(w, self._prev, layer_offsets(self.arch), self.delta0)
            self.arc += arc
            self._prev = w
            self.drift = max(self.drift, change / max(self.norm0, sq, 1e-300))
        else:
            arc = self._step_reference(w)
        self._arc_since += arc
        h, self._t_step = t - self._t_step, t
        if h > 0:
            self._fall_since += arc * arc / h
        self._last = (t, w, loss, gnorm)
        moved = self.arc_step is not None and (
            self._arc_since >= self.arc_step * flat_norm(self.states[-1])
            or self._fall_since >= LOSS_STEP * max(self._loss0 - self._min_loss, 1e-2 * abs(self._loss0)))
        if self.wants(t) and math.isfinite(loss):
            event = moved or self._pending
            self._append(t, w, loss, gnorm)
            self._arc_since, self._fall_since, self._pending = 0.0, 0.0, False
            if t >= self._next_t:  # log-spaced in absolute time (its own clock: the compiled segments' rule)
                self._next_t = t * self._factor if t > 0 else 0.0
            if event:  # log-spaced in the time since this event, from the step that ended at it
                self._event_t = t
                self._next_rel = t + max(h, 0.0) * self._factor
            elif self._event_t > 0 or self._next_rel < math.inf:
                self._next_rel = self._event_t + (t - self._event_t) * self._factor
        elif moved:
            self._pending = True

    def _step_reference(self, w: np.ndarray) -> float:
        """Arc length and invariant drift of a step with NumPy (the reference for the compiled ``step_terms``);
        returns the step's length."""
        arc = float(np.linalg.norm(w - self._prev))
        self.arc += arc
        self._prev = w
        if self.delta0.size:
            change = float(np.max(np.abs(invariants(self.arch, w) - self.delta0)))
            self.drift = max(self.drift, change / max(self.norm0, float(w @ w), 1e-300))
        return arc

    def rule_state(self) -> tuple[float, ...]:
        """``(arc since the last record, estimated loss fall since it, ‖w‖ there, smallest recorded loss, L(0), time of
        the last event, next time by the time-since-the-event rule, 1.0 if the next step is to be recorded else 0.0)``:
        what compiled steps need to apply the rules."""
        return (self._arc_since, self._fall_since, flat_norm(self.states[-1]), self._min_loss, self._loss0,
                self._event_t, self._next_rel, float(self._pending))

    def absorb(self, n: int, times: np.ndarray, states: np.ndarray, losses: np.ndarray, gnorms: np.ndarray,
               arc: float, drift: float, next_t: float, last: tuple[float, np.ndarray, float, float],
               rule: tuple[float, ...] | None = None) -> None:
        """Register a block of steps taken in compiled code: the first ``n`` rows are the steps to keep (chosen with
        this recorder's rules), ``arc``/``drift`` the block's arc length and largest drift, ``last`` its final step
        ``(t, w, loss, gradient_norm)``, ``rule`` the rules' state after it (arc and loss fall since the last record,
        last event time, next time by the time-since-the-event rule, whether the next step is to be recorded)."""
        self.arc += arc
        self.drift = max(self.drift, drift)
        if n and len(self.times) + n <= self.max_points:  # no thinning on the way: the rows in one go
            block = losses[:n].tolist()
            self.times += times[:n].tolist()
            self.losses += block
            self.gnorms += gnorms[:n].tolist()
            self.states += list(states[:n].copy())  # (rows of one copy of the block: the buffer is reused)
            lowest = float(losses[:n].min())  # (the smallest finite loss; a NaN or −∞ among them: by the list)
            if not math.isfinite(lowest):
                lowest = min((x for x in block if math.isfinite(x)), default=math.inf)
            self._min_loss = min(self._min_loss, lowest)
        else:
            for i in range(n):
                self._append(float(times[i]), states[i], float(losses[i]), float(gnorms[i]))
        self._next_t = next_t
        self._prev = last[1]
        self._last = last
        self._t_step = last[0]
        if rule is None:
            self._arc_since = 0.0 if n else self._arc_since + arc
            self._fall_since = 0.0
        else:
            self._arc_since, self._fall_since, self._event_t, self._next_rel = (float(x) for x in rule[:4])
            self._pending = bool(rule[4])

    def set_last_values(self, loss: float, gnorm: float) -> None:
        """Fill in the exact loss and gradient norm of the last step (when it was registered with estimates)."""
        t, w, _, _ = self._last
        self._last = (t, w, loss, gnorm)

    def _append(self, t, w, loss, gnorm):
        self.times.append(t)
        self.losses.append(loss)
        self.gnorms.append(gnorm)
        self.states.append(w.copy())
        if math.isfinite(loss) and loss < self._min_loss:
            self._min_loss = loss
        if len(self.times) > self.max_points:  # thin the middle, keep the ends
            n = len(self.times)
            keep = [0, *range(1, n - 1, 2), n - 1]
            if len(keep) > self.max_points:  # (max_points = 2: the ends alone)
                keep = [0, n - 1]
            for name in ("times", "losses", "gnorms", "states"):
                seq = getattr(self, name)
                setattr(self, name, [seq[k] for k in keep])
            self._min_loss = min((x for x in self.losses if math.isfinite(x)), default=math.inf)

    def close(self) -> None:
        """Make sure the final state is recorded."""
        t, w, loss, gnorm = self._last
        if self.times[-1] != t or not np.array_equal(self.states[-1], w):
            self._append(t, w, loss, gnorm)
