"""lcnflow: linear convolutional networks trained by gradient flow — exact risks, certified limits, sweeps.

The layering (lower layers never import higher ones)::

    architecture → conv (Π, π, H) → losses → data, risk, condition → flow → experiments → report, cli
"""

__version__ = "0.1.0"  # before the imports: modules read it while lcnflow is being imported

from .architecture import Architecture, SizeRuleWarning
from .condition import DataCondition, check_data_condition
from .conv import (
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
from .data import Dataset
from .flow import (
    CriticalPoint,
    FlowResult,
    TheoremCheck,
    classify_critical_point,
    gradient_descent,
    gradient_flow,
    stochastic_gradient_descent,
    theorem_hypotheses,
)
from .interop import from_torch, to_torch
from .losses import LOSS_NAMES, Loss, get_loss
from .risk import EmpiricalRisk

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
