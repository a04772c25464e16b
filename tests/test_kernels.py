"""The compiled kernels (lcnflow.kernels) against independent oracles, and against the NumPy reference path.

Oracles: final filters from ``numpy.polynomial`` products and from the dense network matrix built entry by entry
(conftest); Jacobians and second-order terms of π by central differences, which are exact up to rounding because π
is multilinear (every coordinate enters with degree ≤ 1, so the difference quotient with step 1 has no truncation
error); data passes from the dense patch matrix built by loops; FFT correlations against the same dense matrix.
Compiled and reference paths must agree to 1e-12 relative (the sums have at most a few thousand terms of similar
size at the random points used, so their rounding is ~1e-14 relative).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lcnflow as lf
from conftest import LOSS_CASES, LOSS_IDS, loop_network_matrix, loop_patch_matrix, polymul_final_filter
from lcnflow import kernels as K

pytestmark = pytest.mark.skipif(not K.HAVE_NUMBA, reason="numba is not installed")

SRC = Path(__file__).resolve().parents[1] / "src"

ARCHS = [
    ((64,), [3, 3, 3], None),
    ((40,), [4, 3, 2], [2, 2, 1]),
    ((23,), [2, 3], [3, 1]),
    ((9, 11), [(3, 2), (2, 3)], None),
    ((15, 15), [(3, 3), (3, 3)], [(1, 1), (2, 2)]),
]
ARCH_IDS = ["1d-333", "1d-strided", "1d-s3", "2d", "2d-strided"]


def _arch(spec):
    d0, ks, ss = spec
    return lf.Architecture(d0[0] if len(d0) == 1 else d0, ks, ss)


def _args(arch):
    lay = K.layout(arch.filter_shapes, arch.cumulative_strides[:-1])
    return (lay.kh, lay.kw, lay.dh, lay.dw, lay.off)


def _pi(arch, w):
    return K.product_except(np.ascontiguousarray(w), *_args(arch), -1, -1)


def _rel(a, b) -> float:
    return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b)))


@pytest.fixture(autouse=True)
def compiled_path():
    """These tests exercise the kernels whatever LCNFLOW_NO_NUMBA says; restore the switch afterwards."""
    before = K.ENABLED
    K.ENABLED = True
    yield
    K.ENABLED = before


# ---------------------------------------------------------------------------------------------- π and derivatives
@pytest.mark.parametrize("spec", ARCHS, ids=ARCH_IDS)
def test_final_filter_matches_independent_constructions(spec, rng):
    arch = _arch(spec)
    filters = lf.random_init(arch, 1.0, 5)
    v = _pi(arch, lf.flatten(filters))
    if arch.ndim == 1:
        ref = polymul_final_filter(filters, [s[0] for s in arch.axes_strides])
    else:  # row 0 of the dense network matrix is the final filter laid out on the input grid
        V = loop_network_matrix(filters, arch.layer_sizes[0], arch.strides)
        ref = V[0].reshape(arch.axes_layer_sizes[0])[: v.shape[0], : v.shape[1]]
    np.testing.assert_allclose(v.reshape(-1), np.ravel(ref), rtol=1e-13, atol=1e-14 * np.abs(ref).max())


def _finite_difference_jacobian(arch, w):
    """``∂π/∂w_p`` by central differences with step 1 (exact: π is affine in each coordinate)."""
    cols = []
    for p in range(w.size):
        e = np.zeros_like(w)
        e[p] = 1.0
        cols.append((_pi(arch, w + e) - _pi(arch, w - e)).reshape(-1) / 2)
    return np.array(cols).T


@pytest.mark.parametrize("spec", ARCHS, ids=ARCH_IDS)
def test_jacobian_and_vjp_by_finite_differences(spec, rng):
    arch = _arch(spec)
    w = lf.flatten(lf.random_init(arch, 1.0, 7))
    J_fd = _finite_difference_jacobian(arch, w)
    J = K.jacobian(w, *_args(arch))
    assert _rel(J, J_fd) < 1e-13
    g = rng.standard_normal(J.shape[0])
    vjp = K.vjp(w, *_args(arch), np.ascontiguousarray(g.reshape(_pi(arch, w).shape)))
    assert _rel(vjp, J_fd.T @ g) < 1e-13


@pytest.mark.parametrize("spec", ARCHS, ids=ARCH_IDS)
def test_hessian_contraction_by_finite_differences(spec, rng):
    arch = _arch(spec)
    w = lf.flatten(lf.random_init(arch, 1.0, 8))
    g = rng.standard_normal(_pi(arch, w).shape)
    args = _args(arch)
    B = K.hessian_contraction(w, *args, g)
    ref = np.empty_like(B)
    for p in range(w.size):  # d/dw_p of dπᵀg, again affine in w_p
        e = np.zeros_like(w)
        e[p] = 1.0
        ref[:, p] = (K.vjp(w + e, *args, g) - K.vjp(w - e, *args, g)) / 2
    assert _rel(B, ref) < 1e-13
    np.testing.assert_array_equal(B, B.T)


# ---------------------------------------------------------------------------------------------- risks
def _problem(arch, loss, m=7, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, *arch.axes_layer_sizes[0]))
    Y = rng.standard_normal((m, *arch.axes_layer_sizes[-1]))
    return lf.EmpiricalRisk(arch, loss, lf.Dataset(X, Y)), X, Y


@pytest.mark.parametrize("spec", ARCHS, ids=ARCH_IDS)
@pytest.mark.parametrize(("name", "params"), LOSS_CASES, ids=LOSS_IDS)
def test_risk_matches_dense_oracle(spec, name, params):
    """Value and gradient against ``ℒ = (1/m) Σ ℓ(H v − y)`` with a loop-built ``H`` and a finite-difference ``dπ``."""
    arch = _arch(spec)
    loss = lf.get_loss(name, **params)
    risk, X, Y = _problem(arch, loss)
    w = lf.flatten(lf.random_init(arch, 0.8, 2))
    H = loop_patch_matrix(X, arch.final_filter_shape, arch.cumulative_strides[-1], arch.axes_layer_sizes[-1])
    r = H @ _pi(arch, w).reshape(-1) - Y.reshape(-1)
    J = _finite_difference_jacobian(arch, w)
    val, grad = risk._compiled_value_grad(w, True)
    assert abs(val - loss.value(r).sum() / len(X)) <= 1e-13 * loss.value(r).sum() / len(X)
    assert _rel(grad, J.T @ (H.T @ loss.derivative(r)) / len(X)) < 1e-12
    if name != "square":
        c = risk.kernel_view()
        G = c.gram(_pi(arch, w))
        assert _rel(G, H.T @ (loss.second_derivative(r)[:, None] * H)) < 1e-12


CASES = [*ARCHS, ((80,), [25, 25], None), ((30, 30), [(5, 5), (5, 5), (3, 3)], None)]  # the last two: FFT path


@pytest.mark.parametrize("spec", CASES, ids=[*ARCH_IDS, "1d-fft", "2d-fft"])
@pytest.mark.parametrize(("name", "params"), LOSS_CASES, ids=LOSS_IDS)
def test_compiled_and_reference_paths_agree(spec, name, params):
    arch = _arch(spec)
    risk, _, _ = _problem(arch, lf.get_loss(name, **params))
    w = lf.flatten(lf.random_init(arch, 0.8, 4))
    v = _pi(arch, w).reshape(arch.final_filter_shape)
    K.ENABLED = True
    c = risk.flat_value_and_gradient(w), risk.flat_value_gradient_hessian(w), risk.function_space_hessian(v)
    if arch.final_filter_num_params >= 49 and arch.final_stride in (1, (1, 1)):
        assert risk.kernel_view().spectral_ok
    K.ENABLED = False
    ref = risk.flat_value_and_gradient(w), risk.flat_value_gradient_hessian(w), risk.function_space_hessian(v)
    assert abs(c[0][0] - ref[0][0]) <= 1e-12 * abs(ref[0][0])
    assert _rel(c[0][1], ref[0][1]) < 1e-12
    assert abs(c[1][0] - ref[1][0]) <= 1e-12 * abs(ref[1][0])
    assert _rel(c[1][1], ref[1][1]) < 1e-12
    assert _rel(c[1][2], ref[1][2]) < 1e-12
    assert _rel(c[2], ref[2]) < 1e-12


def test_spectral_path_respects_the_memory_budget():
    """Transforms of the inputs larger than ``max_patch_bytes``: the direct pass is used, with the same result."""
    arch = lf.Architecture((30, 30), [(5, 5), (5, 5), (3, 3)])
    risk, _, _ = _problem(arch, lf.get_loss("log_cosh"))
    small = lf.EmpiricalRisk(arch, lf.get_loss("log_cosh"), risk.data, max_patch_bytes=10_000)
    assert risk.kernel_view().spectral_ok and not small.kernel_view().spectral_ok
    w = lf.flatten(lf.random_init(arch, 0.8, 4))
    assert _rel(small.flat_value_and_gradient(w)[1], risk.flat_value_and_gradient(w)[1]) < 1e-12


def test_spectral_correlator_matches_dense(rng):
    arch = lf.Architecture((12, 10), [(4, 3), (3, 4)])
    X = rng.standard_normal((3, 12, 10))
    Y = rng.standard_normal((3, *arch.axes_layer_sizes[-1]))
    v = rng.standard_normal(arch.final_filter_shape)
    H = loop_patch_matrix(X, arch.final_filter_shape, (1, 1), arch.axes_layer_sizes[-1])
    r = H @ v.ravel() - Y.ravel()
    val, g = K.SpectralCorrelator(X, v.shape).value_grad(v, Y, 4, 1.0, 0.0, True)
    loss = lf.get_loss("log_cosh")
    assert abs(val - loss.value(r).sum()) <= 1e-13 * loss.value(r).sum()
    assert _rel(g, H.T @ loss.derivative(r)) < 1e-13


def test_custom_loss_keeps_the_reference_path():
    arch = lf.Architecture(20, [3, 3])
    loss = lf.Loss.from_callables(lambda r: r**4 / 4, lambda r: r**3, lambda r: 3 * r**2, name="quartic")
    risk, _, _ = _problem(arch, loss)
    w = lf.flatten(lf.random_init(arch, 0.8, 1))
    assert risk._compiled_value_grad(w, True) is None
    ref = lf.EmpiricalRisk(arch, lf.get_loss("lp", p=4), risk.data)
    assert _rel(risk.flat_value_and_gradient(w)[1], ref.flat_value_and_gradient(w)[1]) < 1e-12


# ---------------------------------------------------------------------------------------------- scalar losses
#: Below the smallest normal float64 (subnormal results, e.g. ℓ(r) ≈ r²/2 for |r| ~ 1e-160) there is no relative
#: precision to compare; an absolute error of that size is rounding in the subnormal range.
TINY = np.finfo(np.float64).tiny
EXTREME = [("generalized_huber", {"alpha": 0.5, "beta": 1e8}), ("pseudo_huber", {"delta": 1e-3})]


@pytest.mark.parametrize(("name", "params"), [*LOSS_CASES, *EXTREME], ids=[*LOSS_IDS, "gh-huge-beta", "ph-small-delta"])
def test_scalar_losses_match_the_reference_formulas(name, params):
    """ℓ, ℓ', ℓ'' of the kernels within a few ulps of lcnflow.model.losses (itself tested against closed forms)."""
    loss = lf.get_loss(name, **params)
    mag = np.concatenate([np.linspace(0, 40, 4001), 10.0 ** np.linspace(-300, 150 if name != "lp" else 60, 400)])
    r = np.concatenate([mag, -mag])
    lid = K.LOSS_IDS[name]
    vals = [*params.values(), 0.0, 0.0]
    p1, p2 = (vals[0], vals[1]) if params else (1.0, 0.0)
    for order, ref in enumerate((loss.value(r), loss.derivative(r), loss.second_derivative(r))):
        got = K.loss_terms(r, lid, p1, p2, order)
        np.testing.assert_allclose(got, ref, rtol=2e-14, atol=TINY)
    full = r.copy().reshape(1, 1, -1)  # the fused value-and-derivative form of the data passes
    total = K.loss_terms_padded(full, np.zeros_like(full), lid, p1, p2, True)
    np.testing.assert_allclose(full.ravel(), loss.derivative(r), rtol=2e-14, atol=TINY)
    assert abs(total - loss.value(r).sum()) <= 1e-13 * loss.value(r).sum()


