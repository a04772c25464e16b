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

import functools
import math
import weakref
from dataclasses import dataclass

import numpy as np

from lcnflow.analysis.optimum import EPS
from lcnflow.analysis.phases import POLISHING, announce
from lcnflow.analysis.symmetry import complement_bases, layer_norms, layer_starts, per_shape, symmetry_bases
from lcnflow.model.architecture import Architecture
from lcnflow.model.conv import final_filter, final_filter_unchecked, flat_norm, unflatten
from lcnflow.model.risk import EmpiricalRisk, compiled_kernels

_SCALES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@functools.lru_cache(maxsize=128)
def layer_offsets(arch: Architecture) -> np.ndarray:
    """Layer ``i`` is ``w[off[i]:off[i+1]]`` in a flat parameter vector (int64, ``N + 1`` entries)."""
    return np.array([*layer_starts(arch), arch.num_params], dtype=np.int64)


@dataclass(frozen=True)
class ProblemScales:
    r"""Sizes of a risk that every relative tolerance is measured against (computed once per risk).

    Attributes
    ----------
    gradient_at_zero : float
        ``f_0 = ‖∇ℒ(0)‖``, the pull of the data on the final filter at the origin.
    curvature : float
        ``κ = ‖∇²ℒ(0)‖₂`` (the square loss: ``‖G‖₂``), the curvature of ℒ.
    filter_size : float
        ``v_ref = f_0/κ``, the size of final filter the data ask for (1 when undefined).
    """

    gradient_at_zero: float
    curvature: float
    filter_size: float

    def parameter_size(self, depth: int) -> float:
        """``w_ref = √N · v_ref^{1/N}``: the size of balanced parameters whose final filter has size ``v_ref``."""
        return math.sqrt(depth) * self.filter_size ** (1.0 / depth)


def reference_size(risk: EmpiricalRisk, w0: np.ndarray) -> float:
    r"""The natural size ``w_ref`` of a run's parameters: ``√N · v_ref^{1/N}`` (:class:`ProblemScales`).

    When the data pull nowhere (``∇ℒ(0) = 0``) the problem has no size of its own and the initialization's
    ``√N ‖π(w_0)‖^{1/N}`` (else ``‖w_0‖``) stands in, so rescaling the initialization rescales ``w_ref``."""
    sc = problem_scales(risk)
    depth = risk.arch.depth
    if sc.gradient_at_zero > 0 and sc.curvature > 0:
        return sc.parameter_size(depth)
    v0 = float(np.linalg.norm(final_filter(risk.arch, w0)))
    if v0 > 0:
        return math.sqrt(depth) * v0 ** (1.0 / depth)
    size = float(np.linalg.norm(w0))
    return size if size > 0 else 1.0


#: A non-zero start smaller than this fraction of the natural parameter size ``w_ref`` cannot be told from the
#: origin in float64 (the products the flow forms underflow); see :func:`check_start`.
MIN_START_FRACTION = 1e-100


def check_start(risk: EmpiricalRisk, w0: np.ndarray, what: str = "init") -> None:
    r"""Refuse a start ``w(0) ≠ 0`` with ``‖w(0)‖ < MIN_START_FRACTION · w_ref`` (:func:`reference_size`).

    The gradient of ``L`` at such a point is a product of ``N − 1`` layers of that size and underflows; the flow
    could only report the origin's verdict, which is not where it starts.  The origin itself (all zeros) is a valid
    start (a critical point).  A larger start whose gradient still underflows to exactly 0 (deep networks: the
    product of ``N − 1`` small layers, ``Π_i ‖w^{(i)}‖/w_ref < 10⁻¹⁰⁰``) is refused too when the same layers, each
    scaled to unit norm, have a non-zero gradient: ``∇L(w(0)) = 0`` would then be an artefact of float64, not a
    critical start.

    Raises
    ------
    ValueError
        Naming ``what`` (``init``, or ``init.scale`` from a config), the size and the smallest valid one.
    """
    top = float(np.abs(w0).max()) if w0.size else 0.0
    if top == 0.0 or not math.isfinite(top):
        return
    size = top * flat_norm(w0 / top)  # (‖w‖² itself may underflow)
    w_ref = reference_size(risk, w0)
    if size < MIN_START_FRACTION * w_ref:
        raise ValueError(
            f"{what}: ‖w(0)‖ = {size:.3g} is below {MIN_START_FRACTION:g} × the natural size of the parameters "
            f"(w_ref = {w_ref:.3g}): in float64 such a start cannot be told from the origin; give a larger scale "
            f"(≥ {MIN_START_FRACTION * w_ref:.3g} in norm), or 0 to start at the origin"
        )
    norms = layer_norms(risk.arch, w0)
    smallest = float(norms.min())
    # (only tiny starts: elsewhere an exact zero gradient is a critical start, e.g. one placed at a critical point;
    # a sum of N logs below −100 needs one below −100/N, tested first with a margin of 10)
    if (0 < smallest < 10.0 ** (1 - 100 / norms.size) * w_ref
            and float(np.sum(np.log10(norms / w_ref))) < -100):
        if not np.any(risk.flat_value_and_gradient(w0, need_value=False)[1]):
            unit = w0 / np.repeat(norms, risk.arch.layer_num_params)
            if np.any(risk.flat_value_and_gradient(unit, need_value=False)[1]):
                raise ValueError(
                    f"{what}: the gradient at w(0) underflows to 0 in float64 (layer norms down to "
                    f"{float(norms.min()):.3g}, {risk.arch.depth} layers: ∇L is a product of {risk.arch.depth - 1} "
                    "of them), though w(0) is not a critical point; give a larger scale, or 0 to start at the origin"
                )


