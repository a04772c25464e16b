"""Robust losses against gross outliers: the square loss versus pseudo-Huber on a planted deconvolution problem.

Targets come from a planted two-layer LCN (so the truth v° is in the function space) plus small Gaussian noise,
and a fraction of the target entries is hit by gross outliers.  Gradient flow runs to a certified limit for each
loss; the example reports how far each limit's final filter is from the planted one.  The square loss averages
the outliers into its estimate; pseudo-Huber grows only linearly and all but ignores them.

    python examples/robust_outliers.py [--fast]
"""

import numpy as np
from _common import fast_mode, table

from lcnflow.experiments import config_from_dict, execute

fast = fast_mode()
base = {
    "name": "robust-outliers",
    "architecture": {"input_size": 24, "filter_sizes": [3, 3]},
    "data": {"source": "planted", "target": "lcn", "num_samples": 60 if fast else 300, "noise": "outliers",
             "noise_std": 0.02, "outlier_fraction": 0.1, "outlier_scale": 10.0, "seed": 3},
    "init": {"scale": 0.5, "seed": 0},
}
losses = [("square", {}), ("pseudo_huber", {"delta": 0.1}), ("log_cosh", {})]
if not fast:
    losses.append(("generalized_huber", {"alpha": 10.0, "beta": 0.0}))

rows = []
for name, params in losses:
    run = execute(config_from_dict(base, {"loss.name": name, **{f"loss.{k}": v for k, v in params.items()}}))
    truth, v = run.experiment.data.truth, run.result.final_filter
    error = float(np.linalg.norm(v - truth) / np.linalg.norm(truth))
    label = name + (" (" + ", ".join(f"{k} = {p:g}" for k, p in params.items()) + ")" if params else "")
    rows.append([label, f"{error:.4f}", run.verdict["headline"], f"{run.result.wall_time:.2f} s"])

print(run.experiment.data.description)
print(table(["loss", "‖v* − v°‖ / ‖v°‖", "limit", "time"], rows))
