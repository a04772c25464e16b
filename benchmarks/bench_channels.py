"""Networks with channels: gradient cost against torch autograd, and a certified 2D RGB run.

Run ``python benchmarks/bench_channels.py`` (``--quick`` for smaller sizes).  Prints a Markdown report.

* Gradient: lcnflow's ``EmpiricalRisk.gradient`` (after construction) against PyTorch autograd (forward + backward)
  through the equivalent bias-free ``Conv1d`` stack, 1D k = (3, 3, 3), d_0 = 256, channels 2 → 4 → 4 → 2, for the
  square loss (statistics ``Γ``, flat in m) and the pseudo-Huber loss (a pass over the data per gradient: the
  compiled channel pass, and for comparison the NumPy path through the patch matrix, ``kernels.ENABLED = False``);
  the Hessian of the pseudo-Huber risk on both paths.
* Certified pseudo-Huber run: 1D 2 → 3 → 2 channels, filters 3 and 3, d_0 = 64, m = 2000, a planted teacher plus
  noise; construction + ``gradient_flow`` (Rodas4, an exact Hessian per step) to its certified end, compiled passes
  against the NumPy path in the same process.
* RGB: 64 patches of 32 × 32 from scikit-image's astronaut photograph, a planted 3 → 3 colour-mixing blur plus noise
  as targets, architecture 3 → 8 → 3 channels with 3 × 3 filters, square loss; the time of risk construction +
  ``gradient_flow`` (defaults) to its certified end.
"""

from __future__ import annotations

import os
import sys
import time

# one BLAS thread unless the caller says otherwise (as bench_compiled.py): the flow's linear algebra is on P × P
# matrices (P = 432 for the RGB problem) that one thread handles in milliseconds, and on a shared machine several
# BLAS threads spin against each other (measured under load: one 432 × 432 LU 3.7 ms on one thread, 310 ms on two)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from common import fmt_time, machine_info, median_time
from lcnflow import Architecture, Dataset, EmpiricalRisk, kernels
from lcnflow.flow import gradient_flow
from lcnflow.model.conv import flatten, predict, random_init


def gradient_table(ms: list[int]) -> list[str]:
    import torch

    torch.set_num_threads(2)
    arch = Architecture(256, [3, 3, 3], channels=[2, 4, 4, 2])
    rows = ["| m | loss | construction | lcnflow gradient | NumPy path | torch gradient | ratio to torch | "
            "max rel. Δ∇ | Hessian (NumPy path) |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in ms:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((m, 2, 256))
        Y = rng.standard_normal((m, 2, arch.output_size))
        ws = random_init(arch, 0.5, seed=1)
        Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
        for loss in ("square", "pseudo_huber"):
            t0 = time.perf_counter()
            risk = EmpiricalRisk(arch, loss, Dataset(X, Y))
            build = time.perf_counter() - t0
            w = flatten(ws)
            t_ours = median_time(lambda risk=risk, w=w: risk.gradient(w))
            numpy_path, hess = "—", "—"
            if loss != "square":  # the same risk on the NumPy path (the square loss has no data pass)
                t_hess = median_time(lambda risk=risk, w=w: risk.flat_hessian(w), repeats=3)
                kernels.ENABLED = False
                try:
                    t_np = median_time(lambda risk=risk, w=w: risk.gradient(w), repeats=3)
                    t_hess_np = median_time(lambda risk=risk, w=w: risk.flat_hessian(w), repeats=3)
                finally:
                    kernels.ENABLED = True
                numpy_path = f"{fmt_time(t_np)} ({t_np / t_ours:.1f}×)"
                hess = f"{fmt_time(t_hess)} ({fmt_time(t_hess_np)}, {t_hess_np / t_hess:.1f}×)"
            wt = [torch.tensor(a, requires_grad=True) for a in ws]

            def torch_grad(wt=wt, loss=loss, Xt=Xt, Yt=Yt, m=m):
                t = Xt
                for a in wt:
                    t = torch.nn.functional.conv1d(t, a)
                r = t - Yt
                val = (r * r / 2).sum() / m if loss == "square" else (torch.sqrt(1 + r * r) - 1).sum() / m
                return torch.autograd.grad(val, wt)

            t_torch = median_time(torch_grad, repeats=5)
            g_t = np.concatenate([g.numpy().ravel() for g in torch_grad()])
            g = risk.gradient(w)
            err = float(np.max(np.abs(g - g_t)) / np.max(np.abs(g_t)))
            rows.append(f"| {m} | {loss} | {fmt_time(build)} | {fmt_time(t_ours)} | {numpy_path} | "
                        f"{fmt_time(t_torch)} | {t_torch / t_ours:.0f}× | {err:.1e} | {hess} |")
    return rows


def rgb_run(num_patches: int = 64, repeats: int = 3) -> list[str]:
    import skimage.data

    img = skimage.data.astronaut().astype(np.float64) / 255.0  # (512, 512, 3)
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 512 - 32, size=(num_patches, 2))
    X = np.stack([img[a : a + 32, b : b + 32].transpose(2, 0, 1) for a, b in corners])  # (64, 3, 32, 32)
    arch = Architecture((32, 32), [(3, 3), (3, 3)], channels=[3, 8, 3])
    truth = Architecture((32, 32), [(5, 5)], channels=[3, 3])
    mix = rng.standard_normal((3, 3, 5, 5)) * np.exp(-((np.arange(5) - 2) ** 2))[None, None, :, None] / 5
    Y = predict(truth, [mix], X) + 0.01 * rng.standard_normal((num_patches, 3, 28, 28))
    times, res = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        risk = EmpiricalRisk(arch, "square", Dataset(X, Y))
        res = gradient_flow(risk, random_init(arch, 0.1, seed=0))
        times.append(time.perf_counter() - t0)
    cp = res.critical_point
    return [
        f"RGB 3 → 8 → 3, 3×3 filters, {num_patches} patches of 32×32, square loss: "
        f"median {fmt_time(float(np.median(times)))} over {repeats} runs (construction + flow + certificate); "
        f"stop: {res.stop_reason.value}; {cp.summary() if cp is not None else 'no classification'}; "
        f"‖∇L‖ = {res.critical_point.gradient_norm if cp else float('nan'):.2g}; invariant drift "
        f"{res.invariant_drift:.2g}; {res.num_steps} steps; integrator {res.integrator}",
    ]


