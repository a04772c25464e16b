"""Named phases of a run, for progress displays.

Between two steps of the flow a run may spend a long time in work that has no flow time to show: Newton polishing
of a candidate limit, its classification, the search for ℒ*_M (the best point of the function space M), the
function-space optimum ℒ* of an experiment.  Those places call :func:`announce` with the phase's name; a display
that wants to show it listens with :func:`listening`::

    with listening(lambda phase: print(phase, "…")):
        result = lcnflow.gradient_flow(risk, init)

Without a listener :func:`announce` does nothing.  The listener is context-local (a :class:`contextvars.ContextVar`):
runs in other threads or processes (a sweep's workers) do not report to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["CLASSIFYING", "FUNCTION_SPACE_OPTIMUM", "POLISHING", "SEARCHING_M", "announce", "listening"]

#: The phases announced by lcnflow, in the words a progress line shows.
POLISHING = "Newton polishing"
CLASSIFYING = "classifying the critical point"
SEARCHING_M = "searching M for ℒ*_M"
FUNCTION_SPACE_OPTIMUM = "function-space optimum ℒ*"

_LISTENER: ContextVar[Callable[[str], None] | None] = ContextVar("lcnflow_phase_listener", default=None)


def announce(phase: str) -> None:
    """Tell the listener (if any) that the run now enters ``phase``."""
    listener = _LISTENER.get()
    if listener is not None:
        listener(phase)


@contextmanager
def listening(listener: Callable[[str], None]) -> Iterator[None]:
    """Within the block, :func:`announce` calls ``listener(phase)``."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)
