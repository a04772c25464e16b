"""Independent oracles for the gradient-flow tests (test_flow, test_descent, test_critical, test_theorem).

Nothing here goes through lcnflow's risk, conv or flow code:

* the risk ``L(w) = (1/m) Σ_j Σ_a ℓ((V x_j − y_j)_a)`` is evaluated by applying the layers one after the other with
  ``torch.nn.functional.conv1d``/``conv2d`` (the definition of the network, not lcnflow's final-filter shortcut) and
  the loss as a closed-form torch expression (``conftest.torch_loss``); gradients and Hessians by torch autograd;
* final filters of 1D networks by ``numpy.polynomial.polynomial.polymul`` (``conftest.polymul_final_filter``);
* reference trajectories by ``scipy.integrate.solve_ivp(method="Radau", rtol=atol=1e-12)`` on that gradient;
* conserved quantities ``δ_i = ‖w^(i+1)‖² − ‖w^(i)‖²`` from their definition.

Tests import these with ``from flow_helpers import ...`` (like ``conftest``).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.integrate
import torch
import torch.nn.functional as F

from conftest import (
    as_tuple,
    exact_input_size,
    loop_patch_matrix,
    polymul_final_filter,
    random_filters,
    torch_loss,
)
from lcnflow import Architecture, Dataset, EmpiricalRisk, get_loss

# The tests call torch on tiny tensors between NumPy/SciPy calls; with several intra-op threads torch's spinning
# workers and OpenBLAS's threads fight for the cores and slow everything down ~10× (measured on 2 cores).
torch.set_num_threads(1)

#: Radau tolerances of the reference solutions: their own error (~1e-11 relative on the O(1) problems below) is
#: two orders of magnitude under the tightest tolerance any test asserts.
REF_RTOL = 1e-12
REF_ATOL = 1e-12


class TorchRisk:
    """``L(w)`` on flat parameters, computed layer by layer with torch convolutions (see the module docstring)."""

    def __init__(self, filter_sizes, strides, X, Y, loss_name: str, loss_params: dict | None = None):
        self.ks = [as_tuple(k) for k in filter_sizes]
        self.ss = [as_tuple(s) for s in strides]
        self.ndim = len(self.ks[0])
        self.sizes = [math.prod(k) for k in self.ks]
        self.X = torch.from_numpy(np.asarray(X, dtype=np.float64)).unsqueeze(1)
        self.Y = torch.from_numpy(np.asarray(Y, dtype=np.float64))
        self.ell = torch_loss(loss_name, loss_params or {})
        self.m = X.shape[0]

    def _f(self, wt: torch.Tensor) -> torch.Tensor:
        out = self.X
        conv = F.conv1d if self.ndim == 1 else F.conv2d
        for piece, k, s in zip(torch.split(wt, self.sizes), self.ks, self.ss, strict=True):
            out = conv(out, piece.reshape(1, 1, *k), stride=s)
        return self.ell(out.squeeze(1) - self.Y).sum() / self.m

    def value(self, w) -> float:
        return float(self._f(torch.from_numpy(np.asarray(w, dtype=np.float64))))

    def gradient(self, w) -> np.ndarray:
        wt = torch.from_numpy(np.array(w, dtype=np.float64)).requires_grad_(True)
        (g,) = torch.autograd.grad(self._f(wt), wt)
        return g.numpy()

    def hessian(self, w) -> np.ndarray:
        h = torch.autograd.functional.hessian(self._f, torch.from_numpy(np.array(w, dtype=np.float64)))
        return h.numpy()

    def split(self, w) -> list[np.ndarray]:
        """Flat vector → per-layer arrays (layer by layer, row-major: lcnflow's documented flat order)."""
        w = np.asarray(w, dtype=np.float64)
        out, start = [], 0
        for n, k in zip(self.sizes, self.ks, strict=True):
            out.append(w[start : start + n].reshape(k if self.ndim > 1 else (n,)))
            start += n
        return out


@dataclass
class Problem:
    """A small training problem: architecture, data, loss and a generic starting point (flat)."""

    filter_sizes: list
    strides: list
    X: np.ndarray
    Y: np.ndarray
    loss_name: str
    loss_params: dict
    w0: np.ndarray
    input_size: int | tuple = field(default=0)

    @functools.cached_property
    def arch(self) -> Architecture:
        return Architecture(self.input_size, self.filter_sizes, self.strides)

    @functools.cached_property
    def risk(self) -> EmpiricalRisk:
        return EmpiricalRisk(self.arch, get_loss(self.loss_name, **self.loss_params), Dataset(self.X, self.Y))

    @functools.cached_property
    def oracle(self) -> TorchRisk:
        return TorchRisk(self.filter_sizes, self.strides, self.X, self.Y, self.loss_name, self.loss_params)

    @property
    def sizes(self) -> list[int]:
        return [math.prod(as_tuple(k)) for k in self.filter_sizes]


def make_problem(filter_sizes, strides, out_size, *, m: int = 4, seed: int = 0, loss: str = "square",
                 params: dict | None = None, targets=None) -> Problem:
    """Exact-fit architecture, Gaussian inputs and targets (or ``targets``), filters scaled by 1/√size."""
    d0 = exact_input_size(filter_sizes, strides, out_size)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, *as_tuple(d0)))
    Y = rng.standard_normal((m, *as_tuple(out_size))) if targets is None else np.asarray(targets, dtype=float)
    w0 = np.concatenate([f.ravel() for f in random_filters(rng, filter_sizes)])
    return Problem(list(filter_sizes), list(strides), X, Y, loss, dict(params or {}), w0, input_size=d0)


