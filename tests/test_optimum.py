"""best_on_function_space (ℒ*_M, the best an architecture can do) against oracles lcnflow did not write.

Oracles:

* closed forms derived by hand for identity-like data (``G = I``, so ``ℒ(v) = ½‖v − y‖²``): quadratics ``k = (2, 2)``
  with a target ``y0 + y2·x²`` (complex roots), and stride-2 architectures whose function space is a set of
  rank-one matrices (Eckart–Young);
* brute force over real-rooted polynomials in a *different* parametrization than the code's: ``r`` real roots at
  angles ``θ_1 ≤ … ≤ θ_r`` (a grid over all of them, then BFGS and Nelder–Mead) times a free cofactor solved by
  ``numpy.linalg.lstsq`` on the loop-built patch matrix — the code instead places real double roots recursively;
* ``np.roots`` to check that the returned filter lies in M.
"""

from __future__ import annotations

import numpy as np
import pytest

import lcnflow
from conftest import loop_patch_matrix, numpy_loss
from lcnflow import Architecture, Dataset, EmpiricalRisk
from lcnflow.analysis.optimum import FunctionSpaceBest, best_on_function_space, real_root_count
from optimum_helpers import brute_force, complex_rooted, identity_risk, numpy_real_roots


# ------------------------------------------------------------------------------------------ closed forms
@pytest.mark.parametrize(("y0", "y2"), [(1.0, 1.0), (1.5, 1.0), (0.3, 2.0)])
def test_quadratic_target_with_complex_roots_closed_form(y0, y2):
    """k = (2, 2): M = {v : v1² ≥ 4 v0 v2}.  For y = (y0, 0, y2), y0, y2 > 0 (roots ±i√(y0/y2)):
    on {v1² > 4v0v2} the optimum has v1 = 0, hence v0v2 < 0; on {v1² = 4v0v2 ≥ 0} the cost
    4v0v2 + (v0 − y0)² + (v2 − y2)² has an indefinite Hessian, so its minimum is at v0v2 = 0.  Either way the best is
    to zero the smaller of y0, y2: ℒ*_M = ½ min(y0, y2)², v*_M = y with that coefficient set to 0 (a double root at
    0 or at infinity)."""
    risk = identity_risk([2, 2], [y0, 0.0, y2])
    best = best_on_function_space(risk)
    assert best.method == "real_root_recursion" and best.exact and best.unconstrained_in_m is False
    assert best.unconstrained_value == pytest.approx(0.0, abs=1e-15)
    assert best.value == pytest.approx(0.5 * min(y0, y2) ** 2, rel=1e-10)
    if y0 != y2:
        expected = np.array([y0, 0.0, 0.0]) if y0 > y2 else np.array([0.0, 0.0, y2])
        np.testing.assert_allclose(best.filter, expected, rtol=0, atol=1e-6 * max(y0, y2))
    assert numpy_real_roots(best.filter) >= 2


def _rank_one_case(y, strides):
    risk = identity_risk([2, 2], y, strides)
    kv = risk.arch.final_filter_size
    assert kv == 4 and risk.arch.is_filling is False
    return risk


def test_stride_two_function_space_of_rank_one_matrices():
    """k = (2, 2), strides (2, 1): p_v(t) = p_1(t)·p_2(t²), so v = (a0b0, a1b0, a0b1, a1b1) is the rank-one matrix
    a bᵀ read column by column.  With G = I, ℒ*_M = ½ σ_2(Y)² (Eckart–Young, numpy SVD), ℒ* = 0.  M has no exact
    description implemented here: the result is a best-found bound, labelled so."""
    rng = np.random.default_rng(5)
    y = rng.standard_normal(4)
    risk = _rank_one_case(y, [2, 1])
    best = best_on_function_space(risk)
    Y = y.reshape(2, 2).T  # Y[i, j] = y[i + 2j]
    sigma = np.linalg.svd(Y, compute_uv=False)
    assert best.method == "multistart" and best.exact is False
    assert "best found" in best.statement and "upper bound" in best.statement
    assert best.value == pytest.approx(0.5 * sigma[1] ** 2, rel=1e-8)
    V = np.asarray(best.filter).reshape(2, 2).T
    assert np.linalg.svd(V, compute_uv=False)[1] <= 1e-6 * sigma[0]  # rank one


