"""Oracles for ℒ*_M shared by test_optimum and test_critical: identity-like data, brute force over real-rooted
polynomials in a parametrization of its own (r real roots times a free cofactor), ``np.roots`` membership in M.
Nothing here calls lcnflow's optimum or classification code."""

from __future__ import annotations

import itertools

import numpy as np
import scipy.optimize

from lcnflow import Architecture, Dataset, EmpiricalRisk


def identity_risk(filter_sizes, y, strides=None, loss="square") -> EmpiricalRisk:
    """Data with ``G = HᵀH/m = I`` and ``b = y``: ``k_v`` samples ``√k_v·e_j``, one output each."""
    strides = strides or [1] * len(filter_sizes)
    kv = 1 + sum((k - 1) * int(np.prod(strides[:i])) for i, k in enumerate(filter_sizes))
    arch = Architecture(kv, filter_sizes, strides)
    assert arch.output_size == 1
    X = np.sqrt(kv) * np.eye(kv)
    Y = np.sqrt(kv) * np.asarray(y, float).reshape(kv, 1)
    return EmpiricalRisk(arch, loss, Dataset(X, Y))


def numpy_real_roots(v, tol=1e-6) -> int:
    """Real roots of ``Σ v_j x^j`` as a form of degree ``len(v) − 1`` by ``np.roots`` (roots at infinity count)."""
    v = np.asarray(v, float)
    nz = np.nonzero(np.abs(v) > 1e-12 * np.max(np.abs(v)))[0]
    deg = int(nz[-1])
    roots = np.roots(v[: deg + 1][::-1]) if deg > 0 else np.zeros(0)
    return (v.size - 1 - deg) + int(np.sum(np.abs(roots.imag) <= tol * (1 + np.abs(roots))))


def brute_force(H, y, m, D, r, loss=None, n=None, keep=3):
    """min over v = Π_{i≤r}(cos θ_i x − sin θ_i)·q (q free, degree D − r) of the risk on H, y: a grid over sorted
    angle tuples, then BFGS and Nelder–Mead from the best ``keep``.  Square loss: q by lstsq; other losses: q by
    BFGS.  The risk is (1/m)·Σ over all rows of H (m samples)."""

    def transform(thetas):
        u = np.ones(1)
        for t in thetas:
            u = np.convolve(u, [-np.sin(t), np.cos(t)])
        p = D - r + 1
        T = np.zeros((D + 1, p))
        for j in range(p):
            T[j : j + u.size, j] = u
        return T

    def value(thetas):
        A = H @ transform(thetas)
        if loss is None:
            q = np.linalg.lstsq(A, y, rcond=None)[0]
            return 0.5 * np.sum((A @ q - y) ** 2) / m
        q0 = np.linalg.lstsq(A, y, rcond=None)[0]
        res = scipy.optimize.minimize(lambda q: np.sum(loss(A @ q - y)) / m, q0, method="BFGS",
                                      options={"gtol": 1e-13})
        return res.fun

    n = n or {1: 64, 2: 48, 3: 24, 4: 16, 5: 10, 6: 9}[r]
    grid = -np.pi / 2 + np.pi * np.arange(n) / n
    scored = sorted((value(c), c) for c in itertools.combinations_with_replacement(grid, r))
    best = np.inf
    for _, combo in scored[:keep]:
        res = scipy.optimize.minimize(value, np.array(combo), method="BFGS", options={"gtol": 1e-10})
        res = scipy.optimize.minimize(value, res.x, method="Nelder-Mead",
                                      options={"xatol": 1e-10, "fatol": 1e-16, "maxiter": 400 * r})
        best = min(best, res.fun)
    return best


def complex_rooted(D, rng):
    """A filter whose polynomial has as few real roots as possible (one if D is odd)."""
    p = np.ones(1)
    for _ in range(D // 2):
        re, im = rng.normal(0, 1.0), rng.uniform(0.3, 1.5)
        p = np.convolve(p, [re**2 + im**2, -2 * re, 1.0])
    if D % 2:
        p = np.convolve(p, [rng.normal(), 1.0])
    return p * rng.uniform(0.5, 2.0)
