r"""Gradient flow ``ẇ = −∇L(w)`` integrated with error control to its limit.

Methods (all in float64, all with the structured gradient of :class:`~lcnflow.EmpiricalRisk`):

* ``"auto"`` = ``"LSODA"`` — Adams–Moulton (orders 1–12) on non-stiff stretches, BDF (orders 1–5) with the exact
  Hessian as Jacobian where the flow is stiff (near minima); step sizes follow the local error, so they grow
  geometrically on plateaus and as the flow settles.  Measured fastest on the benchmark problems at tolerances
  from 1e-5 to 1e-8.
* ``"exponential"`` — exponential Rosenbrock ``exprb32`` (order 3, embedded order 2) with the exact Hessian
  ``∇²L = QΛQᵀ``: ``U = w_n + h φ_1(−hΛ) F``, ``w_{n+1} = U + 2h φ_3(−hΛ) D`` with ``F = −∇L(w_n)`` and
  ``D = F(U) − F(w_n) + ∇²L (U − w_n)``.  The linear part is integrated exactly, so near any non-degenerate
  critical point a step is limited only by the change of the Hessian.
* ``"rosenbrock"`` — linearly implicit, L-stable Rosenbrock method of order 2 with an order-3 error estimate (the
  scheme of Shampine & Reichelt's ``ode23s``), exact Hessian: ``W = I + h d ∇²L``, ``d = 1/(2 + √2)``.
* scipy's ``RK45``, ``DOP853`` (explicit: slow once the flow is stiff), ``Radau``, ``BDF``, ``LSODA``
  (stiff ones get the exact Hessian as Jacobian).

The stopping test is ``‖∇L(w)‖ ≤ gtol``.  For the scipy methods the exact gradient is evaluated at accepted steps
only where needed (near ``gtol``, at recorded points, for a callback); elsewhere the chord speed
``‖w_{n+1} − w_n‖/h`` — an estimate of ``‖∇L‖`` since ``ẇ = −∇L`` — stands in for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from ..conv import as_filters, flatten
from ..risk import EmpiricalRisk
from .result import Callback, FlowResult, Recorder, default_scale, finish

METHODS = ("auto", "exponential", "rosenbrock", "RK45", "DOP853", "Radau", "BDF", "LSODA")
_D = 1.0 / (2.0 + math.sqrt(2.0))
_TAYLOR1 = [1.0 / math.factorial(j + 1) for j in range(9)]
_TAYLOR3 = [1.0 / math.factorial(j + 3) for j in range(9)]
_E32 = 6.0 + math.sqrt(2.0)


def _check_options(method, t_max, rtol, atol, gtol, save_at):
    if method not in METHODS:
        raise ValueError(f"flow.method: unknown method {method!r}; valid: {', '.join(METHODS)}")
    for name, val in (("t_max", t_max), ("rtol", rtol), ("atol", atol)):
        if not (isinstance(val, int | float) and math.isfinite(val) and val > 0):
            raise ValueError(f"flow.{name}: must be a finite number > 0, got {val!r}")
    if gtol is not None and not (isinstance(gtol, int | float) and gtol >= 0 and math.isfinite(gtol)):
        raise ValueError(f"flow.gtol: must be a finite number ≥ 0, got {gtol!r}")
    if save_at is None:
        return np.zeros(0)
    s = np.atleast_1d(np.asarray(save_at, dtype=float))
    if s.ndim != 1 or np.any(~np.isfinite(s)) or np.any(s < 0) or np.any(np.diff(s) < 0) or (s.size and s[-1] > t_max):
        raise ValueError(f"flow.save_at: must be increasing finite times in [0, t_max={t_max:g}], got {save_at!r}")
    return s


def gradient_flow(
    risk: EmpiricalRisk,
    init: Sequence[np.ndarray] | np.ndarray,
    *,
    t_max: float = 1e10,
    gtol: float | None = None,
    method: str = "auto",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    save_at: Sequence[float] | np.ndarray | None = None,
    callback: Callback | None = None,
    max_steps: int = 200_000,
    certify_tol: float | None = None,
    polish_radius: float = 1e-2,
    classify: bool = True,
    max_record: int = 400,
    blowup_factor: float = 1e6,
) -> FlowResult:
    r"""Integrate the gradient flow ``ẇ = −∇L(w)`` from ``init`` to its limit, then certify and classify the limit.

    Parameters
    ----------
    risk : EmpiricalRisk
    init : list of ndarray or flat ndarray
        ``w(0)``.
    t_max : float
        Largest flow time; reaching it means "not converged".
    gtol : float, optional
        Stop when ``‖∇L(w)‖ ≤ gtol``.  Default ``1e-8 · scale`` with ``scale = max(‖∇L(w_0)‖, ‖∇ℒ(0)‖)``.
    method : str
        ``"auto"`` (= ``"LSODA"``), ``"exponential"``, ``"rosenbrock"``, or scipy's ``RK45``, ``DOP853``,
        ``Radau``, ``BDF``, ``LSODA``; see the module docstring.
    rtol, atol : float
        Local error tolerances (relative, absolute) of the integrator.
    save_at : sequence of float, optional
        Times at which to return the state (interpolated by each method's dense output, not the nearest step).
    callback : callable, optional
        ``callback(t, w_flat, loss, gradient_norm)`` after each accepted step; returning ``True`` stops the run.
    max_steps : int
        Safety limit on accepted + rejected steps.
    certify_tol : float, optional
        Gradient norm a polished limit must reach to be *certified*.  Default ``1e-10 · scale``.
    polish_radius : float
        Polishing is accepted only if it moves less than ``polish_radius · max(1, ‖w‖)``.
    classify : bool
        Attach :func:`~lcnflow.classify_critical_point` of the limit when converged.
    max_record : int
        Bound on the number of recorded (log-spaced) trajectory points.
    blowup_factor : float
        The run stops as unbounded when ``‖w‖ > blowup_factor · max(1, ‖w_0‖)``.

    Returns
    -------
    FlowResult
    """
    clock = time.perf_counter
    start = clock()
    save = _check_options(method, t_max, rtol, atol, gtol, save_at)
    w0 = flatten(as_filters(risk.arch, init, "init"))
    loss0, g = risk._value_grad_flat(w0)
    g0 = float(np.linalg.norm(g))
    scale = default_scale(risk, g0)
    gtol = 1e-8 * scale if gtol is None else float(gtol)
    certify_tol = 1e-10 * scale if certify_tol is None else float(certify_tol)
    bound = blowup_factor * max(1.0, float(np.linalg.norm(w0)))
    rec = Recorder(risk.arch, w0, loss0, g0, max_record)
    options = {"t_max": t_max, "gtol": gtol, "rtol": rtol, "atol": atol, "certify_tol": certify_tol,
               "polish_radius": polish_radius, "max_steps": max_steps}
    runner, used = {
        "auto": (_scipy_solver, "LSODA (Adams/BDF switching, exact Hessian as Jacobian)"),
        "exponential": (_exponential, "exponential Rosenbrock exprb32 (exact Hessian)"),
        "rosenbrock": (_rosenbrock, "linearly implicit Rosenbrock ode23s (exact Hessian)"),
    }.get(method, (_scipy_solver, f"scipy {method}"))
    solver = "LSODA" if method == "auto" else method
    state = runner(risk, w0, loss0, g, solver, t_max, gtol, rtol, atol, save, callback, max_steps, bound, rec)
    return finish(
        risk, rec, converged=state["converged"], stop_message=state["message"], method=used, t_final=state["t"],
        nfev=state["nfev"], nhev=state["nhev"], nsteps=state["nsteps"], start_time=start,
        certify_tol=certify_tol, polish_gtol=min(certify_tol, 1e-12 * scale), polish_radius=polish_radius,
        classify=classify, saved_times=save, saved_states=state["saved"], options=options, clock=clock,
    )


def _stop_reason(gn, gtol, t, t_max, wn, bound, nsteps, max_steps, stopped_by_user) -> tuple[bool, str] | None:
    if not math.isfinite(gn):
        return False, "the gradient became non-finite"
    if gn <= gtol:
        return True, f"‖∇L‖ = {gn:.2e} ≤ gtol = {gtol:.2e} at t = {t:.4g}"
    if wn > bound:
        return False, f"the trajectory grows without bound (‖w‖ = {wn:.3g} at t = {t:.4g})"
    if stopped_by_user:
        return False, f"stopped by the callback at t = {t:.4g}"
    if t >= t_max:
        return False, f"reached t_max = {t_max:.4g} with ‖∇L‖ = {gn:.2e} > gtol = {gtol:.2e}"
    if nsteps >= max_steps:
        return False, f"reached max_steps = {max_steps} at t = {t:.4g} with ‖∇L‖ = {gn:.2e}"
    return None


def _phi13(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``φ_1(z) = (e^z − 1)/z`` and ``φ_3(z) = (e^z − 1 − z − z²/2)/z³``, stable for all real ``z``.

    Taylor series ``φ_k(z) = Σ_j z^j/(j+k)!`` (8 terms, error < 1e-16) for ``|z| < 0.1``; closed forms elsewhere
    (relative rounding error below 1e-13 there), with ``z`` capped at 700 so a step through a strongly unstable
    direction gives a huge, rejected error estimate instead of ``inf``.
    """
    z = np.minimum(z, 700.0)
    small = np.abs(z) < 0.1
    zl = np.where(small, 1.0, z)
    em1 = np.expm1(zl)
    phi1 = em1 / zl
    phi3 = (em1 - zl - 0.5 * zl * zl) / (zl * zl * zl)
    if small.any():
        zs = z[small]
        p1, p3 = _TAYLOR1[-1], _TAYLOR3[-1]
        for c1, c3 in zip(_TAYLOR1[-2::-1], _TAYLOR3[-2::-1], strict=True):
            p1 = p1 * zs + c1
            p3 = p3 * zs + c3
        phi1[small] = p1
        phi3[small] = p3
    return phi1, phi3


def _exponential(risk, w, loss, g, method, t_max, gtol, rtol, atol, save, callback, max_steps, bound, rec):
    r"""Exponential Rosenbrock method ``exprb32`` (order 3, embedded order 2) with the exact Hessian.

    With ``J = −∇²L(w_n) = −QΛQᵀ`` and ``F = −∇L``: ``U = w_n + h φ_1(hJ) F(w_n)``,
    ``D = F(U) − F(w_n) − J(U − w_n)``, ``w_{n+1} = U + 2h φ_3(hJ) D``; the local error estimate is
    ``2h φ_3(hJ) D``.  The linear part is integrated exactly, so on (nearly) quadratic stretches — near any
    non-degenerate critical point — the step size is limited only by the change of the Hessian.
    """
    vg, vgh = risk._value_grad_flat, risk._value_grad_hess_flat
    n = w.size
    loss, g, hess = vgh(w)
    gn = float(np.linalg.norm(g))
    t, nfev, nhev, nsteps = 0.0, 1, 1, 0
    saved = np.full((save.size, n), np.nan)
    isave = 0
    while isave < save.size and save[isave] <= 0.0:
        saved[isave] = w
        isave += 1
    sc0 = atol + rtol * np.abs(w)
    h = min(0.01 * max(float(np.linalg.norm(w / sc0)), 1.0) / max(float(np.linalg.norm(g / sc0)), 1e-300), t_max)
    lam = Q = a = None
    stop = _stop_reason(gn, gtol, t, t_max, float(np.linalg.norm(w)), bound, 0, max_steps, False)
    while stop is None:
        if lam is None:
            lam, Q = np.linalg.eigh(hess)
            a = Q.T @ g
        target = save[isave] if isave < save.size else t_max
        h_try = min(h, target - t)
        phi1, phi3 = _phi13(-h_try * lam)
        dU = Q @ (-h_try * phi1 * a)
        U = w + dU
        _, gU = vg(U, False)
        nfev += 1
        nsteps += 1
        D = g - gU + hess @ dU  # F(U) − F(w) − J(U − w) with F = −∇L, J = −∇²L
        e = Q @ ((2.0 * h_try) * phi3 * (Q.T @ D))
        wn = U + e
        scale = atol + rtol * np.maximum(np.abs(w), np.abs(wn))
        err = float(np.sqrt(np.mean((e / scale) ** 2)))
        if not math.isfinite(err):
            h = 0.25 * h_try
            continue
        if err <= 1.0:
            loss_n, g_n, hess_n = vgh(wn)
            nfev += 1
            nhev += 1
            if not math.isfinite(loss_n):
                h = 0.25 * h_try
                continue
            t = target if h_try == target - t else t + h_try
            w, loss, g, hess = wn, loss_n, g_n, hess_n
            gn = float(np.linalg.norm(g))
            lam = None
            while isave < save.size and save[isave] <= t:
                saved[isave] = w
                isave += 1
            rec.step(t, w, loss, gn)
            user_stop = bool(callback(t, w, loss, gn)) if callback is not None else False
            stop = _stop_reason(gn, gtol, t, t_max, float(np.linalg.norm(w)), bound, nsteps, max_steps, user_stop)
            grow = 5.0 if err == 0 else min(5.0, 0.9 * err ** (-1.0 / 3.0))
            h = max(h, h_try * grow) if h_try < h else h_try * grow
        else:
            h = h_try * max(0.2, 0.9 * err ** (-1.0 / 3.0))
            if nsteps >= max_steps:
                stop = _stop_reason(gn, gtol, t, t_max, float(np.linalg.norm(w)), bound, nsteps, max_steps, False)
    converged, message = stop
    return {"converged": converged, "message": message, "t": t, "nfev": nfev, "nhev": nhev, "nsteps": nsteps,
            "saved": saved}


def _rosenbrock(risk, w, loss, g, method, t_max, gtol, rtol, atol, save, callback, max_steps, bound, rec):
    vg = risk._value_grad_flat
    n = w.size
    eye = np.eye(n)
    F0 = -g
    gn = float(np.linalg.norm(g))
    t, nfev, nhev, nsteps = 0.0, 1, 0, 0
    saved = np.empty((save.size, n))
    isave = 0
    while isave < save.size and save[isave] <= 0.0:
        saved[isave] = w
        isave += 1
    # initial step: a small fraction of the time scale ‖w‖/‖∇L‖
    sc0 = atol + rtol * np.abs(w)
    h = 0.01 * max(float(np.linalg.norm(w / sc0)), 1.0) / max(float(np.linalg.norm(F0 / sc0)), 1e-300)
    h = min(h, t_max)
    hess = None
    stop = _stop_reason(gn, gtol, t, t_max, float(np.linalg.norm(w)), bound, 0, max_steps, False)
    while stop is None:
        h = min(h, t_max - t)
        if hess is None:
            hess = risk._hessian_flat(w)
            nhev += 1
        try:
            Winv = np.linalg.inv(eye + (h * _D) * hess)
        except np.linalg.LinAlgError:
            h *= 0.25
            nsteps += 1
            continue
        k1 = Winv @ F0
        _, g1 = vg(w + (0.5 * h) * k1)
        F1 = -g1
        k2 = Winv @ (F1 - k1) + k1
        wn = w + h * k2
        loss_n, gn_vec = vg(wn)
        F2 = -gn_vec
        k3 = Winv @ (F2 - _E32 * (k2 - F1) - 2.0 * (k1 - F0))
        nfev += 2
        nsteps += 1
        scale = atol + rtol * np.maximum(np.abs(w), np.abs(wn))
        err = (h / 6.0) * float(np.sqrt(np.mean(((k1 - 2.0 * k2 + k3) / scale) ** 2)))
        if not math.isfinite(err) or not math.isfinite(loss_n):
            h *= 0.25
            continue
        if err <= 1.0:
            t_new = t + h
            while isave < save.size and save[isave] <= t_new:
                theta = (save[isave] - t) / h
                saved[isave] = w + h * ((theta * (1 - theta) / (1 - 2 * _D)) * k1
                                        + (theta * (theta - 2 * _D) / (1 - 2 * _D)) * k2)
                isave += 1
            t, w, F0, loss = t_new, wn, F2, loss_n
            gn = float(np.linalg.norm(F2))
            hess = None
            rec.step(t, w, loss, gn)
            user_stop = bool(callback(t, w, loss, gn)) if callback is not None else False
            stop = _stop_reason(gn, gtol, t, t_max, float(np.linalg.norm(w)), bound, nsteps, max_steps, user_stop)
            h *= 5.0 if err == 0 else min(5.0, 0.8 * err ** (-1.0 / 3.0))
        else:
            h *= max(0.2, 0.8 * err ** (-1.0 / 3.0))
            if nsteps >= max_steps:
                stop = _stop_reason(gn, gtol, t, t_max, float(np.linalg.norm(w)), bound, nsteps, max_steps, False)
    if isave < save.size:
        saved[isave:] = np.nan
    converged, message = stop
    return {"converged": converged, "message": message, "t": t, "nfev": nfev, "nhev": nhev, "nsteps": nsteps,
            "saved": saved}


def _scipy_solver(risk, w, loss, g, method, t_max, gtol, rtol, atol, save, callback, max_steps, bound, rec):
    counts = {"f": 1, "j": 0}
    last: dict = {"y": w.copy(), "loss": loss, "g": g}  # the solver's last evaluation, reused at accepted steps

    def fun(_t, y):
        counts["f"] += 1
        val, grad = risk._value_grad_flat(y)
        last.update(y=y.copy(), loss=val, g=grad)
        return -grad

    def jac(_t, y):
        counts["j"] += 1
        return -risk._hessian_flat(y)

    kwargs = {"rtol": rtol, "atol": atol}
    if method in ("Radau", "BDF", "LSODA"):
        kwargs["jac"] = jac
    import scipy.integrate  # imported when a run needs it (about 0.8 s at start-up)

    solver = getattr(scipy.integrate, method)(fun, 0.0, w.copy(), t_max, **kwargs)
    saved = np.full((save.size, w.size), np.nan)
    isave = 0
    while isave < save.size and save[isave] <= 0.0:
        saved[isave] = w
        isave += 1
    gn = float(np.linalg.norm(g))
    nsteps = 0
    stop = _stop_reason(gn, gtol, 0.0, t_max, float(np.linalg.norm(w)), bound, 0, max_steps, False)
    while stop is None:
        t_old, y_old = solver.t, solver.y.copy()
        msg = solver.step()
        nsteps += 1
        if solver.status == "failed":
            stop = (False, f"scipy {method} failed: {msg}")
            break
        if isave < save.size and save[isave] <= solver.t:
            dense = solver.dense_output()
            while isave < save.size and t_old <= save[isave] <= solver.t:
                saved[isave] = dense(save[isave])
                isave += 1
        y = solver.y
        # ẏ = −∇L, so the chord speed estimates ‖∇L‖; the exact gradient is evaluated only where it is needed:
        # near the stopping tolerance, at recorded points, for a callback, or at the last step
        speed = float(np.linalg.norm(y - y_old)) / max(solver.t - t_old, 1e-300)
        exact = speed <= 100 * gtol or rec.wants(solver.t) or callback is not None or nsteps >= max_steps
        exact = exact or solver.t >= t_max or solver.status != "running"
        if exact and not np.array_equal(last["y"], y):
            fun(solver.t, y)
        loss, gn = (last["loss"], float(np.linalg.norm(last["g"]))) if exact else (math.nan, speed)
        rec.step(solver.t, y.copy(), loss, gn)
        user_stop = bool(callback(solver.t, y, loss, gn)) if callback is not None else False
        stop = _stop_reason(gn if exact else max(gn, 2 * gtol), gtol, solver.t, t_max, float(np.linalg.norm(y)),
                            bound, nsteps, max_steps, user_stop)
        if stop is not None and not exact:  # stopping for another reason: report the exact gradient there
            fun(solver.t, y)
            rec.set_last_values(last["loss"], float(np.linalg.norm(last["g"])))
    converged, message = stop
    return {"converged": converged, "message": message, "t": float(solver.t), "nfev": counts["f"],
            "nhev": counts["j"], "nsteps": nsteps, "saved": saved}
