"""Architecture: sizes, final filter size/stride, parameter counts, filling, validation.

Expected numbers are computed by hand in the tests from the size rule ``d_out = ⌊(d_in − k)/s⌋ + 1`` and
``k_v = 1 + Σ (k_i − 1) S_{i−1}`` (docs/theory.md, "The model").  Filling is checked against a numerical oracle
built from polynomial roots (numpy) and least squares (scipy).
"""

from __future__ import annotations

import warnings

import numpy as np
import numpy.polynomial.polynomial as npoly
import pytest
import scipy.optimize
from hypothesis import given
from hypothesis import strategies as st

from conftest import FEW, SETTINGS, arch_1d_specs, exact_input_size, polymul_final_filter
from lcnflow import Architecture, SizeRuleWarning, final_filter


# ------------------------------------------------------------------------------------------ worked examples
def test_example_1d_strided_by_hand():
    arch = Architecture(47, [3, 2, 4], strides=[2, 3, 1])
    # d1 = (47-3)//2+1 = 23, d2 = (23-2)//3+1 = 8, d3 = (8-4)//1+1 = 5
    assert arch.layer_sizes == (47, 23, 8, 5)
    assert arch.output_size == 5
    assert arch.depth == 3
    assert arch.ndim == 1
    # S = (1, 2, 6, 6);  k_v = 1 + (3-1)*1 + (2-1)*2 + (4-1)*6 = 23;  s_v = 6
    assert arch.final_filter_size == 23
    assert arch.final_stride == 6
    # exact fit: s_v (d_N - 1) + k_v = 6*4 + 23 = 47 = d_0
    assert arch.final_stride * (arch.output_size - 1) + arch.final_filter_size == 47
    assert arch.num_params == 3 + 2 + 4
    assert arch.function_space_dim == 9 - 2
    assert arch.filter_shapes == ((3,), (2,), (4,))
    assert arch.final_filter_shape == (23,)
    assert arch.is_filling is False  # dim M = 7 < 23


def test_example_2d_strided_by_hand():
    arch = Architecture((32, 32), [(3, 3), (2, 2)], strides=[(1, 1), (2, 2)])
    # d1 = 32-3+1 = 30 per axis, d2 = (30-2)//2+1 = 15 per axis
    assert arch.layer_sizes == ((32, 32), (30, 30), (15, 15))
    assert arch.ndim == 2
    # S = (1,1), (1,1), (2,2); k_v = 1 + 2*1 + 1*1 = 4 per axis; s_v = 2 per axis
    assert arch.final_filter_size == (4, 4)
    assert arch.final_stride == (2, 2)
    assert arch.final_filter_shape == (4, 4)
    assert arch.num_params == 9 + 4
    assert arch.final_filter_num_params == 16
    assert arch.function_space_dim == 13 - 1
    assert arch.is_filling is False  # dim M = 12 < 16 coefficients


def test_str_mentions_final_filter_size():
    text = str(Architecture(47, [3, 2, 4], strides=[2, 3, 1]))
    assert "k_v = 23" in text
    assert "s_v = 6" in text
    text2 = str(Architecture((32, 32), [(3, 3), (2, 2)], strides=[(1, 1), (2, 2)]))
    assert "k_v = 4×4" in text2