def problem_scales(risk: EmpiricalRisk) -> ProblemScales:
    """The :class:`ProblemScales` of ``risk`` (cached per risk object)."""
    cached = _SCALES.get(risk)
    if cached is None:
        zero = np.zeros(risk.arch.final_filter_shape)
        with np.errstate(all="ignore"):
            f0 = float(np.linalg.norm(risk.function_space_gradient(zero)))
            hess = risk.function_space_hessian(zero)
        kappa = float(np.linalg.norm(hess, 2)) if np.all(np.isfinite(hess)) else math.inf
        if not (math.isfinite(f0) and math.isfinite(kappa)):
            # the loss overflows at the origin (e.g. ℓ = |r|^p/p with a huge p): no scale to speak of; the run
            # itself will report the non-finite values it meets
            f0, kappa = 1.0, 1.0
        v_ref = f0 / kappa if kappa > 0 and f0 > 0 else 1.0
        cached = ProblemScales(f0, kappa, v_ref)
        _SCALES[risk] = cached
    return cached


def _cofactor_size(norms: np.ndarray | list[float]) -> float:
    """``D = (Σ_i Π_{j≠i} n_j²)^{1/2}`` for the layer norms ``n``."""
    sq = [float(n) * float(n) for n in norms]
    total = 0.0
    for i in range(len(sq)):  # N is small: plain floats beat array calls here (this runs at every step)
        total += math.prod(sq[:i]) * math.prod(sq[i + 1:])
    return math.sqrt(total)


