"""The compiled integrator (lcnflow.dynamics.compiled) and the shortcuts that make a square-loss run fast.

Oracles: the NumPy Rodas4 stepper (the same scheme, step by step in NumPy: trajectories must agree to rounding), the
scheme's order of convergence on a flow with a closed-form solution,
the independent reference flow of ``reference_flow`` (numpy.convolve, LSODA far past lcnflow's stop),
``numpy.linalg.lstsq`` and ``numpy.linalg.matrix_rank``, and the full classification for ``settle_on_m``.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.polynomial import polynomial as P

import lcnflow as lf
from lcnflow.analysis.critical import classify_critical_point, settle_on_m
from lcnflow.dynamics import compiled, steppers
from lcnflow.model.condition import _rank
from reference_flow import ConvolveRisk, planted_data, random_init, reference_limit

pytestmark = pytest.mark.skipif(not lf.kernels.ENABLED, reason="the compiled kernels are switched off")


def _risk(arch, seed, m=30, noise=0.1, loss="square"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, *arch.axes_layer_sizes[0]))
    v = rng.standard_normal(arch.final_filter_num_params)
    Y = (lf.patch_matrix(arch, X) @ v).reshape(m, *arch.axes_layer_sizes[-1])
    Y = Y + noise * rng.standard_normal(Y.shape)
    return lf.EmpiricalRisk(arch, loss, lf.Dataset(X, Y))


#: Every built-in loss other than the square loss, with parameters that make it far from quadratic on the data.
OTHER_LOSSES = [lf.get_loss("pseudo_huber", delta=0.1), lf.get_loss("lp", p=4), lf.get_loss("lp", p=3.5),
                lf.get_loss("generalized_huber", alpha=5.0, beta=2.0), lf.get_loss("log_cosh")]


def _python_path(monkeypatch):
    monkeypatch.setattr(compiled, "available", lambda risk: False)


def _compiled_and_python_runs(risk, w0, monkeypatch):
    """The default run of ``risk`` from ``w0`` (compiled Rodas4) and the NumPy Rodas4 stepper's; both certified at
    the same kind after the same number of steps."""
    fast = lf.gradient_flow(risk, w0)
    assert "compiled" in fast.integrator
    _python_path(monkeypatch)
    slow = lf.gradient_flow(risk, w0, integrator="rodas4")
    assert "compiled" not in slow.integrator
    assert fast.certified and slow.certified
    assert fast.kind == slow.kind
    assert fast.num_steps == slow.num_steps
    return fast, slow


def test_the_rodas4_tableau_has_order_four():
    """Fixed steps of the scheme on L = ½(w₁w₂ − y)² from w₁ = w₂: u = w₁w₂ = w₁² solves u̇ = 2u(y − u) in closed
    form; halving h must divide the error at t = 1 by about 2⁴ (a wrong coefficient drops the order)."""
    risk = lf.EmpiricalRisk(lf.Architecture(1, [1, 1]), "square", lf.Dataset(np.ones((1, 1)), np.full((1, 1), 2.0)))
    u0, y = 0.09, 2.0
    exact = y * u0 * np.exp(2 * y) / (y + u0 * (np.exp(2 * y) - 1))
    errors = []
    for n in (8, 16, 32, 64):
        w0 = np.array([0.3, 0.3])
        stepper = steppers.Rodas4Stepper(risk, w0, *risk.flat_value_and_gradient(w0), rtol=1.0, atol=1e6)
        for k in range(n):  # error control off (huge tolerances): n equal steps
            stepper.h = 1.0 / n
            assert stepper.step((k + 1) / n) is None
        errors.append(abs(stepper.w[0] * stepper.w[1] - exact))
    rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(rates > 3.7), rates


ARCHS = [
    lf.Architecture(24, [3, 3, 3]),
    lf.Architecture(32, [4, 3, 2], strides=[2, 2, 1]),
    lf.Architecture((10, 10), [(2, 2), (3, 2)], strides=[(1, 1), (2, 1)]),
]


@pytest.mark.parametrize("arch", ARCHS, ids=["1d", "strided", "2d"])
@pytest.mark.parametrize("scale", [0.5, 1e-3])
def test_compiled_segments_take_the_python_steppers_steps(arch, scale, monkeypatch):
    fast, slow = _compiled_and_python_runs(_risk(arch, 1), lf.flatten(lf.random_init(arch, scale, 2)), monkeypatch)
    assert fast.num_gradient_evaluations == slow.num_gradient_evaluations
    # (rounding differs — LU by hand against LAPACK, reassociated sums — and the plateau of a small start amplifies
    # it along its unstable direction: times and records agree to 1e-6, the limits to 1e-12)
    assert fast.t_final == pytest.approx(slow.t_final, rel=1e-6)
    np.testing.assert_allclose(fast.final_filter, slow.final_filter, rtol=0,
                               atol=1e-12 * np.max(np.abs(slow.final_filter)))
    # the record: the compiled segments apply the Python recorder's rules (flow/result.py, Recorder) to the same
    # steps, so they keep the same points
    assert fast.times.size == slow.times.size
    np.testing.assert_allclose(fast.times, slow.times, rtol=1e-6)
    np.testing.assert_allclose(fast.trajectory, slow.trajectory, rtol=0, atol=1e-9 * np.max(np.abs(slow.trajectory)))
    assert fast.arc_length == pytest.approx(slow.arc_length, rel=1e-9)
    assert fast.invariant_drift == pytest.approx(slow.invariant_drift, rel=1e-6, abs=1e-15)


def test_save_times_and_budgets_on_the_compiled_path(monkeypatch):
    arch = ARCHS[0]
    risk = _risk(arch, 3)
    w0 = lf.flatten(lf.random_init(arch, 0.5, 4))
    save = np.linspace(0, 0.05, 6)
    fast = lf.gradient_flow(risk, w0, save_at=save)
    capped = lf.gradient_flow(risk, w0, max_steps=7)
    _python_path(monkeypatch)
    slow = lf.gradient_flow(risk, w0, integrator="rodas4", save_at=save)
    np.testing.assert_allclose(fast.saved_states, slow.saved_states, rtol=0, atol=1e-12)
    assert capped.stop_reason == "max_steps" and not capped.certified and capped.num_steps <= 9


def test_a_callback_sees_every_step_and_changes_nothing():
    arch = ARCHS[0]
    risk = _risk(arch, 5)
    w0 = lf.flatten(lf.random_init(arch, 0.5, 6))
    seen = []
    with_cb = lf.gradient_flow(risk, w0, callback=lambda t, w, loss, g: seen.append(t) and False)
    plain = lf.gradient_flow(risk, w0)
    assert with_cb.num_steps == plain.num_steps  # the Python steps of the same scheme: the same run
    assert 0 < len(seen) <= with_cb.num_steps  # every accepted step (rejected attempts are counted in num_steps)
    np.testing.assert_allclose(with_cb.final_filter, plain.final_filter, rtol=0,
                               atol=1e-12 * np.max(np.abs(plain.final_filter)))
    assert np.all(np.diff(seen) > 0)


@pytest.mark.parametrize(("sizes", "scale", "seed"),
                         [([3, 3, 3], 1e-4, 1), ([2, 3, 2], 0.3, 2), ([2, 2, 2, 2], 1e-2, 0)])
def test_the_default_square_loss_run_ends_where_the_reference_flow_ends(sizes, scale, seed):
    X, Y = planted_data(sizes, seed)
    risk = lf.EmpiricalRisk(lf.Architecture(X.shape[1], sizes), "square", lf.Dataset(X, Y))
    ref = ConvolveRisk(sizes, X, Y, "square", 1.0)
    w0 = random_init(sizes, scale, seed + 100)
    res = lf.gradient_flow(risk, w0)
    assert "compiled" in res.integrator
    assert res.certified and res.t_final > 0
    w_ref, _, g_ref = reference_limit(ref, w0, 100 * res.t_final)
    assert g_ref < 1e-13
    assert res.loss == pytest.approx(ref.value(w_ref), rel=1e-8)
    v_ref = ref.pi(w_ref)
    assert np.linalg.norm(res.final_filter - v_ref) <= 1e-5 * np.linalg.norm(v_ref)


@pytest.mark.parametrize("factor", [1e-3, 1e4])
def test_compiled_verdicts_do_not_depend_on_units(factor):
    arch = ARCHS[0]
    risk = _risk(arch, 7)
    X, Y = risk.data.inputs, risk.data.targets
    w0 = lf.flatten(lf.random_init(arch, 0.5, 8))
    base = lf.gradient_flow(risk, w0)
    scaled = lf.gradient_flow(lf.EmpiricalRisk(arch, "square", lf.Dataset(X, factor * Y)), w0 * factor ** (1 / 3))
    assert scaled.kind == base.kind and scaled.certified
    np.testing.assert_allclose(scaled.final_filter, factor * base.final_filter, rtol=0,
                               atol=1e-6 * factor * np.max(np.abs(base.final_filter)))


# ------------------------------------------------------------------------------------------- construction shortcuts
@pytest.mark.parametrize("seed", range(6))
def test_least_squares_filter_matches_lstsq(seed):
    rng = np.random.default_rng(seed)
    arch = lf.Architecture(20, [3, 2, 2])
    m = int(rng.integers(3, 40))
    X = rng.standard_normal((m, 20)) * 10.0 ** rng.uniform(-4, 4)
    if seed % 3 == 0:  # nearly collinear inputs: the ill-conditioned branch (lstsq itself)
        X = X[:, [0]] * np.ones(20) + 1e-7 * X
    Y = rng.standard_normal((m, arch.output_size)) * 10.0 ** rng.uniform(-4, 4)
    risk = lf.EmpiricalRisk(arch, "square", lf.Dataset(X, Y))
    H = lf.patch_matrix(arch, X)
    ref = np.linalg.lstsq(H, Y.reshape(-1), rcond=None)[0]
    if seed % 3 == 0:  # (minimum-norm solutions of a nearly singular system: compare the fits)
        assert np.linalg.norm(H @ risk.least_squares_filter - Y.reshape(-1)) == pytest.approx(
            np.linalg.norm(H @ ref - Y.reshape(-1)), rel=1e-6)
    else:
        np.testing.assert_allclose(risk.least_squares_filter, ref, rtol=0, atol=1e-12 * np.max(np.abs(ref)))
    rss = float(np.sum((H @ ref - Y.reshape(-1)) ** 2)) / (2 * m)
    assert risk.minimum_value == pytest.approx(rss, rel=1e-9, abs=1e-14 * float(np.sum(Y**2)))


@pytest.mark.parametrize(("shape", "rank"), [((50, 8), 8), ((50, 8), 5), ((6, 30), 6), ((40, 12), 1), ((3, 3), 0)])
def test_input_rank_matches_matrix_rank(shape, rank):
    rng = np.random.default_rng(sum(shape) + rank)
    X = rng.standard_normal((shape[0], rank)) @ rng.standard_normal((rank, shape[1])) * 1e3
    assert _rank(X) == np.linalg.matrix_rank(X) == rank


# ------------------------------------------------------------------------------------------- one classification
def test_a_run_labels_its_limit_global_or_local_as_restarts_find():
    """The limit is classified once, quickly, then settled against ℒ*_M; the oracle is the best limit over many
    restarts (a non-filling architecture and targets off M: about half the runs end at a local minimum)."""
    sizes = [2, 2, 2]
    arch = lf.Architecture(16, sizes)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 16))
    v = np.real(P.polyfromroots([-0.7, 0.4 + 0.9j, 0.4 - 0.9j]))  # a complex pair: not a product of real factors
    Y = (lf.patch_matrix(arch, X) @ v).reshape(40, -1) + 0.05 * rng.standard_normal((40, arch.output_size))
    risk = lf.EmpiricalRisk(arch, "square", lf.Dataset(X, Y))
    runs = [lf.gradient_flow(risk, random_init(sizes, 1.0, seed)) for seed in range(16)]
    best = min(r.loss for r in runs)
    kinds = set()
    for r in runs:
        assert r.certified and r.critical_point.best is not None  # compared with ℒ*_M (v̂ is not in M)
        kinds.add(r.kind)
        if r.loss > best + 1e-6 * abs(best):
            assert r.kind != "global_minimum" and r.critical_point.global_on_m is False, r.message
        else:
            assert r.kind == "global_minimum", r.message
        quick = classify_critical_point(risk, r.limit, compare_with_best=False)
        assert settle_on_m(risk, quick).kind == r.kind
    assert kinds == {"global_minimum", "local_minimum"}


@pytest.mark.parametrize("integrator", ["auto", "LSODA", "exponential", "rosenbrock", "python-rodas4"])
def test_a_flow_into_the_origin_saddle_ends_there_on_every_integrator(integrator, monkeypatch):
    """L = ½(w1 w2 + 1)² from w1 = w2: the flow runs along the stable manifold of the saddle at 0 (u = w1w2 → 0
    exponentially).  Near 0 the ratio ‖∇L‖/S stays of order one, so the state collapses towards 0 until its squares
    underflow; the run must say it converged to the saddle (its stable set holds the start), whatever the
    integrator, rather than classify an underflowed state."""
    if integrator == "python-rodas4":
        _python_path(monkeypatch)
        integrator = "rodas4"
    risk = lf.EmpiricalRisk(lf.Architecture(1, [1, 1]), "square", lf.Dataset(np.ones((1, 1)), -np.ones((1, 1))))
    res = lf.gradient_flow(risk, [np.array([0.6]), np.array([0.6])], integrator=integrator)
    assert res.stop_reason == "stable_saddle", res.message
    assert res.kind == "strict_saddle" and not np.any(lf.flatten(res.limit))
    assert res.critical_point.hessian_eigenvalues[0] == pytest.approx(-1.0, rel=1e-9)


@pytest.mark.parametrize("loss", [lf.get_loss("square"), *OTHER_LOSSES], ids=lambda loss: str(loss))
@pytest.mark.parametrize("arch", [*ARCHS, lf.Architecture(40, [2, 3, 2, 3], strides=[1, 2, 1, 1]),
                                  lf.Architecture((9, 11), [(3, 2), (2, 3), (2, 2)])],
                         ids=["1d", "strided", "2d", "deep-strided", "2d-deep"])
def test_the_segments_workspace_evaluations_match_the_reference_path(arch, loss, monkeypatch):
    """The segment's allocation-free value, gradient and Hessian — from the statistics for the square loss, from one
    pass over the data for the others — against the risk's NumPy reference path."""
    risk = _risk(arch, 11, noise=1.0, loss=loss)
    lay = lf.kernels.layout(arch.filter_shapes, arch.cumulative_strides[:-1])
    args = (lay.kh, lay.kw, lay.dh, lay.dw, lay.off)
    fs = compiled.function_space_args(risk)
    P, kv, runs = arch.num_params, arch.final_filter_num_params, 3
    ws = compiled._workspace_batch(*args[:4], runs)
    monkeypatch.setattr(lf.kernels, "ENABLED", False)
    # three runs in one batch (runs innermost): each run's numbers as if alone
    w = np.stack([lf.flatten(lf.random_init(arch, 0.7, seed)) for seed in range(runs)], axis=1)
    grad, hess = np.empty((P, runs)), np.empty((P, P, runs))
    live = np.ones(runs, np.bool_)
    compiled._eval_batch(w, *args, fs, ws, grad, True, runs, live)
    values = ws[7].copy()
    compiled._hessian_batch(w, *args, fs, ws, np.empty((kv, kv, runs)), np.empty((kv, P, runs)),
                            np.empty((kv, P, runs)), hess, runs, live)
    for r in range(runs):
        ref_value, ref_grad = risk.value_and_gradient(w[:, r])
        ref_hess = risk.hessian(w[:, r])
        assert values[r] == pytest.approx(ref_value, rel=1e-12)
        np.testing.assert_allclose(grad[:, r], ref_grad, rtol=0, atol=1e-12 * np.max(np.abs(ref_grad)))
        np.testing.assert_allclose(hess[:, :, r], ref_hess, rtol=0, atol=1e-12 * np.max(np.abs(ref_hess)))
        assert np.array_equal(hess[:, :, r], hess[:, :, r].T)


