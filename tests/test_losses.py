"""Tests for :mod:`lcnflow.model.losses`.

Oracles used here are independent of the code under test:

* the defining formulas evaluated in mpmath at (at least) 50 significant digits, with the parameters
  converted exactly from their float64 values;
* closed-form derivatives, derived by hand and evaluated in mpmath, and ``mpmath.diff`` (numerical
  differentiation in high precision) of the defining formula;
* ``scipy.special.pseudo_huber``;
* central finite differences with an explicit truncation + rounding error model.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
import sys
import warnings
from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import pytest
import scipy.special
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from lcnflow.model.losses import LOSS_NAMES, LOSS_PARAMETERS, Loss, get_loss

EPS = float(np.finfo(np.float64).eps)

# Relative tolerance against the 50-digit oracles. Each built-in is a short composition of correctly-rounded
# or nearly correctly-rounded libm operations (hypot, log1p, expm1, exp, sinh, pow) on rearranged,
# cancellation-free formulas, so the error is a few ulps (2.2e-16 each); 1e-13 allows ~450 ulps, i.e. it
# fails on any lost digit of significance while not being brittle to the libm in use.
RTOL = 1e-13

CONFIGS: list[tuple[str, dict[str, float]]] = [
    ("square", {}),
    *[("lp", {"p": p}) for p in (2.0, 3.0, 4.0, 2.5, 6.0)],
    *[("pseudo_huber", {"delta": d}) for d in (0.1, 1.0, 10.0)],
    *[("generalized_huber", {"alpha": a, "beta": b}) for a in (0.5, 2.0) for b in (0.0, 1.0, 5.0)],
    # A very large beta moves the switch between the direct and the log-space formula.
    ("generalized_huber", {"alpha": 1.0, "beta": 1e20}),
    ("log_cosh", {}),
]
CONFIG_IDS = [f"{n}-{'-'.join(f'{k}{v:g}' for k, v in p.items())}" for n, p in CONFIGS]

_MAGNITUDES = (1e-300, 1e-8, 0.5, 3.0, 40.0, 1e3, 1e6)
GRID = np.array([0.0, *_MAGNITUDES, *(-m for m in _MAGNITUDES)])
MODERATE = np.array([-3.0, -1.3, -0.5, 0.5, 1.3, 3.0])


# --------------------------------------------------------------------------------------------------------
# mpmath oracles (written from the defining formulas, not from the module's rearrangements)
# --------------------------------------------------------------------------------------------------------


def mp_value(name: str, params: dict[str, float], r: Any) -> Any:
    """Defining formula of the loss in mpmath."""
    mpf = mpmath.mpf
    if name == "square":
        return r**2 / 2
    if name == "lp":
        p = mpf(params["p"])
        return abs(r) ** p / p
    if name == "pseudo_huber":
        d = mpf(params["delta"])
        return d**2 * (mpmath.sqrt(1 + (r / d) ** 2) - 1)
    if name == "generalized_huber":
        a, b = mpf(params["alpha"]), mpf(params["beta"])
        return mpmath.log((mpmath.exp(a * r) + mpmath.exp(-a * r) + b) / (2 + b)) / a
    if name == "log_cosh":
        return mpmath.log(mpmath.cosh(r))
    raise AssertionError(name)


def mp_derivatives(name: str, params: dict[str, float], r: Any) -> tuple[Any, Any]:
    """Hand-derived closed forms of l' and l'' in mpmath (checked against mpmath.diff below)."""
    mpf = mpmath.mpf
    if name == "square":
        return r, mpf(1)
    if name == "lp":
        p = mpf(params["p"])
        return mpmath.sign(r) * abs(r) ** (p - 1), (p - 1) * abs(r) ** (p - 2)
    if name == "pseudo_huber":
        d = mpf(params["delta"])
        h = mpmath.sqrt(1 + (r / d) ** 2)
        return r / h, 1 / h**3
    if name == "generalized_huber":
        a, b = mpf(params["alpha"]), mpf(params["beta"])
        den = 2 * mpmath.cosh(a * r) + b
        return 2 * mpmath.sinh(a * r) / den, a * (4 + 2 * b * mpmath.cosh(a * r)) / den**2
    if name == "log_cosh":
        return mpmath.tanh(r), 1 / mpmath.cosh(r) ** 2
    raise AssertionError(name)


