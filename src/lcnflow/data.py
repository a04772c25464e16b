"""Training data: ``m`` input signals (or images) and their targets."""

from __future__ import annotations

import numpy as np

from .architecture import Architecture, _fmt


def _check_array(a: object, what: str) -> np.ndarray:
    try:
        arr = np.array(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: must be a numeric array, got {type(a).__name__}") from None
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(t) for t in np.argwhere(bad)[0])
        raise ValueError(
            f"{what}: {int(bad.sum())} non-finite value(s) (NaN or inf), first at index {first}; "
            "remove or impute them before training"
        )
    return arr


class Dataset:
    """Samples ``(x_j, y_j)_{j=1..m}`` for an LCN.

    Parameters
    ----------
    inputs : array_like, shape ``(m, d_0)`` or ``(m, h, w)``
    targets : array_like, shape ``(m, d_N)`` or ``(m, h_N, w_N)``

    Arrays are copied to float64 and made read-only.  Shapes are checked against an architecture by
    :meth:`check_architecture` (done by :class:`~lcnflow.EmpiricalRisk`).

    Raises
    ------
    ValueError
        On NaN/inf (with their count and first index), on arrays of the wrong rank, or on different sample counts.
    """

    def __init__(self, inputs: np.ndarray, targets: np.ndarray):
        x = _check_array(inputs, "data.inputs")
        y = _check_array(targets, "data.targets")
        if x.ndim not in (2, 3):
            raise ValueError(
                f"data.inputs: expected shape (m, d_0) for signals or (m, h, w) for images, got shape {x.shape}"
            )
        if y.ndim != x.ndim:
            raise ValueError(
                f"data.targets: expected {x.ndim} axes like the inputs ((m, d_N) or (m, h_N, w_N)), "
                f"got shape {y.shape}"
            )
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"data: inputs have {x.shape[0]} samples but targets have {y.shape[0]}; give one target per input"
            )
        if x.shape[0] == 0:
            raise ValueError("data: no samples (m = 0)")
        x.flags.writeable = False
        y.flags.writeable = False
        self.inputs = x
        self.targets = y

    @property
    def num_samples(self) -> int:
        """``m``."""
        return self.inputs.shape[0]

    @property
    def ndim(self) -> int:
        """1 for signals, 2 for images."""
        return self.inputs.ndim - 1

    def check_architecture(self, arch: Architecture) -> None:
        """Raise ``ValueError`` unless inputs are ``(m, *d_0)`` and targets ``(m, *d_N)`` for ``arch``."""
        m = self.num_samples
        if self.ndim != arch.ndim:
            raise ValueError(
                f"data.inputs: shape {self.inputs.shape} is {self.ndim}D data but the architecture is {arch.ndim}D"
            )
        d0, dN = arch.axes_layer_sizes[0], arch.axes_layer_sizes[-1]
        if self.inputs.shape[1:] != d0:
            raise ValueError(
                f"data.inputs: expected shape {(m, *d0)} (m samples of size {_fmt(d0)} = architecture.input_size), "
                f"got {self.inputs.shape}"
            )
        if self.targets.shape[1:] != dN:
            raise ValueError(
                f"data.targets: expected shape {(m, *dN)} (m targets of the network's output size {_fmt(dN)}), "
                f"got {self.targets.shape}"
            )

    def __repr__(self) -> str:
        return f"Dataset(inputs {self.inputs.shape}, targets {self.targets.shape})"