def test_stride_two_rank_one_target_is_exact():
    """A rank-one target is itself in M: the search reaches ℒ* = 0, which proves it optimal (exact)."""
    y = np.outer([1.0, -2.0], [0.5, 3.0]).T.reshape(-1)  # column-major read of a rank-one matrix
    best = best_on_function_space(_rank_one_case(y, [2, 1]))
    assert best.exact is True and best.unconstrained_in_m is True
    assert best.value == pytest.approx(0.0, abs=1e-12)


CASES = [([2, 2], 0), ([2, 2], 1), ([2, 2, 2], 2), ([2, 2, 2], 3), ([2, 2, 3], 4), ([4, 2], 5), ([2, 4, 2], 6),
         ([2, 2, 2, 2], 7), ([2, 3, 2, 2], 8), ([2, 2, 2, 2, 2], 9), ([3, 2, 2, 2, 2], 10),
         ([2, 2, 2, 2, 2, 2], 11)]


@pytest.mark.parametrize(("filter_sizes", "seed"), CASES)
def test_best_value_matches_brute_force_over_real_rooted_polynomials(filter_sizes, seed):
    """Random data (G ≠ I), targets from a filter with complex roots plus noise, so that v̂ ∉ M: ℒ*_M from the
    double-root recursion equals the brute force over r real roots to 1e-8 (relative), and v*_M lies in M."""
    rng = np.random.default_rng(100 + seed)
    out = 3
    arch = Architecture(sum(k - 1 for k in filter_sizes) + out, filter_sizes)
    D, r = arch.final_filter_size - 1, sum((k - 1) % 2 for k in filter_sizes)
    m = 4
    X = rng.standard_normal((m, arch.input_size))
    H = loop_patch_matrix(X, D + 1, 1, out)
    y = H @ complex_rooted(D, rng) + 0.05 * rng.standard_normal(m * out)
    risk = EmpiricalRisk(arch, "square", Dataset(X, y.reshape(m, out)))
    best = best_on_function_space(risk)
    assert best.method == "real_root_recursion" and best.exact
    oracle = brute_force(H, y, m, D, r, keep=3 if r < 6 else 1)
    assert best.value == pytest.approx(oracle, rel=1e-8)
    # v*_M is in M (np.roots; a root of multiplicity μ is computed to ~ε^{1/μ}, up to 2e-3 for μ = 6, hence the
    # loose tolerance) and its risk, computed on the loop-built H, is the value
    assert numpy_real_roots(best.filter, tol=1e-2) >= r
    assert 0.5 * np.sum((H @ best.filter - y) ** 2) / m == pytest.approx(best.value, rel=1e-12)
    assert best.value >= best.unconstrained_value


def test_best_value_for_a_robust_loss_matches_brute_force():
    """Pseudo-Huber, k = (2, 2, 2): the same recursion with Newton inner solves, against the brute force with BFGS
    inner solves on the numpy formula of the loss."""
    rng = np.random.default_rng(7)
    arch = Architecture(6, [2, 2, 2])
    m, out = 4, 3
    X = rng.standard_normal((m, 6))
    H = loop_patch_matrix(X, 4, 1, out)
    y = H @ complex_rooted(3, rng) + 0.3 * rng.standard_normal(m * out)
    risk = EmpiricalRisk(arch, lcnflow.get_loss("pseudo_huber", delta=0.5), Dataset(X, y.reshape(m, out)))
    best = best_on_function_space(risk)
    assert best.method == "real_root_recursion"
    ell = numpy_loss("pseudo_huber", {"delta": 0.5})
    oracle = brute_force(H, y, m, 3, 3, loss=ell, n=14, keep=2)
    assert best.value == pytest.approx(oracle, rel=1e-8)
    assert np.sum(ell(H @ best.filter - y)) / m == pytest.approx(best.value, rel=1e-12)


