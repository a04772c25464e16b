"""The itinerary of a run from a small initialization, against an independent integration.

Four size-2 layers (``k = (2, 2, 2, 2)``) from ``N(0, (10⁻⁶)²)``: the flow lingers near the origin until
``t ≈ 6·10¹⁰``, escapes in a flow time of order one, lingers near a strict saddle for a few dozen time units, and
settles.  On a log axis of ``t`` from 0 the second plateau is a sliver (``20/6·10¹⁰``); in the time since the
escape it spans a decade.  The reference is ``scipy.integrate.solve_ivp`` (LSODA, rtol 1e-10) on the hand-written
gradient of tests/reference_flow.py, integrated up to the middle of the descent and then on a clock restarted there
(float64 cannot resolve steps of 10⁻⁵ at ``t ≈ 10¹¹``), and read on 6 000 log-spaced times since its own escape.
Its plateaus are found from that dense reading by the documented definition, written here from the text.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
from numpy.lib.stride_tricks import sliding_window_view

import lcnflow as lf
from lcnflow.analysis.itinerary import LEVEL_RTOL, MIN_TIME_FACTOR
from reference_flow import ConvolveRisk

SIZES = [2, 2, 2, 2]


def _problem(seed: int = 7):
    """A teacher ``π`` of four real roots of mixed sizes, perturbed, 40 Gaussian inputs, noise 0.05."""
    rng = np.random.default_rng(seed)
    roots = rng.choice([-1, 1], 4) * 10 ** rng.uniform(-1.5, 1, 4)
    v = np.asarray(np.poly(roots))[::-1]
    v = v / np.linalg.norm(v)
    if rng.random() < 0.5:
        v = v + 0.3 * rng.standard_normal(5) / np.sqrt(5)
    X = rng.standard_normal((40, 16))
    Y = sliding_window_view(X, 5, axis=1) @ v + 0.05 * rng.standard_normal((40, 12))
    w0 = 1e-6 * rng.standard_normal(8)
    risk = lf.EmpiricalRisk(lf.Architecture(16, SIZES), lf.get_loss("square"), lf.Dataset(X, Y))
    return risk, ConvolveRisk(SIZES, X, Y), w0


def _reference_plateaus(ref: ConvolveRisk, w0: np.ndarray, t_guess: float):
    """``(t_escape, L_limit, [(τ_enter, τ_leave, level)])`` of the reference flow, ``τ`` the time since its escape
    (the last time at which ``|L − L(0)| ≤ 1e-3 Δ``); the start's plateau is ``[0, t_escape]``."""
    L0 = ref.value(w0)
    opts = {"method": "LSODA", "rtol": 1e-10, "atol": 1e-12 * 1e-6, "dense_output": True}
    rhs = lambda _t, x: -ref.gradient(x)  # noqa: E731

    def deep(_t, x):  # well into the descent (half of L(0)): restart the clock there
        return ref.value(x) - 0.5 * L0
    deep.terminal = True

    s1 = scipy.integrate.solve_ivp(rhs, (0.0, 10 * t_guess), w0, events=deep, **opts)
    assert s1.status == 1, s1.message
    t1 = float(s1.t[-1])
    s2 = scipy.integrate.solve_ivp(rhs, (0.0, 5000.0), s1.y[:, -1], **opts)
    assert s2.status == 0 and np.linalg.norm(ref.gradient(s2.y[:, -1])) < 1e-9
    L_end = ref.value(s2.y[:, -1])
    tol = LEVEL_RTOL * (L0 - L_end)
    values = np.array([ref.value(s1.y[:, i]) for i in range(s1.t.size)])
    i = int(np.argmax(np.abs(values - L0) > tol))
    t_esc = scipy.optimize.brentq(lambda t: abs(ref.value(s1.sol(t)) - L0) - tol, s1.t[i - 1], s1.t[i],
                                  xtol=1e-6, rtol=4 * np.finfo(float).eps)
    off = t1 - t_esc
    tau = np.geomspace(1e-3, off + 5000.0, 6000)
    L = np.array([ref.value(s1.sol(t_esc + x)) if x < off else ref.value(s2.sol(x - off)) for x in tau])
    out = []
    j = 0
    while j < tau.size - 1:  # the definition: flat within tol, τ grows tenfold, between the start and the limit
        k, lo, hi = j, L[j], L[j]
        while k + 1 < tau.size and max(hi, L[k + 1]) - min(lo, L[k + 1]) <= tol:
            k += 1
            lo, hi = min(lo, L[k]), max(hi, L[k])
        level = np.median(L[j:k + 1])
        if (k < tau.size - 1 and tau[k] >= MIN_TIME_FACTOR * tau[j] and level - L_end > 2 * tol
                and L0 - level > 2 * tol):
            out.append((float(tau[j]), float(tau[k]), float(np.median(L[j:k + 1]))))
            j = k + 1
        else:
            j += 1
    return t_esc, L_end, out


