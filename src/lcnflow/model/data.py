"""Training data: ``m`` input signals (or images) and their targets."""

from __future__ import annotations

import numpy as np

from lcnflow.model.architecture import Architecture, fmt

__all__ = ["DATA_SCALE_RANGE", "Dataset"]


#: ``(lo, hi)``: the largest magnitude of the inputs, and of the targets, must lie in this range (or be 0).  A run
#: forms squares of the data (the risk), and its certificate and classification products of those (Hessians, Newton
#: steps, their rounding levels): beyond about 1e±70 these overflow or underflow in float64 and verdicts change
#: (measured: a certified global minimum at 1e±70 became an uncertified endpoint at 1e75 and 1e-80).  Within the
#: range, rescaling the inputs and the targets by a constant changes no verdict, so data outside it can always be
#: brought inside.
DATA_SCALE_RANGE: tuple[float, float] = (1e-50, 1e50)


def _check_array(a: object, what: str) -> np.ndarray:
    """``a`` as a new float64 array: real numbers only (no complex, strings, objects), all finite, of sane scale."""
    try:
        raw = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: must be a real numeric array, got {type(a).__name__} ({exc})") from None
    if raw.dtype.kind == "c":
        raise ValueError(
            f"{what}: must be real, got a complex array (dtype {raw.dtype}); pass the real part explicitly if that "
            "is what you mean"
        )
    if raw.dtype.kind not in "biuf":
        raise ValueError(
            f"{what}: must be a real numeric array (bool, int or float), got "
            f"{type(a).__name__ if raw.dtype.kind == 'O' else 'dtype ' + str(raw.dtype)}"
        )
    arr = np.array(raw, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(t) for t in np.argwhere(bad)[0])
        raise ValueError(
            f"{what}: {int(bad.sum())} non-finite value(s) (NaN or inf), first at index {first}; "
            "remove or impute them before training"
        )
    top = float(np.max(np.abs(arr))) if arr.size else 0.0
    lo, hi = DATA_SCALE_RANGE
    if top != 0.0 and not lo <= top <= hi:
        raise ValueError(
            f"{what}: largest magnitude {top:.3g} is outside [{lo:g}, {hi:g}], where the products of the data a run "
            f"forms (risk, Hessians, Newton steps) stay finite and normal in float64; divide the array by a constant "
            f"(e.g. {top:.3g}) — rescaling inputs or targets changes no verdict"
        )
    return arr


