"""When a run may stop: against an independent reference flow, in the hard regimes.

The reference (``reference_flow``) is written from the definitions alone — ``numpy.convolve`` for π, sliding windows
for ``H``, closed-form loss derivatives, ``solve_ivp`` LSODA at rtol 1e-10 run 100× past lcnflow's stopping time and
on until ``‖∇L‖ < 1e-13`` — so a run that stopped on a plateau, at a saddle it would have left, or before a slow
limit, disagrees with it.  Other oracles: exact symmetries of the flow (rescaling the data together with the
initialization maps trajectories onto trajectories), closed-form critical points, and reruns at tighter tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import lcnflow as lf
from reference_flow import ConvolveRisk, planted_data, random_init, reference_limit

# (filter sizes, initial scale, loss, seed): small initializations (long plateaus at the origin), non-filling
# architectures (limits on the boundary of the function space), three losses.  The full grid (depth 2–6, scales
# 1 … 1e-8) is scripts/verify_limits.py; its numbers are in the project's notes.
CASES = [
    ([2, 2, 2, 2], 1e-3, "square", 0),
    ([3, 3, 3], 1e-6, "square", 1),
    ([3, 3], 1e-8, "pseudo_huber", 0),
    ([2, 3, 2], 1e-4, "pseudo_huber", 2),
    ([3, 2, 3, 2], 1e-2, "square", 3),
    ([2, 2, 2, 2, 2, 2], 1.0, "square", 0),
    ([3, 3, 3], 1e-5, "log_cosh", 4),
    ([2, 2, 2, 2], 1e-3, "pseudo_huber", 5),
]


def _problem(sizes, loss, seed):
    X, Y = planted_data(sizes, seed)
    params = {"delta": 0.5} if loss == "pseudo_huber" else {}
    risk = lf.EmpiricalRisk(lf.Architecture(X.shape[1], sizes), lf.get_loss(loss, **params), lf.Dataset(X, Y))
    return risk, ConvolveRisk(sizes, X, Y, loss, params.get("delta", 1.0)), X, Y


@pytest.mark.parametrize(("sizes", "scale", "loss", "seed"), CASES)
def test_default_flow_ends_where_the_reference_flow_ends(sizes, scale, loss, seed):
    risk, ref, _, _ = _problem(sizes, loss, seed)
    w0 = random_init(sizes, scale, seed + 100)
    res = lf.gradient_flow(risk, w0)
    assert res.converged and res.certified, res.message
    assert res.t_final > 0 and res.num_steps > 0  # never "converged" at the start
    assert (res.kind != "strict_saddle" and res.critical_point.is_minimum) or res.kind == "degenerate"
    w_ref, _, g_ref = reference_limit(ref, w0, 100 * res.t_final)
    assert g_ref < 1e-13
    # the acceptance tolerances: L to 1e-8 relative, the final filter to 1e-5 relative
    assert res.loss == pytest.approx(ref.value(w_ref), rel=1e-8)
    v_ref = ref.pi(w_ref)
    assert np.linalg.norm(res.final_filter - v_ref) <= 1e-5 * np.linalg.norm(v_ref)


@pytest.mark.parametrize("scale", [1e-3, 1e-8])
def test_a_small_initialization_crosses_the_plateau_at_the_origin_and_records_it(scale):
    sizes = [2, 2, 2, 2]
    risk, _, _, _ = _problem(sizes, "square", 0)
    res = lf.gradient_flow(risk, random_init(sizes, scale, 7))
    assert res.converged and res.t_final > 1.0 / scale  # escape time grows like scale^-(N-2)
    first = res.itinerary[0]
    assert first.t_enter == 0.0 and first.t_leave < res.t_final
    # the plateau sits at the origin: L = ℒ(0) = ‖y‖²/(2m), from the data directly
    m = risk.data.targets.shape[0]
    assert first.loss == pytest.approx(np.sum(risk.data.targets**2) / (2 * m), rel=1e-12)
    assert first.point is not None and not np.any(first.point)
    # at depth 4 the Hessian vanishes at 0 and L(εd) − L(0) = ε⁴⟨∇ℒ(0), π(d)⟩ + O(ε⁸) changes sign with the sign of
    # one layer of d: a higher-order saddle (checked on the reference risk)
    assert first.kind == "higher_order_saddle"
    ref = ConvolveRisk(sizes, risk.data.inputs, risk.data.targets)
    d = random_init(sizes, 1e-2, 1)
    flipped = d.copy()
    flipped[:2] *= -1
    assert min(ref.value(d), ref.value(flipped)) < ref.value(np.zeros_like(d))


def test_gradient_descent_from_a_small_initialization_does_not_stop_at_the_start():
    sizes = [2, 2, 2]
    risk, ref, _, _ = _problem(sizes, "square", 0)
    w0 = random_init(sizes, 1e-3, 3)
    res = lf.gradient_descent(risk, w0, 0.01)  # below 2/λ_max at the limit: GD follows the flow there
    assert res.converged and res.num_steps > 100, res.message
    assert res.critical_point.is_minimum
    w_ref, _, _ = reference_limit(ref, w0, 100 * res.t_final)
    assert res.loss == pytest.approx(ref.value(w_ref), rel=1e-6)  # small steps: the flow's limit


# ------------------------------------------------------------------------------------------ saddles as limits
def test_a_critical_initialization_is_a_saddle_limit_on_its_stable_set():
    """Two zero layers: every layer gradient contains a zero factor, so ∇L(w0) = 0 exactly and the flow stays."""
    sizes = [2, 3, 2]
    risk, ref, _, _ = _problem(sizes, "square", 0)
    w0 = random_init(sizes, 1.0, 0)
    w0[:5] = 0.0
    assert not np.any(ref.gradient(w0))
    res = lf.gradient_flow(risk, w0)
    assert res.converged and res.stop_reason == "stable_saddle" and res.t_final == 0.0
    assert res.kind in ("strict_saddle", "degenerate") and "stable set" in res.message
    assert "critical point" in res.stable_set


def test_identical_layers_stay_identical_and_may_end_at_a_saddle_of_the_full_space():
    """L = ½(w1 w2 − y)² with y < 0 and w1 = w2: the flow keeps w1 = w2 (the exchange symmetry) and u = w1 w2 > 0
    decays to 0 along the stable set of the saddle (0, 0), whose Hessian [[0, −y], [−y, 0]] has eigenvalues ±|y|.
    From w1 ≠ w2 (same sizes) it leaves the saddle and reaches the global minimum u = y."""
    risk = lf.EmpiricalRisk(lf.Architecture(1, [1, 1]), "square", lf.Dataset(np.ones((1, 1)), np.full((1, 1), -1.0)))
    res = lf.gradient_flow(risk, [np.array([0.6]), np.array([0.6])])
    assert res.converged and res.stop_reason == "stable_saddle"
    assert res.kind == "strict_saddle" and "w(1) = w(2)" in res.message
    other = lf.gradient_flow(risk, [np.array([0.6]), np.array([0.5])])
    assert other.stop_reason == "minimum" and other.loss < 1e-20


# ------------------------------------------------------------------------------------------ no units in a verdict
def _verdict(res):
    cp = res.critical_point
    return (res.converged, res.kind, cp.origin if cp else None, cp.spurious if cp else None,
            cp.dpi_rank if cp else None, len(res.itinerary))


@pytest.mark.parametrize("k", [-4, -2, 2, 4])
@pytest.mark.parametrize("sizes", [[3, 3, 3], [2, 2, 2]])
def test_rescaling_the_inputs_with_the_initialization_changes_no_verdict(sizes, k):
    """Inputs X → cX and w0 → c^{-1/N} w0 map the flow onto itself up to time (t → c^{2/N} t): same verdict,
    final filters v → v/c."""
    X, Y = planted_data(sizes, 4)
    arch = lf.Architecture(X.shape[1], sizes)
    w0 = random_init(sizes, 0.3, 5)
    base = lf.gradient_flow(lf.EmpiricalRisk(arch, "square", lf.Dataset(X, Y)), w0)
    c, n = 10.0**k, len(sizes)
    scaled = lf.gradient_flow(lf.EmpiricalRisk(arch, "square", lf.Dataset(c * X, Y)), c ** (-1 / n) * w0)
    assert _verdict(scaled) == _verdict(base)
    np.testing.assert_allclose(scaled.final_filter * c, base.final_filter, rtol=0,
                               atol=1e-6 * np.linalg.norm(base.final_filter))


@pytest.mark.parametrize("k", [-4, 3])
def test_rescaling_the_targets_with_the_initialization_changes_no_verdict(k):
    """Square loss: Y → cY and w0 → c^{1/N} w0 scale L by c² and map the flow onto itself (t → c^{-2(N-1)/N} t)."""
    sizes = [2, 3, 2]
    X, Y = planted_data(sizes, 6)
    arch = lf.Architecture(X.shape[1], sizes)
    w0 = random_init(sizes, 0.5, 1)
    base = lf.gradient_flow(lf.EmpiricalRisk(arch, "square", lf.Dataset(X, Y)), w0)
    c, n = 10.0**k, len(sizes)
    scaled = lf.gradient_flow(lf.EmpiricalRisk(arch, "square", lf.Dataset(X, c * Y)), c ** (1 / n) * w0)
    assert _verdict(scaled) == _verdict(base)
    assert scaled.loss == pytest.approx(c * c * base.loss, rel=1e-8)


@pytest.mark.parametrize("scale", [1e-8, 1e-4, 1e-1, 1.0, 1e2])
def test_the_initialization_scale_changes_no_verdict_where_every_start_reaches_the_optimum(scale):
    """Filling k = (3, 3) on planted data: every trajectory ends at the global minimum (the least-squares filter
    factors over the reals here: checked from the roots), whatever the initial scale."""
    sizes = [3, 3]
    X, Y = planted_data(sizes, 8)
    H = sliding_window_view(X, 5, axis=1).reshape(-1, 5)
    v_ls = np.linalg.lstsq(H, Y.ravel(), rcond=None)[0]
    risk = lf.EmpiricalRisk(lf.Architecture(X.shape[1], sizes), "square", lf.Dataset(X, Y))
    res = lf.gradient_flow(risk, random_init(sizes, scale, 2))
    assert res.converged and res.kind == "global_minimum", res.message
    np.testing.assert_allclose(res.final_filter, v_ls, rtol=0, atol=1e-7 * np.linalg.norm(v_ls))


# ------------------------------------------------------------------------------------------ verification
def test_verify_reruns_at_tighter_tolerances_and_compares_the_limits():
    sizes = [2, 2, 2]
    risk, _, _, _ = _problem(sizes, "square", 1)
    res = lf.gradient_flow(risk, random_init(sizes, 1e-2, 4), verify=True)
    assert res.limit_verified is True
    assert res.verification["final_filter_distance"] <= 1e-5
    assert res.verification["reference_options"]["rtol"] == pytest.approx(1e-8)


# ------------------------------------------------------------------------------------------ real data
def _image_rows(name: str, kv: int, rows: int = 60, width: int = 48, seed: int = 0):
    """Rows of a scikit-image photograph (scaled to [0, 1]), blurred by [¼, ½, ¼] plus 1 % noise; targets are the
    clean pixels at the centres of the output windows."""
    data = pytest.importorskip("skimage.data")
    img = np.asarray(getattr(data, name)(), dtype=float)
    img = (img - img.min()) / (img.max() - img.min())
    rng = np.random.default_rng(seed)
    r = rng.choice(img.shape[0], rows, replace=False)
    c = rng.integers(0, img.shape[1] - width - 2)
    clean = img[r, c:c + width + 2]
    blurred = 0.25 * clean[:, :-2] + 0.5 * clean[:, 1:-1] + 0.25 * clean[:, 2:]
    X = blurred + 0.01 * rng.standard_normal(blurred.shape)
    off = (kv - 1) // 2 + 1  # output a sees inputs a … a + kv − 1, i.e. clean pixels a + 1 … a + kv
    Y = clean[:, off:off + width - kv + 1]
    return X, Y


@pytest.mark.parametrize("name", ["camera", "coins", "brick"])
@pytest.mark.parametrize("sizes", [[3, 3, 3], [2, 2, 2]])
def test_real_image_rows_every_default_run_is_certified_and_keeps_its_labels_at_a_tighter_gtol(name, sizes):
    kv = 1 + sum(k - 1 for k in sizes)
    X, Y = _image_rows(name, kv)
    risk = lf.EmpiricalRisk(lf.Architecture(X.shape[1], sizes), "square", lf.Dataset(X, Y))
    for seed in range(2):
        w0 = random_init(sizes, 0.3, seed)
        res = lf.gradient_flow(risk, w0)
        tight = lf.gradient_flow(risk, w0, gtol=1e-10)
        assert res.certified and tight.certified, (res.message, tight.message)
        assert _verdict(res)[:4] == _verdict(tight)[:4]  # converged, kind, origin, spurious
        np.testing.assert_allclose(res.final_filter, tight.final_filter, rtol=0,
                                   atol=1e-6 * np.linalg.norm(tight.final_filter))


@pytest.mark.parametrize(("kwargs", "field"), [({"eig_rtol": -1.0}, "eig_rtol"), ({"rank_rtol": 2.0}, "rank_rtol"),
                                               ({"spurious_rtol": "x"}, "spurious_rtol"),
                                               ({"function_space_tol": -1.0}, "function_space_tol")])
def test_classification_refuses_bad_tolerances_by_name(kwargs, field):
    risk, _, _, _ = _problem([2, 2], "square", 0)
    with pytest.raises(ValueError, match=field):
        lf.classify_critical_point(risk, np.ones(4), **kwargs)


def test_an_escape_at_an_astronomical_time_is_still_resolved_and_certified():
    """Depth 6 from init 1e-8: the plateau lasts until t ≈ 1.6e31, where t + 1 = t in float64, and the escape and
    the approach to the limit happen on times of order 1.  The solver restarts on a shifted clock; the limit is a
    critical point by the independent gradient and a minimum."""
    sizes = [2, 3, 2, 3, 2, 3]
    risk, ref, _, _ = _problem(sizes, "square", 0)
    res = lf.gradient_flow(risk, random_init(sizes, 1e-8 / np.sqrt(3), 100))
    assert res.converged and res.t_final > 1e30 and res.critical_point.is_minimum, res.message
    assert np.linalg.norm(ref.gradient(res.x)) <= 1e-10
    assert res.itinerary and res.itinerary[0].kind == "higher_order_saddle"