def _params(params):
    vals = [*params.values(), 0.0, 0.0]
    return (float(vals[0]), float(vals[1])) if params else (1.0, 0.0)


ROW_CASES = [*LOSS_CASES, *EXTREME, ("pseudo_huber", {"delta": 7.5e3})]
ROW_IDS = [*LOSS_IDS, "gh-huge-beta", "ph-small-delta", "ph-large-delta"]


@pytest.mark.parametrize("need_value", [True, False], ids=["value", "no-value"])
@pytest.mark.parametrize(("name", "params"), ROW_CASES, ids=ROW_IDS)
def test_row_loss_kernels_match_the_reference_formulas(name, params, need_value):
    """The row kernels of the data passes (vectorized for pseudo-Huber and log cosh): ℓ' in place and Σ ℓ against
    lcnflow.model.losses over |r| from 1e-300 to 1e150 and on a fine grid of [0, 40] (both signs), within ~100 ulps.

    The vectorized log cosh replaces expm1/log1p by its own polynomials, so every binade of |r| is covered."""
    loss = lf.get_loss(name, **params)
    mag = np.concatenate([np.linspace(0, 40, 40001), 10.0 ** np.linspace(-300, 150 if name != "lp" else 60, 4000)])
    r = np.concatenate([mag, -mag])
    p1, p2 = _params(params)
    row = r.copy()
    total = K.row_loss(row, row.size, K.LOSS_IDS[name], p1, p2, need_value)
    np.testing.assert_allclose(row, loss.derivative(r), rtol=2e-14, atol=TINY)
    if need_value:
        with np.errstate(over="ignore"):  # |r|^p overflows for the square and lp losses: ∞ on both sides
            ref = loss.value(r)
        assert abs(total - ref.sum()) <= 1e-13 * ref.sum()
        # each term, not only the sum: a single row of one entry
        one = np.empty(1)
        for x in (0.0, 1e-200, 1e-8, 0.3, 0.9999999999999999, 1.0, 2.5, 19.9, 20.1, 39.9, 40.1, 1e10, 1e155, 1e300):
            for s in (x, -x):
                one[0] = s
                got = K.row_loss(one, 1, K.LOSS_IDS[name], p1, p2, True)
                with np.errstate(over="ignore"):
                    ref1 = loss.value(np.array([s]))[0]
                np.testing.assert_allclose(got, ref1, rtol=2e-14, atol=TINY)
    else:
        assert np.isnan(total)


