"""Time to a certified critical point: lcnflow against what a researcher would otherwise run (B1–B5).

For each problem of ``problems.py``:

* **lcnflow** — ``EmpiricalRisk`` construction + ``gradient_flow`` with defaults (integration, Newton polish,
  classification); median of ``--repeats`` runs.
* **torch GD** — bias-free float64 PyTorch convolution stack, full-batch gradient descent at the largest stable step
  from a grid, until ``‖∇L‖ ≤ 1e-10`` or ``--cap`` seconds (see ``baselines.torch_gd``).
* **LSODA / Radau** — ``scipy.integrate`` on the gradient computed layer by layer (forward pass and backpropagation
  through every layer and sample), until ``‖∇L‖ ≤ 1e-10`` or the cap.

"Same limit?" compares final filters: ``max |v − v_lcnflow| / max |v_lcnflow|``.

Run: ``python benchmarks/bench_flow.py [--problems B1 B2 …] [--cap SECONDS] [--repeats N] [--baseline-repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import lcnflow as lf
from baselines import layerwise_gradient, scipy_flow, torch_gd
from common import fmt_time, machine_info
from problems import PROBLEMS

GTOL = 1e-10
#: Problems of the default table: B6 (2D images) takes minutes per lcnflow run and hours for the layer-by-layer
#: baselines; it is measured by bench_compiled.py instead.
FLOW_PROBLEMS = ["B1", "B2", "B3", "B4", "B5"]


def run_lcnflow(problem, repeats: int) -> dict:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        risk = problem.risk
        result = lf.gradient_flow(risk, problem.init, certify_tol=GTOL)
        times.append(time.perf_counter() - start)
    cp = result.critical_point
    return {
        "time": statistics.median(times),
        "times": times,
        "certified": result.certified and result.gradient_norm <= GTOL,
        "gradient_norm": result.gradient_norm,
        "gradient_evaluations": result.num_gradient_evaluations,
        "hessian_evaluations": result.num_hessian_evaluations,
        "steps": result.num_steps,
        "t_final": result.t_final,
        "kind": f"{cp.kind} ({cp.origin})" if cp else "—",
        "v": result.final_filter,
        "method": result.method,
    }


def _median_of(fn, repeats: int) -> dict:
    runs = [fn() for _ in range(repeats)]
    out = dict(runs[0])
    out["time"] = statistics.median(r["wall_time"] for r in runs)
    out["runs"] = len(runs)
    return out


def run_problem(name: str, cap: float, repeats: int, baseline_repeats: int) -> dict:
    problem = PROBLEMS[name]()
    row = {"name": name, "description": problem.description, "lcnflow": run_lcnflow(problem, repeats)}
    v_ref = row["lcnflow"]["v"]
    scale = float(np.max(np.abs(v_ref)))

    def agree(v):
        return float(np.max(np.abs(np.asarray(v) - v_ref))) / scale if v is not None else float("nan")

    tg = _median_of(lambda: torch_gd(problem.arch, problem.inputs, problem.targets, problem.loss, problem.init,
                                     gtol=GTOL, time_cap=cap), baseline_repeats)
    tg["agreement"] = agree(lf.final_filter(problem.arch, tg["filters"])) if tg["filters"] is not None else np.nan
    row["torch"] = tg
    grad = layerwise_gradient(problem.arch, problem.inputs, problem.targets, problem.loss)
    w0 = lf.flatten(problem.init)
    for method in ("LSODA", "Radau"):
        res = _median_of(lambda method=method: scipy_flow(grad, w0, method, gtol=GTOL, time_cap=cap), baseline_repeats)
        res["agreement"] = agree(lf.final_filter(problem.arch, res["w"]))
        row[method] = res
    return row


def table(rows: list[dict], cap: float) -> str:
    lines = [
        "| problem | method | time to ‖∇L‖ ≤ 1e-10 | speed-up of lcnflow | gradient evals | final ‖∇L‖ | same limit? |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lc = r["lcnflow"]
        lines.append(
            f"| **{r['name']}** | lcnflow ({lc['kind']}) | {fmt_time(lc['time'])} | — | "
            f"{lc['gradient_evaluations']} (+{lc['hessian_evaluations']} Hessians) | {lc['gradient_norm']:.1e} | ref |"
        )
        for key, label in (("torch", "PyTorch GD"), ("LSODA", "solve_ivp LSODA"), ("Radau", "solve_ivp Radau")):
            b = r[key]
            extra = f", η = {b['eta']:g}" if key == "torch" and b.get("eta") else ""
            if key == "torch" and b.get("diverged"):
                extra += f" (η = {', '.join(f'{e:g}' for e in b['diverged'])} diverged)"
            reached = b["reached"]
            t = f"{fmt_time(b['time'])}" if reached else f"> {cap:g} s (cap; stopped at {fmt_time(b['time'])})"
            speed = f"{b['time'] / lc['time']:.0f}×" if reached else f"> {cap / lc['time']:.0f}×"
            lines.append(
                f"| | {label}{extra} | {t} | {speed} | {b['gradient_evaluations']} | {b['gradient_norm']:.1e} | "
                f"{b['agreement']:.1e} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(FLOW_PROBLEMS))
    parser.add_argument("--cap", type=float, default=60.0, help="time cap per baseline run (s)")
    parser.add_argument("--repeats", type=int, default=5, help="lcnflow runs per problem (median)")
    parser.add_argument("--baseline-repeats", type=int, default=1, help="baseline runs per problem (median)")
    args = parser.parse_args()
    rows = [run_problem(name, args.cap, args.repeats, args.baseline_repeats) for name in args.problems]
    print(machine_info())
    print(table(rows, args.cap))


if __name__ == "__main__":
    main()
