"""EmpiricalRisk: values and derivatives against independent oracles.

Oracles: the network applied through loop-built dense matrices (conftest) with the loss written as a
plain numpy formula; central finite differences; PyTorch autograd through ``lcnflow.to_torch`` with the
loss written in torch.
Residuals are O(1) (Gaussian data and targets, filters scaled by 1/√k), so ``max(|L|, |∇L|)`` is the scale.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import lcnflow
from conftest import (
    FEW,
    LOSS_CASES,
    LOSS_IDS,
    arch_1d_specs,
    exact_input_size,
    loop_network_matrix,
    loop_patch_matrix,
    numpy_loss,
    random_filters,
    seeds,
    torch_loss,
)
from lcnflow import Architecture, Dataset, EmpiricalRisk, Loss, flatten, get_loss, unflatten

# 1D with strides (k_v = 23, s_v = 6, d_N = 3) and 2D with strides, both exact fit.
SPEC_1D = ([3, 2, 4], [2, 3, 1], 3)
SPEC_2D = ([(2, 3), (2, 2)], [(1, 2), (2, 1)], (2, 2))
SPECS = {"1d": SPEC_1D, "2d": SPEC_2D}


def _problem(kind: str, m: int = 5, seed: int = 0):
    ks, ss, d_out = SPECS[kind]
    d0 = exact_input_size(ks, ss, d_out)
    arch = Architecture(d0, ks, strides=ss)
    rng = np.random.default_rng(seed)
    d0_t = d0 if isinstance(d0, tuple) else (d0,)
    dN_t = d_out if isinstance(d_out, tuple) else (d_out,)
    X = rng.standard_normal((m, *d0_t))
    Y = rng.standard_normal((m, *dN_t))
    ws = random_filters(rng, ks)
    return arch, X, Y, ws


def _oracle_value(arch, X, Y, ws, ell) -> float:
    """(1/m) Σ_j Σ_a ℓ((V x_j − y_j)_a) with V built by loops."""
    V = loop_network_matrix(ws, arch.input_size, arch.strides)
    m = X.shape[0]
    R = X.reshape(m, -1) @ V.T - Y.reshape(m, -1)
    return float(np.sum(ell(R)) / m)


def _fd_gradient(f, w, h):
    g = np.zeros_like(w)
    for j in range(w.size):
        e = np.zeros_like(w)
        e[j] = h
        g[j] = (f(w + e) - f(w - e)) / (2 * h)
    return g


def _fd_jacobian(f, w, h):
    cols = []
    for j in range(w.size):
        e = np.zeros_like(w)
        e[j] = h
        cols.append((np.ravel(f(w + e)) - np.ravel(f(w - e))) / (2 * h))
    return np.stack(cols, axis=1)


# ------------------------------------------------------------------------------------------ value
@pytest.mark.parametrize("kind", ["1d", "2d"])
@pytest.mark.parametrize(("name", "params"), LOSS_CASES, ids=LOSS_IDS)
def test_value_matches_network_matrix_oracle(kind, name, params):
    arch, X, Y, ws = _problem(kind)
    risk = EmpiricalRisk(arch, get_loss(name, **params), Dataset(X, Y))
    expected = _oracle_value(arch, X, Y, ws, numpy_loss(name, params))
    # same sums in a different order: relative rounding ~ k_v·ε; 1e-11 is loose but far below any real error
    assert risk.value(ws) == pytest.approx(expected, rel=1e-11, abs=1e-13)


# ------------------------------------------------------------------------------------------ derivatives vs FD
@pytest.mark.parametrize("kind", ["1d", "2d"])
@pytest.mark.parametrize(("name", "params"), LOSS_CASES, ids=LOSS_IDS)
def test_gradient_and_hessian_vs_finite_differences(kind, name, params):
    arch, X, Y, ws = _problem(kind, seed=1)
    risk = EmpiricalRisk(arch, get_loss(name, **params), Dataset(X, Y))
    w = flatten(ws)
    h = 1e-5 * max(1.0, np.max(np.abs(w)))
    grad = risk.gradient(w)
    # central differences: truncation h²·|L'''|/6 ~ 1e-10, rounding ε·|L|/h ~ 1e-11; tolerance 1e-6·scale
    fd = _fd_gradient(risk.value, w, h)
    scale = max(abs(risk.value(w)), np.max(np.abs(grad)), 1e-3)
    np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-6 * scale)
    # Hessian: central differences of the analytic gradient, same error budget one order up
    hess = risk.hessian(w)
    assert hess.shape == (arch.num_params, arch.num_params)
    np.testing.assert_allclose(hess, hess.T, rtol=0, atol=1e-14 * np.max(np.abs(hess)))
    fd_h = _fd_jacobian(risk.gradient, w, h)
    np.testing.assert_allclose(hess, fd_h, rtol=0, atol=1e-6 * max(np.max(np.abs(hess)), 1e-3))


# ------------------------------------------------------------------------------- derivatives vs torch
def _torch_problem(arch, X, Y, ws, name, params):
    """A scalar function of the concatenated weights, evaluated through lcnflow.to_torch's module."""
    model = lcnflow.to_torch(arch, ws)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    xt = torch.from_numpy(X).unsqueeze(1)
    yt = torch.from_numpy(Y)
    ell = torch_loss(name, params)
    m = X.shape[0]

    def f(wflat):
        pieces = torch.split(wflat, sizes)
        p = {n: t.reshape(s) for n, t, s in zip(names, pieces, shapes, strict=True)}
        out = torch.func.functional_call(model, p, (xt,)).squeeze(1)
        return ell(out - yt).sum() / m

    return model, f


