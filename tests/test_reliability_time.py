"""Nothing takes time exponential in the depth, and every phase after the integration honours ``max_time``.

Oracles: a brute-force enumeration of every assignment of roots to layers (itertools.product, deduplicated by the
multiset of roots per layer size), the wall clock, and counters wrapped around the expensive searches.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import scipy.optimize
from numpy.polynomial import polynomial as P

import lcnflow
from lcnflow import Architecture, Dataset, EmpiricalRisk
from lcnflow.analysis import critical, optimum


def _deep_risk(n: int, seed: int = 0) -> EmpiricalRisk:
    arch = Architecture(32, [2] * n)
    rng = np.random.default_rng(seed)
    return EmpiricalRisk(arch, "square", Dataset(rng.standard_normal((200, 32)), rng.standard_normal((200, 32 - n))))


def _init(n: int):
    return lcnflow.random_init(Architecture(32, [2] * n), scale=0.5, seed=1)


def test_twelve_equal_layers_run_in_seconds_with_the_default_options():
    """12 size-2 layers (12! = 4.8e8 assignments of roots to layers) reach a certified, classified limit fast."""
    risk = _deep_risk(12)
    lcnflow.gradient_flow(risk, _init(12), classify=False)  # compile outside the clock
    t0 = time.perf_counter()
    res = lcnflow.gradient_flow(_deep_risk(12), _init(12))
    wall = time.perf_counter() - t0
    assert res.converged and res.critical_point is not None
    assert wall < 20.0, wall
    cp = res.critical_point
    # every layer has size 2: any two points of a fibre differ by a permutation of the layers, so one class only
    if cp.origin == "rank_deficient" and not cp.global_on_m:
        assert cp.spurious is False and "all 1 class(es)" in cp.spurious_reason


def _brute_force_classes(ks, roots_per_layer):
    """Distinct distributions of the real roots over layers of sizes ``ks`` (each size-k layer holds k − 1 roots),
    up to exchanging layers of equal size: every assignment of every root to every layer, deduplicated."""
    roots = [r for rs in roots_per_layer for r in rs]
    seen = set()
    for assign in itertools.product(range(len(ks)), repeat=len(roots)):
        groups = [sorted(round(roots[j], 6) for j in range(len(roots)) if assign[j] == i) for i in range(len(ks))]
        if any(len(g) != k - 1 for g, k in zip(groups, ks, strict=True)):
            continue
        seen.add(tuple(sorted(zip(ks, map(tuple, groups), strict=True))))
    return seen


@pytest.mark.parametrize("ks, roots", [
    ([2, 2, 2, 2, 2], [[0.5], [-1.0], [2.0], [3.0], [-0.25]]),
    ([2, 3, 2, 3], [[0.5], [-1.0, 2.0], [3.0], [-0.25, 1.5]]),
    ([3, 3, 3], [[0.5, -1.0], [2.0, 3.0], [-0.25, 1.5]]),
    ([2, 4, 2], [[0.5], [-1.0, 2.0, 3.0], [-0.25]]),
])
def test_fibre_walk_builds_each_class_once_and_all_of_them(ks, roots):
    arch = Architecture(16, ks)
    ws = [P.polyfromroots(r) for r in roots]
    v = lcnflow.final_filter(arch, ws).ravel()
    out = critical._fibre_classes(arch, ws, v)
    assert not isinstance(out, str)
    classes, incomplete = out
    assert incomplete == ""
    expected = _brute_force_classes(ks, roots)
    got = set()
    for point in classes:
        per_layer = [tuple(sorted(round(float(z.real), 6) for z in np.roots(w[::-1]))) for w in point]
        got.add(tuple(sorted(zip(ks, per_layer, strict=True))))
        # each class is a point of the fibre
        np.testing.assert_allclose(lcnflow.final_filter(arch, point).ravel(), v, rtol=1e-9, atol=1e-12)
    assert len(classes) == len(got) == len(expected)
    assert {tuple((k, tuple(round(x, 3) for x in g)) for k, g in c) for c in got} == \
        {tuple((k, tuple(round(x, 3) for x in g)) for k, g in c) for c in expected}


def test_fibre_walk_of_many_equal_layers_is_linear(monkeypatch):
    """24 size-2 layers with distinct roots: one class, found in about 24 steps (not 24! ≈ 6e23)."""
    n = 24
    arch = Architecture(64, [2] * n)
    ws = [np.array([-(0.1 * i + 0.05), 1.0]) for i in range(n)]
    v = lcnflow.final_filter(arch, ws).ravel()
    calls = []
    real = critical._layers_from_units
    monkeypatch.setattr(critical, "_layers_from_units", lambda *a: calls.append(1) or real(*a))
    t0 = time.perf_counter()
    classes, incomplete = critical._fibre_classes(arch, ws, v)
    assert time.perf_counter() - t0 < 1.0
    assert len(classes) == 1 and incomplete == "" and len(calls) == 1


def test_capped_fibre_walk_answers_undecided_and_says_how_much_was_examined(monkeypatch):
    """With the cap below the number of classes, the absence of a witness is not called 'not spurious'."""
    monkeypatch.setattr(critical, "MAX_FIBRE_POINTS", 2)
    ks, roots = [3, 3, 3], [[0.5, -1.0], [2.0, 3.0], [-0.25, 1.5]]  # 15 classes
    arch = Architecture(16, ks)
    ws = [P.polyfromroots(r) for r in roots]
    v = lcnflow.final_filter(arch, ws).ravel()
    classes, incomplete = critical._fibre_classes(arch, ws, v)
    assert len(classes) == 2 and "more than 2 classes" in incomplete
    g = np.ones(v.size)
    J = critical.final_filter_jacobian(arch, ws)
    # the points examined have full-rank dπ: any non-zero gradient has a component in its range (a witness)
    spurious, _, witness = critical._spurious(arch, ws, v, g, J * 0, "rank_deficient", None, 1e-6)
    assert spurious is True and witness is not None  # a witness among the examined points is a proof
    # no witness among the examined points (dπ made to vanish there): undecided, not "not spurious"
    monkeypatch.setattr(critical, "final_filter_jacobian", lambda a, p: np.zeros((v.size, 9)))
    spurious, reason, _ = critical._spurious(arch, ws, v, g, J * 0, "rank_deficient", None, 1e-6)
    assert spurious is None and reason.startswith("undecided") and "at the 2 class(es)" in reason


def test_classify_false_walks_no_fibre_and_searches_no_best(monkeypatch):
    risk = _deep_risk(8)
    calls = []
    real_walk, real_best = critical._fibre_classes, optimum._compute
    monkeypatch.setattr(critical, "_fibre_classes", lambda *a, **k: calls.append("fibre") or real_walk(*a, **k))
    monkeypatch.setattr(optimum, "_compute", lambda *a, **k: calls.append("best") or real_best(*a, **k))
    res = lcnflow.gradient_flow(risk, _init(8), classify=False)
    assert res.converged and res.critical_point is None
    assert calls == []
    for plateau in res.itinerary:
        assert plateau.critical_point is None or plateau.critical_point.spurious_reason == critical.NOT_EXAMINED \
            or plateau.critical_point.origin != "rank_deficient"


def test_max_time_bounds_the_search_for_the_best_point_of_m(monkeypatch):
    """Force the nested (exponential) grid search at 8 layers (≈ 40 s): the run still ends near max_time, says
    that time ran out, and leaves global/local on M undecided instead of guessing."""
    risk = _deep_risk(8)
    lcnflow.gradient_flow(risk, _init(8), classify=False)  # compile outside the clock
    monkeypatch.setattr(optimum, "MAX_GRID_PRODUCT", math.inf)
    budget = 3.0
    t0 = time.perf_counter()
    res = lcnflow.gradient_flow(_deep_risk(8), _init(8), max_time=budget)
    wall = time.perf_counter() - t0
    assert wall < budget + 1.5, wall
    assert res.converged
    cp = res.critical_point
    assert cp.global_on_m is None and cp.best is None and "max_time ran out" in cp.undecided
    assert "max_time" in res.message and "ran out" in res.message


def test_out_of_time_search_raises_and_is_not_cached():
    risk = _deep_risk(8)
    with pytest.raises(optimum.OutOfTime):
        optimum.best_on_function_space(risk, max_time=0.0)
    best = optimum.best_on_function_space(risk)  # computed in full now (not a cached partial answer)
    assert best.method == "real_root_recursion" and not best.details.get("cut_short")
    with pytest.raises(ValueError, match="max_time"):
        optimum.best_on_function_space(risk, max_time=-1.0)


def test_level_by_level_search_is_an_upper_bound_attained_on_m():
    """Beyond the grid budget the search is polynomial; its value is attained by a filter of M (≥ r real roots) and
    is labelled an upper bound, never exact."""
    risk = _deep_risk(10)
    t0 = time.perf_counter()
    best = optimum.best_on_function_space(risk)
    assert time.perf_counter() - t0 < 10.0
    assert best.method == "real_root_recursion" and best.exact is False
    assert "upper bound" in best.statement
    assert best.value == pytest.approx(risk.function_space_value(best.filter), rel=1e-12)
    # in M: a network of 10 size-2 layers (real roots only) fitted to the filter by least squares reproduces it —
    # starting from the real parts of its roots (its double roots split into close complex pairs under rounding)
    v = np.asarray(best.filter, float).ravel()
    roots = np.roots(v[::-1]).real

    def residual(z):
        layers = [np.array([-x, 1.0]) for x in z[1:]]
        layers[0] = layers[0] * z[0]
        return lcnflow.final_filter(risk.arch, layers).ravel() - v

    fit = scipy.optimize.least_squares(residual, np.concatenate([[v[-1]], roots]), xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert np.linalg.norm(fit.fun) <= 1e-6 * np.linalg.norm(v)
    rebuilt = v + fit.fun
    assert risk.function_space_value(rebuilt) == pytest.approx(best.value, rel=1e-5)
    assert best.value >= best.unconstrained_value


def test_classification_time_limit_leaves_spurious_undecided():
    """A rank-deficient point that is not a global minimum: with no time, the spurious test is not guessed."""
    risk = _deep_risk(4)
    res = lcnflow.gradient_flow(risk, _init(4), classify=False)
    cp = lcnflow.classify_critical_point(risk, res.limit, max_time=0.0)
    if cp.origin == "rank_deficient" and not cp.global_on_m:
        assert cp.spurious is None and "max_time" in cp.undecided
    full = lcnflow.classify_critical_point(risk, res.limit)
    assert full.kind in ("global_minimum", "local_minimum", "degenerate", "strict_saddle")
    with pytest.raises(ValueError, match="max_time"):
        lcnflow.classify_critical_point(risk, res.limit, max_time=float("nan"))
