r"""Many runs of one problem: gradient flow from a stack of initializations, one certified result per start.

:func:`gradient_flows` is :func:`~lcnflow.gradient_flow` applied to each of ``w_1(0), …, w_n(0)`` on the same risk
with the same options: the risk is checked, the options are validated and every start is checked once, before any
run starts (a bad start at position 900 is refused before 899 runs are spent).  Where the runs use the compiled
Rodas4 segments (the default for the built-in losses), up to :data:`BATCH_RUNS` of them advance together: one
compiled call steps all of them, with the run as the innermost axis of its arrays
(:func:`~lcnflow.dynamics.compiled.rodas4_segments`); each run's stopping rule runs in Python between such calls,
and the candidates of all the runs that reach one are polished and classified together, their linear algebra in
stacked calls (:func:`~lcnflow.analysis.certify.polish_many`,
:func:`~lcnflow.analysis.critical.classify_critical_points`).  The driver is a generator that hands out these
requests (:func:`~lcnflow.dynamics.driver.drive_steps`).  Each result is the one :func:`~lcnflow.gradient_flow`
returns for that start alone — the same steps, stop rule, certificate and classification, bit for bit — because a run's
arithmetic does not depend on the other runs in its batch; only ``wall_time`` differs.  :func:`iter_flows` yields
the results one at a time.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from lcnflow._threads import one_blas_thread
from lcnflow.analysis.certify import check_start
from lcnflow.dynamics.driver import AnalysisRequest
from lcnflow.dynamics.integrate import _check_risk, flow_steps, run_flow
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


#: Runs advanced together at most (as one ends, the next start takes its place).
BATCH_RUNS = 64
#: Starts run by one batch, whose results are yielded once all of them have ended (a longer list goes in
#: consecutive batches): four times :data:`BATCH_RUNS`, so the compiled calls narrow only at the end of each.
QUEUE_RUNS = 256


class _RunClock:
    """The time spent on one run of a batch: its own Python work, and its share of the compiled calls it took part
    in (each call's time divided evenly among its runs)."""

    __slots__ = ("since", "spent")

    def __init__(self):
        self.spent, self.since = 0.0, None

    def __call__(self) -> float:
        return self.spent + (time.perf_counter() - self.since if self.since is not None else 0.0)


class _Run:
    """One run of a batch: its generator (:func:`~lcnflow.dynamics.integrate.flow_steps`), clock, the warnings it
    raised, the segment or the polish or classification it waits for, and its result (a FlowResult or the exception
    it raised)."""

    __slots__ = ("asking", "caught", "clock", "outcome", "segment", "steps")

    def __init__(self, steps, clock):
        self.steps, self.clock, self.caught, self.outcome = steps, clock, [], None
        self.segment = self.asking = None

    def resume(self, caught: list, reply=None) -> None:
        """Run this run's Python work up to its next request (or its end): finish the segment that ended, if any (its
        event goes to the generator), or send the answer to its polish or classification request; then begin the
        segment the generator asks for, or keep the request it makes (:attr:`asking`).  ``caught`` is the batch's
        record of warnings (:func:`recording_warnings`): the ones this work adds are moved to the run's own."""
        self.clock.since = time.perf_counter()
        before = len(caught)
        try:
            if self.segment is not None:
                stepper, segment, recorder = self.segment
                request = self.steps.send(stepper.finish(segment, recorder))
            elif self.asking is not None:
                if reply is None:  # (the stacked call failed or warned: this run's own, here)
                    reply = self.asking.serve([self.asking])[0]
                request = self.steps.send(reply)
            else:
                request = next(self.steps)
            self.segment, self.asking = None, None
            if isinstance(request, AnalysisRequest):
                self.asking = request
            else:
                stepper, args, kwargs = request
                self.segment = (stepper, stepper.begin(*args, **kwargs), kwargs["recorder"])
        except StopIteration as stop:
            self.segment, self.asking, self.outcome = None, None, stop.value
        except Exception as exc:  # the run's own failure: reported in its place
            self.segment, self.asking, self.outcome = None, None, exc
        finally:
            self.caught.extend(caught[before:])
            del caught[before:]
            self.clock.spent += time.perf_counter() - self.clock.since
            self.clock.since = None


@contextmanager
def recording_warnings() -> Iterator[list]:
    """Every warning raised inside recorded (``"always"``: none shown, none filtered away) in the list it yields,
    restored as it was on leaving.  One such context serves a whole batch: each run moves what its own work added
    to its record (:meth:`_Run.resume`), as a context per resume would, at a fraction of the cost (setting the filter
    invalidates Python's warning caches)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _serve_together(asking: list[_Run], caught: list) -> None:
    """Answer the requests of ``asking`` (all of one kind: polish or classify) in one call and hand each run its
    answer (the call's time shared evenly); where that call raises or warns, each run answers its own request, so
    its warnings and errors stay with it (``caught``: the batch's record of warnings)."""
    began = time.perf_counter()
    before = len(caught)
    try:
        replies = type(asking[0].asking).serve([run.asking for run in asking])
        if len(caught) > before:
            replies = [None] * len(asking)
    except Exception:
        replies = [None] * len(asking)
    del caught[before:]
    share = (time.perf_counter() - began) / len(asking)
    for run, reply in zip(asking, replies, strict=True):
        run.clock.spent += share
        run.resume(caught, reply)


@one_blas_thread
def _run_batch(risk: EmpiricalRisk, starts: list[np.ndarray], opts: FlowOptions, save: np.ndarray) -> list[_Run]:
    """Every run of ``starts`` to its end, at most :data:`BATCH_RUNS` at a time, their compiled segments advanced
    together (runs innermost, :meth:`~lcnflow.dynamics.compiled.SegmentRunner.run`): a call returns when its runs
    have ended their segments (for the square loss when three quarters have); their Python work (the stopping rule's
    tests, certificates, classification) runs, a run that has ended leaves the batch and the next start takes its
    place, the next segments join any runs still going, and the next call advances all of them (so the compiled
    calls stay as wide as the batch until the starts run out)."""
    runs: list[_Run] = []
    live: list[_Run] = []  # (runs started and not ended)
    runner = None
    loose: list = []  # warnings of the compiled calls (no run's own): raised again after the batch
    with recording_warnings() as caught:
        while True:
            while len(live) < BATCH_RUNS and len(runs) < len(starts):
                clock = _RunClock()
                run = _Run(flow_steps(risk, starts[len(runs)], opts, save=save, start=0.0, clock=clock), clock)
                runs.append(run)
                live.append(run)
                run.resume(caught)
            asking = [run for run in live if run.asking is not None]
            while asking:
                for kind in {type(run.asking) for run in asking}:
                    _serve_together([run for run in asking if type(run.asking) is kind], caught)
                asking = [run for run in live if run.asking is not None]
            live = [run for run in live if run.segment is not None]
            if len(live) < BATCH_RUNS and len(runs) < len(starts):
                continue
            if not live:
                break
            if runner is None:
                runner = live[0].segment[0].runner
            segments = [run.segment[1] for run in live]
            began = time.perf_counter()
            before = len(caught)
            runner.run(segments, early=True)
            loose.extend(caught[before:])
            del caught[before:]
            share = (time.perf_counter() - began) / len(segments)
            for run in live:
                run.clock.spent += share
                if run.segment[1].ended >= 0:
                    run.resume(caught)
    for w in loose:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return runs


def _batched(risk: EmpiricalRisk, opts: FlowOptions, callback) -> bool:
    """Whether runs of ``risk`` with these options advance together: compiled Rodas4 segments, no callback (it sees
    every step of one run) and no ``max_time`` (each run's time limit is its own)."""
    from lcnflow.dynamics import compiled
    from lcnflow.dynamics.solvers import auto_integrator

    integrator = auto_integrator(risk) if opts.integrator == "auto" else opts.integrator
    return (integrator == "rodas4" and compiled.available(risk) and callback is None
            and not math.isfinite(opts.max_time))


def iter_flows(risk: EmpiricalRisk, inits, opts: FlowOptions, *, save_at=None,
               callback: Callback | None = None, checked: bool = False) -> Iterator[FlowResult]:
    """The results of :func:`gradient_flows` one at a time, in the order of ``inits``, with the options as one
    :class:`~lcnflow.dynamics.options.FlowOptions`.  Everything is checked before the first run starts; with
    ``checked`` the starts are flat float64 vectors already checked (shape, finiteness,
    :func:`~lcnflow.analysis.certify.check_start`: a sweep checks each run's as it reads its config), used as given.

    Where the runs use the compiled Rodas4 segments (the default for built-in losses), without a callback or a
    ``max_time``, up to :data:`BATCH_RUNS` runs advance together (runs innermost in compiled code; as one ends, the
    next start takes its place), and their results are yielded :data:`QUEUE_RUNS` at a time; each run takes exactly
    the steps it takes alone, so its result is the same.  A run's ``wall_time`` is then its own
    Python work plus its share of the compiled calls it took part in, and the warnings it raised are raised again
    as its result is yielded.  Otherwise the runs go one after the other, each ``wall_time`` (and ``max_time``) from
    its own start.  A run that raises raises when its turn comes."""
    risk = _check_risk(risk)
    save = check_save_at(save_at, opts.t_max)
    check_callback(callback)
    starts = list(inits) if checked else _starts(risk, inits)
    if not _batched(risk, opts, callback):
        for w0 in starts:
            yield run_flow(risk, w0, opts, save_at=save_at, callback=callback, start=time.perf_counter())
        return
    for first in range(0, len(starts), QUEUE_RUNS):
        for run in _run_batch(risk, starts[first:first + QUEUE_RUNS], opts, save):
            for w in run.caught:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if isinstance(run.outcome, BaseException):
                raise run.outcome
            run.outcome.wall_time = run.clock.spent
            yield run.outcome


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
    same steps, limit, kind, certificate and loss; only ``wall_time`` differs); the options are those of
    :func:`~lcnflow.gradient_flow`, validated once, and every start is checked before the first run begins.  Runs on
    the compiled Rodas4 path without a callback or ``max_time`` advance together, up to :data:`BATCH_RUNS` at a time
    (see the module docstring): on a three-layer 1D network with 500 samples and the square loss, a third of the time
    per run of a loop of :func:`~lcnflow.gradient_flow` calls (1.45 against 4.6 ms, measured in one process).

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