def gradient_scale(risk: EmpiricalRisk, w: np.ndarray, *, upper_bound: bool = False,
                   reference_filter_norm: float = 0.0) -> float:
    r"""The size ``S(w)`` of the terms ``∇L(w)`` is made of: every gradient tolerance is relative to it.

    .. math:: S(w) = D(w)\,\bigl(f_0 + κ\,‖π(w)‖\bigr), \qquad D(w) = \Bigl(\sum_i \prod_{j≠i} ‖w^{(j)}‖^2\Bigr)^{1/2},

    where ``D`` bounds the size of ``dπ(w)`` (π is multilinear) and ``f_0 + κ‖v‖`` the size of the terms of
    ``∇ℒ(v)`` (see :class:`ProblemScales`).  ``S`` scales exactly like ``‖∇L‖`` when the inputs, the targets
    (square loss) or the parameters are rescaled along the flow's symmetries, so ``‖∇L‖ ≤ tol · S`` means the same
    thing in any units — and it is *not* small at a small initialization, where ``‖∇L‖ ~ ‖dπ‖ f_0`` is tiny but
    the ratio ``‖∇L‖/S`` is not.  ``upper_bound=True`` replaces ``‖π(w)‖`` by ``Π_i ‖w^{(i)}‖_1 ≥ ‖π(w)‖`` (no
    polynomial product).

    When ``f_0 = 0`` (the data pull nowhere: ``v = 0`` minimizes ℒ) the problem has no size of its own, and
    ``κ · max(‖π(w)‖, reference_filter_norm)`` stands in for the second factor — the driver passes
    ``‖π(w(0))‖``, which keeps the flow's verdicts invariant when the initialization is rescaled.

    ``w`` is a flat parameter vector; only its shape is checked (a non-finite ``w`` gives a non-finite ``S``).
    """
    sc = problem_scales(risk)
    k = compiled_kernels()
    compiled = k is not None and w.dtype == np.float64 and w.flags.c_contiguous
    if compiled:  # one compiled call for D and Π‖w_i‖_1
        cofactor, l1 = k.scale_terms(w, layer_offsets(risk.arch))
    else:
        cofactor, l1 = _cofactor_size(layer_norms(risk.arch, w)), None
    if upper_bound:
        v_norm = float(np.prod(np.add.reduceat(np.abs(w), layer_starts(risk.arch)))) if l1 is None else l1
    elif compiled and (view := risk.kernel_view()) is not None:  # π(w) in one compiled call
        v_norm = flat_norm(k.product_except(w, *view.args, -1, -1).reshape(-1))
    else:
        v_norm = flat_norm(final_filter_unchecked(risk.arch, unflatten(risk.arch, w)))
    fs = sc.gradient_at_zero + sc.curvature * v_norm
    if sc.gradient_at_zero == 0:
        fs = sc.curvature * max(v_norm, reference_filter_norm)
    if fs == 0:
        fs = 1.0
    return cofactor * fs


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

    Each iteration solves the Newton system on the complement of the rescaling directions (eigenvalues below
    ``10⁻¹³`` of the largest are dropped) and halves the step up to 12 times until ``‖∇L‖`` decreases; the best point
    is kept.

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
    return polish_many(risk, [w], gtols=[gtol], radii=[radius], max_iter=max_iter)[0]


class _Polishing:
    """One point being polished by :func:`polish_many`."""

    __slots__ = ("best", "best_g", "cur", "cur_g", "cur_norm", "g0", "gtol", "it", "message", "nfev", "nhev",
                 "radius", "w0")

    def __init__(self, risk: EmpiricalRisk, w: np.ndarray, gtol: float, radius: float):
        self.w0 = np.asarray(w, dtype=np.float64)
        _, g = risk.flat_value_and_gradient(self.w0)
        self.g0 = flat_norm(g)
        self.gtol, self.radius = gtol, radius
        self.best, self.best_g = self.w0, self.g0
        self.nfev, self.nhev, self.it = 1, 0, 0
        self.message: str | None = None  # why the iterations stopped early, if they did
        self.cur, self.cur_g, self.cur_norm = self.w0, g, self.g0

    def newton_step(self, risk: EmpiricalRisk, Q: np.ndarray, vals: np.ndarray, vecs: np.ndarray) -> bool:
        """One Newton step with backtracking (the complement ``Q`` and the eigen-decomposition of ``QᵀHQ`` given);
        whether it reduced the gradient norm."""
        cutoff = 1e-13 * max(float(np.abs(vals).max()) if vals.size else 0.0, 1e-300)
        inv = np.where(np.abs(vals) > cutoff, 1.0 / np.where(vals == 0, 1.0, vals), 0.0)
        step = -Q @ (vecs @ (inv * (vecs.T @ (Q.T @ self.cur_g))))
        for _ in range(12):  # backtracking on the gradient norm
            trial = self.cur + step
            _, tg = risk.flat_value_and_gradient(trial)
            self.nfev += 1
            tn = flat_norm(tg)
            if np.isfinite(tn) and tn < self.cur_norm:
                self.cur, self.cur_g, self.cur_norm = trial, tg, tn
                if tn < self.best_g:
                    self.best, self.best_g = trial, tn
                return True
            step = step / 2
        self.message = "Newton steps stopped reducing the gradient norm"
        return False

    def result(self, max_iter: int) -> PolishResult:
        message = self.message or ("reached the target gradient norm" if self.cur_norm <= self.gtol
                                   else f"stopped after {max_iter} iterations")
        best, best_g = self.best, self.best_g
        distance = flat_norm(best - self.w0)
        accepted = distance <= self.radius
        if not accepted:
            message = f"rejected: polishing moved {distance:.3g} > radius {self.radius:.3g} from the flow's endpoint"
            best, best_g = self.w0, self.g0
        return PolishResult(point=best, gradient_norm=best_g, start_gradient_norm=self.g0, distance=distance,
                            accepted=accepted, iterations=self.it, num_gradient_evaluations=self.nfev,
                            num_hessian_evaluations=self.nhev, message=message)


