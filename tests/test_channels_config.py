"""Channels in configs, data sources, sweeps and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lcnflow import Architecture, Dataset, EmpiricalRisk
from lcnflow.experiments import ConfigError, config_from_dict, prepare
from lcnflow.model.conv import predict, random_init
from lcnflow.sweep.grid import expand, load_sweep

TINY = {"data.source": "planted", "data.num_samples": 30, "architecture.input_size": 12,
        "architecture.filter_sizes": [3, 2]}


def test_config_channels_build_the_architecture():
    cfg = config_from_dict(None, {**TINY, "architecture.channels": [2, 3, 1]})
    assert cfg.architecture.build() == Architecture(12, [3, 2], channels=[2, 3, 1])
    assert config_from_dict(None, TINY).architecture.build() == Architecture(12, [3, 2])


@pytest.mark.parametrize(("value", "pattern"), [([1, 0, 1], r"architecture\.channels: channel counts must be ≥ 1"),
                                                ([1, 2], r"architecture\.channels: has 2 entries")])
def test_config_bad_channels(value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict(None, {**TINY, "architecture.channels": value})


def test_planted_source_with_input_channels_is_the_planted_network_plus_noise():
    cfg = config_from_dict(None, {**TINY, "architecture.channels": [2, 3, 2], "data.noise_std": 0.0,
                                  "data.target": "lcn"})
    exp = prepare(cfg)
    X, Y = exp.data.dataset.inputs, exp.data.dataset.targets
    assert X.shape == (30, 2, 12) and Y.shape == (30, 2, 9)
    # noiseless planted targets are the outputs of a network with the planted final filter: the square risk's
    # unconstrained minimum is 0 (to rounding)
    risk = EmpiricalRisk(exp.architecture, "square", Dataset(X, Y))
    assert risk.minimum_value <= 1e-20 * float(np.sum(Y**2))


def test_one_channel_sources_refuse_multichannel_data_naming_channels():
    cfg = config_from_dict(None, {**TINY, "data.source": "mnist1d", "architecture.input_size": 40,
                                  "architecture.channels": [2, 2, 1]})
    with pytest.raises(ConfigError, match=r"data\.source: 'mnist1d' gives one-channel data.*architecture\.channels"):
        prepare(cfg)


def test_sweep_over_channels(tmp_path: Path):
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent("""\
        name = "width"
        [architecture]
        input_size = 12
        filter_sizes = [3, 2]
        [data]
        source = "planted"
        num_samples = 30
        [grid]
        "architecture.channels" = [[1, 1, 1], [1, 2, 1], [1, 4, 1]]
        init.seed = {range = [0, 2]}
    """), encoding="utf-8")
    plan = expand(load_sweep(path))
    assert len(plan.runs) == 6
    widths = sorted({tuple(r.values["architecture.channels"]) for r in plan.runs})
    assert widths == [(1, 1, 1), (1, 2, 1), (1, 4, 1)]
    assert plan.cell_keys == ["architecture.channels"]


def test_cli_run_with_channels(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent("""\
        name = "rgb-like"
        [architecture]
        input_size = 16
        filter_sizes = [3, 3]
        channels = [3, 4, 2]
        [data]
        source = "planted"
        num_samples = 40
    """), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "lcnflow", "run", str(path)],
                         capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "c = 3 → 4 → 2" in text and "outside the proved setting" in text and "certified" in text


def test_predict_layouts_with_channels():
    arch = Architecture(10, [3, 2], channels=[1, 3, 2])
    ws = random_init(arch, 1.0, seed=0)
    X = np.random.default_rng(0).standard_normal((4, 10))
    assert np.array_equal(predict(arch, ws, X), predict(arch, ws, X[:, None]))
    assert predict(arch, ws, X[0]).shape == (2, 7)  # one sample, d_0 (c_0 = 1)
    assert np.array_equal(predict(arch, ws, X[0]), predict(arch, ws, X[:1])[0])
