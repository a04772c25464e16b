"""gradient_flow against independent oracles: Radau on a torch gradient, closed-form scalar dynamics, conserved
quantities recomputed from their definition, planted global minima, the Łojasiewicz exponent, and FlowResult basics.

Oracles live in ``flow_helpers`` (torch autograd through ``conv1d``/``conv2d`` layer by layer, polynomial products,
``scipy.integrate.solve_ivp``); nothing expected here is produced by lcnflow.
"""

from __future__ import annotations

import functools
import itertools
import json
import math

import numpy as np
import pytest

import lcnflow
from flow_helpers import (
    PROBLEMS,
    complement,
    fd_jacobian,
    invariant_drift,
    layer_invariants,
    pi_1d,
    planted_problem,
    rescaling_directions,
    scalar_reference,
    shared_problem,
    shared_reference,
)
from lcnflow import Architecture, Dataset, EmpiricalRisk, get_loss
from lcnflow.flow import lojasiewicz_fit

#: Flow horizon of the trajectory comparisons, long enough for w to move by O(‖w‖) (asserted below).
T_END = {"1d-square": 1.0, "1d-pseudo_huber": 1.0, "2d-log_cosh": 0.5}
TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def _save_times(name: str) -> np.ndarray:
    T = T_END[name]
    return np.array([0.0, 0.05 * T, 0.2 * T, 0.5 * T, T])


@functools.cache
def _run(name: str, method: str | None, tight: bool):
    """gradient_flow on a shared problem up to T_END; ``method=None`` and ``tight=False`` use the defaults."""
    prob = shared_problem(name)
    kwargs = dict(TIGHT) if tight else {}
    if method is not None:
        kwargs["method"] = method
    return lcnflow.gradient_flow(prob.risk, prob.w0, save_at=_save_times(name), t_max=T_END[name], **kwargs)


