"""Shared oracles and hypothesis strategies for the lcnflow core tests.

Everything here is written independently of ``src/lcnflow``: layer matrices are built entry by entry from the
defining formula ``(Π(w) x)_a = Σ_j w_j x_{a·s + j}`` (row-major in 2D), final filters from
``numpy.polynomial.polynomial.polymul``, patch matrices from ``H_{(j,a),t} = x_{j, a·s_v + t}``, and
losses from their closed forms (docs/theory.md, "The risk").  Tests import these helpers with
``from conftest import ...``.
"""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import numpy.polynomial.polynomial as npoly
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Hypothesis settings for the numerical property tests: modest example counts keep the suite fast.
#: ``LCNFLOW_HYPOTHESIS_SCALE=10`` multiplies the example counts for an occasional longer run.
_SCALE = int(os.environ.get("LCNFLOW_HYPOTHESIS_SCALE", "1"))
SETTINGS = settings(max_examples=40 * _SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=15 * _SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EPS = np.finfo(np.float64).eps


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20260521)


# ------------------------------------------------------------------------------------------ sizes by hand
def as_tuple(x) -> tuple[int, ...]:
    return tuple(x) if isinstance(x, tuple | list) else (int(x),)


def exact_input_size(filter_sizes, strides, out_size):
    """Backward recursion ``d_{i−1} = s_i (d_i − 1) + k_i`` (the exact-fit case), per axis."""
    ndim = len(as_tuple(filter_sizes[0]))
    d = as_tuple(out_size) if ndim > 1 else (int(out_size),)
    for k, s in zip(reversed(filter_sizes), reversed(strides), strict=True):
        d = tuple(ss * (dd - 1) + kk for dd, kk, ss in zip(d, as_tuple(k), as_tuple(s), strict=True))
    return d[0] if ndim == 1 else d


