"""An independent reference for where gradient flow ends: 1D stride-1 LCNs, written from the definitions only.

Nothing here goes through lcnflow:

* the final filter is the chain of full convolutions ``v = w^(1) ∗ ⋯ ∗ w^(N)`` (``numpy.convolve``);
* the network output is the valid cross-correlation ``(H v)_a = Σ_j v_j x_{a+j}`` on sliding windows of the data;
* the loss derivative is the closed form (square ``r``, pseudo-Huber ``r/√(1 + (r/δ)²)``, log cosh ``tanh r``);
* ``∇_{w^(i)} L = correlate(∇ℒ(v), c_i, "valid")`` with the cofactor ``c_i`` (convolution of the other layers);
* the trajectory is ``scipy.integrate.solve_ivp`` (LSODA, rtol 1e-10) run far past the time lcnflow stopped, and
  on until ``‖∇L‖ < 1e-13`` — so a run that stopped on a plateau or at a saddle it would have left disagrees.

Used by ``test_stopping.py`` and by ``scripts/verify_limits.py`` (the full grid of the closing note).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.integrate
from numpy.lib.stride_tricks import sliding_window_view


def loss_derivative(name: str, r: np.ndarray, delta: float = 1.0) -> np.ndarray:
    if name == "square":
        return r
    if name == "pseudo_huber":
        return r / np.sqrt(1.0 + (r / delta) ** 2)
    if name == "log_cosh":
        return np.tanh(r)
    raise ValueError(name)


def loss_value(name: str, r: np.ndarray, delta: float = 1.0) -> np.ndarray:
    if name == "square":
        return 0.5 * r * r
    if name == "pseudo_huber":
        return delta**2 * (np.sqrt(1.0 + (r / delta) ** 2) - 1.0)
    if name == "log_cosh":
        return np.logaddexp(r, -r) - np.log(2.0)
    raise ValueError(name)


class ConvolveRisk:
    """``L(w) = (1/m) Σ ℓ(H π(w) − y)`` for a stride-1 1D LCN with filter sizes ``sizes``."""

    def __init__(self, sizes, X, Y, loss: str = "square", delta: float = 1.0):
        self.sizes = [int(k) for k in sizes]
        self.kv = 1 + sum(k - 1 for k in self.sizes)
        self.windows = sliding_window_view(np.asarray(X, float), self.kv, axis=1)  # (m, d_N, k_v)
        self.Y = np.asarray(Y, float)
        assert self.windows.shape[:2] == self.Y.shape
        self.m = self.Y.shape[0]
        self.loss, self.delta = loss, delta
        self.bounds = np.cumsum([0, *self.sizes])

    def layers(self, w):
        return [np.asarray(w)[a:b] for a, b in zip(self.bounds[:-1], self.bounds[1:], strict=True)]

    def pi(self, w) -> np.ndarray:
        v = np.ones(1)
        for layer in self.layers(w):
            v = np.convolve(v, layer)
        return v

    def value(self, w) -> float:
        r = self.windows @ self.pi(w) - self.Y
        return float(np.sum(loss_value(self.loss, r, self.delta))) / self.m

    def gradient(self, w) -> np.ndarray:
        layers = self.layers(w)
        r = self.windows @ self.pi(w) - self.Y
        g = np.einsum("mak,ma->k", self.windows, loss_derivative(self.loss, r, self.delta)) / self.m
        out = []
        for i in range(len(layers)):
            c = np.ones(1)
            for j, layer in enumerate(layers):
                if j != i:
                    c = np.convolve(c, layer)
            out.append(np.correlate(g, c, "valid"))
        return np.concatenate(out)


def reference_limit(risk: ConvolveRisk, w0, t_past: float, *, gtol: float = 1e-13, max_seconds: float = 120.0):
    """Integrate ``ẇ = −∇L(w)`` with LSODA (rtol 1e-10, atol 1e-12 of the initial coefficient size) past ``t_past``
    and on until ``‖∇L‖ < gtol`` (or ``max_seconds`` of wall-clock time).  Returns ``(w, t, ‖∇L‖)``."""
    w = np.array(w0, dtype=float)
    atol = 1e-12 * max(float(np.linalg.norm(w)) / np.sqrt(w.size), 1e-300)
    solver = scipy.integrate.LSODA(lambda _t, x: -risk.gradient(x), 0.0, w, 1e300, rtol=1e-10, atol=atol)
    deadline = time.monotonic() + max_seconds
    gn = float(np.linalg.norm(risk.gradient(w)))
    while time.monotonic() < deadline:
        msg = solver.step()
        assert solver.status != "failed", msg
        if solver.t >= t_past:
            gn = float(np.linalg.norm(risk.gradient(solver.y)))
            if gn < gtol:
                break
    return solver.y.copy(), float(solver.t), gn


def planted_data(sizes, seed: int, *, m: int = 40, out: int = 12, noise: float = 0.1):
    """Gaussian inputs; targets from a Gaussian teacher final filter (unit size) plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    kv = 1 + sum(k - 1 for k in sizes)
    X = rng.standard_normal((m, out + kv - 1))
    teacher = rng.standard_normal(kv) / np.sqrt(kv)
    Y = sliding_window_view(X, kv, axis=1) @ teacher + noise * rng.standard_normal((m, out))
    return X, Y


def random_init(sizes, scale: float, seed: int) -> np.ndarray:
    """I.i.d. ``N(0, scale²)`` coefficients (distinct layers with probability one)."""
    return scale * np.random.default_rng(seed).standard_normal(sum(sizes))