def test_unconstrained_optimum_in_m_and_filling_architectures_are_exact():
    rng = np.random.default_rng(2)
    # filling: at most one even filter size
    risk = identity_risk([3, 2, 3], rng.standard_normal(6))
    best = best_on_function_space(risk)
    assert best.method == "unconstrained" and best.exact and best.unconstrained_in_m
    np.testing.assert_allclose(best.filter, risk.least_squares_filter, rtol=0, atol=1e-14)
    # non-filling, but the target has real roots only: v̂ ∈ M
    y = np.real(np.polynomial.polynomial.polyfromroots([-1.0, 0.5, 2.0]))
    best = best_on_function_space(identity_risk([2, 2, 2], y))
    assert best.method == "unconstrained" and best.value == pytest.approx(0.0, abs=1e-15)


def test_result_is_cached_per_risk_and_bad_input_is_refused():
    risk = identity_risk([2, 2], [1.0, 0.0, 1.0])
    assert best_on_function_space(risk) is best_on_function_space(risk)
    assert isinstance(best_on_function_space(risk), FunctionSpaceBest)
    with pytest.raises(ValueError, match="grid"):
        best_on_function_space(risk, grid=(2,))
    with pytest.raises(ValueError, match="num_starts"):
        best_on_function_space(risk, num_starts=0)
    with pytest.raises(ValueError, match="risk"):
        best_on_function_space("square")


@pytest.mark.parametrize(("coeffs", "degree", "count"), [
    ([1.0, 0.0, 1.0], 2, 0),          # 1 + x²
    ([0.0, 0.0, 1.0], 2, 2),          # x²: double root 0
    ([1.0, 0.0, 0.0], 2, 2),          # constant as a quadratic form: double root at infinity
    ([-1.0, 0.0, 1.0, 0.0], 3, 3),    # x² − 1 as a cubic form: ±1 and ∞
    ([0.0, 0.0, 0.0], 2, 3),          # zero polynomial
])
def test_real_root_count(coeffs, degree, count):
    assert real_root_count(np.array(coeffs), degree) == count


def test_stride_two_limits_matching_a_best_found_bound_are_labelled_undecided():
    """The flows on the rank-one problem end at ½σ_2² (Eckart–Young, the true ℒ*_M), but lcnflow only has a
    best-found bound there: the label must not claim a proof — undecided on M, said in the summary."""
    rng = np.random.default_rng(5)
    y = rng.standard_normal(4)
    risk = _rank_one_case(y, [2, 1])
    sigma = np.linalg.svd(y.reshape(2, 2).T, compute_uv=False)
    for seed in range(3):
        r = np.random.default_rng(seed)
        res = lcnflow.gradient_flow(risk, [0.5 * r.standard_normal(2) for _ in range(2)])
        cp = res.critical_point
        assert res.certified and res.loss == pytest.approx(0.5 * sigma[1] ** 2, rel=1e-10)
        assert cp.global_on_m is None and cp.best.exact is False and cp.kind == "local_minimum"
        assert "undecided on M" in cp.summary() and cp.on_m == "undecided on M"


def test_many_random_targets_identity_data_k222():
    """k = (2, 2, 2) (M = cubics with three real roots), G = I, twelve random targets: ℒ*_M equals the brute force to
    1e-8 whenever the target is outside M, and is 0 (the target itself) when it is inside."""
    rng = np.random.default_rng(12)
    H = np.eye(4)  # identity_risk: ℒ(v) = ½‖v − y‖² = (1/4)·Σ ½(2v − 2y)²
    outside = 0
    for _ in range(12):
        y = rng.standard_normal(4)
        best = best_on_function_space(identity_risk([2, 2, 2], y))
        if numpy_real_roots(y) >= 3:
            assert best.method == "unconstrained" and best.value == pytest.approx(0.0, abs=1e-14)
            continue
        outside += 1
        oracle = brute_force(2 * H, 2 * y, 4, 3, 3, n=24, keep=2)
        assert best.value == pytest.approx(oracle, rel=1e-8)
    assert outside >= 4