def _digits_for(r: float) -> int:
    # 50 digits plus enough to survive the cancellation 1 + O(r^2) - 1 (and log(1 + O(r^2/beta)) with
    # beta up to 1e20) that the *defining* formulas suffer for tiny r.
    return 80 + (int(-2 * math.log10(abs(r))) if 0 < abs(r) < 1 else 0)


def oracle_values(name: str, params: dict[str, float], rs: np.ndarray) -> np.ndarray:
    out = []
    for r in rs:
        with mpmath.workdps(_digits_for(float(r))):
            out.append(float(mp_value(name, params, mpmath.mpf(float(r)))))
    return np.array(out)


def oracle_derivatives(name: str, params: dict[str, float], rs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d1, d2 = [], []
    with mpmath.workdps(50):
        for r in rs:
            a, b = mp_derivatives(name, params, mpmath.mpf(float(r)))
            d1.append(float(a))
            d2.append(float(b))
    return np.array(d1), np.array(d2)


# --------------------------------------------------------------------------------------------------------
# Values and derivatives against mpmath
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "params"), CONFIGS, ids=CONFIG_IDS)
def test_value_matches_mpmath(name: str, params: dict[str, float]) -> None:
    loss = get_loss(name, **params)
    np.testing.assert_allclose(loss.value(GRID), oracle_values(name, params, GRID), rtol=RTOL, atol=0)


@pytest.mark.parametrize(("name", "params"), CONFIGS, ids=CONFIG_IDS)
def test_derivatives_match_mpmath_closed_forms(name: str, params: dict[str, float]) -> None:
    loss = get_loss(name, **params)
    d1, d2 = oracle_derivatives(name, params, GRID)
    np.testing.assert_allclose(loss.derivative(GRID), d1, rtol=RTOL, atol=0)
    np.testing.assert_allclose(loss.second_derivative(GRID), d2, rtol=RTOL, atol=0)


@pytest.mark.parametrize(("name", "params"), CONFIGS, ids=CONFIG_IDS)
def test_derivatives_match_mpmath_diff(name: str, params: dict[str, float]) -> None:
    # mpmath.diff differentiates the defining formula numerically in extended precision; at 50 digits its
    # error is far below float64 resolution for these smooth functions at moderate r (|r| >= 0.5 keeps lp
    # with non-integer p away from its non-smooth point 0).
    loss = get_loss(name, **params)
    with mpmath.workdps(50):

        def f(x: Any) -> Any:
            return mp_value(name, params, x)

        d1 = np.array([float(mpmath.diff(f, mpmath.mpf(float(r)), 1)) for r in MODERATE])
        d2 = np.array([float(mpmath.diff(f, mpmath.mpf(float(r)), 2)) for r in MODERATE])
    np.testing.assert_allclose(loss.derivative(MODERATE), d1, rtol=RTOL, atol=0)
    np.testing.assert_allclose(loss.second_derivative(MODERATE), d2, rtol=RTOL, atol=0)


@pytest.mark.parametrize("delta", [0.1, 1.0, 10.0])
def test_pseudo_huber_matches_scipy(delta: float) -> None:
    rs = GRID[np.abs(GRID) >= 1e-8]
    expected = scipy.special.pseudo_huber(delta, rs)
    # scipy evaluates delta^2 expm1(log1p(v^2)/2), v = r/delta, whose relative error is amplified by up to
    # ~log(v) (~16 for v = 1e7) by the expm1 step, hence 1e-12 rather than 1e-13.
    np.testing.assert_allclose(get_loss("pseudo_huber", delta=delta).value(rs), expected, rtol=1e-12, atol=0)
    # Tiny r: scipy squares v, which underflows at v = 1e-300 exactly as the true value does.
    assert get_loss("pseudo_huber", delta=delta).value(1e-300) == scipy.special.pseudo_huber(delta, 1e-300)


