r"""Gradient descent ``w ← w − η ∇L(w)``: the discretization users run, with the same result type as the flow.

One step changes the conserved quantities of the flow by exactly ``η²(‖g_{i+1}‖² − ‖g_i‖²)`` (``g_i`` the layer
gradients), so ``invariant_drift`` measures how far the iteration strays from the flow it discretizes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from ..conv import as_filters, flatten
from ..risk import EmpiricalRisk
from .integrate import _stop_reason
from .result import Callback, FlowResult, Recorder, default_scale, finish


def gradient_descent(
    risk: EmpiricalRisk,
    init: Sequence[np.ndarray] | np.ndarray,
    step_size: float,
    *,
    max_steps: int = 100_000,
    gtol: float | None = None,
    adaptive: bool = False,
    max_time: float | None = None,
    callback: Callback | None = None,
    certify_tol: float | None = None,
    polish_radius: float = 1e-2,
    classify: bool = True,
    max_record: int = 400,
    blowup_factor: float = 1e6,
) -> FlowResult:
    r"""Run gradient descent from ``init`` until ``‖∇L‖ ≤ gtol`` or ``max_steps``, then certify like the flow.

    Parameters
    ----------
    risk : EmpiricalRisk
    init : list of ndarray or flat ndarray
    step_size : float
        ``η`` (> 0).  With ``adaptive=True`` the initial step of a safeguarded scheme: a step is accepted only if it
        satisfies the Armijo condition ``L(w − η g) ≤ L(w) − ½ η ‖g‖²`` (else η is halved), and η grows by 1.25
        after each accepted step.
    max_steps : int
        Iterations at most.
    gtol : float, optional
        Default ``1e-8 · max(‖∇L(w_0)‖, ‖∇ℒ(0)‖)`` as for :func:`~lcnflow.gradient_flow`.
    max_time : float, optional
        Wall-clock cap in seconds.
    callback, certify_tol, polish_radius, classify, max_record, blowup_factor
        As for :func:`~lcnflow.gradient_flow`.

    Returns
    -------
    FlowResult
        ``t_final`` and ``times`` are the flow-time equivalents ``Σ η``.
    """
    if not (isinstance(step_size, int | float) and math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"flow.step_size: must be a finite number > 0, got {step_size!r}")
    if not (isinstance(max_steps, int) and max_steps > 0):
        raise ValueError(f"flow.max_steps: must be a positive integer, got {max_steps!r}")
    clock = time.perf_counter
    start = clock()
    vg = risk._value_grad_flat
    w = flatten(as_filters(risk.arch, init, "init"))
    loss, g = vg(w)
    gn = float(np.linalg.norm(g))
    scale = default_scale(risk, gn)
    gtol = 1e-8 * scale if gtol is None else float(gtol)
    certify_tol = 1e-10 * scale if certify_tol is None else float(certify_tol)
    bound = blowup_factor * max(1.0, float(np.linalg.norm(w)))
    rec = Recorder(risk.arch, w, loss, gn, max_record)
    eta = float(step_size)
    t, nfev, nsteps = 0.0, 1, 0
    stop = _stop_reason(gn, gtol, t, math.inf, float(np.linalg.norm(w)), bound, 0, max_steps, False)
    while stop is None:
        trial = w - eta * g
        loss_t, g_t = vg(trial)
        nfev += 1
        if adaptive and not (loss_t <= loss - 0.5 * eta * gn * gn):
            eta *= 0.5
            if eta < 1e-300:
                stop = (False, "the adaptive step size underflowed")
            continue
        t += eta
        nsteps += 1
        w, loss, g = trial, loss_t, g_t
        gn = float(np.linalg.norm(g))
        rec.step(t, w, loss, gn)
        user_stop = bool(callback(t, w, loss, gn)) if callback is not None else False
        if max_time is not None and clock() - start > max_time:
            stop = (gn <= gtol, f"reached max_time = {max_time:g} s after {nsteps} steps with ‖∇L‖ = {gn:.2e}")
        else:
            stop = _stop_reason(gn, gtol, t, math.inf, float(np.linalg.norm(w)), bound, nsteps, max_steps, user_stop)
        if adaptive:
            eta *= 1.25
    converged, message = stop
    kind = "adaptive (Armijo-safeguarded)" if adaptive else f"fixed step η = {step_size:g}"
    return finish(
        risk, rec, converged=converged, stop_message=message, method=f"gradient descent, {kind}", t_final=t,
        nfev=nfev, nhev=0, nsteps=nsteps, start_time=start, certify_tol=certify_tol,
        polish_gtol=min(certify_tol, 1e-12 * scale), polish_radius=polish_radius, classify=classify,
        saved_times=np.zeros(0), saved_states=np.zeros((0, w.size)),
        options={"step_size": step_size, "adaptive": adaptive, "gtol": gtol, "max_steps": max_steps,
                 "certify_tol": certify_tol},
        clock=clock,
    )
