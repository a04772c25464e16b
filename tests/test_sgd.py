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
import json
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
from lcnflow.dynamics.sgd import minibatches, step_sizes
from lcnflow.experiments.compare import (
    compare_methods,
    distance_to_flow,
    format_rates,
    outcome,
    outcome_rates,
    sgd_sweep,
    wilson_interval,
)

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
        _, g_flat = risk.flat_minibatch_value_and_gradient(prob.w0, idx, need_value=False)
        np.testing.assert_allclose(g_flat, g, rtol=0, atol=0)
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


# ---------------------------------------------------------------------------------------------- side by side, rates
def test_wilson_interval_matches_scipy():
    import scipy.stats

    for k, n in [(0, 8), (7, 8), (8, 8), (3, 10), (1, 1), (50, 200)]:
        ref = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = wilson_interval(k, n)
        assert lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12)
    ref = scipy.stats.binomtest(2, 9).proportion_ci(confidence_level=0.8, method="wilson")
    assert wilson_interval(2, 9, 0.8) == pytest.approx((ref.low, ref.high), abs=1e-12)
    for bad in [(3, 2), (-1, 2), (1, 0)]:
        with pytest.raises(ValueError, match=r"successes|trials"):
            wilson_interval(*bad)


def test_outcome_rates_count_per_cell_and_format():
    records = [("GF", "spurious")] * 7 + [("GF", "global_minimum")] + [("SGD", "global_minimum")] * 3 + [
        ("SGD", "uncertified_endpoint")]
    rows = outcome_rates(records)
    assert [r["cell"] for r in rows] == ["GF", "SGD"] and [r["runs"] for r in rows] == [8, 4]
    gf = rows[0]["outcomes"]
    assert list(gf) == ["uncertified_endpoint", "global_minimum", "spurious"]  # OUTCOMES order, every seen outcome
    assert gf["spurious"]["count"] == 7 and gf["spurious"]["fraction"] == 7 / 8
    assert gf["uncertified_endpoint"]["count"] == 0 and gf["spurious"]["interval"] == wilson_interval(7, 8)
    text = format_rates(rows)
    assert "| GF | 8 |" in text and "7/8 (53–98 %)" in text


def test_compare_methods_distances_against_the_radau_reference():
    """The distances reported at matched times agree with ‖w_k − w_ref(kη)‖ computed from the iterates the runs
    saved and the independent Radau flow; everything ends at one certified limit on this problem."""
    prob = shared_problem("1d-square")
    eta = 0.01
    cmp = compare_methods(prob.risk, prob.w0, eta, 2, max_steps=100, seed=1, num_matched=12)
    ref = shared_reference("1d-square", 1.0)
    for name in ("gradient_descent", "sgd"):
        run = cmp.runs[name]
        np.testing.assert_allclose(run.times, eta * run.steps, rtol=1e-12)
        assert run.steps[0] == 0 and run.steps[-1] == 100 and run.distance_to_flow[0] == 0.0
        mine = np.linalg.norm(run.states - ref(run.times), axis=1)
        # the flow inside compare_methods runs at rtol 1e-9: its states agree with Radau to ~1e-8
        np.testing.assert_allclose(run.distance_to_flow, mine, rtol=0, atol=1e-7)
        assert 1e-5 < np.max(run.distance_to_flow) < 0.05 * cmp.scale
    # the SGD iterates saved are the ones a callback sees
    _, states = _record(prob.risk, prob.w0, eta, 2, max_steps=100, seed=1)
    np.testing.assert_array_equal(cmp.runs["sgd"].states, np.array([states[k][1] for k in cmp.runs["sgd"].steps]))
    rows = cmp.table()
    assert rows[0]["method"] == "gradient flow" and len(rows) == 3
    assert "same limit as the flow" in cmp.summary()


def test_compare_methods_maximum_is_over_every_step():
    """``max_distance_to_flow`` is ``max_k ‖w_k − w_ref(kη)‖`` over every step of SGD (iterates from the callback,
    the flow from the independent Radau reference), not over the log-spaced matched steps it keeps; the step of the
    maximum is among them."""
    prob = shared_problem("1d-square")
    eta = 0.01
    cmp = compare_methods(prob.risk, prob.w0, eta, 2, max_steps=100, seed=1, num_matched=5, gd=False)
    ref = shared_reference("1d-square", 1.0)
    _, states = _record(prob.risk, prob.w0, eta, 2, max_steps=100, seed=1)
    times = eta * np.arange(len(states))
    every = np.linalg.norm(np.array([w for _, w in states]) - ref(times), axis=1)
    run = cmp.runs["sgd"]
    # the flow inside compare_methods runs at rtol 1e-9: its states agree with Radau to ~1e-8
    assert run.max_distance_to_flow == pytest.approx(np.max(every), abs=1e-7)
    assert run.time_of_max == pytest.approx(times[np.argmax(every)], rel=1e-9)
    assert run.time_of_max in run.times and len(run.steps) <= 5 + 2
    sampled = np.linalg.norm(run.states - ref(run.times), axis=1)
    assert np.max(sampled) == pytest.approx(run.max_distance_to_flow, abs=1e-7)  # the maximum's step is kept
    assert cmp.table()[1]["max_distance_to_flow"] == run.max_distance_to_flow
    assert f"{run.max_distance_to_flow:.3g}" in cmp.summary()


