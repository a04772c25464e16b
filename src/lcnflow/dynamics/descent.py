r"""Gradient descent ``w ← w − η ∇L(w)``: the discretization users run, with the same driver and result as the flow.

One step changes the conserved quantities of the flow by exactly ``η²(‖g_{i+1}‖² − ‖g_i‖²)`` (``g_i`` the layer
gradients), so ``invariant_drift`` measures how far the iteration strays from the flow it discretizes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from lcnflow._threads import one_blas_thread
from lcnflow.analysis.certify import check_start
from lcnflow.dynamics.driver import drive_steps, run_alone
from lcnflow.dynamics.integrate import _check_risk
from lcnflow.dynamics.options import DescentOptions, check_callback
from lcnflow.dynamics.result import Callback, FlowResult
from lcnflow.dynamics.steppers import DescentStepper
from lcnflow.model.conv import as_filters, flatten
from lcnflow.model.risk import EmpiricalRisk


def gradient_descent(
    risk: EmpiricalRisk,
    init: Sequence[np.ndarray] | np.ndarray,
    step_size: float,
    *,
    adaptive: bool = False,
    max_steps: int = 100_000,
    max_time: float = math.inf,
    gtol: float = 1e-8,
    callback: Callback | None = None,
    certify_tol: float = 1e-10,
    polish_radius: float = 1e-2,
    classify: bool = True,
    max_record: int = 400,
    blowup_factor: float = 1e6,
) -> FlowResult:
    r"""Run gradient descent from ``init`` until it provably stops moving, then certify like the flow.

    The stopping rule is the flow's (:mod:`lcnflow.dynamics.driver`): a small gradient is a candidate, the run ends only
    at a certified minimum (or a saddle whose stable set the start lies on).

    Parameters
    ----------
    risk : EmpiricalRisk
    init : list of ndarray or flat ndarray
    step_size : float
        ``η`` (> 0).  With ``adaptive=True`` the initial step of Armijo-safeguarded steps
        (:class:`~lcnflow.dynamics.steppers.DescentStepper`).
    adaptive : bool
        Plain fixed-step descent by default.
    max_steps, max_time, gtol, callback, certify_tol, polish_radius, classify, max_record, blowup_factor
        As for :func:`~lcnflow.gradient_flow` (:class:`~lcnflow.dynamics.options.DescentOptions`).

    Returns
    -------
    FlowResult
        ``t_final`` and ``times`` are the flow-time equivalents ``Σ η``.
    """
    start = time.perf_counter()
    opts = DescentOptions(step_size=step_size, adaptive=adaptive, max_steps=max_steps, max_time=max_time,
                          gtol=gtol, certify_tol=certify_tol, polish_radius=polish_radius, classify=classify,
                          max_record=max_record, blowup_factor=blowup_factor)
    return run_descent(_check_risk(risk), init, opts, callback=callback, start=start)


@one_blas_thread
def run_descent(risk: EmpiricalRisk, init, opts: DescentOptions, *, callback=None,
                start: float | None = None) -> FlowResult:
    """:func:`gradient_descent` with its options as one :class:`~lcnflow.dynamics.options.DescentOptions`."""
    start = time.perf_counter() if start is None else start
    check_callback(callback)
    w0 = flatten(as_filters(risk.arch, init, "init"))
    check_start(risk, w0)

    def make(w, loss, g):
        return DescentStepper(risk, w, loss, g, opts.step_size, opts.adaptive)

    result = run_alone(drive_steps(risk, w0, make, opts, save=np.zeros(0), t_max=math.inf, callback=callback,
                                   options=opts.to_dict(), start=start))
    result.method = "gradient_descent"
    return result
