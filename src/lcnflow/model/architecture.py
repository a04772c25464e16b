"""LCN architectures: depth, filter sizes, strides and the sizes they imply.

A layer maps ``x ∈ R^{d_in}`` to ``R^{d_out}`` by a valid strided cross-correlation with a filter of size ``k``
and stride ``s``::

    d_out = ⌊(d_in − k)/s⌋ + 1.

The composition of ``N`` layers is one convolution with the *final filter* of size and stride::

    S_0 = 1,  S_i = s_1 ⋯ s_i,   s_v = S_N,   k_v = 1 + Σ_i (k_i − 1) S_{i−1}.

2D architectures apply the same rules per axis.  Internally every size is a tuple with one entry per axis; the 1D
properties are returned as plain integers.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from lcnflow.model.channels import ChannelParts

Size = int | tuple[int, ...]


class SizeRuleWarning(UserWarning):
    """A layer's size rule ``d_out = ⌊(d_in − k)/s⌋ + 1`` drops trailing inputs (not the exact-fit case)."""


#: Largest size or stride accepted: the largest NumPy ``int64`` (shapes and indices must fit it).
MAX_SIZE = 2**63 - 1


def _as_int(v: Any, what: str, value: Any) -> int:
    """One size or stride as a Python int: an integer, or a float with an integral finite value; never a bool."""
    if isinstance(v, bool | np.bool_):
        raise ValueError(f"{what}: must be an integer or a tuple of integers, got {value!r}")
    if isinstance(v, numbers.Integral):
        n = int(v)
    elif isinstance(v, numbers.Real) and math.isfinite(float(v)) and float(v).is_integer():
        n = int(float(v))
    elif isinstance(v, numbers.Real):
        raise ValueError(f"{what}: must be an integer, got {value!r}")
    else:
        raise ValueError(f"{what}: must be an integer or a tuple of integers, got {value!r}")
    if n > MAX_SIZE:
        raise ValueError(f"{what}: must be at most 2**63 − 1 = {MAX_SIZE}, got {value!r}")
    return n


