r"""Layer matrices Π, the final filter π, its derivatives, and the patch operator H.

Conventions (those of ``torch.nn.functional.conv1d``/``conv2d`` with ``bias=False, padding=0, dilation=1``): a
layer with filter ``w ∈ R^k`` and stride ``s`` maps ``x`` to

.. math:: (Π(w) x)_a = \sum_{j=0}^{k-1} w_j x_{a s + j},

2D layers are the same per axis with multi-indices, and 2D signals are flattened row-major.  The network
``V = Π(w^{(N)}) ⋯ Π(w^{(1)})`` is one convolution with the final filter

.. math:: v = π(w) = w^{(1)} ∗ ↑_{S_1} w^{(2)} ∗ ⋯ ∗ ↑_{S_{N-1}} w^{(N)},
          \qquad p_v(t) = \prod_i p_{w^{(i)}}(t^{S_{i-1}}),

where ``∗`` is the full convolution (polynomial product) and ``↑_S`` inserts ``S − 1`` zeros between entries.
Everything here computes π and its derivatives by dilated polynomial products; the dense matrices
(:func:`layer_matrix`, :func:`network_matrix`) exist for inspection and tests.

Flat parameter vectors list the filters layer by layer, each row-major (:func:`flatten`, :func:`unflatten`).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence

import numpy as np

from lcnflow.model.architecture import Architecture, Size, SizeRuleWarning
from lcnflow.model.channels import ChannelParts

Filters = list[np.ndarray]

__all__ = [
    "FinalFilterParts",
    "final_filter",
    "final_filter_hessian_contraction",
    "final_filter_jacobian",
    "final_filter_parts",
    "final_filter_vjp",
    "flatten",
    "layer_matrix",
    "network_matrix",
    "patch_matrix",
    "patch_rows",
    "predict",
    "random_init",
    "unflatten",
]


# ---------------------------------------------------------------------------------------------- flat <-> filters
def flatten(filters: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate filters into one float64 vector, layer by layer, row-major inside each filter."""
    return np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in filters])


def unflatten(arch: Architecture, vector: np.ndarray) -> Filters:
    """Split a flat parameter vector (see :func:`flatten`) into the architecture's filters.

    Raises
    ------
    ValueError
        If the vector does not have ``arch.num_params`` entries.
    """
    vector = np.asarray(vector, dtype=np.float64)
    if vector.ndim != 1 or vector.size != arch.num_params:
        raise ValueError(
            f"parameter vector: expected a flat vector of {arch.num_params} entries for {arch!r}, "
            f"got shape {vector.shape}"
        )
    return unflatten_unchecked(arch, vector)


def unflatten_unchecked(arch: Architecture, vector: np.ndarray) -> Filters:
    """:func:`unflatten` of a float64 vector already known to have ``arch.num_params`` entries (the analysis' hot
    paths): views of ``vector``, nothing checked."""
    starts, shapes = _layout(arch)
    return [vector[a:b].reshape(shape) for a, b, shape in zip(starts[:-1], starts[1:], shapes, strict=True)]


@functools.lru_cache(maxsize=128)
def _layout(arch: Architecture) -> tuple[list[int], tuple[tuple[int, ...], ...]]:
    """Index of each layer's first coefficient in a flat vector (and ``P``), and the filter shapes."""
    starts = _plan(arch)["starts"] if not arch.is_multichannel else _channel_starts(arch)
    return starts, arch.filter_shapes


def flat_norm(x: np.ndarray) -> float:
    """``‖x‖₂`` of a real float64 array as a float: what ``float(np.linalg.norm(x))`` computes (``√(x·x)`` over
    ``x.ravel(order="K")``, to the last bit) without its dispatch, for the small vectors of the hot paths."""
    x = x.ravel(order="K")
    return math.sqrt(x.dot(x))


@functools.lru_cache(maxsize=128)
def _channel_starts(arch: Architecture) -> list[int]:
    """Index of each layer's first coefficient in a flat vector, and ``P`` (architectures with channels)."""
    return [int(x) for x in np.concatenate([[0], np.cumsum(arch.layer_num_params)])]


