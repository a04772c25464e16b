"""lcnflow: linear convolutional networks trained by gradient flow — exact risks, certified limits, sweeps.

The layers, lowest first (a layer imports only the layers below it; ``lint-imports`` checks this, the contract is
in pyproject.toml)::

    _files, _signals   atomic writes; Ctrl-C and SIGTERM handling (no lcnflow import)
    record       the run record's schema, result.json: its writer and reader (beside them; no lcnflow import)
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
    _main        its entry point (signals handled before the heavy imports)
"""

__version__ = "0.1.0"  # before the imports: modules read it while lcnflow is being imported

import importlib

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up stays short)
if TYPE_CHECKING:  # pragma: no cover
    from lcnflow.flow import (
        CriticalPoint,
        FlowResult,
        TheoremCheck,
        classify_critical_point,
        classify_critical_points,
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

#: Public name → submodule defining it, loaded on first access: ``import lcnflow`` itself imports nothing heavy
#: (NumPy, SciPy, Numba come with the first name used), so the command line can take over Ctrl-C and SIGTERM
#: before any of them loads (:mod:`lcnflow._main`).
_EXPORTS = {
    "Architecture": "model.architecture", "SizeRuleWarning": "model.architecture",
    "DataCondition": "model.condition", "check_data_condition": "model.condition",
    **dict.fromkeys(["as_filters", "final_filter", "final_filter_hessian_contraction", "final_filter_jacobian",
                     "flatten", "layer_matrix", "network_matrix", "patch_matrix", "predict", "random_init",
                     "unflatten"], "model.conv"),
    "Dataset": "model.data",
    **dict.fromkeys(["CriticalPoint", "FlowResult", "TheoremCheck", "classify_critical_point",
                     "classify_critical_points", "gradient_descent", "gradient_flow", "gradient_flows",
                     "stochastic_gradient_descent", "theorem_hypotheses"], "flow"),
    "from_torch": "model.interop", "to_torch": "model.interop",
    "LOSS_NAMES": "model.losses", "Loss": "model.losses", "get_loss": "model.losses",
    "EmpiricalRisk": "model.risk",
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
    "classify_critical_points",
    "final_filter",
    "final_filter_hessian_contraction",
    "final_filter_jacobian",
    "flatten",
    "from_torch",
    "get_loss",
    "gradient_descent",
    "gradient_flow",
    "gradient_flows",
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
