r"""π and its derivatives for multi-channel layers: products of polynomial matrices.

Layer ``i`` has a weight ``W_i`` of shape ``(c_i, c_{i−1}, *k_i)`` (torch's ``Conv1d/Conv2d`` layout) and the
polynomial matrix ``P_i(t) = Σ_j W_i[:, :, j] t^j`` (``c_i × c_{i−1}``; 2D: one variable per axis).  The network is
one convolution with the final filter ``v`` of shape ``(c_N, c_0, *k_v)``,

.. math:: P_v(t) = P_N(t^{S_{N−1}}) ⋯ P_2(t^{S_1}) P_1(t), \qquad
          v[o, c, t] = \sum y\text{-paths} \; ∏_i D_i[\cdot, \cdot, t_i],

with the dilated weights ``D_i = ↑_{S_{i−1}} W_i`` (zeros inserted between taps along every axis).  The product is
a matrix product over channels and a full convolution (polynomial product) over taps.  With the prefix and suffix
products ``A_i = D_{i−1} ⋯ D_1`` (``c_{i−1} × c_0``) and ``B_i = D_N ⋯ D_{i+1}`` (``c_N × c_i``), ``v = B_i D_i A_i``
is linear in ``W_i``, and

.. math:: (dπ_i^\top g)[a, b, j] = \sum_{o, c, u, τ} g[o, c, u + j S_{i−1} + τ]\, B_i[o, a, u]\, A_i[b, c, τ].

Everything here works on plain arrays (filters and dilations): :mod:`lcnflow.model.conv` calls it for
architectures with channels.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

_TAPS = "stuvxyz"


def dilate(w: np.ndarray, stride: tuple[int, ...]) -> np.ndarray:
    """``↑_S W``: insert ``S − 1`` zeros between consecutive taps along every tap axis (the last ``len(S)`` axes)."""
    if all(s == 1 for s in stride):
        return w
    nd = len(stride)
    lead = w.shape[: w.ndim - nd]
    out = np.zeros(lead + tuple((n - 1) * s + 1 for n, s in zip(w.shape[w.ndim - nd :], stride, strict=True)))
    out[(Ellipsis, *(slice(None, None, s) for s in stride))] = w
    return out


def mat_poly_mul(a: np.ndarray | None, b: np.ndarray | None, nd: int) -> np.ndarray | None:
    r"""Product of polynomial matrices ``a (p, q, *k_a)`` and ``b (q, r, *k_b)``: ``(p, r, *(k_a + k_b − 1))``,
    matrix product over channels, full convolution over taps.  ``None`` stands for the identity.

    One tensor contraction: ``out[p, r, t] = Σ_{q, u} a[p, q, u] b̃[q, r, t, u]`` with
    ``b̃[q, r, t, u] = b[q, r, t − u]`` (zero outside), a reversed sliding window of ``b`` padded by ``k_a − 1``.
    """
    if a is None:
        return b
    if b is None:
        return a
    ka = a.shape[2:]
    pad = ((0, 0), (0, 0), *((k - 1, k - 1) for k in ka))
    win = np.lib.stride_tricks.sliding_window_view(np.pad(b, pad), ka, axis=tuple(range(2, 2 + nd)))
    win = win[(Ellipsis, *(slice(None, None, -1),) * nd)]  # [q, r, *t, *u] = b[q, r, t − u]
    return np.tensordot(a, win, axes=([1, *range(2, 2 + nd)], [0, *range(2 + nd, 2 + 2 * nd)]))


def _windows(x: np.ndarray, k: tuple[int, ...]) -> np.ndarray:
    """``x[..., s + u]`` as a view with axes ``(..., *s, *u)`` (valid positions ``s``, taps ``u`` of size ``k``)."""
    nd = len(k)
    return np.lib.stride_tricks.sliding_window_view(x, k, axis=tuple(range(x.ndim - nd, x.ndim)))


def _corr_left(g: np.ndarray, q: np.ndarray | None, nd: int) -> np.ndarray:
    """``R[z, a, c, s] = Σ_{o,u} q[o, a, u] g[z, o, c, s + u]`` (``q = None``: the identity, ``R = g``)."""
    if q is None:
        return g
    win = _windows(g, q.shape[2:])  # [z, o, c, *s, *u]
    out = np.tensordot(win, q, axes=([1, *range(3 + nd, 3 + 2 * nd)], [0, *range(2, 2 + nd)]))  # [z, c, *s, a]
    return np.moveaxis(out, -1, 1)


def _corr_right(r: np.ndarray, p: np.ndarray | None, nd: int) -> np.ndarray:
    """``R'[z, a, b, s] = Σ_{c,τ} r[z, a, c, s + τ] p[b, c, τ]`` (``p = None``: the identity)."""
    if p is None:
        return r
    win = _windows(r, p.shape[2:])  # [z, a, c, *s, *τ]
    out = np.tensordot(win, p, axes=([2, *range(3 + nd, 3 + 2 * nd)], [1, *range(2, 2 + nd)]))  # [z, a, *s, b]
    return np.moveaxis(out, -1, 2)


