"""The dynamics layer: run options, steppers and the solver registry, the compiled Rodas4 segments, the driver loop
that decides when a run stops (using the analysis layer's certificate and classification), gradient flow (one run, or
many of one problem: :mod:`lcnflow.dynamics.batch`), gradient descent and SGD, and the result of a run.

``gradient_flow`` and ``gradient_flows`` are importable from here; they load on first use, so importing one
submodule (the options, the result) does not load the integrators."""

from __future__ import annotations

import importlib

_EXPORTS = {"gradient_flow": "integrate", "gradient_flows": "batch"}

__all__ = ["gradient_flow", "gradient_flows"]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