@pytest.mark.parametrize(("name", "params"), LOSS_CASES, ids=LOSS_IDS)
def test_gradient_does_not_depend_on_asking_for_the_value(name, params, rng):
    """ℓ' and Hᵀℓ' bit for bit the same with and without the value, on every path of the data passes (one loop per
    sample, row kernels in 1D and 2D, strided, the FFT path's loss terms): an integrator's gradient-only calls and a
    certificate's value-and-gradient call see the same gradient."""
    p1, p2 = _params(params)
    lid = K.LOSS_IDS[name]
    r = np.concatenate([rng.standard_normal(500) * 3, 10.0 ** np.linspace(-300, 150, 200)])
    rows = [r.copy(), r.copy()]
    K.row_loss(rows[0], r.size, lid, p1, p2, True)
    K.row_loss(rows[1], r.size, lid, p1, p2, False)
    np.testing.assert_array_equal(rows[0], rows[1])
    shapes = [((5, 1, 40), (5, 1, 34), (1, 7), 1, 1), ((5, 1, 40), (5, 1, 29), (1, 12), 1, 1),
              ((5, 9, 11), (5, 6, 9), (4, 3), 1, 1), ((5, 1, 40), (5, 1, 12), (1, 7), 1, 3)]
    for xs, ys, vs, sh, sw in shapes:
        X, Y, v = rng.standard_normal(xs), rng.standard_normal(ys), rng.standard_normal(vs)
        g_value = K.data_pass(X, Y, v, sh, sw, lid, p1, p2, True)[1]
        np.testing.assert_array_equal(g_value, K.data_pass(X, Y, v, sh, sw, lid, p1, p2, False)[1])
    full = [rng.standard_normal((3, 8, 8))] * 2
    full = [full[0].copy(), full[0].copy()]
    Y = rng.standard_normal((3, 6, 6))
    K.loss_terms_padded(full[0], Y, lid, p1, p2, True)
    K.loss_terms_padded(full[1], Y, lid, p1, p2, False)
    np.testing.assert_array_equal(full[0], full[1])


