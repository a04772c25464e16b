"""The compiled hot path (issue 10): compiled kernels against the NumPy reference path and PyTorch, in one process.

* **B1-like instances** (several seeds): time to a certified limit (risk construction + ``gradient_flow``, certified
  at ‖∇L‖ ≤ 1e-10; median of ``--repeats``) with the compiled kernels and with the NumPy reference path
  (``lcnflow.kernels.ENABLED = False``), against PyTorch GD at its best stable step (``baselines.torch_gd``).
  The table ends with the *worst* ratio over the instances.
* **Gradients at m = 20 000, d_0 = 256** (1D k = (3,3,3)), pseudo-Huber and log-cosh: compiled, reference and
  PyTorch autograd through the Conv1d stack, next to the memory floor of one pass over the data (measured) and the
  flop count of the correlations.
* **B6** (2D log-cosh images, 64 × 128×128, k = (5×5, 5×5, 3×3)): one gradient compiled / reference / autograd
  through the Conv2d stack; with ``--b6-flow`` also the default ``gradient_flow`` call (certified and classified)
  and the flow alone, compiled.
* **First-call latency**: every kernel compiled from scratch (empty cache directory) and loaded from the cache, each
  in a fresh process.

Run: ``python benchmarks/bench_compiled.py [--seeds 0 1 2 3 4] [--repeats 5] [--b6-flow]``; prints Markdown.
``--only-gradients [--rounds N]`` prints only the gradient table (N times, for repeated measurements).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

# BLAS on one thread per process (set before NumPy loads): the matrices of these runs are tiny (≤ 121 × 121), and on
# a shared, loaded machine OpenBLAS's threads turn a 500 × 64 SVD (the data-condition check) from milliseconds into
# most of a second.  The data passes use their own threads (lcnflow.kernels), PyTorch its own (MKL_NUM_THREADS and
# OMP_NUM_THREADS, which would also set PyTorch's thread count, are left alone).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

import lcnflow as lf
from baselines import torch_gd
from common import fmt_time, machine_info, median_time
from lcnflow import kernels as K
from problems import b1, b6

GTOL = 1e-10


def _flow_time(problem, repeats: int, compiled: bool) -> tuple[float, lf.FlowResult]:
    K.ENABLED = compiled
    times, result = [], None
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            result = lf.gradient_flow(problem.risk, problem.init, certify_tol=GTOL)
            times.append(time.perf_counter() - start)
    finally:
        K.ENABLED = True
    return statistics.median(times), result


def b1_instances(seeds, repeats: int, cap: float) -> tuple[str, list[dict]]:
    rows = []
    for seed in seeds:
        p = b1(seed)
        _flow_time(p, 1, True)  # warm-up (kernels loaded, lazy imports)
        t_c, res = _flow_time(p, repeats, True)
        t_r, res_r = _flow_time(p, repeats, False)
        gd = torch_gd(p.arch, p.inputs, p.targets, p.loss, p.init, gtol=GTOL, time_cap=cap)
        rows.append(dict(seed=seed, compiled=t_c, reference=t_r, torch=gd["wall_time"], torch_steps=gd["steps"],
                         torch_eta=gd["eta"], torch_reached=gd["reached"], certified=res.certified,
                         kind=res.critical_point.kind if res.critical_point else "—",
                         nfev=res.num_gradient_evaluations, nhev=res.num_hessian_evaluations,
                         same=float(np.max(np.abs(res.final_filter - res_r.final_filter))
                                    / np.max(np.abs(res_r.final_filter)))))
    lines = ["| seed | limit | lcnflow compiled | lcnflow reference | PyTorch GD (η, steps) | vs GD | vs reference | "
             "gradients (+Hessians) | compiled vs reference limit |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        gd = f"{fmt_time(r['torch'])} ({r['torch_eta']:g}, {r['torch_steps']})"
        if not r["torch_reached"]:
            gd = f"> {fmt_time(r['torch'])} (cap; η {r['torch_eta']:g})"
        lines.append(f"| {r['seed']} | {r['kind']}{'' if r['certified'] else ' (not certified)'} | "
                     f"{fmt_time(r['compiled'])} | {fmt_time(r['reference'])} | {gd} | "
                     f"{r['torch'] / r['compiled']:.1f}× | {r['reference'] / r['compiled']:.1f}× | "
                     f"{r['nfev']} (+{r['nhev']}) | {r['same']:.1e} |")
    worst_gd = min(r["torch"] / r["compiled"] for r in rows)
    worst_ref = min(r["reference"] / r["compiled"] for r in rows)
    lines.append(f"\nWorst ratio over the instances: **{worst_gd:.1f}× PyTorch GD**, **{worst_ref:.1f}× the reference "
                 "path**.")
    return "\n".join(lines), rows


def _torch_loss_grad(arch, X, Y, loss_name, w):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(X)).unsqueeze(1)
    y = torch.from_numpy(np.ascontiguousarray(Y)).unsqueeze(1)
    w0 = torch.from_numpy(w).requires_grad_(True)
    sizes = arch.layer_num_params
    shapes = arch.filter_shapes
    conv = torch.nn.functional.conv1d if arch.ndim == 1 else torch.nn.functional.conv2d
    m = X.shape[0]

    def ell(r):
        if loss_name == "pseudo_huber":
            return torch.sqrt(1 + r**2) - 1
        a = r.abs()
        return a + torch.log1p(torch.exp(-2 * a)) - math.log(2.0)

    def grad():
        out, start = x, 0
        for i in range(arch.depth):
            out = conv(out, w0[start : start + sizes[i]].reshape(1, 1, *shapes[i]))
            start += sizes[i]
        return torch.autograd.grad(ell(out - y).sum() / m, w0)[0]

    return grad


def gradients(repeats: int) -> str:
    rng = np.random.default_rng(0)
    arch = lf.Architecture(256, [3, 3, 3])
    w = lf.flatten([rng.standard_normal(3) for _ in range(3)])
    m = 20000
    X = rng.standard_normal((m, 256))
    Y = (lf.patch_matrix(arch, X) @ rng.standard_normal(7)).reshape(m, -1) + 0.1 * rng.standard_normal((m, 250))
    cases = [("1D m=20 000, d0=256, k=(3,3,3)", arch, X, Y, "pseudo_huber"),
             ("1D m=20 000, d0=256, k=(3,3,3)", arch, X, Y, "log_cosh")]
    p6 = b6()
    cases.append(("B6: 64 images 128×128, k=(5×5,5×5,3×3)", p6.arch, p6.inputs, p6.targets, "log_cosh"))
    lines = ["| problem | loss | compiled | compiled, no value | reference | PyTorch autograd | vs autograd | "
             "vs reference | read floor | flops | max rel. diff to autograd |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, a, Xc, Yc, loss in cases:
        wc = w if a is arch else lf.flatten(p6.init)
        risk = lf.EmpiricalRisk(a, loss, lf.Dataset(Xc, Yc))
        slow = a is not arch
        reps = 3 if slow else repeats
        K.ENABLED = True
        t_c = median_time(lambda risk=risk, wc=wc: risk.flat_value_and_gradient(wc), repeats=reps,
                          min_time=0 if slow else .05)
        t_n = median_time(lambda risk=risk, wc=wc: risk.flat_value_and_gradient(wc, need_value=False), repeats=reps,
                          min_time=0 if slow else .05)
        K.ENABLED = False
        t_r = median_time(lambda risk=risk, wc=wc: risk.flat_value_and_gradient(wc), repeats=3, min_time=0)
        K.ENABLED = True
        tg = _torch_loss_grad(a, Xc, Yc, loss, wc)
        t_t = median_time(tg, repeats=3, min_time=0)
        diff = float(np.max(np.abs(tg().numpy() - risk.flat_value_and_gradient(wc)[1])) / np.max(np.abs(tg().numpy())))
        # floors: one read of x and y, measured now (NumPy sums, one thread: the bandwidth one core gets), and the
        # multiply-adds of the direct correlations Hv and Hᵀℓ' (2 flops each, 2·k_v per output); B6 goes by FFT
        floor = median_time(lambda Xc=Xc, Yc=Yc: Xc.sum() + Yc.sum(), repeats=reps, min_time=0 if slow else .05)
        flops = 4 * a.final_filter_num_params * Yc.size
        lines.append(f"| {label} | {loss} | {fmt_time(t_c)} | {fmt_time(t_n)} | {fmt_time(t_r)} | {fmt_time(t_t)} | "
                     f"{t_t / t_c:.1f}× | {t_r / t_c:.1f}× | {fmt_time(floor)} | {flops / 1e6:.0f} Mflop | "
                     f"{diff:.1e} |")
    lines.append("\nRead floor: one pass over x and y (NumPy sums, one thread, measured in the same process); flops: "
                 "the direct correlations Hv and Hᵀℓ' (B6's pass runs by FFT instead).")
    return "\n".join(lines)


def b6_flow(reference: bool) -> str:
    """B6: the default ``gradient_flow`` call (certified and classified, the best point of M included) and the flow
    alone (``classify=False``); with ``reference`` the flow alone again on the NumPy path."""
    p = b6()
    out = []
    for compiled, classify in [(True, True), (True, False)] + ([(False, False)] if reference else []):
        K.ENABLED = compiled
        risk = p.risk
        start = time.perf_counter()
        res = lf.gradient_flow(risk, p.init, classify=classify)
        wall = time.perf_counter() - start
        K.ENABLED = True
        cp = res.critical_point
        kind = cp.kind if cp else "—"
        what = "default call" if classify else "flow alone (classify=False)"
        out.append(f"* B6 {what}, {'compiled' if compiled else 'reference'} path: {fmt_time(wall)} "
                   f"({res.num_gradient_evaluations} gradients, {res.num_hessian_evaluations} Hessians; "
                   f"{'certified ' if res.certified else 'not certified, '}{kind}, ‖∇L‖ = {res.gradient_norm:.1e})")
    return "\n".join(out)


_LATENCY = """
import json, time
t0 = time.perf_counter()
import lcnflow.kernels as k
t1 = time.perf_counter()
per = k.warm_up()
print(json.dumps({"import": t1 - t0, "total": sum(per.values()), **per}))
"""


def latency() -> str:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", _LATENCY], env=env, capture_output=True, text=True,
                                 check=True)
            runs.append(json.loads(out.stdout))
    cold, warm = runs
    return (f"First-call latency of the kernels (fresh processes; NUMBA_CACHE_DIR empty, then filled): compiling all "
            f"{len(cold) - 2} kernels {cold['total']:.1f} s (largest: "
            f"{max((v, n) for n, v in cold.items() if n not in ('import', 'total'))[1]}), loading them from the "
            f"cache {warm['total']:.2f} s; `import numba` and the module {warm['import']:.2f} s.")


def report(seeds, repeats: int, cap: float, with_b6_flow: bool = False, b6_reference: bool = False) -> str:
    """All sections as Markdown."""
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    blas = os.environ.get("OPENBLAS_NUM_THREADS")
    parts = [f"{machine_info()}; BLAS threads {blas}; started {started}, load average {os.getloadavg()[0]:.2f} "
             "(the machine is shared)",
             "", "### B1-like instances: time to a certified limit", "", b1_instances(seeds, repeats, cap)[0], "",
             "### One gradient (value and gradient of L)", "", gradients(repeats), ""]
    if with_b6_flow:
        parts += [b6_flow(b6_reference), ""]
    parts += [latency(), "", f"Load average at the end: {os.getloadavg()[0]:.2f}."]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cap", type=float, default=60.0)
    parser.add_argument("--b6-flow", action="store_true", help="also a certified B6 run (compiled path)")
    parser.add_argument("--b6-reference", action="store_true", help="and one on the reference path (minutes)")
    parser.add_argument("--only-gradients", action="store_true",
                        help="only the one-gradient table (m = 20 000 and B6), --rounds times")
    parser.add_argument("--rounds", type=int, default=1, help="with --only-gradients: repeat the table")
    args = parser.parse_args()
    if args.only_gradients:
        print(f"{machine_info()}; BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS')}")
        for i in range(args.rounds):
            print(f"\nRound {i + 1}, load average {os.getloadavg()[0]:.2f}\n\n{gradients(args.repeats)}", flush=True)
        return
    print(report(args.seeds, args.repeats, args.cap, args.b6_flow, args.b6_reference))


if __name__ == "__main__":
    main()
