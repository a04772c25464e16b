r"""Many runs of one problem: gradient flow from a stack of initializations, one certified result per start.

:func:`gradient_flows` is :func:`~lcnflow.gradient_flow` applied to each of ``w_1(0), …, w_n(0)`` on the same risk
with the same options: the risk is checked, the options are validated and every start is checked once, before any
run starts (a bad start at position 900 is refused before 899 runs are spent), and the runs then share the risk's
prepared statistics (``G``, ``b`` and the compiled arguments it keeps).  Each result is the one
:func:`~lcnflow.gradient_flow` returns for that start alone — same stop rule, certificate and classification, same
numbers — because each run *is* such a run: batching changes what is shared between runs, never what one run
computes.  :func:`iter_flows` yields the results one at a time (a caller can record each as it finishes, or attach
the warnings a run raises to that run).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np

from lcnflow.analysis.certify import check_start
from lcnflow.dynamics.integrate import _check_risk, run_flow
from lcnflow.dynamics.options import FLOW_DEFAULTS, FlowOptions, check_callback, check_save_at
from lcnflow.dynamics.result import Callback, FlowResult
from lcnflow.model.conv import as_filters, flatten
from lcnflow.model.risk import EmpiricalRisk

__all__ = ["gradient_flows", "iter_flows"]


def _starts(risk: EmpiricalRisk, inits) -> list[np.ndarray]:
    """Each start as a flat float64 vector, checked (shape, finiteness, not below the float64 floor)."""
    if isinstance(inits, np.ndarray):
        if inits.ndim != 2:
            raise ValueError(f"inits: expected a 2D array (one flat start per row) or a sequence of starts, got an "
                             f"array of shape {inits.shape}; for one start use gradient_flow")
        items = list(inits)
    elif isinstance(inits, Sequence) and not isinstance(inits, str | bytes):
        items = list(inits)
    else:
        raise ValueError(f"inits: expected a sequence of starts (each a list of filters or a flat array), got "
                         f"{type(inits).__name__}")
    if not items:
        raise ValueError("inits: got no start; give at least one (a list of filters or a flat array each)")
    out = []
    for i, init in enumerate(items):
        w0 = flatten(as_filters(risk.arch, init, f"inits[{i}]"))
        check_start(risk, w0, f"inits[{i}]")
        out.append(w0)
    return out


def iter_flows(risk: EmpiricalRisk, inits, opts: FlowOptions, *, save_at=None,
               callback: Callback | None = None) -> Iterator[FlowResult]:
    """The results of :func:`gradient_flows` one at a time, in the order of ``inits``, with the options as one
    :class:`~lcnflow.dynamics.options.FlowOptions`.  Everything is checked before the first run starts; each run's
    ``wall_time`` (and ``max_time``) counts from its own start."""
    risk = _check_risk(risk)
    check_save_at(save_at, opts.t_max)
    check_callback(callback)
    starts = _starts(risk, inits)
    for w0 in starts:
        yield run_flow(risk, w0, opts, save_at=save_at, callback=callback, start=time.perf_counter())


def gradient_flows(
    risk: EmpiricalRisk,
    inits: Sequence[Sequence[np.ndarray] | np.ndarray] | np.ndarray,
    *,
    integrator: str = FLOW_DEFAULTS.integrator,
    t_max: float = FLOW_DEFAULTS.t_max,
    gtol: float = FLOW_DEFAULTS.gtol,
    rtol: float = FLOW_DEFAULTS.rtol,
    atol: float = FLOW_DEFAULTS.atol,
    save_at: Sequence[float] | np.ndarray | None = None,
    callback: Callback | None = None,
    max_steps: int = FLOW_DEFAULTS.max_steps,
    max_time: float = FLOW_DEFAULTS.max_time,
    certify_tol: float = FLOW_DEFAULTS.certify_tol,
    polish_radius: float = FLOW_DEFAULTS.polish_radius,
    classify: bool = FLOW_DEFAULTS.classify,
    max_record: int = FLOW_DEFAULTS.max_record,
    blowup_factor: float = FLOW_DEFAULTS.blowup_factor,
    verify: bool = FLOW_DEFAULTS.verify,
    method: str | None = None,
) -> list[FlowResult]:
    r"""Gradient flow ``ẇ = −∇L(w)`` from each of several starts ``w_1(0), …, w_n(0)`` of one risk: one certified,
    classified :class:`~lcnflow.FlowResult` per start.

    ``gradient_flows(risk, inits, **options)[j]`` is what ``gradient_flow(risk, inits[j], **options)`` returns (the
    same limit, kind, certificate and loss; only ``wall_time`` differs); the options are those of
    :func:`~lcnflow.gradient_flow`, validated once, and every start is checked before the first run begins.

    Parameters
    ----------
    risk : EmpiricalRisk
    inits : sequence of starts, or 2D ndarray
        The starts ``w_j(0)``: each a list of filters (one per layer) or a flat vector of all parameters; a 2D
        array holds one flat start per row.
    integrator, t_max, gtol, rtol, atol, save_at, max_steps, max_time, certify_tol, polish_radius, classify, \
max_record, blowup_factor, verify, method
        As for :func:`~lcnflow.gradient_flow`; each run gets them unchanged (``max_time`` bounds each run, not the
        batch).
    callback : callable, optional
        ``callback(t, w_flat, loss, gradient_norm)`` after each accepted step of every run (runs go one after the
        other, each from ``t = 0``); returning ``True`` stops the current run only.

    Returns
    -------
    list of FlowResult
        In the order of ``inits``.

    Raises
    ------
    ValueError
        For a bad option, or a start of the wrong shape, non-finite, or too small to be told from the origin
        (the message names ``inits[j]``); nothing has run then.
    """
    if method is not None:
        integrator = method
    opts = FlowOptions(integrator=integrator, t_max=t_max, gtol=gtol, rtol=rtol, atol=atol, max_steps=max_steps,
                       max_time=max_time, certify_tol=certify_tol, polish_radius=polish_radius, classify=classify,
                       max_record=max_record, blowup_factor=blowup_factor, verify=verify)
    return list(iter_flows(risk, inits, opts, save_at=save_at, callback=callback))