def test_generalized_huber_with_beta_zero_is_scaled_log_cosh() -> None:
    rs = np.linspace(-50.0, 50.0, 1001)
    for alpha in (0.5, 1.0, 3.0):
        gh = get_loss("generalized_huber", alpha=alpha, beta=0.0)
        lc = get_loss("log_cosh")
        np.testing.assert_allclose(gh(rs), lc(alpha * rs) / alpha, rtol=4 * EPS, atol=0)
        np.testing.assert_allclose(gh.derivative(rs), lc.derivative(alpha * rs), rtol=4 * EPS, atol=0)
        np.testing.assert_allclose(
            gh.second_derivative(rs), alpha * lc.second_derivative(alpha * rs), rtol=8 * EPS, atol=0
        )


# --------------------------------------------------------------------------------------------------------
# Finite differences with an explicit error model
# --------------------------------------------------------------------------------------------------------


def _mp_higher(name: str, params: dict[str, float], r: float, order: int) -> float:
    """|l^(order)(r)| for order 3 or 4, by mpmath.diff of the closed-form l''."""
    with mpmath.workdps(30):
        return abs(float(mpmath.diff(lambda x: mp_derivatives(name, params, x)[1], mpmath.mpf(r), order - 2)))


@pytest.mark.parametrize(("name", "params"), CONFIGS, ids=CONFIG_IDS)
def test_derivatives_match_central_differences(name: str, params: dict[str, float]) -> None:
    loss = get_loss(name, **params)
    for r in MODERATE:
        # First derivative: D1 = (l(r+h) - l(r-h))/(2h) = l'(r) + h^2 l'''(xi)/6 + rounding, where rounding is
        # at most ~2 * (few ulps) * max|l| / (2h). h ~ eps^(1/3) balances the two (~1e-10 relative).
        h = 2.0**-17 * max(1.0, abs(r))
        lp_, lm = loss.value(r + h), loss.value(r - h)
        fd1 = (lp_ - lm) / (2 * h)
        m3 = max(_mp_higher(name, params, x, 3) for x in (r - h, r, r + h))
        tol1 = 4 * (h**2 * m3 / 6 + 4 * EPS * max(abs(lp_), abs(lm)) / h)
        assert abs(fd1 - loss.derivative(r)) <= tol1, (r, fd1, loss.derivative(r), tol1)

        # Second derivative: D2 = (l(r+h) - 2 l(r) + l(r-h))/h^2 = l''(r) + h^2 l''''(xi)/12 + rounding of
        # ~4 * (few ulps) * max|l| / h^2; h ~ eps^(1/4).
        h = 2.0**-12 * max(1.0, abs(r))
        v = loss.value(np.array([r - h, r, r + h]))
        fd2 = (v[2] - 2 * v[1] + v[0]) / h**2
        m4 = max(_mp_higher(name, params, x, 4) for x in (r - h, r, r + h))
        tol2 = 4 * (h**2 * m4 / 12 + 16 * EPS * np.max(np.abs(v)) / h**2)
        assert abs(fd2 - loss.second_derivative(r)) <= tol2, (r, fd2, loss.second_derivative(r), tol2)


_LOSS_STRATEGY = st.one_of(
    st.just(("square", {})),
    st.floats(2.0, 8.0).map(lambda p: ("lp", {"p": p})),
    st.floats(0.05, 20.0).map(lambda d: ("pseudo_huber", {"delta": d})),
    st.tuples(st.floats(0.1, 5.0), st.floats(0.0, 10.0)).map(
        lambda ab: ("generalized_huber", {"alpha": ab[0], "beta": ab[1]})
    ),
    st.just(("log_cosh", {})),
)


