r"""What kind of critical point a limit is (the meanings are documented in docs/classification.md; the
mathematics in docs/theory.md).

At ``w*`` with ``v* = π(w*)``:

* **global or local** — ``w*`` is a *global minimum* of ``L`` iff ``L(w*) = ℒ*_M = min_{v ∈ M} ℒ(v)``, the best
  the architecture can do (:func:`~lcnflow.analysis.optimum.best_on_function_space`), whether or not ``∇ℒ(v*) = 0``:
  for a non-filling architecture ``ℒ*_M`` is usually attained on the boundary of ``M``, where ``∇ℒ ≠ 0``.
  *The unconstrained optimum was reached* (``ℒ(v*) = min_{R^{k_v}} ℒ``, i.e. ``∇ℒ(v*) = 0``) is a separate fact.
* **second order** — the Hessian of ``L`` vanishes along the ``N − 1`` rescaling directions; on their complement it
  is positive definite (``local_minimum``), has a negative eigenvalue (``strict_saddle``) or further zero eigenvalues
  (``degenerate``; a probe looks for a direction along which ``L`` decreases).
* **function space** — ``origin = "global"`` when the unconstrained optimum was reached; ``"pure"`` when ``dπ(w*)``
  has full rank ``dim M`` (then ``v*`` is critical for ℒ on the smooth part of ``M``); else ``"rank_deficient"``.  A
  rank-deficient point is *spurious* when ``v*`` is not critical for ℒ on ``M``: in 1D this shows at another point
  ``w'`` of the fibre ``π^{-1}(v*)`` — another way to distribute the roots of ``p_v`` over the layers — where
  ``∇L(w') = dπ(w')ᵀ∇ℒ(v*) ≠ 0`` (Kohn et al. 2022, 2024; Trager, Kohn & Bruna 2020).  Fibre points that differ by
  a symmetry of the risk (layers of equal size exchanged, at strides 1) are equivalent and prove nothing; a global
  minimum on ``M`` is never spurious.

**Scale-free tolerances.**  Every threshold is relative to quantities that do not change when the parametrization
is rescaled (``w^{(i)} → c_i w^{(i)}``, ``Π c_i = 1``) or the data are multiplied by a constant:

* second derivatives and ``dπ`` are measured in *balanced coordinates*, each layer's block multiplied by
  ``‖w^{(i)}‖`` (``D ∇²L D`` and ``dπ D``: both invariant under the rescaling symmetry), relative to the size of the
  terms they are made of;
* values are compared within ``τ = τ_round + τ_cert``: the rounding level of ℒ at ``v*``
  (:func:`~lcnflow.analysis.optimum.risk_rounding`) plus ``τ_cert = Σ_i ‖∇_{w^{(i)}}L‖·‖w^{(i)}‖``, the first-order
  change of ``L`` when each layer moves by its own size — what the residual gradient of a certified point can
  account for — capped at ``10⁻⁶ (ℒ(0) − min ℒ)`` when that range is not zero (so that a point far from critical is
  not let off; when the zero network is already optimal ℒ offers no other scale).  All are in units of ℒ;
* the descent probe steps by ``ε‖w^{(i)}‖`` in each layer and needs a decrease larger than ``τ``;
* the spurious test compares ``‖(dπ(w') D')ᵀ∇ℒ(v*)‖`` with ``‖dπ(w') D'‖·‖∇ℒ(v*)‖`` (a cosine).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.polynomial import polynomial as P

from lcnflow.analysis.certify import gradient_scale
from lcnflow.analysis.optimum import (
    FunctionSpaceBest,
    OutOfTime,
    best_on_function_space,
    risk_rounding,
    unconstrained_optimum,
)
from lcnflow.analysis.phases import CLASSIFYING, announce
from lcnflow.analysis.symmetry import complement_bases, fibre_basis, layer_norms, per_shape, symmetry_bases
from lcnflow.model.architecture import Architecture
from lcnflow.model.conv import (
    as_filters,
    final_filter_jacobian,
    final_filter_unchecked,
    flat_norm,
    flatten,
    unflatten_unchecked,
)
from lcnflow.model.risk import EmpiricalRisk

Kind = Literal["global_minimum", "local_minimum", "strict_saddle", "degenerate", "not_critical"]
Origin = Literal["global", "pure", "rank_deficient"]

#: Roots closer than this (relative to ``1 + |ρ|``) are treated as equal.
ROOT_TOL = 1e-5
#: Largest number of fibre points (classes) examined by the spurious test.
MAX_FIBRE_POINTS = 2000
#: Largest number of partial assignments of roots to layers the walk over the fibre visits.
MAX_FIBRE_VISITS = 100_000
#: The residual-gradient part of the value tolerance is at most this fraction of ``ℒ(0) − min ℒ`` (when positive).
CERT_RTOL = 1e-6
#: A point with ``‖∇L‖ > CRITICAL_RTOL · S`` (the gradient scale) is not a critical point.
CRITICAL_RTOL = 1e-6
#: Default ``eig_rtol``, ``rank_rtol`` and ``spurious_rtol`` of :func:`classify_critical_point`.
EIG_RTOL, RANK_RTOL, SPURIOUS_RTOL = 1e-7, 1e-6, 1e-6


@dataclass(frozen=True)
class CriticalPoint:
    """Classification of a critical point ``w*`` of ``L`` (see the module docstring).

    Attributes
    ----------
    kind : str
        ``global_minimum`` (``L(w*) = ℒ*_M``), ``local_minimum``, ``strict_saddle`` or ``degenerate``.  Global and
        local minima pass the second-order test.  ``not_critical`` when the point is not a critical point at all
        (``‖∇L‖ > critical_rtol · S``); the other fields then describe the Hessian there, not a critical point.
    origin : str
        ``global`` (the unconstrained optimum of ℒ was reached), ``pure`` or ``rank_deficient``.
    spurious : bool or None
        Whether ``v*`` fails to be critical for ℒ on ``M``; ``None`` where it cannot be decided (see
        ``spurious_reason``).
    hessian_eigenvalues : ndarray
        Eigenvalues of the Hessian of ``L`` on the complement of the rescaling directions, ascending.
    symmetry_dimension : int
        Dimension of the rescaling orbit's tangent space (``N − 1`` unless filters vanish).
    dpi_rank, function_space_dim : int
        Rank of ``dπ(w*)`` and ``dim M``.
    gradient_norm, function_space_gradient_norm : float
        ``‖∇L(w*)‖`` and ``‖∇ℒ(v*)‖``.
    degeneracies : list of str
        Named causes of rank deficiency (zero filter, shared or repeated roots).
    layer_roots, final_filter_roots : list of ndarray, ndarray
        1D only: roots (in ``t``) of ``p_{w^{(i)}}(t^{S_{i−1}})`` and of ``p_v``; empty in 2D.
    shared_roots : list of (int, int, complex)
        1D: ``(i, l, ρ)`` for layers ``i < l`` (1-based) whose polynomials share the root ρ.
    repeated_roots : list of complex
        1D: repeated roots of ``p_v``.
    not_a_minimum : bool or None
        For degenerate points: ``True`` when a direction along which ``L`` decreases was found (a higher-order
        saddle), ``None`` when the probe found none (inconclusive).
    unconstrained_optimum_reached : bool
        ``ℒ(v*) = min_{R^{k_v}} ℒ`` within the tolerance ``value_tolerance`` (equivalently ``∇ℒ(v*) = 0``).
    global_on_m : bool or None
        ``L(w*) = ℒ*_M`` within the tolerance: True / False; ``None`` when ``ℒ*_M`` is only a best-found bound and
        ``L(w*)`` matches it (not proven), or when ``L(w*)`` is below the bound.
    gap_to_best : float
        ``L(w*) − ℒ*_M`` (``ℒ*_M`` as computed; see ``best``).
    best : FunctionSpaceBest or None
        ``ℒ*_M`` with how it was found (None when the unconstrained optimum was reached: then ``ℒ*_M = L(w*)``).
    value : float
        ``L(w*)``.
    value_tolerance : float
        ``τ``: values within it count as equal (see the module docstring).
    index : int
        Number of negative Hessian eigenvalues on the complement (balanced coordinates).
    degenerate_hessian : bool
        The Hessian of ``L`` is singular beyond the rescaling directions: an eigenvalue on their complement counts
        as zero (``eig_rtol``), or — at a point that passes the second-order test — it is not steady on the scale
        of the Newton step ``δ = −(∇²L)⁺∇L`` (it changes by more than a quarter of its smallest eigenvalue between
        ``w*`` and ``w* + δ``: the point is near a limit whose Hessian is singular, approached slowly, as at a
        minimum of the ``ℓ_4`` loss with zero residual).  Then ``‖∇L(w*)‖`` does not bound the distance to the limit.
    newton_distance : float
        ``‖δ‖`` relative to the point's size (balanced coordinates): how far the limit is estimated to be, where
        the Hessian is steady (``degenerate_hessian`` False); NaN at saddles and degenerate points, where the
        gradient certificate gives no such estimate.
    undecided : str
        What was left undecided because the time given ran out (``""`` when nothing was).
    """

    kind: Kind
    origin: Origin
    spurious: bool | None
    spurious_reason: str
    hessian_eigenvalues: np.ndarray
    symmetry_dimension: int
    dpi_rank: int
    function_space_dim: int
    gradient_norm: float
    function_space_gradient_norm: float
    degeneracies: list[str] = field(default_factory=list)
    layer_roots: list[np.ndarray] = field(default_factory=list)
    final_filter_roots: np.ndarray = field(default_factory=lambda: np.zeros(0, complex))
    shared_roots: list[tuple[int, int, complex]] = field(default_factory=list)
    repeated_roots: list[complex] = field(default_factory=list)
    not_a_minimum: bool | None = None
    spurious_witness: list[np.ndarray] | None = None
    unconstrained_optimum_reached: bool = False
    global_on_m: bool | None = None
    gap_to_best: float = float("nan")
    best: FunctionSpaceBest | None = None
    value: float = float("nan")
    value_tolerance: float = 0.0
    index: int = 0
    undecided: str = ""
    degenerate_hessian: bool = False
    newton_distance: float = float("nan")

    @property
    def is_minimum(self) -> bool:
        """Whether the point is a (local or global) minimum by the second-order test."""
        return self.kind in ("global_minimum", "local_minimum")

    @property
    def on_m(self) -> str:
        """``"global on M"``, ``"local on M"`` or ``"undecided on M"`` (a best-found bound was matched)."""
        return {True: "global on M", False: "local on M", None: "undecided on M"}[self.global_on_m]

    def summary(self) -> str:
        """One line a person can read."""
        if self.kind == "not_critical":
            return (f"not a critical point: ‖∇L‖ = {self.gradient_norm:.3g} is not small against the size of the "
                    "terms it is made of (polish the point first, e.g. lcnflow.flow.polish)")
        parts = [f"{self.kind.replace('_', ' ')} (origin: {self.origin}"]
        if self.spurious is not None:
            parts.append(", spurious" if self.spurious else ", not spurious")
        parts.append(")")
        text = "".join(parts)
        if self.kind != "global_minimum" and self.best is not None and np.isfinite(self.gap_to_best):
            if self.global_on_m is None:
                text += (f"; undecided on M: L matches ℒ*_M = {self.best.value:.6g}, the best found over local "
                         f"searches ({self.best.what}; not proven to be the global minimum)")
            else:
                bound = "" if self.best.exact else f" (ℒ*_M: {self.best.what})"
                text += f"; L − ℒ*_M = {self.gap_to_best:.3g}{bound}"
        elif self.kind == "global_minimum" and not self.unconstrained_optimum_reached:
            text += "; the best the architecture can do (the unconstrained optimum is not in M)"
        if self.degeneracies:
            text += "; " + "; ".join(self.degeneracies)
        if self.kind == "degenerate" and self.not_a_minimum:
            text += "; L decreases along a null direction (higher-order saddle)"
        if self.degenerate_hessian:
            text += "; " + DEGENERATE_NOTE
        if self.undecided:
            text += f"; {self.undecided}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (complex roots as ``[re, im]`` pairs)."""

        def cplx(a):
            return [[float(z.real), float(z.imag)] for z in np.atleast_1d(a)]

        return {
            "kind": self.kind,
            "origin": self.origin,
            "spurious": self.spurious,
            "spurious_reason": self.spurious_reason,
            "hessian_eigenvalues": [float(x) for x in self.hessian_eigenvalues],
            "symmetry_dimension": self.symmetry_dimension,
            "dpi_rank": self.dpi_rank,
            "function_space_dim": self.function_space_dim,
            "gradient_norm": self.gradient_norm,
            "function_space_gradient_norm": self.function_space_gradient_norm,
            "degeneracies": list(self.degeneracies),
            "layer_roots": [cplx(r) for r in self.layer_roots],
            "final_filter_roots": cplx(self.final_filter_roots),
            "shared_roots": [[i, j, float(z.real), float(z.imag)] for i, j, z in self.shared_roots],
            "repeated_roots": cplx(self.repeated_roots),
            "not_a_minimum": self.not_a_minimum,
            "unconstrained_optimum_reached": self.unconstrained_optimum_reached,
            "global_on_m": self.global_on_m,
            "gap_to_best": float(self.gap_to_best),
            "best_value": float(self.best.value) if self.best is not None else None,
            "best_exact": self.best.exact if self.best is not None else None,
            "best_statement": self.best.statement if self.best is not None else None,
            "value_tolerance": float(self.value_tolerance),
            "index": self.index,
            "undecided": self.undecided,
            "degenerate_hessian": self.degenerate_hessian,
            "newton_distance": float(self.newton_distance),
        }