def _spread(K: np.ndarray, k: tuple[int, ...]) -> np.ndarray:
    """``K[o, a, b, c, *s]`` repeated over the filter taps ``j``: axes ``(o, a, b, c, *j, *s)``."""
    nd = len(k)
    view = K.reshape(K.shape[:4] + (1,) * nd + K.shape[4:])
    return np.broadcast_to(view, K.shape[:4] + tuple(k) + K.shape[4:])


@functools.lru_cache(maxsize=256)
def _jacobian_index(final: tuple[int, ...], shape: tuple[int, ...], kk: tuple[int, ...],
                    dil: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of ``dπ`` for every entry of :func:`_spread` ``(K)``: row ``(o, c, j·S + s)`` of the final
    filter, column ``(a, b, j)`` of the layer (both flattened row-major)."""
    nd = len(dil)
    cN, c0, kv = final[0], final[1], final[2:]
    ci, cp, k = shape[0], shape[1], shape[2:]
    grid = np.indices((cN, ci, cp, c0, *k, *kk))
    o, a, b, c = grid[0], grid[1], grid[2], grid[3]
    j = grid[4 : 4 + nd]
    t = [j[ax] * dil[ax] + grid[4 + nd + ax] for ax in range(nd)]
    rows = np.ravel_multi_index((o, c, *t), (cN, c0, *kv))
    cols = np.ravel_multi_index((a, b, *j), (ci, cp, *k))
    return rows, cols


class ChannelParts:
    r"""π at multi-channel filters kept as prefix and suffix products, for π, ``dπᵀ``, ``dπ`` and ``Σ_t g_t ∇²π_t``.

    Parameters
    ----------
    filters : list of ndarray
        ``W_1 … W_N``, shapes ``(c_i, c_{i−1}, *k_i)`` (validated float64).
    dilations : sequence of tuple of int
        ``S_0 … S_{N−1}`` per axis (the dilation of layer ``i`` is ``S_{i−1}``).
    """

    __slots__ = ("dilated", "dilations", "filters", "nd", "prefix", "suffix")

    def __init__(self, filters: Sequence[np.ndarray], dilations: Sequence[tuple[int, ...]]):
        self.filters = list(filters)
        self.dilations = [tuple(s) for s in dilations]
        nd = self.nd = len(self.dilations[0])
        self.dilated = dil = [dilate(w, s) for w, s in zip(self.filters, self.dilations, strict=True)]
        n = len(dil)
        self.prefix: list = [None] * (n + 1)  # prefix[i] = D_i ⋯ D_1 (0-based: D_{i-1} ⋯ D_0), None = identity
        self.suffix: list = [None] * (n + 1)  # suffix[i] = D_{N-1} ⋯ D_i (0-based)
        for i in range(n):
            self.prefix[i + 1] = mat_poly_mul(dil[i], self.prefix[i], nd)
        for i in range(n - 1, -1, -1):
            self.suffix[i] = mat_poly_mul(self.suffix[i + 1], dil[i], nd)

    @property
    def final_filter(self) -> np.ndarray:
        """``v = π(W)``, shape ``(c_N, c_0, *k_v)``."""
        return self.prefix[-1]

    def _vjp_batch(self, g: np.ndarray) -> list[np.ndarray]:
        """``dπᵀ g`` for a batch ``g`` of shape ``(z, c_N, c_0, *k_v)``: per layer ``(z, c_i, c_{i−1}, *k_i)``."""
        nd = self.nd
        out = []
        for i, w in enumerate(self.filters):
            r = _corr_right(_corr_left(g, self.suffix[i + 1], nd), self.prefix[i], nd)
            out.append(r[(Ellipsis, *(slice(None, None, s) for s in self.dilations[i]))][
                (Ellipsis, *(slice(0, k) for k in w.shape[2:]))])
        return out

    def vjp(self, g: np.ndarray) -> list[np.ndarray]:
        r"""``dπ(W)ᵀ g`` per layer (``g`` shaped like ``v``):
        ``(dπ_i^\top g)[a, b, j] = Σ g[o, c, u + j S_{i−1} + τ] B_i[o, a, u] A_i[b, c, τ]``."""
        return [x[0] for x in self._vjp_batch(np.asarray(g, dtype=np.float64)[None])]

    def jacobian(self) -> np.ndarray:
        r"""``dπ(W)``, a ``(c_N c_0 k_v) × P`` matrix (both sides flattened row-major).

        Block ``i``: ``∂v[o, c, j S_{i−1} + s] / ∂W_i[a, b, j] = K_i[o, a, b, c, s]`` with the cofactor
        ``K_i[o, a, b, c, s] = Σ_{u + τ = s} B_i[o, a, u] A_i[b, c, τ]`` (``B_i``, ``A_i``: suffix and prefix
        products, the identity when empty).
        """
        final = self.final_filter.shape
        nd = self.nd
        cN, c0 = final[0], final[1]
        blocks = []
        for i, w in enumerate(self.filters):
            b = self.suffix[i + 1]
            a = self.prefix[i]
            if b is None:
                b = np.eye(cN).reshape(cN, cN, *(1,) * nd)
            if a is None:
                a = np.eye(c0).reshape(c0, c0, *(1,) * nd)
            kb, ka = b.shape[2:], a.shape[2:]
            kk = tuple(x + y - 1 for x, y in zip(kb, ka, strict=True))
            K = np.zeros((cN, b.shape[1], a.shape[0], c0, *kk))
            for ta in np.ndindex(*ka):
                K[(Ellipsis, *(slice(t, t + n) for t, n in zip(ta, kb, strict=True)))] += np.einsum(
                    "oa...,bc->oabc...", b, a[(slice(None), slice(None), *ta)])
            rows, cols = _jacobian_index(final, w.shape, kk, self.dilations[i])
            block = np.zeros((int(np.prod(final)), w.size))
            block[rows, cols] = _spread(K, w.shape[2:])
            blocks.append(block)
        return np.concatenate(blocks, axis=1)

    def hessian_contraction(self, g: np.ndarray) -> np.ndarray:
        r"""``Σ_t g_t ∇²π_t(W)`` (``P × P``): zero diagonal blocks (π is multilinear) and for layers ``i < l``, with
        ``v = B_l D_l M D_i A_i`` (``M = D_{l−1} ⋯ D_{i+1}``),

        .. math:: H_{il}[(a,b,j), (a',b',j')] = \sum g[o, c, u + j' S_{l−1} + μ + j S_{i−1} + τ]\,
                  B_l[o, a', u]\, M[b', a, μ]\, A_i[b, c, τ].
        """
        nd = self.nd
        g = np.asarray(g, dtype=np.float64)[None]
        sizes = [w.size for w in self.filters]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        out = np.zeros((starts[-1], starts[-1]))
        n = len(self.filters)
        S, U = _TAPS[:nd], _TAPS[nd : 2 * nd]
        for i in range(n):
            mid = None
            for l in range(i + 1, n):  # noqa: E741
                if l > i + 1:
                    mid = mat_poly_mul(self.dilated[l - 1], mid, nd)
                r2 = _corr_right(_corr_left(g, self.suffix[l + 1], nd), self.prefix[i], nd)[0]  # (a', b, *s)
                if mid is None:  # M = identity: b' = a
                    ci = self.filters[i].shape[0]
                    r3 = np.einsum(f"xb{S},ya->xbya{S}", r2, np.eye(ci))
                else:
                    r3 = np.einsum(f"xb{S}{U},ya{U}->xbya{S}", _windows(r2, mid.shape[2:]), mid, optimize=True)
                wi, wl = self.filters[i], self.filters[l]
                ki, kl = wi.shape[2:], wl.shape[2:]
                idx = tuple(
                    (np.arange(ki[ax]) * self.dilations[i][ax]).reshape((-1,) + (1,) * (2 * nd - 1)).reshape(
                        tuple(ki[ax] if q == ax else 1 for q in range(nd)) + (1,) * nd)
                    + (np.arange(kl[ax]) * self.dilations[l][ax]).reshape(
                        (1,) * nd + tuple(kl[ax] if q == ax else 1 for q in range(nd)))
                    for ax in range(nd)
                )
                t = r3[(slice(None),) * 4 + idx]  # (a', b, b', a, *k_i, *k_l)
                perm = (3, 1, *range(4, 4 + nd), 0, 2, *range(4 + nd, 4 + 2 * nd))
                block = t.transpose(perm).reshape(sizes[i], sizes[l])
                out[starts[i] : starts[i + 1], starts[l] : starts[l + 1]] = block
                out[starts[l] : starts[l + 1], starts[i] : starts[i + 1]] = block.T
        return out