@pytest.mark.parametrize("seed", [7, 45])
def test_plateaus_after_a_late_escape_match_an_independent_integration(seed):
    risk, ref, w0 = _problem(seed)
    res = lf.gradient_flow(risk, w0, integrator="LSODA")  # the Python recorder (see the module docstring)
    assert res.certified, res.message
    t_esc, L_end, ref_plateaus = _reference_plateaus(ref, w0, res.t_final)
    assert res.loss == pytest.approx(L_end, rel=1e-8)
    tol = LEVEL_RTOL * (ref.value(w0) - L_end)
    # the reference has exactly one plateau after the escape, the strict saddle; lcnflow has the start and it
    assert len(ref_plateaus) == 1, ref_plateaus
    assert len(res.itinerary) == 2, [p.summary() for p in res.itinerary]
    start, saddle = res.itinerary
    # the start's plateau: at the origin, L(0), from t = 0 to the escape (an escape time after ~6e10 of creeping is
    # sensitive to the integration error: the two flows agree on it to 1e-3 relative)
    assert start.t_enter == 0.0 and start.loss == pytest.approx(ref.value(np.zeros(8)), rel=1e-12)
    assert start.t_leave == pytest.approx(t_esc, rel=1e-3)
    # the saddle's plateau: its level within the plateau tolerance of the reference's, its entry absolute in flow
    # time and, measured from each flow's own escape, within 25 % of the reference's (the record is log-spaced at
    # 10^(32/400) ≈ 1.2 in the time since the escape)
    tau_in, tau_out, level = ref_plateaus[0]
    assert saddle.kind == "strict_saddle"
    assert abs(saddle.loss - level) <= tol
    assert saddle.t_enter == pytest.approx(t_esc + tau_in, rel=1e-3)
    assert saddle.t_enter - start.t_leave == pytest.approx(tau_in, rel=0.25)
    assert saddle.t_leave - start.t_leave == pytest.approx(tau_out, rel=0.25)
    # on log t from 0 the saddle's whole plateau is narrower than the spacing of one point per decade
    assert np.log10(saddle.t_leave / saddle.t_enter) < 1e-8


def test_the_recorder_is_dense_where_the_run_moves():
    """Between the escape and the saddle's plateau the loss falls by most of the descent within a flow time of about
    two, at t ≈ 6e10: ``1.5e-11`` decades of time, where one point per ``1/12.5`` decade would keep at most one.
    The record keeps at least 20 points along that fall, and stays within ``max_record`` points."""
    risk, _, w0 = _problem(7)
    res = lf.gradient_flow(risk, w0, integrator="LSODA")
    start, saddle = res.itinerary
    tol = LEVEL_RTOL * (res.losses[0] - res.loss)
    falling = (res.losses < res.losses[0] - tol) & (res.losses > saddle.loss + tol)
    assert np.all((res.times[falling] > start.t_leave) & (res.times[falling] < saddle.t_enter))
    assert falling.sum() >= 20
    assert len(res.times) <= res.options["max_record"] + 1


def _plateaus_by_definition(times, losses, final):
    """(first, last) record indices of the plateaus of the module docstring's definition, by an exhaustive scan of
    every start: level within LEVEL_RTOL·Δ, time grown ten-fold (since the escape after the start's level), above
    the final level and below the start's by 2·LEVEL_RTOL·Δ."""
    n = len(losses)
    tol = LEVEL_RTOL * (losses[0] - final)
    e = 0
    while e + 1 < n and np.isfinite(losses[e + 1]) and abs(losses[e + 1] - losses[0]) <= tol:
        e += 1
    found, j = [], 0
    while j < n - 1:
        k = j
        while k + 1 < n and np.isfinite(losses[k + 1]) and np.ptp(losses[j:k + 2]) <= tol:
            k += 1
        if j == 0:
            grows = times[k] >= MIN_TIME_FACTOR * (times[0] if times[0] > 0 else times[1])
        else:
            grows = times[j] > times[e] and times[k] - times[e] >= MIN_TIME_FACTOR * (times[j] - times[e])
        level = np.median(losses[j:k + 1])
        if (k > j and k < n - 1 and grows and level - final > 2 * tol
                and (j == 0 or losses[0] - level > 2 * tol)):
            found.append((j, k))
            j = k + 1
        else:
            j += 1
    return found


def _synthetic_plateaus(seed: int) -> int:
    """find_plateaus on synthetic records against :func:`_plateaus_by_definition`; returns how many it found."""
    # synthetic records: a staircase of levels, each held over a random stretch of log-spaced times, with wiggles
    # below and above the level tolerance, and NaN losses now and then; every state counts as slow
    from lcnflow.analysis.itinerary import PLATEAU_OUT_OF_TIME, find_plateaus

    rng = np.random.default_rng(seed)
    steps = rng.integers(1, 16, size=8)
    levels = np.sort(rng.uniform(0.1, 1.0, size=steps.size))[::-1]
    losses = np.concatenate([lev + rng.choice([1e-5, 3e-3], p=[0.8, 0.2]) * rng.standard_normal(c)
                             for lev, c in zip(levels, steps, strict=True)] + [[0.0]])
    losses[rng.random(losses.size) < 0.05] = np.nan
    losses[0], losses[-1] = 1.0 + abs(losses[0]), 0.05
    # a last stretch just above the final level (2.3 level tolerances: a plateau by the definition's 2)
    losses[-9:-1] = 0.05 + 2.3 * LEVEL_RTOL * (losses[0] - 0.05) + 1e-9 * rng.standard_normal(8)
    times = np.concatenate([[0.0], np.sort(10 ** rng.uniform(-3, 6, losses.size - 1))])  # (log-spaced)
    risk, _, _ = _problem()
    states = rng.standard_normal((losses.size, risk.arch.num_params))
    got = find_plateaus(risk, times, losses, np.ones(losses.size), states, float(losses[-1]), 1e-6,
                        scale=lambda w: 1e9, w_ref=1.0, deadline=-np.inf)
    assert all(p.note == PLATEAU_OUT_OF_TIME for p in got)
    want = _plateaus_by_definition(times, losses, float(losses[-1]))
    assert [(p.t_enter, p.t_leave) for p in got] == [(times[j], times[k]) for j, k in want]
    return len(want)


def test_find_plateaus_finds_the_stretches_of_its_definition():
    counts = [_synthetic_plateaus(seed) for seed in range(8)]
    # (not vacuous: most cases hold plateaus, some several)
    assert sum(c > 0 for c in counts) >= 5 and max(counts) >= 2, counts