def test_2d_bound_from_starts_matches_an_independent_multistart_and_does_not_depend_on_units():
    """2D ``k = (3×3, 2×2)`` on Gaussian data — a problem where a single local search reaches the best basin about
    one time in twelve.  The oracle: the risk written here as ``½ vᵀGv − bᵀv + c`` from a patch matrix built with
    NumPy, ``v`` the full 2D convolution of the layers (``scipy.signal.convolve2d``), its gradient by the chain rule
    with ``scipy.signal.correlate2d``, minimized by L-BFGS from 40 starts of its own (about one in six reaches the
    best value).  lcnflow's search (at least 16
    starts, more until three agree) must find the same value, say it is a bound from its number of starts, and give
    the value times c² when inputs and targets are multiplied by c (the same search in other units)."""
    import scipy.signal

    rng = np.random.default_rng(1)
    X = rng.standard_normal((20, 7, 7))
    Y = rng.standard_normal((20, 4, 4))
    arch = lcnflow.Architecture((7, 7), [(3, 3), (2, 2)])
    best = best_on_function_space(lcnflow.EmpiricalRisk(arch, "square", lcnflow.Dataset(X, Y)))
    assert best.method == "multistart" and best.exact is False
    starts = best.details["starts"]
    assert 16 <= starts <= 64 and f"bound from {starts} starts" in best.statement and best.what.startswith("bound")

    P = np.array([[x[a:a + 4, b:b + 4].ravel() for a in range(4) for b in range(4)] for x in X]).reshape(-1, 16)
    G, bvec, c = P.T @ P / 20, P.T @ Y.ravel() / 20, Y.ravel() @ Y.ravel() / 40

    def f(w):
        w1, w2 = w[:9].reshape(3, 3), w[9:].reshape(2, 2)
        v = scipy.signal.convolve2d(w1, w2).ravel()
        g = (G @ v - bvec).reshape(4, 4)
        return 0.5 * v @ G @ v - bvec @ v + c, np.concatenate([scipy.signal.correlate2d(g, w2, "valid").ravel(),
                                                               scipy.signal.correlate2d(g, w1, "valid").ravel()])

    orng = np.random.default_rng(123)
    options = {"maxiter": 5000, "ftol": 1e-14, "gtol": 1e-11}
    oracle = min(scipy.optimize.minimize(f, orng.standard_normal(13), jac=True, method="L-BFGS-B",
                                         options=options).fun for _ in range(40))
    assert best.value == pytest.approx(oracle, rel=1e-9)
    for scale in (1e-3, 1e3):
        other = best_on_function_space(lcnflow.EmpiricalRisk(arch, "square", lcnflow.Dataset(scale * X, scale * Y)))
        assert other.value == pytest.approx(scale**2 * best.value, rel=1e-9)


# ------------------------------------------------------------------------------------- non-quadratic searches
def _log_cosh_images(rng, m, n, arch):
    X = rng.standard_normal((m, n, n))
    v = rng.standard_normal(arch.final_filter_shape)
    Y = np.tensordot(lcnflow.model.conv.patch_rows(arch, X), v, axes=2)
    return X, Y + 0.01 * rng.standard_normal(Y.shape)