def finite_roots(coeffs: np.ndarray) -> np.ndarray:
    """Finite roots of ``Σ c_j t^j`` (trailing zero coefficients are roots at infinity and are not returned)."""
    return finite_roots_many([coeffs])[0]


def finite_roots_many(polys: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`finite_roots` of each polynomial: the eigenvalues of the companion matrices that
    ``numpy.polynomial.polynomial.polyroots`` builds, sorted as it sorts them, in one stacked call per degree.

    A polynomial's degree is that of its last coefficient above ``10⁻¹³`` times its largest; the polynomials of one
    length are trimmed together."""
    out: list[np.ndarray | None] = [None] * len(polys)
    by_length: dict[int, list[int]] = {}
    for i, c in enumerate(polys):
        by_length.setdefault(np.size(c), []).append(i)
    for length, idx in by_length.items():
        if length == 0:
            continue
        C = np.array([np.asarray(polys[i], dtype=float).ravel() for i in idx])
        size = np.abs(C)
        scale = size.max(axis=1)
        big = size > 1e-13 * scale[:, None]
        deg = length - 1 - np.argmax(big[:, ::-1], axis=1)  # the last coefficient above the threshold
        deg[scale == 0] = 0  # (no finite root: the zero polynomial, a constant)
        for d in np.unique(deg[deg > 0]).tolist():  # (each degree's companion matrices in one call)
            rows = np.flatnonzero(deg == d)
            for j, r in zip(rows.tolist(), _companion_roots(C[rows, : d + 1]), strict=True):
                out[idx[j]] = r
    return [np.zeros(0, complex) if r is None else r for r in out]


def _companion_roots(C: np.ndarray) -> np.ndarray:
    """Roots of the rows of ``C`` (coefficients, lowest first, leading one non-zero), sorted."""
    d = C.shape[1] - 1
    if d == 1:
        return (-C[:, :1] / C[:, 1:]).astype(complex)
    m = np.zeros((C.shape[0], d, d))
    m[:, np.arange(1, d), np.arange(d - 1)] = 1.0
    m[:, :, -1] -= C[:, :-1] / C[:, -1:]
    roots = np.linalg.eigvals(m).astype(complex)
    roots.sort(axis=-1)
    return roots


def _spectral_norm(a: np.ndarray) -> float:
    """``‖a‖₂`` of a real matrix: its largest singular value, what ``float(np.linalg.norm(a, 2))`` computes (the same
    LAPACK call; its values come sorted, largest first) without the dispatch."""
    return float(np.linalg.svd(a, compute_uv=False)[0])


def _close(a: complex, b: complex) -> bool:
    """Whether the roots ``a`` and ``b`` count as one: ``|a − b| ≤ ROOT_TOL · (1 + max(|a|, |b|))``."""
    return _close_moduli(a, abs(a), b, abs(b))


def _close_moduli(a: complex, ma: float, b: complex, mb: float) -> bool:
    """:func:`_close` of ``a`` and ``b`` given their moduli ``ma = |a|``, ``mb = |b|``."""
    return abs(a - b) <= ROOT_TOL * (1 + max(ma, mb))


def dilate_1d(w: np.ndarray, s: int) -> np.ndarray:
    """``↑_s w``: ``s − 1`` zeros between the entries of a 1D filter (its polynomial in ``t^s``)."""
    out = np.zeros((w.size - 1) * s + 1)
    out[::s] = w
    return out


def _root_structures(arch: Architecture, wss: list[list[np.ndarray]], vs: list[np.ndarray]) -> list[tuple]:
    """For each point: 1D roots of each (dilated) layer polynomial and of ``p_v``, shared/repeated roots."""
    S = [s[0] for s in arch.cumulative_strides]
    depth = arch.depth
    roots = finite_roots_many([dilate_1d(w, S[i]) for ws in wss for i, w in enumerate(ws)] + list(vs))
    out = []
    for j, near in enumerate(_near_roots(roots, len(wss), depth)):
        layer_roots = roots[j * depth:(j + 1) * depth]
        v_roots = roots[len(wss) * depth + j]
        if not near:  # (no two roots the tests below compare are within twice ROOT_TOL: nothing shared or repeated)
            out.append((layer_roots, v_roots, [], []))
            continue
        # the comparisons (_close) on Python complex numbers, each root's modulus computed once: abs() of a NumPy
        # complex scalar is the same hypot, bit for bit
        layers = [[(a, abs(a)) for a in r.tolist()] for r in layer_roots]
        v_list = [(a, abs(a)) for a in v_roots.tolist()]
        shared = []
        for i, k in itertools.combinations(range(depth), 2):
            found: list[tuple[complex, float]] = []  # (the roots of layers i and k found shared so far)
            for a, ma in layers[i]:
                if any(_close_moduli(a, ma, b, mb) for b, mb in layers[k]) and not any(
                        _close_moduli(b, mb, a, ma) for b, mb in found):
                    found.append((a, ma))
                    shared.append((i + 1, k + 1, a))
        repeated: list[tuple[complex, float]] = []
        for i, (a, ma) in enumerate(v_list):
            if any(_close_moduli(a, ma, b, mb) for b, mb in v_list[i + 1:]) and not any(
                    _close_moduli(a, ma, r, mr) for r, mr in repeated):
                repeated.append((a, ma))
        out.append((layer_roots, v_roots, shared, [a for a, _ in repeated]))
    return out


def _near_roots(roots: list[np.ndarray], n: int, depth: int) -> list[bool]:
    """For each of ``n`` points (``roots``: the ``depth`` layers' roots of each point, then each point's ``p_v``
    roots): whether two roots of different layers, or two roots of ``p_v``, are within twice the tolerance of
    :func:`_close` — a screen in stacked array arithmetic (points with equal numbers of roots together), so that the
    exact tests of :func:`_root_structures` run only where they can find something (the factor 2 covers any rounding
    difference between the stacked and the scalar moduli)."""
    near = [False] * n
    groups: dict[tuple[int, ...], list[int]] = {}
    for j in range(n):
        sizes = (*(r.size for r in roots[j * depth:(j + 1) * depth]), roots[n * depth + j].size)
        groups.setdefault(sizes, []).append(j)
    for sizes, idx in groups.items():
        layer_of = np.repeat(np.arange(depth + 1), sizes)
        R = np.array([np.concatenate([*roots[j * depth:(j + 1) * depth], roots[n * depth + j]]) for j in idx])
        if R.shape[1] < 2:
            continue
        # pairs compared: roots of two different layers, or two roots of p_v
        pair = (layer_of[:, None] != layer_of[None, :]) & (layer_of[:, None] < depth) & (layer_of[None, :] < depth)
        pair |= (layer_of[:, None] == depth) & (layer_of[None, :] == depth)
        np.fill_diagonal(pair, False)
        mod = np.abs(R)
        close = np.abs(R[:, :, None] - R[:, None, :]) <= 2 * ROOT_TOL * (1 + np.maximum(mod[:, :, None],
                                                                                        mod[:, None, :]))
        for j, hit in zip(idx, (close & pair).any(axis=(1, 2)).tolist(), strict=True):
            near[j] = hit
    return near


def _fmt_root(z: complex) -> str:
    if abs(z.imag) <= ROOT_TOL * (1 + abs(z)):
        return f"{z.real:.6g}"
    return f"{z.real:.6g}{z.imag:+.6g}i"


def _name_degeneracies(arch, ws, shared, repeated) -> list[str]:
    names = []
    norms = [float(np.linalg.norm(w)) for w in ws]
    top = max(max(norms), 1e-300)
    for i, n in enumerate(norms):
        if n <= 1e-10 * top:
            names.append(f"layer {i + 1} has a zero filter")
    if arch.ndim == 1 and not arch.is_multichannel:
        lead_zero = [i + 1 for i, w in enumerate(ws) if w.size > 1 and abs(w[-1]) <= 1e-10 * max(norms[i], 1e-300)]
        if len(lead_zero) > 1:
            names.append(f"layers {lead_zero} share a root at infinity (vanishing leading coefficients)")
        for i, j, z in shared:
            names.append(f"layers {i} and {j} share the root {_fmt_root(z)}")
        for z in repeated:
            if not any(_close(z, s[2]) for s in shared):
                names.append(f"p_v has the repeated root {_fmt_root(z)}")
    return names


def _layer_units(ws: list[np.ndarray]) -> list[tuple[complex, ...]] | str:
    """The roots of ``p_v`` as *units* — a real root ``(a,)``, a conjugate pair ``(z, z̄)``, a root at infinity
    ``(inf,)`` — collected from the layers' own polynomials (each well conditioned even where ``p_v`` has a multiple
    root shared by two layers)."""
    units: list[tuple[complex, ...]] = []
    for i, w in enumerate(ws):
        scale = float(np.max(np.abs(w))) if w.size else 0.0
        if scale == 0.0:
            return f"layer {i + 1} is zero: the fibre of v* = 0 is not finite up to rescaling"
        nz = np.nonzero(np.abs(w) > 1e-13 * scale)[0]
        deg = int(nz[-1])
        roots = P.polyroots(w[: deg + 1] / scale).astype(complex) if deg > 0 else np.zeros(0, complex)
        units += [(complex(np.inf),)] * (w.size - 1 - deg)
        used = np.zeros(roots.size, bool)
        for j, z in enumerate(roots):
            if used[j]:
                continue
            used[j] = True
            if abs(z.imag) <= ROOT_TOL * (1 + abs(z)):
                units.append((complex(z.real, 0.0),))
                continue
            cand = [q for q in range(roots.size) if not used[q] and _close(roots[q], np.conj(z))]
            if not cand:
                return f"could not pair the complex roots of layer {i + 1} into conjugates"
            used[cand[0]] = True
            units.append((complex(z.real, abs(z.imag)), complex(z.real, -abs(z.imag))))
    return units


def _fibre_classes(arch: Architecture, ws: list[np.ndarray], v: np.ndarray,
                   deadline: float = math.inf) -> tuple[list[list[np.ndarray]], str] | str:
    """One point (balanced) of each class of the fibre ``π^{-1}(v*)`` up to rescaling and exchanges of layers of equal
    size, and ``""`` when they are all there — else why the list stops short (a reason string alone when the fibre
    cannot be enumerated at all).

    The roots are distributed over the layers as *unordered* groups for layers of the same size: a unit goes into
    a layer already holding roots, or into the *first* empty layer of each size, never into a later empty one (they
    are exchangeable).  So every class is built once when the roots are distinct — one walk of ``N`` steps for ``N``
    layers of size 2, instead of ``N!`` — and the walk never visits more than :data:`MAX_FIBRE_VISITS` partial
    assignments nor keeps more than :data:`MAX_FIBRE_POINTS` classes, nor goes on past ``deadline``
    (``time.perf_counter``): then the classes found so far are returned with the reason.
    """
    ks = [k[0] for k in arch.axes_filter_sizes]
    S = [s[0] for s in arch.cumulative_strides]
    if any(k > 1 and S[i] != 1 for i, k in enumerate(ks)):
        return "fibre enumeration is implemented for layers without preceding strides only"
    units = _layer_units(ws)
    if isinstance(units, str):
        return units
    caps = [k - 1 for k in ks]
    # the first layer of each size: empty layers of one size are tried in this order only
    same_size_before = [[j for j in range(i) if ks[j] == ks[i]] for i in range(len(ks))]
    results: list[list[np.ndarray]] = []
    seen: set = set()
    visits = [0]
    stop = [""]

    def key(assign):
        per_layer = [tuple(sorted((round(z.real, 6), round(z.imag, 6)) for u in group for z in u))
                     for group in assign]
        return tuple(sorted(zip(ks, per_layer, strict=True)))

    def rec(j: int, assign: list[list[tuple[complex, ...]]], free: list[int]) -> bool:
        visits[0] += 1
        if len(results) >= MAX_FIBRE_POINTS:
            stop[0] = f"the fibre has more than {MAX_FIBRE_POINTS} classes"
            return False
        if visits[0] > MAX_FIBRE_VISITS:
            stop[0] = f"the walk over the fibre stopped after {MAX_FIBRE_VISITS} partial assignments"
            return False
        if visits[0] % 64 == 0 and time.perf_counter() > deadline:
            stop[0] = "max_time ran out during the walk over the fibre"
            return False
        if j == len(units):
            k = key(assign)
            if k not in seen:
                seen.add(k)
                results.append(_layers_from_units(arch, assign, ks, v))
            return True
        u = units[j]
        for i in range(len(ks)):
            if free[i] < len(u):
                continue
            if not assign[i] and any(not assign[q] for q in same_size_before[i]):
                continue  # an earlier empty layer of the same size is the same choice
            free[i] -= len(u)
            assign[i].append(u)
            ok = rec(j + 1, assign, free)
            assign[i].pop()
            free[i] += len(u)
            if not ok:
                return False
        return True

    rec(0, [[] for _ in ks], caps)
    return results, stop[0]


def _factor(u: tuple[complex, ...]) -> np.ndarray:
    """Unit-norm coefficients (constant first) of the real factor of one unit."""
    if len(u) == 2:
        z = u[0]
        c = np.array([abs(z) ** 2, -2 * z.real, 1.0])
    elif not np.isfinite(u[0]):
        c = np.array([1.0, 0.0])
    else:
        c = np.array([-u[0].real, 1.0])
    return c / np.linalg.norm(c)


def _layers_from_units(arch, assign, ks, v) -> list[np.ndarray]:
    layers = []
    for group, k in zip(assign, ks, strict=True):
        c = np.ones(1)
        for u in group:
            c = np.convolve(c, _factor(u))
        layers.append(np.concatenate([c, np.zeros(k - c.size)]))
    p = final_filter_unchecked(arch, layers).ravel()
    layers[0] = layers[0] * (float(p @ v.ravel()) / float(p @ p))
    norms = np.array([np.linalg.norm(w) for w in layers])
    g = float(np.exp(np.mean(np.log(norms))))
    return [w * (g / n) for w, n in zip(layers, norms, strict=True)]


def _balanced(arch: Architecture, ws: list[np.ndarray], v_hat: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The balanced representative of the rescaling orbit of ``w`` and the weights ``D`` of balanced coordinates.

    Non-zero layers are rescaled to their geometric-mean norm ``g`` (factors with product 1, so π is unchanged); the
    point's derivatives are then computed where all layers have the same size, so rounding does not depend on how
    unbalanced the given representative was.  The weights are ``g`` on those layers.  Only near ``π⁻¹(0)``
    (``Π_i ‖w^{(i)}‖ ≤ 10⁻¹⁰‖v̂‖``, invariant under rescaling) can a layer count as zero: when its norm is below
    ``10⁻¹⁰`` times the larger of the largest layer and the natural layer size ``σ = ‖v̂‖^{1/N}`` (the layers of a
    balanced network producing the unconstrained optimum); it is left as it is, with weight ``σ``
    (or, when ``v̂ = 0``, ``g``; or 1 when every layer is zero), so the weights scale with the data like the layers.
    """
    # (on Python floats, in the order in which NumPy's reductions of a few terms add and multiply)
    norms = [flat_norm(w) for w in ws]
    sigma = flat_norm(v_hat) ** (1.0 / len(ws))
    ref = max(sigma, max(norms, default=0.0))
    pos = [n > 1e-10 * ref if ref > 0 else False for n in norms]
    if math.prod(norms) > 1e-10 * sigma ** len(ws):  # not near π⁻¹(0): no layer is zero (a rescaling invariant
        pos = [True] * len(norms)  # test, so the verdict cannot depend on the representative)
    logs = np.log([n for n, p in zip(norms, pos, strict=True) if p])
    # (NumPy's mean adds fewer than 8 terms in order; from 8 on it sums pairwise)
    g = float(np.exp(sum(logs.tolist()) / logs.size if logs.size < 8 else np.mean(logs))) if logs.size else 0.0
    fill = sigma if sigma > 0 else (g if g > 0 else 1.0)
    balanced = [w * (g / n) if p else w.copy() for w, n, p in zip(ws, norms, pos, strict=True)]
    weights = np.repeat([g if p else fill for p in pos], [w.size for w in ws])
    return balanced, weights


