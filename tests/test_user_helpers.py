"""``random_init`` and ``predict``: what users used to write by hand.

Oracles: the network applied layer by layer with ``numpy.correlate`` (1D) and ``scipy.signal.correlate2d`` (2D),
then subsampled by the stride; PyTorch's ``conv1d``/``conv2d`` layer by layer; NumPy's generator drawn in one piece.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

import lcnflow as lf
from conftest import arch_1d_specs, arch_2d_specs
from lcnflow.experiments import config_from_dict, prepare


def layer_by_layer(filters, strides, x):
    """Each layer in turn: valid cross-correlation, then every s-th output (per axis)."""
    out = []
    for sample in x:
        y = sample
        for w, s in zip(filters, strides, strict=True):
            if y.ndim == 1:
                y = np.correlate(y, w, mode="valid")[::s]
            else:
                sh, sw = (s, s) if np.isscalar(s) else s
                y = scipy.signal.correlate2d(y, w, mode="valid")[::sh, ::sw]
        out.append(y)
    return np.array(out)


def torch_layer_by_layer(filters, strides, x):
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    y = torch.from_numpy(x[:, None])
    for w, s in zip(filters, strides, strict=True):
        conv = f.conv1d if w.ndim == 1 else f.conv2d
        y = conv(y, torch.from_numpy(w.reshape(1, 1, *w.shape)), stride=s)
    return y[:, 0].numpy()


@given(spec=arch_1d_specs(), seed=st.integers(0, 2**16))
def test_predict_1d_equals_the_layers_applied_in_turn(spec, seed):
    d0, ks, ss = spec
    rng = np.random.default_rng(seed)
    arch = lf.Architecture(d0, ks, ss)
    filters = [rng.standard_normal(k) for k in ks]
    x = rng.standard_normal((3, d0))
    got = lf.predict(arch, filters, x)
    want = layer_by_layer(filters, ss, x)
    # sums of P products of O(1) numbers: rounding ~ eps · Σ|terms|
    scale = float(np.max(layer_by_layer([np.abs(w) for w in filters], ss, np.abs(x)))) or 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(lf.predict(arch, filters, x[0]), want[0], rtol=0, atol=1e-13 * scale)


@given(spec=arch_2d_specs(), seed=st.integers(0, 2**16))
def test_predict_2d_equals_the_layers_applied_in_turn(spec, seed):
    d0, ks, ss = spec
    rng = np.random.default_rng(seed)
    arch = lf.Architecture(d0, ks, ss)
    filters = [rng.standard_normal(k) for k in ks]
    x = rng.standard_normal((2, *d0))
    got = lf.predict(arch, lf.flatten(filters), x)  # a flat parameter vector works too
    want = layer_by_layer(filters, ss, x)
    scale = float(np.max(layer_by_layer([np.abs(w) for w in filters], ss, np.abs(x)))) or 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13 * scale)


@pytest.mark.filterwarnings("ignore::lcnflow.SizeRuleWarning")  # dropped trailing inputs: torch drops them too
@pytest.mark.parametrize(("d0", "ks", "ss"), [(29, [4, 3, 2], [2, 2, 1]), (40, [3, 3, 3], [1, 1, 1]),
                                             ((13, 12), [(3, 2), (2, 3)], [(1, 2), (2, 1)])])
def test_predict_equals_torch_conv(d0, ks, ss, rng):
    arch = lf.Architecture(d0, ks, ss)
    filters = lf.random_init(arch, 1.0, 5)
    x = rng.standard_normal((4, *np.atleast_1d(d0)))
    np.testing.assert_allclose(lf.predict(arch, filters, x), torch_layer_by_layer(filters, ss, x), rtol=1e-12,
                               atol=1e-12 * float(np.max(np.abs(x))))


def test_predict_rejects_wrong_inputs():
    arch = lf.Architecture(10, [3, 3])
    w = lf.random_init(arch, 1.0, 0)
    with pytest.raises(ValueError, match=r"inputs: expected shape \(10\) or \(m, 10\).*got shape \(2, 11\)"):
        lf.predict(arch, w, np.zeros((2, 11)))
    with pytest.raises(ValueError, match="inputs: contain NaN"):
        lf.predict(arch, w, np.full(10, np.nan))
    with pytest.raises(ValueError, match="expected 2 filters"):
        lf.predict(arch, w[:1], np.zeros(10))


def test_random_init_is_the_config_initialization():
    cfg = config_from_dict({"data": {"source": "planted", "num_samples": 20}, "architecture": {"input_size": 12,
                           "filter_sizes": [3, 2, 4]}, "init": {"scale": 0.37, "seed": 11}})
    exp = prepare(cfg)
    for a, b in zip(exp.init, lf.random_init(exp.architecture, 0.37, 11), strict=True):
        np.testing.assert_array_equal(a, b)


def test_random_init_draws_iid_normals_layer_by_layer():
    arch = lf.Architecture((12, 12), [(3, 2), (2, 4), (1, 3)])
    w = lf.random_init(arch, 0.25, 3)
    assert [x.shape for x in w] == [(3, 2), (2, 4), (1, 3)]
    # one stream, consumed layer by layer, row-major: the same numbers as one draw of P normals
    np.testing.assert_array_equal(lf.flatten(w), 0.25 * np.random.default_rng(3).standard_normal(arch.num_params))
    np.testing.assert_array_equal(lf.flatten(lf.random_init(arch, 0.5, 3)), 2 * lf.flatten(w))
    # variance: P = 3000 coefficients; the sample std of N(0, s²) is within 5 standard errors (s/√(2P)) of s
    big = lf.Architecture(3000, [1000, 1000, 1000])
    z = lf.flatten(lf.random_init(big, 2.0, 0))
    assert abs(z.std() - 2.0) < 5 * 2.0 / np.sqrt(2 * z.size)
    assert abs(z.mean()) < 5 * 2.0 / np.sqrt(z.size)


@pytest.mark.parametrize(("scale", "seed", "message"), [(-1.0, 0, "scale: must be finite and ≥ 0, got -1.0"),
                                                        (float("nan"), 0, "scale: must be finite"),
                                                        ("big", 0, "scale: expected a number"),
                                                        (1.0, -2, "seed: expected an integer ≥ 0 or None, got -2"),
                                                        (1.0, 1.5, "seed: expected an integer")])
def test_random_init_rejects_bad_arguments(scale, seed, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        lf.random_init(lf.Architecture(8, [3, 3]), scale, seed)