def test_the_compiled_function_space_hessian_matches_finite_differences_of_the_gradient():
    """``(1/m) Hᵀdiag(ℓ'')H`` of the compiled pass against central differences of ``∇ℒ`` built from the dense patch
    matrix and the loss's closed-form derivative (NumPy only); error O(h²) relative."""
    arch = lf.Architecture(21, [3, 2], strides=[2, 1])
    rng = np.random.default_rng(5)
    X = rng.standard_normal((12, 21))
    Hm = lf.patch_matrix(arch, X)
    y = rng.standard_normal(Hm.shape[0])
    for loss in OTHER_LOSSES:
        risk = lf.EmpiricalRisk(arch, loss, lf.Dataset(X, y.reshape(12, -1)))
        fs = compiled.function_space_args(risk)
        lay = lf.kernels.layout(arch.filter_shapes, arch.cumulative_strides[:-1])
        ws = compiled._workspace_batch(lay.kh, lay.kw, lay.dh, lay.dw, 1)
        w = lf.flatten(lf.random_init(arch, 0.8, 3))
        P, kv = arch.num_params, arch.final_filter_num_params
        live = np.ones(1, np.bool_)
        compiled._eval_batch(w[:, None], lay.kh, lay.kw, lay.dh, lay.dw, lay.off, fs, ws, np.empty((P, 1)), True, 1,
                             live)
        G = np.empty((kv, kv, 1))
        compiled._hessian_batch(w[:, None], lay.kh, lay.kw, lay.dh, lay.dw, lay.off, fs, ws, G, np.empty((kv, P, 1)),
                                np.empty((kv, P, 1)), np.empty((P, P, 1)), 1, live)
        G = G[:, :, 0]
        v = lf.final_filter(arch, lf.unflatten(arch, w)).ravel()

        def fs_grad(u, loss=loss):
            return Hm.T @ loss.derivative(Hm @ u - y) / 12

        h = 1e-5 * max(1.0, float(np.linalg.norm(v)))
        fd = np.column_stack([(fs_grad(v + h * e) - fs_grad(v - h * e)) / (2 * h) for e in np.eye(v.size)])
        np.testing.assert_allclose(G, fd, rtol=0, atol=1e-6 * np.max(np.abs(fd)))


