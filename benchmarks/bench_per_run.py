"""One certified run against PyTorch gradient descent, init by init, on B1 (the per-run speed a sweep builds on).

B1: k = (3,3,3), d_0 = 64, m = 500 Gaussian inputs, targets from a planted random length-7 filter without noise,
square loss.  Nine initializations N(0, 0.5²) (``random_init(arch, 0.5, seed=s)``, s = 0…8).  For each:

* **lcnflow** — ``gradient_flow(risk, init, gtol=1e-10)`` with every default (integration, polish, certificate,
  classification, itinerary); the risk is built once, as in a sweep; median of ``--repeats`` runs.
* **PyTorch GD** — a bias-free float64 ``Conv1d`` stack, full-batch gradient descent at its largest stable step from
  a grid until ``‖∇L‖ ≤ 1e-10`` (``baselines.torch_gd``; only the final run is timed).

Prints a Markdown table and the ratio of the medians over the inits (and the worst per-init ratio).
Run: ``python benchmarks/bench_per_run.py [--repeats 5] [--cap SECONDS]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import lcnflow as lf
from baselines import torch_gd
from common import fmt_time, machine_info
from problems import b1

GTOL = 1e-10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cap", type=float, default=60.0, help="seconds per PyTorch GD run")
    args = parser.parse_args()
    p = b1(0)
    risk = p.risk
    lf.gradient_flow(risk, p.init, gtol=GTOL)  # warm-up: compiled code loaded, lazy imports done
    rows = []
    for seed in range(9):
        init = lf.random_init(p.arch, 0.5, seed=seed)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            res = lf.gradient_flow(risk, init, gtol=GTOL)
            times.append(time.perf_counter() - start)
        gd = torch_gd(p.arch, p.inputs, p.targets, p.loss, init, gtol=GTOL, time_cap=args.cap)
        rows.append(dict(seed=seed, lcnflow=statistics.median(times), certified=res.certified, kind=res.kind,
                         gradient_norm=res.gradient_norm, torch=gd["wall_time"], eta=gd["eta"], steps=gd["steps"],
                         reached=gd["reached"]))
        print(f"init {seed}: lcnflow {fmt_time(rows[-1]['lcnflow'])}, PyTorch GD {fmt_time(gd['wall_time'])}",
              flush=True)
    print(machine_info())
    print("\n| init seed | lcnflow limit | ‖∇L‖ | lcnflow | PyTorch GD (η, steps) | ratio |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        gd = f"{fmt_time(r['torch'])} ({r['eta']:g}, {r['steps']})" if r["reached"] else f"> {fmt_time(r['torch'])}"
        print(f"| {r['seed']} | {r['kind']}{'' if r['certified'] else ' (not certified)'} | {r['gradient_norm']:.1e} "
              f"| {fmt_time(r['lcnflow'])} | {gd} | {r['torch'] / r['lcnflow']:.0f}× |")
    med_l = statistics.median(r["lcnflow"] for r in rows)
    med_t = statistics.median(r["torch"] for r in rows)
    worst = min(r["torch"] / r["lcnflow"] for r in rows)
    print(f"\nMedian over the inits: lcnflow {fmt_time(med_l)}, PyTorch GD {fmt_time(med_t)}: **{med_t / med_l:.0f}×** "
          f"(worst single init {worst:.0f}×); {sum(r['certified'] for r in rows)}/9 certified.")


if __name__ == "__main__":
    main()