def test_compare_methods_same_limit_and_outcomes():
    prob = _wide()
    cmp = compare_methods(prob.risk, prob.w0, 0.01, 3, epochs=400, seed=2, sgd_options={"polish_radius": 0.1})
    assert cmp.flow.certified and cmp.runs["gradient_descent"].result.certified and cmp.runs["sgd"].result.certified
    for name in ("gradient_descent", "sgd"):
        same = cmp.same_limit_as_flow(name)
        v, vf = cmp.runs[name].result.final_filter, cmp.flow.final_filter
        assert same == (np.linalg.norm(v - vf) <= 1e-6 * np.linalg.norm(vf))
        assert cmp.runs[name].outcome == outcome(cmp.runs[name].result)
    assert outcome(cmp.flow) in ("global_minimum", "local_minimum", "spurious")
    assert "flow" in cmp.to_dict() and cmp.to_dict()["runs"]["sgd"]["outcome"] == cmp.runs["sgd"].outcome


def test_outcome_words():
    prob = shared_problem("1d-square")
    blown = lcnflow.stochastic_gradient_descent(prob.risk, prob.w0, 50.0, 2, epochs=5)
    assert outcome(blown) == "uncertified_endpoint"
    plain = lcnflow.stochastic_gradient_descent(prob.risk, prob.w0, 0.05, 4, epochs=3000, classify=False)
    assert plain.certified and outcome(plain) == "unclassified"


def test_distance_to_flow_is_the_documented_maximum():
    prob = shared_problem("1d-square")
    got = distance_to_flow(prob.risk, prob.w0, [0.02], 2, 1.0, seeds=[0, 1])
    ref = shared_reference("1d-square", 1.0)
    mine = []
    for seed in (0, 1):
        _, states = _record(prob.risk, prob.w0, 0.02, 2, max_steps=50, seed=seed)
        mine.append(max(np.linalg.norm(w - ref([t])[0]) for t, w in states))
    assert got[0.02] == pytest.approx(np.mean(mine), abs=1e-7)


def test_sgd_sweep_records_every_run():
    prob = shared_problem("1d-square")
    inits = [prob.w0, 0.5 * prob.w0]
    recs = sgd_sweep(prob.risk, inits, step_sizes=[0.05], batch_sizes=[2, 4], seeds=[0, 1], epochs=20,
                     sgd_options={"classify": False})
    assert len(recs) == 2 * (1 + 4)
    assert sum(r["method"] == "gradient_flow" for r in recs) == 2
    cells = {r["cell"] for r in recs}
    assert cells == {"gradient flow", "SGD B = 2, η = 0.05", "SGD B = 4, η = 0.05"}
    rows = outcome_rates((r["cell"], r["outcome"]) for r in recs)
    assert {r["cell"]: r["runs"] for r in rows} == {"gradient flow": 2, "SGD B = 2, η = 0.05": 4,
                                                    "SGD B = 4, η = 0.05": 4}


def test_sgd_sweep_flow_time_budget_and_annealing():
    """flow_time T gives ⌈T/η⌉ steps per cell; anneal (f, γ) runs ⌈fT/η⌉ of them at η and the rest at γη."""
    prob = shared_problem("1d-square")
    recs = sgd_sweep(prob.risk, [prob.w0], step_sizes=[0.05, 0.02], batch_sizes=[2], flow_time=1.0,
                     anneal=(0.6, 0.1), flow=False, sgd_options={"classify": False})
    for r in recs:
        n, k = math.ceil(1.0 / r["step_size"]), math.ceil(0.6 / r["step_size"])
        assert r["num_steps"] == n
        assert r["t_final"] == pytest.approx(r["step_size"] * (k + 0.1 * (n - k)), rel=1e-12)
    with pytest.raises(ValueError, match="anneal"):
        sgd_sweep(prob.risk, [prob.w0], step_sizes=[0.05], batch_sizes=[2], anneal=(0.6, 0.1))


# ---------------------------------------------------------------------------------------------- config and CLI
TINY_SGD = {"data.source": "planted", "data.num_samples": 20, "architecture.input_size": 14,
            "architecture.filter_sizes": [3, 2, 2], "init.scale": 0.5, "flow.method": "sgd", "flow.step_size": 0.01,
            "flow.batch_size": 5, "flow.epochs": 200}