@pytest.mark.parametrize(("name", "params"), ROW_CASES, ids=ROW_IDS)
def test_row_loss_kernels_propagate_nan_and_infinity(name, params):
    """ℓ'(±∞) and ℓ(±∞) are the reference's limits (±δ, ±1, ±∞ …), NaN stays NaN; the sum is NaN with a NaN."""
    loss = lf.get_loss(name, **params)
    p1, p2 = _params(params)
    r = np.array([np.inf, -np.inf, 0.5, -3.0])
    for need_value in (True, False):
        row = r.copy()
        total = K.row_loss(row, 4, K.LOSS_IDS[name], p1, p2, need_value)
        np.testing.assert_allclose(row, loss.derivative(r), rtol=2e-14)  # ±∞ must match exactly
        if need_value:
            assert total == np.inf
        row = np.array([0.5, np.nan, -2.0, np.nan])
        total = K.row_loss(row, 4, K.LOSS_IDS[name], p1, p2, need_value)
        np.testing.assert_array_equal(np.isnan(row), [False, True, False, True])
        assert np.isnan(total)


@pytest.mark.parametrize("k", range(1, 11))
def test_tap_grouped_correlations_match_numpy(k, rng):
    """The stride-1 correlations of the data pass (taps in groups of four, then three, two or one) against
    numpy.correlate: ``row += Σ_t c_t x[a + t]`` and ``out[o + t] += Σ_a q_a x[a + t]``."""
    for n in (1, 9, 250):
        x = rng.standard_normal(n + k - 1)
        c = rng.standard_normal(k)
        row0 = rng.standard_normal(n)
        row = row0.copy()
        K._correlate_add(row, x, c, n, k)
        np.testing.assert_allclose(row, row0 + np.correlate(x, c, mode="valid"), rtol=1e-13, atol=1e-13 * n)
        out = np.full(k + 3, 0.25)
        K._correlate_dot(row0, x, out, 2, n, k)
        ref = np.full(k + 3, 0.25)
        ref[2 : 2 + k] += np.correlate(x, row0, mode="valid")
        np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-13 * n)


