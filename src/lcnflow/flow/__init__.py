"""Gradient flow, gradient descent and SGD to a certified, classified critical point: the public names of the
dynamics (:mod:`lcnflow.dynamics`) and of the analysis of their limits (:mod:`lcnflow.analysis`)."""

from lcnflow.analysis.certify import PolishResult, lojasiewicz_fit, polish, polish_many
from lcnflow.analysis.critical import CriticalPoint, classify_critical_point, classify_critical_points
from lcnflow.analysis.optimum import FunctionSpaceBest, best_on_function_space
from lcnflow.analysis.symmetry import invariants, symmetry_basis
from lcnflow.analysis.theorem import TheoremCheck, theorem_hypotheses
from lcnflow.dynamics.batch import gradient_flows
from lcnflow.dynamics.descent import gradient_descent
from lcnflow.dynamics.integrate import METHODS, gradient_flow
from lcnflow.dynamics.result import FlowResult
from lcnflow.dynamics.sgd import minibatches, step_sizes, stochastic_gradient_descent

__all__ = [
    "METHODS",
    "CriticalPoint",
    "FlowResult",
    "FunctionSpaceBest",
    "PolishResult",
    "TheoremCheck",
    "best_on_function_space",
    "classify_critical_point",
    "classify_critical_points",
    "gradient_descent",
    "gradient_flow",
    "gradient_flows",
    "invariants",
    "lojasiewicz_fit",
    "minibatches",
    "polish",
    "polish_many",
    "step_sizes",
    "stochastic_gradient_descent",
    "symmetry_basis",
    "theorem_hypotheses",
]