# ------------------------------------------------------------------------------------------ trajectories vs Radau
@pytest.mark.parametrize("name", list(PROBLEMS))
@pytest.mark.parametrize("method", ["auto", "rosenbrock", "exponential"])
def test_saved_states_match_radau_reference(name, method):
    prob = shared_problem(name)
    times = _save_times(name)
    ref = shared_reference(name, T_END[name])(times)
    scale = max(1.0, float(np.max(np.abs(ref))))
    # the comparison means something only if the state moves by O(‖w‖) on [0, T]
    assert np.linalg.norm(ref[-1] - prob.w0) > 0.2 * np.linalg.norm(prob.w0)

    tight = _run(name, method, True)
    np.testing.assert_array_equal(tight.saved_times, times)
    assert tight.saved_states.shape == (times.size, prob.w0.size)
    np.testing.assert_array_equal(tight.saved_states[0], prob.w0)  # save_at = 0 is the initial state itself
    # local error ≤ 1e-10 per step, a few thousand steps (order-2 Rosenbrock), flow amplification O(1) on [0, T]:
    # global error ≲ 1e-7; the Radau reference is good to ~1e-11.  Allow 1e-6·scale.
    np.testing.assert_allclose(tight.saved_states, ref, rtol=0, atol=1e-6 * scale)

    # the same method at its default tolerances (rtol 1e-6, atol 1e-9): ~10²  steps of local error ≤ 1e-6·scale
    loose = _run(name, None if method == "auto" else method, False)
    np.testing.assert_allclose(loose.saved_states, ref, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_recorded_trajectory_is_the_flow_at_recorded_times(name):
    """``trajectory[j]`` is ``w(times[j])`` (not just some state): compare with the dense Radau solution."""
    res = _run(name, "auto", True)
    ref = shared_reference(name, T_END[name])
    assert res.times[0] == 0.0 and res.times[-1] == pytest.approx(T_END[name], rel=1e-12)
    assert np.all(np.diff(res.times) > 0)
    assert res.trajectory.shape == (res.times.size, shared_problem(name).w0.size)
    scale = max(1.0, float(np.max(np.abs(res.trajectory))))
    np.testing.assert_allclose(res.trajectory, ref(res.times), rtol=0, atol=1e-6 * scale)  # as above
    # the recorded losses and gradient norms belong to the recorded states (torch oracle, rounding-level)
    oracle = shared_problem(name).oracle
    for j in range(0, res.times.size, max(1, res.times.size // 6)):
        w = res.trajectory[j]
        assert res.losses[j] == pytest.approx(oracle.value(w), rel=1e-10, abs=1e-14)
        assert res.gradient_norms[j] == pytest.approx(np.linalg.norm(oracle.gradient(w)), rel=1e-9, abs=1e-14)


# ------------------------------------------------------------------------------------------ conserved quantities
@pytest.mark.parametrize("name", list(PROBLEMS))
@pytest.mark.parametrize("method", ["auto", "rosenbrock", "exponential"])
def test_invariants_conserved_on_tight_runs(name, method):
    prob = shared_problem(name)
    res = _run(name, method, True)
    norm0 = float(prob.w0 @ prob.w0)
    delta0 = layer_invariants(prob.sizes, prob.w0)
    # δ(0) from the definition; rounding of sums of squares ~ P·ε·‖w‖²
    np.testing.assert_allclose(res.invariants, delta0, rtol=0, atol=1e-14 * norm0)
    # the exact flow conserves δ; at local tolerance 1e-10 the integrator may drift ~ steps·1e-10·‖w‖² at most
    assert 0.0 <= res.invariant_drift <= 1e-8
    mine_traj = invariant_drift(prob.sizes, prob.w0, res.trajectory)
    mine_saved = invariant_drift(prob.sizes, prob.w0, res.saved_states)
    assert mine_traj <= 1e-8 and mine_saved <= 1e-8
    # the reported drift is a max over all accepted steps, of which the recorded ones are a subset
    assert mine_traj <= res.invariant_drift * (1 + 1e-9) + 1e-15
    # and the invariants really are non-trivial here (otherwise conservation would be vacuous)
    assert np.max(np.abs(delta0)) > 0.05 * norm0


def test_invariants_conserved_over_a_full_run_to_convergence():
    """A run of the default method to its limit (through the stiff final phase) at tight tolerances."""
    prob, _, H = planted_problem([2, 3], 1)
    res = lcnflow.gradient_flow(prob.risk, prob.w0, **TIGHT)
    assert res.converged, res.message
    mine = invariant_drift(prob.sizes, prob.w0, res.trajectory)
    assert res.invariant_drift <= 1e-8 and mine <= 1e-8
    assert mine <= res.invariant_drift * (1 + 1e-9) + 1e-15
    # the certified limit has a (torch) gradient below certify_tol · S, with the scale S = D(w)·(f0 + κ‖v‖) built
    # here from its definition: D² = Σ_i Π_{j≠i} ‖w_j‖², f0 = ‖∇ℒ(0)‖ = ‖Hᵀy‖/m, κ = ‖HᵀH/m‖₂, v = π(w)
    m = prob.X.shape[0]
    w = np.concatenate([np.ravel(x) for x in res.limit])
    norms = [np.linalg.norm(x) for x in res.limit]
    D = np.sqrt(sum(np.prod([n**2 for j, n in enumerate(norms) if j != i]) for i in range(len(norms))))
    S = D * (np.linalg.norm(H.T @ prob.Y.ravel()) / m + np.linalg.norm(H.T @ H / m, 2) * np.linalg.norm(
        pi_1d(prob.sizes, [1] * len(prob.sizes), w)))
    assert res.options["certify_tol"] == 1e-10
    assert np.linalg.norm(prob.oracle.gradient(w)) <= 1e-10 * S * (1 + 1e-6)


# ------------------------------------------------------------------------------------------ closed-form dynamics
def _scalar_chain(depth: int, y: float, loss: str = "square"):
    arch = Architecture(1, [1] * depth)
    return EmpiricalRisk(arch, get_loss(loss), Dataset(np.ones((1, 1)), np.full((1, 1), y)))


@pytest.mark.parametrize("method", ["auto", "rosenbrock"])
@pytest.mark.parametrize(("y", "a"), [(2.0, 0.3), (0.5, 1.1)])
def test_two_scalar_layers_follow_the_logistic_closed_form(method, y, a):
    """w1 = w2 = a, L = ½(w1 w2 − y)²: u = w1 w2 solves u̇ = 2u(y − u), u(t) = y u0 e^{2yt}/(y + u0(e^{2yt} − 1))."""
    times = np.linspace(0.0, 3.0, 13)
    res = lcnflow.gradient_flow(_scalar_chain(2, y), [np.array([a]), np.array([a])], method=method,
                                save_at=times, t_max=3.0, **TIGHT)
    w1, w2 = res.saved_states[:, 0], res.saved_states[:, 1]
    u0 = a * a
    e = np.exp(2 * y * times)
    exact = y * u0 * e / (y + u0 * (e - 1))
    # the balanced start stays balanced (δ = 0 is conserved): equal to rounding
    np.testing.assert_allclose(w1, w2, rtol=1e-12, atol=0)
    # tight tolerances as in test_saved_states_match_radau_reference: 1e-6 relative to y (u ∈ (0, y])
    np.testing.assert_allclose(w1 * w2, exact, rtol=0, atol=1e-6 * y)
    assert abs(exact[-1] - exact[0]) > 0.3 * y  # the closed form moves: the comparison is not vacuous


@pytest.mark.parametrize("depth", [3, 4])
@pytest.mark.parametrize("loss", ["square", "log_cosh"])
def test_balanced_scalar_chain_follows_end_to_end_ode(depth, loss):
    """Balanced N-layer scalar chain: u = Π w_i obeys u̇ = −N u^{2−2/N} ℓ'(u − y) (Arora et al. 2018)."""
    y, a = 1.5, 0.7
    times = np.array([0.0, 0.1, 0.3, 0.7, 1.5, 3.0])
    res = lcnflow.gradient_flow(_scalar_chain(depth, y, loss), [np.array([a])] * depth, save_at=times, t_max=3.0,
                                **TIGHT)
    dloss = {"square": lambda r: r, "log_cosh": math.tanh}[loss]
    u_ref = scalar_reference(lambda u: -depth * u ** (2 - 2 / depth) * dloss(u - y), a**depth, times)
    u = np.prod(res.saved_states, axis=1)
    np.testing.assert_allclose(u, u_ref, rtol=0, atol=1e-6 * y)  # tight-tolerance budget, relative to y
    # every layer equals u^{1/N} (balancedness is conserved)
    np.testing.assert_allclose(res.saved_states, np.repeat(u_ref[:, None] ** (1 / depth), depth, axis=1),
                               rtol=0, atol=1e-6)
    assert u_ref[-1] - u_ref[0] > 0.5  # moves by O(y)


# ------------------------------------------------------------------------------------------ planted global minima
@pytest.mark.parametrize(("filter_sizes", "seed"), [([3, 3, 3], 0), ([2, 3], 0), ([3, 3], 0)])
def test_filling_architecture_with_planted_data_reaches_the_planted_filter(filter_sizes, seed):
    prob, v_star, H = planted_problem(filter_sizes, seed)
    depth, kv = len(filter_sizes), v_star.size
    assert prob.arch.is_filling  # at most one even filter size (Kohn et al. 2022)
    res = lcnflow.gradient_flow(prob.risk, prob.w0)
    assert res.converged and res.certified, res.message
    cp = res.critical_point
    assert cp.kind == "global_minimum" and cp.origin == "global" and cp.is_minimum
    # ‖v − v*‖ ≤ ‖∇ℒ(v)‖/λ_min(G) and ‖∇ℒ(v)‖ ≤ ‖∇L(w)‖/σ_min(dπ(w)) at a point where dπ is onto (filling, smooth
    # point); both factors from the test's own H and its own Jacobian of π (central differences are exact for the
    # multilinear π, up to rounding).  Factor 10 and 1e-12 cover rounding in G, dπ and the torch gradient.
    w = np.concatenate([f.ravel() for f in res.limit])
    G = H.T @ H / prob.X.shape[0]
    J = fd_jacobian(lambda x: pi_1d(prob.sizes, [1] * depth, x), w, 1e-3)
    sig = np.linalg.svd(J, compute_uv=False)[kv - 1]
    g = np.linalg.norm(prob.oracle.gradient(w))
    bound = 10 * (g / sig + 1e-12) / np.linalg.eigvalsh(G)[0]
    assert np.linalg.norm(res.final_filter - v_star) <= bound * max(1.0, np.linalg.norm(v_star))
    assert bound < 1e-6  # the certificate is strong enough to pin the filter down
    np.testing.assert_allclose(pi_1d(prob.sizes, [1] * depth, w), res.final_filter, rtol=0, atol=1e-13)


# ------------------------------------------------------------------------------------------ Łojasiewicz exponent
def test_lojasiewicz_exponent_is_one_half_at_a_non_degenerate_minimum():
    prob, _, _ = planted_problem([3, 3, 3], 0)
    res = lcnflow.gradient_flow(prob.risk, prob.w0)
    assert res.critical_point.kind == "global_minimum"
    w = np.concatenate([f.ravel() for f in res.limit])
    # non-degenerate on the complement of the rescaling orbit: own Hessian there is positive definite
    Q = complement(rescaling_directions(prob.sizes, w), w.size)
    lam = np.linalg.eigvalsh(Q.T @ prob.oracle.hessian(w) @ Q)
    assert lam[0] > 1e-6 * lam[-1]
    # Near such a minimum L − L* = ½ Σ λ_k x_k², ‖∇L‖² = Σ λ_k² x_k², so ‖∇L‖²/(L − L*) ∈ [2λ_min, 2λ_max] and
    # log‖∇L‖ = ½ log(L − L*) + e with |e − ē| ≤ ¼ log κ.  A least-squares slope over a log-range D of L − L* then
    # deviates from ½ by at most 3·(¼ log κ)/D.  The fit's range is the one it reports.
    theta = res.lojasiewicz_exponent
    lo, hi = res.lojasiewicz_fit["loss_gap_range"]
    D = math.log(hi / lo)
    assert D > math.log(1e4)  # a tail spanning several decades
    # (capped at 1/8, which still separates 1/2 from the θ ≥ 3/4 of degenerate limits, see the next test)
    tol = 0.75 * math.log(lam[-1] / lam[0]) / D
    assert abs(theta - 0.5) <= min(tol, 0.125), (theta, tol)


def test_lojasiewicz_exponent_of_a_degenerate_limit_is_three_quarters():
    """x = 1, y = 0, two balanced scalar layers: u̇ = −2u², L = u²/2, ‖∇L‖ = √2 u^{3/2} = √2 (2L)^{3/4}: θ = 3/4."""
    res = lcnflow.gradient_flow(_scalar_chain(2, 0.0), [np.array([0.8]), np.array([0.8])])
    assert res.converged
    # the tail is an exact power law; the fit's only error is L* ≈ 1e-17 against gaps ≥ 1e-12 (relative 1e-5)
    assert res.lojasiewicz_exponent == pytest.approx(0.75, abs=1e-3)


@pytest.mark.parametrize("theta", [0.5, 0.6, 0.75, 0.9])
def test_lojasiewicz_fit_recovers_a_planted_exponent(theta):
    limit = 0.3
    gap = 10.0 ** -np.linspace(1, 12, 45)
    grads = 2.5 * gap**theta
    est, info = lojasiewicz_fit(limit + gap, grads, limit)
    # exact power law on the usable points (gap > 1e3·ε·|L| ≈ 7e-14): slope exact up to rounding of the logs
    # (|log(L* + gap) − ...| ~ ε·L*/gap ≤ 1e-3 relative at the smallest gap, averaged in the fit) → 1e-3
    assert est == pytest.approx(theta, abs=1e-3)
    assert info["num_points"] >= 4 and info["r_squared"] == pytest.approx(1.0, abs=1e-6)
    # multiplicative noise (σ = 0.05 in log): slope standard error σ/(std(log gap)·√n) ≈ 2e-3 → 0.02 is 10 s.e.
    rng = np.random.default_rng(0)
    noisy = grads * np.exp(0.05 * rng.standard_normal(grads.size))
    est_noisy, _ = lojasiewicz_fit(limit + gap, noisy, limit)
    assert est_noisy == pytest.approx(theta, abs=0.02)


def test_lojasiewicz_fit_needs_four_points():
    est, info = lojasiewicz_fit(np.array([1.0, 0.5, 0.25]), np.array([1.0, 0.7, 0.5]), 0.0)
    assert est is None and info["num_points"] < 4


def test_lojasiewicz_fit_is_the_least_squares_line_of_numpy_polyfit():
    # oracle: numpy.polynomial.polynomial.polyfit (a QR least-squares solve) on the points the fit keeps — the last
    # half of those after the largest gradient norm; slope and R² agree to rounding (1e-12 on O(1) logs)
    rng = np.random.default_rng(3)
    gap = 10.0 ** -np.sort(rng.uniform(1, 9, 40))
    grads = gap ** 0.6 * np.exp(0.3 * rng.standard_normal(40))
    grads[5] = 10.0  # the peak: the points before it are left out
    est, info = lojasiewicz_fit(1.0 + gap, grads, 1.0)
    keep = np.arange(6, 40)[(gap[6:] > 1e3 * np.finfo(float).eps * (1.0 + gap.max()))]
    keep = keep[keep.size // 2:]
    x, y = np.log((1.0 + gap[keep]) - 1.0), np.log(grads[keep])
    c0, slope = np.polynomial.polynomial.polyfit(x, y, 1)
    r2 = 1 - np.sum((y - c0 - slope * x) ** 2) / np.sum((y - y.mean()) ** 2)
    assert info["num_points"] == keep.size
    assert est == pytest.approx(slope, rel=1e-12, abs=1e-12)
    assert info["r_squared"] == pytest.approx(r2, rel=1e-10, abs=1e-12)


def test_lojasiewicz_fit_of_points_at_one_gap_is_undefined():
    est, info = lojasiewicz_fit(np.full(10, 2.0), np.linspace(2.0, 1.0, 10), 1.0)
    assert est is None and info["r_squared"] is None


# ------------------------------------------------------------------------------------------ FlowResult basics
def _small():
    return shared_problem("1d-square")


def test_integrator_string_names_the_integrator():
    prob = _small()
    out = {}
    for method in lcnflow.flow.METHODS:
        out[method] = lcnflow.gradient_flow(prob.risk, prob.w0, method=method, t_max=0.2, save_at=[0.1, 0.2],
                                            classify=False)
    assert {res.method for res in out.values()} == {"gradient_flow"}
    assert "exponential" in out["exponential"].integrator.lower()
    assert "rosenbrock" in out["rosenbrock"].integrator.lower()
    assert "exponential" not in out["rosenbrock"].integrator.lower()
    for name in ("RK45", "DOP853", "Radau", "BDF", "LSODA"):
        assert name in out[name].integrator
        assert "rosenbrock" not in out[name].integrator.lower()
    # "auto" is one of the integrators: its run is bit-for-bit that integrator's run, and its string names it
    same = [m for m in lcnflow.flow.METHODS if m != "auto"
            and np.array_equal(out[m].trajectory, out["auto"].trajectory)]
    assert len(same) == 1, same
    assert same[0].lower() in out["auto"].integrator.lower(), (same, out["auto"].integrator)
    # every method integrates the same flow: states at t = 0.2 agree to the default tolerances' accuracy (1e-4)
    for res in out.values():
        np.testing.assert_allclose(res.saved_states, out["Radau"].saved_states, rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", ["auto", "rosenbrock", "Radau"])
def test_reaching_t_max_is_not_convergence(method):
    prob = _small()
    res = lcnflow.gradient_flow(prob.risk, prob.w0, method=method, t_max=0.05)
    g_end = np.linalg.norm(prob.oracle.gradient(res.trajectory[-1]))
    assert g_end > 1e-3  # far from critical, so stopping at t_max must not be called convergence
    assert res.converged is False and res.certified is False
    assert "t_max" in res.message
    assert res.t_final == pytest.approx(0.05, rel=1e-12)
    assert res.critical_point is None and not res.polish_accepted
    json.dumps(res.to_dict())  # JSON-ready


def test_callback_sees_the_flow_and_can_stop_it():
    prob = _small()
    seen = []

    def cb(t, w, loss, gnorm):
        seen.append((t, w.copy(), loss, gnorm))
        return len(seen) >= 5

    res = lcnflow.gradient_flow(prob.risk, prob.w0, callback=cb)
    assert len(seen) == 5 and not res.converged and "callback" in res.message
    assert all(b[0] > a[0] for a, b in itertools.pairwise(seen))
    for _, w, loss, gnorm in seen:  # (t, w, L(w), ‖∇L(w)‖) against the torch oracle, rounding-level
        assert loss == pytest.approx(prob.oracle.value(w), rel=1e-10)
        assert gnorm == pytest.approx(np.linalg.norm(prob.oracle.gradient(w)), rel=1e-9)
    np.testing.assert_array_equal(res.trajectory[-1], seen[-1][1])


def test_a_run_uses_one_blas_thread_and_restores_the_callers_setting():
    """Inside a run (seen from its callback) and a search for the best point of M, every BLAS library reports one
    thread (threadpoolctl's own report); afterwards the two threads the caller set are back."""
    import threadpoolctl

    from lcnflow.analysis.optimum import best_on_function_space

    def blas_threads():
        return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}

    prob = _small()
    seen = []
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        lcnflow.gradient_flow(prob.risk, prob.w0, callback=lambda *_: seen.append(blas_threads()) and None)
        assert blas_threads() == {2}
        best_on_function_space(prob.risk, seed=3)
        assert blas_threads() == {2}
    assert seen and all(s == {1} for s in seen)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"integrator": "euler"}, "integrator"),
        ({"method": "euler"}, "integrator"),  # the former name of the option
        ({"gtol": 2.0}, "gtol"),  # relative tolerances live in (0, 1)
        ({"certify_tol": 0.0}, "certify_tol"),
        ({"polish_radius": -1.0}, "polish_radius"),
        ({"blowup_factor": 0.5}, "blowup_factor"),
        ({"max_steps": -5}, "max_steps"),
        ({"max_steps": 2.5}, "max_steps"),
        ({"max_record": 1}, "max_record"),
        ({"max_time": 0}, "max_time"),
        ({"classify": "yes"}, "classify"),
        ({"callback": 3}, "callback"),
        ({"rtol": -1e-6}, "rtol"),
        ({"rtol": float("nan")}, "rtol"),
        ({"atol": 0.0}, "atol"),
        ({"t_max": -1.0}, "t_max"),
        ({"gtol": -1.0}, "gtol"),
        ({"save_at": [0.0, 2.0, 1.0]}, "save_at"),
        ({"save_at": [-1.0, 1.0]}, "save_at"),
        ({"save_at": [1.0, 5.0], "t_max": 2.0}, "save_at"),
    ],
)
def test_bad_options_raise_value_error_naming_the_field(kwargs, field):
    prob = _small()
    with pytest.raises(ValueError, match=field):
        lcnflow.gradient_flow(prob.risk, prob.w0, **kwargs)


@pytest.mark.parametrize("bad", ["square", None, 3.0])
def test_a_risk_that_is_not_an_empirical_risk_is_refused_by_name(bad):
    with pytest.raises(ValueError, match=r"risk: expected a lcnflow\.EmpiricalRisk"):
        lcnflow.gradient_flow(bad, [np.ones(2)])
    with pytest.raises(ValueError, match=r"risk: expected a lcnflow\.EmpiricalRisk"):
        lcnflow.gradient_descent(bad, [np.ones(2)], 0.1)