def _signal_pass(X, Y, v, s, lid, p1, p2, need_value):
    """:func:`lcnflow.kernels.signal_pass` on 2D signals ``X`` (m × d_0), ``Y`` (m × d_N): transposed here."""
    return K.signal_pass(np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T), v, s, lid, p1, p2, need_value)


@pytest.mark.parametrize(("name", "params"), LOSS_CASES, ids=LOSS_IDS)
def test_signal_pass_and_gram_match_the_dense_patch_matrix(name, params, rng):
    """The 1D passes with the samples innermost (value and gradient; the weighted Gram ``Hᵀdiag(ℓ'')H``) against the
    dense patch matrix built by loops, for strides 1–3, final filters of 1 to 12 taps (the four-tap groups and every
    remainder) and outputs as short as one entry; more samples than one block, so several blocks are summed."""
    loss = lf.get_loss(name, **params)
    p1, p2 = _params(params)
    lid = K.LOSS_IDS[name]
    for s in (1, 2, 3):
        for kv in (1, 2, 3, 4, 5, 7, 8, 9, 12):
            for dn in (1, 5, 40):
                m = 3 if dn < 40 else 500  # 500 × 40 entries: two blocks
                X = rng.standard_normal((m, (dn - 1) * s + kv))
                Y = rng.standard_normal((m, dn))
                v = 0.5 * rng.standard_normal(kv)
                H = loop_patch_matrix(X, (kv,), (s,), (dn,))
                r = H @ v - Y.reshape(-1)
                val, grad = _signal_pass(X, Y, v, s, lid, p1, p2, True)
                assert _rel(grad, H.T @ loss.derivative(r)) < 1e-13
                assert abs(val - loss.value(r).sum()) <= 1e-13 * loss.value(r).sum()
                gram = K.signal_weighted_gram(np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T), v, s, lid, p1, p2)
                ref = H.T @ (loss.second_derivative(r)[:, None] * H)
                assert _rel(gram, ref) < 1e-13
                np.testing.assert_array_equal(gram, gram.T)