def planted_problem(filter_sizes, seed: int, out: int = 3, m: int = 4):
    """Stride-1 problem whose targets are ``H v*`` for a Gaussian planted final filter ``v*`` (noiseless).

    Returns ``(problem, v*, H)`` with ``H`` the loop-built patch matrix (``conftest.loop_patch_matrix``).
    """
    base = make_problem(filter_sizes, [1] * len(filter_sizes), out, m=m, seed=seed)
    kv = base.arch.final_filter_size
    v_star = np.random.default_rng(seed + 1000).standard_normal(kv)
    H = loop_patch_matrix(base.X, kv, 1, out)
    Y = (H @ v_star).reshape(m, out)
    prob = make_problem(filter_sizes, [1] * len(filter_sizes), out, m=m, seed=seed, targets=Y)
    return prob, v_star, H


def reference_flow(oracle: TorchRisk, w0: np.ndarray, t_end: float):
    """Dense ``w(t)`` on ``[0, t_end]`` of ``ẇ = −∇L(w)``: Radau on the torch gradient with the torch Hessian.

    Returns a callable ``t ↦ w(t)`` (array of times → one row per time).
    """
    sol = scipy.integrate.solve_ivp(
        lambda _t, w: -oracle.gradient(w), (0.0, float(t_end)), np.array(w0, dtype=float), method="Radau",
        rtol=REF_RTOL, atol=REF_ATOL, dense_output=True, jac=lambda _t, w: -oracle.hessian(w),
    )
    assert sol.success, sol.message
    return lambda t: sol.sol(np.asarray(t, dtype=float)).T


#: Small problems shared by the test modules.  "1d": three layers with strides 2, 1, 2 (k_v = 7, s_v = 4);
#: "2d": two layers with strides (1, 2), (1, 1).  Data and filters are O(1), so ‖w‖ ≈ 1.5 sets the scale.
PROBLEMS = {
    "1d-square": dict(filter_sizes=[3, 2, 2], strides=[2, 1, 2], out_size=2, seed=1, loss="square"),
    "1d-pseudo_huber": dict(filter_sizes=[3, 2, 2], strides=[2, 1, 2], out_size=2, seed=1, loss="pseudo_huber",
                            params={"delta": 0.5}),
    "2d-log_cosh": dict(filter_sizes=[(2, 2), (2, 1)], strides=[(1, 2), (1, 1)], out_size=(2, 2), seed=1,
                        loss="log_cosh"),
}


@functools.cache
def shared_problem(name: str) -> Problem:
    kw = dict(PROBLEMS[name])
    return make_problem(kw.pop("filter_sizes"), kw.pop("strides"), kw.pop("out_size"), **kw)


@functools.cache
def shared_reference(name: str, t_end: float):
    """Cached :func:`reference_flow` of a shared problem (Radau at 1e-12 is the slow part of these tests)."""
    prob = shared_problem(name)
    return reference_flow(prob.oracle, prob.w0, t_end)


