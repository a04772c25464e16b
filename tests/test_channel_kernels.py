"""The compiled data passes of networks with channels (value, gradient, Hessian blocks) against independent oracles.

Oracles: torch autograd through a composition of ``torch.nn.functional.conv1d/conv2d`` (value, gradient and Hessian
of ``L``), the NumPy reference path of :class:`~lcnflow.model.risk.ChannelRisk` (``lcnflow.kernels.ENABLED = False``:
the explicit multichannel patch matrix ``H``), and explicit sums over an independently built ``H``.

Tolerances.  The compiled and the NumPy path add the same products ``ℓ'(r)·x`` (and ``ℓ''(r)·x·x``) in different
orders, with the loss terms computed by different (each few-ulp accurate) formulas; with at most a few thousand
terms per entry of random, order-one data, rounding differs by ``~n·ε`` relative to the sum of absolute values,
about ``10⁻¹³`` of the largest entry here: ``1e-12`` leaves a margin of ten.  Against torch (its own formulas, e.g.
``log cosh r`` unrearranged, and its own summation order), ``1e-11`` as in tests/test_channels.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import lcnflow.kernels as K
from conftest import torch_loss
from lcnflow import Architecture, Dataset, EmpiricalRisk, Loss, get_loss
from lcnflow.model.conv import final_filter, flatten, patch_matrix, random_init, unflatten

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.skipif(not K.HAVE_NUMBA, reason="Numba is not installed")

ARCHS = {
    # 1D stride 1 (four taps per sweep), c_0 = c_N = 2 — the benchmark's shape, small
    "1d_s1": lambda: Architecture(30, [3, 3, 3], channels=[2, 4, 4, 2]),
    # 1D strided, c_0 = 1, c_N = 3
    "1d_s2": lambda: Architecture(23, [3, 2, 3], [1, 2, 1], channels=[1, 3, 2, 3]),
    # 1D, c_0 = 3, c_N = 1
    "1d_c0": lambda: Architecture(22, [4, 2], [2, 1], channels=[3, 2, 1]),
    # 2D strided on both axes, c_0 = 3, c_N = 2
    "2d_s": lambda: Architecture((14, 12), [(3, 2), (2, 2), (2, 3)], [(1, 2), (2, 1), (1, 1)],
                                 channels=[3, 2, 4, 2]),
    # 2D stride 1, c_0 = 2, c_N = 3
    "2d_s1": lambda: Architecture((9, 11), [(2, 3), (3, 2)], channels=[2, 3, 3]),
}

LOSSES = [("lp", {"p": 3.0}), ("lp", {"p": 2.5}), ("pseudo_huber", {"delta": 0.7}),
          ("generalized_huber", {"alpha": 1.3, "beta": 0.5}), ("log_cosh", {})]


def _data(arch, m, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, arch.channels[0], *arch.axes_layer_sizes[0]))
    Y = rng.standard_normal((m, arch.channels[-1], *arch.axes_layer_sizes[-1]))
    return X, Y


def _risk(arch, loss, X, Y):
    """The risk with its data passes on the compiled path: 2D risks take it where ``H`` is built in chunks."""
    risk = EmpiricalRisk(arch, loss, Dataset(X, Y), **({"max_patch_bytes": 4096} if arch.ndim == 2 else {}))
    before = K.ENABLED
    K.ENABLED = True
    try:
        assert risk.channel_kernel_view().route_pass
    finally:
        K.ENABLED = before
    return risk


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.fixture
def enabled():
    """The compiled path switched on for the test (and restored after it)."""
    before = K.ENABLED
    K.ENABLED = True
    yield
    K.ENABLED = before


def _both_paths(risk, fn):
    """``fn()`` on the compiled path and on the NumPy path."""
    before = K.ENABLED
    try:
        K.ENABLED = True
        fast = fn()
        K.ENABLED = False
        ref = fn()
    finally:
        K.ENABLED = before
    return fast, ref


# --------------------------------------------------------------------------------------------- against the NumPy path
@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize(("loss_name", "params"), LOSSES)
def test_compiled_path_matches_numpy_path(name, loss_name, params):
    arch = ARCHS[name]()
    X, Y = _data(arch, 9, seed=3)
    risk = _risk(arch, get_loss(loss_name, **params), X, Y)
    w = flatten(random_init(arch, 0.7, seed=4))
    v = final_filter(arch, unflatten(arch, w))
    with pytest.MonkeyPatch.context() as mp:  # the compiled path really runs
        calls = []
        real = K.channel_data_pass
        mp.setattr(K, "channel_data_pass", lambda *a: calls.append(1) or real(*a))
        fast, ref = _both_paths(risk, lambda: risk.flat_value_gradient_hessian(w))
    n_calls = len(calls)  # one pass, on the compiled half (the NumPy half runs with ENABLED off)
    assert abs(fast[0] - ref[0]) <= 1e-12 * abs(ref[0])
    assert _rel(fast[1], ref[1]) < 1e-12
    assert _rel(fast[2], ref[2]) < 1e-12
    assert n_calls == 1
    g_fast, g_ref = _both_paths(risk, lambda: risk.flat_value_and_gradient(w, need_value=False)[1])
    assert _rel(g_fast, g_ref) < 1e-12
    fs_fast, fs_ref = _both_paths(risk, lambda: (risk.function_space_value(v), risk.function_space_gradient(v),
                                                 risk.function_space_hessian(v)))
    assert abs(fs_fast[0] - fs_ref[0]) <= 1e-12 * abs(fs_ref[0])
    assert _rel(fs_fast[1], fs_ref[1]) < 1e-12 and _rel(fs_fast[2], fs_ref[2]) < 1e-12
    batch = np.array([0, 4, 4, 8, 2])  # repeats count
    mb_fast, mb_ref = _both_paths(risk, lambda: risk.flat_minibatch_value_and_gradient(w, batch))
    assert abs(mb_fast[0] - mb_ref[0]) <= 1e-12 * abs(mb_ref[0])
    assert _rel(mb_fast[1], mb_ref[1]) < 1e-12


@pytest.mark.parametrize("name", ["1d_s1", "2d_s"])
def test_compiled_path_matches_chunked_numpy_path(name):
    """Where ``H`` does not fit in memory the NumPy path builds it in chunks of samples; the compiled pass never
    builds it and gives the same numbers."""
    arch = ARCHS[name]()
    X, Y = _data(arch, 13, seed=8)
    risk = EmpiricalRisk(arch, "log_cosh", Dataset(X, Y), max_patch_bytes=4096)
    assert risk._H is None  # chunked
    w = flatten(random_init(arch, 0.7, seed=2))
    fast, ref = _both_paths(risk, lambda: risk.flat_value_gradient_hessian(w))
    assert abs(fast[0] - ref[0]) <= 1e-12 * abs(ref[0])
    assert _rel(fast[1], ref[1]) < 1e-12 and _rel(fast[2], ref[2]) < 1e-12


# --------------------------------------------------------------------------------------------- against torch autograd
@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize(("loss_name", "params"), [LOSSES[0], LOSSES[2], LOSSES[3], LOSSES[4]])
def test_compiled_value_gradient_hessian_match_autograd(enabled, name, loss_name, params):
    arch = ARCHS[name]()
    X, Y = _data(arch, 5, seed=11)
    risk = _risk(arch, get_loss(loss_name, **params), X, Y)
    w = flatten(random_init(arch, 0.6, seed=12))
    tl = torch_loss(loss_name, params)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    conv = F.conv1d if arch.ndim == 1 else F.conv2d

    def L(wt):
        t, i = Xt, 0
        for shape, s in zip(arch.filter_shapes, arch.axes_strides, strict=True):
            n = int(np.prod(shape))
            t = conv(t, wt[i : i + n].reshape(shape), stride=s)
            i += n
        return tl(t - Yt).sum() / X.shape[0]

    wt = torch.tensor(w, requires_grad=True)
    val_t = L(wt)
    g_t = torch.autograd.grad(val_t, wt)[0].numpy()
    H_t = torch.autograd.functional.hessian(L, torch.tensor(w)).numpy()
    val, g, H = risk.flat_value_gradient_hessian(w)
    assert abs(val - val_t.item()) <= 1e-12 * abs(val_t.item())
    assert _rel(g, g_t) < 1e-11
    assert _rel(H, H_t) < 1e-11
    assert _rel(risk.gradient(w), g_t) < 1e-11


# --------------------------------------------------------------------------------------------- the kernels themselves
@pytest.mark.parametrize("name", ["1d_s1", "1d_s2", "2d_s", "2d_s1"])
def test_channel_kernels_are_the_patch_matrix_sums(name):
    """``channel_data_pass`` and ``channel_weighted_gram`` against sums over an explicit ``H`` (built here from its
    definition ``H[(j, a), (c, t)] = x[j, c, a·s + t]``, independently of the library's patch matrix)."""
    arch = ARCHS[name]()
    X, Y = _data(arch, 4, seed=21)
    m, c0, cN = X.shape[0], arch.channels[0], arch.channels[-1]
    V = np.random.default_rng(5).standard_normal((cN, c0, *arch.axes_final_filter_size))
    sv, dN, kv = arch.cumulative_strides[-1], arch.axes_layer_sizes[-1], arch.axes_final_filter_size
    rows = []
    for j in range(m):
        for a in np.ndindex(*dN):
            rows.append([X[(j, c, *(ai * si + ti for ai, si, ti in zip(a, sv, t, strict=True)))]
                         for c in range(c0) for t in np.ndindex(*kv)])
    H = np.array(rows)
    assert np.array_equal(H, patch_matrix(arch, X))
    R = H @ V.reshape(cN, -1).T - np.moveaxis(Y, 1, -1).reshape(-1, cN)
    delta = 0.8
    d1 = R / np.sqrt(1 + (R / delta) ** 2)
    d2 = (1 + (R / delta) ** 2) ** -1.5
    val = float(np.sum(delta**2 * (np.sqrt(1 + (R / delta) ** 2) - 1)))
    x4 = np.ascontiguousarray(X.reshape(m, c0, -1, X.shape[-1]))
    y4 = np.ascontiguousarray(Y.reshape(m, cN, -1, Y.shape[-1]))
    V4 = np.ascontiguousarray(V.reshape(cN, c0, -1, V.shape[-1]))
    sh, sw = (1, sv[0]) if arch.ndim == 1 else sv
    got_val, got_g = K.channel_data_pass(x4, y4, V4, sh, sw, K.LOSS_IDS["pseudo_huber"], delta, 0.0, True)
    assert abs(got_val - val) <= 1e-12 * val
    assert _rel(got_g, (d1.T @ H).reshape(-1)) < 1e-12
    assert np.isnan(K.channel_data_pass(x4, y4, V4, sh, sw, 2, delta, 0.0, False)[0])
    gram = K.channel_weighted_gram(x4, y4, V4, sh, sw, K.LOSS_IDS["pseudo_huber"], delta, 0.0)
    want = np.stack([H.T @ (d2[:, o, None] * H) for o in range(cN)])
    assert gram.shape == want.shape
    assert _rel(gram, want) < 1e-12
    assert np.array_equal(gram, gram.transpose(0, 2, 1))


def test_channel_pass_does_not_depend_on_the_thread_split(monkeypatch):
    """Fixed blocks of samples summed in block order: the same bits in one call and split over threads."""
    arch = ARCHS["1d_s1"]()
    X, Y = _data(arch, 700, seed=1)  # several blocks (block_size: ~16 384 entries)
    x4, y4 = X.reshape(700, 2, 1, -1), Y.reshape(700, 2, 1, -1)
    V = np.random.default_rng(0).standard_normal((2, 2, 1, 7))
    assert K.block_size(y4) < 700
    serial = K.channel_data_pass(x4, y4, V, 1, 1, 4, 1.0, 0.0, True)
    gram_serial = K.channel_weighted_gram(x4, y4, V, 1, 1, 4, 1.0, 0.0)
    monkeypatch.setattr(K, "PARALLEL_MIN_ENTRIES", 0)
    monkeypatch.setattr(K, "_threads", lambda: 3)
    split = K.channel_data_pass(x4, y4, V, 1, 1, 4, 1.0, 0.0, True)
    assert split[0] == serial[0] and np.array_equal(split[1], serial[1])
    assert np.array_equal(K.channel_weighted_gram(x4, y4, V, 1, 1, 4, 1.0, 0.0), gram_serial)


def test_non_finite_residuals_propagate():
    """A NaN target makes the value and the gradient of its output channel NaN, and nothing else (the datasets
    refuse non-finite data, so the kernel is called directly)."""
    arch = ARCHS["1d_s2"]()
    X, Y = _data(arch, 3)
    Y[1, 2, 4] = np.nan
    m, c0, cN = 3, arch.channels[0], arch.channels[-1]
    V = np.ones((cN, c0, 1, arch.axes_final_filter_size[0]))
    sw = arch.cumulative_strides[-1][0]
    val, g = K.channel_data_pass(X.reshape(m, c0, 1, -1), Y.reshape(m, cN, 1, -1), V, 1, sw, 2, 1.0, 0.0, True)
    assert np.isnan(val)
    assert np.all(np.isnan(g.reshape(cN, -1)[2])) and np.all(np.isfinite(g.reshape(cN, -1)[:2]))


# --------------------------------------------------------------------------------------------- which path runs
def test_numpy_path_when_disabled_or_custom_or_square(monkeypatch):
    """``ENABLED = False`` runs the NumPy reference unchanged (the explicit ``ℓ'(R)ᵀH``); a custom loss and the
    square loss (statistics) never reach the channel kernels."""
    arch = ARCHS["1d_s2"]()
    X, Y = _data(arch, 6, seed=2)
    w = flatten(random_init(arch, 0.5, seed=3))
    v = final_filter(arch, unflatten(arch, w)).reshape(-1)

    def refuse(*a):
        raise AssertionError("the compiled channel pass ran")

    monkeypatch.setattr(K, "channel_data_pass", refuse)
    monkeypatch.setattr(K, "channel_weighted_gram", refuse)
    ph = EmpiricalRisk(arch, get_loss("pseudo_huber", delta=0.7), Dataset(X, Y))
    monkeypatch.setattr(K, "ENABLED", False)
    assert ph.channel_kernel_view() is None
    val, g = ph._fs_gradient(v)
    H = patch_matrix(arch, X)
    R = H @ v.reshape(arch.channels[-1], -1).T - np.moveaxis(Y, 1, -1).reshape(-1, arch.channels[-1])
    loss = get_loss("pseudo_huber", delta=0.7)
    assert val == float(np.sum(loss.value(R))) / 6
    assert np.array_equal(g, (loss.derivative(R).T @ H).reshape(-1) / 6)
    ph.flat_value_gradient_hessian(w)
    monkeypatch.setattr(K, "ENABLED", True)
    with pytest.raises(AssertionError, match="compiled channel pass"):
        ph.flat_value_and_gradient(w)
    custom = Loss("custom", {}, lambda r: r**4 / 4 + r**2 / 2, lambda r: r**3 + r, lambda r: 3 * r**2 + 1,
                  convex=True)
    for risk in (EmpiricalRisk(arch, custom, Dataset(X, Y)), EmpiricalRisk(arch, "square", Dataset(X, Y))):
        assert risk.channel_kernel_view() is None
        risk.flat_value_gradient_hessian(w)
        risk.flat_minibatch_value_and_gradient(w, np.array([0, 1]))


def test_routing_follows_the_measurements(enabled, monkeypatch):
    """2D: BLAS on a dense ``H`` (faster there), the compiled pass where ``H`` is chunked; 1D: the compiled pass,
    and the compiled Hessian blocks up to ``CHANNEL_GRAM_MAX_COLUMNS`` columns ``c_0 k_v``."""
    from lcnflow.model.risk import CHANNEL_GRAM_MAX_COLUMNS

    calls = []
    for name in ("channel_data_pass", "channel_weighted_gram"):
        real = getattr(K, name)
        monkeypatch.setattr(K, name, lambda *a, real=real, name=name: calls.append(name) or real(*a))
    arch = ARCHS["2d_s"]()
    X, Y = _data(arch, 4)
    w = flatten(random_init(arch, 0.5, seed=1))
    dense = EmpiricalRisk(arch, "log_cosh", Dataset(X, Y))
    dense.flat_value_gradient_hessian(w)
    assert calls == []
    _risk(arch, "log_cosh", X, Y).flat_value_gradient_hessian(w)
    assert calls == ["channel_data_pass"]
    calls.clear()
    for c0, expect_gram in ((2, True), (4, False)):
        arch = Architecture(30, [3, 3, 3], channels=[c0, 4, 4, 2])
        assert (c0 * 7 <= CHANNEL_GRAM_MAX_COLUMNS) == expect_gram
        X, Y = _data(arch, 3)
        EmpiricalRisk(arch, "log_cosh", Dataset(X, Y)).flat_value_gradient_hessian(flatten(random_init(arch, 0.5)))
        assert calls == ["channel_data_pass"] + ["channel_weighted_gram"] * expect_gram
        calls.clear()
