r"""The one driver loop behind :func:`~lcnflow.gradient_flow` and :func:`~lcnflow.gradient_descent`.

A stepper (:mod:`lcnflow.dynamics.steppers`) makes steps; the driver decides everything else: when a state is a
*candidate* limit, whether the run may stop there, recording, ``save_at``, the callback, and the itinerary.

**When a run stops.**  A small gradient is not a limit — near the origin from a small initialization, on a saddle
plateau, or on a slow approach to a degenerate minimum, ``‖∇L‖`` is tiny long before the flow settles.  So:

1. A state with ``‖∇L(w)‖ ≤ gtol · S(w)`` (``S`` of :func:`~lcnflow.analysis.certify.gradient_scale`) is a candidate.
2. The candidate is Newton-polished on the complement of the rescaling directions; the polish counts only if it
   stays within ``polish_radius · max(‖w‖, w_ref)``.  The polished point (or the state itself, when polishing could
   not help) is *certified* when ``‖∇L‖ ≤ certify_tol · S``.
3. The certified point is classified.  The run ends there if it is a minimum (local or global; a degenerate one
   when the higher-order probe finds no descent direction — after closing in on it down to
   ``DEGENERATE_GTOL · S``), or a saddle whose stable set the start lies on (a critical initialization; layers that
   start equal and that the risk's symmetry keeps equal).
4. Otherwise — a saddle the flow will leave, or a failed polish — the run goes on with a 100× smaller candidate
   tolerance, restored once the flow has left (``‖∇L‖ > gtol · S`` again).

A state within ``ORIGIN_SIZE · w_ref`` of the origin has collapsed onto it (near the origin ``‖∇L‖/S`` stays of
order one, so no candidate would come before ``‖w‖²`` underflows); the origin itself is then the candidate.

Steppers that run in compiled code take many steps per call (``advance``) with the tests of this loop inside, and
return to it only when one of them needs it (:mod:`lcnflow.dynamics.compiled`).  The loop is a generator,
:func:`drive_steps`, that yields those calls instead of making them, and likewise each
candidate's polish and classification: :func:`run_alone` makes each call for one run, and
:func:`lcnflow.dynamics.batch.iter_flows` makes the calls of many runs of one risk together (the segments in one
compiled call, the polishes and classifications with their linear algebra stacked).

A run ends *unconverged* only at ``t_max``, ``max_steps``, ``max_time``, on blow-up, on a non-finite value, when
the callback asks, or at the floating-point floor (a candidate tolerance below ``1e-14``, or no progress over a
factor ``1e8`` in time); it then reports the nearest critical point it found.

**Time.**  ``max_time`` covers the whole run: after the integration, the comparison of the limit with ``ℒ*_M``,
the spurious test, the nearest critical point and the plateaus of the itinerary get what is left; a part that finds
no time left is left undecided, and the message says so.  The classification made to decide whether a candidate is
a minimum costs a fixed number of Hessians (no search over ``M`` or the fibre), so the stopping rule is never
exponential in the depth; ``classify=False`` skips the rest.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from lcnflow.analysis.certify import (
    PolishResult,
    gradient_scale,
    lojasiewicz_fit,
    polish,
    polish_many,
    problem_scales,
    reference_size,
)
from lcnflow.analysis.critical import (
    DEGENERATE_NOTE,
    CriticalPoint,
    classify_critical_point,
    classify_critical_points,
    settle_on_m,
    settle_spurious,
)
from lcnflow.analysis.itinerary import PLATEAU_OUT_OF_TIME, find_plateaus
from lcnflow.analysis.symmetry import symmetric_layers
from lcnflow.analysis.theorem import theorem_hypotheses
from lcnflow.dynamics.compiled import UNDERFLOW
from lcnflow.dynamics.options import StopOptions, StopReason
from lcnflow.dynamics.result import Callback, FlowResult, Recorder
from lcnflow.dynamics.steppers import Stepper
from lcnflow.kernels import TEST_BLOWUP, TEST_CANDIDATE, TEST_COLLAPSED, TEST_NONFINITE, TEST_REARM, step_tests
from lcnflow.model.conv import final_filter_unchecked, flat_norm, unflatten, unflatten_unchecked
from lcnflow.model.risk import EmpiricalRisk

#: A candidate tolerance below this (relative to ``S``) is beyond what float64 gradients resolve.
FLOOR = 1e-14
#: After a rejected candidate, the flow must reach the next one before its time grows by this factor.
STALL_FACTOR = 1e8
#: A state within this fraction of the natural parameter size ``w_ref`` of the origin has collapsed onto it.
ORIGIN_SIZE = 1e-100

#: Most steps of one compiled segment (between two checks of ``max_time``).
SEGMENT_STEPS = 2000

#: At a degenerate minimum the run goes on until ``‖∇L‖ ≤ DEGENERATE_GTOL · S`` (its structure shows only close by).
DEGENERATE_GTOL = 1e-12


@dataclass(frozen=True)
class Candidate:
    """One attempt to stop: the state, its polish, the point that carries the certificate (the polished point, or
    the state when polishing was rejected) with its ``‖∇L‖`` and gradient scale ``S``, and what that point is."""

    t: float
    state: np.ndarray
    polish: PolishResult
    point: np.ndarray
    gradient_norm: float
    point_scale: float
    critical_point: CriticalPoint | None  # None unless certified
    outcome: str  # "minimum", "stable_saddle", "saddle", "not_certified"


def _run_scales(risk: EmpiricalRisk, w0: np.ndarray) -> tuple[Callable[..., float], float]:
    """The gradient scale ``S`` of this run (:func:`~lcnflow.analysis.certify.gradient_scale`, with ``‖π(w_0)‖`` as
    the reference filter size) and the natural parameter size ``w_ref``
    (:func:`~lcnflow.analysis.certify.reference_size`)."""
    reference = 0.0  # (S reads it only where ∇ℒ(0) = 0: then ‖π(w0)‖ of the validated start)
    if problem_scales(risk).gradient_at_zero == 0:
        reference = flat_norm(final_filter_unchecked(risk.arch, unflatten_unchecked(risk.arch, w0)))
    scale = functools.partial(gradient_scale, risk, reference_filter_norm=reference)
    return scale, reference_size(risk, w0)


def _is_stop_point(cp: CriticalPoint) -> bool:
    return cp.kind in ("global_minimum", "local_minimum") or (cp.kind == "degenerate" and cp.not_a_minimum is not True)


def _stable_set(risk: EmpiricalRisk, w0: np.ndarray, g0: np.ndarray) -> tuple[str, list] | None:
    """Why the start lies on a set the flow cannot leave, if it does (with the symmetric pairs, if any)."""
    if not g0.any():
        return "the initialization is itself a critical point (∇L(w(0)) = 0 exactly)", []
    pairs = symmetric_layers(risk.arch, w0)
    if pairs:
        names = ", ".join(f"w({i}) = {'' if s > 0 else '−'}w({j})" for i, j, s in pairs)
        return (f"the start has {names}; the risk is symmetric under exchanging those layers, so the flow keeps "
                "them equal"), pairs
    return None


@dataclass(frozen=True)
class PolishRequest:
    """What :func:`drive_steps` yields where a candidate needs polishing: the risk, the state, the target gradient
    norm and the radius; it is sent the :class:`~lcnflow.analysis.certify.PolishResult`."""

    risk: EmpiricalRisk
    point: np.ndarray
    gtol: float
    radius: float

    @staticmethod
    def serve(requests: list[PolishRequest]) -> list[PolishResult]:
        """The polish of every request (one risk) together (:func:`~lcnflow.analysis.certify.polish_many`)."""
        return polish_many(requests[0].risk, [r.point for r in requests], gtols=[r.gtol for r in requests],
                           radii=[r.radius for r in requests])


@dataclass(frozen=True)
class ClassifyRequest:
    """What :func:`drive_steps` yields where a certified candidate needs classifying (minimum or not): the risk and
    the point; it is sent the :class:`~lcnflow.CriticalPoint`."""

    risk: EmpiricalRisk
    point: np.ndarray

    @staticmethod
    def serve(requests: list[ClassifyRequest]) -> list[CriticalPoint]:
        """The stopping rule's classification of every request (one risk) in one stacked call
        (:func:`~lcnflow.analysis.critical.classify_critical_points`): minimum or not — neither ℒ*_M nor the walk
        over the fibre is needed (the limit's are completed when the run is packaged)."""
        return classify_critical_points(requests[0].risk, [r.point for r in requests], compare_with_best=False,
                                        check_spurious=False, critical_rtol=None)


#: What :func:`drive_steps` yields: a compiled stepper, the positional and the keyword arguments of its ``advance``;
#: or a candidate to polish or classify (``type(request).serve(requests)`` answers a list of them at once).
SegmentRequest = tuple[Stepper, tuple, dict]
AnalysisRequest = PolishRequest | ClassifyRequest
Request = SegmentRequest | AnalysisRequest


def _try_stop(risk, t, w, S, opts: StopOptions, stable, w0, scale,
              w_ref) -> Generator[AnalysisRequest, PolishResult | CriticalPoint, Candidate]:
    radius = opts.polish_radius * max(flat_norm(w), w_ref)
    pol = yield PolishRequest(risk, w, 1e-2 * opts.certify_tol * S, radius)
    # the polished point if polishing stayed within the radius, else the state itself: either may carry the certificate
    point, gnorm = (pol.point, pol.gradient_norm) if pol.accepted else (w, pol.start_gradient_norm)
    point_scale = scale(point)
    if not gnorm <= opts.certify_tol * point_scale:
        return Candidate(t, w, pol, point, gnorm, point_scale, None, "not_certified")
    cp = yield ClassifyRequest(risk, point)
    if _is_stop_point(cp):
        outcome = "minimum"
    elif stable is not None and (
        (not stable[1] and np.array_equal(w, w0))
        or (stable[1] and all(p in symmetric_layers(risk.arch, point, 1e-8) for p in stable[1]))
    ):
        outcome = "stable_saddle"
    else:
        outcome = "saddle"
    return Candidate(t, w, pol, point, gnorm, point_scale, cp, outcome)


def run_alone(steps: Generator[Request, object, FlowResult]):
    """Run a generator of one run (:func:`drive_steps`) to its result (its return value): each segment it asks for
    on its own stepper, each candidate polished and classified alone."""
    try:
        request = next(steps)
        while True:
            if isinstance(request, AnalysisRequest):
                request = steps.send(request.serve([request])[0])
            else:
                stepper, args, kwargs = request
                request = steps.send(stepper.advance(*args, **kwargs))
    except StopIteration as stop:
        return stop.value


def drive_steps(
    risk: EmpiricalRisk,
    w0: np.ndarray,
    make_stepper: Callable[[np.ndarray, float, np.ndarray], Stepper],
    opts: StopOptions,
    *,
    save: np.ndarray,
    t_max: float,
    callback: Callback | None,
    options: dict,
    start: float,
    clock: Callable[[], float] = time.perf_counter,
) -> Generator[Request, object, FlowResult]:
    """Run ``make_stepper(w0, L(w0), ∇L(w0))`` to its limit (see the module docstring) and package the result, as a
    generator that hands out its compiled segments: it yields ``(stepper, args, kwargs)`` where it needs
    ``stepper.advance(*args, **kwargs)`` and is sent the event that ended the segment, and a
    :class:`PolishRequest` or :class:`ClassifyRequest` where a candidate needs polishing or classifying (it is sent
    the answer), so a caller can run the segments, polishes and classifications of many runs together
    (:func:`lcnflow.dynamics.batch.iter_flows`); :func:`run_alone` runs one.  Returns
    the :class:`~lcnflow.FlowResult`.  ``clock`` gives this run's time (``max_time``, ``wall_time``)."""
    loss0, g0 = risk.flat_value_and_gradient(w0)
    stepper = make_stepper(w0, loss0, g0)
    scale, w_ref = _run_scales(risk, w0)
    reference_norm = scale.keywords["reference_filter_norm"]
    segments = hasattr(stepper, "advance")  # compiled steps (one per call with a callback: it sees every step)
    bound = opts.blowup_factor * max(float(np.linalg.norm(w0)), w_ref)
    rec = Recorder(risk.arch, w0, loss0, float(np.linalg.norm(g0)), opts.max_record)
    saved = np.full((save.size, w0.size), np.nan)
    isave = int(np.searchsorted(save, 0.0, side="right"))
    saved[:isave] = w0
    stable = _stable_set(risk, w0, g0)
    deadline = start + opts.max_time
    tol_rel, t_stall, check_below = opts.gtol, math.inf, math.inf
    candidates: list[Candidate] = []
    extra = [1, 0]  # the driver's own gradient and Hessian evaluations (w0, polishing)
    user_stop = False
    pending: Candidate | None = None  # a certified degenerate minimum the run is still closing in on
    reason: StopReason | None = None
    message = ""
    while True:
        t, w = stepper.t, stepper.w
        est = stepper.speed()
        size = float(np.linalg.norm(w))
        # S ≤ s_ub, so est/s_ub ≤ ‖∇L‖/S (est exact or the chord speed); the tests are those of the compiled segments
        s_ub = scale(w, upper_bound=True) if math.isfinite(size) else math.nan
        tests = step_tests(est, size, s_ub, math.nan, tol_rel, opts.gtol, ORIGIN_SIZE * w_ref, bound)
        if tests & TEST_NONFINITE:
            reason, message = StopReason.NONFINITE, f"the gradient or the state became non-finite at t = {t:.4g}"
            break
        if tests & TEST_REARM:  # the flow has left the last candidate: re-arm
            tol_rel, t_stall, pending, check_below = opts.gtol, math.inf, None, math.inf
            tests = step_tests(est, size, s_ub, math.nan, tol_rel, opts.gtol, ORIGIN_SIZE * w_ref, bound)
        # a state ORIGIN_SIZE·w_ref from the origin has collapsed onto it (only the stable set of the saddle at 0
        # leads there; ‖∇L‖ and S would soon underflow): the origin itself is the candidate
        collapsed = bool(tests & TEST_COLLAPSED)
        # (an exact check costs a gradient evaluation unless the stepper has it: then it is throttled, below)
        due = est <= check_below or stepper.has_exact()
        if isave >= save.size and ((tests & TEST_CANDIDATE and due) or collapsed):
            # (the run goes on at least to the last save time)
            if collapsed:
                S, rel = 0.0, 0.0
            else:
                _, g = stepper.exact()
                S = scale(w)
                gn = float(np.linalg.norm(g))
                rel = gn / S if S > 0 else (0.0 if gn == 0 else math.inf)
                # the next costly check once the estimate has fallen by the factor still missing, with a margin of
                # 10 for the drift of est/‖∇L‖ and of S
                check_below = est * min(1.0, 10.0 * tol_rel / rel) if rel > tol_rel else math.inf
            if rel <= tol_rel:
                cand = yield from _try_stop(risk, t, np.zeros_like(w) if collapsed else w, S, opts, stable, w0,
                                            scale, w_ref)
                candidates.append(cand)
                extra[0] += cand.polish.num_gradient_evaluations
                extra[1] += cand.polish.num_hessian_evaluations
                degenerate = cand.outcome == "minimum" and cand.critical_point.kind == "degenerate"
                if cand.outcome in ("minimum", "stable_saddle") and not (degenerate and tol_rel > DEGENERATE_GTOL):
                    reason = StopReason(cand.outcome)
                    break
                # a degenerate minimum is approached slowly and its structure (shared roots, rank of dπ) shows only
                # close to it: go on towards it, down to DEGENERATE_GTOL, keeping this certified candidate
                pending = cand if degenerate else None
                tol_rel = min(tol_rel, rel) * 1e-2
                t_stall = max(t, 1e-300) * STALL_FACTOR
                if collapsed:
                    reason = StopReason.FLOOR
                    message = (f"the trajectory collapsed onto the origin (‖w‖ = {size:.2e}) at t = {t:.4g}, a saddle "
                               "not known to hold the start on its stable set")
                    break
                if tol_rel < FLOOR:
                    reason = StopReason.FLOOR
                    message = (f"reached the floating-point floor at t = {t:.4g}: ‖∇L‖/S = {rel:.1e} and no certified "
                               "minimum nearby")
                    break
        if tests & TEST_BLOWUP:
            reason, message = StopReason.BLOWUP, f"the trajectory grows without bound (‖w‖ = {size:.3g} at t = {t:.4g})"
        elif user_stop:
            reason, message = StopReason.CALLBACK, f"stopped by the callback at t = {t:.4g}"
        elif t >= t_max:
            reason, message = StopReason.T_MAX, f"reached t_max = {t_max:.4g}"
        elif stepper.nsteps >= opts.max_steps:
            reason, message = StopReason.MAX_STEPS, f"reached max_steps = {opts.max_steps} at t = {t:.4g}"
        elif clock() > deadline:
            reason, message = StopReason.MAX_TIME, f"reached max_time = {opts.max_time:g} s at t = {t:.4g}"
        elif t >= t_stall:
            reason, message = StopReason.FLOOR, (f"no progress towards a certified limit between t = "
                                        f"{t_stall / STALL_FACTOR:.3g} and t = {t:.3g} (the floating-point floor of "
                                        "‖∇L‖)")
        if reason is not None:
            break
        t_limit = min(save[isave] if isave < save.size else t_max, t_max)
        if segments:  # many steps in one compiled call, with the tests above inside (lcnflow.dynamics.compiled)
            budget = 1 if callback is not None else min(SEGMENT_STEPS, opts.max_steps - stepper.nsteps)
            event = yield (stepper, (min(t_limit, t_stall), budget),
                           dict(check_candidate=isave >= save.size, tol_rel=tol_rel, gtol=opts.gtol,
                                reference_norm=reference_norm, bounds=(ORIGIN_SIZE * w_ref, bound), recorder=rec))
            failure = "the step size underflowed" if event == UNDERFLOW else None
        else:
            failure = stepper.step(t_limit)
        if failure:
            reason, message = StopReason.FAILED, failure
            break
        t, w = stepper.t, stepper.w
        while isave < save.size and save[isave] <= t:
            saved[isave] = stepper.dense(save[isave])
            isave += 1
        if not segments:  # (compiled segments hand their steps to the recorder themselves)
            if rec.wants(t):
                loss, g = stepper.exact()
                rec.step(t, w, loss, float(np.linalg.norm(g)))
            else:
                rec.step(t, w, math.nan, math.nan)
        if callback is not None:
            loss = stepper.exact()[0] if stepper.has_exact() else math.nan
            user_stop = bool(callback(t, w, loss, stepper.speed()))
    if pending is not None and reason not in (StopReason.MINIMUM, StopReason.STABLE_SADDLE, StopReason.BLOWUP,
                                              StopReason.NONFINITE, StopReason.CALLBACK):
        candidates.append(pending)  # the run ran out of resolution (or budget) closing in: its certified candidate
        reason = StopReason.MINIMUM
    # the last state's exact values (the record may hold estimates there)
    loss_end, g_end = stepper.exact()
    rec.set_last_values(loss_end, float(np.linalg.norm(g_end)))
    counts = (stepper.nfev, stepper.nhev, stepper.nsteps, stepper.description)
    return _package(risk, rec, counts, opts, reason, message, candidates, stable, save, saved, options, extra,
                    start, clock, scale, w_ref)


def _left(opts, start: float, clock) -> float:
    """Seconds left of ``max_time`` (``inf`` without one; 0 when it has run out)."""
    return max(start + opts.max_time - clock(), 0.0)


def settle_endpoint(risk: EmpiricalRisk, w0: np.ndarray, rec: Recorder, opts: StopOptions, *, ended_by: StopReason,
                    message: str, counts: tuple[int, int, int, str], saved_times: np.ndarray, saved: np.ndarray,
                    options: dict, start: float) -> FlowResult:
    """Certify and package the endpoint of a run that ends on its own budget (stochastic gradient descent).

    The endpoint is polished and classified like a candidate of :func:`drive_steps`: a certified minimum is the run's
    limit (``converged``); anything else is an uncertified endpoint with the nearest critical point found.  ``ended_by``
    is the stop reason (``budget``, ``max_time``, ``callback``, ``blowup``, ``nonfinite``); ``counts`` is
    ``(gradient evaluations, Hessian evaluations, steps, description of the method)``.
    """
    scale, w_ref = _run_scales(risk, w0)
    t_end, w_end, _, _ = rec.last
    candidates: list[Candidate] = []
    extra = [0, 0]
    reason = ended_by
    if ended_by not in (StopReason.BLOWUP, StopReason.NONFINITE) and np.all(np.isfinite(w_end)):
        cand = run_alone(_try_stop(risk, t_end, w_end, scale(w_end), opts, None, w0, scale, w_ref))
        candidates.append(cand)
        extra = [cand.polish.num_gradient_evaluations, cand.polish.num_hessian_evaluations]
        if cand.outcome == "minimum":
            reason = StopReason.MINIMUM
    counts = (counts[0] + extra[0], counts[1] + extra[1], counts[2], counts[3])
    return _package(risk, rec, counts, opts, reason, message, candidates, None, saved_times, saved, options,
                    [0, 0], start, time.perf_counter, scale, w_ref)


def _package(risk, rec, counts, opts, reason, message, candidates, stable, save, saved, options, extra,
             start, clock, scale, w_ref) -> FlowResult:
    rec.close()
    t_end, w_end, loss_end, g_end = rec.last
    converged = StopReason(reason).certified
    nearest, nearest_distance = None, math.nan
    # the polish of the limit, or of the endpoint itself when the run tried to stop there
    pol = candidates[-1].polish if candidates and (converged or candidates[-1].t == t_end) else None
    if converged:
        cand = candidates[-1]
        limit, gnorm = cand.point, cand.gradient_norm
        # the limit's full classification: global or local against the best the architecture can do (ℒ*_M), and
        # the spurious test, within the time left
        cp = cand.critical_point
        if opts.classify:
            cp = settle_on_m(risk, cp, max_time=_left(opts, start, clock), point=cand.point)
            cp = settle_spurious(risk, cp, cand.point, max_time=_left(opts, start, clock))
        loss, S = cand.critical_point.value, cand.point_scale  # (L and S at the limit, computed for the candidate)
        if reason == StopReason.MINIMUM:
            closing = "" if not message else (f"; closing in further, the run went on to t = {t_end:.4g} ({message})"
                                              if cand.t < t_end else f" — {message}")
            message = (f"certified {cp.kind.replace('_', ' ')} at t = {cand.t:.4g}: ‖∇L‖ = {gnorm:.2e} = "
                       f"{gnorm / S if S > 0 else 0:.1e}·S after polishing (moved {cand.polish.distance:.2e})"
                       + (f"; {DEGENERATE_NOTE}" if cp.degenerate_hessian else "") + closing)
        else:
            message = (f"converged to a {cp.kind.replace('_', ' ')} at t = {t_end:.4g}; the start lies on its stable "
                       f"set ({stable[0]})")
    else:
        limit, cp, loss, gnorm = w_end, None, loss_end, g_end
        nearest, nearest_distance = _nearest(risk, w_end, candidates, opts, extra, scale, w_ref,
                                             _left(opts, start, clock))
        if nearest is not None:
            message += (f"; nearest critical point found: {nearest.kind.replace('_', ' ')} at distance "
                        f"{nearest_distance:.3g}")
        message += "; uncertified endpoint"
    hyp = theorem_hypotheses(risk)
    if not hyp.covered:
        message += "; not covered by the convergence theorem (" + "; ".join(hyp.failures) + ")"
    # the record as arrays, once (the fit and the plateaus only read them; the plateaus get their own copy of the
    # states, so the result's trajectory shares no memory with the plateaus' points)
    times, losses, gnorms = np.array(rec.times), np.array(rec.losses), np.array(rec.gnorms)
    trajectory = np.array(rec.states)
    theta, fit = lojasiewicz_fit(losses, gnorms, loss)
    itinerary = [] if not math.isfinite(loss) else find_plateaus(
        risk, times, losses, gnorms, trajectory.copy(), float(loss),
        opts.certify_tol, scale, w_ref, deadline=start + opts.max_time, check_spurious=opts.classify)
    if converged and opts.classify and cp.undecided:
        message += f"; max_time = {opts.max_time:g} s ran out after the integration: {cp.undecided}"
    skipped = sum(p.critical_point is None and p.note == PLATEAU_OUT_OF_TIME for p in itinerary)
    if skipped:
        message += f"; max_time ran out before {skipped} plateau(s) of the itinerary were identified"
    filters = unflatten(risk.arch, limit)
    return FlowResult(
        converged=converged,
        certified=converged,
        limit=[f.copy() for f in filters],
        final_filter=final_filter_unchecked(risk.arch, filters),
        loss=float(loss),
        gradient_norm=float(gnorm),
        flow_gradient_norm=float(g_end),
        polish_distance=pol.distance if pol else 0.0,
        polish_accepted=bool(pol.accepted) if pol else False,
        polish_message=pol.message if pol else "not polished (the run ended without a certified limit)",
        t_final=float(t_end),
        times=times,
        losses=losses,
        gradient_norms=gnorms,
        trajectory=trajectory,
        saved_times=save,
        saved_states=saved,
        invariants=rec.delta0,
        invariant_drift=rec.drift,
        arc_length=rec.arc,
        lojasiewicz_exponent=theta,
        lojasiewicz_fit=fit,
        num_gradient_evaluations=counts[0] + extra[0],
        num_hessian_evaluations=counts[1] + extra[1],
        num_steps=counts[2],
        wall_time=clock() - start,
        integrator=counts[3],
        message=message,
        critical_point=cp if opts.classify else None,
        hypotheses=hyp,
        options=options,
        stop_reason=StopReason(reason),
        stable_set=stable[0] if reason == StopReason.STABLE_SADDLE else None,
        nearest_critical_point=nearest,
        nearest_distance=nearest_distance,
        num_candidates=len(candidates),
        itinerary=itinerary,
    )


def _nearest(risk, w_end, candidates, opts, extra, scale, w_ref, left) -> tuple[CriticalPoint | None, float]:
    """The classified critical point nearest to an uncertified endpoint: polish it (within ``‖w‖``), else the
    last certified candidate.  Its classification gets ``left`` seconds (and no ℒ*_M or fibre without
    ``classify``)."""
    if not (np.all(np.isfinite(w_end)) and math.isfinite(risk.flat_value(w_end))):
        return None, math.nan
    S = scale(w_end)
    pol = polish(risk, w_end, gtol=1e-2 * opts.certify_tol * S, radius=max(flat_norm(w_end), w_ref))
    extra[0] += pol.num_gradient_evaluations
    extra[1] += pol.num_hessian_evaluations
    if pol.accepted and pol.gradient_norm <= opts.certify_tol * scale(pol.point):
        if opts.classify:
            return classify_critical_point(risk, pol.point, max_time=left, critical_rtol=None), pol.distance
        return (classify_critical_point(risk, pol.point, compare_with_best=False, check_spurious=False,
                                        critical_rtol=None), pol.distance)
    for cand in reversed(candidates):
        if cand.critical_point is not None:
            return cand.critical_point, flat_norm(cand.point - w_end)
    return None, math.nan
