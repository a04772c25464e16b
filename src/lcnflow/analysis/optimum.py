r"""The best an architecture can do: ``ℒ*_M = min_{v ∈ M} ℒ(v)`` over the function space ``M = π(R^P)``.

``L(w) = ℒ(π(w))``, so the global minimum of ``L`` is ``ℒ*_M``.  It equals the unconstrained minimum
``ℒ* = min_{v ∈ R^{k_v}} ℒ(v)`` when the unconstrained minimizer ``v̂`` lies in ``M`` (always, for a filling
architecture); otherwise it is larger and attained on the boundary of ``M`` (``M`` is closed).

**1D, strides 1** (more generally: every layer with ``k_i > 1`` has ``S_{i−1} = 1``).  π multiplies the layer
polynomials, so ``M`` is the set of final filters whose polynomial, read as a binary form of degree ``D = k_v − 1``,
has at least ``r`` real roots counted with multiplicity — roots at infinity counting when the degree drops — where
``r`` is the number of layers of odd degree ``k_i − 1`` (Kohn, Merkh, Montúfar & Trager 2022).  Write ``M(D, r)``.
If ``v̂ ∉ M(D, r)`` the minimizer lies on the boundary, where a pair of complex roots has met on the real axis: it is
``v = (cos θ·x − sin θ)²·q`` for some angle ``θ ∈ [−π/2, π/2)`` (``θ = −π/2`` is the double root at infinity) and
``q ∈ M(D − 2, r − 2)``.  For fixed ``θ``, ``q ↦ ℒ(S_θ q)`` (``S_θ`` multiplies by the squared factor) is again a
convex risk, over a smaller space of the same kind, so

.. math:: ℒ^*_{M(D,r)} = \min_θ \; \min_{q ∈ M(D−2, r−2)} ℒ(S_θ q),

a recursion with a one-dimensional global search over ``θ`` at each level that ends when ``r ≤ 1`` (then
``M(D, r) = R^{D+1}`` and the inner problem is unconstrained: a linear solve for the square loss).  The search over
``θ`` evaluates a grid of angles at every level; the best few grid configurations are then refined jointly in all
their angles (Nelder–Mead).  The result is exact up to the grids' resolution (a better basin narrower than the grid
spacing would be missed) and up to rounding.  The nested grids cost the product of their sizes, which grows
exponentially with the number of levels; beyond :data:`MAX_GRID_PRODUCT` (:data:`MAX_GRID_PRODUCT_GENERAL` for other
losses) evaluations the angles are instead chosen one level at a time (the best angle of each level's grid with the
cofactor unconstrained, then the next level), then refined jointly: ``O(levels × grid)`` evaluations, and the value
found — attained on ``M`` — is reported as an upper bound (``exact = False``).

**Time.**  ``max_time`` bounds the search; when it runs out, :class:`OutOfTime` is raised and nothing is cached.

**Other architectures** (strides before a layer, 2D) without an exact description of ``M``: the best value found by
local minimizations of ``L`` from random starts — at least :data:`MIN_STARTS`, and more until :data:`REPEATS` of
them reach the best value (at most :data:`NUM_STARTS`) — an upper bound on ``ℒ*_M`` (every value found is attained
by a network), labelled ``exact = False`` ("bound from n starts"), unless it matches the unconstrained minimum
``ℒ*``, which proves it exact.  A classified point below the bound lowers it
(:func:`~lcnflow.analysis.critical.settle_on_m`): the bound is never worse than a point of M that lcnflow has seen.
For a loss other than the square loss (whose evaluations do not pass over the data) on data with more than
``4 ×`` :data:`SEARCH_OUTPUTS` outputs, the starts run on a random subsample of about :data:`SEARCH_OUTPUTS` outputs
(crops of the samples: :func:`_search_subsample`) and the best few minima found there are refined on all the data by
a trust region on second-order models of ℒ (:func:`_model_trust_region`, Newton steps); the value returned is
still attained on all the data.

See docs/classification.md for how the classification of critical points uses ``ℒ*_M``.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.optimize
from numpy.polynomial import polynomial as P

from lcnflow._threads import one_blas_thread
from lcnflow.analysis.phases import SEARCHING_M, announce
from lcnflow.model.architecture import Architecture
from lcnflow.model.conv import final_filter, final_filter_parts, flatten, unflatten
from lcnflow.model.data import Dataset
from lcnflow.model.risk import EmpiricalRisk

__all__ = ["FunctionSpaceBest", "OutOfTime", "best_on_function_space", "real_root_count", "risk_rounding",
           "unconstrained_optimum"]

Method = Literal["unconstrained", "real_root_recursion", "multistart"]

EPS = float(np.finfo(float).eps)
#: Angles of the grid searched for the double root per level (outermost first), by the number of levels
#: ``⌊r/2⌋`` of the recursion: the work grows like the product of the grids, so deeper recursions use coarser grids.
GRID_SQUARE = {1: (256,), 2: (128, 64), 3: (64, 32, 32)}
#: The same for non-quadratic losses (every evaluation is a Newton solve with passes over the data).
GRID_GENERAL = {1: (96,), 2: (32, 24), 3: (16, 12, 12)}
#: Most local minimizations of ``L`` when ``M`` has no exact description implemented (see :func:`_multistart`).
NUM_STARTS = 64
#: Fewest of them before the search may stop.
MIN_STARTS = 16
#: The search stops (after :data:`MIN_STARTS`) once this many starts have reached the best value found.
REPEATS = 3
#: Most evaluations of the nested angle grids (square loss); beyond it the levels are searched one at a time.
MAX_GRID_PRODUCT = 65_536
#: The same for non-quadratic losses.
MAX_GRID_PRODUCT_GENERAL = 2_304


class OutOfTime(Exception):
    """The time given to :func:`best_on_function_space` ran out before ``ℒ*_M`` was found."""

_CACHE: weakref.WeakKeyDictionary[EmpiricalRisk, FunctionSpaceBest] = weakref.WeakKeyDictionary()
_UNCONSTRAINED: weakref.WeakKeyDictionary[EmpiricalRisk, tuple[np.ndarray, float]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class FunctionSpaceBest:
    r"""``ℒ*_M = min_{v ∈ M} ℒ(v)``, the global minimum of ``L`` (see the module docstring).

    Attributes
    ----------
    value : float
        ``ℒ*_M`` (an upper bound on it when ``exact`` is False).
    filter : ndarray
        A final filter ``v*_M ∈ M`` with ``ℒ(v*_M) = value``.
    exact : bool
        True when ``value`` is ``ℒ*_M`` (up to rounding and, for the real-root recursion, the angular grid);
        False when it is the best found by local searches: an upper bound.
    method : str
        ``"unconstrained"`` (``v̂ ∈ M``), ``"real_root_recursion"`` or ``"multistart"``.
    statement : str
        What was searched and how exact the result is, in words.
    unconstrained_value : float
        ``ℒ* = min_{v ∈ R^{k_v}} ℒ(v)`` (``≤ value``).
    unconstrained_filter : ndarray
        Its minimizer ``v̂``.
    unconstrained_in_m : bool or None
        Whether ``v̂ ∈ M`` (``None`` where ``M`` has no exact description and the search did not reach ``ℒ*``).
    value_error : float
        Estimated absolute error of ``value`` from rounding (comparisons with ``L(w)`` use it).
    evaluations : int
        Inner minimizations (or local searches) performed.
    """

    value: float
    filter: np.ndarray
    exact: bool
    method: Method
    statement: str
    unconstrained_value: float
    unconstrained_filter: np.ndarray
    unconstrained_in_m: bool | None
    value_error: float = 0.0
    evaluations: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def what(self) -> str:
        """What ``value`` is, in a few words: ``"exact"``, ``"bound from n starts"`` (local searches) or ``"bound,
        not proven optimal"`` (the level-by-level search of the real-root recursion, or data that fail the data
        condition); ``", lowered to a certified limit"`` is added where a classified point below the searches'
        best lowered it."""
        if self.exact:
            return "exact"
        starts = self.details.get("starts")
        text = f"bound from {starts} starts" if starts else "bound, not proven optimal"
        return text + (", lowered to a certified limit" if "lowered_by_limit" in self.details else "")

    @property
    def gap_to_unconstrained(self) -> float:
        """``ℒ*_M − ℒ* ≥ 0``: what the architecture's constraint costs."""
        return self.value - self.unconstrained_value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"value": float(self.value), "filter": np.asarray(self.filter, float).ravel().tolist(),
                "exact": self.exact, "method": self.method, "statement": self.statement,
                "unconstrained_value": float(self.unconstrained_value),
                "unconstrained_in_m": self.unconstrained_in_m, "value_error": float(self.value_error),
                "evaluations": self.evaluations}