class Dataset:
    """Samples ``(x_j, y_j)_{j=1..m}`` for an LCN.

    Parameters
    ----------
    inputs : array_like, shape ``(m, d_0)`` or ``(m, h, w)``; with channels ``(m, c_0, d_0)`` or ``(m, c_0, h, w)``
    targets : array_like, shape ``(m, d_N)`` or ``(m, h_N, w_N)``; with channels ``(m, c_N, d_N)`` or
        ``(m, c_N, h_N, w_N)``

    The architecture decides how the arrays are read (:meth:`for_architecture`).

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
        if x.ndim not in (2, 3, 4):
            raise ValueError(
                f"data.inputs: expected shape (m, d_0) for signals or (m, h, w) for images (with channels "
                f"(m, c_0, d_0) or (m, c_0, h, w)), got shape {x.shape}"
            )
        if y.ndim not in (2, 3, 4) or abs(y.ndim - x.ndim) > 1:
            kind = {2: "signals (m, d_0)", 3: "images (m, h, w) or signals (m, c, d)", 4: "images (m, c, h, w)"}
            raise ValueError(
                f"data.targets / data.inputs: the inputs have shape {x.shape} ({kind[x.ndim]}) and the targets "
                f"{y.shape} ({kind.get(y.ndim, f'{y.ndim} axes')}); both must be signals (m, d_0) and (m, d_N), or "
                "both images (m, h, w) and (m, h_N, w_N)"
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
        """1 for signals, 2 for images (without a channel axis; an architecture decides how data are read)."""
        return self.inputs.ndim - 1

    def for_architecture(self, arch: Architecture) -> Dataset:
        """These samples in the layout ``arch`` reads: ``(m, *d_0)`` / ``(m, *d_N)`` for one channel, else
        ``(m, c_0, *d_0)`` / ``(m, c_N, *d_N)``.  A channel axis of size 1 is dropped (one-channel architecture) or
        added (``c_0 = 1`` or ``c_N = 1``), so both layouts give the same results; ``self`` when nothing changes.

        Raises
        ------
        ValueError
            When the data's channel count differs from ``architecture.channels``.
        """
        x, y = self.inputs, self.targets
        nd = arch.ndim
        cs = arch.channels
        new = []
        sizes = (arch.axes_layer_sizes[0], arch.axes_layer_sizes[-1])
        for a, c, what, d in ((x, cs[0], "data.inputs", sizes[0]), (y, cs[-1], "data.targets", sizes[1])):
            if not arch.is_multichannel:
                if a.ndim == nd + 2 and (a.shape[1] == 1 or a.shape[2:] == d):
                    if a.shape[1] != 1:
                        raise ValueError(
                            f"{what}: shape {a.shape} has {a.shape[1]} channels (axis 1), but the architecture has "
                            f"one channel (architecture.channels {list(cs)}); set architecture.channels to match")
                    a = a[:, 0]
            elif a.ndim == nd + 1 and c == 1:
                a = a[:, None]
            elif a.ndim == nd + 2 and a.shape[1] != c:
                raise ValueError(
                    f"{what}: shape {a.shape} has {a.shape[1]} channels (axis 1), but architecture.channels "
                    f"{list(cs)} needs {c}; give {what} of shape (m, {c}, …) or change architecture.channels")
            elif a.ndim != nd + 2:
                raise ValueError(
                    f"{what}: shape {a.shape} has no channel axis, but architecture.channels {list(cs)} needs "
                    f"{c} channels: give shape (m, {c}, …)")
            new.append(a)
        if new[0] is x and new[1] is y:
            return self
        out = object.__new__(Dataset)
        out.inputs, out.targets = new
        return out

    def check_architecture(self, arch: Architecture) -> None:
        """Raise ``ValueError`` unless inputs are ``(m, *d_0)`` and targets ``(m, *d_N)`` for ``arch`` (with channels
        ``(m, c_0, *d_0)`` and ``(m, c_N, *d_N)``)."""
        m = self.num_samples
        if arch.is_multichannel:
            c0, cN = arch.channels[0], arch.channels[-1]
            d0, dN = arch.axes_layer_sizes[0], arch.axes_layer_sizes[-1]
            if self.inputs.shape[1:] != (c0, *d0):
                raise ValueError(f"data.inputs: expected shape {(m, c0, *d0)} (m samples, c_0 = {c0} channels of "
                                 f"architecture.channels {list(arch.channels)}, size {fmt(d0)}), got "
                                 f"{self.inputs.shape}")
            if self.targets.shape[1:] != (cN, *dN):
                raise ValueError(f"data.targets: expected shape {(m, cN, *dN)} (m targets, c_N = {cN} channels of "
                                 f"architecture.channels {list(arch.channels)}, the network's output size "
                                 f"{fmt(dN)}), got {self.targets.shape}")
            return
        if self.ndim != arch.ndim:
            raise ValueError(
                f"data.inputs: shape {self.inputs.shape} is {self.ndim}D data but the architecture is {arch.ndim}D"
            )
        d0, dN = arch.axes_layer_sizes[0], arch.axes_layer_sizes[-1]
        if self.inputs.shape[1:] != d0:
            raise ValueError(
                f"data.inputs: expected shape {(m, *d0)} (m samples of size {fmt(d0)} = architecture.input_size), "
                f"got {self.inputs.shape}"
            )
        if self.targets.shape[1:] != dN:
            raise ValueError(
                f"data.targets: expected shape {(m, *dN)} (m targets of the network's output size {fmt(dN)}), "
                f"got {self.targets.shape}"
            )

    def __repr__(self) -> str:
        return f"Dataset(inputs {self.inputs.shape}, targets {self.targets.shape})"