@pytest.mark.parametrize("input_size, filter_sizes, strides", [
    (81, [3, 3, 2], [2, 1, 1]),
    ((24, 24), [(5, 5), (5, 5), (3, 3)], None),
    ((17, 17), [(3, 3), (3, 3)], [(1, 1), (2, 2)]),
])
def test_search_subsample_crops_keep_the_networks_outputs(monkeypatch, input_size, filter_sizes, strides):
    """Every crop of the search's subsample is a window of one sample's targets, its inputs are the ones those
    outputs read, and the same parameters give the same outputs there: checked on the loop-built patch matrix of
    the full data (``H v``), located by the crop's targets (Gaussian, so unique)."""
    from lcnflow.analysis import optimum

    monkeypatch.setattr(optimum, "SEARCH_OUTPUTS", 64)
    rng = np.random.default_rng(3)
    arch = Architecture(input_size, filter_sizes, strides)
    m = 12
    X = rng.standard_normal((m, *arch.axes_layer_sizes[0]))
    Y = rng.standard_normal((m, *arch.axes_layer_sizes[-1]))
    risk = EmpiricalRisk(arch, "log_cosh", Dataset(X, Y))
    sub = optimum._search_subsample(risk, np.random.default_rng(0))
    assert sub is not None and 0 < sub.data.targets.size <= 2 * 64
    w = lcnflow.flatten(lcnflow.random_init(arch, 0.5, seed=1))
    v = lcnflow.final_filter(arch, w).ravel()
    kv, sv, d_n = arch.final_filter_shape, arch.cumulative_strides[-1], arch.axes_layer_sizes[-1]
    full = [(loop_patch_matrix(x[None], kv, sv, d_n) @ v).reshape(d_n) for x in X]
    window = sub.data.targets.shape[1:]
    crop_out = [(loop_patch_matrix(x[None], kv, sv, window) @ v).reshape(window) for x in sub.data.inputs]
    for yc, xc, out in zip(sub.data.targets, sub.data.inputs, crop_out, strict=True):
        hits = [(j, o) for j in range(m) for o in np.ndindex(*(d - n + 1 for d, n in zip(d_n, window, strict=True)))
                if np.array_equal(Y[(j, *(slice(a, a + n) for a, n in zip(o, window, strict=True)))], yc)]
        assert len(hits) == 1
        j, o = hits[0]
        np.testing.assert_array_equal(
            X[(j, *(slice(s * a, s * a + e) for s, a, e in zip(sv, o, xc.shape, strict=True)))], xc)
        np.testing.assert_allclose(out, full[j][tuple(slice(a, a + n) for a, n in zip(o, window, strict=True))],
                                   rtol=0, atol=1e-12 * np.max(np.abs(full[j])))
    assert optimum._search_subsample(EmpiricalRisk(arch, "square", Dataset(X, Y)), np.random.default_rng(0)) is None


def test_quadratic_model_has_the_value_gradient_and_hessian_of_the_risk():
    """``Q∘π`` at the point it was built: value and gradient equal ``L``'s, and its Hessian (central differences of
    its gradient) equals ``L``'s Hessian, itself checked against torch autograd in test_risk."""
    from lcnflow.analysis.optimum import _QuadraticModel

    rng = np.random.default_rng(5)
    arch = Architecture((9, 9), [(3, 3), (2, 2)])
    risk = EmpiricalRisk(arch, lcnflow.get_loss("pseudo_huber", delta=0.3), Dataset(*_log_cosh_images(rng, 6, 9, arch)))
    w = lcnflow.flatten(lcnflow.random_init(arch, 0.7, seed=2))
    model = _QuadraticModel(risk, lcnflow.final_filter(arch, w))
    value, grad = risk.flat_value_and_gradient(w)
    q, qg = model.flat_value_and_gradient(w)
    assert q == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(qg, grad, rtol=0, atol=1e-10 * np.max(np.abs(grad)))
    h = 1e-5
    fd = np.array([(model.flat_value_and_gradient(w + h * e)[1] - model.flat_value_and_gradient(w - h * e)[1]) / (2 * h)
                   for e in np.eye(w.size)])
    hess = risk.flat_hessian(w)
    np.testing.assert_allclose((fd + fd.T) / 2, hess, rtol=0, atol=1e-6 * np.max(np.abs(hess)))


