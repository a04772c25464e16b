r"""The rescaling symmetry of π and the conserved quantities of gradient flow.

π is invariant under ``w^{(i)} → c·w^{(i)}, w^{(i+1)} → w^{(i+1)}/c``; the orbit's tangent at ``w`` is spanned by

.. math:: u_i = (0, …, w^{(i)}, −w^{(i+1)}, …, 0), \qquad i = 1 … N−1,

so ``∇L(w) ⟂ u_i`` everywhere (equivalently ``⟨w^{(i)}, ∇_{w^{(i)}}L⟩`` is the same for all ``i``), the Hessian of
``L`` vanishes along ``u_i`` at critical points, and gradient flow conserves
``δ_i = ‖w^{(i+1)}‖² − ‖w^{(i)}‖²``.

**Channels.**  With weights ``W_i`` of shape ``(c_i, c_{i−1}, *k_i)``, π is invariant under
``W_i → A W_i, W_{i+1} → W_{i+1} A^{-1}`` for every ``A ∈ GL(c_i)`` acting on the channels of hidden signal ``i``:
the symmetry group is ``∏_{i=1}^{N−1} GL(c_i)``, of dimension ``Σ c_i²``, with tangent directions
``(E W_i, −W_{i+1} E)`` for ``E ∈ R^{c_i × c_i}``.  Gradient flow conserves the ``c_i × c_i`` matrices

.. math:: Δ_i = \sum_j W_{i+1}[j]^\top W_{i+1}[j] − \sum_j W_i[j] W_i[j]^\top

(``W_i[j] = W_i[:, :, j]``, sums over taps), which are ``δ_i`` for one channel.  Wide layers make the fibre
``π^{-1}(v)`` larger than the orbit: its tangent is the kernel of ``dπ`` (:func:`fibre_basis`).
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from lcnflow.model.architecture import Architecture
from lcnflow.model.conv import final_filter_jacobian, flat_norm, unflatten


@functools.lru_cache(maxsize=128)
def layer_slices(arch: Architecture) -> tuple[slice, ...]:
    """Slices of each layer's coefficients in a flat parameter vector (computed once per architecture: a tuple)."""
    starts = np.concatenate([[0], np.cumsum(arch.layer_num_params)]).astype(int)
    return tuple(slice(int(a), int(b)) for a, b in itertools.pairwise(starts))


def layer_norms(arch: Architecture, w: np.ndarray) -> np.ndarray:
    """``‖w^{(i)}‖`` for each layer (flat ``w``; for a stack of flat vectors as rows, each row's)."""
    return np.sqrt(np.add.reduceat(w * w, layer_starts(arch), axis=-1))


def invariants(arch: Architecture, w: np.ndarray) -> np.ndarray:
    """``δ_i = ‖w^{(i+1)}‖² − ‖w^{(i)}‖²`` for ``i = 1 … N−1`` (flat ``w``).

    With channels: the matrices ``Δ_i`` (``c_i × c_i``, see the module docstring) flattened row-major and
    concatenated, ``Σ c_i²`` numbers.
    """
    if arch.is_multichannel:
        return channel_invariants(arch, w)
    return np.diff(np.add.reduceat(w * w, layer_starts(arch)))


def channel_invariants(arch: Architecture, w: np.ndarray) -> np.ndarray:
    r"""``Δ_i = Σ_j W_{i+1}[j]ᵀW_{i+1}[j] − Σ_j W_i[j]W_i[j]ᵀ`` for ``i = 1 … N−1``, flattened and concatenated
    (an architecture with channels)."""
    sl, shapes, c = layer_slices(arch), arch.filter_shapes, arch.channels
    out = []
    for i in range(arch.depth - 1):
        a = w[sl[i]].reshape(c[i + 1], -1)  # W_i as c_i × (c_{i−1}·k)
        b = np.moveaxis(w[sl[i + 1]].reshape(shapes[i + 1]), 1, -1)
        b = b.reshape(-1, c[i + 1])  # W_{i+1} as (c_{i+1}·k) × c_i
        out.append((b.T @ b - a @ a.T).ravel())
    return np.concatenate(out) if out else np.zeros(0)


@functools.lru_cache(maxsize=128)
def layer_starts(arch: Architecture) -> np.ndarray:
    """Index of each layer's first coefficient in a flat parameter vector."""
    return np.array([s.start for s in layer_slices(arch)])


