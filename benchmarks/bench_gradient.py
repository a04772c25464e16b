"""Gradient and Hessian cost of the risk against PyTorch autograd through the equivalent Conv1d stack.

1D k=(3,3,3), d_0=256, m ∈ {200, 2000, 20000}, square and pseudo-Huber losses.  For each: time per lcnflow
``gradient``/``hessian`` (after construction, which is reported separately) and per autograd gradient/Hessian of the
same risk through ``lcnflow.to_torch``; the ratio is torch time / lcnflow time.

Run: ``python benchmarks/bench_gradient.py [--quick]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import lcnflow as lf
from common import fmt_time, machine_info, median_time


def torch_closures(arch, X, Y, loss_name, filters):
    import torch

    x = torch.from_numpy(X).unsqueeze(1)
    y = torch.from_numpy(Y).unsqueeze(1)
    m = X.shape[0]
    model = lf.to_torch(arch, filters)
    sizes = arch.layer_num_params
    if loss_name == "square":
        def ell(r):
            return 0.5 * r**2
    else:
        def ell(r):
            return torch.sqrt(1 + r**2) - 1

    def risk_of(flat):
        out = x
        start = 0
        for i, layer in enumerate(model):
            w = flat[start : start + sizes[i]].reshape(1, 1, -1)
            out = torch.nn.functional.conv1d(out, w, stride=layer.stride)
            start += sizes[i]
        return ell(out - y).sum() / m

    w0 = torch.from_numpy(lf.flatten(filters)).requires_grad_(True)

    def grad():
        return torch.autograd.grad(risk_of(w0), w0)[0]

    def hess():
        return torch.autograd.functional.hessian(risk_of, w0.detach())

    return grad, hess


def run(sample_sizes=(200, 2000, 20000)) -> list[dict]:
    rng = np.random.default_rng(0)
    arch = lf.Architecture(256, [3, 3, 3])
    filters = [rng.standard_normal(3) for _ in range(3)]
    v_true = rng.standard_normal(arch.final_filter_size)
    rows = []
    for m in sample_sizes:
        X = rng.standard_normal((m, 256))
        Y = (lf.patch_matrix(arch, X) @ v_true).reshape(m, -1) + 0.1 * rng.standard_normal((m, arch.output_size))
        for loss_name, loss in (("square", lf.get_loss("square")), ("pseudo_huber", lf.get_loss("pseudo_huber"))):
            t0 = time.perf_counter()
            risk = lf.EmpiricalRisk(arch, loss, lf.Dataset(X, Y))
            build = time.perf_counter() - t0
            g_lcn = median_time(lambda risk=risk: risk.gradient(filters))
            h_lcn = median_time(lambda risk=risk: risk.hessian(filters), repeats=5)
            tgrad, thess = torch_closures(arch, X, Y, loss_name, filters)
            # agreement check (not a test): the two gradients must match
            diff = np.abs(tgrad().numpy() - lf.flatten(risk.gradient(filters))).max()
            g_t = median_time(tgrad, repeats=5)
            h_t = median_time(thess, repeats=3, min_time=0.0)
            rows.append(dict(m=m, loss=loss_name, build=build, grad=g_lcn, hess=h_lcn, torch_grad=g_t,
                             torch_hess=h_t, grad_ratio=g_t / g_lcn, hess_ratio=h_t / h_lcn, max_diff=diff))
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| m | loss | construction | gradient | torch gradient | ratio | Hessian | torch Hessian | ratio | max |Δ∇| |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['m']} | {r['loss']} | {fmt_time(r['build'])} | {fmt_time(r['grad'])} | {fmt_time(r['torch_grad'])} "
            f"| {r['grad_ratio']:.0f}× | {fmt_time(r['hess'])} | {fmt_time(r['torch_hess'])} | {r['hess_ratio']:.0f}× "
            f"| {r['max_diff']:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="m ∈ {200, 2000} only")
    args = parser.parse_args()
    rows = run((200, 2000) if args.quick else (200, 2000, 20000))
    print(machine_info())
    print(table(rows))


if __name__ == "__main__":
    main()
