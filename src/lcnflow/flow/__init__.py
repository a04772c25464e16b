"""Dynamics: gradient flow, gradient descent and SGD to a certified, classified critical point."""

from .certify import PolishResult, lojasiewicz_fit, polish
from .critical import CriticalPoint, classify_critical_point
from .descent import gradient_descent
from .integrate import METHODS, gradient_flow
from .optimum import FunctionSpaceBest, best_on_function_space
from .result import FlowResult
from .sgd import minibatches, step_sizes, stochastic_gradient_descent
from .symmetry import invariants, symmetry_basis
from .theorem import TheoremCheck, theorem_hypotheses

__all__ = [
    "METHODS",
    "CriticalPoint",
    "FlowResult",
    "FunctionSpaceBest",
    "PolishResult",
    "TheoremCheck",
    "best_on_function_space",
    "classify_critical_point",
    "gradient_descent",
    "gradient_flow",
    "invariants",
    "lojasiewicz_fit",
    "minibatches",
    "polish",
    "step_sizes",
    "stochastic_gradient_descent",
    "symmetry_basis",
    "theorem_hypotheses",
]
