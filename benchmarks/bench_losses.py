"""Every built-in loss against the square loss on the same instance and initialization: time to a certified limit.

Run: ``python benchmarks/bench_losses.py [--seeds N] [--repeats R]``.

Three planted 1D instances (m = 500 inputs N(0, 1); targets = the inputs convolved with a random N(0, 1) final filter
plus 0.01·N(0, 1) noise): d_0 = 64, k = (3,3,3); d_0 = 48, k = (4,3); d_0 = 64, k = (2,2,2,2).  For each instance and
each initialization N(0, 0.5²) (seeds 0 … N−1), the default ``gradient_flow`` call (classification included) for the
square loss and for pseudo-Huber δ = 0.1 and 0.01, ℓ4, generalized Huber (α, β) = (1, 0) and (5, 2) and log cosh.
Each time is the median of R runs with the compiled code warm (one untimed run first); a loss's ratio is its time over
the square loss's on the same instance and initialization, in this one process.  Prints one row per run and the
median and worst ratio per loss and over all losses.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import lcnflow as lf

LOSSES = [("pseudo_huber", {"delta": 0.1}), ("pseudo_huber", {"delta": 0.01}), ("lp", {"p": 4.0}),
          ("generalized_huber", {"alpha": 1.0, "beta": 0.0}), ("generalized_huber", {"alpha": 5.0, "beta": 2.0}),
          ("log_cosh", {})]
INSTANCES = [(64, (3, 3, 3)), (48, (4, 3)), (64, (2, 2, 2, 2))]


def instance(d0: int, sizes: tuple[int, ...], seed: int = 0, m: int = 500):
    """``(arch, X, Y)`` of one planted instance."""
    rng = np.random.default_rng(seed)
    arch = lf.Architecture(d0, list(sizes))
    X = rng.standard_normal((m, d0))
    Y = (lf.patch_matrix(arch, X) @ rng.standard_normal(arch.final_filter_num_params)).reshape(m, -1)
    return arch, X, Y + 0.01 * rng.standard_normal(Y.shape)


def timed(risk, w0, repeats: int):
    """The median wall time of ``repeats`` default runs (after one untimed run) and the last result."""
    lf.gradient_flow(risk, w0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = lf.gradient_flow(risk, w0)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def run(seeds: int = 3, repeats: int = 3) -> dict[str, list[float]]:
    """Print the runs; return the ratios per loss label."""
    ratios: dict[str, list[float]] = {}
    uncertified = 0
    for d0, sizes in INSTANCES:
        arch, X, Y = instance(d0, sizes)
        data = lf.Dataset(X, Y)
        for seed in range(seeds):
            w0 = lf.random_init(arch, scale=0.5, seed=seed)
            base, res = timed(lf.EmpiricalRisk(arch, "square", data), w0, repeats)
            print(f"k={sizes} seed {seed} square: {1e3 * base:.1f} ms, {res.kind}, {res.num_steps} steps", flush=True)
            for name, params in LOSSES:
                label = name + "".join(f" {k}={v:g}" for k, v in params.items())
                t, res = timed(lf.EmpiricalRisk(arch, lf.get_loss(name, **params), data), w0, repeats)
                uncertified += not res.certified
                ratios.setdefault(label, []).append(t / base)
                print(f"  {label:34s} {1e3 * t:8.1f} ms  {t / base:6.1f}×  {res.kind:22s} {res.num_steps} steps, "
                      f"{res.num_gradient_evaluations} gradients, {res.num_hessian_evaluations} Hessians", flush=True)
    print(f"\nuncertified runs: {uncertified}")
    print(f"{'loss':34s} {'median':>8s} {'worst':>8s}")
    for label, r in ratios.items():
        print(f"{label:34s} {np.median(r):7.1f}× {np.max(r):7.1f}×")
    every = [x for r in ratios.values() for x in r]
    print(f"{'all losses':34s} {np.median(every):7.1f}× {np.max(every):7.1f}×")
    return ratios


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    run(args.seeds, args.repeats)
