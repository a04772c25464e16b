"""Many runs of one problem, every built-in loss: ``gradient_flows`` over a stack of inits against ``gradient_flow``
called once per init.

The problem: 1D k = (3,3,3), d_0 = 64, m = 500 inputs N(0, 1), targets from a random N(0, 1) final filter plus
0.01·N(0, 1) noise; inits N(0, 0.5²) with seeds 0 … N−1.  For each built-in loss (square, ℓ4, pseudo-Huber
δ = 0.1, generalized Huber (α, β) = (5, 2), log cosh) the same N runs go once through ``gradient_flows(risk, inits)``
and once through a loop of ``gradient_flow(risk, init)`` calls on the same risk, in this process.  Checks that every
run has the same kind, certification and loss (to 1e-8 relative) both ways, and prints the time per run of each.

Run: ``python benchmarks/bench_batched_losses.py [--runs N] [--losses square,lp,…]`` (default 1000 runs of all five).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import lcnflow as lf

LOSSES = [("square", {}), ("lp", {"p": 4.0}), ("pseudo_huber", {"delta": 0.1}),
          ("generalized_huber", {"alpha": 5.0, "beta": 2.0}), ("log_cosh", {})]


def problem(seed: int = 0, m: int = 500):
    """``(arch, Dataset)`` of the planted instance."""
    rng = np.random.default_rng(seed)
    arch = lf.Architecture(64, [3, 3, 3])
    X = rng.standard_normal((m, 64))
    Y = (lf.patch_matrix(arch, X) @ rng.standard_normal(arch.final_filter_num_params)).reshape(m, -1)
    return arch, lf.Dataset(X, Y + 0.01 * rng.standard_normal(Y.shape))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--losses", default=",".join(name for name, _ in LOSSES),
                        help="comma-separated loss names (default: all five)")
    args = parser.parse_args()
    chosen = args.losses.split(",")
    arch, data = problem()
    inits = [lf.random_init(arch, 0.5, seed=s) for s in range(args.runs)]
    print(f"{args.runs} runs per loss; k = (3,3,3), d_0 = 64, m = 500\n")
    print("| loss | batched, per run | single, per run | certified | kinds differ | max rel. loss diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, params in [(n, p) for n, p in LOSSES if n in chosen]:
        risk = lf.EmpiricalRisk(arch, lf.get_loss(name, **params), data)
        lf.gradient_flow(risk, inits[0])  # compiled code loaded, lazy imports done
        start = time.perf_counter()
        batched = lf.gradient_flows(risk, inits)
        t_batched = time.perf_counter() - start
        start = time.perf_counter()
        single = [lf.gradient_flow(risk, w0) for w0 in inits]
        t_single = time.perf_counter() - start
        kinds = sum(a.kind != b.kind or a.certified != b.certified for a, b in zip(batched, single, strict=True))
        rel = max(abs(a.loss - b.loss) / max(abs(b.loss), 1e-300) for a, b in zip(batched, single, strict=True))
        certified = sum(r.certified for r in batched)
        label = name + "".join(f" {k}={v:g}" for k, v in params.items())
        print(f"| {label} | {1e3 * t_batched / args.runs:.2f} ms | {1e3 * t_single / args.runs:.2f} ms | "
              f"{certified}/{args.runs} | {kinds} | {rel:.1e} |", flush=True)


if __name__ == "__main__":
    main()
