"""Sizes a machine cannot hold, and API arguments the config would refuse, as a user meets them.

Sizes: a signal of 10¹² samples, 10¹¹ samples, a grid of 10⁹ runs — each refused before anything is allocated, with
the estimate.  API: the library refuses with a ``ValueError`` naming the argument what the config refuses.
"""

from __future__ import annotations

import math
import textwrap
import time
import tracemalloc

import numpy as np
import pytest
from typer.testing import CliRunner

import lcnflow as lf
from lcnflow.cli import app
from lcnflow.experiments import config_from_dict, prepare
from lcnflow.experiments.sources import MNIST1D_WORKING_COPIES, data_memory_estimate, make_data
from lcnflow.sweep.grid import MAX_RUNS, SweepError, sweep_from_dict

runner = CliRunner()


def one_error_line(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


# ---------------------------------------------------------------------------------------------------- item 9
@pytest.mark.parametrize("args, words", [
    (["--set", "data.source=planted", "--set", "architecture.input_size=1000000000000"], "PiB"),
    (["--set", "data.source=planted", "--set", "data.num_samples=100000000000"], "TiB"),
    (["--set", "data.num_samples=100000000000"], "TiB"),  # mnist1d
    (["--set", "architecture.input_size=9223372036854775807"], "PiB"),
])
def test_data_too_large_for_memory_is_refused_before_allocating(args, words):
    for command in ("check-data", "run"):
        start = time.perf_counter()
        line = one_error_line(runner.invoke(app, [command, *args]))
        assert time.perf_counter() - start < 10  # refused up front, not after trying
        assert line.startswith("error: data.num_samples: ") and "would need about" in line and words in line
        assert "available" in line


@pytest.mark.parametrize("section", [
    {"source": "planted", "num_samples": 3000},
    {"source": "planted", "num_samples": 2000, "noise": "outliers"},
    {"source": "mnist1d", "num_samples": 400},
])
def test_memory_estimate_bounds_what_building_the_data_allocates(section):
    """The estimate is an upper bound of the peak memory tracemalloc measures while the data are built."""
    cfg = config_from_dict({"architecture": {"input_size": 120, "filter_sizes": [5, 5]}, "data": section})
    arch = cfg.architecture.build()
    need = data_memory_estimate(cfg.data, arch)
    small = config_from_dict({"architecture": {"input_size": 20, "filter_sizes": [2]},
                              "data": {**section, "num_samples": 10}})
    make_data(small.data, small.architecture.build())  # first use: imports and caches are not the data's memory
    tracemalloc.start()
    try:
        bundle = make_data(cfg.data, arch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = bundle.dataset.inputs.nbytes + bundle.dataset.targets.nbytes
    assert held <= peak <= need
    assert need <= 4 * MNIST1D_WORKING_COPIES * held  # and not absurdly pessimistic


def test_grid_too_large_is_refused_with_its_estimate_even_on_dry_run(tmp_path):
    path = tmp_path / "huge.toml"
    path.write_text(textwrap.dedent("""\
        [data]
        source = "planted"
        [grid]
        init.seed = {range = [0, 1000000000]}
    """))
    start = time.perf_counter()
    res = runner.invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"])
    line = one_error_line(res)
    assert time.perf_counter() - start < 10
    assert line.startswith("error: grid.init.seed.range: ") and "1,000,000,000 runs" in line and "GiB" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("grid, where", [
    ({"init.scale": {"logspace": [-3, 0, 10**9]}}, "grid.init.scale.logspace"),
    ({"init.seed": {"range": [0, 2000]}, "data.seed": {"range": [0, 1000]}}, "grid"),
    ({"init.seed": {"range": [0, 10**9, 1]}}, "grid.init.seed.range"),
])
def test_grid_limits_apply_to_every_form_and_to_the_product(grid, where):
    with pytest.raises(SweepError, match=rf"^{where.replace('.', '[.]')}: .*at most {MAX_RUNS:,}"):
        sweep_from_dict({"data": {"source": "planted"}, "grid": grid})
    # a grid just at the limit is accepted (not expanded here: expansion validates every cell)
    side = math.isqrt(MAX_RUNS)
    spec = sweep_from_dict({"data": {"source": "planted"},
                            "grid": {"init.seed": {"range": [0, side]}, "data.seed": {"range": [0, side]}}})
    assert spec.num_runs == side * side <= MAX_RUNS


# ---------------------------------------------------------------------------------------------------- item 11
@pytest.mark.parametrize("input_size, filters, words", [
    (16, [math.nan], "must be an integer, got nan"),
    (16, [math.inf], "must be an integer, got inf"),
    (16, [2.5], "must be an integer, got 2.5"),
    (16, [True], "must be an integer or a tuple of integers, got True"),
    (16, ["3"], "must be an integer or a tuple of integers"),
    (2**63, [3], "must be at most 2\\*\\*63 − 1"),
    (16, [[2, math.nan]], "must be an integer"),
])
def test_architecture_refuses_what_the_config_refuses(input_size, filters, words):
    with pytest.raises(ValueError, match=r"architecture\.(input_size|filter_sizes\[0\] \(layer 1\)): " + words):
        lf.Architecture(input_size, filters)


def test_architecture_accepts_every_int64_size_and_integral_floats():
    arch = lf.Architecture(2**63 - 1, [3, 2])
    assert arch.input_size == 2**63 - 1 and arch.layer_sizes[-1] == 2**63 - 1 - 3
    assert lf.Architecture(np.int64(16), [np.int32(3), 3.0]).filter_sizes == (3, 3)
    assert lf.Architecture([8, 8], [[2, 2.0]]).filter_sizes == ((2, 2),)
    res = runner.invoke(app, ["describe", "--json", "--set", "architecture.input_size=9223372036854775807"])
    assert res.exit_code == 0, res.stderr


@pytest.mark.parametrize("args, field", [
    ((None, "square", None), "arch"),
    (("arch", None, "data"), "loss"),
    (("arch", "square", None), "data"),
    (("arch", "sqaure", "data"), "loss.name"),
])
def test_empirical_risk_names_the_wrong_argument(args, field):
    arch = lf.Architecture(12, [2, 2])
    data = lf.Dataset(np.ones((3, 12)), np.ones((3, 10)))
    real = [arch if a == "arch" else data if a == "data" else a for a in args]
    with pytest.raises(ValueError, match=rf"^{field.replace('.', '[.]')}: "):
        lf.EmpiricalRisk(*real)


def test_api_and_config_agree_on_the_default_experiment():
    """The same problem through the config and through the API: same risk at the same point."""
    exp = prepare(config_from_dict({"data": {"source": "planted", "num_samples": 30},
                                    "architecture": {"input_size": 12, "filter_sizes": [2, 2]}}))
    risk = lf.EmpiricalRisk(lf.Architecture(12, [2, 2]), "square", exp.data.dataset)
    w = [np.array([0.3, -0.2]), np.array([1.1, 0.4])]
    assert risk.value(w) == pytest.approx(exp.risk.value(w), rel=1e-14)