@settings(max_examples=150, deadline=None)
@given(spec=_LOSS_STRATEGY, r=st.floats(0.1, 30.0), sign=st.sampled_from([-1.0, 1.0]))
def test_property_derivative_matches_finite_difference(
    spec: tuple[str, dict[str, float]], r: float, sign: float
) -> None:
    name, params = spec
    loss = get_loss(name, **params)
    r *= sign
    h = 2.0**-17 * max(1.0, abs(r))
    lp_, lm = float(loss.value(r + h)), float(loss.value(r - h))
    fd1 = (lp_ - lm) / (2 * h)
    # Bound |l'''| on [r-h, r+h] by a difference quotient of the (separately verified) l'' over a wider
    # interval, with a safety factor 4; see test_derivatives_match_central_differences for the model.
    t = 1e-3 * max(1.0, abs(r))
    m3 = abs(float(loss.second_derivative(r + t) - loss.second_derivative(r - t))) / (2 * t)
    tol = 4 * (h**2 * 4 * m3 / 6 + 4 * EPS * max(abs(lp_), abs(lm)) / h) + 1e-300
    assert abs(fd1 - float(loss.derivative(r))) <= tol


@settings(max_examples=150, deadline=None)
@given(spec=_LOSS_STRATEGY, x=st.floats(-1e6, 1e6), y=st.floats(-1e6, 1e6))
def test_property_symmetry_and_convexity(spec: tuple[str, dict[str, float]], x: float, y: float) -> None:
    name, params = spec
    loss = get_loss(name, **params)
    # Even loss, exactly (the implementation only sees |r| and reattaches the sign).
    assert loss(-x) == loss(x)
    assert loss.derivative(-x) == -loss.derivative(x)
    assert loss.second_derivative(-x) == loss.second_derivative(x)
    assert loss.second_derivative(x) >= 0.0
    # Convexity links value and derivative: l'(x)(y - x) <= l(y) - l(x) <= l'(y)(y - x), up to the
    # rounding of the values (a few ulps of max(l(x), l(y)) each, taken generously as 16 eps).
    lo, hi = min(x, y), max(x, y)
    dv = float(loss(hi) - loss(lo))
    slack = 16 * EPS * max(float(loss(lo)), float(loss(hi))) + 1e-300
    assert float(loss.derivative(lo)) * (hi - lo) <= dv + slack + 16 * EPS * abs(
        float(loss.derivative(lo)) * (hi - lo)
    )
    assert dv <= float(loss.derivative(hi)) * (hi - lo) + slack + 16 * EPS * abs(
        float(loss.derivative(hi)) * (hi - lo)
    )


# --------------------------------------------------------------------------------------------------------
# Robustness: no warnings, no NaN / inf
# --------------------------------------------------------------------------------------------------------

ROBUST_CONFIGS = [
    *CONFIGS,
    ("lp", {"p": 50.0}),
    ("pseudo_huber", {"delta": 1e-3}),
    ("pseudo_huber", {"delta": 1e3}),
    ("generalized_huber", {"alpha": 1e-3, "beta": 0.0}),
    ("generalized_huber", {"alpha": 50.0, "beta": 1e6}),
]


@pytest.mark.parametrize(("name", "params"), ROBUST_CONFIGS)
def test_finite_and_warning_free(name: str, params: dict[str, float]) -> None:
    mags = np.geomspace(1e-300, 1e6, 613)
    rs = np.concatenate([[0.0, -0.0], mags, -mags])
    loss = get_loss(name, **params)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        for fn in (loss.value, loss.derivative, loss.second_derivative):
            out = fn(rs)
            assert out.dtype == np.float64
            assert out.shape == rs.shape
            assert np.all(np.isfinite(out))


def test_nan_and_inf_propagate_without_warnings() -> None:
    rs = np.array([np.nan, np.inf, -np.inf])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        for name, params in CONFIGS:
            loss = get_loss(name, **params)
            v, d1 = loss.value(rs), loss.derivative(rs)
            assert np.isnan(v[0]) and np.isnan(d1[0]) and np.isnan(loss.second_derivative(rs)[0])
            assert v[1] == np.inf and v[2] == np.inf
            assert d1[1] > 0 > d1[2]