@pytest.mark.parametrize(("name", "params"), [("pseudo_huber", {"delta": 0.7}), ("log_cosh", {})],
                         ids=["pseudo_huber", "log_cosh"])
def test_signal_pass_with_an_infinite_input(name, params, rng):
    """With a bounded ℓ', an infinite input entry gives ±∞ in exactly the gradient entries whose products contain it
    and no NaN, as the dense oracle says."""
    loss = lf.get_loss(name, **params)
    p1, p2 = _params(params)
    for kv in (3, 7, 9):
        X = rng.standard_normal((3, 40 + kv - 1))
        Y = rng.standard_normal((3, 40))
        v = rng.standard_normal(kv)
        X[1, 20] = np.inf
        H = loop_patch_matrix(X, (kv,), (1,), (40,))
        with np.errstate(invalid="ignore"):
            r = H @ v - Y.reshape(-1)
        _, grad = _signal_pass(X, Y, v, 1, K.LOSS_IDS[name], p1, p2, False)
        inf_entries = np.array([np.isinf(H[:, t]).any() for t in range(kv)])
        assert np.isinf(grad[inf_entries]).all() and not np.isnan(grad).any()
        finite = ~inf_entries
        if finite.any():
            assert _rel(grad[finite], H[:, finite].T @ loss.derivative(r)) < 1e-13


