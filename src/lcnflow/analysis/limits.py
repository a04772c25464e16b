r"""When two limits are the same: the one rule, used by ``verify=True``, by ``compare`` (flow against gradient
descent and SGD) and by sweep summaries (distinct limits).

Limits are compared in function space: ``v = π(w)``, not ``w`` — points of one fibre (rescaled layers, roots
distributed differently over the layers) are the same network.  The distance is relative,

.. math:: d(v_a, v_b) = \frac{‖v_a − v_b‖}{\max(‖v_a‖, ‖v_b‖)},

so no unit of the data or the initialization changes it.  Distinct critical points differ by order one; a certified
limit is accurate to about ``‖∇L‖/λ`` at a non-degenerate minimum (``λ`` its smallest curvature off the symmetry
directions, well below ``10⁻⁶`` relative), but only to about ``‖∇L‖^{1/3}`` at a degenerate one (``ℓ_4`` with
noiseless targets: ``10⁻³``), where two runs into the same limit stop at different distances from it.
:data:`SAME_LIMIT_RTOL` allows for that.
"""

from __future__ import annotations

import numpy as np

#: Limits closer than this (relative, :func:`limit_distance`) are the same limit.
SAME_LIMIT_RTOL = 1e-3


def limit_distance(v_a: np.ndarray, v_b: np.ndarray) -> float:
    r"""``‖v_a − v_b‖ / max(‖v_a‖, ‖v_b‖)`` for two final filters (0 when both are zero; ``inf`` for shapes that
    differ)."""
    a = np.asarray(v_a, dtype=np.float64).ravel()
    b = np.asarray(v_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        return float("inf")
    size = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    diff = float(np.linalg.norm(a - b))
    return 0.0 if diff == 0.0 else diff / size


def same_limit(v_a: np.ndarray, v_b: np.ndarray) -> bool:
    """Whether two final filters are the same limit: :func:`limit_distance` ``≤`` :data:`SAME_LIMIT_RTOL`."""
    return limit_distance(v_a, v_b) <= SAME_LIMIT_RTOL