# ------------------------------------------------------------------------------------------ dense oracles
def loop_layer_matrix(w, d_in, s) -> np.ndarray:
    """Dense matrix of one valid strided cross-correlation, built entry by entry (1D or row-major 2D)."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 1:
        (k,), (n,), (st_,) = w.shape, as_tuple(d_in), as_tuple(s)
        n_out = (n - k) // st_ + 1
        M = np.zeros((n_out, n))
        for a in range(n_out):
            for j in range(k):
                M[a, a * st_ + j] += w[j]
        return M
    (kh, kw), (h, wd), (sh, sw) = w.shape, d_in, s
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    M = np.zeros((oh * ow, h * wd))
    for a1 in range(oh):
        for a2 in range(ow):
            for j1 in range(kh):
                for j2 in range(kw):
                    M[a1 * ow + a2, (a1 * sh + j1) * wd + (a2 * sw + j2)] += w[j1, j2]
    return M


def loop_network_matrix(filters, input_size, strides) -> np.ndarray:
    """``Π(w^(N)) ⋯ Π(w^(1))`` from :func:`loop_layer_matrix`, tracking sizes by the size rule."""
    d = as_tuple(input_size)
    V = np.eye(math.prod(d))
    for w, s in zip(filters, strides, strict=True):
        w = np.asarray(w, dtype=np.float64)
        s_t = as_tuple(s)
        V = loop_layer_matrix(w, d, s_t) @ V
        d = tuple((dd - kk) // ss + 1 for dd, kk, ss in zip(d, w.shape, s_t, strict=True))
    return V


def loop_strided_correlation(x, v, s, out_size) -> np.ndarray:
    """``y_a = Σ_t v_t x_{a·s + t}`` for 1D or 2D ``x`` (flattened row-major output)."""
    x, v = np.asarray(x, dtype=np.float64), np.asarray(v, dtype=np.float64)
    s, out_size = as_tuple(s), as_tuple(out_size)
    y = np.zeros(out_size)
    for a in itertools.product(*(range(n) for n in out_size)):
        for t in itertools.product(*(range(n) for n in v.shape)):
            y[a] += v[t] * x[tuple(ai * si + ti for ai, si, ti in zip(a, s, t, strict=True))]
    return y.ravel()


def loop_patch_matrix(X, kv, sv, out_size) -> np.ndarray:
    """``H_{(j,a),t} = x_{j, a·s_v + t}``: rows sample-major, then output position; all row-major."""
    X = np.asarray(X, dtype=np.float64)
    kv, sv, out_size = as_tuple(kv), as_tuple(sv), as_tuple(out_size)
    rows = []
    for x in X:
        for a in itertools.product(*(range(n) for n in out_size)):
            row = [x[tuple(ai * si + ti for ai, si, ti in zip(a, sv, t, strict=True))]
                   for t in itertools.product(*(range(n) for n in kv))]
            rows.append(row)
    return np.array(rows, dtype=np.float64)


def dilate_coefficients(w, S) -> np.ndarray:
    """Coefficients of ``p_w(t^S)``: ``S − 1`` zeros between entries."""
    out = np.zeros((len(w) - 1) * S + 1)
    for j, c in enumerate(w):
        out[j * S] = c
    return out


def polymul_final_filter(filters, strides) -> np.ndarray:
    """``p_v(t) = Π_i p_{w^(i)}(t^{S_{i−1}})`` with ``numpy.polynomial.polynomial.polymul`` (1D only)."""
    p = np.array([1.0])
    S = 1
    for w, s in zip(filters, strides, strict=True):
        p = npoly.polymul(p, dilate_coefficients(np.asarray(w, dtype=np.float64), S))
        S *= s
    return p


def polymul_abs_scale(filters, strides) -> float:
    """max_t of π(|w|)_t: bounds Σ|terms| of every coefficient, the scale of its rounding error."""
    return float(np.max(polymul_final_filter([np.abs(w) for w in filters], strides)))


# ------------------------------------------------------------------------------------------ loss formulas
# Closed forms of the losses (docs/theory.md, "The risk"), in plain numpy and in torch, with the parameters used in
# the tests.
LOSS_CASES = [
    ("square", {}),
    ("lp", {"p": 4}),
    ("lp", {"p": 3}),
    ("pseudo_huber", {"delta": 0.7}),
    ("generalized_huber", {"alpha": 1.5, "beta": 0.5}),
    ("log_cosh", {}),
]
LOSS_IDS = [name + "".join(f"-{k}{v}" for k, v in params.items()) for name, params in LOSS_CASES]


def numpy_loss(name: str, params: dict):
    """ℓ(r) as a numpy formula."""
    if name == "square":
        return lambda r: r**2 / 2
    if name == "lp":
        p = params["p"]
        return lambda r: np.abs(r) ** p / p
    if name == "pseudo_huber":
        d = params["delta"]
        return lambda r: d**2 * (np.sqrt(1 + (r / d) ** 2) - 1)
    if name == "generalized_huber":
        a, b = params["alpha"], params["beta"]
        return lambda r: np.log((np.exp(a * r) + np.exp(-a * r) + b) / (2 + b)) / a
    if name == "log_cosh":
        return lambda r: np.log(np.cosh(r))
    raise KeyError(name)


def torch_loss(name: str, params: dict):
    """ℓ(r) as a torch formula (the same closed form, differentiated by autograd)."""
    import torch

    if name == "square":
        return lambda r: r**2 / 2
    if name == "lp":
        p = params["p"]
        return lambda r: torch.abs(r) ** p / p
    if name == "pseudo_huber":
        d = params["delta"]
        return lambda r: d**2 * (torch.sqrt(1 + (r / d) ** 2) - 1)
    if name == "generalized_huber":
        a, b = params["alpha"], params["beta"]
        return lambda r: torch.log((torch.exp(a * r) + torch.exp(-a * r) + b) / (2 + b)) / a
    if name == "log_cosh":
        return lambda r: torch.log(torch.cosh(r))
    raise KeyError(name)


# ------------------------------------------------------------------------------------------ strategies
@st.composite
def arch_1d_specs(draw, max_depth=4, max_k=4, max_s=3, max_out=3):
    """``(input_size, filter_sizes, strides)`` of a random exact-fit 1D architecture."""
    depth = draw(st.integers(1, max_depth))
    ks = [draw(st.integers(1, max_k)) for _ in range(depth)]
    ss = [draw(st.integers(1, max_s)) for _ in range(depth)]
    d_out = draw(st.integers(1, max_out))
    return exact_input_size(ks, ss, d_out), ks, ss


@st.composite
def arch_2d_specs(draw, max_depth=3, max_k=3, max_s=2, max_out=2):
    """``(input_size, filter_sizes, strides)`` of a small random exact-fit 2D architecture."""
    depth = draw(st.integers(1, max_depth))
    ks = [(draw(st.integers(1, max_k)), draw(st.integers(1, max_k))) for _ in range(depth)]
    ss = [(draw(st.integers(1, max_s)), draw(st.integers(1, max_s))) for _ in range(depth)]
    d_out = (draw(st.integers(1, max_out)), draw(st.integers(1, max_out)))
    return exact_input_size(ks, ss, d_out), ks, ss


seeds = st.integers(0, 2**32 - 1)


def random_filters(rng: np.random.Generator, filter_sizes) -> list[np.ndarray]:
    """Gaussian filters scaled by 1/√(size), so products stay O(1)."""
    out = []
    for k in filter_sizes:
        shape = as_tuple(k)
        out.append(rng.standard_normal(shape) / math.sqrt(math.prod(shape)))
    return out


def pytest_sessionstart(session):
    """Build lcnflow's compiled code into Numba's cache once (the state of an environment after its first command-line
    run), so the command-line runs in the tests take the compiled path a user's later runs take;
    test_first_run.py covers the first run itself."""
    from lcnflow.dynamics.compile_cache import build, compiled_code_ready

    if not compiled_code_ready():
        build()