def test_vectorized_exp_and_log1p_are_accurate_on_their_ranges():
    """The kernels' own exp/expm1 (on [−700, 0]: log cosh uses [−40, 0], the generalized Huber loss all of it),
    log1p (on [0, ∞), through log) and log (of positive normal numbers) within 4 ulps of NumPy's,
    which are themselves within an ulp of the true values; and the split of ln 2 they use is exact to the rounding
    of its low part (3e-23, so ``k·ln 2`` for ``|k| ≤ 1024`` is off by less than 4e-20)."""
    from decimal import Decimal, getcontext

    getcontext().prec = 50
    assert abs(Decimal(K._LN2_HI) + Decimal(K._LN2_LO) - Decimal(2).ln()) < Decimal("3e-23")
    assert np.float64(K._LN2_HI).view(np.uint64) & np.uint64(0xFFFFFFFF) == 0
    eps = np.finfo(np.float64).eps
    x = -np.concatenate([np.linspace(0, 40, 200001), 10.0 ** np.linspace(-300, np.log10(40), 20000),
                         np.linspace(40, 700, 100001)])
    em1 = np.array([K._exp_neg(t)[0] for t in x[::7]])
    ex = np.array([K._exp_neg(t)[1] for t in x[::7]])
    np.testing.assert_allclose(em1, np.expm1(x[::7]), rtol=4 * eps, atol=TINY)
    np.testing.assert_allclose(ex, np.exp(x[::7]), rtol=4 * eps, atol=0)
    # log of any positive normal number, and log1p on [0, ∞) (the generalized Huber loss's value)
    y = np.concatenate([10.0 ** np.linspace(-307, 307, 20001), np.linspace(0.5, 2.5, 20001)])
    np.testing.assert_allclose([K._log_pos(t) for t in y], np.log(y), rtol=4 * eps, atol=0)
    z = np.concatenate([np.linspace(0, 0.6, 100001)[::3], (10.0 ** np.linspace(-300, 0, 20000) * 0.6)[::3],
                        np.linspace(0.6, 3, 20001), 10.0 ** np.linspace(-0.3, 300, 20001)])
    np.testing.assert_allclose([K._log1p_any(t) for t in z], np.log1p(z), rtol=4 * eps, atol=TINY)


# ---------------------------------------------------------------------------------------------- parallel, caching
@pytest.mark.parametrize("need_value", [True, False], ids=["value", "no-value"])
@pytest.mark.parametrize(("lid", "p1"), [(2, 0.7), (4, 1.0), (3, 1.5)], ids=["pseudo_huber", "log_cosh", "gen-huber"])
@pytest.mark.parametrize("layout", ["rows", "samples-innermost"])
def test_threaded_pass_is_independent_of_the_thread_count(rng, monkeypatch, lid, p1, need_value, layout):
    X = rng.standard_normal((900, 1, 64))
    Y = rng.standard_normal((900, 1, 58))
    v = rng.standard_normal((1, 7))
    results = []
    for threads, min_entries in ((1, 10**12), (2, 0), (3, 0)):
        monkeypatch.setattr(K, "_threads", lambda threads=threads: threads)
        monkeypatch.setattr(K, "PARALLEL_MIN_ENTRIES", min_entries)
        if layout == "rows":
            results.append(K.data_pass(X, Y, v, 1, 1, lid, p1, 0.5, need_value))
        else:
            results.append(_signal_pass(X[:, 0], Y[:, 0], v[0], 1, lid, p1, 0.5, need_value))
    for val, grad in results[1:]:
        assert val == results[0][0] or (np.isnan(val) and np.isnan(results[0][0]) and not need_value)
        np.testing.assert_array_equal(grad, results[0][1])


@pytest.mark.parametrize(("name", "params"), [("pseudo_huber", {"delta": 0.7}), ("log_cosh", {})],
                         ids=["pseudo_huber", "log_cosh"])