def scalar_reference(rhs, u0: float, times) -> np.ndarray:
    """Solution of a scalar ODE ``u̇ = rhs(u)`` at ``times`` by Radau at the reference tolerances."""
    times = np.asarray(times, dtype=float)
    sol = scipy.integrate.solve_ivp(lambda _t, u: [rhs(u[0])], (0.0, float(times[-1])), [u0], method="Radau",
                                    rtol=REF_RTOL, atol=1e-14, t_eval=times)
    assert sol.success, sol.message
    return sol.y[0]


def layer_invariants(sizes, w) -> np.ndarray:
    """``δ_i = ‖w^(i+1)‖² − ‖w^(i)‖²`` from the definition (flat ``w``, layer sizes ``sizes``)."""
    w = np.asarray(w, dtype=float)
    bounds = np.cumsum([0, *sizes])
    norms = np.array([w[a:b] @ w[a:b] for a, b in itertools.pairwise(bounds)])
    return norms[1:] - norms[:-1]


def invariant_drift(sizes, w0, states) -> float:
    """``max_t max_i |δ_i(w(t)) − δ_i(w0)| / max(‖w0‖², ‖w(t)‖²)`` over ``states`` (FlowResult.invariant_drift's
    documented definition), from :func:`layer_invariants`."""
    w0 = np.asarray(w0, dtype=float)
    d0 = layer_invariants(sizes, w0)
    return max(float(np.max(np.abs(layer_invariants(sizes, w) - d0))) / max(float(w0 @ w0), float(w @ w))
               for w in np.atleast_2d(states))


def layer_gradients(sizes, g) -> list[np.ndarray]:
    bounds = np.cumsum([0, *sizes])
    return [np.asarray(g)[a:b] for a, b in itertools.pairwise(bounds)]


def fd_jacobian(f, w, h: float) -> np.ndarray:
    """Central differences ``(f(w + h e_j) − f(w − h e_j)) / 2h``, one column per coordinate."""
    w = np.asarray(w, dtype=float)
    cols = []
    for j in range(w.size):
        e = np.zeros_like(w)
        e[j] = h
        cols.append((np.ravel(f(w + e)) - np.ravel(f(w - e))) / (2 * h))
    return np.stack(cols, axis=1)


def fd_hessian(grad, w, h: float) -> np.ndarray:
    """Symmetrized central-difference Jacobian of a gradient."""
    J = fd_jacobian(grad, w, h)
    return (J + J.T) / 2


def pi_1d(sizes, strides, w) -> np.ndarray:
    """Final filter of a 1D network by polynomial products (flat ``w``), zero-padded to ``k_v``
    (``polymul`` trims vanishing leading coefficients)."""
    S = np.cumprod([1, *strides])
    kv = 1 + sum((k - 1) * int(S[i]) for i, k in enumerate(sizes))
    p = polymul_final_filter(layer_gradients(sizes, w), strides)
    return np.concatenate([p, np.zeros(kv - p.size)])


def numerical_rank(A: np.ndarray, rtol: float = 1e-8) -> int:
    """Rank with singular values below ``rtol·σ_max`` treated as zero (for finite-difference Jacobians, whose
    rounding error is ~ε/h ≈ 1e-13 relative; genuine singular values of the small problems here are ≥ 1e-3)."""
    s = np.linalg.svd(A, compute_uv=False)
    return int(np.sum(s > rtol * max(float(s.max()) if s.size else 0.0, 1e-300)))


def complement(U: np.ndarray, dim: int) -> np.ndarray:
    """Orthonormal basis of the orthogonal complement of the column span of ``U`` (by SVD)."""
    if U.size == 0:
        return np.eye(dim)
    u, s, _ = np.linalg.svd(U, full_matrices=True)
    r = int(np.sum(s > 1e-12 * max(1.0, s.max())))
    return u[:, r:]


def rescaling_directions(sizes, w) -> np.ndarray:
    """Columns ``(0, …, w^(i), −w^(i+1), …, 0)``: tangents of the rescaling orbit (docs/theory.md, "Symmetries")."""
    w = np.asarray(w, dtype=float)
    bounds = np.cumsum([0, *sizes])
    U = np.zeros((w.size, len(sizes) - 1))
    for i in range(len(sizes) - 1):
        U[bounds[i] : bounds[i + 1], i] = w[bounds[i] : bounds[i + 1]]
        U[bounds[i + 1] : bounds[i + 2], i] = -w[bounds[i + 1] : bounds[i + 2]]
    return U
