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

from ..architecture import Architecture


@functools.lru_cache(maxsize=128)
def layer_slices(arch: Architecture) -> list[slice]:
    """Slices of each layer's coefficients in a flat parameter vector."""
    starts = np.concatenate([[0], np.cumsum(arch.layer_num_params)]).astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(starts)]


def invariants(arch: Architecture, w: np.ndarray) -> np.ndarray:
    """``δ_i = ‖w^{(i+1)}‖² − ‖w^{(i)}‖²`` for ``i = 1 … N−1`` (flat ``w``)."""
    return np.diff(np.add.reduceat(w * w, _layer_starts(arch)))


@functools.lru_cache(maxsize=128)
def _layer_starts(arch: Architecture) -> np.ndarray:
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
    keep = s > rtol * max(1.0, float(np.linalg.norm(w)))
    return Q[:, keep]


def complement_basis(sym: np.ndarray, dim: int) -> np.ndarray:
    """Orthonormal basis (columns) of the orthogonal complement of the columns of ``sym`` in ``R^dim``."""
    if sym.shape[1] == 0:
        return np.eye(dim)
    Q, _ = np.linalg.qr(sym, mode="complete")
    return Q[:, sym.shape[1] :]
