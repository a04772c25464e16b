"""Stochastic gradient descent beside the flow: does minibatch noise find what the flow misses?

On MNIST-1D deblurring (real signals, the built-in default problem) with three size-3 layers, the certified limit
of gradient flow is a spurious local minimum.  This example runs, from the same initializations:

1. gradient flow, gradient descent and SGD side by side (outcomes, same limit or not, distance to the flow at
   matched times t = kη);
2. SGD with shrinking η at a fixed batch size: how fast its iterates approach the flow on [0, T];
3. outcome rates over several initializations for the flow and SGD cells (batch size × step size, all run for the
   same number ⌈T/η⌉ of steps), with 95 % Wilson intervals.

    python examples/sgd_vs_flow.py [--fast] [--out DIR]      # --out: the figures as PNG
"""

import math
import os

import numpy as np
from _common import fast_mode, out_dir, table

from lcnflow.experiments import InitConfig, initial_filters, load_config, prepare
from lcnflow.experiments.compare import compare_methods, distance_to_flow, format_rates, outcome_rates, sgd_sweep

fast = fast_mode()
out = out_dir()
exp = prepare(load_config(None, {"data.num_samples": 100} if fast else {}))
risk = exp.risk
print(exp.data.description)

# 1. side by side from the default initialization
eta, batch = 0.003, 8
cmp = compare_methods(risk, exp.init, eta, batch, max_steps=math.ceil((20 if fast else 120) / eta), seed=0)
print(f"\n1. From one initialization (SGD: B = {batch}, η = {eta}, flow time {cmp.runs['sgd'].result.t_final:.4g})")
print(table(["method", "outcome", "certified", "L(limit)", "same limit as GF", "max ‖w_k − w(kη)‖",
             "polish moved"],
            [[r["method"], r["outcome"], r["certified"], f"{r['loss']:.8f}", r["same_limit_as_flow"],
              f"{r['max_distance_to_flow']:.3g}", f"{r['polish_distance']:.2g}"] for r in cmp.table()]))
print(f"(distances against the scale max(‖w(0)‖, ‖w*‖) = {cmp.scale:.3g})")

# 2. η → 0 at a fixed batch size: SGD approaches the flow
T = 0.5 if fast else 2.0
etas = [0.002, 0.001] if fast else [0.002, 0.001, 0.0005, 0.00025]
seeds = [0, 1] if fast else [0, 1, 2]
rows, curves = [], {}
for sampling in ("without_replacement", "with_replacement"):
    d = distance_to_flow(risk, exp.init, etas, batch, T, seeds=seeds, sampling=sampling)
    slope = float(np.polyfit(np.log(etas), np.log([d[e] for e in etas]), 1)[0])
    curves[sampling] = d
    rows += [[sampling.replace("_", " "), f"{e:g}", f"{d[e]:.4f}", f"{slope:.2f}" if e == etas[-1] else ""]
             for e in etas]
print(f"\n2. max over k ≤ T/η of ‖w_k − w(kη)‖ on [0, {T:g}], B = {batch}, mean of {len(seeds)} seeds")
print(table(["sampling", "η", "distance", "log-log slope"], rows))

# 3. outcome rates over initializations.  Every SGD cell runs ⌈T/η⌉ steps: η for the first 80 % of them, then η/10
# so that the iterates settle and the polished endpoint can be certified (a constant step keeps them moving).
n_init = 3 if fast else 8
T3 = 20 if fast else 120
inits = [initial_filters(InitConfig(scale=1.0, seed=s), exp.architecture) for s in range(n_init)]
records = sgd_sweep(risk, inits, step_sizes=[0.003] if fast else [0.001, 0.004],
                    batch_sizes=[8] if fast else [1, 8], seeds=[0], flow_time=T3, anneal=(0.8, 0.1))
rates = outcome_rates((r["cell"], r["outcome"]) for r in records)
print(f"\n3. Outcomes over {n_init} initializations (init scale 1, seeds 0–{n_init - 1}); SGD for ⌈{T3}/η⌉ steps, "
      "the last 20 % at η/10; k/n (95 % Wilson interval)")
print(format_rates(rates))
sgd = [r for r in records if r["method"] == "sgd"]
same = sum(bool(r["same_limit_as_flow"]) for r in sgd)
print(f"SGD runs whose certified limit is the flow's limit from the same init: {same}/{len(sgd)}")
flow_out = {r["init"]: r["outcome"] for r in records if r["method"] == "gradient_flow"}
print(table(["init", "gradient flow", *sorted({r["cell"] for r in sgd})],
            [[i, flow_out[i], *[next(f"{r['outcome']} (L = {r['loss']:.5f})" for r in sgd
                                     if r["init"] == i and r["cell"] == c) for c in sorted({r["cell"] for r in sgd})]]
             for i in range(n_init)]))

if out:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    os.makedirs(out, exist_ok=True)
    cmp.plot(os.path.join(out, "sgd_vs_flow_curves.png"))
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for sampling, d in curves.items():
        ax.loglog(list(d), list(d.values()), "o-", label=sampling.replace("_", " "))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(etas, [f"{e:g}" for e in etas])
    ax.set(xlabel="η", ylabel=f"max ‖w_k − w(kη)‖ on [0, {T:g}]", title=f"SGD (B = {batch}) → flow as η → 0")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "sgd_distance_vs_eta.png"))
    print(f"figures written to {out}")