_VALUE_SCALES: weakref.WeakKeyDictionary[EmpiricalRisk, tuple[float | None, float]] = weakref.WeakKeyDictionary()


def _value_scales(risk: EmpiricalRisk) -> tuple[float | None, float]:
    """``(ℒ(0) − min ℒ, or None when that is within the rounding of ℒ(0); the rounding of ℒ at the unconstrained
    optimum)``: what the value tests of :func:`classify_critical_point` need of the risk alone (cached per risk)."""
    cached = _VALUE_SCALES.get(risk)
    if cached is None:
        v_hat, f_hat = unconstrained_optimum(risk)
        zero = np.zeros(risk.arch.final_filter_num_params)
        loss_range = risk.function_space_value(zero) - f_hat
        cached = (loss_range if loss_range > risk_rounding(risk, zero) else None, risk_rounding(risk, v_hat))
        _VALUE_SCALES[risk] = cached
    return cached


def classify_critical_point(
    risk: EmpiricalRisk,
    filters,
    *,
    function_space_tol: float | None = None,
    eig_rtol: float = EIG_RTOL,
    rank_rtol: float = RANK_RTOL,
    spurious_rtol: float = SPURIOUS_RTOL,
    best: FunctionSpaceBest | None = None,
    compare_with_best: bool = True,
    check_spurious: bool = True,
    max_time: float = math.inf,
    critical_rtol: float | None = CRITICAL_RTOL,
) -> CriticalPoint:
    r"""Classify a critical point ``w*`` of ``L`` (see the module docstring for the definitions and tolerances).

    Parameters
    ----------
    risk : EmpiricalRisk
    filters : list of ndarray or flat ndarray
        The point (normally the polished limit of a flow).
    function_space_tol : float, optional
        If given, ``‖∇ℒ(v*)‖ ≤ function_space_tol`` decides whether the unconstrained optimum was reached (an
        absolute threshold chosen by the caller).  Default: ``ℒ(v*) − min ℒ ≤ τ`` (scale-free, see the module
        docstring).
    eig_rtol : float
        Eigenvalues of the balanced Hessian ``D∇²L D`` on the symmetry complement with
        ``|λ| ≤ eig_rtol·(‖D dπᵀ∇²ℒ dπ D‖ + ‖D (Σ_t ∂_tℒ ∇²π_t) D‖)`` count as zero.
    rank_rtol : float
        Singular values of the balanced ``dπ D`` below ``rank_rtol · σ_max`` count as zero.
    spurious_rtol : float
        A fibre point ``w'`` shows that ``v*`` is not critical on ``M`` when the cosine
        ``‖(dπ(w')D')ᵀ∇ℒ(v*)‖ / (‖dπ(w')D'‖‖∇ℒ(v*)‖)`` exceeds ``max(spurious_rtol, 10³ × the same at w*)``.
    best : FunctionSpaceBest, optional
        ``ℒ*_M`` if already known (default :func:`~lcnflow.analysis.optimum.best_on_function_space`, cached per risk;
        computed only when the unconstrained optimum was not reached).
    compare_with_best : bool
        ``False`` skips ``ℒ*_M`` (for quick checks on the way, e.g. on plateaus): then a point that did not reach the
        unconstrained optimum gets ``global_on_m = None`` and, if a minimum, ``kind = "local_minimum"``.
    check_spurious : bool
        ``False`` skips the walk over the fibre (``spurious = None`` at rank-deficient points; the second-order
        verdict does not depend on it).  :func:`settle_spurious` completes it later.
    critical_rtol : float or None
        The point must have ``‖∇L(w)‖ ≤ critical_rtol · S(w)`` (``S`` of
        :func:`~lcnflow.analysis.certify.gradient_scale`, so the test is scale-free), else ``kind = "not_critical"``;
        ``None`` skips the test (for points the caller certified itself).
    max_time : float
        Seconds the comparison with ``ℒ*_M`` and the walk over the fibre may take together (``inf``: no limit).
        What is left when it runs out stays undecided (``global_on_m = None``, ``spurious = None``) and
        ``undecided`` says so.  Every other step costs a fixed number of Hessians and eigen-decompositions.

    Returns
    -------
    CriticalPoint
    """
    return classify_critical_points(
        risk, [filters], function_space_tol=function_space_tol, eig_rtol=eig_rtol, rank_rtol=rank_rtol,
        spurious_rtol=spurious_rtol, best=best, compare_with_best=compare_with_best, check_spurious=check_spurious,
        max_time=max_time, critical_rtol=critical_rtol)[0]


