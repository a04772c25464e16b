r"""What kind of critical point a limit is (DESIGN.md §4).

At ``w*`` with ``v* = π(w*)``:

* **second order** — the Hessian of ``L`` vanishes along the ``N − 1`` rescaling directions; on their orthogonal
  complement it is positive definite (``local_minimum``), has a negative eigenvalue (``strict_saddle``) or further
  zero eigenvalues (``degenerate``).  ``∇ℒ(v*) = 0`` makes ``w*`` a ``global_minimum`` (ℒ is convex).
* **function space** — ``origin = "global"`` when ``∇ℒ(v*) = 0``; ``"pure"`` when ``dπ(w*)`` has full rank
  ``dim M`` (then ``v*`` is critical for ℒ on the smooth part of ``M``); else ``"rank_deficient"``.  A rank-deficient
  point is *spurious* when ``v*`` is not critical for ℒ on ``M``: in 1D this shows at another point ``w'`` of the fibre
  ``π^{-1}(v*)`` — another way to distribute the roots of ``p_v`` over the layers — where
  ``∇L(w') = dπ(w')ᵀ∇ℒ(v*) ≠ 0`` (Kohn et al. 2022, 2024; Trager, Kohn & Bruna 2020).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.polynomial import polynomial as P

from ..architecture import Architecture
from ..conv import _final_filter, as_filters, final_filter_jacobian, flatten
from ..risk import EmpiricalRisk
from .symmetry import complement_basis, symmetry_basis

KINDS = ("global_minimum", "local_minimum", "strict_saddle", "degenerate")
ORIGINS = ("global", "pure", "rank_deficient")

#: Roots closer than this (relative to ``1 + |ρ|``) are treated as equal.
ROOT_TOL = 1e-5
#: Largest number of fibre points enumerated for the spurious test.
MAX_FIBRE_POINTS = 2000


@dataclass(frozen=True)
class CriticalPoint:
    """Classification of a critical point ``w*`` of ``L`` (see the module docstring).

    Attributes
    ----------
    kind : str
        ``global_minimum``, ``local_minimum``, ``strict_saddle`` or ``degenerate``.
    origin : str
        ``global``, ``pure`` or ``rank_deficient``.
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
    """

    kind: str
    origin: str
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

    @property
    def is_minimum(self) -> bool:
        """Whether the point is a (local or global) minimum by the second-order test."""
        return self.kind in ("global_minimum", "local_minimum")

    def summary(self) -> str:
        """One line a person can read."""
        parts = [f"{self.kind.replace('_', ' ')} (origin: {self.origin}"]
        if self.spurious is not None:
            parts.append(", spurious" if self.spurious else ", not spurious")
        parts.append(")")
        text = "".join(parts)
        if self.degeneracies:
            text += "; " + "; ".join(self.degeneracies)
        if self.kind == "degenerate" and self.not_a_minimum:
            text += "; L decreases along a null direction (higher-order saddle)"
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
        }


def _roots(coeffs: np.ndarray) -> np.ndarray:
    """Finite roots of ``Σ c_j t^j`` (trailing zero coefficients are roots at infinity and are not returned)."""
    c = np.asarray(coeffs, dtype=float)
    scale = np.max(np.abs(c)) if c.size else 0.0
    if scale == 0:
        return np.zeros(0, complex)
    nz = np.nonzero(np.abs(c) > 1e-13 * scale)[0]
    deg = int(nz[-1])
    if deg == 0:
        return np.zeros(0, complex)
    return np.sort_complex(P.polyroots(c[: deg + 1]).astype(complex))


def _close(a: complex, b: complex) -> bool:
    return abs(a - b) <= ROOT_TOL * (1 + max(abs(a), abs(b)))


def _dilate1(w: np.ndarray, s: int) -> np.ndarray:
    out = np.zeros((w.size - 1) * s + 1)
    out[::s] = w
    return out


def _root_structure(arch: Architecture, ws: list[np.ndarray], v: np.ndarray):
    """1D roots of each (dilated) layer polynomial and of ``p_v``, shared/repeated roots, named degeneracies."""
    S = [s[0] for s in arch.cumulative_strides]
    layer_roots = [_roots(_dilate1(w, S[i])) for i, w in enumerate(ws)]
    v_roots = _roots(v)
    shared = []
    for i, j in itertools.combinations(range(len(ws)), 2):
        for a in layer_roots[i]:
            if any(_close(a, b) for b in layer_roots[j]) and not any(
                s[0] == i + 1 and s[1] == j + 1 and _close(s[2], a) for s in shared
            ):
                shared.append((i + 1, j + 1, complex(a)))
    repeated = []
    for j, a in enumerate(v_roots):
        if any(_close(a, b) for b in v_roots[j + 1 :]) and not any(_close(a, r) for r in repeated):
            repeated.append(complex(a))
    return layer_roots, v_roots, shared, repeated


def _name_degeneracies(arch, ws, shared, repeated) -> list[str]:
    names = []
    scale = max(float(np.linalg.norm(flatten(ws))), 1e-300)
    for i, w in enumerate(ws):
        if np.linalg.norm(w) <= 1e-10 * scale:
            names.append(f"layer {i + 1} has a zero filter")
    if arch.ndim == 1:
        lead_zero = [i + 1 for i, w in enumerate(ws) if w.size > 1 and abs(w[-1]) <= 1e-10 * scale]
        if len(lead_zero) > 1:
            names.append(f"layers {lead_zero} share a root at infinity (vanishing leading coefficients)")
        for i, j, z in shared:
            names.append(f"layers {i} and {j} share the root {_fmt_root(z)}")
        for z in repeated:
            if not any(_close(z, s[2]) for s in shared):
                names.append(f"p_v has the repeated root {_fmt_root(z)}")
    return names


def _fmt_root(z: complex) -> str:
    if abs(z.imag) <= ROOT_TOL * (1 + abs(z)):
        return f"{z.real:.6g}"
    return f"{z.real:.6g}{z.imag:+.6g}i"


def _fibre_points(arch: Architecture, v: np.ndarray) -> list[list[np.ndarray]] | str:
    """All ways (up to rescaling) to write ``p_v`` as a product of real layer polynomials; a reason string if the
    fibre cannot be enumerated."""
    ks = [k[0] for k in arch.axes_filter_sizes]
    S = [s[0] for s in arch.cumulative_strides]
    if any(k > 1 and S[i] != 1 for i, k in enumerate(ks)):
        return "fibre enumeration is implemented for layers without preceding strides only"
    scale = float(np.max(np.abs(v)))
    if scale == 0:
        return "v* = 0: its fibre is not finite up to rescaling"
    nz = np.nonzero(np.abs(v) > 1e-13 * scale)[0]
    deg, lead = int(nz[-1]), float(v[nz[-1]])
    roots = _roots(v) if deg > 0 else np.zeros(0, complex)
    units: list[tuple[complex, ...]] = []  # real root (1 slot), conjugate pair (2 slots), infinity (None, 1 slot)
    used = np.zeros(roots.size, bool)
    for j, z in enumerate(roots):
        if used[j]:
            continue
        used[j] = True
        if abs(z.imag) <= ROOT_TOL * (1 + abs(z)):
            units.append((complex(z.real, 0.0),))
        else:
            cand = [q for q in range(roots.size) if not used[q] and _close(roots[q], np.conj(z))]
            if not cand:
                return "could not pair the complex roots of p_v into conjugates"
            used[cand[0]] = True
            units.append((complex(z), complex(np.conj(z))))
    units += [(complex(np.inf),)] * (sum(k - 1 for k in ks) - deg)  # roots at infinity: vanishing leading coefficients
    caps = [k - 1 for k in ks]
    results: list[list[np.ndarray]] = []
    seen: set = set()

    def key(assign):
        return tuple(
            tuple(sorted((round(z.real, 6), round(z.imag, 6)) for u in group for z in u)) for group in assign
        )

    def rec(j: int, assign: list[list[tuple[complex, ...]]], free: list[int]) -> bool:
        if len(results) > MAX_FIBRE_POINTS:
            return False
        if j == len(units):
            k = key(assign)
            if k not in seen:
                seen.add(k)
                results.append(_layers_from_roots(assign, ks, lead))
            return True
        u = units[j]
        for i in range(len(ks)):
            if free[i] >= len(u):
                free[i] -= len(u)
                assign[i].append(u)
                ok = rec(j + 1, assign, free)
                assign[i].pop()
                free[i] += len(u)
                if not ok:
                    return False
        return True

    if not rec(0, [[] for _ in ks], caps):
        return f"the fibre has more than {MAX_FIBRE_POINTS} points"
    return results


def _layers_from_roots(assign, ks, lead) -> list[np.ndarray]:
    layers = []
    for group, k in zip(assign, ks, strict=True):
        finite = [z for u in group for z in u if np.isfinite(z)]
        c = np.real(P.polyfromroots(finite)) if finite else np.ones(1)
        layers.append(np.concatenate([c, np.zeros(k - c.size)]))
    layers[0] = layers[0] * lead
    norms = np.array([np.linalg.norm(w) for w in layers])
    g = float(np.exp(np.mean(np.log(norms))))
    return [w * (g / n) for w, n in zip(layers, norms, strict=True)]


def classify_critical_point(
    risk: EmpiricalRisk,
    filters,
    *,
    function_space_tol: float | None = None,
    eig_rtol: float = 1e-7,
    rank_rtol: float = 1e-6,
) -> CriticalPoint:
    r"""Classify a critical point ``w*`` of ``L`` (see the module docstring for the definitions).

    Parameters
    ----------
    risk : EmpiricalRisk
    filters : list of ndarray or flat ndarray
        The point (normally the polished limit of a flow).
    function_space_tol : float, optional
        ``‖∇ℒ(v*)‖`` at or below this counts as zero (global minimum).  Default ``1e-7`` times the larger of
        ``‖∇ℒ(0)‖`` and ``‖∇²ℒ(v*)‖ · max(1, ‖v*‖, Π_i ‖w^{(i)}‖)``.
    eig_rtol : float
        Hessian eigenvalues with ``|λ| ≤ eig_rtol · max|λ|`` count as zero.
    rank_rtol : float
        Singular values of ``dπ`` below ``rank_rtol · σ_max`` count as zero.

    Returns
    -------
    CriticalPoint
    """
    arch = risk.arch
    ws = as_filters(arch, filters)
    w = flatten(ws)
    v = _final_filter(arch, ws)
    g_v = risk.function_space_gradient(v).reshape(-1)
    grad = risk.gradient(w)
    # natural size of ∇ℒ: at v = 0, and the curvature times the size of the final filters this point can produce
    # (never below a unit filter, so problems whose targets vanish still have a scale)
    fs_curv = float(np.linalg.norm(risk.function_space_hessian(v), 2))
    v_size = max(1.0, float(np.linalg.norm(v)), float(np.prod([np.linalg.norm(x) for x in ws])))
    fs_scale = max(float(np.linalg.norm(risk.function_space_gradient(np.zeros(arch.final_filter_shape)))),
                   fs_curv * v_size)
    fs_tol = function_space_tol if function_space_tol is not None else 1e-7 * max(fs_scale, 1e-300)
    fs_norm = float(np.linalg.norm(g_v))
    is_global = fs_norm <= fs_tol

    # second order on the complement of the rescaling directions
    hess = risk.hessian(w)
    sym = symmetry_basis(arch, w)
    comp = complement_basis(sym, w.size)
    eig, eigvecs = np.linalg.eigh(comp.T @ hess @ comp)
    full_eig = np.abs(np.linalg.eigvalsh(hess))
    tol = eig_rtol * max(float(full_eig.max()) if full_eig.size else 0.0, 1e-300)
    not_a_minimum = None
    if is_global:
        kind = "global_minimum"
    elif eig.size and eig[0] < -tol:
        kind = "strict_saddle"
    elif eig.size and np.any(np.abs(eig) <= tol):
        kind = "degenerate"
        null = comp @ eigvecs[:, np.abs(eig) <= tol]
        not_a_minimum = _descent_probe(risk, w, null, loss_scale=fs_curv * v_size**2)
    else:
        kind = "local_minimum"

    # function-space side
    J = final_filter_jacobian(arch, ws)
    sv = np.linalg.svd(J, compute_uv=False)
    dpi_rank = int(np.sum(sv > rank_rtol * max(float(sv.max()) if sv.size else 0.0, 1e-300)))
    dim_m = arch.function_space_dim
    origin = "global" if is_global else ("pure" if dpi_rank >= dim_m else "rank_deficient")

    layer_roots: list[np.ndarray] = []
    v_roots = np.zeros(0, complex)
    shared: list = []
    repeated: list = []
    if arch.ndim == 1:
        layer_roots, v_roots, shared, repeated = _root_structure(arch, ws, v)
    degeneracies = _name_degeneracies(arch, ws, shared, repeated) if origin == "rank_deficient" else []

    spurious: bool | None
    witness = None
    if origin != "rank_deficient":
        spurious, reason = False, f"origin is {origin}: v* is critical for ℒ on M"
    elif arch.ndim != 1:
        spurious, reason = None, "the fibre of π is enumerated for 1D architectures only"
    else:
        fibre = _fibre_points(arch, v)
        if isinstance(fibre, str):
            spurious, reason = None, fibre
        else:
            spurious, reason = False, f"dπ(w')ᵀ∇ℒ(v*) = 0 at all {len(fibre)} point(s) of the fibre"
            for point in fibre:
                Jp = final_filter_jacobian(arch, point)
                gp = Jp.T @ g_v
                if np.linalg.norm(gp) > 1e-6 * np.linalg.norm(Jp, 2) * fs_norm:
                    spurious, witness = True, point
                    reason = (
                        f"another point of the fibre has ‖∇L‖ = {np.linalg.norm(gp):.3g} ≠ 0, so v* is not "
                        "critical for ℒ on M"
                    )
                    break

    return CriticalPoint(
        kind=kind,
        origin=origin,
        spurious=spurious,
        spurious_reason=reason,
        hessian_eigenvalues=eig,
        symmetry_dimension=int(sym.shape[1]),
        dpi_rank=dpi_rank,
        function_space_dim=dim_m,
        gradient_norm=float(np.linalg.norm(grad)),
        function_space_gradient_norm=fs_norm,
        degeneracies=degeneracies,
        layer_roots=layer_roots,
        final_filter_roots=v_roots,
        shared_roots=shared,
        repeated_roots=repeated,
        not_a_minimum=not_a_minimum,
        spurious_witness=witness,
    )


def _descent_probe(risk: EmpiricalRisk, w: np.ndarray, null: np.ndarray, loss_scale: float) -> bool | None:
    """Look for a decrease of ``L`` along ``null`` (columns: null directions of the Hessian on the symmetry
    complement), the mark of a higher-order saddle.

    A decrease counts only if it exceeds ``1e-12 · max(|L(w)|, ℒ(0), loss_scale)``, well above rounding.
    """
    if null.shape[1] == 0:
        return None
    base = risk.value(w)
    floor = 1e-12 * max(abs(base), abs(risk.function_space_value(np.zeros(risk.arch.final_filter_shape))), loss_scale)
    scale = max(1.0, float(np.linalg.norm(w)))
    rng = np.random.default_rng(0)
    dirs = [null[:, j] for j in range(null.shape[1])]
    dirs += [null @ rng.standard_normal(null.shape[1]) for _ in range(8)]
    for d in dirs:
        d = d / np.linalg.norm(d)
        for eps in (1e-2, 1e-3):
            for sgn in (1.0, -1.0):
                if risk.value(w + sgn * eps * scale * d) < base - floor:
                    return True
    return None
