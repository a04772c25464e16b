"""Polish and classification of many points at once (``polish_many``, ``classify_critical_points``) and the batch's
hand-over of those requests.

Oracle: the same function on each point alone.  The stacked calls run the same LAPACK routine on each matrix, so the
comparison is exact (every field, bit for bit).  The points mix what changes the shapes inside — a zero layer (the
rescaling orbit loses a dimension), the origin, limits of runs and their starts, channels — so the grouping by shape
is exercised, not only stacks of equal shapes.  ``finite_roots_many`` is checked against NumPy's ``polyroots``.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from numpy.polynomial import polynomial as P

import lcnflow as lf
from lcnflow.analysis.certify import polish, polish_many
from lcnflow.analysis.critical import classify_critical_point, classify_critical_points, finite_roots_many
from lcnflow.analysis.symmetry import complement_basis, per_shape, symmetry_bases, symmetry_basis


def _risk(arch: lf.Architecture, loss: str = "square", seed: int = 0) -> lf.EmpiricalRisk:
    rng = np.random.default_rng(seed)
    d0 = arch.input_size
    x = rng.standard_normal((40, d0))
    v = rng.standard_normal(arch.final_filter_num_params)
    s = arch.cumulative_strides[-1][0]
    y = np.stack([np.correlate(row, v, mode="valid")[::s] for row in x])
    y = y + 0.05 * rng.standard_normal(y.shape)
    if arch.is_multichannel:
        return lf.EmpiricalRisk(arch, loss, lf.Dataset(x[:, None], y[:, None]))
    return lf.EmpiricalRisk(arch, loss, lf.Dataset(x, y))


def _points(risk: lf.EmpiricalRisk) -> list[np.ndarray]:
    """Limits of runs, their starts, a point with a zero layer and the origin."""
    arch = risk.arch
    starts = [lf.flatten(lf.random_init(arch, scale, seed=s)) for s, scale in enumerate([0.5, 0.5, 1.0, 0.05])]
    limits = [lf.flatten(r.limit) for r in lf.gradient_flows(risk, starts[:3], classify=False)]
    zero_layer = starts[0].copy()
    zero_layer[: arch.layer_num_params[0]] = 0.0
    return limits + starts + [zero_layer, np.zeros(arch.num_params)]


def _same(a, b) -> None:
    """Every field of two dataclass instances equal (arrays bit for bit; NaN equal to NaN)."""
    assert type(a) is type(b)
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if hasattr(x, "__dataclass_fields__"):
            _same(x, y)
        elif isinstance(x, np.ndarray) or (isinstance(x, list) and x and isinstance(x[0], np.ndarray)):
            assert len(x) == len(y), name
            for p, q in zip(np.atleast_1d(x) if isinstance(x, np.ndarray) else x, y, strict=True):
                np.testing.assert_array_equal(p, q, err_msg=name)
        elif isinstance(x, float) and np.isnan(x):
            assert isinstance(y, float) and np.isnan(y), name
        else:
            assert x == y, name


ARCHS = {
    "1d": lf.Architecture(20, [3, 3, 3]),
    "strided": lf.Architecture(24, [2, 3], strides=[2, 1]),
    "non-filling": lf.Architecture(20, [3, 3]),
    "channels": lf.Architecture(20, [2, 2], channels=[1, 2, 1]),
}


@pytest.mark.parametrize("name", list(ARCHS))
def test_classify_critical_points_gives_each_point_its_own_classification(name):
    risk = _risk(ARCHS[name])
    points = _points(risk)
    for options in ({}, {"compare_with_best": False, "check_spurious": False, "critical_rtol": None}):
        together = classify_critical_points(risk, points, **options)
        alone = [classify_critical_point(risk, w, **options) for w in points]
        for got, ref in zip(together, alone, strict=True):
            _same(got, ref)
    kinds = {cp.kind for cp in together}
    assert len(kinds) >= 2  # (the points are of different kinds: minima and saddles or non-critical starts)


def test_classify_critical_points_log_cosh_and_empty_and_unknown_option():
    risk = _risk(ARCHS["1d"], "log_cosh")
    points = _points(risk)
    for got, ref in zip(classify_critical_points(risk, points), [classify_critical_point(risk, w) for w in points],
                        strict=True):
        _same(got, ref)
    assert classify_critical_points(risk, []) == []
    with pytest.raises(TypeError, match="eig_tol"):
        classify_critical_points(risk, points[:1], eig_tol=1e-7)
    with pytest.raises(ValueError, match="eig_rtol"):
        classify_critical_points(risk, points[:1], eig_rtol=2.0)


@pytest.mark.parametrize("name", ["1d", "channels"])
def test_polish_many_gives_each_point_its_own_polish(name):
    risk = _risk(ARCHS[name])
    traj = lf.gradient_flow(risk, lf.random_init(risk.arch, 0.5, seed=1), classify=False).trajectory
    points = [traj[len(traj) // 3], traj[len(traj) // 2], traj[-1], np.zeros(risk.arch.num_params)]
    gtols = [1e-12, 1e-3, 1e-14, 1e-12]
    radii = [10.0, 10.0, 1e-30, 1.0]  # (the third: any move is rejected)
    together = polish_many(risk, points, gtols=gtols, radii=radii)
    for w, gtol, radius, got in zip(points, gtols, radii, together, strict=True):
        _same(got, polish(risk, w, gtol=gtol, radius=radius))
    assert together[0].iterations > 0 and together[0].accepted
    assert together[2].iterations > 0 and not together[2].accepted


def test_stacked_symmetry_and_complement_bases_equal_the_single_ones():
    arch = ARCHS["1d"]
    rng = np.random.default_rng(5)
    W = rng.standard_normal((6, arch.num_params))
    W[2, :6] = 0.0  # two zero layers: one direction fewer
    for w, basis in zip(W, symmetry_bases(arch, W), strict=True):
        np.testing.assert_array_equal(basis, symmetry_basis(arch, w))
        comp = complement_basis(basis, w.size)
        np.testing.assert_allclose(comp.T @ comp, np.eye(comp.shape[1]), atol=1e-14)
        np.testing.assert_allclose(basis.T @ comp, 0.0, atol=1e-14)
    assert [b.shape[1] for b in symmetry_bases(arch, W)] == [2, 2, 1, 2, 2, 2]


def test_per_shape_groups_by_shape_and_keeps_the_order():
    arrays = [np.full((2, 2), 1.0), np.full((3, 3), 2.0), np.full((2, 2), 3.0)]
    calls = []

    def trace(stack):
        calls.append(stack.shape)
        return stack.sum(axis=(1, 2)), stack[:, 0, 0]

    out = per_shape(trace, arrays)
    assert sorted(calls) == [(1, 3, 3), (2, 2, 2)]
    assert [float(a) for a, _ in out] == [4.0, 18.0, 12.0]
    assert [float(b) for _, b in out] == [1.0, 2.0, 3.0]


def test_finite_roots_many_are_numpys_polyroots():
    rng = np.random.default_rng(2)
    polys = [rng.standard_normal(k) for k in (2, 3, 3, 5, 7, 7, 1)]
    polys.append(np.array([1.0, -2.0, 1.0, 1e-16]))  # a negligible leading coefficient: degree 2
    polys.append(np.zeros(4))
    polys += [np.array([1.0, 2.0, 0.0, 0.0]), np.zeros(0), np.array([0.0, 0.0, 3.0])]  # exact zeros; empty
    for c, roots in zip(polys, finite_roots_many(polys), strict=True):
        size = np.abs(c)
        if not size.any() or np.nonzero(size > 1e-13 * size.max())[0][-1] == 0:
            assert roots.size == 0
            continue
        deg = int(np.nonzero(size > 1e-13 * size.max())[0][-1])
        ref = np.sort_complex(P.polyroots(c[: deg + 1]).astype(complex))
        np.testing.assert_array_equal(roots, ref)
        np.testing.assert_allclose(P.polyval(roots, c[: deg + 1]), 0.0, atol=1e-10 * np.abs(c).sum())


def test_root_structures_find_what_the_definition_finds():
    # shared roots (a root of layer i within ROOT_TOL·(1 + |a|) of one of layer k, counted once per pair) and repeated
    # roots of p_v, against a scan of every pair by that definition; the points plant exact, near (inside the
    # tolerance) and far (just outside) coincidences, so the stacked screen that skips most points is exercised
    from lcnflow.analysis.critical import ROOT_TOL, _root_structures

    arch = lf.Architecture(16, [3, 3, 2])
    rng = np.random.default_rng(3)

    def close(a, b):
        return abs(a - b) <= ROOT_TOL * (1 + max(abs(a), abs(b)))

    def quadratic(r1, r2):
        return np.array([r1 * r2, -(r1 + r2), 1.0]) * rng.uniform(0.5, 2.0)

    wss = []
    for j in range(60):
        r = rng.uniform(-2, 2, 3)
        gap = [0.0, 0.3 * ROOT_TOL, 3 * ROOT_TOL, 1.0][j % 4] * (1 + abs(r[0]))
        layers = [quadratic(r[0], r[1]), quadratic(r[0] + gap, r[2]), np.array([-(r[1] + gap), 1.0])]
        if j % 5 == 0:
            layers[0] = quadratic(r[1], r[1] + gap)  # (a repeated root of p_v, shared by no two layers)
        wss.append(layers)
    vs = [lf.final_filter(arch, ws).ravel() for ws in wss]
    found = _root_structures(arch, wss, vs)
    hits = 0
    for (layer_roots, v_roots, shared, repeated) in found:
        want_shared = []
        for i, k in itertools.combinations(range(arch.depth), 2):
            seen = []
            for a in layer_roots[i].tolist():
                if any(close(a, b) for b in layer_roots[k].tolist()) and not any(close(b, a) for b in seen):
                    seen.append(a)
                    want_shared.append((i + 1, k + 1, a))
        want_repeated = []
        v = v_roots.tolist()
        for i, a in enumerate(v):
            if any(close(a, b) for b in v[i + 1:]) and not any(close(a, b) for b in want_repeated):
                want_repeated.append(a)
        assert shared == want_shared and repeated == want_repeated
        hits += bool(shared) + bool(repeated)
    assert hits >= 30  # (the planted coincidences are found: the screen skips only points without any)


@pytest.mark.parametrize("depth", [2, 3, 9])
def test_balanced_representative_is_its_definition(depth):
    # layers rescaled to their geometric-mean norm g (π unchanged), weights g; near π⁻¹(0) a layer below 1e-10 of
    # max(largest layer, σ = ‖v̂‖^(1/N)) is a zero layer, left as it is with weight σ
    from lcnflow.analysis.critical import _balanced

    arch = lf.Architecture(40, [2] * depth)
    rng = np.random.default_rng(depth)
    v_hat = rng.standard_normal(arch.final_filter_num_params)
    sigma = np.linalg.norm(v_hat) ** (1 / depth)
    for trial in range(20):
        ws = [rng.standard_normal(2) * 10 ** rng.uniform(-3, 3) for _ in range(depth)]
        if trial % 4 == 0:
            ws[trial % depth] = np.zeros(2)
        norms = np.array([np.linalg.norm(w) for w in ws])
        zero = (norms <= 1e-10 * max(sigma, norms.max())) & (np.prod(norms) <= 1e-10 * sigma**depth)
        g = np.exp(np.mean(np.log(norms[~zero])))
        balanced, weights = _balanced(arch, ws, v_hat)
        for w, b, n, z in zip(ws, balanced, norms, zero, strict=True):
            np.testing.assert_allclose(b, w if z else w * (g / n), rtol=1e-15, atol=0)
        np.testing.assert_allclose(weights, np.repeat(np.where(zero, sigma, g), 2), rtol=1e-15)
        np.testing.assert_allclose(lf.final_filter(arch, balanced), lf.final_filter(arch, ws), rtol=1e-12,
                                   atol=1e-300)


def test_a_batch_whose_stacked_classification_fails_or_warns_classifies_each_run_alone(monkeypatch):
    """The stacked call is redone run by run when it raises or warns: each run gets its own answer, its own
    warnings, and the same result as alone."""
    from lcnflow.dynamics import driver

    risk = _risk(ARCHS["1d"])
    inits = [lf.random_init(risk.arch, 0.5, seed=s) for s in range(4)]
    alone = [lf.gradient_flow(risk, init) for init in inits]
    real = driver.classify_critical_points
    for trouble in ("raise", "warn"):
        stacked = []

        def flaky(risk, points, trouble=trouble, stacked=stacked, **options):
            if len(points) > 1:
                stacked.append(len(points))
                if trouble == "raise":
                    raise FloatingPointError("stacked call failed")
                warnings.warn("stacked call warned", RuntimeWarning, stacklevel=1)
            return real(risk, points, **options)

        monkeypatch.setattr(driver, "classify_critical_points", flaky)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            batch = lf.gradient_flows(risk, inits)
        assert stacked  # (the batch did ask for several classifications at once)
        assert not [w for w in caught if "stacked call" in str(w.message)]
        for got, ref in zip(batch, alone, strict=True):
            assert (got.kind, got.loss, got.num_steps, got.message) == (ref.kind, ref.loss, ref.num_steps, ref.message)


def test_symmetric_layers_is_the_norm_test_of_its_definition():
    # oracle: ‖w_i − σ w_j‖ ≤ rtol·‖w‖ with numpy.linalg.norm, first sign that passes, over the swappable pairs;
    # rtol = 0 includes differences whose squares underflow (1e-170) and excludes those that do not (1e-150)
    from lcnflow.analysis.symmetry import layer_slices, swappable_pairs, symmetric_layers

    arch = lf.Architecture(20, [3, 3, 2, 3])
    sl = layer_slices(arch)
    rng = np.random.default_rng(5)
    cases = []
    for tiny in (0.0, 1e-170, 1e-150, 1e-9):
        w = rng.standard_normal(arch.num_params)
        w[sl[0].start] = 0.0
        w[sl[1]] = w[sl[0]]
        w[sl[1].start] = tiny  # (layers 1 and 2 differ by tiny in one coefficient, exactly)
        w[sl[3]] = -w[sl[0]]
        cases.append(w)
    cases += [np.zeros(arch.num_params), np.full(arch.num_params, np.nan), np.full(arch.num_params, 1e200)]
    for w, rtol in itertools.product(cases, (0.0, 1e-8)):
        with np.errstate(over="ignore", invalid="ignore"):  # (‖w‖² of the 1e200 case overflows: 0·∞)
            want = []
            for i, j in swappable_pairs(arch):  # (0-based; symmetric_layers names layers from 1)
                for sign in (1, -1):
                    if np.linalg.norm(w[sl[i]] - sign * w[sl[j]]) <= rtol * np.linalg.norm(w):
                        want.append((i + 1, j + 1, sign))
                        break
            assert symmetric_layers(arch, w, rtol) == want, (w[:3], rtol)
    assert symmetric_layers(arch, cases[1]) == [(1, 2, 1), (1, 4, -1), (2, 4, -1)]  # (1e-170: equal in float64)
    assert symmetric_layers(arch, cases[2]) == [(1, 4, -1)]


@pytest.mark.parametrize("loss", ["square", "log_cosh"])
@pytest.mark.parametrize("name", list(ARCHS))
def test_flat_second_order_rows_are_the_single_point_derivatives(name, loss):
    """Each row of the stacked second-order call is what the single-point call gives, bit for bit; ``dπ`` agrees
    with the Jacobian built from ``numpy.convolve`` products (:func:`final_filter_jacobian`) to rounding, and the
    Hessians are the central differences of the gradient (an oracle independent of the products)."""
    from lcnflow.model.conv import final_filter_jacobian

    risk = _risk(ARCHS[name], loss)
    W = np.stack(_points(risk))
    so = risk.flat_second_order(W)
    n, P = W.shape
    assert so.hessians.shape == (n, P, P) and so.jacobians.shape == (n, risk.arch.final_filter_num_params, P)
    for j, w in enumerate(W):
        value, grad, hess = risk.flat_value_gradient_hessian(w)
        assert so.values[j] == value
        np.testing.assert_array_equal(so.gradients[j], grad)
        np.testing.assert_array_equal(so.hessians[j], hess)
        J = final_filter_jacobian(risk.arch, lf.unflatten(risk.arch, w))
        J = J.reshape(so.jacobians[j].shape)
        np.testing.assert_allclose(so.jacobians[j], J, rtol=0, atol=1e-13 * max(np.abs(J).max(), 1e-300))
        h = 1e-5 * max(1.0, np.abs(w).max())
        fd = np.stack([(risk.flat_value_and_gradient(w + h * e)[1] - risk.flat_value_and_gradient(w - h * e)[1])
                       / (2 * h) for e in np.eye(P)], axis=1)
        np.testing.assert_allclose(so.hessians[j], fd, rtol=0, atol=1e-6 * max(np.abs(hess).max(), 1e-3))
    assert risk.flat_second_order(np.zeros((0, P))).hessians.shape == (0, P, P)
    with pytest.raises(ValueError, match=r"W: expected shape \(n, " + str(P)):
        risk.flat_second_order(W[:, 1:])