def test_shapes_and_dtypes() -> None:
    for name, params in CONFIGS:
        loss = get_loss(name, **params)
        for fn in (loss, loss.value, loss.derivative, loss.second_derivative):
            s = fn(0.5)
            assert isinstance(s, np.ndarray) and s.shape == () and s.dtype == np.float64
            m = fn(np.arange(6, dtype=np.int64).reshape(2, 3))
            assert m.shape == (2, 3) and m.dtype == np.float64
            assert fn(np.float32(2.0)).dtype == np.float64
            assert fn(np.empty((0, 4))).shape == (0, 4)
        with pytest.raises(ValueError, match="r: must be real-valued"):
            loss(np.array([1 + 2j]))


# --------------------------------------------------------------------------------------------------------
# Declared properties
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("square", {}, {"analytic": True, "convex": True, "coercive": True, "growth": 2.0}),
        ("lp", {"p": 3.0}, {"analytic": False, "convex": True, "coercive": True, "growth": 3.0}),
        ("lp", {"p": 4}, {"analytic": True, "convex": True, "coercive": True, "growth": 4.0}),
        ("lp", {"p": 2.0}, {"analytic": True, "convex": True, "coercive": True, "growth": 2.0}),
        ("lp", {"p": 2.5}, {"analytic": False, "convex": True, "coercive": True, "growth": 2.5}),
        ("lp", {"p": 6.0}, {"analytic": True, "convex": True, "coercive": True, "growth": 6.0}),
        ("pseudo_huber", {}, {"analytic": True, "convex": True, "coercive": True, "growth": 1.0}),
        ("generalized_huber", {}, {"analytic": True, "convex": True, "coercive": True, "growth": 1.0}),
        ("log_cosh", {}, {"analytic": True, "convex": True, "coercive": True, "growth": 1.0}),
    ],
)
def test_declared_properties(name: str, params: dict[str, float], expected: dict[str, Any]) -> None:
    assert get_loss(name, **params).properties() == expected


@pytest.mark.parametrize(("name", "params"), CONFIGS, ids=CONFIG_IDS)
def test_declared_properties_hold_numerically(name: str, params: dict[str, float]) -> None:
    loss = get_loss(name, **params)
    rs = np.linspace(-50.0, 50.0, 2001)
    if loss.convex:
        assert np.all(loss.second_derivative(rs) >= 0.0)
        assert np.all(np.diff(loss.derivative(rs)) >= 0.0)
    if loss.coercive:
        assert loss(0.0) == 0.0
        big = np.array([1e2, 1e3, 1e4, 1e5, 1e6])
        assert np.all(np.diff(loss(big)) > 0) and np.all(np.diff(loss(-big)) > 0)
    # Growth order: log2(l(2R)/l(R)) -> growth; at R = 1e5 the correction is O(delta/R) or
    # O(log(2+beta)/(alpha R)), i.e. <= 1e-3 for every configuration here.
    R = 1e5
    slope = math.log2(float(loss(2 * R) / loss(R)))
    assert slope == pytest.approx(loss.growth, abs=1e-3)


def test_lp_is_only_c2_at_zero_for_odd_p() -> None:
    # For p = 3, l'' = 2|r| has a kink at 0 (so l is not analytic there): one-sided slopes of l'' differ.
    loss = get_loss("lp", p=3)
    h = 1e-6
    right = float(loss.second_derivative(h) - loss.second_derivative(0.0)) / h
    left = float(loss.second_derivative(0.0) - loss.second_derivative(-h)) / h
    assert right == pytest.approx(2.0) and left == pytest.approx(-2.0)
    assert get_loss("lp", p=2).second_derivative(0.0) == 1.0


# --------------------------------------------------------------------------------------------------------
# Registry, metadata, errors
# --------------------------------------------------------------------------------------------------------