def _as_axes(value: Any, ndim: int | None, what: str) -> tuple[int, ...]:
    """Normalize an int or a tuple of ints to a tuple of positive ints of length ``ndim``."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        axes: tuple[int, ...] = tuple(_as_int(v, what, value) for v in value)
    else:
        axes = (_as_int(value, what, value),)
    if ndim is not None and len(axes) != ndim:
        raise ValueError(
            f"{what}: has {len(axes)} axes, but the architecture is {ndim}D "
            f"(do not mix 1D and 2D sizes), got {value!r}"
        )
    if len(axes) not in (1, 2):
        raise ValueError(f"{what}: only 1D and 2D networks are supported, got {len(axes)} axes in {value!r}")
    if any(a <= 0 for a in axes):
        raise ValueError(f"{what}: sizes and strides must be positive, got {value!r}")
    return axes


def _as_channels(value: Any, depth: int) -> tuple[int, ...]:
    """``architecture.channels`` as a tuple of ``N + 1`` positive ints (default all 1)."""
    if value is None:
        return (1,) * (depth + 1)
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"architecture.channels: must be a list (c_0, …, c_N) of {depth + 1} positive integers "
                         f"(input, each hidden signal, output), got {value!r}")
    cs = tuple(_as_int(c, "architecture.channels", value) for c in value)
    if len(cs) != depth + 1:
        raise ValueError(f"architecture.channels: has {len(cs)} entries but {depth} layer(s) need {depth + 1} "
                         f"(c_0 input channels, one per hidden signal, c_N output channels), got {value!r}")
    if any(c <= 0 for c in cs):
        raise ValueError(f"architecture.channels: channel counts must be ≥ 1, got {value!r}")
    return cs


@functools.lru_cache(maxsize=64)
def _generic_rank(arch: Architecture) -> int:
    """Rank of ``dπ`` at a random (generic) point, the dimension of the function space (largest of two draws)."""
    best = 0
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        ws = [rng.standard_normal(s) for s in arch.filter_shapes]
        sv = np.linalg.svd(ChannelParts(ws, arch.cumulative_strides[:-1]).jacobian(), compute_uv=False)
        best = max(best, int(np.sum(sv > sv[0] * max(sv.size, arch.num_params) * 1e-12)) if sv.size else 0)
    return best


class Architecture:
    """A deep linear convolutional network: input size, one filter size and one stride per layer.

    Parameters
    ----------
    input_size : int or tuple of int
        ``d_0`` (1D) or ``(h, w)`` (2D).
    filter_sizes : sequence of int or of tuple of int
        ``k_1 … k_N``; 2D filters are ``(k_h, k_w)``.
    strides : sequence, optional
        ``s_1 … s_N`` (default all 1).
    channels : sequence of int, optional
        ``(c_0, …, c_N)``: channels of the input, of each hidden signal and of the output (default all 1, the
        single-channel network).  Layer ``i`` then has a weight of shape ``(c_i, c_{i−1}, k_i)`` (2D:
        ``(c_i, c_{i−1}, k_h, k_w)``), the layout of ``torch.nn.Conv1d/Conv2d``, and the network is one convolution
        with the final filter of shape ``(c_N, c_0, k_v)``.

    Examples
    --------
    >>> arch = Architecture(47, [3, 2, 4], strides=[2, 3, 1])
    >>> arch.final_filter_size, arch.final_stride
    (23, 6)

    Raises
    ------
    ValueError
        For non-positive sizes or strides, mismatched lengths, mixed 1D/2D sizes, or a filter larger than the
        signal it is applied to; the message names the layer and the numbers.
    """

    input_size: Size
    filter_sizes: tuple[Size, ...]
    strides: tuple[Size, ...]

    def __init__(self, input_size: Size, filter_sizes: Sequence[Size], strides: Sequence[Size] | None = None,
                 channels: Sequence[int] | None = None):
        if isinstance(filter_sizes, int | str) or not isinstance(filter_sizes, Sequence) or not filter_sizes:
            raise ValueError(
                f"architecture.filter_sizes: must be a non-empty list with one filter size per layer, "
                f"got {filter_sizes!r}"
            )
        d0 = _as_axes(input_size, None, "architecture.input_size")
        ndim = len(d0)
        ks = tuple(_as_axes(k, ndim, f"architecture.filter_sizes[{i}] (layer {i + 1})")
                   for i, k in enumerate(filter_sizes))
        if strides is None:
            ss = tuple((1,) * ndim for _ in ks)
        else:
            if isinstance(strides, int | str) or not isinstance(strides, Sequence):
                raise ValueError(f"architecture.strides: must be a list with one stride per layer, got {strides!r}")
            if len(strides) != len(ks):
                raise ValueError(
                    f"architecture.strides: has {len(strides)} entries but there are {len(ks)} layers "
                    f"(filter_sizes={list(filter_sizes)!r}); give one stride per layer"
                )
            ss = tuple(_as_axes(s, ndim, f"architecture.strides[{i}] (layer {i + 1})") for i, s in enumerate(strides))
        unwrap = (lambda t: t[0]) if ndim == 1 else (lambda t: t)
        object.__setattr__(self, "input_size", unwrap(d0))
        object.__setattr__(self, "filter_sizes", tuple(unwrap(k) for k in ks))
        object.__setattr__(self, "strides", tuple(unwrap(s) for s in ss))
        object.__setattr__(self, "_ks", ks)
        object.__setattr__(self, "_ss", ss)
        object.__setattr__(self, "_sizes", self._compute_sizes(d0, ks, ss))
        S = [(1,) * ndim]
        for s in ss:
            S.append(tuple(a * b for a, b in zip(S[-1], s, strict=True)))
        object.__setattr__(self, "_S", tuple(S))
        object.__setattr__(
            self, "_kv", tuple(1 + sum((k[a] - 1) * S[i][a] for i, k in enumerate(ks)) for a in range(ndim))
        )
        cs = _as_channels(channels, len(ks))
        object.__setattr__(self, "_channels", cs)
        object.__setattr__(self, "_multichannel", any(c != 1 for c in cs))
        object.__setattr__(self, "_layer_num_params", tuple(math.prod(k) * cs[i] * cs[i + 1] for i, k in enumerate(ks)))
        object.__setattr__(self, "_hash", hash((ks, ss, d0)) if not self._multichannel else hash((ks, ss, d0, cs)))

    @staticmethod
    def _compute_sizes(d0, ks, ss) -> tuple[tuple[int, ...], ...]:
        sizes = [d0]
        for i, (k, s) in enumerate(zip(ks, ss, strict=True)):
            d_in = sizes[-1]
            if any(kk > dd for kk, dd in zip(k, d_in, strict=True)):
                raise ValueError(
                    f"architecture: layer {i + 1} has filter size {fmt(k)} larger than its input size {fmt(d_in)} "
                    f"(sizes so far: {' → '.join(fmt(d) for d in sizes)}); use a smaller filter or a longer input"
                )
            d_out = tuple((dd - kk) // sv + 1 for dd, kk, sv in zip(d_in, k, s, strict=True))
            used = tuple(sv * (do - 1) + kk for sv, do, kk in zip(s, d_out, k, strict=True))
            if used != d_in:
                dropped = tuple(dd - u for dd, u in zip(d_in, used, strict=True))
                warnings.warn(
                    f"architecture: layer {i + 1} (filter {fmt(k)}, stride {fmt(s)}) uses {fmt(used)} of its "
                    f"{fmt(d_in)} inputs; the last {fmt(dropped)} are dropped (exact fit needs "
                    f"d_in = s·(d_out − 1) + k)",
                    SizeRuleWarning,
                    stacklevel=3,
                )
            sizes.append(d_out)
        return tuple(sizes)

    # ------------------------------------------------------------------ per-axis views (internal, always tuples)
    @property
    def axes_filter_sizes(self) -> tuple[tuple[int, ...], ...]:
        """Filter sizes as tuples (one entry per axis), also in 1D."""
        return self._ks  # type: ignore[attr-defined]

    @property
    def axes_strides(self) -> tuple[tuple[int, ...], ...]:
        """Strides as tuples (one entry per axis), also in 1D."""
        return self._ss  # type: ignore[attr-defined]

    @property
    def axes_layer_sizes(self) -> tuple[tuple[int, ...], ...]:
        """Signal sizes ``d_0 … d_N`` as tuples, also in 1D."""
        return self._sizes  # type: ignore[attr-defined]

    @property
    def cumulative_strides(self) -> tuple[tuple[int, ...], ...]:
        """``S_0 … S_N`` with ``S_0 = 1`` and ``S_i = s_1 ⋯ s_i`` (tuples per axis)."""
        return self._S  # type: ignore[attr-defined]

    @property
    def axes_final_filter_size(self) -> tuple[int, ...]:
        """``k_v`` per axis."""
        return self._kv  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ public properties
    @property
    def ndim(self) -> int:
        """1 for signals, 2 for images."""
        return len(self._ks[0])  # type: ignore[attr-defined]

    @property
    def depth(self) -> int:
        """Number of layers ``N``."""
        return len(self.filter_sizes)

    @property
    def layer_sizes(self) -> tuple[Size, ...]:
        """``d_0 … d_N`` (ints in 1D, ``(h, w)`` tuples in 2D)."""
        return tuple(self._unwrap(d) for d in self.axes_layer_sizes)

    @property
    def output_size(self) -> Size:
        """``d_N``."""
        return self.layer_sizes[-1]

    @property
    def final_filter_size(self) -> Size:
        """``k_v = 1 + Σ_i (k_i − 1) S_{i−1}`` (per axis in 2D)."""
        return self._unwrap(self.axes_final_filter_size)

    @property
    def final_stride(self) -> Size:
        """``s_v = S_N = s_1 ⋯ s_N`` (per axis in 2D)."""
        return self._unwrap(self.cumulative_strides[-1])

    @property
    def channels(self) -> tuple[int, ...]:
        """``(c_0, …, c_N)``: channels of the input, of each hidden signal and of the output (all 1 by default)."""
        return self._channels  # type: ignore[attr-defined]

    @property
    def is_multichannel(self) -> bool:
        """Whether some ``c_i > 1`` (then filters carry channel axes, see :attr:`filter_shapes`)."""
        return self._multichannel  # type: ignore[attr-defined]

    @property
    def filter_shapes(self) -> tuple[tuple[int, ...], ...]:
        """NumPy shapes of the filters: ``(k,)`` in 1D, ``(k_h, k_w)`` in 2D; with channels ``(c_i, c_{i−1}, k)`` /
        ``(c_i, c_{i−1}, k_h, k_w)`` (torch's weight layout)."""
        if not self.is_multichannel:
            return self.axes_filter_sizes
        c = self.channels
        return tuple((c[i + 1], c[i], *k) for i, k in enumerate(self.axes_filter_sizes))

    @property
    def final_filter_shape(self) -> tuple[int, ...]:
        """NumPy shape of the final filter ``v``: ``k_v`` per axis; with channels ``(c_N, c_0, *k_v)``."""
        if not self.is_multichannel:
            return self.axes_final_filter_size
        return (self.channels[-1], self.channels[0], *self.axes_final_filter_size)

    @property
    def layer_num_params(self) -> tuple[int, ...]:
        """Number of coefficients of each filter."""
        return self._layer_num_params  # type: ignore[attr-defined]

    @property
    def num_params(self) -> int:
        """``P``, the total number of filter coefficients."""
        return sum(self.layer_num_params)

    @property
    def final_filter_num_params(self) -> int:
        """Number of coefficients of the final filter (``k_v``, or ``k_h · k_w`` in 2D; times ``c_N c_0`` with
        channels)."""
        return math.prod(self.final_filter_shape)

    @property
    def function_space_dim(self) -> int:
        """``dim M``: ``P − (N − 1)`` for one channel (the rescaling symmetry removes one dimension per pair of
        adjacent layers); with channels the rank of ``dπ`` at generic points, computed numerically (the symmetry
        ``∏ GL(c_i)`` removes at most ``Σ c_i²`` dimensions, and wide layers can remove more)."""
        if not self.is_multichannel:
            return self.num_params - (self.depth - 1)
        return _generic_rank(self)

    @property
    def symmetry_dim(self) -> int:
        """Dimension of the symmetry group of π: ``Σ_{i=1}^{N−1} c_i²`` (``∏ GL(c_i)`` over the hidden signals;
        ``N − 1`` rescalings for one channel)."""
        return sum(c * c for c in self.channels[1:-1])

    @property
    def is_filling(self) -> bool | None:
        """Whether π is onto ``R^{k_v}`` (the function space is the whole ambient space).

        Decided exactly where the theory allows:

        * if ``dim M < k_v`` (counting coefficients), the architecture is not filling;
        * otherwise every layer with more than one coefficient has ``S_{i−1} = 1`` and, in 1D (or in 2D when all
          filters are one-dimensional along the same axis), π multiplies real polynomials; their product is onto the
          polynomials of degree ``k_v − 1`` iff at most one factor has odd degree ≥ 1 missing a real root, i.e. iff
          at most one ``k_i`` is even (Kohn et al. 2022).

        Returns ``None`` for 2D architectures the rule does not decide (see :attr:`filling_reason`).
        """
        return self._filling()[0]

    @property
    def filling_reason(self) -> str:
        """One sentence explaining :attr:`is_filling`."""
        return self._filling()[1]

    def _filling(self) -> tuple[bool | None, str]:
        dim, kv = self.function_space_dim, self.final_filter_num_params
        if self.is_multichannel:
            if dim < kv:
                return False, f"dim M = {dim} < {kv} final-filter coefficients, so π cannot be onto"
            return None, ("dim M equals the number of final-filter coefficients, but no exact filling "
                          "criterion is implemented for channels (the image of π may still miss an open set)")
        if dim < kv:
            return False, f"dim M = {dim} < {kv} final-filter coefficients, so π cannot be onto"
        if self.ndim == 1:
            sizes = [k[0] for k in self.axes_filter_sizes]
        else:
            nontrivial = [k for k in self.axes_filter_sizes if math.prod(k) > 1]
            if len(nontrivial) <= 1:
                return True, "at most one layer has more than one coefficient, so π is a linear bijection"
            if all(k[0] == 1 for k in nontrivial):
                sizes = [k[1] for k in nontrivial]
            elif all(k[1] == 1 for k in nontrivial):
                sizes = [k[0] for k in nontrivial]
            else:
                return None, "no exact filling criterion is implemented for this 2D architecture"
        even = [k for k in sizes if k % 2 == 0]
        if len(even) <= 1:
            return True, "at most one filter has even size, so every real polynomial of the final degree factors"
        return False, (
            f"{len(even)} filters have even size {even}: a product of real polynomials with more than one "
            "odd-degree factor cannot have all roots non-real, so π is not onto"
        )

    # ------------------------------------------------------------------ helpers
    def _unwrap(self, t: tuple[int, ...]) -> Size:
        return t[0] if self.ndim == 1 else t

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (lists), suitable for TOML/JSON; ``Architecture(**d)`` rebuilds it."""
        lst = (lambda t: t) if self.ndim == 1 else list
        out: dict[str, Any] = {
            "input_size": lst(self.input_size),
            "filter_sizes": [lst(k) for k in self.filter_sizes],
            "strides": [lst(s) for s in self.strides],
        }
        if self.is_multichannel:
            out["channels"] = list(self.channels)
        return out

    def dropped_inputs(self) -> list[tuple[int, Size]]:
        """``(layer, count)`` for every layer whose size rule drops trailing inputs."""
        out = []
        for i, (k, s) in enumerate(zip(self.axes_filter_sizes, self.axes_strides, strict=True)):
            d_in, d_out = self.axes_layer_sizes[i], self.axes_layer_sizes[i + 1]
            dropped = tuple(dd - (sv * (do - 1) + kk) for dd, kk, sv, do in zip(d_in, k, s, d_out, strict=True))
            if any(dropped):
                out.append((i + 1, self._unwrap(dropped)))
        return out

    def summary_rows(self) -> list[tuple[str, str, str, str, str]]:
        """Rows ``(layer, filter, stride, input size, output size)`` for tables."""
        rows = []
        for i, (k, s) in enumerate(zip(self.filter_sizes, self.strides, strict=True)):
            rows.append((str(i + 1), fmt(k), fmt(s), fmt(self.layer_sizes[i]), fmt(self.layer_sizes[i + 1])))
        return rows

    def __repr__(self) -> str:
        tail = f", channels={list(self.channels)!r}" if self.is_multichannel else ""
        return (
            f"Architecture(input_size={self.input_size!r}, filter_sizes={list(self.filter_sizes)!r}, "
            f"strides={list(self.strides)!r}{tail})"
        )

    def __str__(self) -> str:
        head = f"{self.ndim}D linear convolutional network, {self.depth} layer(s), input size {fmt(self.input_size)}"
        lines = [head]
        lines.append(f"  {'layer':>5}  {'filter':>8}  {'stride':>8}  {'d_in':>10}  {'d_out':>10}")
        for row in self.summary_rows():
            lines.append(f"  {row[0]:>5}  {row[1]:>8}  {row[2]:>8}  {row[3]:>10}  {row[4]:>10}")
        filling = {True: "yes", False: "no", None: "undecided"}[self.is_filling]
        if self.is_multichannel:
            return self._describe_channels(head, filling)
        lines.append(
            f"  final filter k_v = {fmt(self.final_filter_size)}, stride s_v = {fmt(self.final_stride)}; "
            f"P = {self.num_params} parameters; dim M = {self.function_space_dim}; filling: {filling}"
        )
        for layer, count in self.dropped_inputs():
            lines.append(f"  note: layer {layer} drops its last {fmt(count)} input(s)")
        return "\n".join(lines)

    def _describe_channels(self, head: str, filling: str) -> str:
        c = self.channels
        lines = [f"{head}, channels {' → '.join(str(x) for x in c)}"]
        lines.append(f"  {'layer':>5}  {'c_in→c_out':>10}  {'filter':>8}  {'stride':>8}  {'d_in':>10}  {'d_out':>10}")
        for i, row in enumerate(self.summary_rows()):
            ch = f"{c[i]}→{c[i + 1]}"
            lines.append(f"  {row[0]:>5}  {ch:>10}  {row[1]:>8}  {row[2]:>8}  {row[3]:>10}  {row[4]:>10}")
        hidden = c[1:-1]
        group = " × ".join(f"GL({x})" for x in hidden) if hidden else "trivial (one layer)"
        lines.append(
            f"  final filter {c[-1]} × {c[0]} × {fmt(self.final_filter_size)} (c_N × c_0 × k_v), stride s_v = "
            f"{fmt(self.final_stride)}; P = {self.num_params} parameters; dim M = {self.function_space_dim} "
            f"(rank of dπ at a generic point); filling: {filling}"
        )
        lines.append(f"  symmetry group of π: {group}, dimension Σ c_i² = {self.symmetry_dim}")
        for layer, count in self.dropped_inputs():
            lines.append(f"  note: layer {layer} drops its last {fmt(count)} input(s)")
        return "\n".join(lines)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Architecture is immutable; build a new one instead of setting {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Architecture):
            return NotImplemented
        return (self._ks, self._ss, self.axes_layer_sizes[0], self.channels) == (  # type: ignore[attr-defined]
            other._ks, other._ss, other.axes_layer_sizes[0], other.channels  # type: ignore[attr-defined]
        )

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]


def fmt(t: Any) -> str:
    """A size or a tuple of sizes as users write it in messages: ``7``, ``5×5``."""
    if isinstance(t, tuple):
        return "×".join(str(x) for x in t) if len(t) > 1 else str(t[0])
    return str(t)