# ---------------------------------------------------------------------------------------------------- helpers
def real_root_count(coeffs: np.ndarray, degree: int | None = None, imag_rtol: float = 1e-10) -> int:
    r"""Real roots, with multiplicity, of ``Σ c_j x^j`` read as a binary form of degree ``degree``.

    Roots at infinity (``degree − deg p`` of them, from vanishing leading coefficients) count as real.  A root
    counts as real when ``|Im z| ≤ imag_rtol·(1 + |z|)``; the zero polynomial has ``degree + 1`` (every form
    divides it).

    Parameters
    ----------
    coeffs : ndarray
        Coefficients, constant first.
    degree : int, optional
        Degree of the form (default ``len(coeffs) − 1``).
    imag_rtol : float

    Returns
    -------
    int
    """
    c = np.asarray(coeffs, dtype=float).ravel()
    degree = c.size - 1 if degree is None else int(degree)
    scale = float(np.max(np.abs(c))) if c.size else 0.0
    if scale == 0.0:
        return degree + 1
    nz = np.nonzero(np.abs(c) > 1e-15 * scale)[0]
    deg = int(nz[-1])
    at_infinity = degree - deg
    if deg == 0:
        return at_infinity
    roots = P.polyroots(c[: deg + 1] / scale)
    return at_infinity + int(np.sum(np.abs(roots.imag) <= imag_rtol * (1.0 + np.abs(roots))))


