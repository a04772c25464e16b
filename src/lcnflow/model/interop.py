"""PyTorch interop (optional extra ``lcnflow[torch]``): the same network as a stack of bias-free convolutions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lcnflow.model.architecture import Architecture, Size
from lcnflow.model.conv import Filters, as_filters


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError(
            "PyTorch interop needs the optional dependency: pip install 'lcnflow[torch]'"
        ) from None
    return torch


def to_torch(arch: Architecture, filters: Sequence[np.ndarray] | np.ndarray) -> Any:
    """An ``nn.Sequential`` of bias-free ``Conv1d``/``Conv2d`` (float64) computing ``V``.

    The module takes inputs of shape ``(batch, c_0, *d_0)`` and returns ``(batch, c_N, *d_N)`` (``c_0 = c_N = 1``
    for a one-channel architecture); its output equals ``network_matrix(arch, filters) @ x`` for every sample
    (PyTorch's ``conv`` is the same valid strided cross-correlation as lcnflow's layers, and its weights have the
    layout ``(c_out, c_in, *k)`` of lcnflow's layers with channels).
    """
    torch = _torch()
    ws = as_filters(arch, filters)
    conv = torch.nn.Conv1d if arch.ndim == 1 else torch.nn.Conv2d
    layers = []
    cs = arch.channels
    for i, (w, s) in enumerate(zip(ws, arch.axes_strides, strict=True)):
        k = arch.axes_filter_sizes[i]
        layer = conv(cs[i], cs[i + 1], kernel_size=k, stride=s, bias=False, dtype=torch.float64)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w.copy()).reshape(cs[i + 1], cs[i], *k))
        layers.append(layer)
    return torch.nn.Sequential(*layers)


def from_torch(module: Any, input_size: Size) -> tuple[Architecture, Filters]:
    """Read an ``nn.Sequential`` (or a single layer) of bias-free convolutions back.

    Parameters
    ----------
    module : torch.nn.Module
        ``Conv1d``/``Conv2d`` layers, no bias, no padding, dilation 1, groups 1, each layer's ``in_channels`` equal
        to the previous layer's ``out_channels``.  With one channel throughout the result is the one-channel
        architecture (filters ``(k,)``), else ``architecture.channels = (c_0, …, c_N)`` (weights ``(c_out, c_in, *k)``).
    input_size : int or (h, w)
        ``d_0`` (a convolution stack does not know its input size).

    Returns
    -------
    (Architecture, list of ndarray)

    Raises
    ------
    ValueError
        For any layer that is not such a convolution (the message names the layer and the offending setting), or
        whose weights are not all finite.
    """
    torch = _torch()
    layers = list(module) if isinstance(module, torch.nn.Sequential) else [module]
    filters, sizes, strides, channels = [], [], [], []
    for i, layer in enumerate(layers):
        if not isinstance(layer, torch.nn.Conv1d | torch.nn.Conv2d):
            raise ValueError(f"module[{i}]: expected Conv1d or Conv2d, got {type(layer).__name__}")
        problems = []
        if channels and layer.in_channels != channels[-1]:
            problems.append(f"channels: in_channels {layer.in_channels} but the previous layer has out_channels "
                            f"{channels[-1]} (they must match)")
        if layer.bias is not None:
            problems.append("has a bias (need bias=False)")
        no_padding = layer.padding == "valid" or (
            not isinstance(layer.padding, str) and all(p == 0 for p in layer.padding)
        )
        if not no_padding:
            problems.append(f"padding {layer.padding!r} (need 0 or 'valid')")
        if any(d != 1 for d in layer.dilation):
            problems.append(f"dilation {layer.dilation} (need 1)")
        if layer.groups != 1:
            problems.append(f"groups {layer.groups} (need 1)")
        if problems:
            raise ValueError(f"module[{i}] ({type(layer).__name__}): " + "; ".join(problems))
        w = layer.weight.detach().to(torch.float64).cpu().numpy()
        bad = ~np.isfinite(w[0, 0] if w.shape[:2] == (1, 1) else w)  # a one-channel layer: index in its filter
        if bad.any():
            raise ValueError(f"module[{i}] ({type(layer).__name__}): {int(bad.sum())} non-finite weight(s), first at "
                             f"index {tuple(int(t) for t in np.argwhere(bad)[0])}")
        filters.append(np.array(w))
        if not channels:
            channels.append(int(layer.in_channels))
        channels.append(int(layer.out_channels))
        one_d = isinstance(layer, torch.nn.Conv1d)
        sizes.append(int(w.shape[2]) if one_d else tuple(int(k) for k in w.shape[2:]))
        strides.append(int(layer.stride[0]) if one_d else tuple(int(s) for s in layer.stride))
    arch = Architecture(input_size, sizes, strides, channels=channels)
    if not arch.is_multichannel:
        filters = [w[0, 0] for w in filters]
    return arch, filters