@pytest.mark.parametrize("loss", OTHER_LOSSES, ids=lambda loss: str(loss))
@pytest.mark.parametrize("arch", ARCHS, ids=["1d", "strided", "2d"])
def test_every_built_in_loss_runs_the_compiled_segments_step_for_step(arch, loss, monkeypatch):
    """Every built-in loss on the compiled path takes the NumPy Rodas4 stepper's steps, to the same limit.  (The
    compiled steps evaluate ``L`` only where they record a point or return: those passes are counted too.)"""
    fast, slow = _compiled_and_python_runs(_risk(arch, 1, noise=0.5, loss=loss),
                                           lf.flatten(lf.random_init(arch, 0.5, 2)), monkeypatch)
    assert fast.num_hessian_evaluations == slow.num_hessian_evaluations
    assert 0 <= fast.num_gradient_evaluations - slow.num_gradient_evaluations <= fast.times.size + 10
    np.testing.assert_allclose(fast.times, slow.times, rtol=1e-6)
    np.testing.assert_allclose(fast.losses, slow.losses, rtol=1e-9)
    assert fast.t_final == pytest.approx(slow.t_final, rel=1e-6)
    np.testing.assert_allclose(fast.final_filter, slow.final_filter, rtol=0,
                               atol=1e-10 * np.max(np.abs(slow.final_filter)))


