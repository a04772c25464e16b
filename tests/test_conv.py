"""π, its derivatives, Π and H against independent oracles.

Oracles: ``numpy.polynomial.polynomial.polymul`` of dilated coefficient arrays (1D), dense layer
matrices built entry by entry from ``(Π(w)x)_a = Σ_j w_j x_{a·s+j}`` (conftest),
``scipy.signal.correlate``, and central finite differences.

Rounding scale: every coefficient of π(w) is a sum of products of filter entries, so its floating-point
error is at most ``c·N·k_v·ε`` times the same sum taken with absolute values, ``π(|w|)``; tolerances use that scale.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
from hypothesis import given

from conftest import (
    EPS,
    SETTINGS,
    arch_1d_specs,
    arch_2d_specs,
    dilate_coefficients,
    exact_input_size,
    loop_layer_matrix,
    loop_network_matrix,
    loop_patch_matrix,
    loop_strided_correlation,
    polymul_abs_scale,
    polymul_final_filter,
    random_filters,
    seeds,
)
from lcnflow import (
    Architecture,
    final_filter,
    final_filter_hessian_contraction,
    final_filter_jacobian,
    flatten,
    layer_matrix,
    network_matrix,
    patch_matrix,
    unflatten,
)
from lcnflow.model.conv import as_filters, flat_norm, unflatten_unchecked

ROUND = 1e3 * EPS  # c·N·k_v·ε with generous c for the sizes drawn here (N ≤ 4, k_v ≤ 40)


def _abs_scale_2d(filters, input_size, strides) -> float:
    """max of π(|w|): every entry of V(|w|) is a coefficient of π(|w|) or 0, so take V from the loop oracle."""
    return float(np.max(loop_network_matrix([np.abs(w) for w in filters], input_size, strides)))


def test_dilate_oracle_sanity():
    np.testing.assert_array_equal(dilate_coefficients([1.0, 2.0, 3.0], 3), [1, 0, 0, 2, 0, 0, 3])


# ------------------------------------------------------------------------------------------ π in 1D
@SETTINGS
@given(arch_1d_specs(), seeds)
def test_final_filter_equals_polymul_of_dilated_filters(spec, seed):
    d0, ks, ss = spec
    arch = Architecture(d0, ks, strides=ss)
    ws = random_filters(np.random.default_rng(seed), ks)
    v = final_filter(arch, ws)
    expected = polymul_final_filter(ws, ss)
    assert v.shape == (arch.final_filter_size,) == expected.shape
    np.testing.assert_allclose(v, expected, rtol=0, atol=ROUND * polymul_abs_scale(ws, ss))


@SETTINGS
@given(arch_1d_specs(max_out=4), seeds)
def test_network_matrix_1d_is_strided_correlation_with_final_filter(spec, seed):
    d0, ks, ss = spec
    arch = Architecture(d0, ks, strides=ss)
    rng = np.random.default_rng(seed)
    ws = random_filters(rng, ks)
    V_loop = loop_network_matrix(ws, d0, ss)
    scale = polymul_abs_scale(ws, ss)
    np.testing.assert_allclose(network_matrix(arch, ws), V_loop, rtol=0, atol=ROUND * scale)
    for i, (w, s) in enumerate(zip(ws, ss, strict=True)):
        d_in = arch.layer_sizes[i]
        np.testing.assert_array_equal(layer_matrix(w, d_in, s), loop_layer_matrix(w, d_in, s))
    # V x equals the correlation of x with v = π(w) at stride s_v (oracle: scipy.signal.correlate, subsampled)
    v = polymul_final_filter(ws, ss)
    x = rng.standard_normal(d0)
    full = scipy.signal.correlate(x, v, mode="valid", method="direct")
    expected = full[:: arch.final_stride][: arch.output_size]
    tol = ROUND * scale * np.sum(np.abs(x))
    np.testing.assert_allclose(V_loop @ x, expected, rtol=0, atol=tol)
    np.testing.assert_allclose(network_matrix(arch, ws) @ x, expected, rtol=0, atol=tol)


@SETTINGS
@given(arch_1d_specs(max_s=1, max_out=6), seeds)
def test_stride_one_network_is_scipy_correlate(spec, seed):
    d0, ks, ss = spec
    arch = Architecture(d0, ks, strides=ss)
    rng = np.random.default_rng(seed)
    ws = random_filters(rng, ks)
    X = rng.standard_normal((3, d0))
    v = final_filter(arch, ws)
    out = X @ network_matrix(arch, ws).T
    for j in range(3):
        expected = scipy.signal.correlate(X[j], v, mode="valid", method="direct")
        np.testing.assert_allclose(out[j], expected, rtol=0,
                                   atol=ROUND * polymul_abs_scale(ws, ss) * np.sum(np.abs(X[j])))


# ------------------------------------------------------------------------------------------ 2D
@SETTINGS
@given(arch_2d_specs(), seeds)
def test_2d_matrices_and_final_filter_against_loop_oracles(spec, seed):
    d0, ks, ss = spec
    arch = Architecture(d0, ks, strides=ss)
    rng = np.random.default_rng(seed)
    ws = random_filters(rng, ks)
    for i, (w, s) in enumerate(zip(ws, ss, strict=True)):
        d_in = arch.layer_sizes[i]
        np.testing.assert_array_equal(layer_matrix(w, d_in, s), loop_layer_matrix(w, d_in, s))
    V = loop_network_matrix(ws, d0, ss)
    scale = _abs_scale_2d(ws, d0, ss)
    np.testing.assert_allclose(network_matrix(arch, ws), V, rtol=0, atol=ROUND * scale)
    # V x equals the 2D correlation of x with v = π(w) at stride s_v (loop oracle), for random images x
    v = final_filter(arch, ws)
    assert v.shape == arch.final_filter_shape
    m = 3
    X = rng.standard_normal((m, *d0))
    for x in X:
        expected = loop_strided_correlation(x, v, arch.final_stride, arch.output_size)
        np.testing.assert_allclose(V @ x.ravel(), expected, rtol=0, atol=ROUND * scale * np.sum(np.abs(x)))
    # H v equals the stacked network outputs
    H = patch_matrix(arch, X)
    np.testing.assert_array_equal(H, loop_patch_matrix(X, arch.final_filter_size, arch.final_stride,
                                                       arch.output_size))
    np.testing.assert_allclose(H @ v.ravel(), (X.reshape(m, -1) @ V.T).ravel(), rtol=0,
                               atol=ROUND * scale * np.max(np.sum(np.abs(X.reshape(m, -1)), axis=1)))


def test_2d_separable_filters_give_outer_product_final_filter():
    # a separable filter a⊗b per layer gives π(w) = π(a)⊗π(b) (2D is "per axis"); oracle: 1D polymul per axis
    rng = np.random.default_rng(3)
    ks, ss = [(3, 2), (2, 3), (2, 2)], [(2, 1), (1, 3), (1, 1)]
    arch = Architecture(exact_input_size(ks, ss, (2, 3)), ks, strides=ss)
    rows = [rng.standard_normal(k[0]) for k in ks]
    cols = [rng.standard_normal(k[1]) for k in ks]
    v = final_filter(arch, [np.outer(a, b) for a, b in zip(rows, cols, strict=True)])
    expected = np.outer(polymul_final_filter(rows, [s[0] for s in ss]),
                        polymul_final_filter(cols, [s[1] for s in ss]))
    np.testing.assert_allclose(v, expected, rtol=0, atol=ROUND * np.max(np.abs(expected)) * 10)


@SETTINGS
@given(arch_1d_specs(max_out=4), seeds)
def test_patch_matrix_1d_against_loop_and_network(spec, seed):
    d0, ks, ss = spec
    arch = Architecture(d0, ks, strides=ss)
    rng = np.random.default_rng(seed)
    ws = random_filters(rng, ks)
    m = 4
    X = rng.standard_normal((m, d0))
    H = patch_matrix(arch, X)
    assert H.shape == (m * arch.output_size, arch.final_filter_size)
    np.testing.assert_array_equal(H, loop_patch_matrix(X, arch.final_filter_size, arch.final_stride,
                                                       arch.output_size))
    V = loop_network_matrix(ws, d0, ss)
    v = polymul_final_filter(ws, ss)
    np.testing.assert_allclose(H @ v, (X @ V.T).ravel(), rtol=0,
                               atol=ROUND * polymul_abs_scale(ws, ss) * np.max(np.sum(np.abs(X), axis=1)))


def test_network_matrix_with_dropped_inputs():
    # layer 1 drops one input: the last column of V is zero, and V still matches the loop oracle
    with pytest.warns(Warning):
        arch = Architecture(10, [3, 2], strides=[2, 1])
    ws = [np.array([1.0, -2.0, 0.5]), np.array([0.3, 1.1])]
    V = network_matrix(arch, ws)
    np.testing.assert_allclose(V, loop_network_matrix(ws, 10, [2, 1]), rtol=0, atol=1e-14)
    assert np.all(V[:, -1] == 0)
    # H still reproduces V x: k_v = 1 + 2 + 1·2 = 5, s_v = 2, d_N = 3
    X = np.random.default_rng(9).standard_normal((2, 10))
    H = patch_matrix(arch, X)
    np.testing.assert_array_equal(H, loop_patch_matrix(X, 5, 2, 3))
    np.testing.assert_allclose(H @ polymul_final_filter(ws, [2, 1]), (X @ V.T).ravel(), rtol=0, atol=1e-13)


# ------------------------------------------------------------------------------------------ derivatives
def _central_jacobian(f, w, h):
    cols = []
    for j in range(w.size):
        e = np.zeros_like(w)
        e[j] = h
        cols.append((np.ravel(f(w + e)) - np.ravel(f(w - e))) / (2 * h))
    return np.stack(cols, axis=1)


DERIV_CASES = [
    (9, [3, 2, 3], [1, 1, 1]),
    (47, [3, 2, 4], [2, 3, 1]),
    (exact_input_size([(3, 2), (2, 2)], [(1, 1), (2, 2)], (3, 2)), [(3, 2), (2, 2)], [(1, 1), (2, 2)]),
    (8, [5], [1]),
    (exact_input_size([2, 3, 2, 2], [2, 1, 2, 1], 2), [2, 3, 2, 2], [2, 1, 2, 1]),
    (exact_input_size([(2, 3), (3, 2), (2, 2)], [(2, 1), (1, 2), (1, 1)], (2, 2)),
     [(2, 3), (3, 2), (2, 2)], [(2, 1), (1, 2), (1, 1)]),
]


@pytest.mark.parametrize(("d0", "ks", "ss"), DERIV_CASES)
def test_final_filter_jacobian_vs_central_differences(d0, ks, ss):
    arch = Architecture(d0, ks, strides=ss)
    rng = np.random.default_rng(11)
    w = flatten(random_filters(rng, ks))
    J = final_filter_jacobian(arch, w)
    assert J.shape == (arch.final_filter_num_params, arch.num_params)
    # π is affine in each single coordinate (multilinear), so the central difference is exact up to rounding:
    # error ≈ ε·max|π| / h, here ~1e-13 for h = 1e-3
    h = 1e-3
    J_fd = _central_jacobian(lambda u: final_filter(arch, u), w, h)
    np.testing.assert_allclose(J, J_fd, rtol=0, atol=1e-9 * max(1.0, np.max(np.abs(J))))
    # π has degree 1 in each layer: the w^(i)-block of J applied to w^(i) gives π(w) (Euler's identity)
    v = final_filter(arch, w).ravel()
    start = 0
    for n in arch.layer_num_params:
        np.testing.assert_allclose(J[:, start:start + n] @ w[start:start + n], v, rtol=0,
                                   atol=1e-12 * max(1.0, np.max(np.abs(v))))
        start += n


@pytest.mark.parametrize(("d0", "ks", "ss"), DERIV_CASES)
def test_final_filter_hessian_contraction_vs_differences_of_jacobian(d0, ks, ss):
    arch = Architecture(d0, ks, strides=ss)
    rng = np.random.default_rng(12)
    w = flatten(random_filters(rng, ks))
    g = rng.standard_normal(arch.final_filter_shape)
    B = final_filter_hessian_contraction(arch, w, g)
    assert B.shape == (arch.num_params, arch.num_params)
    np.testing.assert_allclose(B, B.T, rtol=0, atol=0)
    # Jᵀg is again affine in each single coordinate, so central differences are exact up to rounding
    h = 1e-3
    B_fd = _central_jacobian(lambda u: final_filter_jacobian(arch, u).T @ g.ravel(), w, h)
    np.testing.assert_allclose(B, B_fd, rtol=0, atol=1e-9 * max(1.0, np.max(np.abs(B_fd))))
    # diagonal blocks vanish (π is linear in each layer)
    start = 0
    for n in arch.layer_num_params:
        assert np.all(B[start:start + n, start:start + n] == 0)
        start += n


def test_final_filter_multilinear_and_rescaling_invariance():
    arch = Architecture(47, [3, 2, 4], strides=[2, 3, 1])
    rng = np.random.default_rng(5)
    ws = random_filters(rng, [3, 2, 4])
    u = rng.standard_normal(2)
    v = final_filter(arch, ws)
    # linear in layer 2
    a, b = 1.7, -0.4
    lin = final_filter(arch, [ws[0], a * ws[1] + b * u, ws[2]])
    np.testing.assert_allclose(lin, a * v + b * final_filter(arch, [ws[0], u, ws[2]]), rtol=0, atol=1e-13 * 4)
    # invariant under w1 → c w1, w3 → w3 / c
    c = 3.0
    np.testing.assert_allclose(final_filter(arch, [c * ws[0], ws[1], ws[2] / c]), v, rtol=0,
                               atol=ROUND * polymul_abs_scale(ws, [2, 3, 1]))


# ------------------------------------------------------------------------------- flat layout, validation
def test_flatten_unflatten_round_trip_and_order():
    ks, ss = [(2, 3), (3, 2), (1, 2)], [(2, 1), (1, 2), (1, 1)]
    arch = Architecture(exact_input_size(ks, ss, (2, 2)), ks, strides=ss)
    ws = [np.arange(6.0).reshape(2, 3), 10 + np.arange(6.0).reshape(3, 2), 20 + np.arange(2.0).reshape(1, 2)]
    flat = flatten(ws)
    # layer by layer, row-major inside each filter
    np.testing.assert_array_equal(flat, [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 20, 21])
    assert flat.dtype == np.float64
    back = unflatten(arch, flat)
    assert [b.shape for b in back] == [(2, 3), (3, 2), (1, 2)]
    for a, b in zip(ws, back, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(flatten(unflatten(arch, flat)), flat)
    # flat and list inputs give the same π
    np.testing.assert_array_equal(final_filter(arch, flat), final_filter(arch, ws))
    with pytest.raises(ValueError, match=r"expected a flat vector of 14 entries"):
        unflatten(arch, np.zeros(13))


def test_unchecked_helpers_agree_with_the_checked_ones():
    """unflatten_unchecked splits like unflatten (views, no checks); flat_norm is float(np.linalg.norm(x)) bit for
    bit, for contiguous, strided and 2D arrays."""
    arch = Architecture(9, [3, 2, 3])
    w = np.random.default_rng(0).standard_normal(8)
    for a, b in zip(unflatten(arch, w), unflatten_unchecked(arch, w), strict=True):
        np.testing.assert_array_equal(a, b)
        assert np.shares_memory(b, w)
    rng = np.random.default_rng(1)
    for x in (rng.standard_normal(9), rng.standard_normal(40)[::3], rng.standard_normal((4, 5)),
              rng.standard_normal((5, 4)).T, np.zeros(0), 1e200 * rng.standard_normal(3)):
        with np.errstate(over="ignore"):
            assert flat_norm(x) == float(np.linalg.norm(x))
            assert isinstance(flat_norm(x), float)


def test_unflatten_1d_order():
    arch = Architecture(9, [3, 2, 3])
    ws = unflatten(arch, np.arange(8.0))
    np.testing.assert_array_equal(ws[0], [0, 1, 2])
    np.testing.assert_array_equal(ws[1], [3, 4])
    np.testing.assert_array_equal(ws[2], [5, 6, 7])


@pytest.mark.parametrize(
    ("filters", "pattern"),
    [
        ([np.ones(3), np.ones(2)], r"expected 3 filters \(one per layer\), got 2"),
        ([np.ones(3), np.ones(3), np.ones(3)], r"\[1\] \(layer 2\): expected shape \(2,\), got shape \(3,\)"),
        ([np.ones(3), np.ones(2), np.ones((3, 1))],
         r"\[2\] \(layer 3\): expected shape \(3,\), got shape \(3, 1\)"),
        ([np.ones(3), np.array([1.0, np.nan]), np.ones(3)], r"\[1\] \(layer 2\): 1 non-finite.*index \(1,\)"),
        ([np.array([np.inf, 1.0, -np.inf]), np.ones(2), np.ones(3)], r"\[0\] \(layer 1\): 2 non-finite"),
        (np.ones(7), r"expected a flat vector of 8 entries"),
    ],
)
def test_as_filters_errors_name_the_layer(filters, pattern):
    arch = Architecture(9, [3, 2, 3])
    with pytest.raises(ValueError, match=pattern):
        as_filters(arch, filters)
    # the public entry points validate the same way
    with pytest.raises(ValueError, match=pattern):
        final_filter(arch, filters)


def test_as_filters_2d_shape_error():
    arch = Architecture((6, 6), [(2, 3), (2, 2)])
    with pytest.raises(ValueError, match=r"\[0\] \(layer 1\): expected shape \(2, 3\), got shape \(3, 2\)"):
        final_filter_jacobian(arch, [np.ones((3, 2)), np.ones((2, 2))])
    with pytest.raises(ValueError, match=r"\[1\] \(layer 2\).*non-finite"):
        network_matrix(arch, [np.ones((2, 3)), np.array([[1.0, 2.0], [np.nan, 0.0]])])


def test_final_filter_of_ones_counts_paths():
    # with all-ones filters, v_t counts the ways t = Σ_i j_i S_{i-1}; check against brute force enumeration
    ks, ss = [3, 2, 3], [2, 1, 2]
    arch = Architecture(exact_input_size(ks, ss, 2), ks, strides=ss)
    counts = np.zeros(arch.final_filter_size)
    S = [1, 2, 2]
    for j1 in range(3):
        for j2 in range(2):
            for j3 in range(3):
                counts[j1 * S[0] + j2 * S[1] + j3 * S[2]] += 1
    np.testing.assert_array_equal(final_filter(arch, [np.ones(k) for k in ks]), counts)
    assert math.isclose(counts.sum(), 3 * 2 * 3)


@pytest.mark.parametrize(("d0", "ks", "ss"), [(19, [3, 2, 4], [2, 1, 2]), (9, [2, 3, 2], [1, 1, 1])])
def test_final_filter_parts_share_one_factorization(d0, ks, ss):
    from lcnflow.model.conv import final_filter_parts

    arch = Architecture(d0, ks, strides=ss)
    rng = np.random.default_rng(5)
    ws = [rng.standard_normal(k) for k in ks]
    parts = final_filter_parts(arch, ws)
    # π against numpy.polynomial's products of dilated polynomials (sums of ≤ k_v products of O(1) numbers)
    np.testing.assert_allclose(parts.final_filter, polymul_final_filter(ws, ss), rtol=0, atol=1e-13)
    # the VJP is the transposed Jacobian applied to g, with the Jacobian by central differences of π
    g = rng.standard_normal(arch.final_filter_shape)
    J_fd = _central_jacobian(lambda u: final_filter(arch, u), flatten(ws), 1e-3)
    # π is affine in each single coordinate: central differences are exact up to rounding ε·max|π|/h ~ 1e-12
    np.testing.assert_allclose(parts.jacobian(), J_fd, rtol=0, atol=1e-9)
    np.testing.assert_allclose(flatten(parts.vjp(g)), J_fd.T @ g.ravel(), rtol=0, atol=1e-9 * np.sum(np.abs(g)))
