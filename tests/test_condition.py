"""check_data_condition: the rank of the patch operator H against numpy.linalg.svd of a loop-built H.

Singular values from a (streamed) QR factor are backward stable: absolute error ~ √n·ε·σ_max, so
tolerances are stated relative to σ_max.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import exact_input_size, loop_patch_matrix
from lcnflow import Architecture, DataCondition, Dataset, EmpiricalRisk, check_data_condition, patch_matrix

ARCH_1D = Architecture(47, [3, 2, 4], strides=[2, 3, 1])  # k_v = 23, s_v = 6, d_N = 5
KS_2D, SS_2D = [(2, 3), (2, 2)], [(1, 2), (2, 1)]
ARCH_2D = Architecture(exact_input_size(KS_2D, SS_2D, (3, 3)), KS_2D, strides=SS_2D)  # k_v = 3×4


def _data(arch, X):
    m = X.shape[0]
    dN = arch.output_size if isinstance(arch.output_size, tuple) else (arch.output_size,)
    return Dataset(X, np.zeros((m, *dN)))


def _svd_oracle(arch, X):
    H = loop_patch_matrix(X, arch.final_filter_size, arch.final_stride, arch.output_size)
    return H, np.linalg.svd(H, compute_uv=False)


@pytest.mark.parametrize("arch", [ARCH_1D, ARCH_2D], ids=["1d", "2d"])
def test_gaussian_data_satisfy_condition_and_match_svd(arch):
    rng = np.random.default_rng(0)
    d0 = arch.input_size if isinstance(arch.input_size, tuple) else (arch.input_size,)
    X = rng.standard_normal((12, *d0))
    cond = check_data_condition(arch, _data(arch, X))
    assert isinstance(cond, DataCondition)
    assert cond.satisfied is True
    assert cond.rank == cond.final_filter_size == arch.final_filter_num_params
    H, sv = _svd_oracle(arch, X)
    assert cond.num_equations == H.shape[0]
    # eigenvalues of the Gram HᵀH vs direct SVD: σ from λ = σ² is off by ≲ ε·σ_max²/σ_min, far below 1e-12·σ_max
    # for this well-conditioned H
    assert cond.largest_singular_value == pytest.approx(sv[0], abs=1e-12 * sv[0])
    assert cond.smallest_singular_value == pytest.approx(sv[-1], abs=1e-12 * sv[0])
    assert cond.condition_number == pytest.approx(sv[0] / sv[-1], rel=1e-10)
    # and patch_matrix is the same H
    np.testing.assert_array_equal(patch_matrix(arch, X), H)
    assert "satisfied" in str(cond) and "NOT" not in str(cond)
    # the risk exposes the same check: the same computation for a general loss ...
    assert EmpiricalRisk(arch, "pseudo_huber", _data(arch, X)).data_condition == cond
    # ... and, for the square loss, singular values from the eigenvalues of its Gram matrix G = HᵀH/m: their
    # relative error is about ε·(σ_max/σ_min)², far below 1e-10 for this well-conditioned H
    gram_cond = EmpiricalRisk(arch, "square", _data(arch, X)).data_condition
    assert (gram_cond.satisfied, gram_cond.rank) == (cond.satisfied, cond.rank)
    assert gram_cond.smallest_singular_value == pytest.approx(sv[-1], rel=1e-10)
    assert gram_cond.largest_singular_value == pytest.approx(sv[0], rel=1e-10)


@pytest.mark.parametrize("arch", [ARCH_1D, ARCH_2D], ids=["1d", "2d"])
def test_streamed_path_agrees_with_dense(arch):
    rng = np.random.default_rng(1)
    d0 = arch.input_size if isinstance(arch.input_size, tuple) else (arch.input_size,)
    X = rng.standard_normal((15, *d0))
    data = _data(arch, X)
    dense = check_data_condition(arch, data)
    # 1000 bytes hold fewer than k_v rows of H for the 1D net (one sample is 5 × 23 × 8 = 920 bytes), so the
    # QR is accumulated over many chunks, some with fewer rows than columns
    streamed = check_data_condition(arch, data, max_bytes=1000)
    _, sv = _svd_oracle(arch, X)
    for c in (dense, streamed):
        assert c.satisfied and c.rank == arch.final_filter_num_params
        assert c.largest_singular_value == pytest.approx(sv[0], abs=1e-12 * sv[0])
        assert c.smallest_singular_value == pytest.approx(sv[-1], abs=1e-12 * sv[0])
    assert streamed.condition_number == pytest.approx(dense.condition_number, rel=1e-10)
    # the streamed QR factor, which serves data whose Gram is too ill-conditioned for its eigenvalues, on its own:
    # backward stable, error ≲ √n·ε·σ_max
    from lcnflow.model.condition import _singular_values

    qr = _singular_values(arch, data, 1000)
    np.testing.assert_allclose(qr, sv, rtol=0, atol=1e-12 * sv[0])


def test_streamed_path_detects_rank_deficiency():
    X = np.outer(np.arange(1.0, 16.0), np.ones(47))  # constant signals
    c = check_data_condition(ARCH_1D, _data(ARCH_1D, X), max_bytes=1000)
    assert c.satisfied is False and c.rank == 1


@pytest.mark.parametrize("arch", [ARCH_1D, ARCH_2D], ids=["1d", "2d"])
def test_constant_signals_give_rank_one(arch):
    d0 = arch.input_size if isinstance(arch.input_size, tuple) else (arch.input_size,)
    rng = np.random.default_rng(2)
    c = rng.standard_normal(20)
    X = c.reshape(-1, *([1] * len(d0))) * np.ones((20, *d0))
    res = check_data_condition(arch, _data(arch, X))
    assert res.satisfied is False
    assert res.rank == 1  # every patch is a multiple of the all-ones vector
    assert res.condition_number == np.inf
    _, sv = _svd_oracle(arch, X)
    assert res.smallest_singular_value <= 1e-12 * sv[0]
    assert "NOT satisfied" in str(res)
    assert "rank H = 1 < k_v" in res.explanation
    assert res.inputs_full_row_rank is False and res.inputs_rank == 1


def test_too_few_equations():
    # m·d_N = 4·5 = 20 < k_v = 23: H has 20 rows, rank ≤ 20
    rng = np.random.default_rng(3)
    X = rng.standard_normal((4, 47))
    res = check_data_condition(ARCH_1D, _data(ARCH_1D, X))
    assert res.num_equations == 20
    assert res.satisfied is False
    assert res.rank == np.linalg.matrix_rank(loop_patch_matrix(X, 23, 6, 5)) == 20
    assert res.smallest_singular_value == 0.0
    # the fix is spelled out: more samples (ceil(23 / 5) = 5 in total) or longer signals
    assert "samples" in res.explanation
    assert "at least 5" in res.explanation
    # one more sample fixes it
    X5 = np.vstack([X, rng.standard_normal((1, 47))])
    assert check_data_condition(ARCH_1D, _data(ARCH_1D, X5)).satisfied is True


@pytest.mark.parametrize(("arch", "period"), [(Architecture(30, [4, 4, 4]), 4), (ARCH_1D, 5), (ARCH_1D, 7)])
def test_periodic_signals_with_short_period(arch, period):
    # a p-periodic signal's patches live in the p-dimensional space of p-periodic vectors, so rank H ≤ p < k_v
    assert period < arch.final_filter_size
    rng = np.random.default_rng(4)
    m = 3 * period
    X = np.stack([np.resize(rng.standard_normal(period), arch.input_size) for _ in range(m)])
    res = check_data_condition(arch, _data(arch, X))
    assert res.satisfied is False
    H, _ = _svd_oracle(arch, X)
    assert res.rank == np.linalg.matrix_rank(H) == period  # generic periodic data reach the bound
    assert "periodic" in res.explanation


def test_images_constant_along_rows_are_rank_deficient():
    # x[i, j] = f(i): patches depend only on the k_h row values, so rank ≤ k_h < k_h·k_w
    rng = np.random.default_rng(5)
    d0 = ARCH_2D.input_size
    X = np.stack([np.repeat(rng.standard_normal((d0[0], 1)), d0[1], axis=1) for _ in range(10)])
    res = check_data_condition(ARCH_2D, _data(ARCH_2D, X))
    assert res.satisfied is False
    assert res.rank == ARCH_2D.final_filter_size[0]


def test_inputs_full_row_rank_cases():
    arch = Architecture(12, [3, 2])  # k_v = 4, d_0 = 12
    rng = np.random.default_rng(6)
    many = rng.standard_normal((20, 12))
    res = check_data_condition(arch, _data(arch, many))
    assert res.inputs_full_row_rank is True and res.inputs_rank == 12 and res.input_dim == 12
    assert res.satisfied is True
    # fewer samples than d_0: the classical condition fails, yet H (k_v = 4 columns) still has full rank
    few = rng.standard_normal((3, 12))
    res = check_data_condition(arch, _data(arch, few))
    assert res.inputs_full_row_rank is False and res.inputs_rank == 3
    assert res.satisfied is True
    assert "not needed" in res.explanation


def test_ill_conditioned_data_are_flagged():
    # nearly constant signals: full rank, but σ_min/σ_max ~ 1e-11
    rng = np.random.default_rng(7)
    X = 1.0 + 1e-10 * rng.standard_normal((20, 47))
    res = check_data_condition(ARCH_1D, _data(ARCH_1D, X))
    _, sv = _svd_oracle(ARCH_1D, X)
    # the oracle agrees the rank is full: σ_min ≈ 5e-10 is ~500× numpy's rank tolerance σ_max·n·ε ≈ 1e-12
    assert sv[-1] > 100 * sv[0] * 100 * np.finfo(float).eps
    assert res.satisfied is True
    # σ_min carries an absolute error ~ ε·σ_max ≈ 1e-15·σ_max, i.e. ~1e-4 relative here
    assert res.condition_number == pytest.approx(sv[0] / sv[-1], rel=1e-3)
    assert res.condition_number > 1e10
    assert "large" in res.explanation


def test_shapes_checked():
    with pytest.raises(ValueError, match=r"expected shape \(3, 47\)"):
        check_data_condition(ARCH_1D, Dataset(np.zeros((3, 40)), np.zeros((3, 5))))


def test_to_dict_round_trip():
    rng = np.random.default_rng(8)
    res = check_data_condition(ARCH_1D, _data(ARCH_1D, rng.standard_normal((6, 47))))
    d = res.to_dict()
    assert DataCondition(**d) == res