@pytest.mark.parametrize("kind", ["1d", "2d"])
@pytest.mark.parametrize(("name", "params"), LOSS_CASES, ids=LOSS_IDS)
def test_gradient_and_hessian_vs_torch_autograd(kind, name, params):
    arch, X, Y, ws = _problem(kind, seed=2)
    risk = EmpiricalRisk(arch, get_loss(name, **params), Dataset(X, Y))
    model, f = _torch_problem(arch, X, Y, ws, name, params)
    # gradient through the module's own parameters
    out = model(torch.from_numpy(X).unsqueeze(1)).squeeze(1)
    loss_t = torch_loss(name, params)(out - torch.from_numpy(Y)).sum() / X.shape[0]
    grads_t = torch.autograd.grad(loss_t, list(model.parameters()))
    grads = risk.gradient(ws)
    assert isinstance(grads, list) and len(grads) == arch.depth
    # both are exact float64 formulas summed in different orders: agreement to ~1e-13 relative; allow 1e-10
    loss_value = float(loss_t.detach())
    scale = max(loss_value, max(np.max(np.abs(g)) for g in grads), 1e-3)
    assert risk.value(ws) == pytest.approx(loss_value, rel=1e-10, abs=1e-12)
    for g, gt in zip(grads, grads_t, strict=True):
        np.testing.assert_allclose(g, gt.detach().numpy()[0, 0], rtol=0, atol=1e-10 * scale)
    w = torch.from_numpy(flatten(ws))
    hess_t = torch.autograd.functional.hessian(f, w).numpy()
    hess = risk.hessian(ws)
    np.testing.assert_allclose(hess, hess_t, rtol=0, atol=1e-10 * max(np.max(np.abs(hess_t)), 1e-3))