def test_config_sgd_round_trips_and_runs_sgd(tmp_path):
    from lcnflow.experiments import StochasticGradientDescentConfig, load_config, prepare

    cfg = load_config(None, {**TINY_SGD, "flow.momentum": 0.5, "flow.schedule": "step"})
    assert isinstance(cfg.flow, StochasticGradientDescentConfig) and cfg.flow.gtol is None
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    again = load_config(path)
    assert again.flow == cfg.flow
    exp = prepare(cfg)
    res = exp.run()
    direct = lcnflow.stochastic_gradient_descent(exp.risk, exp.init, 0.01, 5, epochs=200, momentum=0.5,
                                                 schedule="step")
    assert "stochastic gradient descent" in res.integrator and res.method == direct.method == "sgd"
    np.testing.assert_array_equal(res.trajectory, direct.trajectory)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("flow.batch_size", 21, "flow.batch_size: must be at most the number of samples m = 20, got 21"),
     ("flow.batch_size", 0, "flow.batch_size: must be an integer ≥ 1, got 0"),
     ("flow.sampling", "bootstrap", "flow.sampling: must be one of"),
     ("flow.momentum", 1.0, "flow.momentum: must be in [0, 1), got 1.0"),
     ("flow.gtol", 1e-3, "flow.gtol: unknown key in [flow] with method = 'sgd'")],
)
def test_config_bad_sgd_options_exit_2_naming_the_field(key, value, message):
    from typer.testing import CliRunner

    from lcnflow.cli import app

    args = ["run", "--quiet"]
    for k, v in {**TINY_SGD, key: value}.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()), res.output


def test_example_sgd_vs_flow_fast():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    examples = root / "examples"
    # this checkout's package first (the example runs from examples/, where a relative PYTHONPATH means nothing)
    path = os.pathsep.join(p for p in (str(root / "src"), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, str(examples / "sgd_vs_flow.py")], capture_output=True, text=True,
                          timeout=300, cwd=examples,
                          env={**os.environ, "LCNFLOW_FAST": "1", "MPLBACKEND": "Agg", "PYTHONPATH": path})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "1. From one initialization" in out and "gradient descent, η = 0.003" in out
    assert "log-log slope" in out and "| gradient flow | 3 |" in out and "Wilson" in out


def test_sweep_grid_over_flow_method_runs_gradient_flow_and_sgd():
    """A sweep ``[grid]`` over ``flow.method``: switching to gradient_flow drops the SGD keys of the base, and each
    SGD run of a batch is exactly the SGD run of its config."""
    from lcnflow.dynamics.result import SCALAR_FIELDS
    from lcnflow.experiments import config_from_dict, run_experiment
    from lcnflow.sweep.execute import run_batch
    from lcnflow.sweep.grid import expand, sweep_from_dict

    base = {"data": {"source": "planted", "num_samples": 20}, "architecture": {"input_size": 14,
            "filter_sizes": [3, 2, 2]}, "init": {"scale": 0.5},
            "flow": {"method": "sgd", "step_size": 0.01, "batch_size": 5, "epochs": 200}}
    plan = expand(sweep_from_dict({**base, "grid": {"flow.method": ["gradient_flow", "sgd"], "init.seed": [0, 1]}}))
    rows = run_batch(plan.spec.base, [(r.run_id, r.overrides, r.problem) for r in plan.runs])
    assert [row["status"] for row in rows] == ["ok"] * 4
    methods = []
    for run, row in zip(plan.runs, rows, strict=True):
        direct = run_experiment(config_from_dict(base, run.overrides))
        methods.append(direct.method)
        # one schema: the row holds the result's flat fields as FlowResult.scalars gives them (timing aside), each
        # of its declared type
        scalars = direct.scalars()
        assert list(scalars) == list(SCALAR_FIELDS)
        for key, kind in SCALAR_FIELDS.items():
            assert scalars[key] is None or type(scalars[key]) is kind, (key, scalars[key])
            if key != "wall_time":
                assert row[key] == scalars[key] or (row[key] != row[key] and scalars[key] != scalars[key]), key
        assert {k: v for k, v in direct.to_dict().items() if k in scalars} == scalars
        assert row["t_final"] == direct.t_final and row["loss"] == direct.loss
        assert row["certified"] == direct.certified and row["converged"] == direct.converged
    assert sorted(methods) == ["gradient_flow", "gradient_flow", "sgd", "sgd"]


def test_the_config_and_the_api_give_sgd_the_same_defaults():
    """Every SGD keyword the config's [flow] section (method = "sgd") and stochastic_gradient_descent share has one
    default; the budget keys differ on purpose only in form (the config writes the default epochs out)."""
    import inspect

    from lcnflow.dynamics.options import DEFAULT_EPOCHS
    from lcnflow.experiments.config import StochasticGradientDescentConfig

    config = StochasticGradientDescentConfig().options()
    api = {k: p.default for k, p in inspect.signature(lcnflow.stochastic_gradient_descent).parameters.items()
           if p.default is not inspect.Parameter.empty}
    shared = set(config) & set(api) - {"epochs"}
    assert shared >= {"schedule", "decay_steps", "decay_factor", "momentum", "sampling", "seed", "certify_tol",
                      "polish_radius", "classify", "max_record", "blowup_factor", "max_steps", "max_time"}
    assert {k: config[k] for k in shared} == {k: api[k] for k in shared}
    assert config["epochs"] == DEFAULT_EPOCHS and api["epochs"] is None  # (None: DEFAULT_EPOCHS without max_steps)