def risk_rounding(risk: EmpiricalRisk, v: np.ndarray) -> float:
    r"""Absolute rounding level of ``ℒ(v)`` as lcnflow evaluates it: ``ε`` times the size of the terms it sums.

    Square loss: ``ℒ(v) = ½ eᵀGe + ℒ(v̂)`` with ``e = v − v̂``; the terms are bounded by
    ``S = ½ |e|ᵀ|G||e| + |ℒ(v̂)|`` and the sum of ``k_v² + 1`` of them is off by at most ``≈ k_v² ε S``; we return
    ``4 k_v ε S`` (random-walk accumulation).  Other losses: ``(1/m) Σ ℓ(r_i)`` over ``n = m·d_N`` residuals,
    ``4 √n ε (1/m) Σ |ℓ(r_i)|``.  Both scale like ℒ under every rescaling of the data, the point or the
    parametrization.
    """
    v = np.asarray(v, dtype=float).ravel()
    if risk.is_quadratic:
        e = v - risk.least_squares_filter
        terms = 0.5 * float(np.abs(e) @ (np.abs(risk.gram) @ np.abs(e))) + abs(risk.minimum_value)
        return 4.0 * v.size * EPS * terms
    r = risk.function_space_outputs(v) - risk.data.targets
    n = r.size
    return 4.0 * math.sqrt(n) * EPS * float(np.sum(np.abs(risk.loss.value(r)))) / risk.num_samples


def _damped_newton(risk: EmpiricalRisk, x: np.ndarray, max_iter: int, *, T: np.ndarray | None = None,
                   finish_step: bool = False) -> tuple[np.ndarray, float]:
    r"""Minimize the convex ``x ↦ ℒ(T x)`` (``T = None``: ``x = v``) by damped Newton, ``x ← x − α H⁺g`` with Armijo
    backtracking, until the Newton decrement ``gᵀH⁺g`` is below the rounding level of ℒ.  ``finish_step`` then takes
    one last full step if it does not make the value worse (quadratic convergence settles ``x`` as well)."""
    lift = (lambda y: y) if T is None else (lambda y: T @ y)
    value = risk.function_space_value(lift(x))
    for _ in range(max_iter):
        v = lift(x)
        g = risk.function_space_gradient(v).ravel()
        H = risk.function_space_hessian(v)
        if T is not None:
            g, H = T.T @ g, T.T @ H @ T
        step = -np.linalg.lstsq(H, g, rcond=None)[0]
        slope = float(g @ step)
        if -slope <= risk_rounding(risk, v):
            if finish_step:
                trial = x + step
                tv = risk.function_space_value(lift(trial))
                if tv <= value + risk_rounding(risk, v):
                    x, value = trial, tv
            break
        alpha = 1.0
        while alpha > 1e-12:
            trial = x + alpha * step
            tv = risk.function_space_value(lift(trial))
            if tv <= value + 1e-4 * alpha * slope:
                break
            alpha *= 0.5
        else:
            break
        x, value = trial, tv
    return x, float(value)


def unconstrained_optimum(risk: EmpiricalRisk, max_iter: int = 100) -> tuple[np.ndarray, float]:
    r"""``(v̂, ℒ(v̂))`` with ``v̂`` a minimizer of the convex ``ℒ`` over ``R^{k_v}`` (cached per risk).

    Square loss: the minimum-norm least-squares filter.  Other losses: damped Newton from the least-squares filter,
    ``v ← v − α(∇²ℒ)⁺∇ℒ`` with Armijo backtracking, until the Newton decrement ``gᵀ(∇²ℒ)⁺g`` is below the rounding
    level of ℒ (scale-free: it is measured in units of ℒ).
    """
    if risk in _UNCONSTRAINED:
        return _UNCONSTRAINED[risk]
    if risk.is_quadratic:
        out = (risk.least_squares_filter.copy(), float(risk.minimum_value))
    else:
        square = EmpiricalRisk(risk.arch, "square", risk.data)
        v, value = _damped_newton(risk, square.least_squares_filter.copy(), max_iter, finish_step=True)
        out = (v, float(value))
    _UNCONSTRAINED[risk] = out
    return out


def _product_structure(arch: Architecture) -> tuple[int, int] | None:
    """``(D, r)`` when π is a product of (undilated) 1D polynomials: degree of ``p_v`` and number of odd-degree
    layers; ``None`` otherwise (also with channels: π then multiplies polynomial matrices)."""
    if arch.ndim != 1 or arch.is_multichannel:
        return None
    ks = [k[0] for k in arch.axes_filter_sizes]
    S = [s[0] for s in arch.cumulative_strides]
    if any(k > 1 and S[i] != 1 for i, k in enumerate(ks)):
        return None
    return sum(k - 1 for k in ks), sum((k - 1) % 2 for k in ks)


def _square_factor(theta: np.ndarray, p: int) -> np.ndarray:
    """``S_θ``: ``(len θ, p + 2, p)`` matrices of multiplication by ``(cos θ·x − sin θ)²`` on degree ``< p``."""
    c, s = np.cos(theta), np.sin(theta)
    u = np.stack([s * s, -2 * c * s, c * c], axis=-1)  # constant, x, x² coefficients
    out = np.zeros((theta.size, p + 2, p))
    for j in range(p):
        out[:, j : j + 3, j] = u
    return out


