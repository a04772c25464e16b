"""Multi-channel LCNs: architecture, π and its derivatives, risks, symmetry, flows — against independent oracles.

Oracles: compositions of ``torch.nn.functional.conv1d/conv2d`` (the network, π as the network's response), torch
autograd (gradients and Hessians of every loss), closed forms (dimension of the variety of bounded-rank matrices
for dense networks), NumPy's rank of an explicitly built patch matrix.  Tolerances are relative: the computations
are sums of at most a few hundred float64 products, so 1e-12 leaves a margin of ~100× over rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from conftest import torch_loss  # noqa: E402
from lcnflow import Architecture, Dataset, EmpiricalRisk, Loss, get_loss  # noqa: E402
from lcnflow.analysis.symmetry import invariants, symmetry_basis  # noqa: E402
from lcnflow.flow import gradient_flow, theorem_hypotheses  # noqa: E402
from lcnflow.model.conv import (  # noqa: E402
    final_filter,
    flatten,
    network_matrix,
    patch_matrix,
    predict,
    random_init,
    unflatten,
)
from lcnflow.model.interop import from_torch, to_torch  # noqa: E402

ARCHS = {
    "1d": lambda: Architecture(24, [3, 2, 3], [1, 2, 1], channels=[2, 3, 4, 2]),
    "2d": lambda: Architecture((14, 12), [(3, 2), (2, 2), (2, 3)], [(1, 2), (2, 1), (1, 1)], channels=[3, 2, 4, 2]),
}


def _torch_net(arch, ws, x):
    """The network as a composition of torch convolutions (inputs ``(m, c_0, *d_0)``)."""
    conv = F.conv1d if arch.ndim == 1 else F.conv2d
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    for w, s in zip(ws, arch.axes_strides, strict=True):
        t = conv(t, w if isinstance(w, torch.Tensor) else torch.from_numpy(w), stride=s)
    return t


def _data(arch, m, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, arch.channels[0], *arch.axes_layer_sizes[0]))
    Y = rng.standard_normal((m, arch.channels[-1], *arch.axes_layer_sizes[-1]))
    return X, Y


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# ------------------------------------------------------------------------------------------------ architecture
def test_shapes_and_counts():
    arch = ARCHS["1d"]()
    assert arch.filter_shapes == ((3, 2, 3), (4, 3, 2), (2, 4, 3))
    assert arch.final_filter_shape == (2, 2, 8)  # k_v = 1 + 2·1 + 1·1 + 2·2 = 8
    assert arch.num_params == 18 + 24 + 24
    assert arch.symmetry_dim == 9 + 16
    arch2 = ARCHS["2d"]()
    assert arch2.filter_shapes[0] == (2, 3, 3, 2) and arch2.final_filter_shape == (2, 3, 6, 8)
    text = str(arch)
    for piece in ("2→3", "3→4", "4→2", "final filter 2 × 2 × 8", "GL(3) × GL(4)", "Σ c_i² = 25", "P = 66"):
        assert piece in text


def test_all_ones_is_the_single_channel_architecture():
    a = Architecture(20, [3, 4], [1, 2])
    b = Architecture(20, [3, 4], [1, 2], channels=[1, 1, 1])
    assert a == b and hash(a) == hash(b) and not b.is_multichannel
    assert b.filter_shapes == ((3,), (4,)) and b.to_dict() == a.to_dict()
    assert Architecture(**Architecture(20, [3, 4], channels=[2, 3, 1]).to_dict()).channels == (2, 3, 1)


@pytest.mark.parametrize(("c0", "c1", "c2"), [(3, 2, 4), (3, 1, 3), (2, 5, 3), (4, 2, 2)])
def test_dim_m_of_a_dense_network_is_the_dimension_of_bounded_rank_matrices(c0, c1, c2):
    # k = 1 everywhere: v = W_2 W_1 ranges over c_2 × c_0 matrices of rank ≤ r = min(c_0, c_1, c_2), a variety of
    # dimension r(c_0 + c_2 − r) (closed form)
    arch = Architecture(5, [1, 1], channels=[c0, c1, c2])
    r = min(c0, c1, c2)
    assert arch.function_space_dim == r * (c0 + c2 - r)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"channels": [1, 0, 1]}, r"architecture\.channels: channel counts must be ≥ 1"),
        ({"channels": [1, 2]}, r"architecture\.channels: has 2 entries but 2 layer\(s\) need 3"),
        ({"channels": 3}, r"architecture\.channels: must be a list"),
    ],
)
def test_bad_channels(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Architecture(10, [3, 2], **kwargs)


def test_data_that_does_not_match_the_channels():
    arch = Architecture(10, [3, 2], channels=[2, 3, 1])
    X, Y = _data(arch, 4)
    with pytest.raises(ValueError, match=r"data\.inputs: shape \(4, 3, 10\) has 3 channels.*channels \[2, 3, 1\]"):
        EmpiricalRisk(arch, "square", Dataset(np.concatenate([X, X[:, :1]], axis=1), Y))
    with pytest.raises(ValueError, match=r"data\.inputs: .*no channel axis.*channels"):
        EmpiricalRisk(arch, "square", Dataset(X[:, 0], Y))
    with pytest.raises(ValueError, match=r"filters\[0\] \(layer 1\): expected shape \(3, 2, 3\).*channels"):
        predict(arch, [np.zeros(3), np.zeros((1, 3, 2))], X)


# ------------------------------------------------------------------------------------------------ π and the network
@pytest.mark.parametrize("name", ["1d", "2d"])
def test_network_and_final_filter_match_torch(name):
    arch = ARCHS[name]()
    ws = random_init(arch, 1.0, seed=3)
    X, _ = _data(arch, 5)
    ref = _torch_net(arch, ws, X).numpy()
    assert _rel(predict(arch, ws, X), ref) < 1e-12
    V = network_matrix(arch, ws)
    assert _rel((X.reshape(5, -1) @ V.T).reshape(ref.shape), ref) < 1e-12
    # π is the network's response: v[o, c, t] = output o at position 0 of a unit impulse in channel c at tap t (an
    # input of exactly the final filter's size, stride irrelevant for one output position)
    kv = arch.axes_final_filter_size
    small = Architecture(kv if arch.ndim == 2 else kv[0], arch.filter_sizes, arch.strides, channels=arch.channels)
    c0 = arch.channels[0]
    n = c0 * int(np.prod(kv))
    impulses = np.eye(n).reshape(n, c0, *kv)
    resp = _torch_net(small, ws, impulses).numpy().reshape(n, arch.channels[-1])  # one output position
    v = final_filter(arch, ws)
    assert v.shape == arch.final_filter_shape
    assert _rel(v.reshape(arch.channels[-1], n), resp.T) < 1e-12


def test_single_channel_layouts_agree():
    # (m, d_0) and (m, 1, d_0), filters (k,) and (1, 1, k): identical numbers
    arch = Architecture(12, [3, 2], [1, 2])
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((6, 12)), rng.standard_normal((6, 5))
    ws = random_init(arch, 1.0, seed=1)
    r1 = EmpiricalRisk(arch, "log_cosh", Dataset(X, Y))
    r2 = EmpiricalRisk(arch, "log_cosh", Dataset(X[:, None], Y[:, None]))
    assert r1.value(ws) == r2.value([w.reshape(1, 1, -1) for w in ws])
    assert np.array_equal(r1.gradient(flatten(ws)), r2.gradient(flatten(ws)))
    assert np.array_equal(predict(arch, ws, X), predict(arch, ws, X[:, None])[:, 0])
    # an architecture with channels whose c_0 = c_N = 1 reads (m, d_0) and (m, 1, d_0) alike
    arch_c = Architecture(12, [3, 2], [1, 2], channels=[1, 3, 1])
    wc = random_init(arch_c, 1.0, seed=2)
    a = EmpiricalRisk(arch_c, "square", Dataset(X, Y))
    b = EmpiricalRisk(arch_c, "square", Dataset(X[:, None], Y[:, None]))
    assert a.value(wc) == b.value(wc)


# ------------------------------------------------------------------------------------------------ derivatives
LOSSES = [("square", {}), ("lp", {"p": 3.0}), ("pseudo_huber", {"delta": 0.7}),
          ("generalized_huber", {"alpha": 1.3, "beta": 0.5}), ("log_cosh", {})]


def _quartic_loss() -> Loss:
    return Loss("custom", {}, lambda r: r**4 / 4 + r**2 / 2, lambda r: r**3 + r, lambda r: 3 * r**2 + 1,
                convex=True)


@pytest.mark.parametrize("name", ["1d", "2d"])
@pytest.mark.parametrize(("loss_name", "params"), [*LOSSES, ("custom", {})])
def test_value_gradient_hessian_match_autograd(name, loss_name, params):
    arch = ARCHS[name]()
    X, Y = _data(arch, 4, seed=5)
    loss = _quartic_loss() if loss_name == "custom" else get_loss(loss_name, **params)
    tl = (lambda r: r**4 / 4 + r**2 / 2) if loss_name == "custom" else torch_loss(loss_name, params)
    risk = EmpiricalRisk(arch, loss, Dataset(X, Y))
    w = flatten(random_init(arch, 0.6, seed=7))
    shapes = arch.filter_shapes
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)

    def L(wt):
        ws, i = [], 0
        for s in shapes:
            n = int(np.prod(s))
            ws.append(wt[i : i + n].reshape(s))
            i += n
        return tl(_torch_net(arch, ws, Xt) - Yt).sum() / X.shape[0]

    wt = torch.tensor(w, requires_grad=True)
    val_t = L(wt)
    g_t = torch.autograd.grad(val_t, wt)[0].numpy()
    H_t = torch.autograd.functional.hessian(L, torch.tensor(w)).numpy()
    val, g = risk.flat_value_and_gradient(w)
    assert abs(val - val_t.item()) <= 1e-12 * abs(val_t.item())
    assert _rel(g, g_t) < 1e-11
    assert _rel(risk.flat_hessian(w), H_t) < 1e-11
    assert _rel(risk.hessian(unflatten(arch, w)), H_t) < 1e-11


def test_square_loss_statistics_are_the_patch_gram():
    arch = ARCHS["1d"]()
    X, Y = _data(arch, 30)
    risk = EmpiricalRisk(arch, "square", Dataset(X, Y))
    # the multichannel patch matrix built entry by entry: row (j, a), column (c, t) holds x_j[c, a·s_v + t]
    kv, sv, dN = arch.final_filter_size, arch.final_stride, arch.output_size
    H = np.array([[X[j, c, a * sv + t] for c in range(arch.channels[0]) for t in range(kv)]
                  for j in range(30) for a in range(dN)])
    assert np.array_equal(patch_matrix(arch, X), H)
    gamma = H.T @ H / 30
    assert _rel(risk.patch_gram, gamma) < 1e-13
    assert _rel(risk.gram, np.kron(np.eye(arch.channels[-1]), gamma)) < 1e-13
    assert risk.data_condition.final_filter_size == H.shape[1]
    assert risk.data_condition.rank == np.linalg.matrix_rank(H)


# ------------------------------------------------------------------------------------------------ symmetry
def test_gl_symmetry_and_invariants():
    arch = ARCHS["1d"]()
    rng = np.random.default_rng(4)
    ws = random_init(arch, 1.0, seed=4)
    A = rng.standard_normal((3, 3)) + 3 * np.eye(3)  # acts on the 3 channels after layer 1
    moved = [np.einsum("ab,bck->ack", A, ws[0]), np.einsum("oak,ab->obk", ws[1], np.linalg.inv(A)), ws[2]]
    assert _rel(final_filter(arch, moved), final_filter(arch, ws)) < 1e-12
    X, Y = _data(arch, 6)
    risk = EmpiricalRisk(arch, "pseudo_huber", Dataset(X, Y))
    w = flatten(ws)
    U = symmetry_basis(arch, w)
    assert U.shape[1] == arch.symmetry_dim
    g = risk.gradient(w)
    assert np.max(np.abs(U.T @ g)) < 1e-12 * np.linalg.norm(g)
    # one channel: the matrices reduce to today's δ_i = ‖w^(i+1)‖² − ‖w^(i)‖²
    inv = invariants(arch, w)
    d1 = (np.einsum("oak,obk->ab", ws[1], ws[1]) - np.einsum("ack,bck->ab", ws[0], ws[0])).ravel()
    assert np.allclose(inv[:9], d1, rtol=1e-13, atol=0)


def test_invariants_constant_along_a_flow_and_verdict_outside_the_proved_setting():
    arch = Architecture(16, [3, 3], channels=[2, 3, 2])
    X, Y = _data(arch, 20, seed=2)
    risk = EmpiricalRisk(arch, "log_cosh", Dataset(X, Y))
    res = gradient_flow(risk, random_init(arch, 0.3, seed=1), rtol=1e-8, atol=1e-10)
    inv = np.array([invariants(arch, w) for w in res.trajectory])
    scale = max(float(np.sum(res.trajectory[0] ** 2)), 1.0)
    # the integrator's local error control at rtol 1e-8 keeps the drift of the conserved quantities at that level
    assert np.max(np.abs(inv - inv[0])) <= 1e-6 * scale
    assert res.invariant_drift <= 1e-6
    assert res.critical_point is not None and res.critical_point.kind != "not_critical"
    check = theorem_hypotheses(risk)
    assert not check.covered and any("outside the proved setting" in f for f in check.failures)
    assert "outside the proved setting" in risk.data_condition.explanation


def test_dense_networks_end_certified_at_the_global_minimum():
    # k_i = 1: a dense linear network; square loss and full-rank data: every local minimum is global
    arch = Architecture(3, [1, 1, 1], channels=[3, 4, 4, 2])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3, 3))
    Y = rng.standard_normal((30, 2, 3))
    risk = EmpiricalRisk(arch, "square", Dataset(X, Y))
    for seed in range(20):
        res = gradient_flow(risk, random_init(arch, 0.5, seed=seed))
        cp = res.critical_point
        assert res.stop_reason.value == "minimum", (seed, res.message)
        assert cp.kind == "global_minimum" and cp.unconstrained_optimum_reached, (seed, cp.summary())
        assert abs(cp.value - risk.minimum_value) <= 1e-10 * risk.minimum_value


# ------------------------------------------------------------------------------------------------ torch interop
@pytest.mark.parametrize("name", ["1d", "2d"])
def test_torch_round_trip(name):
    arch = ARCHS[name]()
    ws = random_init(arch, 1.0, seed=9)
    module = to_torch(arch, ws)
    X, _ = _data(arch, 3)
    with torch.no_grad():
        out = module(torch.from_numpy(X)).numpy()
    assert _rel(out, predict(arch, ws, X)) < 1e-12
    arch2, ws2 = from_torch(module, arch.input_size)
    assert arch2 == arch
    assert all(np.max(np.abs(a - b)) <= 1e-12 * np.max(np.abs(b)) for a, b in zip(ws2, ws, strict=True))


def test_bottleneck_limit_is_reduced_rank_regression_and_on_m_is_an_honest_bound():
    # channels 3 → 1 → 3 with k = 1: M = rank ≤ 1 matrices (not filling), the unconstrained optimum is outside M; the
    # best point of M is the reduced-rank regression (closed form: project the least-squares fit onto its top right
    # singular vector), which lcnflow can only bound by local searches: "undecided on M", never "global" unproven
    arch = Architecture(4, [1, 1], channels=[3, 1, 3])
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 3, 4))
    Y = np.einsum("oc,jca->joa", rng.standard_normal((3, 3)), X) + 0.1 * rng.standard_normal((40, 3, 4))
    risk = EmpiricalRisk(arch, "square", Dataset(X, Y))
    H = np.moveaxis(X, 1, -1).reshape(-1, 3)
    Ym = np.moveaxis(Y, 1, -1).reshape(-1, 3)
    B = np.linalg.lstsq(H, Ym, rcond=None)[0]
    sv = np.linalg.svd(H @ B, compute_uv=False)
    best = 0.5 * float(np.sum((H @ B - Ym) ** 2)) / 40 + 0.5 * float(np.sum(sv[1:] ** 2)) / 40
    assert not arch.is_filling and arch.function_space_dim == 5  # rank-1 3 × 3 matrices: 1·(3 + 3 − 1)
    res = gradient_flow(risk, random_init(arch, 0.5, seed=0))
    cp = res.critical_point
    assert res.stop_reason.value == "minimum"
    assert abs(cp.value - best) <= 1e-10 * best
    assert not cp.unconstrained_optimum_reached and cp.kind == "local_minimum" and cp.global_on_m is None
    assert "undecided on M" in cp.summary()


@pytest.mark.parametrize("loss", ["square", "pseudo_huber"])
def test_minibatch_risk_is_the_risk_of_the_batch(loss):
    arch = ARCHS["1d"]()
    X, Y = _data(arch, 12, seed=3)
    risk = EmpiricalRisk(arch, loss, Dataset(X, Y))
    w = flatten(random_init(arch, 0.5, seed=2))
    batch = np.array([3, 7, 7, 0, 11])  # repeats count
    sub = EmpiricalRisk(arch, loss, Dataset(X[batch], Y[batch]))
    val, g = risk.flat_minibatch_value_and_gradient(w, batch)
    val_s, g_s = sub.flat_value_and_gradient(w)
    assert abs(val - val_s) <= 1e-13 * abs(val_s) and _rel(g, g_s) < 1e-13
    if loss == "square":
        G, b, c = risk.minibatch_statistics(batch)
        assert _rel(G, sub.gram) < 1e-13 and _rel(b, sub.moment) < 1e-13 and abs(c - sub.constant) <= 1e-13 * c


def test_a_torch_model_trained_in_torch_is_imported_and_its_flow_continued():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3, bias=False, dtype=torch.float64),
                                torch.nn.Conv1d(3, 1, 2, stride=2, bias=False, dtype=torch.float64))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 2, 22))
    Y = rng.standard_normal((50, 1, 10))
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(50):
        opt.zero_grad()
        loss = ((model(Xt) - Yt) ** 2 / 2).sum() / 50
        loss.backward()
        opt.step()
    arch, layers = from_torch(model, 22)
    assert arch.channels == (2, 3, 1) and arch.axes_strides == ((1,), (2,))
    risk = EmpiricalRisk(arch, "square", Dataset(X, Y[:, 0]))  # c_N = 1: targets (m, d_N) read alike
    with torch.no_grad():
        assert abs(risk.value(layers) - float(((model(Xt) - Yt) ** 2 / 2).sum() / 50)) <= 1e-12 * risk.value(layers)
    res = gradient_flow(risk, layers)
    assert res.certified and res.loss < risk.value(layers)
