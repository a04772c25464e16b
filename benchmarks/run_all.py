"""Run the benchmark suite and write ``benchmarks/RESULTS.md`` (machine, versions, date, medians and ratios).

Run: ``python benchmarks/run_all.py [--quick]``.  ``--quick`` uses short time caps and fewer repeats (minutes, for
a smoke test); the full suite takes about half an hour on a 2-core machine, most of it in the baselines' caps.
Every number in the file comes from this one process run.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_compiled  # noqa: E402
import bench_flow  # noqa: E402
import bench_gradient  # noqa: E402
from common import machine_info  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    cap = 20.0 if args.quick else 60.0
    started = time.perf_counter()
    sections = [
        "# lcnflow benchmark results",
        "",
        f"Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by `python benchmarks/run_all.py"
        f"{' --quick' if args.quick else ''}` on: {machine_info()}.",
        "",
        "All times are wall-clock medians in one process (lcnflow: 5 runs; baselines: see each table); ratios are "
        "baseline time / lcnflow time.",
        "",
        "## Gradient and Hessian cost (1D k=(3,3,3), d_0=256)",
        "",
        "lcnflow `EmpiricalRisk.gradient` / `.hessian` after construction, against PyTorch autograd through the "
        "equivalent bias-free `Conv1d` stack (gradient: forward + backward; Hessian: `torch.autograd.functional."
        "hessian`). The square loss uses precomputed statistics (construction column), so its cost is flat in m.",
        "",
        bench_gradient.table(bench_gradient.run((200, 2000) if args.quick else (200, 2000, 20000))),
        "",
        f"## Time to a certified critical point (B1–B5), baselines capped at {cap:g} s",
        "",
        "lcnflow: risk construction + `gradient_flow` defaults (Rodas4 in compiled segments for every built-in loss, "
        "LSODA for built-in losses on long 2D filters; exact Hessians, Newton polish, classification), certified at "
        "‖∇L‖ ≤ 1e-10. "
        "PyTorch GD: largest stable step from a grid (selection not "
        "timed). solve_ivp: the gradient computed layer by layer through every sample (rtol 1e-8, atol 1e-12). "
        "'same limit?' is max |v − v_lcnflow| / max |v_lcnflow| for the final filters.",
        "",
    ]
    for name in bench_flow.FLOW_PROBLEMS:
        sections.append(f"* **{name}** — {bench_flow.PROBLEMS[name].__doc__.strip().splitlines()[0]}")
    rows = [bench_flow.run_problem(name, cap, 3 if args.quick else 5, 1) for name in bench_flow.FLOW_PROBLEMS]
    sections += ["", bench_flow.table(rows, cap), ""]
    sections += ["## The compiled hot path", "",
                 "Compiled kernels against the NumPy reference path (`lcnflow.kernels.ENABLED = False`) and PyTorch, "
                 "in one process (`benchmarks/bench_compiled.py`).", "",
                 bench_compiled.report(seeds=[0, 1, 2] if args.quick else list(range(8)), repeats=3 if args.quick
                                       else 5, cap=cap, with_b6_flow=not args.quick), ""]
    # the sweep benchmark pins BLAS threads before NumPy loads, so it runs in its own process
    sweep = subprocess.run(
        [sys.executable, str(HERE / "bench_sweep.py"),
         *(["--quick"] if args.quick else ["--seeds", "5000", "--repeats", "2", "--scheduler"])],
        capture_output=True, text=True, cwd=HERE, check=False,
    )
    sections += [sweep.stdout.replace("# Sweep throughput", "## Sweep throughput") or sweep.stderr, ""]
    sections.append(f"Total benchmark time: {time.perf_counter() - started:.0f} s.")
    pathlib.Path(args.out).write_text("\n".join(sections) + "\n", encoding="utf-8")
    print("\n".join(sections))


if __name__ == "__main__":
    main()
