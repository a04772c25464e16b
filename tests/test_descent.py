"""gradient_descent against independent oracles: the exact one-step change of the conserved quantities, first-order
convergence to the gradient flow (Radau reference), the Armijo safeguard, and option checks.

Gradients come from torch autograd through ``conv1d``/``conv2d`` applied layer by layer (``flow_helpers``).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import lcnflow
from flow_helpers import (
    PROBLEMS,
    invariant_drift,
    layer_gradients,
    layer_invariants,
    shared_problem,
    shared_reference,
)


def _record(prob, eta, **kwargs):
    """Run GD and capture every accepted state through the callback (``(t, w)`` pairs, initial state first)."""
    states = [(0.0, prob.w0.copy())]

    def cb(t, w, loss, gnorm):
        states.append((t, w.copy()))

    res = lcnflow.gradient_descent(prob.risk, prob.w0, eta, callback=cb, classify=False, **kwargs)
    return res, states


@pytest.mark.parametrize("name", list(PROBLEMS))
@pytest.mark.parametrize("eta", [0.05, 0.3])
def test_one_step_changes_invariants_by_eta_squared_gradient_norms(name, eta):
    """δ_i(w − ηg) − δ_i(w) = η²(‖g_{i+1}‖² − ‖g_i‖²): the O(η) term −2η(⟨w_{i+1}, g_{i+1}⟩ − ⟨w_i, g_i⟩) vanishes
    because ⟨w_i, ∇_{w_i}L⟩ = ⟨π(w), ∇ℒ⟩ for every layer (π is multilinear)."""
    prob = shared_problem(name)
    res = lcnflow.gradient_descent(prob.risk, prob.w0, eta, max_steps=1, classify=False)
    assert res.num_steps == 1 and res.trajectory.shape == (2, prob.w0.size)
    g = prob.oracle.gradient(prob.w0)
    w1 = res.trajectory[1]
    # the step itself: w1 = w0 − η g (torch gradient; both sides rounding-level, scale ‖w‖ ≈ 1.5)
    np.testing.assert_allclose(w1, prob.w0 - eta * g, rtol=0, atol=1e-13)
    assert res.t_final == pytest.approx(eta, rel=1e-15)
    gi = layer_gradients(prob.sizes, g)
    predicted = eta**2 * np.array([gi[i + 1] @ gi[i + 1] - gi[i] @ gi[i] for i in range(len(gi) - 1)])
    change = layer_invariants(prob.sizes, w1) - layer_invariants(prob.sizes, prob.w0)
    # the identity is exact; rounding in ‖w‖² terms ~ 10·ε·‖w‖² ≈ 5e-15, far below the predicted change (≥ 1e-5)
    assert np.max(np.abs(predicted)) > 1e-5
    np.testing.assert_allclose(change, predicted, rtol=0, atol=1e-13)
    # the reported drift is this change relative to max(‖w0‖², ‖w1‖²)
    assert res.invariant_drift == pytest.approx(invariant_drift(prob.sizes, prob.w0, w1[None]), rel=1e-9)


def test_invariant_change_accumulates_step_by_step():
    """Over many steps the identity holds at every step, and the reported drift is the max over the run."""
    prob = shared_problem("1d-pseudo_huber")
    eta = 0.1
    res, states = _record(prob, eta, max_steps=40)
    assert len(states) == 41
    for (_, a), (_, b) in itertools.pairwise(states):
        gi = layer_gradients(prob.sizes, prob.oracle.gradient(a))
        predicted = eta**2 * np.array([gi[i + 1] @ gi[i + 1] - gi[i] @ gi[i] for i in range(len(gi) - 1)])
        change = layer_invariants(prob.sizes, b) - layer_invariants(prob.sizes, a)
        np.testing.assert_allclose(change, predicted, rtol=0, atol=1e-13)  # as in the one-step test
    mine = invariant_drift(prob.sizes, prob.w0, [w for _, w in states])
    assert mine > 1e-6  # GD really drifts (unlike the flow)
    assert res.invariant_drift == pytest.approx(mine, rel=1e-9)
    assert res.t_final == pytest.approx(40 * eta, rel=1e-13)


@pytest.mark.parametrize("name", ["1d-square", "2d-log_cosh"])
def test_small_steps_track_the_gradient_flow_to_first_order(name):
    """Euler's global error on [0, T] is c·η + O(η²): small, and halving η halves it."""
    prob = shared_problem(name)
    T = 0.5
    ref = shared_reference(name, {"1d-square": 1.0, "2d-log_cosh": 0.5}[name])
    errors = []
    for eta in (1e-2, 5e-3):
        n = round(T / eta)
        _, states = _record(prob, eta, max_steps=n)
        times = np.array([t for t, _ in states])
        np.testing.assert_allclose(times, eta * np.arange(n + 1), rtol=1e-12, atol=0)
        W = np.array([w for _, w in states])
        errors.append(float(np.max(np.abs(W - ref(times)))))
    scale = max(1.0, float(np.max(np.abs(ref([0.0, T])))))
    # the flow moves by 0.3–0.7 on [0, T]; Euler's error ≈ (η/2)·T·‖∇²L ∇L‖ ≈ 1e-3 here: allow 5e-3·scale
    assert errors[1] <= 5e-3 * scale
    # first order: ratio 2 up to the O(η) relative correction (~1%) — the Radau error (1e-11) is negligible
    assert errors[0] / errors[1] == pytest.approx(2.0, rel=0.05)


