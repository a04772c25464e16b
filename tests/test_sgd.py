"""Minibatch risks and stochastic_gradient_descent against independent oracles.

* minibatch values and gradients: torch autograd through ``conv1d``/``conv2d`` applied layer by layer to the
  batch's samples (``flow_helpers.TorchRisk`` built on the batch, repeats included);
* minibatch square-loss statistics: the loop-built patch matrix of the batch (``conftest.loop_patch_matrix``);
* one SGD step, the exact change of the conserved quantities and heavy-ball momentum: the torch gradient of the
  batch the documented minibatch sequence gives, and ``torch.optim.SGD``;
* B = m: lcnflow's own gradient_descent (itself tested against torch and Radau in test_descent);
* η → 0: ``scipy.integrate.solve_ivp`` (Radau, rtol = atol = 1e-12) on the torch gradient of the full risk.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import lcnflow
from conftest import loop_patch_matrix
from flow_helpers import (
    TorchRisk,
    invariant_drift,
    layer_gradients,
    layer_invariants,
    make_problem,
    shared_problem,
    shared_reference,
)
from lcnflow.flow.sgd import minibatches, step_sizes

#: A square-loss problem with k_v = 5 < d_N = 8, so minibatches take the per-sample-statistics path.
WIDE = dict(filter_sizes=[3, 3], strides=[1, 1], out_size=8, m=12, seed=3, loss="square")


def _wide():
    return make_problem(WIDE["filter_sizes"], WIDE["strides"], WIDE["out_size"], m=WIDE["m"], seed=WIDE["seed"])


def _batch_oracle(prob, idx) -> TorchRisk:
    """The torch risk of the samples ``idx`` (repeats included): ``(1/|B|) Σ_{j∈B} Σ_a ℓ(...)``."""
    return TorchRisk(prob.filter_sizes, prob.strides, prob.X[idx], prob.Y[idx], prob.loss_name, prob.loss_params)


def _record(risk, w0, eta, batch_size, **kwargs):
    """Run SGD and keep every state through the callback (``(t, w)``, initial state first)."""
    states = [(0.0, np.array(w0, dtype=float))]

    def cb(t, w, loss, gnorm):
        states.append((t, w.copy()))

    res = lcnflow.stochastic_gradient_descent(risk, w0, eta, batch_size, callback=cb, classify=False, **kwargs)
    return res, states


# ---------------------------------------------------------------------------------------------- minibatch kernels
@pytest.mark.parametrize("name", ["1d-square", "1d-pseudo_huber", "2d-log_cosh", "wide-square", "wide-residual"])
def test_minibatch_value_and_gradient_match_torch_autograd_on_the_batch(name):
    prob = _wide() if name.startswith("wide") else shared_problem(name)
    risk = prob.risk
    if name == "wide-residual":  # the same square loss without per-sample statistics: the residual kernel
        risk = lcnflow.EmpiricalRisk(prob.arch, "square", lcnflow.Dataset(prob.X, prob.Y))
        risk.max_sample_statistics_bytes = 0
    rng = np.random.default_rng(7)
    m = prob.X.shape[0]
    for idx in (np.array([1, 3]), np.array([2, 0, 2]), rng.integers(0, m, size=5), np.arange(m)):
        oracle = _batch_oracle(prob, idx)
        val, g = risk.minibatch_value_and_gradient(prob.w0, idx)
        # O(1) problems: values ~1, gradients ~1; both sides are exact up to rounding of a few dozen flops
        assert val == pytest.approx(oracle.value(prob.w0), rel=1e-12, abs=1e-14)
        np.testing.assert_allclose(g, oracle.gradient(prob.w0), rtol=0, atol=1e-12)
        # the list form gives the same, layer by layer
        _, gl = risk.minibatch_value_and_gradient(prob.oracle.split(prob.w0), idx)
        np.testing.assert_allclose(np.concatenate([x.ravel() for x in gl]), g, rtol=0, atol=0)
    if name == "wide-square":
        assert risk._sample_statistics is not None  # the statistics path really ran
    if name == "wide-residual":
        assert risk._sample_statistics is None


def test_full_batch_equals_the_full_risk():
    """A batch of all samples (any order) is the full risk: L_B = L and ∇L_B = ∇L to rounding."""
    for prob in (shared_problem("1d-pseudo_huber"), _wide()):
        m = prob.X.shape[0]
        val, g = prob.risk.minibatch_value_and_gradient(prob.w0, np.random.default_rng(1).permutation(m))
        assert val == pytest.approx(prob.oracle.value(prob.w0), rel=1e-12)
        np.testing.assert_allclose(g, prob.oracle.gradient(prob.w0), rtol=0, atol=1e-12)


def test_minibatch_statistics_from_the_loop_built_patch_matrix():
    prob = _wide()
    idx = np.array([4, 0, 4, 11, 7])
    H = loop_patch_matrix(prob.X[idx], prob.arch.final_filter_size, 1, WIDE["out_size"])
    y = prob.Y[idx].ravel()
    G, b, c = prob.risk.minibatch_statistics(idx)
    np.testing.assert_allclose(G, H.T @ H / idx.size, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(b, H.T @ y / idx.size, rtol=1e-13, atol=1e-13)
    assert c == pytest.approx(y @ y / (2 * idx.size), rel=1e-14)
    # and the function-space minibatch gradient is G_B v − b_B
    v = np.random.default_rng(2).standard_normal(G.shape[0])
    val, gv = prob.risk.minibatch_function_space_gradient(v, idx)
    np.testing.assert_allclose(gv, H.T @ (H @ v - y) / idx.size, rtol=0, atol=1e-12)
    assert val == pytest.approx(np.sum((H @ v - y) ** 2) / (2 * idx.size), rel=1e-12)


@pytest.mark.parametrize(
    ("batch", "match"),
    [(np.array([], dtype=int), "non-empty"), (np.array([0.5, 1.0]), "integer"), (np.array([0, 12]), r"\[0, 11\]"),
     (np.array([-1, 2]), "got -1"), (np.array([[0, 1]]), "1D")],
)
def test_bad_batches_raise_naming_the_batch(batch, match):
    prob = _wide()
    with pytest.raises(ValueError, match=f"batch: .*{match}"):
        prob.risk.minibatch_value_and_gradient(prob.w0, batch)


# ---------------------------------------------------------------------------------------------- sampling, schedules
def test_minibatches_cover_each_epoch_once_and_are_reproducible():
    m, B = 10, 3
    gen = minibatches(m, B, "without_replacement", seed=5)
    for _ in range(4):  # four epochs of ⌈10/3⌉ = 4 batches: sizes 3, 3, 3, 1 and every index exactly once
        epoch = [next(gen) for _ in range(4)]
        assert [len(b) for b in epoch] == [3, 3, 3, 1]
        assert sorted(np.concatenate(epoch).tolist()) == list(range(m))
    a = list(itertools.islice(minibatches(m, B, "with_replacement", seed=5), 50))
    b = list(itertools.islice(minibatches(m, B, "with_replacement", seed=5), 50))
    c = list(itertools.islice(minibatches(m, B, "with_replacement", seed=6), 50))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_sampling_with_replacement_is_uniform_and_repeats():
    m, B, n = 5, 4, 5000
    draws = np.concatenate(list(itertools.islice(minibatches(m, B, "with_replacement", seed=0), n)))
    counts = np.bincount(draws, minlength=m)
    # each count ~ Binomial(20000, 1/5): mean 4000, sd ≈ 56.6; 5 sd bounds fail with probability < 1e-5
    assert np.all(np.abs(counts - B * n / m) < 5 * math.sqrt(B * n * (1 / m) * (1 - 1 / m)))
    batches = list(itertools.islice(minibatches(m, B, "with_replacement", seed=0), 200))
    # P(no repeat in 4 draws of 5) = 5·4·3·2/5⁴ ≈ 0.19: repeats must occur in many batches
    assert sum(len(set(b.tolist())) < B for b in batches) > 100


def test_step_size_schedules_are_the_documented_formulas():
    k = np.arange(12)
    np.testing.assert_array_equal(step_sizes(0.1, 12), np.full(12, 0.1))
    np.testing.assert_allclose(step_sizes(0.1, 12, "step", decay_steps=5, decay_factor=0.5),
                               0.1 * np.array([1.0] * 5 + [0.5] * 5 + [0.25] * 2), rtol=1e-15)
    np.testing.assert_allclose(step_sizes(0.1, 12, "inverse_time", decay_steps=4), [0.1 / (1 + i / 4) for i in k],
                               rtol=1e-15)
    np.testing.assert_allclose(step_sizes(0.1, 12, lambda i: 0.2 / (i + 1)), 0.2 / (k + 1), rtol=1e-15)
    with pytest.raises(ValueError, match=r"flow\.schedule: the schedule gave η_3"):
        step_sizes(0.1, 12, lambda i: 0.1 if i != 3 else -1.0)


def test_the_run_follows_its_schedule_and_reports_flow_time():
    prob = shared_problem("1d-square")
    res, states = _record(prob.risk, prob.w0, 0.05, 2, max_steps=30, schedule="inverse_time", decay_steps=7)
    etas = np.diff([w for w in (s[0] for s in states)])
    np.testing.assert_allclose(etas, [0.05 / (1 + i / 7) for i in range(30)], rtol=1e-12)
    assert res.t_final == pytest.approx(math.fsum(0.05 / (1 + i / 7) for i in range(30)), rel=1e-13)
    assert res.num_steps == 30 and res.options["final_step_size"] == pytest.approx(0.05 / (1 + 29 / 7))


# ---------------------------------------------------------------------------------------------- the iteration
@pytest.mark.parametrize("name", ["1d-square", "1d-pseudo_huber", "2d-log_cosh"])
@pytest.mark.parametrize("sampling", ["without_replacement", "with_replacement"])
def test_each_step_is_the_batch_gradient_step_and_changes_invariants_by_eta_squared(name, sampling):
    """w_{k+1} = w_k − η ∇L_{B_k}(w_k) with B_k the documented sequence, and per step
    δ_i(w_{k+1}) − δ_i(w_k) = η²(‖g_{i+1}‖² − ‖g_i‖²) with the minibatch layer gradients g (the O(η) term vanishes
    for any risk of π(w), the minibatch risk included)."""
    prob = shared_problem(name)
    eta, B, n = 0.2, 2, 12
    res, states = _record(prob.risk, prob.w0, eta, B, max_steps=n, sampling=sampling, seed=11)
    batches = list(itertools.islice(minibatches(prob.X.shape[0], B, sampling, seed=11), n))
    biggest = 0.0
    for (_, a), (_, b), idx in zip(states[:-1], states[1:], batches, strict=True):
        g = _batch_oracle(prob, idx).gradient(a)
        np.testing.assert_allclose(b, a - eta * g, rtol=0, atol=1e-13)  # ‖w‖ ≈ 1.5: rounding ≈ 1e-15
        gi = layer_gradients(prob.sizes, g)
        predicted = eta**2 * np.array([gi[i + 1] @ gi[i + 1] - gi[i] @ gi[i] for i in range(len(gi) - 1)])
        change = layer_invariants(prob.sizes, b) - layer_invariants(prob.sizes, a)
        # exact identity; rounding of the ‖w‖² terms ~ 10·ε·‖w‖² ≈ 5e-15
        np.testing.assert_allclose(change, predicted, rtol=0, atol=1e-13)
        biggest = max(biggest, float(np.max(np.abs(predicted))))
    assert biggest > 1e-4  # the identity is tested on changes far above rounding
    mine = invariant_drift(prob.sizes, prob.w0, [w for _, w in states])
    assert res.invariant_drift == pytest.approx(mine, rel=1e-9)


def test_full_batch_sgd_is_gradient_descent_step_by_step():
    """B = m without replacement: every batch is a permutation of all samples, so each step is a GD step."""
    for prob in (shared_problem("1d-pseudo_huber"), _wide()):
        m, eta, n = prob.X.shape[0], 0.02, 300
        _, sgd = _record(prob.risk, prob.w0, eta, m, max_steps=n, seed=3)
        gd_states = [prob.w0.copy()]

        def keep(t, w, loss, gn, into=gd_states):
            into.append(w.copy())

        lcnflow.gradient_descent(prob.risk, prob.w0, eta, max_steps=n, classify=False, callback=keep)
        S, D = np.array([w for _, w in sgd]), np.array(gd_states)
        assert S.shape == D.shape == (n + 1, prob.w0.size)
        # both compute the same gradient in a different summation order: rounding ~1e-16 per step, grows at most
        # linearly over 300 steps on these contracting O(1) problems
        np.testing.assert_allclose(S, D, rtol=0, atol=1e-12 * max(1.0, float(np.abs(D).max())))
        assert np.max(np.abs(S[-1] - S[0])) > 0.01  # and the iterates really moved


def test_heavy_ball_momentum_matches_torch_optim_sgd_and_breaks_the_identity():
    prob = shared_problem("1d-pseudo_huber")
    eta, mu, B, n = 0.1, 0.9, 2, 15
    res, states = _record(prob.risk, prob.w0, eta, B, max_steps=n, momentum=mu, seed=4)
    batches = list(itertools.islice(minibatches(prob.X.shape[0], B, "without_replacement", seed=4), n))
    wt = torch.tensor(prob.w0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([wt], lr=eta, momentum=mu)
    ref = [prob.w0.copy()]
    for idx in batches:
        opt.zero_grad()
        _batch_oracle(prob, idx)._f(wt).backward()
        opt.step()
        ref.append(wt.detach().numpy().copy())
    np.testing.assert_allclose(np.array([w for _, w in states]), np.array(ref), rtol=0, atol=1e-12)
    assert res.t_final == pytest.approx(n * eta / (1 - mu), rel=1e-12)  # documented flow-time scale η/(1−μ)
    # with momentum the step is not −η g_k: the η²-identity fails by far more than rounding
    misses = []
    for (_, a), (_, b), idx in zip(states[:-1], states[1:], batches, strict=True):
        gi = layer_gradients(prob.sizes, _batch_oracle(prob, idx).gradient(a))
        predicted = eta**2 * np.array([gi[i + 1] @ gi[i + 1] - gi[i] @ gi[i] for i in range(len(gi) - 1)])
        misses.append(np.max(np.abs(layer_invariants(prob.sizes, b) - layer_invariants(prob.sizes, a) - predicted)))
    assert max(misses) > 1e-3


def test_reproducible_from_the_seed():
    prob = shared_problem("1d-pseudo_huber")
    kw = dict(max_steps=40, sampling="with_replacement", classify=False)
    a = lcnflow.stochastic_gradient_descent(prob.risk, prob.w0, 0.1, 2, seed=9, **kw)
    b = lcnflow.stochastic_gradient_descent(prob.risk, prob.w0, 0.1, 2, seed=9, **kw)
    c = lcnflow.stochastic_gradient_descent(prob.risk, prob.w0, 0.1, 2, seed=10, **kw)
    np.testing.assert_array_equal(a.trajectory, b.trajectory)
    assert not np.array_equal(a.trajectory[-1], c.trajectory[-1])


def test_small_steps_approach_the_gradient_flow_at_matched_times():
    """With a fixed batch size B < m, max_{k: kη ≤ T} ‖w_k − w(kη)‖ shrinks with η (reference: Radau on the torch
    gradient of the full risk).  Averaged over seeds, it is first order for reshuffled epochs: over one epoch at a
    fixed point the batch gradients sum to the full gradient, so the noise cancels to O(η) per unit time."""
    prob = shared_problem("1d-square")
    T, B = 1.0, 2
    ref = shared_reference("1d-square", T)
    etas = (0.02, 0.01, 0.005)
    dist = []
    for eta in etas:
        n = round(T / eta)
        per_seed = []
        for seed in range(3):
            _, states = _record(prob.risk, prob.w0, eta, B, max_steps=n, seed=seed)
            times = np.array([t for t, _ in states])
            np.testing.assert_allclose(times, eta * np.arange(n + 1), rtol=1e-12, atol=0)
            per_seed.append(float(np.max(np.linalg.norm(np.array([w for _, w in states]) - ref(times), axis=1))))
        dist.append(float(np.mean(per_seed)))
    scale = max(1.0, float(np.linalg.norm(prob.w0)))
    assert dist[-1] <= 0.05 * scale
    slope = np.polyfit(np.log(etas), np.log(dist), 1)[0]
    assert dist[0] > dist[1] > dist[2] and slope > 0.8, (dist, slope)


# ---------------------------------------------------------------------------------------------- the endpoint
def test_constant_step_endpoint_is_polished_and_only_then_certified():
    """SGD with a constant step does not converge: its endpoint's ‖∇L‖ stays far above the certificate; polishing
    moves it (reported), and the run is 'converged' only because the polished point passed the certificate."""
    prob = _wide()
    res = lcnflow.stochastic_gradient_descent(prob.risk, prob.w0, 0.01, 3, epochs=400, seed=2, polish_radius=0.1)
    assert res.flow_gradient_norm > 1e3 * res.options["certify_tol"]
    assert res.polish_distance > 0 and "polished endpoint" in res.message
    assert res.converged == res.certified
    assert res.certified, res.message
    w = np.concatenate([f.ravel() for f in res.limit])
    g0 = np.linalg.norm(prob.oracle.gradient(prob.w0))
    assert np.linalg.norm(prob.oracle.gradient(w)) <= 1e-9 * g0  # a critical point of the torch risk
    assert res.critical_point is not None and res.critical_point.kind in ("global_minimum", "local_minimum")
    # the endpoint was within polish_distance of that critical point
    assert np.linalg.norm(res.trajectory[-1] - w) == pytest.approx(res.polish_distance, rel=1e-9)


def test_polish_rejected_far_from_a_critical_point_means_no_label():
    prob = _wide()
    res = lcnflow.stochastic_gradient_descent(prob.risk, prob.w0, 0.01, 3, max_steps=5, polish_radius=1e-6)
    assert not res.certified and not res.converged and res.critical_point is None
    assert "rejected" in res.polish_message


def test_blow_up_stops_the_run_unpolished():
    prob = shared_problem("1d-square")
    res = lcnflow.stochastic_gradient_descent(prob.risk, prob.w0, 50.0, 2, epochs=50)
    assert not res.converged and not res.certified and res.critical_point is None
    assert "without bound" in res.message and res.num_steps < 100


def test_save_at_steps_keeps_the_iterates_at_those_steps():
    prob = shared_problem("1d-square")
    steps = [0, 3, 3, 10, 20]
    res, states = _record(prob.risk, prob.w0, 0.05, 2, max_steps=20, save_at_steps=steps)
    np.testing.assert_array_equal(res.saved_states, np.array([states[k][1] for k in steps]))
    np.testing.assert_allclose(res.saved_times, 0.05 * np.array(steps), rtol=1e-12)


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((0.0, 2), {}, "step_size"),
        ((float("inf"), 2), {}, "step_size"),
        ((0.1, 0), {}, "batch_size"),
        ((0.1, 5), {}, r"batch_size: must be an integer in \[1, m = 4\], got 5"),
        ((0.1, 2), {"epochs": 0}, "epochs"),
        ((0.1, 2), {"max_steps": -3}, "max_steps"),
        ((0.1, 2), {"momentum": 1.0}, "momentum"),
        ((0.1, 2), {"sampling": "bootstrap"}, "sampling: unknown sampling 'bootstrap'"),
        ((0.1, 2), {"schedule": "cosine"}, "schedule: unknown schedule 'cosine'"),
        ((0.1, 2), {"schedule": "step", "decay_factor": 1.5}, "decay_factor"),
        ((0.1, 2), {"max_steps": 5, "save_at_steps": [3, 1]}, "save_at_steps"),
        ((0.1, 2), {"max_steps": 5, "save_at_steps": [6]}, "save_at_steps"),
    ],
)
def test_bad_options_raise_value_error_naming_the_field(args, kwargs, field):
    prob = shared_problem("1d-square")
    with pytest.raises(ValueError, match=f"flow.{field}"):
        lcnflow.stochastic_gradient_descent(prob.risk, prob.w0, *args, **kwargs)