def symmetry_basis(arch: Architecture, w: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """Orthonormal basis (columns) of the tangent space of the rescaling orbit through ``w``.

    Its dimension is ``N − 1`` unless filters vanish (then the orbit degenerates); directions with norm below
    ``rtol·‖w‖`` are dropped.  :func:`symmetry_bases` of one point.
    """
    return symmetry_bases(arch, np.asarray(w)[None], rtol)[0]


def symmetry_bases(arch: Architecture, W: np.ndarray, rtol: float = 1e-10) -> list[np.ndarray]:
    """:func:`symmetry_basis` at each row of ``W`` (``n × P``), the singular value decompositions of the ``n``
    tangent matrices in one stacked LAPACK call (each matrix's result is the one a call of its own gives)."""
    n = W.shape[0]
    if arch.is_multichannel:
        out = []
        for w in W:
            U = _channel_symmetry_directions(arch, w)
            if U.shape[1] == 0:
                out.append(U)
                continue
            Q, s, _ = np.linalg.svd(U, full_matrices=False)
            out.append(Q[:, s > rtol * float(np.linalg.norm(w))])
        return out
    sl = layer_slices(arch)
    U = np.zeros((n, W.shape[1], arch.depth - 1))
    for i in range(arch.depth - 1):
        U[:, sl[i], i] = W[:, sl[i]]
        U[:, sl[i + 1], i] = -W[:, sl[i + 1]]
    if U.shape[2] == 0:
        return list(U)
    Q, s, _ = np.linalg.svd(U, full_matrices=False)
    # (the singular values come sorted, largest first: the kept directions are the leading columns)
    return [Q[j][:, s[j] > rtol * flat_norm(W[j])] for j in range(n)]


def _channel_symmetry_directions(arch: Architecture, w: np.ndarray) -> np.ndarray:
    """The ``Σ c_i²`` tangent directions ``(E W_i, −W_{i+1} E)`` of the ``GL(c_i)`` actions, ``E = e_a e_bᵀ``."""
    sl, shapes, c = layer_slices(arch), arch.filter_shapes, arch.channels
    cols = []
    for i in range(arch.depth - 1):
        wi, wn = w[sl[i]].reshape(shapes[i]), w[sl[i + 1]].reshape(shapes[i + 1])
        for a in range(c[i + 1]):
            for b in range(c[i + 1]):
                u = np.zeros(w.size)
                di = np.zeros(shapes[i])
                di[a] = wi[b]  # (E W_i)[a] = W_i[b]
                dn = np.zeros(shapes[i + 1])
                dn[:, b] = -wn[:, a]  # (−W_{i+1} E)[:, b] = −W_{i+1}[:, a]
                u[sl[i]], u[sl[i + 1]] = di.ravel(), dn.ravel()
                cols.append(u)
    return np.array(cols).T if cols else np.zeros((w.size, 0))


def fibre_basis(arch: Architecture, w: np.ndarray) -> np.ndarray:
    """Orthonormal basis (columns) of the tangent of the generic fibre of π at ``w``: the right singular vectors of
    ``dπ(w)`` for its ``P − dim M`` smallest singular values (the kernel of ``dπ`` where ``dπ`` has full rank
    ``dim M``; it contains the symmetry directions)."""
    n = arch.num_params - arch.function_space_dim
    if n <= 0:
        return np.zeros((w.size, 0))
    J = final_filter_jacobian(arch, unflatten(arch, w))
    _, _, vt = np.linalg.svd(J, full_matrices=True)
    return vt[-n:].T


def swappable_pairs(arch: Architecture) -> list[tuple[int, int]]:
    r"""Pairs ``(i, j)`` (0-based, ``i < j``) of layers whose exchange leaves π unchanged.

    ``p_v(t) = Π_l p_{w^{(l)}}(t^{S_{l−1}})`` is a product, so exchanging two layers with the same filter size and
    the same dilation ``S_{i−1} = S_{j−1}`` (no stride > 1 between them) changes nothing; so does flipping the sign
    of both.  These are orthogonal symmetries of ``L``: gradient flow maps their fixed sets to themselves.  With
    channels π multiplies polynomial *matrices*, which do not commute: no pairs.
    """
    return list(_swappable_pairs(arch))


@functools.lru_cache(maxsize=128)
def _swappable_pairs(arch: Architecture) -> tuple[tuple[int, int], ...]:
    """:func:`swappable_pairs`, computed once per architecture."""
    if arch.is_multichannel:
        return ()
    sizes, dil = arch.axes_filter_sizes, arch.cumulative_strides  # dil[i] = S_i, the dilation of layer i + 1
    return tuple((i, j) for i, j in itertools.combinations(range(arch.depth), 2)
                 if sizes[i] == sizes[j] and dil[i] == dil[j])


def symmetric_layers(arch: Architecture, w: np.ndarray, rtol: float = 0.0) -> list[tuple[int, int, int]]:
    r"""``(i, j, σ)`` (1-based layers, ``σ = ±1``) with ``‖w^{(i)} − σ w^{(j)}‖ ≤ rtol · ‖w‖`` among
    :func:`swappable_pairs`: ``w`` lies on the fixed set of exchanging layers ``i`` and ``j`` (times ``σ``), which the
    flow never leaves.  ``rtol = 0`` asks for exact equality."""
    pairs = _swappable_pairs(arch)
    if not pairs:
        return []
    sl = layer_slices(arch)
    limit = rtol * flat_norm(w)
    vals = w.tolist() if limit == 0 else None
    out = []
    for i, j in pairs:
        for sign in (1, -1):
            if vals is not None:
                d = vals[sl[i].start] - sign * vals[sl[j].start]
                # (the first coefficients already differ: the usual case, decided without the whole comparison)
                equal = d * d == 0.0 and _exactly_equal(vals[sl[i]], vals[sl[j]], sign)
            else:
                equal = flat_norm(w[sl[i]] - sign * w[sl[j]]) <= limit
            if equal:
                out.append((i + 1, j + 1, sign))
                break
    return out


def _exactly_equal(a: list[float], b: list[float], sign: int) -> bool:
    """``‖a − σb‖ = 0`` in float64: every ``(a_k − σb_k)²`` is 0, underflow included (a sum of squares is 0 only if
    each is), on Python floats (the same IEEE arithmetic as the norm's, without an array call)."""
    for x, y in zip(a, b, strict=True):
        d = x - sign * y
        if d * d != 0.0:
            return False
    return True


def complement_basis(sym: np.ndarray, dim: int) -> np.ndarray:
    """Orthonormal basis (columns) of the orthogonal complement of the columns of ``sym`` in ``R^dim``."""
    return complement_bases([sym], dim)[0]


def complement_bases(syms: list[np.ndarray], dim: int) -> list[np.ndarray]:
    """:func:`complement_basis` of each of ``syms``: one stacked QR decomposition per number of columns."""
    return per_shape(lambda S: _complements(S, dim), syms)


def _complements(S: np.ndarray, dim: int) -> np.ndarray:
    if S.shape[2] == 0:
        return np.broadcast_to(np.eye(dim), (S.shape[0], dim, dim))
    Q, _ = np.linalg.qr(S, mode="complete")
    return Q[:, :, S.shape[2]:]


def per_shape(fn, *per_run: list[np.ndarray]) -> list:
    """``fn`` applied to the stacks of per-run arrays: the runs are grouped by the shapes of their arrays, each group
    stacked (run first) and given to ``fn`` in one call, and its output (an array, or a tuple of arrays, run first)
    split back into one item per run, in order.  NumPy's stacked linear algebra runs the same LAPACK routine on each
    matrix, so a run's result does not depend on the others in its group (one call instead of one per run: on the
    small matrices of a network's parameters the call overhead is most of the cost)."""
    if len(per_run[0]) == 1:  # (one run: its arrays as stacks of one, no copies)
        res = fn(*(arrays[0][None] for arrays in per_run))
        return [tuple(r[0] for r in res) if isinstance(res, tuple) else res[0]]
    groups: dict[tuple, list[int]] = {}
    for i, arrays in enumerate(zip(*per_run, strict=True)):
        groups.setdefault(tuple(a.shape for a in arrays), []).append(i)
    out: list = [None] * len(per_run[0])
    for idx in groups.values():
        res = fn(*(np.stack([arrays[i] for i in idx]) for arrays in per_run))
        for j, i in enumerate(idx):
            out[i] = tuple(r[j] for r in res) if isinstance(res, tuple) else res[j]
    return out
