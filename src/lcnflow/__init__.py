"""lcnflow: linear convolutional networks trained by gradient flow — exact risks, certified limits, sweeps.

The layering (lower layers never import higher ones)::

    architecture → conv (Π, π, H) → losses → data, risk, condition → flow → experiments → report, cli
"""

__version__ = "0.1.0"  # before the imports: modules read it while lcnflow is being imported

import importlib

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up stays short)
if TYPE_CHECKING:  # pragma: no cover
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

#: Public name → submodule defining it, loaded on first access: ``import lcnflow`` itself imports nothing heavy
#: (NumPy, SciPy, Numba come with the first name used), so the command line can take over Ctrl-C and SIGTERM
#: before any of them loads (:mod:`lcnflow._main`).
_EXPORTS = {
    "Architecture": "architecture", "SizeRuleWarning": "architecture",
    "DataCondition": "condition", "check_data_condition": "condition",
    **dict.fromkeys(["as_filters", "final_filter", "final_filter_hessian_contraction", "final_filter_jacobian",
                     "flatten", "layer_matrix", "network_matrix", "patch_matrix", "predict", "random_init",
                     "unflatten"], "conv"),
    "Dataset": "data",
    **dict.fromkeys(["CriticalPoint", "FlowResult", "TheoremCheck", "classify_critical_point", "gradient_descent",
                     "gradient_flow", "stochastic_gradient_descent", "theorem_hypotheses"], "flow"),
    "from_torch": "interop", "to_torch": "interop",
    "LOSS_NAMES": "losses", "Loss": "losses", "get_loss": "losses",
    "EmpiricalRisk": "risk",
}

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



def __getattr__(name: str) -> object:
    """The public names (see ``_EXPORTS``) and submodules, imported on first use; ``lcnflow.sweep`` is a callable
    module (``lcnflow.sweep("sweep.toml", out="results")``) that loads neither pyarrow nor Dask until used."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("__"):
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
