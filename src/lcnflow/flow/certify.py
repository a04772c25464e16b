r"""Certifying a limit: Newton polishing on the complement of the rescaling directions, Łojasiewicz fit.

The Hessian of ``L`` is singular along the ``N − 1`` rescaling directions, so plain Newton is ill-posed; on their
orthogonal complement ``Q`` the step

.. math:: Δ = −Q\,(Q^\top ∇^2L\,Q)^{+} Q^\top ∇L

(pseudo-inverse over the non-negligible eigenvalues) converges quadratically to a nearby non-degenerate critical
point of any index and linearly to a degenerate one.  We keep a step only if it reduces ``‖∇L‖``, and accept the
polished point only if it stays within ``radius`` of the flow's endpoint: we certify the flow's limit, not some
other critical point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..risk import EmpiricalRisk
from .symmetry import complement_basis, symmetry_basis


@dataclass(frozen=True)
class PolishResult:
    """Outcome of :func:`polish`.

    Attributes
    ----------
    point : ndarray
        The polished flat parameter vector if accepted, else the starting point.
    gradient_norm : float
        ``‖∇L‖`` at ``point``.
    start_gradient_norm : float
    distance : float
        ``‖polished − start‖`` (also reported when the polish was rejected).
    accepted : bool
    iterations, num_gradient_evaluations, num_hessian_evaluations : int
    message : str
    """

    point: np.ndarray
    gradient_norm: float
    start_gradient_norm: float
    distance: float
    accepted: bool
    iterations: int
    num_gradient_evaluations: int
    num_hessian_evaluations: int
    message: str


def polish(
    risk: EmpiricalRisk,
    w: np.ndarray,
    *,
    gtol: float,
    radius: float,
    max_iter: int = 30,
) -> PolishResult:
    """Newton-polish the flat point ``w`` to ``‖∇L‖ ≤ gtol`` on the complement of the rescaling directions.

    Parameters
    ----------
    risk : EmpiricalRisk
    w : ndarray
        Flat parameters (the flow's endpoint).
    gtol : float
        Target gradient norm.
    radius : float
        The polished point is accepted only if ``‖Δ‖ ≤ radius``.
    max_iter : int
        Newton iterations at most.
    """
    w0 = np.asarray(w, dtype=np.float64)
    _, g = risk._value_grad_flat(w0)
    g0 = float(np.linalg.norm(g))
    best, best_g = w0, g0
    nfev, nhev, it = 1, 0, 0
    message = "already at the target gradient norm"
    cur, cur_g, cur_norm = w0, g, g0
    while cur_norm > gtol and it < max_iter:
        it += 1
        hess = risk.hessian(cur)
        nhev += 1
        Q = complement_basis(symmetry_basis(risk.arch, cur), cur.size)
        vals, vecs = np.linalg.eigh(Q.T @ hess @ Q)
        cutoff = 1e-13 * max(float(np.abs(vals).max()) if vals.size else 0.0, 1e-300)
        inv = np.where(np.abs(vals) > cutoff, 1.0 / np.where(vals == 0, 1.0, vals), 0.0)
        step = -Q @ (vecs @ (inv * (vecs.T @ (Q.T @ cur_g))))
        improved = False
        for _ in range(12):  # backtracking on the gradient norm
            trial = cur + step
            _, tg = risk._value_grad_flat(trial)
            nfev += 1
            tn = float(np.linalg.norm(tg))
            if np.isfinite(tn) and tn < cur_norm:
                cur, cur_g, cur_norm, improved = trial, tg, tn, True
                break
            step = step / 2
        if not improved:
            message = "Newton steps stopped reducing the gradient norm"
            break
        if cur_norm < best_g:
            best, best_g = cur, cur_norm
    else:
        message = "reached the target gradient norm" if cur_norm <= gtol else f"stopped after {max_iter} iterations"
    distance = float(np.linalg.norm(best - w0))
    accepted = distance <= radius
    if not accepted:
        message = f"rejected: polishing moved {distance:.3g} > radius {radius:.3g} from the flow's endpoint"
        best, best_g = w0, g0
    return PolishResult(
        point=best,
        gradient_norm=best_g,
        start_gradient_norm=g0,
        distance=distance,
        accepted=accepted,
        iterations=it,
        num_gradient_evaluations=nfev,
        num_hessian_evaluations=nhev,
        message=message,
    )


def lojasiewicz_fit(losses: np.ndarray, gradient_norms: np.ndarray, limit_loss: float) -> tuple[float | None, dict]:
    r"""Estimate the Łojasiewicz exponent θ from a trajectory's tail.

    Fits ``log ‖∇L‖ = θ · log(L − L*) + c`` by least squares on the last half of the recorded points after the largest
    gradient norm (so plateaus before an escape are left out) where ``L − L*`` is well above rounding.  Near a critical
    point ``‖∇L‖ ≥ c |L − L*|^θ`` with θ ∈ [1/2, 1): θ = 1/2 at non-degenerate minima, larger at degenerate ones.

    Returns
    -------
    theta : float or None
        ``None`` when fewer than 4 usable points remain.
    info : dict
        ``method``, ``num_points``, ``r_squared``, ``loss_gap_range``.
    """
    losses = np.asarray(losses, dtype=float)
    grads = np.asarray(gradient_norms, dtype=float)
    gap = losses - limit_loss
    floor = 1e3 * np.finfo(float).eps * max(abs(limit_loss), np.max(np.abs(losses)) if losses.size else 0.0, 1e-300)
    peak = int(np.argmax(grads)) if grads.size else 0  # the tail starts after the last escape (plateaus, saddles)
    ok = np.nonzero((gap > floor) & (grads > 0) & (np.arange(grads.size) > peak))[0]
    ok = ok[ok.size // 2 :]
    info = {
        "method": "least squares of log‖∇L‖ against log(L − L*) on the last half of the points after the "
        "largest gradient norm",
        "num_points": int(ok.size),
    }
    if ok.size < 4:
        info["r_squared"] = None
        return None, info
    x, y = np.log(gap[ok]), np.log(grads[ok])
    A = np.vstack([x, np.ones_like(x)]).T
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - A @ coef
    ss = float(np.sum((y - y.mean()) ** 2))
    info["r_squared"] = float(1 - resid @ resid / ss) if ss > 0 else None
    info["loss_gap_range"] = [float(gap[ok].min()), float(gap[ok].max())]
    return float(coef[0]), info
