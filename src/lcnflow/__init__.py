"""lcnflow: linear convolutional networks trained by gradient flow — exact risks, certified limits, sweeps.

The layers, lowest first (a layer imports only the layers below it; ``lint-imports`` checks this, the contract is
in pyproject.toml)::

    kernels      compiled arithmetic: π, dπᵀg, Hessian terms, every built-in loss's data passes
    model        architecture, conv (Π, π, H), losses, data, risk (ℒ, L and derivatives), data condition
    analysis     certificate, critical points, best point of M, symmetry and invariants, theorem, itinerary
    dynamics     options, steppers and solver registry, compiled Rodas4, the driver (when a run stops), GD, SGD
    flow         the public names of dynamics and analysis
    report       figures and HTML of a run
    experiments  configs, data sources, runs, compare
    cli_support  command-line helpers
    sweep        grids, executor, store, summaries
    cli          the ``lcnflow`` command
"""

__version__ = "0.1.0"  # before the imports: modules read it while lcnflow is being imported

from lcnflow.flow import (
    CriticalPoint,
    FlowResult,
    TheoremCheck,
    classify_critical_point,
    gradient_descent,
    gradient_flow,
    stochastic_gradient_descent,
    theorem_hypotheses,
)
from lcnflow.model.architecture import Architecture, SizeRuleWarning
from lcnflow.model.condition import DataCondition, check_data_condition
from lcnflow.model.conv import (
    as_filters,
    final_filter,
    final_filter_hessian_contraction,
    final_filter_jacobian,
    flatten,
    layer_matrix,
    network_matrix,
    patch_matrix,
    predict,
    random_init,
    unflatten,
)
from lcnflow.model.data import Dataset
from lcnflow.model.interop import from_torch, to_torch
from lcnflow.model.losses import LOSS_NAMES, Loss, get_loss
from lcnflow.model.risk import EmpiricalRisk

__all__ = [
    "LOSS_NAMES",
    "Architecture",
    "CriticalPoint",
    "DataCondition",
    "Dataset",
    "EmpiricalRisk",
    "FlowResult",
    "Loss",
    "SizeRuleWarning",
    "TheoremCheck",
    "as_filters",
    "check_data_condition",
    "classify_critical_point",
    "final_filter",
    "final_filter_hessian_contraction",
    "final_filter_jacobian",
    "flatten",
    "from_torch",
    "get_loss",
    "gradient_descent",
    "gradient_flow",
    "layer_matrix",
    "network_matrix",
    "patch_matrix",
    "predict",
    "random_init",
    "stochastic_gradient_descent",
    "theorem_hypotheses",
    "to_torch",
    "unflatten",
]


def __getattr__(name: str):
    """``lcnflow.sweep`` (a callable module: ``lcnflow.sweep("sweep.toml", out="results")``), imported on first use
    so that ``import lcnflow`` loads neither the sweep layer nor Dask."""
    if name == "sweep":
        import importlib

        return importlib.import_module(".sweep", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
