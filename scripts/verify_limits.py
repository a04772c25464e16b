"""Does the default ``gradient_flow`` end where the flow really ends?  The grid of the stopping-rule acceptance.

For 1D stride-1 LCNs of depth 2–6 with filter sizes 2–3, initial scales 1 … 1e-8, square and pseudo-Huber losses on
planted noisy data, run ``lcnflow.gradient_flow`` with its defaults and the independent reference of
``tests/reference_flow.py`` (``numpy.convolve`` gradient, LSODA at rtol 1e-10 run 100× past lcnflow's stopping time
and on until ‖∇L‖ < 1e-13), and compare the limits: loss to 1e-8 relative, final filter to 1e-5 relative.

    python scripts/verify_limits.py [--quick]       # prints a Markdown table and a summary line
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import lcnflow as lf
from reference_flow import ConvolveRisk, planted_data, random_init, reference_limit

ARCHS = [[3, 3], [2, 3], [3, 3, 3], [2, 2, 2], [3, 2, 3, 2], [2, 2, 2, 2], [3, 3, 2, 2, 3], [2, 3, 2, 3, 2, 3]]
SCALES = [1.0, 1e-2, 1e-4, 1e-6, 1e-8]
LOSSES = [("square", {}), ("pseudo_huber", {"delta": 0.5})]


def one(sizes, scale, loss, params, seed):
    X, Y = planted_data(sizes, seed)
    risk = lf.EmpiricalRisk(lf.Architecture(X.shape[1], sizes), lf.get_loss(loss, **params), lf.Dataset(X, Y))
    w0 = random_init(sizes, scale / np.sqrt(max(sizes)), seed + 100)
    t0 = time.perf_counter()
    res = lf.gradient_flow(risk, w0)
    wall = time.perf_counter() - t0
    ref = ConvolveRisk(sizes, X, Y, loss, params.get("delta", 1.0))
    w_ref, t_ref, g_ref = reference_limit(ref, w0, 100 * max(res.t_final, 1.0))
    v, v_ref = res.final_filter, ref.pi(w_ref)
    dv = float(np.linalg.norm(v - v_ref) / np.linalg.norm(v_ref))
    dl = abs(res.loss - ref.value(w_ref)) / abs(ref.value(w_ref))
    ok = res.converged and dv <= 1e-5 and dl <= 1e-8 and res.kind != "strict_saddle" and g_ref < 1e-13
    return dict(sizes=sizes, scale=scale, loss=loss, seed=seed, kind=res.kind, t=res.t_final, wall=wall,
                plateaus=len(res.itinerary), dv=dv, dl=dl, t_ref=t_ref, g_ref=g_ref, ok=ok, message=res.message)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, three architectures")
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    archs = ARCHS[::3] if args.quick else ARCHS
    seeds = range(1 if args.quick else args.seeds)
    rows = []
    print("| k | scale | loss | seed | lcnflow verdict | t | plateaus | wall s | ‖v−v_ref‖/‖v_ref‖ | ΔL/L | "
          "reference ‖∇L‖ | ok |")
    print("|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for sizes in archs:
        for scale in SCALES:
            for loss, params in LOSSES:
                for seed in seeds:
                    r = one(sizes, scale, loss, params, seed)
                    rows.append(r)
                    print(f"| {sizes} | {scale:g} | {loss} | {seed} | {r['kind']} | {r['t']:.3g} | {r['plateaus']} | "
                          f"{r['wall']:.2f} | {r['dv']:.1e} | {r['dl']:.1e} | {r['g_ref']:.0e} | "
                          f"{'yes' if r['ok'] else 'NO'} |",
                          flush=True)
    bad = [r for r in rows if not r["ok"]]
    walls = np.array([r["wall"] for r in rows])
    print(f"\n{len(rows) - len(bad)} of {len(rows)} runs agree with the reference; lcnflow wall time median "
          f"{np.median(walls):.3f} s, max {walls.max():.2f} s")
    for r in bad:
        print("DISAGREES:", r)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