def robust_run(m: int = 2000, repeats: int = 3) -> list[str]:
    """A certified pseudo-Huber run with channels, compiled channel passes against the NumPy path (medians)."""
    arch = Architecture(64, [3, 3], channels=[2, 3, 2])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((m, 2, 64))
    teacher = random_init(arch, 1.0, seed=1)
    Y = predict(arch, teacher, X) + 0.1 * rng.standard_normal((m, 2, arch.output_size))
    rows = []
    times = {}
    for label, on in (("compiled", True), ("NumPy path", False)):
        kernels.ENABLED = on
        try:
            ts, res = [], None
            for _ in range(repeats):
                t0 = time.perf_counter()
                risk = EmpiricalRisk(arch, "pseudo_huber", Dataset(X, Y))
                res = gradient_flow(risk, random_init(arch, 0.3, seed=0))
                ts.append(time.perf_counter() - t0)
        finally:
            kernels.ENABLED = True
        times[label] = float(np.median(ts))
        cp = res.critical_point
        rows.append(f"* {label}: median {fmt_time(times[label])} over {repeats} runs; stop: {res.stop_reason.value}; "
                    f"{cp.summary() if cp is not None else 'no classification'}; L = {res.losses[-1]:.12g}; "
                    f"{res.num_steps} steps, {res.num_hessian_evaluations} Hessians; integrator {res.integrator}")
    rows.append(f"* NumPy path / compiled: {times['NumPy path'] / times['compiled']:.1f}×")
    return [f"1D 2 → 3 → 2 channels, filters (3, 3), d_0 = 64, m = {m}, pseudo-Huber (δ = 1), planted teacher + "
            "noise 0.1; construction + flow + certificate:\n", *rows]


def main() -> None:
    quick = "--quick" in sys.argv
    kernels.warm_up()  # compiled code from Numba's cache (or compiled now) before anything is timed
    print("# Channels benchmark\n")
    print(f"Machine: {machine_info()}; BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS')}\n")
    print("## Gradient, 1D k=(3,3,3), d_0=256, channels 2→4→4→2\n")
    print("\n".join(gradient_table([200, 2000] if quick else [200, 2000, 20000])))
    print("\n## Certified 2D RGB run\n")
    print("\n".join(rgb_run(repeats=1 if quick else 3)))
    print("\n## Certified pseudo-Huber run with channels\n")
    print("\n".join(robust_run(m=500 if quick else 2000, repeats=1 if quick else 3)))


if __name__ == "__main__":
    main()