@SETTINGS
@given(arch_1d_specs(max_depth=5, max_k=5, max_s=3, max_out=4))
def test_sizes_match_size_rule_1d(spec):
    d0, ks, ss = spec
    arch = Architecture(d0, ks, strides=ss)
    d = [d0]
    for k, s in zip(ks, ss, strict=True):
        d.append((d[-1] - k) // s + 1)
    assert arch.layer_sizes == tuple(d)
    S, kv = 1, 1
    for k, s in zip(ks, ss, strict=True):
        kv += (k - 1) * S
        S *= s
    assert arch.final_filter_size == kv
    assert arch.final_stride == S
    assert arch.num_params == sum(ks)
    assert arch.function_space_dim == sum(ks) - (len(ks) - 1)


def test_equality_and_repr_round_trip():
    a = Architecture(47, [3, 2, 4], strides=[2, 3, 1])
    b = eval(repr(a), {"Architecture": Architecture})
    assert a == b and hash(a) == hash(b)
    assert Architecture(**a.to_dict()) == a
    c = Architecture((32, 32), [(3, 3), (2, 2)], strides=[(1, 1), (2, 2)])
    assert Architecture(**c.to_dict()) == c
    assert a != Architecture(53, [3, 2, 4], strides=[2, 3, 1])  # 53 = 6*5 + 23, exact fit with d_N = 6


def test_immutable():
    arch = Architecture(10, [3, 3])
    with pytest.raises(AttributeError):
        arch.input_size = 12


def test_numpy_integer_sizes_accepted():
    # Sizes often come from numpy (array shapes, np.arange, random draws); np.int64 is not a Python int.
    arch = Architecture(np.int64(47), [np.int64(3), np.int64(2), np.int64(4)], strides=[np.int64(2), 3, 1])
    assert arch == Architecture(47, [3, 2, 4], strides=[2, 3, 1])


# ------------------------------------------------------------------------------------------ filling
@pytest.mark.parametrize(
    ("ks", "expected"),
    [([3, 3, 3], True), ([2, 3], True), ([2, 2], False), ([2, 2, 3], False), ([4], True), ([2], True),
     ([1, 2, 1, 2], False), ([1, 2, 3, 5], True), ([4, 3, 2], False)],
)
def test_is_filling_1d_stride_one_rule(ks, expected):
    arch = Architecture(sum(ks) + 3, ks)
    assert arch.is_filling is expected
    assert isinstance(arch.filling_reason, str) and arch.filling_reason


@pytest.mark.parametrize(
    ("ks", "ss", "expected"),
    [([2, 3], [1, 4], True), ([2, 2], [1, 3], False), ([1, 2, 3], [1, 1, 3], True), ([2, 2, 1], [1, 1, 2], False)],
)
def test_last_stride_does_not_matter_for_filling(ks, ss, expected):
    # π only uses S_0 … S_{N−1}; a stride after the last nontrivial layer dilates nothing
    arch = Architecture(exact_input_size(ks, ss, 3), ks, strides=ss)
    assert arch.function_space_dim == arch.final_filter_size
    assert arch.is_filling is expected


@pytest.mark.parametrize(("ks", "ss"), [([2, 2], [2, 1]), ([3, 3], [2, 1]), ([3, 2, 2], [1, 3, 1])])
def test_not_filling_when_strides_shrink_dimension(ks, ss):
    arch = Architecture(exact_input_size(ks, ss, 3), ks, strides=ss)
    assert arch.function_space_dim < arch.final_filter_size  # checked by hand: S_{i-1} > 1 for a k_i > 1
    assert arch.is_filling is False
    assert "dim M" in arch.filling_reason


def _factor_by_roots(v: np.ndarray, degrees: list[int]) -> list[np.ndarray] | None:
    """Try to write p_v as Π_i p_i with deg p_i = degrees[i] and real coefficients, by distributing the roots.

    Every odd-degree real factor needs one real root; the rest is filled with quadratics (complex-conjugate
    pairs or pairs of real roots).  Returns None when there are too few real roots.
    """
    roots = np.roots(v[::-1])  # np.roots wants the highest degree first
    real = sorted(r.real for r in roots if abs(r.imag) < 1e-9)
    upper = [r for r in roots if r.imag > 1e-9]
    odd = [i for i, d in enumerate(degrees) if d % 2 == 1]
    if len(real) < len(odd):
        return None
    quads = [np.array([abs(r) ** 2, -2 * r.real, 1.0]) for r in upper]
    rest = real[len(odd):]
    quads += [npoly.polyfromroots([rest[2 * i], rest[2 * i + 1]]) for i in range(len(rest) // 2)]
    factors = []
    for i, d in enumerate(degrees):
        p = np.array([1.0])
        if d % 2 == 1:
            p = npoly.polyfromroots([real[odd.index(i)]])
        for _ in range(d // 2):
            p = npoly.polymul(p, quads.pop())
        factors.append(p)
    factors[0] = factors[0] * v[-1]  # leading coefficient
    return factors


def _worst_case_polynomial(degree: int, rng: np.random.Generator) -> np.ndarray:
    """A real polynomial with the fewest possible real roots (0 or 1): all other roots in conjugate pairs."""
    p = np.array([rng.uniform(0.5, 2.0)])
    if degree % 2:
        p = npoly.polymul(p, [rng.standard_normal(), 1.0])
    for _ in range(degree // 2):
        re, im = rng.standard_normal(), rng.uniform(0.5, 1.5)
        p = npoly.polymul(p, [re**2 + im**2, -2 * re, 1.0])
    return p


@FEW
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.integers(0, 2**32 - 1))
def test_is_filling_matches_root_oracle_1d(ks, seed):
    """Filling iff the polynomial with the fewest real roots factors; a found factorization is verified."""
    rng = np.random.default_rng(seed)
    arch = Architecture(sum(ks) + 2, ks)
    degree = arch.final_filter_size - 1
    v = _worst_case_polynomial(degree, rng)
    # sanity of the witness: numpy finds at most one real root
    assert sum(abs(r.imag) < 1e-9 for r in np.roots(v[::-1])) == degree % 2
    factors = _factor_by_roots(v, [k - 1 for k in ks])
    if factors is not None:
        # the factorization is a preimage: checked with numpy.polymul and with lcnflow's π
        prod = polymul_final_filter(factors, [1] * len(ks))
        np.testing.assert_allclose(prod, v, rtol=0, atol=1e-9 * np.max(np.abs(v)))
        np.testing.assert_allclose(final_filter(arch, factors), v, rtol=0, atol=1e-9 * np.max(np.abs(v)))
    # an odd-degree real factor always has a real root, so a witness with fewer real roots than odd-degree
    # layers is not in the image: filling iff the factorization was possible
    assert arch.is_filling is (factors is not None)


@pytest.mark.parametrize(
    ("ks", "target"), [([2, 2], [1.0, 0.0, 1.0]), ([2, 2, 3], [1.0, 0.0, 2.0, 0.0, 1.0])]
)
def test_not_filling_least_squares_cannot_reach_complex_roots(ks, target):
    """1 + t² and (1 + t²)² have no real root, so products with ≥ 2 odd-degree factors stay away from them."""
    target = np.asarray(target)
    assert np.all(np.abs(np.roots(target[::-1]).imag) > 0.5)
    arch = Architecture(10, ks)
    rng = np.random.default_rng(0)
    sizes = np.cumsum(ks)[:-1]
    best = np.inf
    for _ in range(20):
        res = scipy.optimize.least_squares(
            lambda w: polymul_final_filter(np.split(w, sizes), [1] * len(ks)) - target,
            rng.standard_normal(sum(ks)),
        )
        best = min(best, float(np.linalg.norm(res.fun)))
    # the image is closed and misses the target; a filling architecture would reach ~1e-8 here. The distance
    # of 1 + t² to {p1² ≥ 4 p0 p2} is 1 (attained at 1 + 0t + 0t²), so 0.5 leaves ample margin.
    assert best > 0.5
    assert arch.is_filling is False


def test_filling_architecture_least_squares_reaches_complex_roots():
    # [3, 2]: at most one even size, so (1 + t²)(0.5 + t) factors; confirm numerically it is reached
    target = npoly.polymul([1.0, 0.0, 1.0], [0.5, 1.0])
    rng = np.random.default_rng(1)
    best = min(
        float(np.linalg.norm(scipy.optimize.least_squares(
            lambda w: polymul_final_filter([w[:3], w[3:]], [1, 1]) - target, rng.standard_normal(5),
            xtol=1e-15, ftol=1e-15, gtol=1e-15).fun))
        for _ in range(10)
    )
    assert best < 1e-8
    assert Architecture(10, [3, 2]).is_filling is True


def test_is_filling_2d_filters_along_one_axis():
    # filters 1×k along the same axis behave like 1D: [3,2] along width fills, [2,2] does not
    assert Architecture((4, 10), [(1, 3), (1, 2)]).is_filling is True
    assert Architecture((4, 10), [(1, 2), (1, 2)]).is_filling is False
    assert Architecture((10, 4), [(3, 1), (2, 1)]).is_filling is True
    # 3×3 ∘ 3×3: dim M = 17 < 25
    assert Architecture((10, 10), [(3, 3), (3, 3)]).is_filling is False


def test_is_filling_single_nontrivial_layer_2d():
    # π is the identity (up to 1×1 scalars) when only one layer has more than one coefficient: always onto.
    # (These are the only 2D cases with dim M ≥ k_h·k_w that are not 1D-like: for two nontrivial layers
    # (a, b), (c, d) one has k_v − dim M = (a − 1)(d − 1) + (c − 1)(b − 1).)
    assert Architecture((5, 5), [(2, 2)]).is_filling is True
    assert Architecture((5, 5), [(1, 1), (3, 2)]).is_filling is True
    assert Architecture((7, 6), [(1, 1), (3, 2)], strides=[(1, 1), (2, 2)]).is_filling is True
    assert Architecture((5, 5), [(2, 2)]).final_filter_num_params == Architecture((5, 5), [(2, 2)]).function_space_dim


# ------------------------------------------------------------------------------------------ validation
def test_filter_larger_than_input_names_layer_and_numbers():
    with pytest.raises(ValueError, match=r"layer 2 has filter size 5 larger than its input size 4"):
        Architecture(6, [3, 5])
    with pytest.raises(ValueError, match=r"layer 1 has filter size 7 larger than its input size 6"):
        Architecture(6, [7])
    with pytest.raises(ValueError, match=r"layer 1 .*3×9.* larger than its input size 8×8"):
        Architecture((8, 8), [(3, 9)])


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"input_size": 0, "filter_sizes": [3]}, r"input_size.*positive.*0"),
        ({"input_size": -5, "filter_sizes": [3]}, r"input_size.*positive.*-5"),
        ({"input_size": 10, "filter_sizes": [3, 0]}, r"filter_sizes\[1\] \(layer 2\).*positive.*0"),
        ({"input_size": 10, "filter_sizes": [-2]}, r"filter_sizes\[0\] \(layer 1\).*positive"),
        ({"input_size": 10, "filter_sizes": [3, 3], "strides": [1, 0]},
         r"strides\[1\] \(layer 2\).*positive.*0"),
        ({"input_size": 10, "filter_sizes": [3], "strides": [-1]}, r"strides\[0\] \(layer 1\).*positive"),
        ({"input_size": 10, "filter_sizes": [3, 3], "strides": [1]},
         r"strides: has 1 entries but there are 2 layers"),
        ({"input_size": 10, "filter_sizes": [3], "strides": [1, 1]},
         r"strides: has 2 entries but there are 1 layers"),
        ({"input_size": (8, 8), "filter_sizes": [(3, 3), 2]}, r"filter_sizes\[1\] \(layer 2\).*1 axes.*2D"),
        ({"input_size": 8, "filter_sizes": [(3, 3)]}, r"filter_sizes\[0\] \(layer 1\).*2 axes.*1D"),
        ({"input_size": (8, 8), "filter_sizes": [(3, 3)], "strides": [1]},
         r"strides\[0\] \(layer 1\).*1 axes.*2D"),
        ({"input_size": 10, "filter_sizes": []}, r"filter_sizes.*non-empty"),
        ({"input_size": 10, "filter_sizes": [2.5]}, r"filter_sizes\[0\].*integer.*2.5"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Architecture(**kwargs)


def test_size_rule_warning_when_floor_drops_inputs():
    # layer 1: (10 - 3)//2 + 1 = 4 outputs use 2*3 + 3 = 9 of 10 inputs
    with pytest.warns(SizeRuleWarning, match=r"layer 1 .*uses 9 of its 10 inputs"):
        arch = Architecture(10, [3, 2], strides=[2, 1])
    assert arch.layer_sizes == (10, 4, 3)
    assert arch.dropped_inputs() == [(1, 1)]
    assert "drops" in str(arch)
    # layer 2 of a 2D net: (9 - 2)//2 + 1 = 4 uses 8 of 9 rows
    with pytest.warns(SizeRuleWarning, match=r"layer 2"):
        arch2 = Architecture((11, 10), [(3, 3), (2, 2)], strides=[(1, 1), (2, 2)])
    assert arch2.layer_sizes == ((11, 10), (9, 8), (4, 4))


def test_size_rule_warning_points_at_the_callers_line():
    # the warning should be attributed to the line that built the architecture (this file), not to its caller
    with pytest.warns(SizeRuleWarning) as record:
        Architecture(10, [3, 2], strides=[2, 1])
    assert record[0].filename == __file__


def test_no_warning_for_exact_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arch = Architecture(47, [3, 2, 4], strides=[2, 3, 1])
        Architecture((32, 32), [(3, 3), (2, 2)], strides=[(1, 1), (2, 2)])
    assert arch.dropped_inputs() == []