def test_data_pass_with_infinite_and_nan_targets(name, params, rng):
    """Infinite targets give ℓ' = ∓δ (∓1) there and an infinite value, as the dense oracle says; a NaN target makes
    the value and every gradient entry NaN, as in the reference path."""
    arch = lf.Architecture(30, [3, 3])
    loss = lf.get_loss(name, **params)
    p1, p2 = _params(params)
    X = rng.standard_normal((6, 30))
    Y = rng.standard_normal((6, 26))
    Y[1, 3], Y[4, 0] = np.inf, -np.inf
    v = rng.standard_normal(5)
    H = loop_patch_matrix(X, arch.final_filter_shape, arch.cumulative_strides[-1], arch.axes_layer_sizes[-1])
    r = H @ v - Y.reshape(-1)
    lid = K.LOSS_IDS[name]
    passes = (lambda nv: K.data_pass(X.reshape(6, 1, 30), Y.reshape(6, 1, 26), v.reshape(1, 5), 1, 1, lid, p1, p2, nv),
              lambda nv: _signal_pass(X, Y, v, 1, lid, p1, p2, nv))
    for data_pass in passes:
        for need_value in (True, False):
            val, grad = data_pass(need_value)
            assert _rel(grad, H.T @ loss.derivative(r)) < 1e-13
            assert val == np.inf if need_value else np.isnan(val)
    Y[2, 5] = np.nan
    for data_pass in passes:
        val, grad = data_pass(True)
        assert np.isnan(val) and np.isnan(grad).all()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_threaded_pass_works_in_a_forked_child(rng, monkeypatch):
    """A child forked after the parent started the thread pool gets a pool of its own (no hang)."""
    import multiprocessing

    monkeypatch.setattr(K, "PARALLEL_MIN_ENTRIES", 0)
    X, Y, v = rng.standard_normal((1500, 1, 30)), rng.standard_normal((1500, 1, 26)), rng.standard_normal((1, 5))
    parent = K.data_pass(X, Y, v, 1, 1, 4, 1.0, 0.0, True)  # 3 blocks of 630 samples: the pool is started
    assert K._pool is not None or K._threads() == 1
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(K.data_pass, (X, Y, v, 1, 1, 4, 1.0, 0.0, True)).get(timeout=60)
    assert child[0] == parent[0]
    np.testing.assert_array_equal(child[1], parent[1])


def test_environment_variable_selects_the_reference_path():
    code = "import lcnflow.kernels as k; print(k.ENABLED)"
    env = {**os.environ, "PYTHONPATH": str(SRC), "LCNFLOW_NO_NUMBA": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_works_without_a_writable_cache(tmp_path):
    """No cache location writable (package dir, NUMBA_CACHE_DIR, user cache): kernels compile in memory."""
    import shutil

    pkg = tmp_path / "site" / "lcnflow"
    shutil.copytree(SRC / "lcnflow", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    (pkg / "__pycache__").write_text("")  # a file where Numba's in-tree cache directory would go
    code = textwrap.dedent("""
        import warnings, numpy as np, lcnflow as lf, lcnflow.kernels as k
        assert k.ENABLED and type(k.square_value_grad._cache).__name__ == "NullCache", k.square_value_grad._cache
        rng = np.random.default_rng(0)
        arch = lf.Architecture(20, [3, 3])
        X, Y = rng.standard_normal((5, 20)), rng.standard_normal((5, 16))
        w = lf.flatten(lf.random_init(arch, 1.0, 0))
        for name in ("square", "log_cosh"):
            risk = lf.EmpiricalRisk(arch, name, lf.Dataset(X, Y))
            fast = risk.flat_value_and_gradient(w)[1]
            k.ENABLED = False
            ref = risk.flat_value_and_gradient(w)[1]
            k.ENABLED = True
            assert np.linalg.norm(fast - ref) <= 1e-12 * np.linalg.norm(ref)
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(pkg.parent), "NUMBA_CACHE_DIR": str(blocker / "cache"),
           "HOME": str(blocker), "XDG_CACHE_HOME": str(blocker / "xdg"), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("LCNFLOW_NO_NUMBA", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_compile_clock_measures_compiling_apart_from_cached_calls():
    """:class:`~lcnflow.kernels.CompileClock`: a fresh function's compilation is counted and timed; calling it again
    compiles nothing and takes no compiler time."""
    numba = pytest.importorskip("numba")
    if not K.HAVE_NUMBA:
        pytest.skip("no Numba")

    def add_one(x):
        return x + 1

    f = numba.njit(add_one)  # (not cached on disk: compiled here)
    with K.CompileClock() as clock:
        assert f(1) == 2
    assert clock.compilations >= 1 and clock.seconds > 0
    with K.CompileClock() as again:
        assert f(2) == 3
    assert again.compilations == 0 and again.seconds == 0.0