def classify_critical_points(
    risk: EmpiricalRisk,
    points: Sequence,
    *,
    function_space_tol: float | None = None,
    eig_rtol: float = EIG_RTOL,
    rank_rtol: float = RANK_RTOL,
    spurious_rtol: float = SPURIOUS_RTOL,
    best: FunctionSpaceBest | None = None,
    compare_with_best: bool = True,
    check_spurious: bool = True,
    max_time: float = math.inf,
    critical_rtol: float | None = CRITICAL_RTOL,
) -> list[CriticalPoint]:
    """:func:`classify_critical_point` of each of ``points``, the points' linear algebra in stacked calls.

    The eigen-decompositions of the balanced Hessians, the symmetry bases and their complements (SVD, QR), the
    spectral norms, the ranks of ``dπ D`` and the roots of the layer polynomials of all the points run as one NumPy
    call per shape (:func:`~lcnflow.analysis.symmetry.per_shape`; points whose rescaling orbit degenerates go in a
    group of their own).  NumPy runs the same LAPACK routine on each matrix of a stack, so each point gets the
    classification it gets alone, bit for bit; on the small matrices of a network's parameters the calls' overhead
    is most of the cost, so many points cost a fraction of as many single calls (limits of a three-layer 1D network,
    64 points per call: 0.4 of the time per point of single calls, measured in one process).

    Parameters
    ----------
    risk : EmpiricalRisk
    points : sequence
        Each a list of filters or a flat parameter vector.
    function_space_tol, eig_rtol, rank_rtol, spurious_rtol, best, compare_with_best, check_spurious, max_time, \
    critical_rtol
        As for :func:`classify_critical_point` (the same for every point; ``max_time`` covers all of them together).

    Returns
    -------
    list of CriticalPoint
        One per point, in order.
    """
    if not isinstance(risk, EmpiricalRisk):
        raise ValueError(f"risk: expected a lcnflow.EmpiricalRisk, got {type(risk).__name__}")
    for name, value in (("eig_rtol", eig_rtol), ("rank_rtol", rank_rtol), ("spurious_rtol", spurious_rtol)):
        if not (isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1):
            raise ValueError(f"{name}: must be a number in (0, 1) (a relative tolerance), got {value!r}")
    if function_space_tol is not None and not (isinstance(function_space_tol, int | float)
                                               and function_space_tol >= 0 and math.isfinite(function_space_tol)):
        raise ValueError(f"function_space_tol: must be a finite number ≥ 0, got {function_space_tol!r}")
    _check_max_time(max_time)
    if critical_rtol is not None and not (isinstance(critical_rtol, int | float) and not isinstance(critical_rtol, bool)
                                          and 0 < critical_rtol < 1):
        raise ValueError(f"critical_rtol: must be a number in (0, 1) or None, got {critical_rtol!r}")
    deadline = time.perf_counter() + max_time
    n = len(points)
    if n == 0:
        return []
    announce(CLASSIFYING)
    arch = risk.arch
    wss = [as_filters(arch, filters) for filters in points]
    W = np.stack([flatten(ws) for ws in wss])
    vs = [final_filter_unchecked(arch, ws).ravel() for ws in wss]
    v_hat, f_hat = unconstrained_optimum(risk)
    loss_range, rounding_at_optimum = _value_scales(risk)

    # the point at each's balanced representative (invariant under the rescaling symmetry) and its weights D
    balanced = [_balanced(arch, ws, v_hat) for ws in wss]
    WB = np.stack([flatten(wbs) for wbs, _ in balanced])
    D = np.stack([weights for _, weights in balanced])
    _, GB, HB, J = risk.flat_second_order(WB)  # ∇L, ∇²L and dπ at the balanced points
    A = (np.broadcast_to(risk.function_space_hessian(vs[0]), (n, vs[0].size, vs[0].size)) if risk.is_quadratic
         else np.stack([risk.function_space_hessian(v) for v in vs]))  # (∇²ℒ = G everywhere for the square loss)
    JD = J * D[:, None, :]
    gn_part = JD.transpose(0, 2, 1) @ A @ JD
    curv_part = D[:, :, None] * (HB - J.transpose(0, 2, 1) @ A @ J) * D[:, None, :]
    hess_b = D[:, :, None] * HB * D[:, None, :]
    # with channels the flat directions removed are the whole generic fibre of π (it contains the symmetry orbit)
    if arch.is_multichannel:
        sym_b = [_flat_directions(JD[j], arch.num_params - arch.function_space_dim) for j in range(n)]
    else:
        sym_b = symmetry_bases(arch, WB / D)
    comp_b = complement_bases(sym_b, W.shape[1])
    hess_c = per_shape(lambda C, H: C.transpose(0, 2, 1) @ H @ C, comp_b, list(hess_b))
    eigen_b = per_shape(np.linalg.eigh, hess_c)
    norms = np.linalg.svd(np.concatenate([gn_part, curv_part]), compute_uv=False)[:, 0]
    tol_eig = eig_rtol * np.maximum(norms[:n] + norms[n:], 1e-300)
    # a point that passes the second-order test: is its Hessian steady over the Newton step?
    newton = [j for j in range(n) if eigen_b[j][0].size and np.all(eigen_b[j][0] > tol_eig[j])]
    steady = dict(zip(newton, _newton_checks(risk, [WB[j] for j in newton], [GB[j] for j in newton],
                                             [D[j] for j in newton], [comp_b[j] for j in newton],
                                             [eigen_b[j] for j in newton], [hess_c[j] for j in newton]),
                      strict=True))
    # reported spectrum: plain coordinates at the given point, complement of the rescaling directions
    sym = ([fibre_basis(arch, w) for w in W] if arch.is_multichannel else symmetry_bases(arch, W))
    comp = complement_bases(sym, W.shape[1])
    eig = per_shape(lambda C, H: np.linalg.eigvalsh(C.transpose(0, 2, 1) @ H @ C), comp,
                    list(risk.flat_second_order(W).hessians))
    # function-space side: rank of the balanced dπ
    sv = np.linalg.svd(JD, compute_uv=False)
    roots = (_root_structures(arch, wss, vs) if arch.ndim == 1 and not arch.is_multichannel
             else [([], np.zeros(0, complex), [], []) for _ in range(n)])

    # what the residual gradient accounts for in the value: Σ_i ‖∇_{w^(i)} L‖ ‖w^(i)‖ at the balanced point
    tau_certs = np.sum(layer_norms(arch, GB) * layer_norms(arch, WB), axis=1)
    out = []
    for j in range(n):
        ws, w, v, wb, weights = wss[j], W[j], vs[j], WB[j], D[j]
        g_v = risk.function_space_gradient(v).reshape(-1)
        value, grad = risk.flat_value_and_gradient(w)
        fs_norm = flat_norm(g_v)
        # values: ℒ(v*) against min ℒ and ℒ*_M, within τ = rounding + what the residual gradient accounts for
        tau_cert = float(tau_certs[j])
        if loss_range is not None:
            tau_cert = min(tau_cert, CERT_RTOL * loss_range)
        tau = risk_rounding(risk, v) + tau_cert
        if function_space_tol is not None:
            reached = fs_norm <= function_space_tol
        else:
            reached = value - f_hat <= tau + rounding_at_optimum
        # (global on M or not is settled at the end, by settle_on_m, when the unconstrained optimum was not reached)
        global_on_m: bool | None = True if reached else None
        gap = value - f_hat if reached else float("nan")

        eig_b, vec_b = eigen_b[j]
        t_eig, eig_list = float(tol_eig[j]), eig_b.tolist()  # (a handful of numbers: compared as Python floats)
        index = sum(1 for x in eig_list if x < -t_eig)
        zero_eig = any(abs(x) <= t_eig for x in eig_list)
        newton_distance = float("nan")
        degenerate_hessian = zero_eig
        if j in steady:
            is_steady, step = steady[j]
            degenerate_hessian = not is_steady
            newton_distance = step if is_steady else float("nan")

        not_a_minimum = None
        grad_norm = flat_norm(grad)
        critical = critical_rtol is None or grad_norm <= critical_rtol * gradient_scale(risk, w)
        if not critical:
            kind: Kind = "not_critical"
        elif index > 0:
            kind = "strict_saddle"
        elif global_on_m:
            kind = "global_minimum"
        elif degenerate_hessian:
            kind = "degenerate"
            flat = np.abs(eig_b) <= tol_eig[j] if zero_eig else eig_b <= eig_b[0] * (1 + 1e-12)
            null = comp_b[j] @ vec_b[:, flat]
            not_a_minimum = _descent_probe(risk, wb, weights, null, value, tau)
        else:
            kind = "local_minimum"

        sv_list = sv[j].tolist()
        rank_tol = rank_rtol * max(max(sv_list, default=0.0), 1e-300)
        dpi_rank = sum(1 for x in sv_list if x > rank_tol)
        dim_m = arch.function_space_dim
        origin: Origin = "global" if reached else ("pure" if dpi_rank >= dim_m else "rank_deficient")
        layer_roots, v_roots, shared, repeated = roots[j]
        degeneracies = _name_degeneracies(arch, ws, shared, repeated) if origin == "rank_deficient" else []

        if check_spurious:
            spurious, reason, witness = _spurious(arch, ws, v, g_v, JD[j], origin, global_on_m, spurious_rtol,
                                                  deadline)
        elif origin != "rank_deficient" or global_on_m:
            spurious, reason, witness = _spurious(arch, ws, v, g_v, JD[j], origin, global_on_m, spurious_rtol)
        else:
            spurious, reason, witness = None, NOT_EXAMINED, None
        undecided = "spurious: undecided, max_time ran out" if reason.startswith("undecided: max_time") else ""

        cp = CriticalPoint(
            kind=kind,
            origin=origin,
            spurious=spurious,
            spurious_reason=reason,
            hessian_eigenvalues=eig[j],
            symmetry_dimension=int(sym[j].shape[1]),
            dpi_rank=dpi_rank,
            function_space_dim=dim_m,
            gradient_norm=grad_norm,
            function_space_gradient_norm=fs_norm,
            degeneracies=degeneracies,
            layer_roots=layer_roots,
            final_filter_roots=v_roots,
            shared_roots=shared,
            repeated_roots=repeated,
            not_a_minimum=not_a_minimum,
            spurious_witness=witness,
            unconstrained_optimum_reached=bool(reached),
            global_on_m=global_on_m,
            gap_to_best=float(gap),
            value=float(value),
            value_tolerance=float(tau),
            index=index,
            undecided=undecided,
            degenerate_hessian=degenerate_hessian,
            newton_distance=newton_distance,
        )
        if not (reached or (best is None and not compare_with_best)):
            cp = settle_on_m(risk, cp, best, max_time=max(deadline - time.perf_counter(), 0.0), point=ws)
        out.append(cp)
    return out



