"""Does width remove spurious limits?  The sweep of ``examples/width.toml`` and its table.

Gradient flow on the built-in MNIST-1D deblurring task (three layers of size-3 filters, square loss, init N(0, 0.1²)
per coefficient) for hidden widths c = 1, 2, 4, 8 (channels 1 → c → c → 1), one run per init seed.  Prints, per
width, how many runs ended certified at the global minimum of L (L(w*) = ℒ*, the least-squares optimum: decided, not
bounded), how many at a spurious local minimum, and the rest, with 95 % Wilson intervals for the fractions.

Run: ``python examples/width_sweep.py [--seeds 40] [--widths 1 2 4 8] [--out runs/width] [--workers N]``.
The sweep resumes: a second call with the same arguments only prints the table.
"""

from __future__ import annotations

import argparse
import tomllib
from collections import Counter
from pathlib import Path

import lcnflow
from lcnflow.experiments.compare import wilson_interval

HERE = Path(__file__).resolve().parent


def sweep_spec(seeds: int, widths: list[int]) -> dict:
    """``examples/width.toml`` with ``seeds`` init seeds and the given hidden widths."""
    spec = tomllib.loads((HERE / "width.toml").read_text(encoding="utf-8"))
    spec["grid"]["architecture.channels"] = [[1, c, c, 1] for c in widths]
    spec["grid"]["init"]["seed"] = {"range": [0, seeds]}  # (the file's dotted key init.seed is a nested table)
    return spec


def table(results) -> str:
    """The Markdown table of outcomes per hidden width."""
    per_width: dict[int, Counter] = {}
    for r in results.to_pylist():
        per_width.setdefault(r["architecture.channels"][1], Counter())[r["outcome"]] += 1
    lines = ["| hidden width c | runs | global minimum (95 % CI) | spurious local minimum (95 % CI) | other |",
             "|---:|---:|---|---|---|"]
    for c in sorted(per_width):
        counts = per_width[c]
        n = counts.total()
        cells = []
        for outcome in ("global_minimum", "spurious"):
            k = counts[outcome]
            lo, hi = wilson_interval(k, n)
            cells.append(f"{k}/{n} = {k / n:.0%} ({lo:.0%}–{hi:.0%})")
        other = ", ".join(f"{o} {k}" for o, k in sorted(counts.items()) if o not in ("global_minimum", "spurious"))
        lines.append(f"| {c} | {n} | {cells[0]} | {cells[1]} | {other or '—'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--out", default="runs/width")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    lcnflow.sweep(sweep_spec(args.seeds, args.widths), out=args.out, workers=args.workers)
    print(table(lcnflow.sweep.read_results(args.out)))


if __name__ == "__main__":
    main()
