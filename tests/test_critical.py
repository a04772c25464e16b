"""classify_critical_point and the classification attached to flow results, against independent oracles.

Oracles: the rank of a finite-difference Jacobian of π built from polynomial products (exact up to rounding, since
π is multilinear), roots planted with ``numpy.polynomial.polynomial.polyfromroots``, Hessians of the torch risk
(autograd or finite differences) restricted to the complement of the rescaling directions, closed-form scalar
dynamics, and the sign of ``L`` (a sum of squares is ≥ 0).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.polynomial import polynomial as P

import lcnflow
from conftest import loop_network_matrix, loop_patch_matrix
from flow_helpers import (
    complement,
    fd_hessian,
    fd_jacobian,
    make_problem,
    numerical_rank,
    pi_1d,
    planted_problem,
    rescaling_directions,
)
from lcnflow import Architecture, Dataset, EmpiricalRisk
from lcnflow.flow import polish
from optimum_helpers import brute_force, identity_risk


def _flat(ws) -> np.ndarray:
    return np.concatenate([np.ravel(w) for w in ws])


def _dpi_rank(prob, strides, w) -> int:
    return numerical_rank(fd_jacobian(lambda x: pi_1d(prob.sizes, strides, x), w, 1e-3))


def _dilated_roots(w, S) -> np.ndarray:
    """Roots of ``p_w(t^S)`` by numpy (coefficients with S − 1 zeros in between)."""
    c = np.zeros((len(w) - 1) * S + 1)
    c[::S] = w
    return np.roots(c[::-1])


def _matches(a, b, tol) -> bool:
    """Multisets of complex numbers equal up to ``tol`` (greedy matching; fine for well-separated roots)."""
    a, b = list(np.atleast_1d(a)), list(np.atleast_1d(b))
    if len(a) != len(b):
        return False
    for z in a:
        j = int(np.argmin([abs(z - u) for u in b]))
        if abs(z - b[j]) > tol:
            return False
        b.pop(j)
    return True


# ------------------------------------------------------------------------------------------ constructed points
@pytest.mark.parametrize(
    ("filter_sizes", "filters", "zero_layer"),
    [
        ([3, 3], [np.array([0.5, -0.3, 0.8]), np.zeros(3)], 2),
        ([3, 2, 3], [np.array([0.5, -0.3, 0.8]), np.zeros(2), np.array([0.2, 0.9, -0.4])], 2),
        ([2, 3, 2], [np.zeros(2), np.array([0.4, 0.1, -0.7]), np.array([1.2, 0.3])], 1),
    ],
)
def test_zero_filter_is_rank_deficient_and_named(filter_sizes, filters, zero_layer):
    strides = [1] * len(filter_sizes)
    prob = make_problem(filter_sizes, strides, 3, seed=3)
    cp = lcnflow.classify_critical_point(prob.risk, filters)
    w = _flat(filters)
    my_rank = _dpi_rank(prob, strides, w)
    dim_m = w.size - (len(filter_sizes) - 1)  # P − (N − 1)
    assert cp.function_space_dim == dim_m
    assert cp.dpi_rank == my_rank < dim_m
    assert cp.origin == "rank_deficient"
    named = [d for d in cp.degeneracies if "zero" in d]
    assert len(named) == 1 and f"layer {zero_layer}" in named[0]


def test_zero_filter_in_2d_is_rank_deficient_and_spurious_undecided():
    """2D: the final filter is read off the loop-built network matrix (row 0 is the first patch), its Jacobian by
    central differences (exact up to rounding: π is multilinear)."""
    ks, ss, out = [(2, 2), (2, 1)], [(1, 2), (1, 1)], (2, 2)
    prob = make_problem(ks, ss, out, seed=3)
    kv = prob.arch.final_filter_shape
    d0 = prob.arch.input_size

    def pi_2d(w):
        V = loop_network_matrix(prob.oracle.split(w), d0, ss)
        return V[0].reshape(d0)[: kv[0], : kv[1]]

    w = np.concatenate([np.array([0.4, -0.8, 0.3, 1.1]), np.zeros(2)])
    np.testing.assert_allclose(lcnflow.final_filter(prob.arch, w), pi_2d(w), rtol=0, atol=1e-14)
    cp = lcnflow.classify_critical_point(prob.risk, w)
    my_rank = numerical_rank(fd_jacobian(pi_2d, w, 1e-3))
    assert cp.dpi_rank == my_rank < cp.function_space_dim == w.size - 1
    assert cp.origin == "rank_deficient"
    assert any("layer 2" in d and "zero" in d for d in cp.degeneracies)
    assert cp.spurious is None and cp.spurious_reason  # the fibre is enumerated in 1D only
    assert cp.layer_roots == [] and cp.shared_roots == []


CONJ = [0.3 + 0.8j, 0.3 - 0.8j]


@pytest.mark.parametrize(
    ("filter_sizes", "strides", "roots", "shared"),
    [
        # two layers sharing the real root 0.6
        ([3, 3], [1, 1], [[0.6, -1.3], [0.6, 2.1]], [(1, 2, 0.6)]),
        # three layers, layers 1 and 3 share −0.45
        ([3, 2, 2], [1, 1, 1], [[-0.45, 1.7], [0.8], [-0.45]], [(1, 3, -0.45)]),
        # a shared conjugate pair between layers 1 and 2 (two shared roots, rank drops by two)
        ([4, 3, 2], [1, 1, 1], [[*CONJ, -0.7], CONJ, [1.9]], [(1, 2, CONJ[0]), (1, 2, CONJ[1])]),
    ],
)
def test_shared_roots_are_found_and_make_dpi_rank_deficient(filter_sizes, strides, roots, shared):
    prob = make_problem(filter_sizes, strides, 3, seed=4)
    scales = [0.8, -1.1, 1.3]
    filters = [s * np.real(P.polyfromroots(r)) for s, r in zip(scales, roots, strict=False)]
    cp = lcnflow.classify_critical_point(prob.risk, filters)
    for i, j, rho in shared:
        hits = [z for a, b, z in cp.shared_roots if (a, b) == (i, j) and abs(z - rho) <= 1e-8 * (1 + abs(rho))]
        assert hits, (rho, cp.shared_roots)
    my_rank = _dpi_rank(prob, strides, _flat(filters))
    # gcd of degree d between two layers adds d dimensions to the kernel of dπ (Sylvester)
    assert my_rank == cp.function_space_dim - len(shared)
    assert cp.dpi_rank == my_rank
    assert cp.origin == "rank_deficient"
    assert any("share" in d for d in cp.degeneracies)
    # layer roots and the roots of p_v are the planted ones
    for got, planted in zip(cp.layer_roots, roots, strict=True):
        assert _matches(got, planted, 1e-8)
    v = pi_1d(prob.sizes, strides, _flat(filters))
    assert np.allclose(lcnflow.final_filter(prob.arch, filters), v, rtol=0, atol=1e-14)
    # p_v has each shared root twice: a double root is only determined to ~√ε·(scale) ≈ 1e-8
    assert _matches(cp.final_filter_roots, [z for r in roots for z in r], 1e-6)


def test_shared_root_with_a_dilated_layer_need_not_lose_rank():
    """Strides 2, 1: p_v(t) = p_1(t)·p_2(t²).  p_1 and p_2(t²) = t² − 0.49 share 0.7, but the only (δp_1, δp_2) with
    δp_1·p_2(t²) = −p_1·δp_2(t²) is the rescaling, so dπ keeps full rank: shared_roots lists the root, origin is
    decided by the rank (test's own finite-difference Jacobian)."""
    prob = make_problem([3, 2], [2, 1], 3, seed=4)
    filters = [P.polyfromroots([0.7, -1.5]), 0.9 * P.polyfromroots([0.49])]
    cp = lcnflow.classify_critical_point(prob.risk, filters)
    assert any((a, b) == (1, 2) and abs(z - 0.7) < 1e-8 for a, b, z in cp.shared_roots)
    assert _matches(cp.layer_roots[1], _dilated_roots(filters[1], 2), 1e-8)
    my_rank = _dpi_rank(prob, [2, 1], _flat(filters))
    assert my_rank == cp.function_space_dim == cp.dpi_rank
    assert cp.origin == "pure"


# ------------------------------------------------------------------------------------------ a spurious local minimum
def test_flow_limit_at_a_spurious_local_minimum():
    """Filling [3, 3, 3] with planted data: from this start the flow ends at a non-global local minimum where two
    layers share a root (rank-deficient, spurious).  Every claim is checked with the test's own tools."""
    prob, _, H = planted_problem([3, 3, 3], 5)
    res = lcnflow.gradient_flow(prob.risk, prob.w0)
    assert res.certified, res.message
    cp = res.critical_point
    w = _flat(res.limit)
    oracle = prob.oracle
    g0 = np.linalg.norm(oracle.gradient(prob.w0))
    assert np.linalg.norm(oracle.gradient(w)) <= 1e-9 * g0  # critical (certify_tol 1e-10·scale, plus rounding)
    # not global: the planted filter gives L = 0, here L > 0, and ∇ℒ(v) = G v − b ≠ 0
    assert oracle.value(w) > 1e-3
    m = prob.X.shape[0]
    v = pi_1d(prob.sizes, [1, 1, 1], w)
    fs_grad = H.T @ (H @ v - prob.Y.ravel()) / m
    assert np.linalg.norm(fs_grad) > 1e-3
    # second order: torch Hessian on the complement of the rescaling directions is positive definite
    Q = complement(rescaling_directions(prob.sizes, w), w.size)
    lam = np.linalg.eigvalsh(Q.T @ oracle.hessian(w) @ Q)
    assert lam[0] > 1e-3 * lam[-1]
    assert cp.kind == "local_minimum" and cp.is_minimum
    np.testing.assert_allclose(cp.hessian_eigenvalues, lam, rtol=1e-6, atol=1e-9 * lam[-1])
    # root structure: two layers of the limit share a root (numpy roots of the limit's layers)
    layer_roots = [np.roots(f[::-1]) for f in res.limit]
    pairs = [(i, j, z) for i in range(3) for j in range(i + 1, 3) for z in layer_roots[i]
             if np.min(np.abs(layer_roots[j] - z)) < 1e-6 * (1 + abs(z))]
    assert len(pairs) == 1
    i, j, rho = pairs[0]
    assert cp.origin == "rank_deficient"
    assert any((a, b) == (i + 1, j + 1) and abs(z - rho) < 1e-5 * (1 + abs(rho)) for a, b, z in cp.shared_roots)
    assert _dpi_rank(prob, [1, 1, 1], w) == cp.dpi_rank < cp.function_space_dim
    # spurious: redistribute the roots of p_v over the layers (the shared root twice in one layer); at that point
    # of the same fibre the torch gradient does not vanish, so v is not critical for ℒ on M
    others_i = [z for z in layer_roots[i] if abs(z - rho) > 1e-6]
    others_j = [z for z in layer_roots[j] if abs(z - rho) > 1e-6]
    new = [np.real(P.polyfromroots(r)) for r in (layer_roots[0], layer_roots[1], layer_roots[2])]
    new[i] = np.real(P.polyfromroots([*others_i, *others_j]))
    new[j] = np.real(P.polyfromroots([rho, rho]))
    lead = v[-1] / np.prod([f[-1] for f in new])
    new[0] = new[0] * lead
    w_alt = _flat(new)
    np.testing.assert_allclose(pi_1d(prob.sizes, [1, 1, 1], w_alt), v, rtol=0, atol=1e-9 * np.max(np.abs(v)))
    assert np.linalg.norm(oracle.gradient(w_alt)) > 1e-3 * np.linalg.norm(fs_grad)
    assert cp.spurious is True


# ------------------------------------------------------------------------------------------ polishing
def test_polish_returns_to_a_nearby_critical_point_and_respects_the_radius():
    """Newton polishing from a perturbed critical point (the spurious minimum above, non-degenerate on the
    complement of the rescaling orbit) reaches ‖∇L‖ ≈ rounding close by; with a radius smaller than the move it
    must refuse and return the starting point."""
    prob, _, _ = planted_problem([3, 3, 3], 5)
    res = lcnflow.gradient_flow(prob.risk, prob.w0)
    w_star = _flat(res.limit)
    rng = np.random.default_rng(11)
    start = w_star + 1e-4 * rng.standard_normal(w_star.size)
    g_start = np.linalg.norm(prob.oracle.gradient(start))
    assert g_start > 1e-5
    pol = polish(prob.risk, start, gtol=1e-12, radius=1e-2)
    assert pol.accepted
    assert np.linalg.norm(prob.oracle.gradient(pol.point)) <= 1e-11  # gtol plus torch-vs-lcnflow rounding
    assert pol.distance == pytest.approx(np.linalg.norm(pol.point - start), rel=1e-12)
    # near w* the critical points form its rescaling orbit (non-degenerate on the complement), all with the same
    # final filter; ‖∇L‖ ≤ 1e-12 pins v down to ~1e-12/(λ_min·σ_min(dπ)) ≈ 1e-11, rounding adds 1e-14
    v = pi_1d(prob.sizes, [1, 1, 1], pol.point)
    np.testing.assert_allclose(v, pi_1d(prob.sizes, [1, 1, 1], w_star), rtol=0, atol=1e-9)
    refused = polish(prob.risk, start, gtol=1e-12, radius=1e-7)
    assert not refused.accepted and "radius" in refused.message
    np.testing.assert_array_equal(refused.point, start)
    assert refused.gradient_norm == pytest.approx(g_start, rel=1e-9)


# ------------------------------------------------------------------------------------------ runs started at saddles
def test_run_started_at_zero_in_two_layers_is_a_strict_saddle():
    prob = make_problem([3, 3], [1, 1], 3, seed=2)
    zero = np.zeros(prob.w0.size)
    res = lcnflow.gradient_flow(prob.risk, zero)
    assert res.converged and res.t_final == 0.0
    np.testing.assert_array_equal(_flat(res.limit), zero)
    cp = res.critical_point
    assert cp.kind in ("strict_saddle", "degenerate") and not cp.is_minimum
    # own Hessian at 0: central differences of the torch gradient.  At 0, ∇L(w) = dπ(w)ᵀ∇ℒ(π(w)) is bilinear up
    # to O(‖w‖³), so the step-h error is O(h²) ≈ 1e-6 relative; the negative eigenvalue is O(1).
    Hm = fd_hessian(prob.oracle.gradient, zero, 1e-3)
    lam = np.linalg.eigvalsh(Hm)
    assert lam[0] < -1e-2 * np.max(np.abs(lam))
    assert cp.kind == "strict_saddle"
    # the rescaling orbit degenerates at 0, so the classification uses the whole space: same spectrum
    np.testing.assert_allclose(cp.hessian_eigenvalues, lam, rtol=0, atol=1e-5 * np.max(np.abs(lam)))
    assert cp.origin == "rank_deficient" and cp.dpi_rank == 0 == _dpi_rank(prob, [1, 1], zero)
    assert sum("zero filter" in d for d in cp.degeneracies) == 2


def test_run_started_at_zero_in_three_layers_is_degenerate_and_not_a_minimum():
    prob = make_problem([2, 3, 2], [1, 1, 1], 3, seed=2)
    zero = np.zeros(prob.w0.size)
    res = lcnflow.gradient_flow(prob.risk, zero)
    cp = res.critical_point
    assert res.converged and cp is not None
    # own analysis: the Hessian vanishes at 0 (π is cubic), and L(εd) − L(0) ≈ ε³⟨∇ℒ(0), π(d)⟩ is odd in ε, so L
    # decreases along d or −d: a higher-order saddle
    lam = np.linalg.eigvalsh(fd_hessian(prob.oracle.gradient, zero, 1e-3))
    assert np.max(np.abs(lam)) < 1e-5  # O(h) ≈ 1e-3 · ‖∇ℒ(0)‖-sized third derivatives · h
    d = prob.w0 / np.linalg.norm(prob.w0)
    L0 = prob.oracle.value(zero)
    assert min(prob.oracle.value(0.05 * d), prob.oracle.value(-0.05 * d)) < L0 - 1e-6
    assert cp.kind == "degenerate" and not cp.is_minimum
    assert cp.not_a_minimum is True


def test_run_started_with_two_zero_filters_is_a_strict_saddle():
    """w1 = w2 = 0, w3 generic: every cofactor contains a zero filter, so ∇L = 0; the (1, 2) Hessian block is
    Σ_u (∇ℒ(0))_{j+j'+u} w3_u ≠ 0 and off-diagonal, hence indefinite."""
    prob = make_problem([3, 2, 2], [1, 1, 1], 3, seed=6)
    w = prob.w0.copy()
    w[:5] = 0.0
    assert np.linalg.norm(prob.oracle.gradient(w)) == 0.0
    res = lcnflow.gradient_flow(prob.risk, w)
    cp = res.critical_point
    assert res.converged and res.t_final == 0.0
    Q = complement(rescaling_directions(prob.sizes, w), w.size)
    lam = np.linalg.eigvalsh(Q.T @ fd_hessian(prob.oracle.gradient, w, 1e-3) @ Q)
    assert lam[0] < -1e-2 * np.max(np.abs(lam))
    assert cp.kind == "strict_saddle" and not cp.is_minimum


def test_balanced_flow_with_negative_target_converges_to_the_saddle_at_zero():
    """L = ½(w1 w2 − y)², y = −1, w1 = w2 = a: u̇ = 2u(y − u) drives u = a² → 0 along the stable manifold of the
    saddle (0, 0), whose Hessian [[0, −y], [−y, 0]] has eigenvalues ±1."""
    y = -1.0
    risk = EmpiricalRisk(Architecture(1, [1, 1]), "square", Dataset(np.ones((1, 1)), np.full((1, 1), y)))
    times = np.array([0.0, 0.5, 1.0, 2.0])
    res = lcnflow.gradient_flow(risk, [np.array([0.6]), np.array([0.6])], save_at=times, rtol=1e-10, atol=1e-12)
    u0, e = 0.36, np.exp(2 * y * times)
    exact = y * u0 * e / (y + u0 * (e - 1))
    np.testing.assert_allclose(np.prod(res.saved_states, axis=1), exact, rtol=0, atol=1e-7)  # tight-tol budget
    assert res.converged and np.linalg.norm(_flat(res.limit)) < 1e-6
    cp = res.critical_point
    assert cp.kind == "strict_saddle" and not cp.is_minimum
    assert cp.hessian_eigenvalues[0] == pytest.approx(-1.0, abs=1e-5)


# ------------------------------------------------------------------------------------------ zero targets (bugs)
def test_zero_targets_single_layer_limit_is_a_global_minimum():
    """One layer: L = ℒ is a convex quadratic with G = HᵀH/m ≻ 0 and, for y = 0, unique minimizer 0.  The flow
    converges to 0 and every critical point is the global minimum, so the limit must be classified global.

    Regression test: an earlier default ``function_space_tol = 1e-7·‖∇ℒ(0)‖`` was 1e-7·1e-300 when the
    targets are 0 (∇ℒ(0) = 0), so ‖∇ℒ(v*)‖ ≈ 2e-15 counted as non-zero and the limit was called a *local* minimum of
    origin "pure"."""
    rng = np.random.default_rng(0)
    arch = Architecture(4, [2])
    X = rng.standard_normal((3, 4))
    risk = EmpiricalRisk(arch, "square", Dataset(X, np.zeros((3, 3))))
    H = loop_patch_matrix(X, 2, 1, 3)
    assert np.linalg.eigvalsh(H.T @ H)[0] > 1e-2  # strictly convex: the only critical point is v = 0
    res = lcnflow.gradient_flow(risk, np.array([0.7, -0.4]))
    assert res.certified and np.linalg.norm(res.final_filter) < 1e-10
    assert res.critical_point.kind == "global_minimum"
    assert res.critical_point.origin == "global"


def test_zero_targets_limit_is_not_reported_as_a_spurious_saddle():
    """Two layers, y = 0: L = (1/2m)‖H π(w)‖² ≥ 0 = min L.  The flow ends (certified) at a point with
    L ≈ 1e-49 and one vanishing filter — a global minimizer up to rounding.  No direction can decrease L by more
    than L itself, and v* = 0 minimizes ℒ, so 'higher-order saddle' and 'spurious' are both wrong.

    Regression test (the same earlier cause: the function-space tolerance collapses to ~1e-307, and the
    descent probe accepts decreases of 1e-12·L)."""
    rng = np.random.default_rng(0)
    arch = Architecture(5, [2, 2])
    X = rng.standard_normal((3, 5))
    risk = EmpiricalRisk(arch, "square", Dataset(X, np.zeros((3, 3))))
    res = lcnflow.gradient_flow(risk, [np.array([0.7, -0.4]), np.array([0.3, 0.5])])
    assert res.certified
    w = _flat(res.limit)
    H = loop_patch_matrix(X, 3, 1, 3)
    value = 0.5 * np.sum((H @ pi_1d([2, 2], [1, 1], w)) ** 2) / 3
    assert value < 1e-30  # the limit attains the global minimum value 0 up to rounding
    cp = res.critical_point
    assert cp.not_a_minimum is not True
    assert cp.spurious is not True
    assert cp.kind == "global_minimum"


# ------------------------------------------------------------------------------------------ global / local on M
def _verdict(cp):
    return (cp.kind, cp.origin, cp.spurious, cp.dpi_rank, cp.index, cp.global_on_m, cp.unconstrained_optimum_reached,
            cp.not_a_minimum)


def test_non_filling_k22_limits_are_global_or_local_on_m_by_their_loss():
    """k = (2, 2), G = I, y = (1.5, 0, 1): closed form (test_optimum) ℒ*_M = ½·1², attained at v = (1.5, 0, 0);
    v = (0, 0, 1) costs ½·1.5² and is a local minimum on M (moving v0 towards 1.5 needs v1² ≥ 4 v0, which costs
    4v0 − 3v0 > 0).  Flows from several seeds reach both: the first is a global minimum of L although ∇ℒ ≠ 0 there
    (the unconstrained optimum y is not in M), the second a local one, 0.625 above."""
    risk = identity_risk([2, 2], [1.5, 0.0, 1.0])
    seen = set()
    for seed in range(6):
        rng = np.random.default_rng(seed)
        res = lcnflow.gradient_flow(risk, [0.5 * rng.standard_normal(2) for _ in range(2)])
        assert res.certified
        cp = res.critical_point
        assert not cp.unconstrained_optimum_reached and cp.origin == "rank_deficient"
        assert cp.function_space_gradient_norm > 0.1  # ∇ℒ(v*) = v* − y ≠ 0 at both
        if abs(res.loss - 0.5) <= 1e-10:
            assert cp.kind == "global_minimum" and cp.global_on_m is True and cp.spurious is False
            assert abs(cp.gap_to_best) <= 1e-10
            np.testing.assert_allclose(res.final_filter, [1.5, 0, 0], atol=1e-6)
        else:
            assert res.loss == pytest.approx(1.125, rel=1e-10)
            assert cp.kind == "local_minimum" and cp.global_on_m is False
            assert cp.gap_to_best == pytest.approx(0.625, rel=1e-9)
            assert "L − ℒ*_M = 0.625" in cp.summary()
        seen.add(cp.kind)
    assert seen == {"global_minimum", "local_minimum"}


def test_both_outcomes_on_a_non_filling_architecture_are_labelled_by_the_brute_force_optimum():
    """k = (2, 2, 2, 2), random data, targets from a filter with complex roots: most seeds reach ℒ*_M, some a worse
    local minimum.  Every certified run is labelled global on M iff its loss equals the brute-force ℒ*_M (own
    oracle, 1e-8), and runs with the same final filter get the same spurious verdict."""
    base = make_problem([2, 2, 2, 2], [1] * 4, 3, m=5, seed=2)
    H = loop_patch_matrix(base.X, 5, 1, 3)
    Y = (H @ np.convolve([1.0, -0.4, 1.2], [1.3, 0.5, 1.0])).reshape(5, 3)
    Y = Y + 0.1 * np.random.default_rng(2).standard_normal((5, 3))
    prob = make_problem([2, 2, 2, 2], [1] * 4, 3, m=5, seed=2, targets=Y)
    oracle = brute_force(H, Y.ravel(), 5, 4, 4)
    kinds, verdicts = set(), {}
    for seed in range(10):
        res = lcnflow.gradient_flow(prob.risk, np.random.default_rng(seed).standard_normal(8))
        assert res.certified
        cp = res.critical_point
        is_best = bool(abs(res.loss - oracle) <= 1e-8 * max(1.0, oracle))
        assert cp.global_on_m is is_best and (cp.kind == "global_minimum") is is_best
        assert res.loss >= oracle - 1e-8 * max(1.0, oracle)
        kinds.add(cp.kind)
        key = tuple(np.round(res.final_filter, 5))
        verdicts.setdefault(key, set()).add(cp.spurious)
    assert kinds == {"global_minimum", "local_minimum"}
    assert all(len(v) == 1 for v in verdicts.values())


def test_same_limit_gets_the_same_spurious_verdict_from_every_seed_and_layer_order():
    """Filling [3, 3, 3], planted data: most seeds end at one spurious local minimum (shown spurious with torch in
    test_flow_limit_at_a_spurious_local_minimum).  Every seed that reaches it, and every permutation of its layers
    (the same final filter: π is a commutative product at strides 1), gets spurious = True."""
    prob, _, _ = planted_problem([3, 3, 3], 5)
    groups: dict = {}
    for seed in range(8):
        res = lcnflow.gradient_flow(prob.risk, 0.7 * np.random.default_rng(seed).standard_normal(9))
        assert res.certified
        groups.setdefault(tuple(np.round(res.final_filter, 6)), []).append(res)
    spurious_groups = 0
    for runs in groups.values():
        verdicts = {r.critical_point.spurious for r in runs}
        assert len(verdicts) == 1
        if verdicts == {True}:
            spurious_groups += 1
            for perm in itertools.permutations(range(3)):
                cp = lcnflow.classify_critical_point(prob.risk, [runs[0].limit[i] for i in perm])
                assert cp.spurious is True and cp.kind == "local_minimum"
    assert spurious_groups >= 1


def test_fibre_of_size_two_layers_is_never_evidence_of_spuriousness():
    """All layers of size 2 at stride 1: every fibre point is a permutation of the layers of another, so no
    rank-deficient point can be spurious; constructed points with a shared root (not critical) say so."""
    prob = make_problem([2, 2, 2, 2], [1] * 4, 3, m=5, seed=1)
    for roots in ([0.3, 0.3, -1.2, 2.0], [0.3, 0.3, 0.3, -0.7], [1.1, 1.1, -0.5, -0.5]):
        filters = [np.array([-z, 1.0]) * s for z, s in zip(roots, [0.7, -1.3, 1.1, 0.9], strict=True)]
        cp = lcnflow.classify_critical_point(prob.risk, filters)
        assert cp.origin == "rank_deficient" and cp.spurious is False


# ------------------------------------------------------------------------------------------ scale-free verdicts
def _scaled(filters, factors):
    return [w * f for w, f in zip(filters, factors, strict=True)]


def _limits_to_rescale():
    """(risk builder (x-scale, y-scale) → risk, limit, number of layers) for limits of several kinds."""
    out = []
    prob, _, _ = planted_problem([3, 3, 3], 5)  # spurious local minimum
    res = lcnflow.gradient_flow(prob.risk, prob.w0)
    out.append((prob.X, prob.Y, [3, 3, 3], res.limit))
    k22 = identity_risk([2, 2], [1.5, 0.0, 1.0])  # global and local on M
    X, Y = k22.data.inputs, k22.data.targets
    for seed in (0, 2):
        rng = np.random.default_rng(seed)
        r = lcnflow.gradient_flow(k22, [0.5 * rng.standard_normal(2) for _ in range(2)])
        out.append((X, Y, [2, 2], r.limit))
    zero = make_problem([2, 3, 2], [1, 1, 1], 3, seed=2)  # degenerate, a higher-order saddle
    out.append((zero.X, zero.Y, [2, 3, 2], [np.zeros(2), np.zeros(3), np.zeros(2)]))
    sad = make_problem([3, 3], [1, 1], 3, seed=2)  # strict saddle at 0
    out.append((sad.X, sad.Y, [3, 3], [np.zeros(3), np.zeros(3)]))
    return out


@pytest.mark.parametrize("c", [1e-6, 1e6])
def test_verdicts_do_not_change_when_data_or_parametrization_are_rescaled(c):
    """X → cX maps a critical point w to w·c^{-1/N} per layer (ℒ_c(v) = ℒ(cv)); Y → cY maps it to w·c^{1/N} (square
    loss: ℒ_c(cv) = c²ℒ(v)); w^(i) → c_i w^(i) with Π c_i = 1 is the rescaling symmetry.  None may change a verdict."""
    for X, Y, ks, limit in _limits_to_rescale():
        N = len(ks)
        arch = Architecture(X.shape[1], ks)
        ref = _verdict(lcnflow.classify_critical_point(EmpiricalRisk(arch, "square", Dataset(X, Y)), limit))
        rx = EmpiricalRisk(arch, "square", Dataset(c * X, Y))
        ry = EmpiricalRisk(arch, "square", Dataset(X, c * Y))
        sym = [c] + [1.0] * (N - 2) + [1.0 / c]
        assert _verdict(lcnflow.classify_critical_point(rx, _scaled(limit, [c ** (-1 / N)] * N))) == ref
        assert _verdict(lcnflow.classify_critical_point(ry, _scaled(limit, [c ** (1 / N)] * N))) == ref
        risk = EmpiricalRisk(arch, "square", Dataset(X, Y))
        assert _verdict(lcnflow.classify_critical_point(risk, _scaled(limit, sym))) == ref


def test_quick_classification_without_the_best_on_m():
    """compare_with_best=False (for checks on the way) leaves global-on-M undecided unless ℒ* was reached."""
    risk = identity_risk([2, 2], [1.5, 0.0, 1.0])
    point = [np.array([1.5, 0.0]), np.array([1.0, 0.0])]  # v = (1.5, 0, 0): the best on M (closed form)
    quick = lcnflow.classify_critical_point(risk, point, compare_with_best=False)
    full = lcnflow.classify_critical_point(risk, point)
    assert quick.global_on_m is None and quick.best is None and quick.kind == "local_minimum"
    assert full.global_on_m is True and full.kind == "global_minimum"
    assert (quick.origin, quick.dpi_rank, quick.index) == (full.origin, full.dpi_rank, full.index)


def test_a_bound_on_the_best_of_m_is_never_worse_than_the_limit_classified():
    """A multistart bound on ℒ*_M above the value of a certified point of M is lowered to it (the point is then
    undecided on M, never "local on M" against a worse bound); an exact ℒ*_M is left as it is."""
    import dataclasses

    from lcnflow.analysis.critical import settle_on_m
    from lcnflow.analysis.optimum import best_on_function_space

    arch = lcnflow.Architecture(21, [3, 2], strides=[2, 1])
    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 21))
    Y = rng.standard_normal((40, arch.layer_sizes[-1]))
    risk = lcnflow.EmpiricalRisk(arch, "square", lcnflow.Dataset(X, Y))
    res = lcnflow.gradient_flow(risk, lcnflow.random_init(arch, 0.5, seed=1))
    assert res.certified
    cp = lcnflow.classify_critical_point(risk, res.limit, compare_with_best=False)
    found = best_on_function_space(risk)
    worse = dataclasses.replace(found, value=cp.value + 0.5 * abs(cp.value) + 1e-3, exact=False)
    settled = settle_on_m(risk, cp, worse, point=res.limit)
    assert settled.best.value == pytest.approx(cp.value, rel=1e-12)
    assert settled.best.value <= cp.value + settled.value_tolerance
    assert settled.global_on_m is None and "lowered" in settled.best.statement
    np.testing.assert_allclose(settled.best.filter.ravel(), res.final_filter.ravel(), rtol=1e-12, atol=1e-15)
    # without the point the bound cannot be lowered: the gap is negative and nothing is claimed
    plain = settle_on_m(risk, cp, worse)
    assert plain.gap_to_best < 0 and plain.global_on_m is None
    # an exact value stays as it is
    exact = dataclasses.replace(found, exact=True)
    assert settle_on_m(risk, cp, exact, point=res.limit).best.value == exact.value