#: What a degenerate Hessian means for the certificate (said wherever the flag is shown).
DEGENERATE_NOTE = ("degenerate: the Hessian of L is singular beyond the rescaling directions, so the certificate "
                   "bounds ‖∇L‖, not the distance to the limit")
#: The Hessian is steady on the scale of the Newton step when it changes by at most this fraction of its smallest
#: eigenvalue (on the complement of the rescaling directions) between ``w*`` and ``w* + δ``.
NEWTON_STEADY = 0.25


def _newton_checks(risk: EmpiricalRisk, wbs: list[np.ndarray], grads: list[np.ndarray], weights: list[np.ndarray],
                   comps: list[np.ndarray], eigens: list[tuple[np.ndarray, np.ndarray]],
                   hess_cs: list[np.ndarray]) -> list[tuple[bool, float]]:
    r"""``(steady, ‖δ‖/‖u‖)`` for each point that passes the second-order test, in balanced coordinates ``u``
    (``w = D u``, every layer of ``u`` of norm 1 at the balanced point ``wb``, where ``∇L`` is ``grads``).

    ``δ = −(Cᵀ D∇²L D C)⁻¹ Cᵀ D∇L`` is the Newton step on the complement ``C`` of the rescaling directions.  The
    Hessian is *steady* when ``‖H_C(w + Dδ) − H_C(w)‖₂ ≤`` :data:`NEWTON_STEADY` ``· λ_min(H_C(w))``: then the
    quadratic model holds over the step and the limit is about ``‖δ‖`` away.  At a point close to a limit whose
    Hessian is singular (e.g. ``ℓ(r) = r⁴/4`` at zero residual, where ``∇²L ∝ r²``) one Newton step changes the
    Hessian by a fixed fraction of itself (``1 − (2/3)² = 5/9`` for ``r⁴``) however close the point is.  Both
    quantities are ratios in balanced coordinates: invariant under the rescaling symmetry and the units of the data.
    The spectral norms of all the points in stacked calls.
    """
    size = math.sqrt(risk.arch.depth)
    deltas = []
    for grad, d, comp_b, (eig_b, vec_b) in zip(grads, weights, comps, eigens, strict=True):
        g = comp_b.T @ (d * grad)
        deltas.append(comp_b @ (vec_b @ ((vec_b.T @ g) / eig_b)))
    if not deltas:
        return []
    stepped = risk.flat_second_order(np.stack([wb - d * delta for wb, d, delta in zip(wbs, weights, deltas,
                                                                                     strict=True)])).hessians
    changes = [comp_b.T @ (d[:, None] * hess * d[None, :]) @ comp_b - hess_c
               for hess, d, comp_b, hess_c in zip(stepped, weights, comps, hess_cs, strict=True)]
    norms = per_shape(lambda M: np.linalg.svd(M, compute_uv=False)[:, 0], changes)
    return [(float(change) <= NEWTON_STEADY * float(eig_b[0]), flat_norm(delta) / size)
            for change, (eig_b, _), delta in zip(norms, eigens, deltas, strict=True)]


