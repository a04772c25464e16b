"""theorem_hypotheses and the coverage report of flow results.

Oracles: the rank of the loop-built patch matrix (``conftest.loop_patch_matrix``) decides the data condition
(``rank H = k_v``); the loss properties are the mathematical facts (|r|³ is not analytic at 0; r⁴/4 is) or, for
user losses, exactly what the user declared.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import lcnflow
from conftest import loop_patch_matrix
from flow_helpers import Problem, make_problem
from lcnflow import Architecture, Dataset, EmpiricalRisk, Loss, check_data_condition, get_loss, theorem_hypotheses

NOT_COVERED = "not covered by the convergence theorem"


def _rank_H(prob) -> int:
    kv, out = prob.arch.final_filter_size, prob.Y.shape[1]
    return int(np.linalg.matrix_rank(loop_patch_matrix(prob.X, kv, 1, out)))


def _constant_inputs():
    """Each input signal is constant (a different constant per sample): every patch is c·(1, …, 1), rank H = 1."""
    prob = make_problem([3, 3], [1, 1], 3, m=4, seed=0)
    X = np.repeat(np.array([[0.5], [-1.2], [2.0], [0.7]]), prob.X.shape[1], axis=1)
    return Problem(prob.filter_sizes, prob.strides, X, prob.Y, "square", {}, prob.w0, input_size=prob.input_size)


def _too_few_samples():
    """k_v = 5 coefficients but m·d_N = 2 equations: rank H ≤ 2."""
    return make_problem([3, 3], [1, 1], 1, m=2, seed=1)


@pytest.mark.parametrize("make", [_constant_inputs, _too_few_samples], ids=["constant-inputs", "too-few-samples"])
@pytest.mark.parametrize("runner", ["flow", "descent"])
def test_run_with_failing_data_condition_is_reported_not_covered(make, runner):
    prob = make()
    kv = prob.arch.final_filter_size
    assert _rank_H(prob) < kv  # the data condition fails (own rank of H)
    if runner == "flow":
        res = lcnflow.gradient_flow(prob.risk, prob.w0, t_max=1.0)
    else:
        res = lcnflow.gradient_descent(prob.risk, prob.w0, 0.01, max_steps=20)
    hyp = res.hypotheses
    assert hyp is not None and hyp.covered is False
    assert hyp.data_condition.satisfied is False
    assert hyp.data_condition.rank == _rank_H(prob)
    assert hyp.data_condition.final_filter_size == kv
    assert hyp.analytic_loss is True and hyp.coercive_loss is True  # the square loss is not the problem
    assert len(hyp.failures) == 1 and "data condition" in hyp.failures[0]
    assert NOT_COVERED in res.message
    assert "not covered" in res.summary()
    json.dumps(res.to_dict())


def test_run_with_good_data_and_analytic_loss_is_covered():
    prob = make_problem([3, 3], [1, 1], 3, m=4, seed=0)
    assert _rank_H(prob) == prob.arch.final_filter_size
    res = lcnflow.gradient_flow(prob.risk, prob.w0, t_max=1.0)
    assert res.hypotheses.covered is True and res.hypotheses.failures == []
    assert NOT_COVERED not in res.message


@pytest.mark.parametrize(
    ("name", "params", "analytic"),
    [
        ("lp", {"p": 3}, False),  # |r|³/3 is C² but not analytic at 0
        ("lp", {"p": 2.5}, False),
        ("lp", {"p": 4}, True),  # r⁴/4 is a polynomial
        ("square", {}, True),
        ("pseudo_huber", {"delta": 0.7}, True),
        ("generalized_huber", {"alpha": 1.5, "beta": 0.5}, True),
        ("log_cosh", {}, True),
    ],
)
def test_analyticity_of_builtin_losses_decides_coverage(name, params, analytic):
    prob = make_problem([3, 3], [1, 1], 3, m=4, seed=0)
    risk = EmpiricalRisk(prob.arch, get_loss(name, **params), Dataset(prob.X, prob.Y))
    hyp = theorem_hypotheses(risk)
    assert hyp.analytic_loss is analytic
    assert hyp.coercive_loss is True  # all built-ins grow at least linearly
    assert hyp.covered is analytic  # the data condition holds for this data (checked above)
    if not analytic:
        assert len(hyp.failures) == 1 and "analytic" in hyp.failures[0] and "not" in hyp.failures[0]
    json.dumps(hyp.to_dict())


def _user_loss(**declared):
    return Loss.from_callables(lambda r: np.log(np.cosh(r)), np.tanh, lambda r: 1 / np.cosh(r) ** 2, **declared)


def test_user_loss_with_unknown_properties_is_flagged():
    prob = make_problem([3, 3], [1, 1], 3, m=4, seed=0)
    hyp = theorem_hypotheses(EmpiricalRisk(prob.arch, _user_loss(), Dataset(prob.X, prob.Y)))
    assert hyp.analytic_loss is None and hyp.coercive_loss is None
    assert hyp.covered is False
    assert len(hyp.failures) == 2
    assert any("analytic" in f and "not declared" in f for f in hyp.failures)
    assert any("coercive" in f and "not declared" in f for f in hyp.failures)
    assert "unknown" in str(hyp)


@pytest.mark.parametrize(
    ("declared", "failing"),
    [
        ({"analytic": True, "coercive": True}, []),
        ({"analytic": True, "coercive": False}, ["coercive"]),
        ({"analytic": False, "coercive": True}, ["analytic"]),
    ],
)
def test_user_loss_declarations_are_honoured(declared, failing):
    prob = make_problem([3, 3], [1, 1], 3, m=4, seed=0)
    hyp = theorem_hypotheses(EmpiricalRisk(prob.arch, _user_loss(**declared), Dataset(prob.X, prob.Y)))
    assert hyp.covered is (not failing)
    assert len(hyp.failures) == len(failing)
    for word, text in zip(failing, hyp.failures, strict=True):
        assert word in text and "not declared" not in text


def test_precomputed_data_condition_is_used():
    prob = make_problem([3, 3], [1, 1], 3, m=4, seed=0)
    bad = _constant_inputs()
    cond_bad = check_data_condition(bad.arch, Dataset(bad.X, bad.Y))
    hyp = theorem_hypotheses(prob.risk, data_condition=cond_bad)
    assert hyp.covered is False and hyp.data_condition is cond_bad
    assert theorem_hypotheses(prob.risk).covered is True


def test_constant_inputs_fail_even_with_many_samples():
    """More equations than unknowns is not enough: constant signals span one direction of patch space."""
    arch = Architecture(7, [3, 3])
    X = np.repeat(np.linspace(-1, 1, 12)[:, None], 7, axis=1)
    risk = EmpiricalRisk(arch, "square", Dataset(X, np.zeros((12, 3))))
    assert np.linalg.matrix_rank(loop_patch_matrix(X, 5, 1, 3)) == 1
    hyp = theorem_hypotheses(risk)
    assert not hyp.covered and hyp.data_condition.rank == 1
