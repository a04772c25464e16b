"""What a researcher would otherwise run, written plainly: the baselines lcnflow is measured against.

* :func:`torch_gd` — a bias-free float64 PyTorch ``Conv1d``/``Conv2d`` stack trained by full-batch gradient descent
  at the best stable step size from a grid, until ``‖∇L‖ ≤ gtol`` or a time cap.
* :func:`layerwise_gradient` + :func:`scipy_flow` — ``scipy.integrate`` (LSODA, Radau) on the gradient computed layer
  by layer (forward pass through every layer for every sample, then backpropagation), without lcnflow's structure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import scipy.integrate

import lcnflow as lf

# ---------------------------------------------------------------------------------------------- torch baseline


def _torch_loss(name: str, params: dict):
    import torch

    if name == "square":
        return lambda r: 0.5 * r**2
    if name == "pseudo_huber":
        d = params.get("delta", 1.0)
        return lambda r: d**2 * (torch.sqrt(1 + (r / d) ** 2) - 1)
    if name == "log_cosh":
        return lambda r: torch.abs(r) + torch.log1p(torch.exp(-2 * torch.abs(r))) - math.log(2.0)
    raise ValueError(f"no torch baseline loss for {name!r}")


def torch_gd(
    arch: lf.Architecture,
    inputs: np.ndarray,
    targets: np.ndarray,
    loss: lf.Loss,
    init: list[np.ndarray],
    *,
    gtol: float = 1e-10,
    time_cap: float = 30.0,
    step_grid: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0),
    probe_steps: int = 300,
) -> dict:
    """Full-batch GD on a PyTorch convolution stack; the step size is the largest stable one from ``step_grid``.

    A step size is *stable* when ``probe_steps`` steps from ``init`` keep the loss finite and never increase it.
    The largest stable step is run to the end; if it still diverges later (plateaus hide instability from the probe),
    the next smaller one is run instead, and so on (listed in ``diverged``).  Only the final run is timed.
    """
    import torch

    ell = _torch_loss(loss.name, dict(loss.params))
    x = torch.from_numpy(np.ascontiguousarray(inputs)).unsqueeze(1)
    y = torch.from_numpy(np.ascontiguousarray(targets)).unsqueeze(1)
    m = x.shape[0]

    def run(eta: float, max_steps: int | None, cap: float | None) -> dict:
        model = lf.to_torch(arch, init)
        params = list(model.parameters())
        losses = []
        start = time.perf_counter()
        steps, gnorm = 0, math.inf
        while True:
            for p in params:
                p.grad = None
            value = ell(model(x) - y).sum() / m
            value.backward()
            with torch.no_grad():
                gnorm = float(torch.sqrt(sum((p.grad**2).sum() for p in params)))
                losses.append(float(value))
                if gnorm <= gtol or not math.isfinite(gnorm):
                    break
                if (max_steps is not None and steps >= max_steps) or (
                    cap is not None and time.perf_counter() - start > cap
                ):
                    break
                for p in params:
                    p -= eta * p.grad
            steps += 1
        wall = time.perf_counter() - start
        filters = [p.detach().numpy()[0, 0].copy() for p in params]
        return {"eta": eta, "steps": steps, "gradient_norm": gnorm, "wall_time": wall, "losses": losses,
                "filters": filters, "reached": gnorm <= gtol}

    stable = []
    for eta in step_grid:
        probe = run(eta, probe_steps, None)
        ls = np.array(probe["losses"])
        if np.all(np.isfinite(ls)) and np.all(np.diff(ls) <= 1e-12 * np.abs(ls[:-1]) + 1e-300):
            stable.append(eta)
    if not stable:
        return {"eta": None, "reached": False, "wall_time": math.nan, "steps": 0, "gradient_norm": math.nan,
                "filters": None, "diverged": []}
    diverged = []
    for eta in sorted(stable, reverse=True):  # a step that looked stable on the probe can still blow up later
        out = run(eta, None, time_cap)
        if math.isfinite(out["gradient_norm"]):
            break
        diverged.append(eta)
    out.pop("losses")
    out["gradient_evaluations"] = out["steps"] + 1
    out["diverged"] = diverged
    return out


# ---------------------------------------------------------------------------------------------- unstructured gradient


def layerwise_gradient(arch: lf.Architecture, inputs: np.ndarray, targets: np.ndarray, loss: lf.Loss):
    """``w ↦ ∇L(w)`` by a forward pass through every layer and backpropagation (1D and 2D, any strides)."""
    sizes, strides = arch.axes_layer_sizes, arch.axes_strides
    shapes = arch.filter_shapes
    m = inputs.shape[0]
    nd = arch.ndim
    axes = tuple(range(1, nd + 1))

    def windows(a: np.ndarray, k: tuple, s: tuple, d_out: tuple) -> np.ndarray:
        win = np.lib.stride_tricks.sliding_window_view(a, k, axis=axes)
        return win[(slice(None), *tuple(slice(None, st * (do - 1) + 1, st) for st, do in zip(s, d_out, strict=True)))]

    def grad(w_flat: np.ndarray) -> np.ndarray:
        ws = lf.unflatten(arch, w_flat)
        acts = [inputs]
        for i, w in enumerate(ws):
            win = windows(acts[-1], shapes[i], strides[i], sizes[i + 1])
            acts.append(np.tensordot(win, w, axes=nd))
        delta = loss.derivative(acts[-1] - targets) / m
        grads = [None] * len(ws)
        for i in range(len(ws) - 1, -1, -1):
            win = windows(acts[i], shapes[i], strides[i], sizes[i + 1])
            grads[i] = np.tensordot(delta, win, axes=(tuple(range(nd + 1)), tuple(range(nd + 1))))
            if i:
                back = np.zeros_like(acts[i])
                for j in np.ndindex(*shapes[i]):
                    spans = zip(j, strides[i], sizes[i + 1], strict=True)
                    back[(slice(None), *(slice(jj, jj + st * (do - 1) + 1, st) for jj, st, do in spans))] += (
                        ws[i][j] * delta
                    )
                delta = back
        return lf.flatten(grads)

    return grad


def scipy_flow(
    grad: Callable[[np.ndarray], np.ndarray],
    w0: np.ndarray,
    method: str,
    *,
    gtol: float = 1e-10,
    rtol: float = 1e-8,
    atol: float = 1e-12,
    t_max: float = 1e10,
    time_cap: float = 30.0,
) -> dict:
    """``scipy.integrate`` (step by step) on ``ẇ = −∇L(w)`` until ``‖∇L‖ ≤ gtol``, ``t_max`` or the time cap."""
    count = {"n": 0}

    def fun(_t, w):
        count["n"] += 1
        return -grad(w)

    solver = {"LSODA": scipy.integrate.LSODA, "Radau": scipy.integrate.Radau, "BDF": scipy.integrate.BDF}[method](
        fun, 0.0, w0.copy(), t_max, rtol=rtol, atol=atol
    )
    start = time.perf_counter()
    gnorm = float(np.linalg.norm(grad(w0)))
    while gnorm > gtol and solver.status == "running" and time.perf_counter() - start < time_cap:
        solver.step()
        gnorm = float(np.linalg.norm(grad(solver.y)))
        count["n"] += 1
    return {"method": method, "wall_time": time.perf_counter() - start, "gradient_norm": gnorm,
            "reached": gnorm <= gtol, "gradient_evaluations": count["n"], "t": float(solver.t),
            "w": solver.y.copy(), "status": solver.status}