def test_the_recorders_smallest_loss_follows_the_thinned_record():
    """``rule_state`` hands the compiled segments the smallest finite loss of the record as it stands (kept as the
    record grows, recomputed when it is thinned), whether the rows come in blocks or one at a time."""
    from lcnflow.dynamics.result import Recorder

    arch = lf.Architecture(8, [2, 2])
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(arch.num_params)
    for max_points in (3, 6, 50):
        rec = Recorder(arch, w0, 5.0, 1.0, max_points)
        t = 0.0
        for n in (0, 1, 4, 2, 7, 3):
            times = t + 1.0 + np.arange(n, dtype=float)
            t = float(times[-1]) if n else t
            losses = rng.uniform(-1.0, 4.0, n)
            losses[::3] = np.resize([np.nan, np.inf, 0.5], losses[::3].size)  # non-finite losses are not counted
            states = rng.standard_normal((n, arch.num_params))
            last = (t, states[-1] if n else w0, float(losses[-1]) if n else 5.0, 1.0)
            rec.absorb(n, times, states, losses, np.ones(n), 0.1, 0.0, t, last)
            finite = [x for x in rec.losses if np.isfinite(x)]
            assert rec.rule_state()[3] == (min(finite) if finite else np.inf)
            assert len(rec.times) <= max_points