class _Objective:
    """Minimization of ``q ↦ ℒ(T q)`` for a linear ``T`` (the convex inner problem of the recursion)."""

    def __init__(self, risk: EmpiricalRisk):
        self.risk = risk
        self.quadratic = risk.is_quadratic
        self.v_hat, self.f_hat = unconstrained_optimum(risk)
        self.evaluations = 0
        if self.quadratic:
            self.G = risk.gram

    def batch(self, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For a stack ``T`` (n, k_v, p): minimizers ``q`` (n, p) and values (n,)."""
        self.evaluations += T.shape[0]
        if self.quadratic:
            GT = self.G @ T
            A = np.swapaxes(T, 1, 2) @ GT
            rhs = np.einsum("nkp,k->np", GT, self.v_hat)
            q = np.einsum("npq,nq->np", np.linalg.pinv(A, rcond=1e-13, hermitian=True), rhs)
            e = np.einsum("nkp,np->nk", T, q) - self.v_hat
            vals = 0.5 * np.einsum("nk,kl,nl->n", e, self.G, e) + self.f_hat
            return q, vals
        qs, vals = [], []
        for t in T:
            q, val = self._newton(t)
            qs.append(q)
            vals.append(val)
        return np.array(qs), np.array(vals)

    def _newton(self, T: np.ndarray) -> tuple[np.ndarray, float]:
        return _damped_newton(self.risk, np.linalg.lstsq(T, self.v_hat, rcond=None)[0], 60, T=T)


class _RealRootSearch:
    """The recursion of the module docstring on ``M(D, r)``: a grid over the angle of the double root at each level,
    then a joint local refinement of all the angles of the best few configurations (every evaluation of the
    refinement is one inner convex minimization, and a refined configuration is kept only if its cofactor still
    satisfies the real-root condition)."""

    def __init__(self, obj: _Objective, grids: tuple[int, ...], D: int, r: int, *, greedy: bool = False,
                 deadline: float = math.inf):
        self.obj, self.grids, self.D, self.r = obj, grids, D, r
        self.greedy, self.deadline = greedy, deadline

    def _check_time(self) -> None:
        if time.perf_counter() > self.deadline:
            raise OutOfTime("max_time ran out while searching for ℒ*_M")

    def _transform(self, thetas) -> np.ndarray:
        T, p = np.eye(self.D + 1), self.D + 1
        for th in thetas:
            p -= 2
            T = T @ _square_factor(np.array([th]), p)[0]
        return T

    def evaluate(self, thetas) -> tuple[float, np.ndarray, bool]:
        """``(min_q ℒ(T_θ q), T_θ q, q satisfies the real-root condition)`` for fixed angles."""
        self._check_time()
        T = self._transform(thetas)
        q, val = self.obj.batch(T[None])
        rest = self.r - 2 * len(thetas)
        ok = rest <= 1 or real_root_count(q[0], self.D - 2 * len(thetas)) >= rest
        return float(val[0]), T @ q[0], ok

    def _grid(self, T: np.ndarray, D: int, r: int, level: int, keep: int) -> list[tuple[float, list[float]]]:
        """The best ``keep`` local minima over the grid at this level: ``(value, angles from this level on)``.

        Greedy (:attr:`greedy`): the deeper levels are searched only below the best angle of this level, chosen with
        the cofactor unconstrained (one path down, not the product of the grids)."""
        self._check_time()
        q, val = self.obj.batch(T[None])
        if r <= 1 or real_root_count(q[0], D) >= r:
            return [(float(val[0]), [])]
        n = self.grids[min(level, len(self.grids) - 1)]
        thetas = -np.pi / 2 + np.pi * np.arange(n) / n
        Ts = T @ _square_factor(thetas, D - 1)
        if r - 2 <= 1:
            vals = self.obj.batch(Ts)[1]
            inner: list[list[float]] = [[] for _ in range(n)]
        elif self.greedy:
            relaxed = self.obj.batch(Ts)[1]  # this level's angle with the cofactor unconstrained (a lower bound)
            local = [j for j in range(n) if relaxed[j] <= relaxed[j - 1] and relaxed[j] <= relaxed[(j + 1) % n]]
            out = []
            for j in sorted(local, key=lambda j: relaxed[j])[:keep]:
                f, rest = self._grid(Ts[j], D - 2, r - 2, level + 1, 1)[0]
                out.append((f, [float(thetas[j]), *rest]))
            return sorted(out, key=lambda x: x[0])
        else:
            vals, inner = np.empty(n), []
            for j in range(n):
                f, rest = self._grid(Ts[j], D - 2, r - 2, level + 1, 1)[0]
                vals[j] = f
                inner.append(rest)
        local = [j for j in range(n) if vals[j] <= vals[j - 1] and vals[j] <= vals[(j + 1) % n]]
        local = sorted(local, key=lambda j: vals[j])[:keep]
        return [(float(vals[j]), [float(thetas[j]), *inner[j]]) for j in local]

    def best(self, keep: int = 6) -> tuple[float, np.ndarray]:
        """``ℒ*_{M(D, r)}`` and a minimizer."""
        best_val, best_v = math.inf, None
        for _, thetas in self._grid(np.eye(self.D + 1), self.D, self.r, 0, keep):
            val, v, _ = self.evaluate(thetas)
            if thetas:
                res = scipy.optimize.minimize(lambda th: self.evaluate(th)[0], np.array(thetas), method="Nelder-Mead",
                                              options={"xatol": 1e-12, "fatol": 0.0, "maxiter": 400 * len(thetas)})
                r_val, r_v, ok = self.evaluate(res.x)
                if ok and r_val < val:
                    val, v = r_val, r_v
            if val < best_val:
                best_val, best_v = val, v
        return best_val, best_v


class _QuadraticModel:
    r"""The second-order model of a convex ℒ at a final filter ``v₀``, on parameters: ``Q(π(w))`` with
    ``Q(v) = q₀ + ½ (v − c)ᵀ G (v − c)``, ``G = ∇²ℒ(v₀)``, ``c = v₀ − G⁺∇ℒ(v₀)``, ``q₀ = ℒ(v₀) − ½ ∇ℒ(v₀)ᵀ G⁺ ∇ℒ(v₀)``.

    ``Q`` and ℒ share value, gradient and Hessian at ``v₀``, so ``Q∘π`` and ``L`` share them at any ``w`` with
    ``π(w) = v₀``; building it costs one gradient and one Hessian of ℒ, evaluating it nothing per sample.
    """

    def __init__(self, risk: EmpiricalRisk, v: np.ndarray):
        v = np.asarray(v, dtype=float).ravel()
        g = risk.function_space_gradient(v).ravel()
        G = risk.function_space_hessian(v)
        self.gram = np.ascontiguousarray((G + G.T) / 2)
        step = np.linalg.lstsq(self.gram, g, rcond=None)[0]
        self.center = v - step
        self.minimum = float(risk.function_space_value(v)) - 0.5 * float(g @ step)
        self._risk = risk

    def flat_value_and_gradient(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """``(Q(π(w)), dπᵀ∇Q)`` for a flat ``w`` (one compiled call where the kernels are on)."""
        w = np.ascontiguousarray(w, dtype=float)
        c = self._risk.kernel_view()
        if c is not None:
            val, grad, _ = c.k.square_value_grad(w, *c.args, self.center, self.gram, self.minimum, True)
            return float(val), grad
        arch = self._risk.arch
        parts = final_filter_parts(arch, unflatten(arch, w))
        e = parts.final_filter.ravel() - self.center
        ge = self.gram @ e
        return self.minimum + 0.5 * float(e @ ge), flatten(parts.vjp(ge.reshape(arch.final_filter_shape)))


def _lbfgs(risk: EmpiricalRisk, w: np.ndarray, deadline: float = math.inf) -> tuple[np.ndarray, float]:
    """A local minimum of ``L`` from ``w`` by L-BFGS to machine precision (``ftol = gtol = 0``, at most 5 000
    iterations; a minimization still running at the deadline stops there)."""

    def out_of_time(_):
        if time.perf_counter() > deadline:
            raise StopIteration

    res = scipy.optimize.minimize(risk.flat_value_and_gradient, w, jac=True, method="L-BFGS-B",
                                  callback=out_of_time if math.isfinite(deadline) else None,
                                  options={"maxiter": 5000, "ftol": 0.0, "gtol": 0.0, "maxcor": 30})
    return res.x, float(risk.value(res.x))


def _multistart(risk: EmpiricalRisk, num_starts: int, seed: int,
                deadline: float = math.inf) -> tuple[float, np.ndarray, int, bool, int, list[tuple[float, np.ndarray]]]:
    r"""Best ``L(w)`` over local minimizations from random starts whose final filters have the size of ``v̂``.

    Starts are drawn until :data:`REPEATS` of them have reached the best value found (within
    ``10⁻⁸ (ℒ(0) − ℒ*)`` plus ``10³`` times the rounding level of ℒ, both in units of ℒ), after at least
    :data:`MIN_STARTS` and at most ``num_starts``.  If a single start reaches the best basin with probability ``p``,
    the chance that ``n`` starts all miss it is ``(1 − p)^n``; the stopping rule keeps drawing where ``p`` is small
    (measured: ``p`` from 0.16 to 1 on 16 strided and 2D cases, every best value reached by 8 starts or fewer).
    The starts are scaled by ``‖v̂‖^{1/N}`` per layer, so the search does not depend on the units of the data.
    Each start is minimized by :func:`_lbfgs`.  Only the starts made before ``deadline`` count (at least one, else
    :class:`OutOfTime`); a minimization still running at the deadline stops there, and its value, attained by a
    network, still counts.  Returns the value, its final filter, the number of starts made, whether the deadline
    cut the search short, how many starts reached the best value, and every start's ``(L, parameters)``."""
    arch = risk.arch
    v_hat, f_hat = unconstrained_optimum(risk)
    per_layer = max(float(np.linalg.norm(v_hat)), 1e-300) ** (1.0 / arch.depth)
    same = _same_value_tolerance(risk, v_hat, f_hat)
    rng = np.random.default_rng(seed)
    best_val, best_v = math.inf, np.zeros(arch.final_filter_num_params)
    found: list[tuple[float, np.ndarray]] = []
    cut = False
    while len(found) < num_starts:
        if time.perf_counter() > deadline:
            cut = True
            break
        w0 = np.concatenate([rng.standard_normal(n) * per_layer / math.sqrt(n) for n in arch.layer_num_params])
        w, val = _lbfgs(risk, w0, deadline)
        cut = cut or time.perf_counter() > deadline
        found.append((val, w))
        if val < best_val:
            best_val, best_v = val, final_filter(arch, w).ravel()
        hits = sum(x <= best_val + same for x, _ in found)
        if len(found) >= min(MIN_STARTS, num_starts) and hits >= REPEATS:
            break
    if not found:
        raise OutOfTime("max_time ran out before the search for ℒ*_M started")
    hits = sum(x <= best_val + same for x, _ in found)
    return best_val, best_v, len(found), cut, hits, found


def _same_value_tolerance(risk: EmpiricalRisk, v_hat: np.ndarray, f_hat: float) -> float:
    """Two local minima of the search count as the same value within ``10⁻⁸ (ℒ(0) − ℒ*)`` plus ``10³`` times the
    rounding level of ℒ (both in units of ℒ)."""
    zero = np.zeros(v_hat.size)
    return 1e-8 * max(float(risk.function_space_value(zero)) - f_hat, 0.0) + 1e3 * risk_rounding(risk, v_hat)


#: Outputs (summed over the samples) of the data subsample on which a non-quadratic search's starts run; data with
#: more than four times as many use one (:func:`_search_subsample`).
SEARCH_OUTPUTS = 2048


def _search_subsample(risk: EmpiricalRisk, rng: np.random.Generator) -> EmpiricalRisk | None:
    r"""The risk on random crops of the data, with about :data:`SEARCH_OUTPUTS` outputs, for the starts of the search
    (``None`` for the square loss, whose evaluations do not pass over the data, and for data with at most four times
    that many outputs).

    A crop keeps ``n`` consecutive outputs per axis of a sample (a random window) and the inputs they read: ``S_N
    (n − 1) + k_v`` per axis from ``S_N·o``, so the same parameters give the same outputs there (``S_N`` the final
    stride).  Windows are as large as the data and the budget allow; where even one output per sample is too many,
    a random subset of the samples is kept.  Its risk has the same loss and the same π, so its landscape is the
    full one's up to sampling (``~1/√n`` relative)."""
    arch = risk.arch
    if risk.is_quadratic or arch.is_multichannel:
        return None
    d_n, m = arch.axes_layer_sizes[-1], risk.num_samples
    if m * math.prod(d_n) <= 4 * SEARCH_OUTPUTS:
        return None
    side = max(1, int((SEARCH_OUTPUTS / m) ** (1.0 / arch.ndim)))
    window = tuple(min(d, side) for d in d_n)
    samples = np.sort(rng.choice(m, size=min(m, -(-SEARCH_OUTPUTS // math.prod(window))), replace=False))
    stride, k_v = arch.cumulative_strides[-1], arch.final_filter_shape
    span = tuple(s * (n - 1) + k for s, n, k in zip(stride, window, k_v, strict=True))
    X, Y = risk.data.inputs, risk.data.targets
    xs, ys = [], []
    for i in samples:
        start = [int(rng.integers(0, d - n + 1)) for d, n in zip(d_n, window, strict=True)]
        xs.append(X[(i, *(slice(s * o, s * o + w) for s, o, w in zip(stride, start, span, strict=True)))])
        ys.append(Y[(i, *(slice(o, o + n) for o, n in zip(start, window, strict=True)))])
    crop = Architecture(span[0] if arch.ndim == 1 else span, arch.filter_sizes, arch.strides)
    return EmpiricalRisk(crop, risk.loss, Dataset(np.stack(xs), np.stack(ys)))


#: Most iterations of :func:`_model_trust_region` (each costs one function-space Hessian of ℒ).
TRUST_REGION_ITERATIONS = 200


def _model_trust_region(risk: EmpiricalRisk, w: np.ndarray, deadline: float = math.inf) -> tuple[np.ndarray, float]:
    r"""A local minimum of ``L = ℒ∘π`` from ``w`` by a trust region on second-order models of ℒ.

    Each iteration builds the model ``Q`` of ℒ at ``v = π(w)`` (:class:`_QuadraticModel`: one gradient and one
    Hessian of ℒ, the only passes over the data) and minimizes ``Q∘π`` — exact in π, so it has the gradient and the
    Hessian of ``L`` at ``w`` — over the box ``|w′ − w|_∞ ≤ Δ`` by L-BFGS-B.  The step is taken if ``L`` decreases by
    at least a tenth of the decrease ``Q`` predicts; the radius shrinks to a quarter of the step where the
    prediction was poor (ratio < ¼) and doubles where it was good (> ¾) and the step reached the box.  Near a
    minimum the steps are Newton steps (quadratic convergence); far from it the model's minimization follows π's
    structure at no data cost (on 64 images 128×128 from random starts: 6–9 Hessians, where L-BFGS on ``L`` took
    about 1 900 gradients).  Stops when the model's own minimum (inside the box) predicts a decrease
    within ``10³`` times ℒ's rounding level (scale-free), when the radius falls below ``10⁻¹²`` of ``|w|_∞``, after
    :data:`TRUST_REGION_ITERATIONS`, or at the deadline.  Returns the point and ``L`` there."""
    value = float(risk.value(w))
    radius = max(float(np.max(np.abs(w))), 1e-300)
    for _ in range(TRUST_REGION_ITERATIONS):
        if time.perf_counter() > deadline:
            return w, value
        v = final_filter(risk.arch, w).ravel()
        model = _QuadraticModel(risk, v)
        res = scipy.optimize.minimize(model.flat_value_and_gradient, w, jac=True, method="L-BFGS-B",
                                      bounds=np.stack([w - radius, w + radius], axis=1),
                                      options={"maxiter": 5000, "ftol": 0.0, "gtol": 0.0, "maxcor": 30})
        step = res.x - w
        span = float(np.max(np.abs(step)))
        at_edge = span >= 0.999 * radius
        predicted = value - float(res.fun)
        if not predicted > 1e3 * risk_rounding(risk, v):
            if not at_edge:
                return w, value
            radius *= 0.25
        else:
            trial = float(risk.value(res.x))
            ratio = (value - trial) / predicted
            if ratio >= 0.1:
                w, value = res.x, trial
            if ratio < 0.25:
                radius = 0.25 * span
            elif ratio > 0.75 and at_edge:
                radius *= 2.0
        if radius <= 1e-12 * max(float(np.max(np.abs(w))), 1e-300):
            return w, value
    return w, value


def _distinct(found: list[tuple[float, np.ndarray]], same: float, keep: int) -> list[tuple[float, np.ndarray]]:
    """The ``keep`` best of ``found`` whose values differ by more than ``same`` (one per value)."""
    out: list[tuple[float, np.ndarray]] = []
    for val, w in sorted(found, key=lambda item: item[0]):
        if all(abs(val - other) > same for other, _ in out):
            out.append((val, w))
        if len(out) == keep:
            break
    return out


#: Distinct best minima of the search on a subsample refined on all the data.
REFINED_CANDIDATES = 3


def _search(risk: EmpiricalRisk, num_starts: int, seed: int,
            deadline: float) -> tuple[float, np.ndarray, int, bool, int, int | None]:
    r"""Best ``L(w)`` found by the starts of :func:`_multistart`: on all the data, or on :func:`_search_subsample` of
    it where it has one (a loss other than the square loss on large data); then the :data:`REFINED_CANDIDATES` best
    distinct minima found there are refined on all the data by :func:`_model_trust_region` (from near a minimum:
    Newton steps, a few Hessians) and the best of them is the result.  Every value returned is attained by a network
    on all the data.  Returns the value, its final filter, the starts, whether the deadline cut the search short,
    how many starts reached the best value, and the outputs of the subsample (``None``: all the data)."""
    sub = _search_subsample(risk, np.random.default_rng(seed))
    value, v, n, cut, hits, found = _multistart(sub or risk, num_starts, seed, deadline)
    if sub is None:
        return value, v, n, cut, hits, None
    v_sub, f_sub = unconstrained_optimum(sub)
    best_val, best_w = math.inf, None
    for _, w in _distinct(found, _same_value_tolerance(sub, v_sub, f_sub), REFINED_CANDIDATES):
        w, val = _model_trust_region(risk, w, deadline)
        if val < best_val:
            best_val, best_w = val, w
    cut = cut or time.perf_counter() > deadline
    return best_val, final_filter(risk.arch, best_w).ravel(), n, cut, hits, sub.data.targets.size


@one_blas_thread
def best_on_function_space(risk: EmpiricalRisk, *, grid: tuple[int, ...] | None = None,
                           num_starts: int = NUM_STARTS, seed: int = 0,
                           max_time: float = math.inf) -> FunctionSpaceBest:
    r"""``ℒ*_M = min_{v ∈ M} ℒ(v)``, the global minimum of ``L``, and a best final filter ``v*_M``.

    Cached per risk for the default arguments.  See the module docstring for the method.

    Parameters
    ----------
    risk : EmpiricalRisk
    grid : tuple of int, optional
        Angles searched for the double root at each level of the real-root recursion (outermost first).
        Default from :data:`GRID_SQUARE` (square loss) or :data:`GRID_GENERAL` by the depth of the recursion.
    num_starts : int
        Most local minimizations of ``L`` where ``M`` has no exact description (the search stops earlier, after
        :data:`MIN_STARTS`, once :data:`REPEATS` starts have reached the best value; see :func:`_multistart`).
    seed : int
        Seed of those starts.
    max_time : float
        Seconds the search may take (``inf``: no limit; a cached result is returned at once).

    Returns
    -------
    FunctionSpaceBest

    Raises
    ------
    OutOfTime
        When ``max_time`` runs out first (nothing is cached then).
    """
    if not isinstance(risk, EmpiricalRisk):
        raise ValueError(f"risk: expected an lcnflow.EmpiricalRisk, got {type(risk).__name__}")
    if grid is not None and (not grid or any(not isinstance(n, int) or n < 4 for n in grid)):
        raise ValueError(f"grid: expected a non-empty tuple of integers ≥ 4, got {grid!r}")
    if not (isinstance(num_starts, int) and num_starts >= 1):
        raise ValueError(f"num_starts: must be an integer ≥ 1, got {num_starts!r}")
    if not (isinstance(max_time, int | float) and not isinstance(max_time, bool) and max_time >= 0
            and not math.isnan(max_time)):
        raise ValueError(f"max_time: must be a number ≥ 0 (seconds; inf for no limit), got {max_time!r}")
    default = grid is None and num_starts == NUM_STARTS and seed == 0
    if default and risk in _CACHE:
        return _CACHE[risk]
    announce(SEARCHING_M)
    out = _compute(risk, grid, num_starts, seed, time.perf_counter() + max_time)
    if default and not out.details.get("cut_short"):
        _CACHE[risk] = out
    return out


def _compute(risk: EmpiricalRisk, grid, num_starts: int, seed: int, deadline: float) -> FunctionSpaceBest:
    arch = risk.arch
    shape = arch.final_filter_shape
    v_hat, f_hat = unconstrained_optimum(risk)
    common = {"unconstrained_value": f_hat, "unconstrained_filter": v_hat.reshape(shape)}
    structure = _product_structure(arch)
    if arch.is_filling or (structure is not None and structure[1] <= 1):
        return FunctionSpaceBest(f_hat, v_hat.reshape(shape), True, "unconstrained",
                                 "the architecture is filling (M = all final filters): ℒ*_M is the unconstrained "
                                 "minimum of the convex ℒ", unconstrained_in_m=True,
                                 value_error=risk_rounding(risk, v_hat), **common)
    if structure is not None:
        D, r = structure
        if real_root_count(v_hat, D) >= r:
            return FunctionSpaceBest(f_hat, v_hat.reshape(shape), True, "unconstrained",
                                     f"the unconstrained minimizer's polynomial has ≥ {r} real roots, so it lies in M",
                                     unconstrained_in_m=True, value_error=risk_rounding(risk, v_hat), **common)
        depth = r // 2
        table = GRID_SQUARE if risk.is_quadratic else GRID_GENERAL
        grids = grid or table[min(depth, max(table))]
        obj = _Objective(risk)
        used = [grids[min(i, len(grids) - 1)] for i in range(depth)]
        greedy = math.prod(used) > (MAX_GRID_PRODUCT if risk.is_quadratic else MAX_GRID_PRODUCT_GENERAL)
        value, v = _RealRootSearch(obj, grids, D, r, greedy=greedy, deadline=deadline).best()
        if greedy:
            statement = (f"M = final filters with ≥ {r} real roots (degree {D}); the unconstrained minimizer is "
                         f"outside M, so the minimum is on its boundary: {depth} real double root(s) placed one level "
                         f"at a time (angles on grids of {used} per level, each chosen with the cofactor "
                         "unconstrained; the nested search over every combination would take "
                         f"{math.prod(used):.3g} evaluations), then refined jointly in all angles by Nelder–Mead: "
                         "a value attained on M, an upper bound on ℒ*_M, not proven optimal")
        else:
            statement = (f"M = final filters with ≥ {r} real roots (degree {D}); the unconstrained minimizer is "
                         f"outside M, so the minimum is on its boundary: searched every placement of {depth} real "
                         f"double root(s) (angles on grids of {used} per level, the best local minima then refined "
                         "jointly in all angles by Nelder–Mead), the cofactor by exact convex minimization; exact up "
                         "to the grid resolution and rounding")
        v = np.asarray(v, float)
        value = float(risk.function_space_value(v))
        exact = bool(risk.data_condition.satisfied) and not greedy
        if not risk.data_condition.satisfied:  # ℒ not strictly convex: its minimizers (an affine set) may meet M off ∂M
            statement += ("; NOT exact: the data condition fails (rank H < k_v), so ℒ has many minimizers and one of "
                          "them may lie inside M where this search does not look — an upper bound on ℒ*_M")
        return FunctionSpaceBest(value, v.reshape(shape), exact, "real_root_recursion", statement,
                                 unconstrained_in_m=False, value_error=risk_rounding(risk, v),
                                 evaluations=obj.evaluations, details={"grid": used, "real_roots": r, "degree": D},
                                 **common)
    value, v, n, cut, hits, subsample = _search(risk, num_starts, seed, deadline)
    err = max(risk_rounding(risk, v), risk_rounding(risk, v_hat))
    if value <= f_hat + max(1e3 * err, 1e-9 * abs(f_hat)):
        return FunctionSpaceBest(f_hat, v_hat.reshape(shape), True, "multistart",
                                 f"a local minimization of L (of {n} starts) reached the unconstrained minimum of ℒ, "
                                 "so it is ℒ*_M", unconstrained_in_m=True, value_error=err, evaluations=n,
                                 details={"cut_short": cut, "starts": n, "best_reached_by": hits}, **common)
    why = (arch.filling_reason if arch.ndim == 2 or arch.is_multichannel
           else "strides before a layer make M more than a root condition")
    how = (f"over {n} local minimization(s) of L from random starts, reached by {hits} of them" if subsample is None
           else f"over {n} local minimization(s) from random starts on a random subsample of {subsample} of the data's "
           f"outputs (its best reached by {hits} of them), its best distinct minima (up to {REFINED_CANDIDATES}) "
           "refined on all the data")
    return FunctionSpaceBest(value, v.reshape(shape), False, "multistart",
                             f"bound from {n} starts: the best found {how} (no exact description of M implemented: "
                             f"{why}): an upper bound on ℒ*_M, not proven optimal"
                             + ("; max_time cut the search short" if cut else ""),
                             unconstrained_in_m=None, value_error=err, evaluations=n,
                             details={"cut_short": cut, "starts": n, "best_reached_by": hits, "subsample": subsample},
                             **common)