#: ``spurious_reason`` of a point classified with ``check_spurious=False``.
NOT_EXAMINED = "not examined (the fibre was not walked)"


def _check_max_time(max_time) -> None:
    if not (isinstance(max_time, int | float) and not isinstance(max_time, bool) and max_time >= 0
            and not math.isnan(max_time)):
        raise ValueError(f"max_time: must be a number ≥ 0 (seconds; inf for no limit), got {max_time!r}")


def _add_undecided(cp: CriticalPoint, what: str) -> CriticalPoint:
    return dataclasses.replace(cp, undecided="; ".join(x for x in (cp.undecided, what) if x))


def settle_spurious(risk: EmpiricalRisk, cp: CriticalPoint, filters, *, spurious_rtol: float = 1e-6,
                    max_time: float = math.inf) -> CriticalPoint:
    """``cp`` (classified at ``filters`` with ``check_spurious=False``) with the spurious test done, within
    ``max_time`` seconds (else left undecided, and ``undecided`` says so).  Other points are returned as they are."""
    _check_max_time(max_time)
    if cp.spurious_reason != NOT_EXAMINED:
        return cp
    if max_time <= 0:
        cp = dataclasses.replace(cp, spurious_reason="undecided: max_time ran out before the walk over the fibre")
        return _add_undecided(cp, "spurious: undecided, max_time ran out before the walk over the fibre")
    deadline = time.perf_counter() + max_time
    arch = risk.arch
    ws = as_filters(arch, filters)
    v = final_filter_unchecked(arch, ws).ravel()
    g_v = risk.function_space_gradient(v).reshape(-1)
    wbs, weights = _balanced(arch, ws, unconstrained_optimum(risk)[0])
    JD = final_filter_jacobian(arch, wbs) * weights
    spurious, reason, witness = _spurious(arch, ws, v, g_v, JD, cp.origin, cp.global_on_m, spurious_rtol, deadline)
    out = dataclasses.replace(cp, spurious=spurious, spurious_reason=reason, spurious_witness=witness)
    if reason.startswith("undecided: max_time"):
        out = _add_undecided(out, "spurious: undecided, max_time ran out")
    return out