@pytest.mark.parametrize("loss", ["square", "log_cosh"])
def test_the_segments_hand_the_driver_only_states_it_takes_as_candidates(loss, monkeypatch):
    """The segments test ``‖∇L‖ ≤ tol · S`` with the exact gradient scale, so every CANDIDATE event they return is a
    candidate the driver tries to stop at (it counts them: ``num_candidates``), and the run's steps are those of the
    NumPy Rodas4 stepper, whose driver tests every step itself."""
    arch = ARCHS[0]
    risk = _risk(arch, 4, m=40, loss=loss)
    events = []
    finish = compiled.CompiledRodas4Stepper.finish

    def counted(self, segment, recorder):
        events.append(finish(self, segment, recorder))
        return events[-1]

    monkeypatch.setattr(compiled.CompiledRodas4Stepper, "finish", counted)
    for seed in range(3):
        events.clear()
        w0 = lf.flatten(lf.random_init(arch, 0.5, seed))
        fast = lf.gradient_flow(risk, w0, gtol=1e-9)
        assert events.count(compiled.CANDIDATE) == fast.num_candidates >= 1
        with monkeypatch.context() as m:
            _python_path(m)
            slow = lf.gradient_flow(risk, w0, gtol=1e-9, integrator="rodas4")
        assert "compiled" not in slow.integrator
        assert (fast.num_steps, fast.num_candidates, fast.kind) == (slow.num_steps, slow.num_candidates, slow.kind)