@FEW
@given(arch_1d_specs(max_depth=4, max_k=4, max_s=3, max_out=3), st.sampled_from(range(len(LOSS_CASES))), seeds)
def test_gradient_vs_torch_random_1d_architectures(spec, loss_index, seed):
    d0, ks, ss = spec
    name, params = LOSS_CASES[loss_index]
    arch = Architecture(d0, ks, strides=ss)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3, d0))
    Y = rng.standard_normal((3, arch.output_size))
    ws = random_filters(rng, ks)
    risk = EmpiricalRisk(arch, get_loss(name, **params), Dataset(X, Y))
    _, f = _torch_problem(arch, X, Y, ws, name, params)
    w = torch.from_numpy(flatten(ws)).requires_grad_(True)
    loss_t = f(w)
    (grad_t,) = torch.autograd.grad(loss_t, w)
    grad = risk.gradient(flatten(ws))
    # exact float64 formulas in different summation orders: ~1e-13 relative; 1e-10 of the scale is ample
    scale = max(float(loss_t.detach()), float(np.max(np.abs(grad))), 1e-3)
    assert risk.value(ws) == pytest.approx(float(loss_t.detach()), rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(grad, grad_t.numpy(), rtol=0, atol=1e-10 * scale)


# ------------------------------------------------------------------------------------------ paths agree
def _custom_square():
    return Loss.from_callables(lambda r: r**2 / 2, lambda r: r, lambda r: np.ones_like(r))


@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_square_precomputed_path_equals_general_path(kind):
    arch, X, Y, ws = _problem(kind, m=7, seed=3)
    data = Dataset(X, Y)
    fast = EmpiricalRisk(arch, get_loss("square"), data)
    slow = EmpiricalRisk(arch, _custom_square(), data)
    assert fast.is_quadratic is True
    assert slow.is_quadratic is False
    # G = HᵀH/m, b = Hᵀy/m, c = ‖y‖²/(2m) from a loop-built H
    H = loop_patch_matrix(X, arch.final_filter_size, arch.final_stride, arch.output_size)
    m = X.shape[0]
    np.testing.assert_allclose(fast.gram, H.T @ H / m, rtol=1e-12, atol=1e-14 * np.max(np.abs(H)) ** 2)
    np.testing.assert_allclose(fast.moment, H.T @ Y.ravel() / m, rtol=1e-12, atol=1e-13)
    assert fast.constant == pytest.approx(Y.ravel() @ Y.ravel() / (2 * m), rel=1e-13)
    # ½vᵀGv − bᵀv + c cancels against c: its rounding is ε·k_v·(½|v|ᵀ|G||v| + |b|ᵀ|v| + c), ~1e-14 here
    v = lcnflow.final_filter(arch, ws)
    scale = 0.5 * np.abs(v.ravel()) @ np.abs(fast.gram) @ np.abs(v.ravel()) + fast.constant + 1.0
    assert fast.value(ws) == pytest.approx(slow.value(ws), abs=1e-11 * scale)
    assert fast.function_space_value(v) == pytest.approx(slow.function_space_value(v), abs=1e-11 * scale)
    np.testing.assert_allclose(flatten(fast.gradient(ws)), flatten(slow.gradient(ws)), rtol=0,
                               atol=1e-11 * scale)
    np.testing.assert_allclose(fast.function_space_gradient(v), slow.function_space_gradient(v), rtol=0,
                               atol=1e-11 * scale)
    np.testing.assert_allclose(fast.hessian(ws), slow.hessian(ws), rtol=0, atol=1e-11 * scale)
    np.testing.assert_allclose(fast.function_space_hessian(v), slow.function_space_hessian(v), rtol=0,
                               atol=1e-11 * scale)


@pytest.mark.parametrize("kind", ["1d", "2d"])
@pytest.mark.parametrize(("name", "params"), [LOSS_CASES[0], LOSS_CASES[3]], ids=[LOSS_IDS[0], LOSS_IDS[3]])
def test_streamed_path_equals_dense_path(kind, name, params):
    arch, X, Y, ws = _problem(kind, m=9, seed=4)
    data = Dataset(X, Y)
    loss = get_loss(name, **params)
    dense = EmpiricalRisk(arch, loss, data)
    streamed = EmpiricalRisk(arch, loss, data, max_patch_bytes=1000)
    # guard that the two objects really take different paths (1000 bytes hold at most a few samples' patches)
    assert dense._H is not None and streamed._H is None
    v = lcnflow.final_filter(arch, ws)
    # identical terms summed in chunks: relative rounding ~ ε·(number of chunks)
    assert streamed.value(ws) == pytest.approx(dense.value(ws), rel=1e-12)
    np.testing.assert_allclose(flatten(streamed.gradient(ws)), flatten(dense.gradient(ws)), rtol=1e-11,
                               atol=1e-14)
    np.testing.assert_allclose(streamed.hessian(ws), dense.hessian(ws), rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(streamed.function_space_hessian(v), dense.function_space_hessian(v),
                               rtol=1e-11, atol=1e-14)
    # and both agree with the loop oracle
    expected = _oracle_value(arch, X, Y, ws, numpy_loss(name, params))
    assert streamed.value(ws) == pytest.approx(expected, rel=1e-11)


# ------------------------------------------------------------------------------------------ function space
@pytest.mark.parametrize("kind", ["1d", "2d"])
@pytest.mark.parametrize(("name", "params"), LOSS_CASES, ids=LOSS_IDS)
def test_function_space_value_and_derivatives(kind, name, params):
    arch, X, Y, _ = _problem(kind, seed=5)
    risk = EmpiricalRisk(arch, get_loss(name, **params), Dataset(X, Y))
    rng = np.random.default_rng(6)
    v = rng.standard_normal(arch.final_filter_shape) * 0.3
    H = loop_patch_matrix(X, arch.final_filter_size, arch.final_stride, arch.output_size)
    m = X.shape[0]
    expected = float(np.sum(numpy_loss(name, params)(H @ v.ravel() - Y.ravel())) / m)
    assert risk.function_space_value(v) == pytest.approx(expected, rel=1e-11, abs=1e-13)
    grad = risk.function_space_gradient(v)
    assert grad.shape == v.shape
    h = 1e-5
    vflat = v.ravel()
    fd = _fd_gradient(lambda u: risk.function_space_value(u.reshape(v.shape)), vflat, h)
    scale = max(abs(expected), np.max(np.abs(grad)), 1e-3)
    # central differences, same budget as in parameter space
    np.testing.assert_allclose(grad.ravel(), fd, rtol=0, atol=1e-6 * scale)
    hess = risk.function_space_hessian(v)
    assert hess.shape == (arch.final_filter_num_params,) * 2
    fd_h = _fd_jacobian(lambda u: risk.function_space_gradient(u.reshape(v.shape)), vflat, h)
    np.testing.assert_allclose(hess, fd_h, rtol=0, atol=1e-6 * max(np.max(np.abs(hess)), 1e-3))
    # flat v is accepted and gives the same
    assert risk.function_space_value(vflat) == risk.function_space_value(v)
    np.testing.assert_array_equal(risk.function_space_gradient(vflat), grad.ravel())
    # ℒ is convex for every built-in loss: the Hessian is positive semidefinite
    assert np.min(np.linalg.eigvalsh(hess)) >= -1e-12 * np.max(np.abs(hess))


def test_function_space_rejects_wrong_shape():
    arch, X, Y, _ = _problem("1d")
    risk = EmpiricalRisk(arch, "square", Dataset(X, Y))
    with pytest.raises(ValueError, match=r"final filter v: expected shape \(23,\), got \(22,\)"):
        risk.function_space_value(np.zeros(22))


# ------------------------------------------------------------------------------------------ structure
@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_flat_and_list_inputs_agree(kind):
    arch, X, Y, ws = _problem(kind, seed=7)
    risk = EmpiricalRisk(arch, get_loss("log_cosh"), Dataset(X, Y))
    w = flatten(ws)
    assert risk.value(w) == risk.value(ws) == risk.flat_value(w)
    g_flat, g_list = risk.gradient(w), risk.gradient(ws)
    assert isinstance(g_flat, np.ndarray) and g_flat.shape == (arch.num_params,)
    assert [g.shape for g in g_list] == list(arch.filter_shapes)
    np.testing.assert_array_equal(g_flat, flatten(g_list))
    np.testing.assert_array_equal(risk.hessian(w), risk.hessian(ws))
    val, g2 = risk.value_and_gradient(ws)
    assert val == risk.value(ws)
    np.testing.assert_array_equal(flatten(g2), g_flat)
    # the unflattened gradient lines up with the filters
    for a, b in zip(unflatten(arch, g_flat), g_list, strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------ flat objective
@pytest.fixture(params=["compiled", "reference"])
def kernel_path(request):
    """Both evaluation paths: the compiled kernels and the NumPy reference (``_kernels.ENABLED = False``)."""
    import lcnflow.kernels as K

    before = K.ENABLED
    K.ENABLED = request.param == "compiled"
    yield request.param
    K.ENABLED = before


@pytest.mark.parametrize("kind", ["1d", "2d"])
@pytest.mark.parametrize(("name", "params"), [LOSS_CASES[0], LOSS_CASES[3]], ids=[LOSS_IDS[0], LOSS_IDS[3]])
def test_flat_objective_vs_loop_oracle_and_finite_differences(kind, name, params, kernel_path):
    arch, X, Y, ws = _problem(kind, seed=11)
    risk = EmpiricalRisk(arch, get_loss(name, **params), Dataset(X, Y))
    w = flatten(ws)
    expected = _oracle_value(arch, X, Y, ws, numpy_loss(name, params))
    val, g = risk.flat_value_and_gradient(w)
    assert val == pytest.approx(expected, rel=1e-11, abs=1e-13)
    assert g.shape == (arch.num_params,)
    # value of a loop-built network: the same central-difference budget as above (1e-6 of the scale)
    h = 1e-5 * max(1.0, np.max(np.abs(w)))
    fd = _fd_gradient(lambda u: _oracle_value(arch, X, Y, unflatten(arch, u), numpy_loss(name, params)), w, h)
    scale = max(abs(expected), np.max(np.abs(g)), 1e-3)
    np.testing.assert_allclose(g, fd, rtol=0, atol=1e-6 * scale)
    _, g_only = risk.flat_value_and_gradient(w, need_value=False)
    np.testing.assert_allclose(g_only, g, rtol=1e-13, atol=1e-15 * scale)
    val3, g3, hess = risk.flat_value_gradient_hessian(w)
    assert val3 == pytest.approx(val, rel=1e-13)
    np.testing.assert_allclose(g3, g, rtol=0, atol=1e-13 * scale)
    fd_h = _fd_jacobian(lambda u: risk.flat_value_and_gradient(u)[1], w, h)
    np.testing.assert_allclose(hess, fd_h, rtol=0, atol=1e-6 * max(np.max(np.abs(hess)), 1e-3))
    np.testing.assert_array_equal(risk.flat_hessian(w), hess)
    # the validated, structure-keeping methods give the same numbers
    val_l, g_l = risk.value_and_gradient(ws)
    assert val_l == val
    np.testing.assert_array_equal(flatten(g_l), g)
    np.testing.assert_array_equal(risk.hessian(ws), hess)


@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_function_space_outputs_are_the_network_applied_to_the_data(kind):
    arch, X, Y, ws = _problem(kind, seed=12)
    risk = EmpiricalRisk(arch, "log_cosh", Dataset(X, Y))
    V = loop_network_matrix(ws, arch.input_size, arch.strides)
    m = X.shape[0]
    expected = (X.reshape(m, -1) @ V.T).reshape(Y.shape)
    out = risk.function_space_outputs(lcnflow.final_filter(arch, ws))
    assert out.shape == Y.shape
    # products of O(1) numbers summed over k_v terms in another order: 1e-12 absolute is ample
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"final filter v: expected shape"):
        risk.function_space_outputs(np.zeros(3))


def test_flat_objective_checks_the_shape_only():
    arch, X, Y, ws = _problem("1d")
    risk = EmpiricalRisk(arch, "pseudo_huber", Dataset(X, Y))
    P = arch.num_params
    for bad in (np.zeros(P - 1), np.zeros((1, P))):
        with pytest.raises(ValueError, match=rf"w: expected a flat parameter vector of {P} entries.*got shape"):
            risk.flat_value_and_gradient(bad)
        with pytest.raises(ValueError, match=r"w: expected a flat parameter vector"):
            risk.flat_hessian(bad)
        with pytest.raises(ValueError, match=r"w: expected a flat parameter vector"):
            risk.flat_value(bad)
    # a non-finite trial point is an integrator's business: non-finite numbers, no exception
    w = flatten(ws)
    w[2] = np.inf
    val, g = risk.flat_value_and_gradient(w)
    assert not (np.isfinite(val) and np.all(np.isfinite(g)))
    # while the validating method names the layer and the coefficient
    with pytest.raises(ValueError, match=r"layer 1.*non-finite"):
        risk.value_and_gradient(w)


@pytest.mark.parametrize("kind", ["1d", "2d"])
@pytest.mark.parametrize(("name", "params"), LOSS_CASES, ids=LOSS_IDS)
def test_conserved_quantity_identity(kind, name, params):
    # π is linear in each layer, so ⟨w^(i), ∇_{w^(i)} L⟩ = ⟨∇ℒ(v), π(w)⟩ for every i (why δ_i is conserved)
    arch, X, Y, ws = _problem(kind, seed=8)
    risk = EmpiricalRisk(arch, get_loss(name, **params), Dataset(X, Y))
    grads = risk.gradient(ws)
    inner = [float(np.sum(w * g)) for w, g in zip(ws, grads, strict=True)]
    v = lcnflow.final_filter(arch, ws)
    target = float(np.sum(risk.function_space_gradient(v) * v))
    scale = max(float(np.sum(np.abs(w) * np.abs(g))) for w, g in zip(ws, grads, strict=True))
    for x in inner:
        assert x == pytest.approx(target, abs=1e-12 * max(scale, 1e-3))


def test_loss_by_name_and_invalid_loss():
    arch, X, Y, ws = _problem("1d")
    data = Dataset(X, Y)
    by_name = EmpiricalRisk(arch, "log_cosh", data)
    expected = _oracle_value(arch, X, Y, ws, numpy_loss("log_cosh", {}))
    assert by_name.value(ws) == pytest.approx(expected, rel=1e-11)
    assert EmpiricalRisk(arch, "square", data).is_quadratic
    with pytest.raises(ValueError, match="loss"):
        EmpiricalRisk(arch, 3.0, data)
    with pytest.raises(ValueError, match="Dataset"):
        EmpiricalRisk(arch, "square", (X, Y))


def test_risk_rejects_bad_filters():
    arch, X, Y, ws = _problem("1d")
    risk = EmpiricalRisk(arch, "square", Dataset(X, Y))
    with pytest.raises(ValueError, match=r"layer 2"):
        risk.gradient([ws[0], np.ones(5), ws[2]])
    with pytest.raises(ValueError, match=r"layer 3.*non-finite"):
        risk.value([ws[0], ws[1], np.array([0.0, np.nan, 1.0, 2.0])])


# ------------------------------------------------------------------------------------------ Dataset
def test_dataset_nan_message_has_count_and_first_index():
    X = np.zeros((4, 10))
    X[1, 3] = np.nan
    X[2, 0] = np.inf
    X[3, 5] = np.nan
    with pytest.raises(ValueError, match=r"data\.inputs: 3 non-finite value\(s\).*first at index \(1, 3\)"):
        Dataset(X, np.zeros((4, 8)))
    Y = np.zeros((4, 8))
    Y[0, 7] = np.nan
    with pytest.raises(ValueError, match=r"data\.targets: 1 non-finite value\(s\).*first at index \(0, 7\)"):
        Dataset(np.zeros((4, 10)), Y)


def test_dataset_mismatched_sample_counts():
    with pytest.raises(ValueError, match=r"inputs have 5 samples but targets have 4"):
        Dataset(np.zeros((5, 10)), np.zeros((4, 8)))


def test_dataset_wrong_rank():
    with pytest.raises(ValueError, match=r"data\.inputs: expected shape \(m, d_0\).*got shape \(10,\)"):
        Dataset(np.zeros(10), np.zeros(8))
    with pytest.raises(ValueError, match=r"data\.targets / data\.inputs: the inputs have shape \(3, 10\) \(signals"):
        Dataset(np.zeros((3, 10)), np.zeros((3, 2, 4, 4)))
    # (m, d_0) inputs with (m, c_N, d_N) targets are channel data (c_0 = 1): the architecture decides, and a
    # one-channel one refuses targets with two channels, naming channels
    with pytest.raises(ValueError, match=r"data\.targets: shape \(3, 2, 5\) has 2 channels.*architecture\.channels"):
        EmpiricalRisk(Architecture(10, [4, 3]), "square", Dataset(np.zeros((3, 10)), np.zeros((3, 2, 5))))


def test_dataset_shapes_checked_against_architecture():
    arch = Architecture(47, [3, 2, 4], strides=[2, 3, 1])  # d_N = 5
    with pytest.raises(ValueError, match=r"data\.inputs: expected shape \(6, 47\).*got \(6, 46\)"):
        EmpiricalRisk(arch, "square", Dataset(np.zeros((6, 46)), np.zeros((6, 5))))
    with pytest.raises(ValueError, match=r"data\.targets: expected shape \(6, 5\).*got \(6, 4\)"):
        EmpiricalRisk(arch, "square", Dataset(np.zeros((6, 47)), np.zeros((6, 4))))
    with pytest.raises(ValueError, match=r"2D data but the architecture is 1D"):
        EmpiricalRisk(arch, "square", Dataset(np.zeros((6, 47, 2)), np.zeros((6, 5, 1))))
    arch2 = Architecture((32, 32), [(3, 3), (2, 2)], strides=[(1, 1), (2, 2)])  # d_N = 15×15
    with pytest.raises(ValueError, match=r"data\.targets: expected shape \(2, 15, 15\)"):
        EmpiricalRisk(arch2, "square", Dataset(np.zeros((2, 32, 32)), np.zeros((2, 15, 14))))


def test_dataset_copies_and_freezes():
    X, Y = np.ones((3, 9)), np.zeros((3, 3))
    data = Dataset(X, Y)
    X[0, 0] = 100.0
    assert data.inputs[0, 0] == 1.0
    assert data.num_samples == 3 and data.ndim == 1
    with pytest.raises(ValueError):
        data.inputs[0, 0] = 2.0
