r"""The solver registry: the stepper an integrator's name stands for, and what ``integrator="auto"`` picks.

Steppers are in :mod:`lcnflow.dynamics.steppers` (NumPy and scipy) and :mod:`lcnflow.dynamics.compiled` (Rodas4
in compiled segments); this module is the one place that chooses among them.
"""

from __future__ import annotations

from lcnflow.dynamics import compiled
from lcnflow.dynamics.steppers import ExponentialStepper, Rodas4Stepper, RosenbrockStepper, ScipyStepper, Stepper
from lcnflow.model.risk import EmpiricalRisk


def auto_integrator(risk: EmpiricalRisk) -> str:
    """What ``integrator="auto"`` runs for ``risk``: ``"rodas4"`` (compiled where the kernels run the risk,
    :func:`lcnflow.dynamics.compiled.available`), except ``"LSODA"`` where a Hessian costs a great many gradients — a
    built-in loss other than the square loss whose data passes use the FFT correlations of long 2D filters: there
    ``∇²ℒ(v) = (1/m) Hᵀdiag(ℓ'')H`` is a weighted pass over every patch (0.57 s for 64 images of 128 × 128 and an
    11 × 11 final filter, against 21 ms for a gradient), which Rodas4 needs at every step and LSODA reuses."""
    view = risk.kernel_view()
    if view is not None and not risk.is_quadratic and view.loss_id >= 0 and view.spectral_ok:
        return "LSODA"
    return "rodas4"


def make_flow_stepper(risk: EmpiricalRisk, w0, loss0, g0, integrator: str, rtol: float, atol: float,
                      t_max: float) -> Stepper:
    """The stepper of ``integrator`` started at ``w0`` (``auto``: :func:`auto_integrator`); Rodas4 runs in compiled
    segments where the kernels run the risk (:func:`lcnflow.dynamics.compiled.available`), else in NumPy."""
    if integrator == "auto":
        integrator = auto_integrator(risk)
    if integrator == "exponential":
        return ExponentialStepper(risk, w0, loss0, g0, rtol, atol)
    if integrator == "rodas4":
        if compiled.available(risk):
            return compiled.CompiledRodas4Stepper(risk, w0, loss0, g0, rtol, atol)
        return Rodas4Stepper(risk, w0, loss0, g0, rtol, atol)
    if integrator == "rosenbrock":
        return RosenbrockStepper(risk, w0, loss0, g0, rtol, atol)
    return ScipyStepper(risk, w0, loss0, g0, integrator, rtol, atol, t_max)
