"""A campaign of wrong and extreme values for every config key, through the command line: each case ends with exit
0, or exit 2 and exactly one ``error:`` line — never an internal error (exit 1), a traceback or several lines.

Oracle: the exit code and stderr of each invocation against the documented contract (docs/reliability.md).
"""

from __future__ import annotations

import itertools

import pytest
from typer.testing import CliRunner

from lcnflow.cli import app

runner = CliRunner()

BASE = ["--set", "data.source=planted", "--set", "data.num_samples=30", "--set", "architecture.input_size=14",
        "--set", "architecture.filter_sizes=[3,2]"]
KEYS = ["architecture.input_size", "architecture.filter_sizes", "architecture.strides", "loss.name", "loss.delta",
        "data.seed", "data.num_samples", "data.noise_std", "init.scale", "init.seed", "init.filters",
        "flow.gtol", "flow.certify_tol", "flow.polish_radius", "flow.classify", "flow.max_record",
        "flow.blowup_factor", "flow.max_time", "flow.method", "flow.integrator", "flow.t_max", "flow.rtol",
        "flow.atol", "flow.max_steps", "flow.verify", "name", "data.source"]
VALUES = ["nan", "inf", "-inf", "-1", "0", "1e308", "1e-320", "true", "'x'", "[]", "[1]", "[[1,2],[3,4]]", "{}",
          "1.5", '""', "9223372036854775808", "-0.0"]


def _contract_holds(res) -> bool:
    err = res.stderr
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if res.exit_code == 0:
        return "Traceback" not in err and "internal error" not in err
    return res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ")


@pytest.mark.parametrize("command", ["describe", "check-data"])
def test_every_key_with_every_wrong_value_is_exit_0_or_one_error_line(command):
    failures = []
    for key, value in itertools.product(KEYS, VALUES):
        res = runner.invoke(app, [command, *BASE, "--set", f"{key}={value}"])
        if not _contract_holds(res):
            failures.append((key, value, res.exit_code, res.stderr[:200]))
    assert not failures, failures[:10]


def test_every_public_function_with_every_wrong_argument_raises_type_or_value_error():
    """736 calls: each ends normally or in a TypeError/ValueError (which names the parameter), never another
    exception (an AttributeError from inside, a Numba typing error)."""
    import warnings

    import numpy as np

    import lcnflow as lf
    from lcnflow.analysis.optimum import best_on_function_space

    arch = lf.Architecture(10, [2, 2])
    rng = np.random.default_rng(0)
    risk = lf.EmpiricalRisk(arch, "square", lf.Dataset(rng.standard_normal((20, 10)), rng.standard_normal((20, 8))))
    w0 = lf.random_init(arch, 0.5, 1)
    bad = [None, "x", -1, 0, 1.5, float("nan"), float("inf"), True, [], [1], {}, np.array([1.0, 2.0]), object(),
           -0.0, 10**30, 1e-320]

    def flow_with(option):
        return lambda x: lf.gradient_flow(risk, w0, **{option: x})

    def classify_with(option):
        return lambda x: lf.classify_critical_point(risk, w0, **{option: x})

    calls = {
        "Architecture(x, [2])": lambda x: lf.Architecture(x, [2]),
        "Architecture(10, x)": lambda x: lf.Architecture(10, x),
        "Architecture(10, [2], x)": lambda x: lf.Architecture(10, [2], x),
        "Dataset(x, y)": lambda x: lf.Dataset(x, np.zeros((3, 2))),
        "Dataset(X, x)": lambda x: lf.Dataset(np.zeros((3, 4)), x),
        "EmpiricalRisk(x)": lambda x: lf.EmpiricalRisk(x, "square", risk.data),
        "EmpiricalRisk(loss=x)": lambda x: lf.EmpiricalRisk(arch, x, risk.data),
        "get_loss(x)": lambda x: lf.get_loss(x),
        "get_loss(pseudo_huber, delta=x)": lambda x: lf.get_loss("pseudo_huber", delta=x),
        "random_init(arch, x)": lambda x: lf.random_init(arch, x),
        "random_init(arch, 1, x)": lambda x: lf.random_init(arch, 1.0, x),
        "random_init(x)": lambda x: lf.random_init(x),
        "as_filters(arch, x)": lambda x: lf.as_filters(arch, x),
        "predict(arch, w, x)": lambda x: lf.predict(arch, w0, x),
        "final_filter(arch, x)": lambda x: lf.final_filter(arch, x),
        "gradient_flow(risk, x)": lambda x: lf.gradient_flow(risk, x),
        "gradient_flow(x, w0)": lambda x: lf.gradient_flow(x, w0),
        **{f"gradient_flow({o}=x)": flow_with(o)
           for o in ("gtol", "max_time", "max_record", "classify", "t_max", "rtol", "atol", "max_steps", "save_at",
                     "callback", "integrator", "certify_tol", "polish_radius", "blowup_factor", "verify")},
        **{f"classify({o}=x)": classify_with(o)
           for o in ("function_space_tol", "eig_rtol", "rank_rtol", "spurious_rtol", "max_time", "critical_rtol")},
        "classify(x, w0)": lambda x: lf.classify_critical_point(x, w0),
        "classify(risk, x)": lambda x: lf.classify_critical_point(risk, x),
        "best(max_time=x)": lambda x: best_on_function_space(risk, max_time=x),
        "best(grid=x)": lambda x: best_on_function_space(risk, grid=x),
        "best(num_starts=x)": lambda x: best_on_function_space(risk, num_starts=x),
        "check_data_condition(x, data)": lambda x: lf.check_data_condition(x, risk.data),
        "check_data_condition(arch, x)": lambda x: lf.check_data_condition(arch, x),
    }
    failures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for (name, call), x in itertools.product(calls.items(), bad):
            try:
                call(x)
            except (TypeError, ValueError):
                pass
            except Exception as exc:
                failures.append((name, repr(x)[:30], type(exc).__name__, str(exc)[:100]))
    assert not failures, failures[:10]