def test_adaptive_steps_satisfy_armijo_and_decrease_the_loss():
    prob = shared_problem("1d-square")
    eta0 = 5.0  # far too large for this problem (‖∇²L‖ ≈ 10): the safeguard has to halve it
    res, states = _record(prob, eta0, max_steps=60, adaptive=True)
    assert "adaptive" in res.integrator.lower() and res.method == "gradient_descent"
    losses = [prob.oracle.value(w) for _, w in states]
    etas = np.diff([t for t, _ in states])
    assert etas[0] < eta0  # the first trial step was rejected
    for k in range(len(etas)):
        g = prob.oracle.gradient(states[k][1])
        # accepted step: w_{k+1} = w_k − η_k g_k and L(w_{k+1}) ≤ L(w_k) − ½ η_k ‖g_k‖² (rounding slack 1e-13)
        np.testing.assert_allclose(states[k + 1][1], states[k][1] - etas[k] * g, rtol=0, atol=1e-12)
        assert losses[k + 1] <= losses[k] - 0.5 * etas[k] * (g @ g) + 1e-13
    assert losses[-1] < 0.9 * losses[0]


def test_descent_reaches_a_certified_critical_point():
    """GD with a safe step converges; its certified limit is a critical point of the torch risk."""
    prob = shared_problem("1d-square")
    res = lcnflow.gradient_descent(prob.risk, prob.w0, 0.05, max_steps=50_000)
    assert res.converged and res.certified, res.message
    w = np.concatenate([f.ravel() for f in res.limit])
    g0 = np.linalg.norm(prob.oracle.gradient(prob.w0))
    assert np.linalg.norm(prob.oracle.gradient(w)) <= 1e-9 * g0  # certify_tol = 1e-10·scale, plus rounding
    assert res.critical_point is not None and res.critical_point.kind in ("global_minimum", "local_minimum")
    assert "gradient descent" in res.integrator.lower() and res.method == "gradient_descent"


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((0.0,), {}, "step_size"),
        ((-0.1,), {}, "step_size"),
        ((float("nan"),), {}, "step_size"),
        ((0.1,), {"max_steps": 0}, "max_steps"),
        ((0.1,), {"adaptive": 1}, "adaptive"),
        ((0.1,), {"blowup_factor": 0.5}, "blowup_factor"),
        ((0.1,), {"max_record": 1}, "max_record"),
    ],
)
def test_bad_options_raise_value_error_naming_the_field(args, kwargs, field):
    prob = shared_problem("1d-square")
    with pytest.raises(ValueError, match=field):
        lcnflow.gradient_descent(prob.risk, prob.w0, *args, **kwargs)