def test_registry_matches_the_documentation_and_the_oracles() -> None:
    """The registered losses are the ones the README documents, each has a closed-form oracle in conftest, and
    ``get_loss(name)`` with no parameters is that closed form at the README's documented defaults."""
    from pathlib import Path

    from conftest import LOSS_CASES, numpy_loss

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `loss.name` |"))
    documented = re.findall(r"`(\w+)`", re.split(r"(?<!\\)\|", row)[3])
    assert set(LOSS_NAMES) == set(documented), (LOSS_NAMES, documented)
    assert set(LOSS_NAMES) == {name for name, _ in LOSS_CASES}
    row = next(line for line in readme.splitlines() if line.startswith("| `loss.p`,"))
    keys = re.findall(r"`loss\.(\w+)`", row.split("|")[1])
    values = [float(v) for v in row.split("|")[2].split(",")]
    defaults = dict(zip(keys, values, strict=True))
    r = np.linspace(-6.0, 6.0, 49)
    for name in LOSS_NAMES:
        loss = get_loss(name)
        params = dict(loss.params)
        assert set(params) <= set(defaults), (name, params)
        assert params == {k: defaults[k] for k in params}, (name, params)
        np.testing.assert_allclose(loss(r), numpy_loss(name, defaults)(r), rtol=1e-12, atol=1e-14)
        assert LOSS_PARAMETERS[name] == params


def test_str_to_dict_roundtrip_equality_pickle() -> None:
    assert str(get_loss("pseudo_huber")) == "pseudo_huber(delta=1.0)"
    assert str(get_loss("generalized_huber", beta=2)) == "generalized_huber(alpha=1.0, beta=2.0)"
    assert str(get_loss("log_cosh")) == "log_cosh"
    assert get_loss("lp", p=3).to_dict() == {"name": "lp", "p": 3.0}
    for name, params in CONFIGS:
        loss = get_loss(name, **params)
        again = get_loss(**loss.to_dict())
        assert again == loss and hash(again) == hash(loss)
        clone = pickle.loads(pickle.dumps(loss))
        assert clone == loss
        np.testing.assert_array_equal(clone(GRID), loss(GRID))
        assert loss.description
    assert get_loss("lp", p=3) != get_loss("lp", p=4)
    assert "δ = 10.0" in get_loss("pseudo_huber", delta=10).description