def settle_on_m(risk: EmpiricalRisk, cp: CriticalPoint, best: FunctionSpaceBest | None = None, *,
                max_time: float = math.inf, point=None) -> CriticalPoint:
    r"""``cp`` compared with ``ℒ*_M`` (:func:`~lcnflow.analysis.optimum.best_on_function_space`): global or local on M.

    For a point classified without that comparison (``compare_with_best=False``) this gives what the full
    classification gives, without repeating it: ``L(w*) − ℒ*_M`` beyond ``τ`` plus the bound's own error means local
    on M, within it global when ``ℒ*_M`` is exact (else undecided); a minimum (or degenerate point) that is global
    on M is a ``global_minimum``, and a rank-deficient one is then not spurious.  Points already settled (the
    unconstrained optimum reached, or compared before) are returned as they are.  When ``ℒ*_M`` is not found
    within ``max_time`` seconds the point stays undecided on M and ``undecided`` says so.  With ``point`` (the
    classified ``w*``), a bound from local searches worse than ``L(w*)`` is lowered to it: a bound is never worse than
    a point of M that was seen, and the point is then undecided on M, not "local".
    """
    _check_max_time(max_time)
    if cp.unconstrained_optimum_reached or cp.best is not None:
        return cp
    if best is None:
        try:
            best = best_on_function_space(risk, max_time=max_time)
        except OutOfTime:
            return _add_undecided(cp, "global or local on M: undecided, max_time ran out before ℒ*_M was found")
    if point is not None:
        best = _at_least_as_good_as(risk, best, cp, point)
    gap = cp.value - best.value
    tol = cp.value_tolerance + best.value_error
    global_on_m = False if gap > tol else (True if best.exact and gap >= -tol else None)
    changes: dict[str, Any] = {"global_on_m": global_on_m, "gap_to_best": float(gap), "best": best}
    if global_on_m and cp.index == 0 and cp.kind != "not_critical":
        changes.update(kind="global_minimum", not_a_minimum=None)
        if cp.origin == "rank_deficient":
            changes.update(spurious=False, spurious_witness=None,
                           spurious_reason="L(w*) = ℒ*_M: v* minimizes ℒ on M, so it is critical for ℒ on M")
    return dataclasses.replace(cp, **changes)


