r"""Gradient flow ``ẇ = −∇L(w)`` integrated with error control until it provably stops moving.

The integrators are in :mod:`lcnflow.dynamics.steppers`; the loop that decides when a run may stop, certifies and
classifies its limit and records its itinerary is :func:`lcnflow.dynamics.driver.drive_steps`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Sequence
from dataclasses import replace

import numpy as np

from lcnflow._threads import one_blas_thread
from lcnflow.analysis.certify import check_start, reference_size
from lcnflow.analysis.limits import SAME_LIMIT_RTOL, limit_distance
from lcnflow.dynamics.driver import Request, drive_steps, run_alone
from lcnflow.dynamics.options import FLOW_DEFAULTS, INTEGRATORS, FlowOptions, check_callback, check_save_at
from lcnflow.dynamics.result import Callback, FlowResult
from lcnflow.dynamics.solvers import make_flow_stepper
from lcnflow.model.conv import as_filters, flatten
from lcnflow.model.risk import EmpiricalRisk

#: Kept for backwards compatibility: the integrators' names.
METHODS = INTEGRATORS


def _check_risk(risk) -> EmpiricalRisk:
    if not isinstance(risk, EmpiricalRisk):
        raise ValueError(f"risk: expected a lcnflow.EmpiricalRisk, got {type(risk).__name__} "
                         "(build one with lcnflow.EmpiricalRisk(arch, loss, dataset))")
    return risk


def gradient_flow(
    risk: EmpiricalRisk,
    init: Sequence[np.ndarray] | np.ndarray,
    *,
    integrator: str = FLOW_DEFAULTS.integrator,
    t_max: float = FLOW_DEFAULTS.t_max,
    gtol: float = FLOW_DEFAULTS.gtol,
    rtol: float = FLOW_DEFAULTS.rtol,
    atol: float = FLOW_DEFAULTS.atol,
    save_at: Sequence[float] | np.ndarray | None = None,
    callback: Callback | None = None,
    max_steps: int = FLOW_DEFAULTS.max_steps,
    max_time: float = FLOW_DEFAULTS.max_time,
    certify_tol: float = FLOW_DEFAULTS.certify_tol,
    polish_radius: float = FLOW_DEFAULTS.polish_radius,
    classify: bool = FLOW_DEFAULTS.classify,
    max_record: int = FLOW_DEFAULTS.max_record,
    blowup_factor: float = FLOW_DEFAULTS.blowup_factor,
    verify: bool = FLOW_DEFAULTS.verify,
    method: str | None = None,
) -> FlowResult:
    r"""Integrate the gradient flow ``ẇ = −∇L(w)`` from ``init`` to its limit, certify and classify the limit.

    The run ends only where a certificate says the flow stops (a minimum, or a saddle whose stable set the start
    lies on); a small gradient alone is a *candidate*.  See :mod:`lcnflow.dynamics.driver` for the rule and
    :class:`~lcnflow.dynamics.options.FlowOptions` for every option; all tolerances are relative, so rescaling the data
    or the initialization changes no verdict.

    Parameters
    ----------
    risk : EmpiricalRisk
    init : list of ndarray or flat ndarray
        ``w(0)``.
    integrator : str
        ``"auto"`` (the Rosenbrock method Rodas4 with the exact Hessian, compiled for every built-in loss whose data
        passes the kernels run; LSODA for built-in losses on long 2D filters, where a Hessian costs about fifty
        gradients: :func:`~lcnflow.dynamics.solvers.auto_integrator`), ``"rodas4"``, ``"exponential"``,
        ``"rosenbrock"``, or scipy's ``RK45``, ``DOP853``, ``Radau``, ``BDF``, ``LSODA``
        (:mod:`lcnflow.dynamics.steppers`).
    t_max : float
        Largest flow time (reaching it means "not converged"); infinite by default.
    gtol : float
        Candidate tolerance: ``‖∇L(w)‖ ≤ gtol · S(w)`` with ``S`` of :func:`~lcnflow.analysis.certify.gradient_scale`.
    rtol, atol : float
        Local error tolerances; ``atol`` relative to the size of one coefficient of ``w(0)``.
    save_at : sequence of float, optional
        Times at which to return the state (each method's dense output, not the nearest step).
    callback : callable, optional
        ``callback(t, w_flat, loss, gradient_norm)`` after each accepted step; ``loss`` is NaN and
        ``gradient_norm`` an estimate (the chord speed) where the integrator did not evaluate them.  Returning
        ``True`` stops the run.  A callback never changes what the run computes.
    max_steps, max_time : int, float
        Steps (accepted and rejected) and wall-clock seconds at most.
    certify_tol : float
        A polished point is certified when ``‖∇L‖ ≤ certify_tol · S``.
    polish_radius : float
        Polishing may move the state at most ``polish_radius · ‖w‖``.
    classify : bool
        Attach :func:`~lcnflow.classify_critical_point` of the limit.
    max_record : int
        Bound on the number of recorded (log-spaced) trajectory points.
    blowup_factor : float
        Stop as unbounded when ``‖w‖`` exceeds this times the natural size of the problem's parameters.
    verify : bool
        Re-integrate at 100× tighter ``rtol``/``atol`` and set ``limit_verified``: the basin reached must not be an
        artifact of integration error.
    method : str, optional
        Former name of ``integrator``.

    Returns
    -------
    FlowResult
    """
    start = time.perf_counter()
    if method is not None:
        integrator = method
    opts = FlowOptions(integrator=integrator, t_max=t_max, gtol=gtol, rtol=rtol, atol=atol, max_steps=max_steps,
                       max_time=max_time, certify_tol=certify_tol, polish_radius=polish_radius, classify=classify,
                       max_record=max_record, blowup_factor=blowup_factor, verify=verify)
    return run_flow(_check_risk(risk), init, opts, save_at=save_at, callback=callback, start=start)


@one_blas_thread
def run_flow(risk: EmpiricalRisk, init, opts: FlowOptions, *, save_at=None, callback=None,
             start: float | None = None) -> FlowResult:
    """:func:`gradient_flow` with its options as one :class:`~lcnflow.dynamics.options.FlowOptions`."""
    start = time.perf_counter() if start is None else start
    save = check_save_at(save_at, opts.t_max)
    check_callback(callback)
    w0 = flatten(as_filters(risk.arch, init, "init"))
    check_start(risk, w0)
    return run_alone(flow_steps(risk, w0, opts, save=save, callback=callback, start=start))


def flow_steps(risk: EmpiricalRisk, w0: np.ndarray, opts: FlowOptions, *, save: np.ndarray, callback=None,
               start: float, clock=time.perf_counter) -> Generator[Request, object, FlowResult]:
    """The run of :func:`run_flow` from the checked start ``w0`` (flat) as a generator of its compiled segments
    (:func:`~lcnflow.dynamics.driver.drive_steps`); ``clock`` gives the run's time."""
    size = float(np.linalg.norm(w0))
    atol = opts.atol * (size if size > 0 else reference_size(risk, w0)) / math.sqrt(w0.size)

    def make(w, loss, g):
        return make_flow_stepper(risk, w, loss, g, opts.integrator, opts.rtol, atol, opts.t_max)

    result = yield from drive_steps(risk, w0, make, opts, save=save, t_max=opts.t_max, callback=callback,
                                   options=opts.to_dict(), start=start, clock=clock)
    result.method = "gradient_flow"
    if result.stop_reason == "max_steps" and opts.integrator in ("RK45", "DOP853"):
        # the flow is stiff (a plateau next to fast directions): explicit methods need steps below the fastest
        # time scale for the whole run
        result.message += (f"; {opts.integrator} is an explicit method, whose steps stay below the fastest time "
                           "scale of this stiff flow: integrator = \"auto\" (or \"LSODA\", \"Radau\", \"BDF\") "
                           "takes steps as long as the flow allows")
    if opts.verify:  # within what is left of max_time
        left = start + opts.max_time - clock()
        if left > 0:
            tight = replace(opts, rtol=max(opts.rtol / 100, 1e-13), atol=opts.atol / 100, verify=False,
                            max_time=left)
            check = run_flow(risk, w0, tight)
            result.limit_verified, result.verification = compare_limits(result, check)
        else:
            result.message += f"; not verified: max_time = {opts.max_time:g} s ran out before the verification run"
    return result


def compare_limits(a: FlowResult, b: FlowResult) -> tuple[bool, dict]:
    r"""Whether two runs reached the same limit: both certified with the same kind, and final filters the same limit
    (:func:`~lcnflow.analysis.limits.same_limit`: relative distance at most
    :data:`~lcnflow.analysis.limits.SAME_LIMIT_RTOL`).  Near a limit with a degenerate Hessian the flow closes in
    slowly, and one run may stop where the Hessian still looks steady and the other where it does not: a local
    minimum and a degenerate point that is not shown to be a saddle count as the same kind there."""
    dist = limit_distance(a.final_filter, b.final_filter)
    same = bool(a.certified and b.certified and _kind_class(a) == _kind_class(b) and dist <= SAME_LIMIT_RTOL)
    return same, {"final_filter_distance": dist, "rtol": SAME_LIMIT_RTOL, "kind": a.kind, "reference_kind": b.kind,
                  "loss": a.loss, "reference_loss": b.loss, "reference_message": b.message,
                  "reference_options": b.options}


def _kind_class(r: FlowResult) -> str:
    """The kind of a run's limit for :func:`compare_limits`: a minimum whose Hessian is degenerate is a minimum."""
    cp = r.critical_point
    if cp is not None and r.kind in ("local_minimum", "degenerate") and cp.not_a_minimum is not True:
        return "local_minimum"
    return str(r.kind)


def warm_up(every_kernel: bool = True) -> float:
    """Compile (or load from Numba's cache) the kernels and the compiled Rodas4 segment, on a tiny problem; returns
    seconds.  Sweep workers call it before their first run, so no run's time includes it.  ``every_kernel=False``
    loads only what a run of the square loss uses (the compiled integrator and its kernels): the other kernels then
    load at their first use, inside the compiled call whose time the runs of a batch share."""
    from lcnflow import kernels as _kernels
    from lcnflow.model.architecture import Architecture
    from lcnflow.model.data import Dataset

    start = time.perf_counter()
    x = np.linspace(-1.0, 1.0, 12).reshape(2, 6)
    risk = EmpiricalRisk(Architecture(6, [2, 2]), "square", Dataset(x, x[:, :4] + x[:, 1:5]))
    if every_kernel:
        _kernels.warm_up()
    gradient_flow(risk, [np.array([0.3, 0.2]), np.array([0.5, -0.1])], max_steps=50)
    return time.perf_counter() - start
