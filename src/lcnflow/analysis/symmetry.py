r"""The rescaling symmetry of π and the conserved quantities of gradient flow.

π is invariant under ``w^{(i)} → c·w^{(i)}, w^{(i+1)} → w^{(i+1)}/c``; the orbit's tangent at ``w`` is spanned by

.. math:: u_i = (0, …, w^{(i)}, −w^{(i+1)}, …, 0), \qquad i = 1 … N−1,

so ``∇L(w) ⟂ u_i`` everywhere (equivalently ``⟨w^{(i)}, ∇_{w^{(i)}}L⟩`` is the same for all ``i``), the Hessian of
``L`` vanishes along ``u_i`` at critical points, and gradient flow conserves
``δ_i = ‖w^{(i+1)}‖² − ‖w^{(i)}‖²``.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from lcnflow.model.architecture import Architecture


@functools.lru_cache(maxsize=128)
def layer_slices(arch: Architecture) -> list[slice]:
    """Slices of each layer's coefficients in a flat parameter vector."""
    starts = np.concatenate([[0], np.cumsum(arch.layer_num_params)]).astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(starts)]


def layer_norms(arch: Architecture, w: np.ndarray) -> np.ndarray:
    """``‖w^{(i)}‖`` for each layer (flat ``w``)."""
    return np.sqrt(np.add.reduceat(w * w, layer_starts(arch)))


def invariants(arch: Architecture, w: np.ndarray) -> np.ndarray:
    """``δ_i = ‖w^{(i+1)}‖² − ‖w^{(i)}‖²`` for ``i = 1 … N−1`` (flat ``w``)."""
    return np.diff(np.add.reduceat(w * w, layer_starts(arch)))


@functools.lru_cache(maxsize=128)
def layer_starts(arch: Architecture) -> np.ndarray:
    """Index of each layer's first coefficient in a flat parameter vector."""
    return np.array([s.start for s in layer_slices(arch)])


def symmetry_basis(arch: Architecture, w: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """Orthonormal basis (columns) of the tangent space of the rescaling orbit through ``w``.

    Its dimension is ``N − 1`` unless filters vanish (then the orbit degenerates); directions with norm below
    ``rtol·‖w‖`` are dropped.
    """
    sl = layer_slices(arch)
    U = np.zeros((w.size, arch.depth - 1))
    for i in range(arch.depth - 1):
        U[sl[i], i] = w[sl[i]]
        U[sl[i + 1], i] = -w[sl[i + 1]]
    if U.shape[1] == 0:
        return U
    Q, s, _ = np.linalg.svd(U, full_matrices=False)
    keep = s > rtol * float(np.linalg.norm(w))
    return Q[:, keep]


def swappable_pairs(arch: Architecture) -> list[tuple[int, int]]:
    r"""Pairs ``(i, j)`` (0-based, ``i < j``) of layers whose exchange leaves π unchanged.

    ``p_v(t) = Π_l p_{w^{(l)}}(t^{S_{l−1}})`` is a product, so exchanging two layers with the same filter size and
    the same dilation ``S_{i−1} = S_{j−1}`` (no stride > 1 between them) changes nothing; so does flipping the sign
    of both.  These are orthogonal symmetries of ``L``: gradient flow maps their fixed sets to themselves.
    """
    sizes, dil = arch.axes_filter_sizes, arch.cumulative_strides  # dil[i] = S_i, the dilation of layer i + 1
    return [(i, j) for i, j in itertools.combinations(range(arch.depth), 2)
            if sizes[i] == sizes[j] and dil[i] == dil[j]]


def symmetric_layers(arch: Architecture, w: np.ndarray, rtol: float = 0.0) -> list[tuple[int, int, int]]:
    r"""``(i, j, σ)`` (1-based layers, ``σ = ±1``) with ``‖w^{(i)} − σ w^{(j)}‖ ≤ rtol · ‖w‖`` among
    :func:`swappable_pairs`: ``w`` lies on the fixed set of exchanging layers ``i`` and ``j`` (times ``σ``), which the
    flow never leaves.  ``rtol = 0`` asks for exact equality."""
    sl = layer_slices(arch)
    size = float(np.linalg.norm(w))
    out = []
    for i, j in swappable_pairs(arch):
        a, b = w[sl[i]], w[sl[j]]
        for sign in (1, -1):
            if float(np.linalg.norm(a - sign * b)) <= rtol * size:
                out.append((i + 1, j + 1, sign))
                break
    return out


def complement_basis(sym: np.ndarray, dim: int) -> np.ndarray:
    """Orthonormal basis (columns) of the orthogonal complement of the columns of ``sym`` in ``R^dim``."""
    if sym.shape[1] == 0:
        return np.eye(dim)
    Q, _ = np.linalg.qr(sym, mode="complete")
    return Q[:, sym.shape[1] :]