def test_loss_is_immutable() -> None:
    loss = get_loss("pseudo_huber", delta=2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        loss.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        loss.params["delta"] = 3.0  # type: ignore[index]
    LOSS_PARAMETERS["pseudo_huber"]["delta"] = 99.0  # mutating the public dict must not affect get_loss
    try:
        assert get_loss("pseudo_huber").params["delta"] == 1.0
    finally:
        LOSS_PARAMETERS["pseudo_huber"]["delta"] = 1.0


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("nope", {}, r"loss\.name: unknown loss 'nope'; valid names: square, lp, pseudo_huber"),
        ("pseudo_huber", {"delt": 1.0}, r"loss\.delt: unknown parameter .*got 1\.0.*valid parameters: delta"),
        ("log_cosh", {"alpha": 2}, r"loss\.alpha: unknown parameter .*valid parameters: \(none\)"),
        ("lp", {"delta": 2}, r"loss\.delta: unknown parameter .*valid parameters: p"),
        ("pseudo_huber", {"delta": -1}, r"loss\.delta: must be > 0, got -1"),
        ("pseudo_huber", {"delta": 0.0}, r"loss\.delta: must be > 0, got 0\.0"),
        ("pseudo_huber", {"delta": float("nan")}, r"loss\.delta: must be finite, got nan"),
        ("pseudo_huber", {"delta": "1"}, r"loss\.delta: must be a real number, got '1'"),
        ("pseudo_huber", {"delta": True}, r"loss\.delta: must be a real number, got True"),
        ("generalized_huber", {"alpha": 0}, r"loss\.alpha: must be > 0, got 0"),
        ("generalized_huber", {"alpha": -2.5}, r"loss\.alpha: must be > 0, got -2\.5"),
        ("generalized_huber", {"beta": -0.5}, r"loss\.beta: must be >= 0, got -0\.5"),
        ("generalized_huber", {"beta": float("inf")}, r"loss\.beta: must be finite, got inf"),
        ("lp", {"p": 1.5}, r"loss\.p: must be >= 2, got 1\.5"),
        ("lp", {"p": float("nan")}, r"loss\.p: must be finite, got nan"),
        ("lp", {"p": 3 + 0j}, r"loss\.p: must be a real number, got \(3\+0j\)"),
    ],
)
def test_get_loss_errors(name: str, params: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_loss(name, **params)


def test_get_loss_accepts_numpy_scalars() -> None:
    assert get_loss("lp", p=np.int64(4)) == get_loss("lp", p=4.0)
    assert get_loss("pseudo_huber", delta=np.float32(0.5)).params["delta"] == 0.5
    with pytest.raises(ValueError, match=r"loss\.name: unknown loss 3"):
        get_loss(3)  # type: ignore[arg-type]


def test_loss_constructor_validation() -> None:
    f = np.abs
    with pytest.raises(ValueError, match=r"loss\.analytic: must be True, False or None, got 'yes'"):
        Loss("x", {}, f, f, f, analytic="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"loss\.growth: must be > 0 or None, got -1"):
        Loss("x", {}, f, f, f, growth=-1)
    with pytest.raises(ValueError, match=r"loss\.name: must be a non-empty string"):
        Loss("", {}, f, f, f)
    with pytest.raises(ValueError, match=r"loss\.value: must be callable, got 3"):
        Loss("x", {}, 3, f, f)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"loss\.k: must be finite, got nan"):
        Loss("x", {"k": float("nan")}, f, f, f)


# --------------------------------------------------------------------------------------------------------
# Custom losses
# --------------------------------------------------------------------------------------------------------

QUARTIC_RS = np.linspace(-4.0, 4.0, 33)


def _quartic_oracle() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # l = r^2/2 + r^4/4, l' = r + r^3, l'' = 1 + 3 r^2, evaluated exactly in mpmath.
    with mpmath.workdps(50):
        rs = [mpmath.mpf(float(r)) for r in QUARTIC_RS]
        return (
            np.array([float(r**2 / 2 + r**4 / 4) for r in rs]),
            np.array([float(r + r**3) for r in rs]),
            np.array([float(1 + 3 * r**2) for r in rs]),
        )


def test_from_callables() -> None:
    loss = Loss.from_callables(
        lambda r: r**2 / 2 + r**4 / 4,
        lambda r: r + r**3,
        lambda r: 1 + 3 * r**2,
        name="quartic",
        convex=True,
        growth=4,
        description="r²/2 + r⁴/4",
    )
    v, d1, d2 = _quartic_oracle()
    np.testing.assert_allclose(loss(QUARTIC_RS), v, rtol=4 * EPS)
    np.testing.assert_allclose(loss.derivative(QUARTIC_RS), d1, rtol=4 * EPS)
    np.testing.assert_allclose(loss.second_derivative(QUARTIC_RS), d2, rtol=4 * EPS)
    assert loss.properties() == {"analytic": None, "convex": True, "coercive": None, "growth": 4.0}
    assert loss.name == "quartic" and str(loss) == "quartic" and loss.to_dict() == {"name": "quartic"}
    assert loss(2).dtype == np.float64 and loss(2).shape == ()
    assert loss([1, 2]).dtype == np.float64


def test_from_callables_broadcasts_scalar_results() -> None:
    loss = Loss.from_callables(lambda r: r * r / 2, lambda r: r, lambda r: 1.0)
    out = loss.second_derivative(np.zeros((2, 3)))
    assert out.shape == (2, 3) and out.dtype == np.float64 and np.all(out == 1.0)
    bad = Loss.from_callables(lambda r: np.zeros(5), lambda r: r, lambda r: r)
    with pytest.raises(ValueError, match=r"loss\.value: returned shape \(5,\)"):
        bad(np.zeros(3))
    cplx = Loss.from_callables(lambda r: r + 1j, lambda r: r, lambda r: r)
    with pytest.raises(ValueError, match=r"loss\.value: returned complex values"):
        cplx(np.zeros(3))


@pytest.mark.parametrize("expr", ["r**2/2 + r**4/4", "x**2/2 + x**4/4"])
def test_from_sympy_string_matches_hand_derivatives(expr: str) -> None:
    loss = Loss.from_sympy(expr, convex=True)
    v, d1, d2 = _quartic_oracle()
    np.testing.assert_allclose(loss(QUARTIC_RS), v, rtol=4 * EPS)
    np.testing.assert_allclose(loss.derivative(QUARTIC_RS), d1, rtol=4 * EPS)
    np.testing.assert_allclose(loss.second_derivative(QUARTIC_RS), d2, rtol=4 * EPS)
    assert loss.convex is True and loss.name == "custom"
    assert "**4" in loss.description


def test_from_sympy_expression_and_symbol() -> None:
    t = sympy.Symbol("t")
    loss = Loss.from_sympy(sympy.log(sympy.cosh(t)), t, name="lc", analytic=True)
    rs = np.linspace(-2.0, 2.0, 41)
    ref = get_loss("log_cosh")
    # Literal log(cosh t), sinh/cosh and 1 - sinh^2/cosh^2 (sympy's forms) lose at most a few ulps of O(1)
    # quantities on [-2, 2].
    np.testing.assert_allclose(loss(rs), ref(rs), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(loss.derivative(rs), ref.derivative(rs), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(loss.second_derivative(rs), ref.second_derivative(rs), rtol=1e-14, atol=1e-15)
    assert loss.name == "lc" and loss.analytic is True
    # The same with the symbol given by name.
    np.testing.assert_allclose(Loss.from_sympy("log(cosh(t))", "t")(rs), ref(rs), rtol=1e-14, atol=1e-15)


def test_from_sympy_constant_derivative_and_kink() -> None:
    sq = Loss.from_sympy("r**2")
    out = sq.second_derivative(np.zeros((2, 3)))
    assert out.shape == (2, 3) and out.dtype == np.float64 and np.all(out == 2.0)
    # |r|^3: treated as a real variable, l' = 3 r|r| and l'' = 6|r| (the r^2 DiracDelta(r) term is dropped).
    cube = Loss.from_sympy("Abs(r)**3")
    rs = np.linspace(-3.0, 3.0, 13)
    np.testing.assert_allclose(cube.derivative(rs), 3 * rs * np.abs(rs), rtol=4 * EPS, atol=0)
    np.testing.assert_allclose(cube.second_derivative(rs), 6 * np.abs(rs), rtol=4 * EPS, atol=0)


def test_from_sympy_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"expr: must contain exactly one free symbol.*got 2 \(x, y\)"):
        Loss.from_sympy("x*y + x**2")
    with pytest.raises(ValueError, match=r"expr: must contain exactly one free symbol.*got 0"):
        Loss.from_sympy("5")
    with pytest.raises(ValueError, match=r"expr: free symbols other than symbol='x'.*got y"):
        Loss.from_sympy("x*y", symbol="x")
    with pytest.raises(ValueError, match=r"expr: could not be parsed"):
        Loss.from_sympy("r**")
    with pytest.raises(ValueError, match=r"symbol: must be a sympy Symbol"):
        Loss.from_sympy("r**2", symbol=3)
    monkeypatch.setitem(sys.modules, "sympy", None)
    with pytest.raises(ImportError, match=r"pip install lcnflow\[sympy\]"):
        Loss.from_sympy("r**2")


def test_custom_loss_equality_and_hash() -> None:
    f: Callable[[np.ndarray], np.ndarray] = np.square
    a = Loss.from_callables(f, f, f)
    b = Loss.from_callables(f, f, f)
    assert a == b and hash(a) == hash(b)
    assert a != Loss.from_callables(lambda r: r, f, f)
    assert pickle.loads(pickle.dumps(a)) == a