def polish_many(risk: EmpiricalRisk, points: list[np.ndarray], *, gtols: list[float], radii: list[float],
                max_iter: int = 30) -> list[PolishResult]:
    """:func:`polish` of each of ``points`` (with its own ``gtol`` and ``radius``): the points still short of their
    target take their Newton iterations together, the symmetry bases and eigen-decompositions of all of them in
    stacked calls (:func:`~lcnflow.analysis.symmetry.per_shape`), so each result is the one :func:`polish` gives."""
    announce(POLISHING)
    runs = [_Polishing(risk, w, gtol, radius) for w, gtol, radius in zip(points, gtols, radii, strict=True)]
    active = [run for run in runs if run.cur_norm > run.gtol and run.it < max_iter]
    while active:
        for run in active:
            run.it += 1
            run.nhev += 1
        hessians = risk.flat_second_order(np.stack([run.cur for run in active])).hessians
        going = []
        for j, hess in enumerate(hessians):
            if np.all(np.isfinite(hess)):
                going.append(j)
            else:
                active[j].message = "the Hessian is not finite here"
        if going:
            cur = np.stack([active[j].cur for j in going])
            Qs = complement_bases(symmetry_bases(risk.arch, cur), cur.shape[1])
            eigen = per_shape(lambda Q, H: np.linalg.eigh(Q.transpose(0, 2, 1) @ H @ Q), Qs,
                              [hessians[j] for j in going])
            going = [j for j, Q, (vals, vecs) in zip(going, Qs, eigen, strict=True)
                     if active[j].newton_step(risk, Q, vals, vecs)]
        active = [active[j] for j in going if active[j].cur_norm > active[j].gtol and active[j].it < max_iter]
    return [run.result(max_iter) for run in runs]


def lojasiewicz_fit(losses: np.ndarray, gradient_norms: np.ndarray, limit_loss: float) -> tuple[float | None, dict]:
    r"""Estimate the Łojasiewicz exponent θ from a trajectory's tail.

    Fits ``log ‖∇L‖ = θ · log(L − L*) + c`` by least squares on the last half of the recorded points after the largest
    gradient norm (so plateaus before an escape are left out) where ``L − L*`` is well above rounding.  Near a critical
    point ``‖∇L‖ ≥ c |L − L*|^θ`` with θ ∈ [1/2, 1): θ = 1/2 at non-degenerate minima, larger at degenerate ones.

    Returns
    -------
    theta : float or None
        ``None`` when fewer than 4 usable points remain (or all have one loss gap).
    info : dict
        ``method``, ``num_points``, ``r_squared``, ``loss_gap_range``.
    """
    losses = np.asarray(losses, dtype=float)
    grads = np.asarray(gradient_norms, dtype=float)
    gap = losses - limit_loss
    floor = 1e3 * EPS * max(abs(limit_loss), float(np.max(np.abs(losses))) if losses.size else 0.0, 1e-300)
    peak = int(grads.argmax()) if grads.size else 0  # the tail starts after the last escape (plateaus, saddles)
    ok = np.flatnonzero((gap[peak + 1:] > floor) & (grads[peak + 1:] > 0))
    ok = ok[ok.size // 2 :] + (peak + 1)
    info = {
        "method": "least squares of log‖∇L‖ against log(L − L*) on the last half of the points after the "
        "largest gradient norm",
        "num_points": int(ok.size),
    }
    if ok.size < 4:
        info["r_squared"] = None
        return None, info
    tail = gap[ok]
    x, y = np.log(tail), np.log(grads[ok])
    # (the fit in closed form, centred: θ = Σ dx dy / Σ dx²; the means as numpy.mean computes them)
    dx, dy = x - float(np.add.reduce(x)) / x.size, y - float(np.add.reduce(y)) / y.size
    sxx = float(dx @ dx)
    if sxx == 0.0:  # (every point at one gap: no slope to fit)
        info["r_squared"] = None
        return None, info
    theta = float(dx @ dy) / sxx
    resid = dy - theta * dx
    ss = float(dy @ dy)
    info["r_squared"] = float(1 - resid @ resid / ss) if ss > 0 else None
    info["loss_gap_range"] = [float(tail.min()), float(tail.max())]
    return theta, info