def test_model_trust_region_ends_at_a_local_minimum():
    """From a random start on a 2D log-cosh risk: the end is a minimum — scipy's BFGS started there lowers ``L`` by
    no more than rounding, ``‖∇L‖`` fell by over six orders and the Hessian has no negative eigenvalue beyond
    rounding."""
    import scipy.optimize

    from lcnflow.analysis.optimum import _model_trust_region

    rng = np.random.default_rng(8)
    arch = Architecture((10, 10), [(3, 3), (3, 3)])
    risk = EmpiricalRisk(arch, "log_cosh", Dataset(*_log_cosh_images(rng, 8, 10, arch)))
    w0 = lcnflow.flatten(lcnflow.random_init(arch, 0.8, seed=4))
    w, value = _model_trust_region(risk, w0)
    assert value == pytest.approx(risk.value(w), rel=1e-14) and value < risk.value(w0)
    after = scipy.optimize.minimize(risk.flat_value_and_gradient, w, jac=True, method="BFGS",
                                    options={"gtol": 1e-14, "maxiter": 200})
    assert after.fun >= value - 1e-10 * value
    g0, g = (np.linalg.norm(risk.flat_value_and_gradient(x)[1]) for x in (w0, w))
    assert g <= 1e-6 * g0
    lam = np.linalg.eigvalsh(risk.flat_hessian(w))
    assert lam[0] >= -1e-8 * lam[-1]


def test_robust_2d_bound_on_a_subsample_matches_an_independent_multistart(monkeypatch):
    """2D ``k = (3×3, 2×2)``, log-cosh, data large enough for the search to run its starts on a subsample (its
    size lowered here so the test is quick): the value it returns must equal the best of 40 L-BFGS starts on the
    risk written here with ``scipy.signal`` and NumPy's log cosh on all the data, and say how it was found."""
    import scipy.optimize
    import scipy.signal

    from lcnflow.analysis import optimum

    monkeypatch.setattr(optimum, "SEARCH_OUTPUTS", 128)
    rng = np.random.default_rng(11)
    arch = Architecture((12, 12), [(3, 3), (2, 2)])
    X, Y = _log_cosh_images(rng, 20, 12, arch)
    best = best_on_function_space(EmpiricalRisk(arch, "log_cosh", Dataset(X, Y)))
    sub = best.details["subsample"]
    assert best.method == "multistart" and best.exact is False and 0 < sub < 4 * 128
    assert f"subsample of {sub} of the data's outputs" in best.statement
    assert f"bound from {best.details['starts']} starts" in best.statement

    def f(w):
        w1, w2 = w[:9].reshape(3, 3), w[9:].reshape(2, 2)
        v = scipy.signal.convolve2d(w1, w2)
        r = np.stack([scipy.signal.correlate2d(x, v, "valid") for x in X]) - Y
        g = np.sum([scipy.signal.correlate2d(x, t, "valid") for x, t in zip(X, np.tanh(r), strict=True)], axis=0) / 20
        value = np.sum(np.logaddexp(r, -r) - np.log(2)) / 20
        return value, np.concatenate([scipy.signal.correlate2d(g, w2, "valid").ravel(),
                                      scipy.signal.correlate2d(g, w1, "valid").ravel()])

    orng = np.random.default_rng(123)
    oracle = min(scipy.optimize.minimize(f, orng.standard_normal(13), jac=True, method="L-BFGS-B",
                                         options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-12}).fun
                 for _ in range(40))
    assert best.value == pytest.approx(oracle, rel=1e-8)


def test_subsample_search_does_not_depend_on_units(monkeypatch):
    """``ℓ(r) = r⁴/4`` is homogeneous: multiplying inputs and targets by ``c`` multiplies ``ℒ`` by ``c⁴`` at every
    final filter, so the same search (same crops, same starts, scale-free stopping) must return the value times
    ``c⁴`` and the same statement."""
    from lcnflow.analysis import optimum

    monkeypatch.setattr(optimum, "SEARCH_OUTPUTS", 128)
    rng = np.random.default_rng(13)
    arch = Architecture((12, 12), [(3, 3), (2, 2)])
    X, Y = _log_cosh_images(rng, 20, 12, arch)
    loss = lcnflow.get_loss("lp", p=4.0)
    best = best_on_function_space(EmpiricalRisk(arch, loss, Dataset(X, Y)))
    assert best.details["subsample"]
    for c in (1e-3, 1e3):
        other = best_on_function_space(EmpiricalRisk(arch, loss, Dataset(c * X, c * Y)))
        assert other.value == pytest.approx(c**4 * best.value, rel=1e-8)
        assert other.statement == best.statement
