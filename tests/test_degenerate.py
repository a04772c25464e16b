"""Degenerate limits: the ℓ4 loss with noiseless planted targets.

At zero residual ``ℓ''(0) = 0`` for ``ℓ(r) = r⁴/4``, so the Hessian of ``L`` vanishes at the limit and the flow
closes in slowly (``‖∇L‖ ∝ dist³``): a small gradient bounds the distance to the limit only by its cube root.
lcnflow must say so — ``degenerate_hessian``, the word "degenerate" in the message and the summary — keep the run
certified, and not call the limit of a verification run "different".  The independent check: the Hessian by finite
differences of the risk written here in NumPy/SciPy (``numpy.convolve``/``scipy.signal``, no lcnflow code), and its
spectrum by ``numpy.linalg.eigvalsh``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

import lcnflow
from lcnflow import Architecture, Dataset, EmpiricalRisk


def _forward(ws, X, ndim):
    """The network's outputs: π(w) by full convolution of the layers, then the valid cross-correlation."""
    if ndim == 1:
        v = np.convolve(ws[0], ws[1])
        return np.array([np.correlate(x, v, mode="valid") for x in X]), v
    v = scipy.signal.convolve2d(ws[0], ws[1])
    return np.array([scipy.signal.correlate2d(x, v, mode="valid") for x in X]), v


def _l4_risk(flat, shapes, X, Y, ndim):
    sizes = [int(np.prod(s)) for s in shapes]
    ws = [p.reshape(s) for p, s in zip(np.split(flat, np.cumsum(sizes)[:-1]), shapes, strict=True)]
    out, _ = _forward(ws, X, ndim)
    return float(np.sum((out - Y) ** 4) / 4 / len(X))


def _fd_hessian(f, w, h):
    """Central second differences of values, step ``h`` (error O(h²) plus rounding O(ε f / h²))."""
    n = w.size
    H = np.empty((n, n))
    E = np.eye(n) * h
    for i in range(n):
        for j in range(i, n):
            H[i, j] = H[j, i] = (f(w + E[i] + E[j]) - f(w + E[i] - E[j]) - f(w - E[i] + E[j])
                                 + f(w - E[i] - E[j])) / (4 * h * h)
    return H


def _off_symmetry(ws, H):
    """``H`` on the complement of the rescaling direction ``(w1, −w2)`` (two layers)."""
    d = np.concatenate([ws[0].ravel(), -ws[1].ravel()])
    d /= np.linalg.norm(d)
    Q = np.linalg.qr(np.column_stack([d, np.eye(d.size)]))[0][:, 1:]
    return np.linalg.eigvalsh(Q.T @ H @ Q)


CASES = [(8, [2, 2], 1), ((5, 5), [(2, 2), (2, 2)], 2)]


def _problem(d0, ks, ndim, noise):
    rng = np.random.default_rng(3)
    shape = (d0,) if ndim == 1 else d0
    X = rng.standard_normal((30, *shape))
    planted = [rng.standard_normal(k) for k in ks]
    Y, _ = _forward(planted, X, ndim)
    Y = Y + noise * np.std(Y) * rng.standard_normal(Y.shape)
    risk = EmpiricalRisk(Architecture(d0, ks), lcnflow.get_loss("lp", p=4), Dataset(X, Y))
    init = [0.5 * rng.standard_normal(k) for k in ks]
    return risk, X, Y, init


@pytest.mark.parametrize(("d0", "ks", "ndim"), CASES)
def test_l4_with_noiseless_targets_is_a_certified_degenerate_limit(d0, ks, ndim):
    risk, X, Y, init = _problem(d0, ks, ndim, 0.0)
    res = lcnflow.gradient_flow(risk, init, verify=True)
    cp = res.critical_point
    assert res.certified and res.kind == "global_minimum"
    assert cp.degenerate_hessian and res.scalars()["degenerate_hessian"] is True
    assert "degenerate" in res.message and "not the distance to the limit" in res.message
    assert "degenerate" in cp.summary() and np.isnan(cp.newton_distance)
    assert res.limit_verified is True  # slow convergence is not a different limit

    # independent check: the Hessian at the run's limit, off the rescaling direction, is tiny against the
    # Hessian at the start (it vanishes at the exact limit, where every residual is zero)
    shapes = [np.shape(w) for w in res.limit]
    w_star = np.concatenate([np.ravel(w) for w in res.limit])
    w_0 = np.concatenate([np.ravel(w) for w in init])

    def f(w):
        return _l4_risk(w, shapes, X, Y, ndim)

    h = 1e-4 * np.linalg.norm(w_star)
    eig_star = _off_symmetry(res.limit, _fd_hessian(f, w_star, h))
    eig_0 = np.linalg.eigvalsh(_fd_hessian(f, w_0, h))
    assert np.max(np.abs(eig_star)) < 1e-3 * np.max(np.abs(eig_0))


@pytest.mark.parametrize(("d0", "ks", "ndim"), CASES)
def test_l4_with_noisy_targets_is_not_degenerate(d0, ks, ndim):
    """The control: with noise the residuals do not vanish and the Hessian off the rescaling direction is positive
    definite (finite differences); lcnflow does not flag it and estimates how far the limit is."""
    risk, X, Y, init = _problem(d0, ks, ndim, 0.1)
    res = lcnflow.gradient_flow(risk, init)
    cp = res.critical_point
    assert res.certified and not cp.degenerate_hessian and "degenerate" not in res.message
    assert 0 <= cp.newton_distance < 1e-6
    shapes = [np.shape(w) for w in res.limit]
    w_star = np.concatenate([np.ravel(w) for w in res.limit])
    eig = _off_symmetry(res.limit, _fd_hessian(lambda w: _l4_risk(w, shapes, X, Y, ndim), w_star,
                                               1e-4 * np.linalg.norm(w_star)))
    assert eig[0] > 1e-4 * eig[-1]