def _check_real(w: object, what: str) -> None:
    """Refuse booleans and complex numbers (NumPy would turn them into 0/1 or drop the imaginary part)."""
    kind = getattr(getattr(w, "dtype", None), "kind", None)
    if kind is None and not isinstance(w, str | bytes):
        try:
            kind = np.asarray(w).dtype.kind
        except (TypeError, ValueError):
            return  # (the conversion to float64 says what is wrong)
    if kind == "b" or isinstance(w, bool):
        raise ValueError(f"{what}: boolean coefficients; filters are real numbers (give 0.0/1.0 if that is meant)")
    if kind == "c":
        raise ValueError(f"{what}: complex coefficients; filters are real numbers")


def as_filters(arch: Architecture, filters: Sequence[np.ndarray] | np.ndarray, what: str = "filters") -> Filters:
    """Validate filters (a list of arrays, or a flat vector) against ``arch``; return float64 arrays.

    Raises
    ------
    ValueError
        Wrong number of layers, a wrong filter shape, a non-finite coefficient, or coefficients that are not real
        numbers (booleans, complex numbers, strings: converting them would silently change their meaning); the
        message names the layer.
    """
    if isinstance(filters, np.ndarray) and filters.ndim == 1 and filters.dtype != object:
        _check_real(filters, what)
        out = unflatten(arch, filters)
        if np.isfinite(filters).all():  # (one test of the whole vector; a layer's own only to name a bad one)
            return out
    else:
        if isinstance(filters, np.ndarray | str) or not isinstance(filters, Sequence):
            raise ValueError(f"{what}: expected a list of {arch.depth} arrays (one per layer), got {type(filters)}")
        if len(filters) != arch.depth:
            raise ValueError(f"{what}: expected {arch.depth} filters (one per layer), got {len(filters)}")
        out = []
        for i, (w, shape) in enumerate(zip(filters, arch.filter_shapes, strict=True)):
            if callable(getattr(w, "detach", None)) and callable(getattr(w, "cpu", None)):  # a torch tensor
                w = w.detach().cpu().numpy()
            _check_real(w, f"{what}[{i}] (layer {i + 1})")
            try:
                a = np.asarray(w, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{what}[{i}] (layer {i + 1}): not a numeric array") from None
            if a.shape != shape:
                if (a.size == math.prod(shape) and a.ndim <= 1 and len(shape) == 1) or _same_taps(a.shape, shape,
                                                                                                  arch.ndim):
                    a = a.reshape(shape)
                else:
                    extra = (f" (a layer is (c_out, c_in, *k) with architecture.channels {list(arch.channels)})"
                             if arch.is_multichannel or a.ndim == arch.ndim + 2 else "")
                    raise ValueError(f"{what}[{i}] (layer {i + 1}): expected shape {shape}, got shape {a.shape}{extra}")
            out.append(a)
    for i, a in enumerate(out):
        bad = ~np.isfinite(a)
        if bad.any():
            raise ValueError(
                f"{what}[{i}] (layer {i + 1}): {int(bad.sum())} non-finite coefficient(s), first at index "
                f"{tuple(int(t) for t in np.argwhere(bad)[0])}"
            )
    return out


def _same_taps(given: tuple[int, ...], shape: tuple[int, ...], ndim: int) -> bool:
    """Whether a filter of shape ``given`` is the one of ``shape`` up to leading ``(1, 1)`` channel axes (a
    single-channel layer given as ``(k,)`` or as torch's ``(1, 1, k)``)."""
    def strip(t):
        return t[2:] if len(t) == ndim + 2 and t[:2] == (1, 1) else t

    return strip(given) == strip(shape) and len(strip(given)) == ndim


# ---------------------------------------------------------------------------------------------- small kernels
def _dilate(u: np.ndarray, stride: tuple[int, ...]) -> np.ndarray:
    """``↑_S u``: insert ``S − 1`` zeros between consecutive entries along every axis."""
    if all(s == 1 for s in stride):
        return u
    out = np.zeros(tuple((n - 1) * s + 1 for n, s in zip(u.shape, stride, strict=True)))
    out[tuple(slice(None, None, s) for s in stride)] = u
    return out


def _conv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Full convolution (polynomial product) of two 1D or 2D arrays."""
    if a.ndim == 1:
        return np.convolve(a, b)
    import scipy.signal  # 2D only; imported lazily (it costs ~1 s at start-up)

    return scipy.signal.convolve2d(a, b)


def _corr_valid(g: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Valid cross-correlation ``out[j] = Σ_t g[j + t] c[t]`` (1D or 2D)."""
    if g.ndim == 1:
        return np.correlate(g, c, "valid")
    import scipy.signal

    return scipy.signal.correlate2d(g, c, "valid")


def _mul(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """Polynomial product where ``None`` stands for the constant polynomial 1 (saves a convolution)."""
    if a is None:
        return b
    if b is None:
        return a
    return _conv(a, b)


def _one(a: np.ndarray | None, ndim: int) -> np.ndarray:
    return np.ones((1,) * ndim) if a is None else a


def _dilated(arch: Architecture, filters: Filters) -> list[np.ndarray]:
    plan = _plan(arch)
    if not plan["dilate"]:
        return list(filters)
    S = arch.cumulative_strides
    return [_dilate(w, S[i]) if plan["dilate"][i] else w for i, w in enumerate(filters)]


class FinalFilterParts:
    r"""π(w) kept as the partial products that its derivatives reuse.

    With the dilated filters ``d_i = ↑_{S_{i−1}} w^{(i)}`` (``i = 1 … N``), the prefix products
    ``P_i = d_1 ∗ ⋯ ∗ d_{i−1}`` and the suffix products ``Q_i = d_i ∗ ⋯ ∗ d_N`` (empty products are the constant
    polynomial 1):

    .. math:: v = π(w) = P_{N+1}, \qquad c_i = P_i ∗ Q_{i+1} = \mathop{∗}_{l \ne i} d_l,
              \qquad e_{il} = P_i ∗ d_{i+1} ∗ ⋯ ∗ d_{l−1} ∗ Q_{l+1}.

    ``2N`` polynomial products give π and every cofactor ``c_i``, so a gradient, the Jacobian ``dπ`` and the
    second-order term ``Σ_t g_t ∇²π_t`` all come from one factorization.  Build it with
    :func:`final_filter_parts`.

    Attributes
    ----------
    arch : Architecture
    dilated : list of ndarray
        ``d_1 … d_N``.
    prefix, suffix : list
        ``P_1 … P_{N+1}`` and ``Q_1 … Q_{N+1}`` (``None`` stands for the constant 1).
    """

    __slots__ = ("arch", "dilated", "prefix", "suffix")

    def __init__(self, arch: Architecture, filters: Filters):
        self.arch = arch
        self.dilated = dil = _dilated(arch, filters)
        n = len(dil)
        self.prefix: list = [None] * (n + 1)
        self.suffix: list = [None] * (n + 1)
        for i in range(n):
            self.prefix[i + 1] = _mul(self.prefix[i], dil[i])
        for i in range(n - 1, -1, -1):
            self.suffix[i] = _mul(dil[i], self.suffix[i + 1])

    @property
    def final_filter(self) -> np.ndarray:
        """``v = π(w)``, shape ``arch.final_filter_shape`` (do not modify it in place: it may share memory with
        ``w^{(1)}`` when ``N = 1``)."""
        return _one(self.prefix[-1], self.arch.ndim)

    def cofactors(self) -> list[np.ndarray]:
        """``c_i = ∗_{l ≠ i} ↑_{S_{l−1}} w^{(l)}`` for every layer: ``∂v_{j S_{i−1} + t} / ∂w^{(i)}_j = c_{i,t}``."""
        return [_one(_mul(self.prefix[i], self.suffix[i + 1]), self.arch.ndim) for i in range(len(self.dilated))]

    def vjp(self, g: np.ndarray) -> Filters:
        r"""``dπ(w)ᵀ g`` per layer: ``(dπ_i^\top g)_j = Σ_t g_{j S_{i−1} + t} c_{i,t}`` (``g`` shaped like ``v``)."""
        slices = _plan(self.arch)["vjp_slices"]
        return [_corr_valid(g, c)[slices[i]] for i, c in enumerate(self.cofactors())]

    def jacobian(self) -> np.ndarray:
        """``dπ(w)``, a ``k_v × P`` matrix: column ``j`` of block ``i`` is ``c_i`` shifted by ``j·S_{i−1}``."""
        arch = self.arch
        plan = _plan(arch)
        J = np.zeros((arch.final_filter_num_params, arch.num_params))
        J[plan["jac_rows"], plan["jac_cols"]] = np.concatenate([c.ravel() for c in self.cofactors()])[plan["jac_src"]]
        return J

    def hessian_contraction(self, g: np.ndarray) -> np.ndarray:
        r"""``Σ_t g_t ∇²π_t(w)`` (``P × P``): zero diagonal blocks, and for layers ``i < l``
        ``B_{il}[j, j'] = Σ_u g_{j S_{i−1} + j' S_{l−1} + u} e_{il,u}`` (``g`` shaped like ``v``)."""
        arch = self.arch
        plan = _plan(arch)
        starts = plan["starts"]
        dil, prefix, suffix = self.dilated, self.prefix, self.suffix
        out = np.zeros((arch.num_params, arch.num_params))
        mids: dict[tuple[int, int], np.ndarray | None] = {}
        for i, l, idx in plan["pairs"]:  # noqa: E741  (pairs are ordered by i, then l)
            mid = None if l == i + 1 else _mul(mids[(i, l - 1)], dil[l - 1])
            mids[(i, l)] = mid
            e = _one(_mul(_mul(prefix[i], mid), suffix[l + 1]), arch.ndim)
            block = _corr_valid(g, e).ravel()[idx]
            out[starts[i] : starts[i + 1], starts[l] : starts[l + 1]] = block
            out[starts[l] : starts[l + 1], starts[i] : starts[i + 1]] = block.T
        return out


def final_filter_parts(arch: Architecture, filters: Filters) -> FinalFilterParts:
    """Factor π at ``filters`` (see :class:`FinalFilterParts`) for derivatives that share the products.

    ``filters`` must already be validated float64 arrays (:func:`as_filters`, :func:`unflatten`): this is the
    evaluators' hot path and checks nothing.  With channels the parts are a
    :class:`~lcnflow.model.channels.ChannelParts` (products of polynomial matrices, the same methods).
    """
    if arch.is_multichannel:
        return ChannelParts(filters, arch.cumulative_strides[:-1])
    return FinalFilterParts(arch, filters)


@functools.lru_cache(maxsize=128)
def _plan(arch: Architecture) -> dict:
    """Index arrays that turn the Jacobian and second-order contraction of π into single fancy-index operations."""
    S, kv = arch.cumulative_strides, arch.final_filter_shape
    n = arch.depth
    cof_shapes = [
        tuple(kv[a] - (k[a] - 1) * S[i][a] for a in range(arch.ndim)) for i, k in enumerate(arch.filter_shapes)
    ]
    jac_rows, jac_cols = [], []
    starts = np.concatenate([[0], np.cumsum(arch.layer_num_params)]).astype(int)
    for i, k in enumerate(arch.filter_shapes):
        j = np.indices(k).reshape(arch.ndim, -1)  # filter multi-indices, row-major
        t = np.indices(cof_shapes[i]).reshape(arch.ndim, -1)
        pos = j[:, :, None] * np.array(S[i])[:, None, None] + t[:, None, :]
        jac_rows.append(np.ravel_multi_index(tuple(pos), kv))
        jac_cols.append(np.broadcast_to(starts[i] + np.arange(j.shape[1])[:, None], pos.shape[1:]))
    pairs = []
    for i in range(n):
        for l in range(i + 1, n):  # noqa: E741
            ki, kl = arch.filter_shapes[i], arch.filter_shapes[l]
            corr_shape = tuple((ki[a] - 1) * S[i][a] + (kl[a] - 1) * S[l][a] + 1 for a in range(arch.ndim))
            ji = np.indices(ki).reshape(arch.ndim, -1)
            jl = np.indices(kl).reshape(arch.ndim, -1)
            pos = ji[:, :, None] * np.array(S[i])[:, None, None] + jl[:, None, :] * np.array(S[l])[:, None, None]
            pairs.append((i, l, np.ravel_multi_index(tuple(pos), corr_shape)))
    cof_sizes = [math.prod(c) for c in cof_shapes]
    cof_starts = np.concatenate([[0], np.cumsum(cof_sizes)]).astype(int)
    jac_src = [cof_starts[i] + np.tile(np.arange(cof_sizes[i]), arch.layer_num_params[i]) for i in range(n)]
    return {
        "dilate": [any(x > 1 for x in S[i]) for i in range(n)] if any(any(x > 1 for x in s) for s in S) else [],
        "jac_rows": np.concatenate([r.ravel() for r in jac_rows]),
        "jac_cols": np.concatenate([c.ravel() for c in jac_cols]),
        "jac_src": np.concatenate(jac_src),
        "pairs": pairs,
        "starts": [int(x) for x in starts],
        "vjp_slices": [tuple(slice(None, None, s) for s in S[i]) for i in range(n)],
    }


# ---------------------------------------------------------------------------------------------- π and derivatives
def final_filter(arch: Architecture, filters: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    r"""The final filter ``v = π(w) = w^{(1)} ∗ ↑_{S_1} w^{(2)} ∗ ⋯ ∗ ↑_{S_{N−1}} w^{(N)}``.

    As polynomials, ``p_v(t) = Π_i p_{w^{(i)}}(t^{S_{i−1}})`` (2D: per axis).  Computed by dilated polynomial
    products, never through dense matrices.

    Returns
    -------
    ndarray, shape ``arch.final_filter_shape``
    """
    return final_filter_unchecked(arch, as_filters(arch, filters))


def final_filter_unchecked(arch: Architecture, filters: Filters) -> np.ndarray:
    """π for already validated float64 filters (the integrators' hot path)."""
    if arch.is_multichannel:
        return ChannelParts(filters, arch.cumulative_strides[:-1]).final_filter
    v = None
    for d in _dilated(arch, filters):
        v = _mul(v, d)
    return v.copy() if v is filters[0] else v


def final_filter_vjp(arch: Architecture, filters: Filters, g: np.ndarray) -> Filters:
    r"""Vector–Jacobian product ``dπ(w)ᵀ g``, layer by layer.

    .. math:: (dπ_i^\top g)_j = \sum_t g_{j S_{i-1} + t}\, c_{i,t},
              \qquad c_i = \mathop{∗}_{l \ne i} ↑_{S_{l-1}} w^{(l)}.

    ``filters`` must already be validated float64 arrays; ``g`` has the final filter's shape.  A caller that also
    needs π or other derivatives at the same point shares the work through :func:`final_filter_parts`.
    """
    return final_filter_parts(arch, filters).vjp(g)


def final_filter_jacobian(arch: Architecture, filters: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    r"""The Jacobian ``dπ(w)``: a ``k_v × P`` matrix (final filter and parameters both flattened row-major).

    Column ``j`` of block ``i`` is ``c_i`` shifted by ``j·S_{i−1}``: ``∂v_{jS_{i−1}+t}/∂w^{(i)}_j = c_{i,t}``.
    """
    return final_filter_parts(arch, as_filters(arch, filters)).jacobian()


def final_filter_hessian_contraction(
    arch: Architecture, filters: Sequence[np.ndarray] | np.ndarray, g: np.ndarray
) -> np.ndarray:
    r"""``Σ_t g_t ∇²π_t(w)``: the ``P × P`` second-order term of the Hessian of ``ℒ ∘ π``.

    π is multilinear, so the diagonal blocks vanish; for layers ``i ≠ l``

    .. math:: B_{il}[j, j'] = \sum_u g_{j S_{i-1} + j' S_{l-1} + u}\, e_{il,u},
              \qquad e_{il} = \mathop{∗}_{n \ne i, l} ↑_{S_{n-1}} w^{(n)}.
    """
    g = np.asarray(g, dtype=np.float64).reshape(arch.final_filter_shape)
    return final_filter_parts(arch, as_filters(arch, filters)).hessian_contraction(g)


# ---------------------------------------------------------------------------------------------- dense matrices
def layer_matrix(filter: np.ndarray, input_size: Size, stride: Size = 1) -> np.ndarray:
    r"""Dense matrix of one layer, ``(Π(w) x)_a = Σ_j w_j x_{a·s + j}``, acting on row-major flattened signals.

    Parameters
    ----------
    filter : ndarray, shape ``(k,)`` or ``(k_h, k_w)``
    input_size : int or (h, w)
    stride : int or (s_h, s_w)

    Returns
    -------
    ndarray, shape ``(prod(d_out), prod(d_in))``
    """
    w = np.asarray(filter, dtype=np.float64)
    arch = Architecture(input_size, [w.shape[0] if w.ndim == 1 else w.shape], [stride])
    d_in, d_out = arch.axes_layer_sizes
    (s,) = arch.axes_strides
    mat = np.zeros(d_out + d_in)
    for a in np.ndindex(*d_out):
        for j in np.ndindex(*w.shape):
            mat[a + tuple(ai * si + ji for ai, si, ji in zip(a, s, j, strict=True))] += w[j]
    return mat.reshape(math.prod(d_out), math.prod(d_in))


def channel_layer_matrix(weight: np.ndarray, input_size: Size, stride: Size = 1) -> np.ndarray:
    r"""Dense matrix of one multi-channel layer, ``(Π(W) x)[o, a] = Σ_{c, j} W[o, c, j] x[c, a·s + j]``.

    Signals are flattened channel-major, then positions row-major (torch's ``(c, *d)`` layout).

    Parameters
    ----------
    weight : ndarray, shape ``(c_out, c_in, k)`` or ``(c_out, c_in, k_h, k_w)``

    Returns
    -------
    ndarray, shape ``(c_out · prod(d_out), c_in · prod(d_in))``
    """
    W = np.asarray(weight, dtype=np.float64)
    blocks = [[layer_matrix(W[o, c], input_size, stride) for c in range(W.shape[1])] for o in range(W.shape[0])]
    return np.block(blocks)


def network_matrix(arch: Architecture, filters: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Dense ``V = Π(w^{(N)}) ⋯ Π(w^{(1)})``, shape ``(prod(d_N), prod(d_0))`` (with channels
    ``(c_N·prod(d_N), c_0·prod(d_0))``, channel-major); for inspection and tests."""
    filters = as_filters(arch, filters)
    if arch.is_multichannel:
        V = np.eye(arch.channels[0] * math.prod(arch.axes_layer_sizes[0]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SizeRuleWarning)
            for i, w in enumerate(filters):
                V = channel_layer_matrix(w, arch.layer_sizes[i], arch.strides[i]) @ V
        return V
    V = np.eye(math.prod(arch.axes_layer_sizes[0]))
    with warnings.catch_warnings():  # the architecture itself already warned about dropped inputs
        warnings.simplefilter("ignore", SizeRuleWarning)
        for i, w in enumerate(filters):
            V = layer_matrix(w, arch.layer_sizes[i], arch.strides[i]) @ V
    return V


# ---------------------------------------------------------------------------------------------- patch operator
def patch_rows(arch: Architecture, inputs: np.ndarray) -> np.ndarray:
    r"""Patches of ``inputs`` as a strided view, shape ``(m, *d_N, *k_v)``: ``[j, a, :] = x_j[a·s_v : a·s_v + k_v]``.

    No copy is made; reshape to ``(m·d_N, k_v)`` for the dense :func:`patch_matrix`.
    """
    if arch.is_multichannel:
        return _channel_patch_rows(arch, inputs)
    kv, sv, dN = arch.final_filter_shape, arch.cumulative_strides[-1], arch.axes_layer_sizes[-1]
    axes = tuple(range(1, arch.ndim + 1))
    win = np.lib.stride_tricks.sliding_window_view(inputs, kv, axis=axes)
    return win[(slice(None), *(slice(None, s * (d - 1) + 1, s) for s, d in zip(sv, dN, strict=True)))]


def _channel_patch_rows(arch: Architecture, inputs: np.ndarray) -> np.ndarray:
    """Multichannel patches of inputs ``(m, c_0, *d_0)`` as a view ``(m, *d_N, c_0, *k_v)``:
    ``[j, a, c, t] = x_j[c, a·s_v + t]`` (for any ``c_0``, also 1)."""
    kv, sv, dN = arch.axes_final_filter_size, arch.cumulative_strides[-1], arch.axes_layer_sizes[-1]
    nd = arch.ndim
    win = np.lib.stride_tricks.sliding_window_view(inputs, kv, axis=tuple(range(2, nd + 2)))
    win = win[(slice(None), slice(None), *(slice(None, s * (d - 1) + 1, s) for s, d in zip(sv, dN, strict=True)))]
    return win.transpose(0, *range(2, nd + 2), 1, *range(nd + 2, 2 * nd + 2))


def patch_matrix(arch: Architecture, inputs: np.ndarray) -> np.ndarray:
    r"""The patch (Hankel) operator ``H``: ``(Π_{k_v,s_v}(v) x_j)_a = (H v)_{(j,a)}``, ``H_{(j,a),t} = x_{j,a s_v+t}``.

    Rows are sample-major, then output positions row-major; columns are the final filter's coefficients row-major.
    With channels (inputs ``(m, c_0, *d_0)``) this is the *multichannel* patch matrix, columns ``(c, t)``
    row-major: output channel ``o`` of the network is ``H v[o].ravel()``, so the full operator is ``I_{c_N} ⊗ H``.

    Returns
    -------
    ndarray, shape ``(m · prod(d_N), prod(k_v))`` (with channels ``(m · prod(d_N), c_0 · prod(k_v))``)
    """
    inputs = np.asarray(inputs, dtype=np.float64)
    if arch.is_multichannel:
        return patch_rows(arch, inputs).reshape(-1, arch.channels[0] * math.prod(arch.axes_final_filter_size))
    return patch_rows(arch, inputs).reshape(-1, arch.final_filter_num_params)


# ---------------------------------------------------------------------------------------------- users' helpers
def random_init(arch: Architecture, scale: float = 0.1, seed: int | None = None) -> Filters:
    r"""Random initial filters: every coefficient i.i.d. ``N(0, scale²)``.

    .. math:: w^{(i)}_j = \text{scale} \cdot z_{i,j}, \qquad z_{i,j} \sim N(0, 1) \text{ i.i.d.},

    drawn layer by layer (each row-major) from ``numpy.random.default_rng(seed)``.  This is the initialization of
    experiment configs (``[init] scale, seed``), so ``random_init(arch, cfg.init.scale, cfg.init.seed)`` reproduces
    a config's ``w(0)`` exactly.

    Parameters
    ----------
    arch : Architecture
    scale : float, default 0.1
        Standard deviation of each coefficient, ``≥ 0`` (0 gives the all-zero critical point).
    seed : int, optional
        Seed of the generator (``None``: fresh entropy).

    Returns
    -------
    list of ndarray
        One float64 filter per layer, of shape ``arch.filter_shapes[i]``.

    Raises
    ------
    TypeError
        ``arch`` is not an :class:`~lcnflow.Architecture`.
    ValueError
        ``scale`` negative or not finite, or ``seed`` negative.
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch: expected an lcnflow.Architecture, got {type(arch).__name__} {arch!r:.60}")
    try:
        sc = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale: expected a number ≥ 0, got {scale!r}") from None
    if not math.isfinite(sc) or sc < 0:
        raise ValueError(f"scale: must be finite and ≥ 0, got {scale!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0):
        raise ValueError(f"seed: expected an integer ≥ 0 or None, got {seed!r}")
    rng = np.random.default_rng(seed)
    return [sc * rng.standard_normal(shape) for shape in arch.filter_shapes]


def predict(arch: Architecture, filters: Sequence[np.ndarray] | np.ndarray, inputs: np.ndarray) -> np.ndarray:
    r"""Apply the network to inputs: ``V x = Π(w^{(N)}) ⋯ Π(w^{(1)}) x`` for each sample.

    Computed as one strided correlation with the final filter ``v = π(w)``,

    .. math:: (V x)_a = \sum_{t} v_t \, x_{a \cdot s_v + t}, \qquad a = 0, …, d_N − 1

    (per axis in 2D), which equals applying the layers one after the other.

    Parameters
    ----------
    arch : Architecture
    filters : list of ndarray or flat ndarray
        One filter per layer (see :func:`as_filters`).
    inputs : ndarray
        One sample of shape ``d_0`` (1D) / ``(h, w)`` (2D), or a batch ``(m, d_0)`` / ``(m, h, w)``.

    Returns
    -------
    ndarray
        Shape ``(m, d_N)`` / ``(m, h_N, w_N)`` for a batch, ``(d_N,)`` / ``(h_N, w_N)`` for one sample.

    Raises
    ------
    ValueError
        Filters that do not fit ``arch``, inputs of the wrong shape, or non-finite inputs.
    """
    ws = as_filters(arch, filters)
    try:
        x = np.asarray(inputs, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"inputs: not a numeric array ({type(inputs).__name__})") from None
    if arch.is_multichannel or x.ndim == arch.ndim + 2:
        return _predict_channels(arch, ws, x)
    d0 = arch.axes_layer_sizes[0]
    single = x.shape == d0
    if single:
        x = x[None]
    if x.shape[1:] != d0 or x.ndim != arch.ndim + 1:
        want = f"{d0[0]}" if arch.ndim == 1 else f"{d0[0]}, {d0[1]}"
        raise ValueError(f"inputs: expected shape ({want}) or (m, {want}) for input size {arch.layer_sizes[0]}, "
                         f"got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("inputs: contain NaN or infinite values")
    v = final_filter_unchecked(arch, ws).reshape(arch.final_filter_shape)
    out = np.tensordot(patch_rows(arch, x), v, axes=arch.ndim)
    return out[0] if single else out


def _predict_channels(arch: Architecture, ws: Filters, x: np.ndarray) -> np.ndarray:
    """:func:`predict` for inputs with a channel axis, ``(m, c_0, *d_0)`` or one sample ``(c_0, *d_0)`` (when
    ``c_0 = 1`` also ``(m, *d_0)`` and one sample ``d_0``; ``(1, *d_0)`` is then a batch of one, as for one-channel
    networks): outputs ``(m, c_N, *d_N)`` (``(c_N, *d_N)`` for one sample)."""
    d0, c0 = arch.axes_layer_sizes[0], arch.channels[0]
    if c0 == 1 and x.shape == d0:  # one sample without its channel axis
        x = x[None]
    elif c0 == 1 and x.shape[1:] == d0 and x.ndim == arch.ndim + 1:  # a batch without the channel axis
        x = x[:, None]
    single = x.shape == (c0, *d0)
    if single:
        x = x[None]
    if x.shape[1:] != (c0, *d0):
        raise ValueError(f"inputs: expected shape (m, {c0}, {', '.join(map(str, d0))}) (m samples of c_0 = {c0} "
                         f"channel(s), architecture.channels {list(arch.channels)}, input size "
                         f"{arch.layer_sizes[0]}), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("inputs: contain NaN or infinite values")
    v = final_filter_unchecked(arch, ws).reshape(arch.channels[-1], -1)
    rows = _channel_patch_rows(arch, x)
    out = np.tensordot(rows.reshape(*rows.shape[: arch.ndim + 1], -1), v, axes=([arch.ndim + 1], [1]))
    out = np.moveaxis(out, -1, 1)
    return out[0] if single else out
