"""PyTorch interop: to_torch computes V (oracle: loop-built network matrix), from_torch reads it back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given

from conftest import (
    SETTINGS,
    arch_1d_specs,
    arch_2d_specs,
    exact_input_size,
    loop_network_matrix,
    random_filters,
    seeds,
)
from lcnflow import Architecture, from_torch, network_matrix, to_torch

# float64 conv vs dense matrix product: same sums in different order, error ≲ k_v·ε·Σ|terms|; 1e-12 is ample
TOL = 1e-12


def _check_module_matches_matrix(arch, ws, rng, m=4):
    d0 = arch.input_size if isinstance(arch.input_size, tuple) else (arch.input_size,)
    X = rng.standard_normal((m, *d0))
    model = to_torch(arch, ws)
    with torch.no_grad():
        out = model(torch.from_numpy(X).unsqueeze(1)).numpy()
    dN = arch.output_size if isinstance(arch.output_size, tuple) else (arch.output_size,)
    assert out.shape == (m, 1, *dN)
    V = loop_network_matrix(ws, arch.input_size, arch.strides)
    expected = X.reshape(m, -1) @ V.T
    scale = np.max(np.abs(X)) * np.max(np.abs(loop_network_matrix([np.abs(w) for w in ws], arch.input_size,
                                                                    arch.strides)).sum(axis=1))
    np.testing.assert_allclose(out.reshape(m, -1), expected, rtol=0, atol=TOL * max(scale, 1.0))
    np.testing.assert_allclose(out.reshape(m, -1), X.reshape(m, -1) @ network_matrix(arch, ws).T, rtol=0,
                               atol=TOL * max(scale, 1.0))


@SETTINGS
@given(arch_1d_specs(max_out=4), seeds)
def test_to_torch_1d_equals_network_matrix(spec, seed):
    d0, ks, ss = spec
    arch = Architecture(d0, ks, strides=ss)
    rng = np.random.default_rng(seed)
    _check_module_matches_matrix(arch, random_filters(rng, ks), rng)


@SETTINGS
@given(arch_2d_specs(), seeds)
def test_to_torch_2d_equals_network_matrix(spec, seed):
    d0, ks, ss = spec
    arch = Architecture(d0, ks, strides=ss)
    rng = np.random.default_rng(seed)
    _check_module_matches_matrix(arch, random_filters(rng, ks), rng)


def test_to_torch_module_structure():
    arch = Architecture(47, [3, 2, 4], strides=[2, 3, 1])
    ws = random_filters(np.random.default_rng(0), [3, 2, 4])
    model = to_torch(arch, ws)
    assert isinstance(model, torch.nn.Sequential) and len(model) == 3
    for layer, w, s in zip(model, ws, [2, 3, 1], strict=True):
        assert isinstance(layer, torch.nn.Conv1d)
        assert layer.bias is None and layer.stride == (s,) and layer.weight.dtype == torch.float64
        np.testing.assert_array_equal(layer.weight.detach().numpy()[0, 0], w)
    # the module owns copies: changing the filters afterwards does not change it
    ws[0][0] += 1.0
    assert model[0].weight.detach().numpy()[0, 0, 0] != ws[0][0]


@pytest.mark.parametrize(
    ("d0", "ks", "ss"),
    [
        (47, [3, 2, 4], [2, 3, 1]),
        ((32, 32), [(3, 3), (2, 2)], [(1, 1), (2, 2)]),
        (exact_input_size([(2, 3), (1, 2), (3, 1)], [(1, 2), (2, 1), (1, 1)], (2, 2)),
         [(2, 3), (1, 2), (3, 1)], [(1, 2), (2, 1), (1, 1)]),
    ],
)
def test_from_torch_round_trip(d0, ks, ss):
    arch = Architecture(d0, ks, strides=ss)
    ws = random_filters(np.random.default_rng(1), ks)
    arch2, ws2 = from_torch(to_torch(arch, ws), arch.input_size)
    assert arch2 == arch
    assert len(ws2) == len(ws)
    for a, b in zip(ws, ws2, strict=True):
        assert b.dtype == np.float64 and b.shape == a.shape
        np.testing.assert_array_equal(a, b)


def test_from_torch_single_layer_and_float32():
    layer = torch.nn.Conv1d(1, 1, 3, stride=2, bias=False)  # float32 by default
    arch, ws = from_torch(layer, 11)
    assert arch == Architecture(11, [3], strides=[2])
    # float32 → float64 is exact
    np.testing.assert_array_equal(ws[0], layer.weight.detach().double().numpy()[0, 0])
    assert ws[0].dtype == np.float64


def test_from_torch_accepts_valid_padding_string():
    # padding="valid" is PyTorch's name for no padding, the convention lcnflow uses
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3, bias=False, padding="valid", dtype=torch.float64))
    arch, _ = from_torch(model, 10)
    assert arch == Architecture(10, [3])


@pytest.mark.parametrize(
    ("module", "pattern"),
    [
        (torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3, bias=False), torch.nn.Conv1d(1, 1, 2, bias=True)),
         r"module\[1\] \(Conv1d\): has a bias"),
        # any channels are read (architecture.channels); consecutive layers must agree on them
        (torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3, bias=False), torch.nn.Conv1d(3, 1, 2, bias=False)),
         r"module\[1\] \(Conv1d\): channels: in_channels 3 but the previous layer has out_channels 2"),
        (torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3, bias=False, padding=1)),
         r"module\[0\].*padding \(1,\)"),
        (torch.nn.Conv2d(1, 1, 3, bias=False, padding=(0, 2)), r"padding \(0, 2\)"),
        (torch.nn.Conv1d(1, 1, 3, bias=False, padding="same"), r"padding"),
        (torch.nn.Conv1d(1, 1, 3, bias=False, dilation=2), r"dilation \(2,\)"),
        (torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3, bias=False), torch.nn.ReLU()),
         r"module\[1\]: expected Conv1d or Conv2d, got ReLU"),
        (torch.nn.Linear(4, 4, bias=False), r"module\[0\]: expected Conv1d or Conv2d, got Linear"),
    ],
)
def test_from_torch_rejects_unsupported_modules(module, pattern):
    with pytest.raises(ValueError, match=pattern):
        from_torch(module, 20)


def test_from_torch_rejects_mixed_1d_2d_layers():
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3, bias=False), torch.nn.Conv2d(1, 1, 2, bias=False))
    with pytest.raises(ValueError, match=r"do not mix 1D and 2D"):
        from_torch(model, 20)


def test_from_torch_input_size_too_small():
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 1, 5, bias=False))
    with pytest.raises(ValueError, match=r"layer 1 has filter size 5 larger than its input size 4"):
        from_torch(model, 4)