def _at_least_as_good_as(risk: EmpiricalRisk, best: FunctionSpaceBest, cp: CriticalPoint, point) -> FunctionSpaceBest:
    """``best`` (a bound on ``ℒ*_M`` from local searches) lowered to ``L(w*)`` where the point ``w*`` classified as
    ``cp`` is better — a bound is never worse than a point of M that lcnflow has seen.  Exact values are returned as
    they are."""
    if best.exact or not cp.value < best.value:
        return best
    v = final_filter_unchecked(risk.arch, as_filters(risk.arch, point)).reshape(best.filter.shape)
    return dataclasses.replace(
        best, value=float(cp.value), filter=v, value_error=max(best.value_error, cp.value_tolerance),
        statement=(f"{best.statement}; lowered to L(w*) = {cp.value:.6g}, a certified point of M that the search "
                   "did not reach (an upper bound still)"),
        details={**best.details, "lowered_by_limit": float(best.value - cp.value)})


def _spurious(arch, ws, v, g_v, JD, origin, global_on_m, rtol, deadline: float = math.inf):
    """``(spurious, reason, witness)`` (see the module docstring).  A witness among the fibre points examined proves
    spuriousness; their absence proves nothing unless every class of the fibre was examined (else ``None``:
    undecided, with how many were examined and why the walk stopped)."""
    if origin != "rank_deficient":
        return False, f"origin is {origin}: v* is critical for ℒ on M", None
    if global_on_m:
        return False, "L(w*) = ℒ*_M: v* minimizes ℒ on M, so it is critical for ℒ on M", None
    if arch.is_multichannel:
        return None, ("undecided: the fibre of π is enumerated for single-channel networks only (with channels it "
                      "is not a finite set of root distributions)"), None
    if arch.ndim != 1:
        return None, "the fibre of π is enumerated for 1D architectures only", None
    fibre = _fibre_classes(arch, ws, v, deadline)
    if isinstance(fibre, str):
        return None, fibre, None
    fibre, incomplete = fibre
    if any(not np.all(np.isfinite(w)) for point in fibre for w in point):
        return None, ("the fibre could not be rebuilt from the layers' roots in float64 (its points under- or "
                      "overflow)"), None
    g_norm = float(np.linalg.norm(g_v))
    if g_norm == 0.0:
        return False, "∇ℒ(v*) = 0", None
    v_norm = max(float(np.linalg.norm(v)), 1e-300)
    if any(np.linalg.norm(final_filter_unchecked(arch, p).ravel() - v) > 1e-6 * v_norm for p in fibre):
        return None, "the fibre could not be rebuilt from the layers' roots to 1e-6", None
    own = float(np.linalg.norm(JD.T @ g_v)) / max(_spectral_norm(JD) * g_norm, 1e-300)
    threshold = max(rtol, 1e3 * own)
    examined = 0
    for point in fibre:
        if examined and time.perf_counter() > deadline:
            incomplete = incomplete or "max_time ran out while testing the fibre points"
            break
        examined += 1
        Jp = final_filter_jacobian(arch, point)
        cosine = float(np.linalg.norm(Jp.T @ g_v)) / max(_spectral_norm(Jp) * g_norm, 1e-300)
        if cosine > threshold:
            return True, (
                f"at another point of the fibre (another distribution of the roots over the layers) ∇L ≠ 0: "
                f"|cos(∇ℒ(v*), range dπ)| = {cosine:.3g} > {threshold:.3g} (at w* itself: {own:.2g}), so v* is "
                "not critical for ℒ on M"
            ), point
    if incomplete:
        return None, (
            f"undecided: {incomplete}; ∇L(w') = 0 at the {examined} class(es) of the fibre examined (up to rescaling "
            f"and exchanges of equal-size layers; largest |cos(∇ℒ(v*), range dπ(w'))| ≤ {threshold:.3g}), which "
            "does not show that v* is critical for ℒ on M"
        ), None
    return False, (
        f"∇L(w') = 0 at all {len(fibre)} class(es) of the fibre up to rescaling and exchanges of equal-size layers "
        f"(largest |cos(∇ℒ(v*), range dπ(w'))| ≤ {threshold:.3g})"
    ), None


def _flat_directions(JD: np.ndarray, count: int) -> np.ndarray:
    """Orthonormal columns spanning the tangent of the generic fibre of π in balanced coordinates: the right singular
    vectors of the balanced ``dπ D`` for its ``count = P − dim M`` smallest singular values (its kernel where ``dπ``
    has full rank ``dim M``; where it is rank-deficient, only that many directions are removed)."""
    if count <= 0:
        return np.zeros((JD.shape[1], 0))
    _, _, vt = np.linalg.svd(JD, full_matrices=True)
    return vt[-count:].T


def _descent_probe(risk: EmpiricalRisk, w: np.ndarray, weights: np.ndarray, null: np.ndarray, base: float,
                   tau: float) -> bool | None:
    """Look for a decrease of ``L`` along ``null`` (columns: null directions of the balanced Hessian on the symmetry
    complement), the mark of a higher-order saddle.

    Steps ``±ε·D d`` with ``ε ∈ {10⁻², 10⁻³}`` and ``d`` a unit vector in balanced coordinates move each layer by at
    most ``ε‖w^{(i)}‖``; a decrease counts only if it exceeds ``τ`` (rounding plus what the residual gradient can
    explain), so the verdict is scale-free.
    """
    if null.shape[1] == 0:
        return None
    if risk.arch.depth >= 2 and not np.any(w):
        # the origin: L(εd) − L(0) = ε^N ⟨∇ℒ(0), π(d)⟩ + O(ε^{2N}), and flipping the sign of one layer of d flips
        # π(d); the values π(d) span R^{k_v}, so L decreases along d or its flip unless ∇ℒ(0) = 0 — a decrease of
        # order ε^N that finite probes miss at large depth
        g0 = risk.function_space_gradient(np.zeros(risk.arch.final_filter_shape))
        return True if np.any(g0) else None
    rng = np.random.default_rng(0)
    dirs = [null[:, j] for j in range(null.shape[1])]
    dirs += [null @ rng.standard_normal(null.shape[1]) for _ in range(8)]
    floor = max(tau, risk_rounding(risk, final_filter_unchecked(risk.arch, unflatten_unchecked(risk.arch, w)).ravel()))
    for d in dirs:
        d = weights * (d / np.linalg.norm(d))
        for eps in (1e-2, 1e-3):
            for sgn in (1.0, -1.0):
                if risk.flat_value(w + sgn * eps * d) < base - floor:
                    return True
    return None
