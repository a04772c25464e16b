"""Experiment configs: defaults, TOML round trips, overrides, error messages, and running a config.

Oracles: ``tomllib`` (the TOML written back must parse to the same config and the same floats), hand-written
expectations for every documented default and message, and for the function-space optimum a least-squares solve
on the conftest patch matrix (square loss) or scipy's minimizer on the closed-form loss (pseudo-Huber).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib

import numpy as np
import pytest
import scipy.optimize
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import lcnflow as lf
from conftest import FEW, loop_patch_matrix, numpy_loss
from lcnflow.experiments import (
    BUILTIN_DEFAULT,
    ConfigError,
    ExperimentConfig,
    RunSpec,
    apply_overrides,
    build_problem,
    config_from_dict,
    default_config,
    execute,
    function_space_optimum,
    load_config,
    parse_overrides,
    prepare,
    run_experiment,
)
from lcnflow.experiments.config import _toml_value

TINY = {"data.source": "planted", "data.num_samples": 20, "architecture.input_size": 12,
        "architecture.filter_sizes": [3, 2]}


# ---------------------------------------------------------------------------------------------------- defaults
def test_builtin_default_is_complete_and_documented():
    cfg = default_config()
    assert cfg == load_config() == config_from_dict()
    assert cfg.name == BUILTIN_DEFAULT["name"] and cfg.description
    assert cfg.architecture.filter_sizes == [3, 3, 3] and cfg.architecture.strides == [1, 1, 1]
    assert cfg.architecture.input_size == 40
    assert cfg.loss.name == "square" and cfg.loss.params == {}
    assert cfg.data.source == "mnist1d" and cfg.data.num_samples == 500 and cfg.data.blur_size == 5
    assert cfg.init.filters is None and cfg.init.scale == 0.1
    assert cfg.flow.method == "gradient_flow" and cfg.flow.integrator == "auto"
    arch = cfg.architecture.build()
    assert arch.is_filling and arch.final_filter_size == 7


def test_missing_sections_and_keys_take_defaults():
    cfg = config_from_dict({"data": {"num_samples": 30}, "loss": {}, "flow": {"rtol": 1e-7}})
    assert cfg.data.source == "mnist1d" and cfg.data.num_samples == 30
    assert cfg.loss.name == "square"
    assert cfg.flow.method == "gradient_flow" and cfg.flow.rtol == 1e-7
    assert cfg.flow.atol == lf.dynamics.options.FlowOptions().atol
    assert cfg.name == "experiment"


def test_loss_parameters_are_filled_in():
    cfg = config_from_dict({"loss": {"name": "generalized_huber", "alpha": 2}})
    assert cfg.loss.params == {"alpha": 2.0, "beta": 0.0}
    assert cfg.loss.build() == lf.get_loss("generalized_huber", alpha=2.0, beta=0.0)


def test_strides_default_to_ones_and_2d_sizes_normalize():
    cfg = config_from_dict({"architecture": {"input_size": [10, 12], "filter_sizes": [[3, 3], [2, 3]]},
                            "data": {"source": "planted"}})
    assert cfg.architecture.strides == [[1, 1], [1, 1]]
    assert cfg.architecture.build() == lf.Architecture((10, 12), [(3, 3), (2, 3)])


# ---------------------------------------------------------------------------------------------------- TOML
ROUND_TRIP = [
    {},
    {"name": "x \"quoted\" \\ name", "description": "tab\tand newline\n"},
    {"data": {"source": "planted", "inputs": "student_t", "input_df": 2.5, "target": "filter", "noise": "outliers",
              "noise_std": 1e-3, "outlier_fraction": 0.2, "outlier_scale": 1e7, "seed": 7},
     "architecture": {"input_size": 30, "filter_sizes": [3, 2, 4], "strides": [2, 1, 1]}},
    {"data": {"source": "file", "path": "/tmp/a b.npz", "inputs_key": "X"}},
    {"data": {"source": "image", "image": "moon", "num_patches": 9},
     "architecture": {"input_size": [8, 9], "filter_sizes": [[3, 1], [1, 3]]}},
    {"flow": {"method": "gradient_descent", "step_size": 0.125, "adaptive": False, "gtol": 1e-11, "max_time": 2.5}},
    {"flow": {"integrator": "Radau", "t_max": 1e300, "certify_tol": 1e-12}, "loss": {"name": "lp", "p": 6},
     "init": {"filters": [[0.1, -0.2, 0.3], [1, 2, 3], [-1e-300, 5e-324, 1.7976931348623157e308]]}},
]


@pytest.mark.parametrize("base", ROUND_TRIP)
def test_to_toml_round_trips_exactly(base):
    cfg = config_from_dict(base)
    text = cfg.to_toml()
    parsed = tomllib.loads(text)
    assert config_from_dict(parsed) == cfg
    assert parsed == cfg.to_dict()
    assert "# " in text  # documented keys


@FEW
@given(st.floats(allow_nan=False, allow_infinity=True))
def test_float_writer_is_exact(x):
    assert tomllib.loads(f"v = {_toml_value(x)}")["v"] == x


@FEW
@given(st.text())
def test_string_writer_is_exact(s):
    assert tomllib.loads(f"v = {_toml_value(s)}")["v"] == s


def test_load_config_reads_files_and_resolves_relative_data_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "exp.toml"
    path.write_text('[data]\nsource = "file"\npath = "d.npz"\n[architecture]\ninput_size = 10\n', encoding="utf-8")
    cfg = load_config(path, ["architecture.filter_sizes=[3]"])
    assert cfg.name == "exp"
    assert cfg.data.path == str((tmp_path / "sub" / "d.npz").resolve())
    assert cfg.architecture.filter_sizes == [3]


# ---------------------------------------------------------------------------------------------------- overrides
def test_parse_overrides_reads_toml_values_and_bare_strings():
    got = parse_overrides(["a.b=3", "a.c=1e-3", "d=[3, [2, 2]]", "e=planted", 'f="x=y"', "g=true", "h = 2.5 "])
    assert got == {"a.b": 3, "a.c": 1e-3, "d": [3, [2, 2]], "e": "planted", "f": "x=y", "g": True, "h": 2.5}
    for bad in ("novalue", "=3", "a..b=1", ".a=1"):
        with pytest.raises(ConfigError, match="KEY=VALUE"):
            parse_overrides([bad])


def test_apply_overrides_sets_nested_keys_without_touching_the_base():
    base = {"data": {"source": "mnist1d", "num_samples": 10, "blur_size": 3, "seed": 4}}
    out = apply_overrides(base, {"data.source": "planted", "flow.gtol": 1e-9})
    assert base["data"]["blur_size"] == 3  # unchanged
    # switching the variant keeps the keys the new source has, drops the others
    assert out["data"] == {"source": "planted", "num_samples": 10, "seed": 4}
    assert out["flow"] == {"gtol": 1e-9}
    with pytest.raises(ConfigError, match=r"data\.seed\.x: cannot set it, data\.seed is 4"):
        apply_overrides(base, {"data.seed.x": 1})


def test_switching_loss_drops_the_old_parameters():
    cfg = config_from_dict({"loss": {"name": "pseudo_huber", "delta": 0.5}}, {"loss.name": "log_cosh"})
    assert cfg.loss.name == "log_cosh" and cfg.loss.params == {}


# ---------------------------------------------------------------------------------------------------- errors
BAD = [
    ({"loss.name": "pseudo_huber", "loss.delta": -1}, "loss.delta: must be > 0, got -1"),
    ({"loss.delta": 1}, "loss.delta: unknown parameter for loss 'square'"),
    ({"loss.name": "hinge"}, "loss.name: unknown loss 'hinge'; valid names: square, lp"),
    ({"architecture.filter_sizes": [50, 3]}, "architecture: layer 1 has filter size 50 larger than its input size 40"),
    ({"architecture.filter_sizes": "abc"}, "architecture.filter_sizes: must be a non-empty list"),
    ({"architecture.strides": [1, 2]}, "architecture.strides: has 2 entries but there are 3 layers"),
    ({"architecture.input_size": 0}, "architecture.input_size: sizes and strides must be positive"),
    ({"architecture.depth": 3}, "architecture.depth: unknown key in [architecture]"),
    ({"foo": 1}, "foo: unknown key at the top level (got 1); valid keys: architecture, data"),
    ({"data.nums": 3}, "data.nums: unknown key in [data] with source = 'mnist1d'"),
    ({"data.source": "magic"}, "data.source: unknown source 'magic'; valid: 'planted', 'file', 'mnist1d', 'image'"),
    ({"data.source": "planted", "data.num_samples": 0}, "data.num_samples: must be ≥ 1, got 0"),
    ({"data.source": "planted", "data.noise": "cauchy"}, "data.noise: must be one of 'gaussian', 'laplace'"),
    ({"data.source": "planted", "data.outlier_fraction": 1.5}, "data.outlier_fraction: must be ≤ 1, got 1.5"),
    ({"data.blur_size": 4}, "data.blur_size: must be an odd integer ≥ 1 (the blur is centred), got 4"),
    ({"data.num_samples": 2.5}, "data.num_samples: must be an integer, got 2.5"),
    ({"data.seed": True}, "data.seed: must be an integer, got True"),
    ({"data.source": "image"}, "data.source: 'image' gives 2D data but the architecture is 1D"),
    ({"init.scale": "abc"}, "init.scale: must be a number, got 'abc'"),
    ({"init.scale": -1}, "init.scale: must be ≥ 0, got -1"),
    ({"init.filters": [[1, 2], [1, 2, 3], [1, 2, 3]]},
     "init.filters[0] (layer 1): expected shape (3,), got shape (2,)"),
    ({"init.filters": [[1, 2, 3]]}, "init.filters: expected 3 filters (one per layer), got 1"),
    ({"flow.method": "gd"}, "flow.method: unknown method 'gd'; valid: 'gradient_flow', 'gradient_descent'"),
    ({"flow.rtol": -1}, "flow.rtol: must be a finite number > 0, got -1.0"),
    ({"flow.t_max": math.inf}, "flow.t_max: must be a finite number, got inf"),
    ({"flow.integrator": "euler"}, "flow.integrator: must be one of 'auto'"),
    ({"flow.step_size": 0.1}, "flow.step_size: unknown key in [flow] with method = 'gradient_flow'"),
    ({"flow.method": "gradient_descent", "flow.step_size": 0}, "flow.step_size: must be a finite number > 0, got 0.0"),
    ({"flow.classify": "yes"}, "flow.classify: must be true or false, got 'yes'"),
    ({"name": 3}, "name: must be a string, got 3"),
    ({"data": 3}, "data: must be a table, got 3"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(BAD)])
def test_bad_input_names_the_field_and_the_value(overrides, message):
    with pytest.raises(ConfigError) as info:
        config_from_dict(None, overrides)
    text = str(info.value)
    assert message in text, text
    assert "Traceback" not in text and "pydantic" not in text and "Value error" not in text


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"config: file not found: .*nope\.toml"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is not a file"):
        load_config(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[architecture\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml is not valid TOML: .*line 1"):
        load_config(bad)


def test_model_validate_raises_pydantic_errors_and_models_are_frozen():
    with pytest.raises(ValidationError):
        ExperimentConfig.model_validate({"loss": {"name": "nope"}})
    cfg = default_config()
    with pytest.raises(ValidationError):
        cfg.data.num_samples = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------- running
def test_build_problem_and_run_spec_match_the_config():
    cfg = config_from_dict({}, {**TINY, "init.seed": 5, "init.scale": 0.3, "loss.name": "log_cosh"})
    problem = build_problem(cfg)
    risk = problem.risk
    assert risk.arch == lf.Architecture(12, [3, 2]) == problem.architecture
    assert risk.loss == lf.get_loss("log_cosh") == problem.loss
    assert risk.data.inputs.shape == (20, 12) and risk.data.targets.shape == (20, 9)
    init = RunSpec.from_config(cfg, problem).init
    expected = np.random.default_rng(5)
    for w, k in zip(init, [3, 2], strict=True):
        np.testing.assert_array_equal(w, 0.3 * expected.standard_normal((k,)))
    explicit = config_from_dict({}, {**TINY, "loss.name": "log_cosh", "init.filters": [[1, 0, 0], [1, 0]]})
    np.testing.assert_array_equal(RunSpec.from_config(explicit, problem).init[0], [1.0, 0.0, 0.0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.risk = None


def test_runs_of_one_problem_equal_runs_built_from_their_configs():
    base = config_from_dict({}, TINY)
    problem = build_problem(base)
    for overrides in ({"init.seed": 3}, {"flow.method": "gradient_descent", "flow.step_size": 0.02,
                                         "flow.max_steps": 50}):
        cfg = config_from_dict({}, {**TINY, **overrides})
        shared = execute(problem, cfg)  # a config is turned into the problem's RunSpec
        alone = execute(cfg)
        assert shared.experiment.risk is problem.risk and alone.experiment.risk is not problem.risk
        assert shared.result.method == alone.result.method == cfg.flow.method
        np.testing.assert_array_equal(shared.result.trajectory, alone.result.trajectory)
        assert shared.result.loss == alone.result.loss and shared.verdict == alone.verdict
        assert shared.to_dict()["config"] == alone.to_dict()["config"]
    # a run of another problem, or a problem without its run, is refused with a reason
    other = config_from_dict({}, {**TINY, "loss.name": "log_cosh"})
    with pytest.raises(ConfigError, match="architecture, loss or data differ from the problem's"):
        execute(problem, other)
    with pytest.raises(ValueError, match="spec: a problem needs the run"):
        execute(problem)
    with pytest.raises(ValueError, match="spec: only with a Problem"):
        execute(base, RunSpec.from_config(base, problem))


def test_run_experiment_is_deterministic_and_uses_the_method():
    cfg = config_from_dict({}, TINY)
    a, b = run_experiment(cfg), run_experiment(cfg)
    assert a.converged and a.certified
    np.testing.assert_array_equal(a.final_filter, b.final_filter)
    gd = run_experiment(config_from_dict({}, {**TINY, "flow.method": "gradient_descent", "flow.step_size": 0.02,
                                               "flow.adaptive": False, "flow.max_steps": 5}))
    assert gd.num_steps == 5 and not gd.converged and "gradient descent" in gd.integrator
    assert gd.method == "gradient_descent" and a.method == "gradient_flow"


def test_size_rule_warning_becomes_a_note():
    cfg = config_from_dict({}, {**TINY, "architecture.strides": [2, 1], "architecture.input_size": 12})
    with pytest.warns(lf.SizeRuleWarning):
        exp = prepare(cfg)
    assert any("dropped" in n for n in exp.notes)


def test_function_space_optimum_square_loss_is_least_squares():
    cfg = config_from_dict({}, {**TINY, "architecture.strides": [2, 1], "architecture.input_size": 13})
    exp = prepare(cfg)
    arch, data = exp.architecture, exp.data.dataset
    H = loop_patch_matrix(data.inputs, arch.final_filter_size, arch.final_stride, arch.output_size)
    v, *_ = np.linalg.lstsq(H, data.targets.ravel(), rcond=None)
    opt = function_space_optimum(exp.risk)
    np.testing.assert_allclose(opt.filter, v, rtol=1e-9, atol=1e-12)
    assert opt.value == pytest.approx(0.5 * np.sum((H @ v - data.targets.ravel()) ** 2) / data.num_samples,
                                      rel=1e-12)
    assert opt.exact is False  # strides [2, 1]: dim M = 4 < k_v = 5, ℒ* is only a lower bound


def test_function_space_optimum_robust_loss_matches_scipy():
    cfg = config_from_dict({}, {**TINY, "loss.name": "pseudo_huber", "loss.delta": 0.3, "data.noise": "outliers"})
    exp = prepare(cfg)
    arch, data = exp.architecture, exp.data.dataset
    H = loop_patch_matrix(data.inputs, arch.final_filter_size, arch.final_stride, arch.output_size)
    ell = numpy_loss("pseudo_huber", {"delta": 0.3})
    m, y = data.num_samples, data.targets.ravel()
    res = scipy.optimize.minimize(lambda v: np.sum(ell(H @ v - y)) / m, np.zeros(H.shape[1]), method="BFGS",
                                  options={"gtol": 1e-12})
    opt = function_space_optimum(exp.risk)
    assert opt.value == pytest.approx(res.fun, rel=1e-9, abs=1e-12)
    assert opt.value <= res.fun + 1e-12
    assert opt.gradient_norm < 1e-10
    np.testing.assert_allclose(opt.filter, res.x, rtol=1e-4, atol=1e-5)


def test_readme_documents_every_config_key():
    from pathlib import Path

    from lcnflow.experiments.config import DATA_SOURCES, FLOW_METHODS, ArchitectureConfig, InitConfig
    from lcnflow.model.losses import LOSS_PARAMETERS

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    keys = [f"architecture.{k}" for k in ArchitectureConfig.model_fields]
    keys += [f"init.{k}" for k in InitConfig.model_fields]
    keys += [f"flow.{k}" for model in FLOW_METHODS.values() for k in model.model_fields]
    keys += [f"loss.{k}" for params in LOSS_PARAMETERS.values() for k in params] + ["loss.name"]
    missing = [k for k in keys if f"`{k}`" not in readme and f"`{k}," not in readme and f" `{k}" not in readme]
    assert not missing, missing
    data_keys = {k for model in DATA_SOURCES.values() for k in model.model_fields}
    assert not [k for k in data_keys if f"`{k}`" not in readme and f"`data.{k}`" not in readme]


@pytest.mark.parametrize(("overrides", "name"), [
    ({"loss.name": "log_cosh"}, "mnist1d-deblur (modified)"),
    (["init.seed=3"], "mnist1d-deblur (modified)"),
    ({"data.source": "mnist1d", "data.num_samples": 100}, "mnist1d-deblur (modified)"),
    ({"data.source": "planted"}, "default-planted (modified)"),
    (["data.source=population"], "default-population (modified)"),
])
def test_modified_default_is_named_after_its_data(overrides, name):
    """The built-in default's name says MNIST-1D only while the data are MNIST-1D."""
    cfg = load_config(None, overrides)
    assert cfg.name == name
    assert ("mnist1d" in cfg.name) == (cfg.data.source == "mnist1d")
