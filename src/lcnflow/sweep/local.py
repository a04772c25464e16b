"""The local executor of a sweep: worker processes that run batches, with the driving process idle in between.

:class:`LocalPool` starts ``workers`` processes (forked where the platform allows it, so that they inherit the
imported library, else spawned), one thread each; each loads the compiled kernels once (:func:`_worker_start`) and
then runs the batches it is sent (:func:`~lcnflow.sweep.execute.run_batch`), keeping the problems it built between
batches.  The driving process only waits on its futures (a blocking wait: no scheduler, no polling), writes each
finished part and updates the progress line, so on a machine with as many cores as workers every core runs runs.

Signals: the workers ignore SIGINT (a Ctrl-C in the terminal reaches every process of the foreground group; only
the driving process acts on it, stopping the sweep and ending its workers) and die silently on SIGTERM.  A worker
that dies (a crash, the out-of-memory killer) breaks the pool: :meth:`LocalPool.restart` starts a fresh one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from lcnflow.sweep.grid import SweepError

__all__ = ["LocalPool"]

#: Tries to start the workers before a sweep gives up (each a new pool whose first task must be answered).
START_TRIES = 3


def _worker_start(close_fd: int | None) -> None:
    """Run in each worker process as it starts: signals as described in the module docstring, the inherited
    descriptor of the sweep directory's lock closed (the lock stays the driving process's alone), the kernels of the
    square loss's runs loaded (the others load at their first use: 0.06 s less per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)  # (blocked by the process that created this one)
    if close_fd is not None:
        try:
            os.close(close_fd)
        except OSError:
            pass
    from lcnflow.dynamics.integrate import warm_up

    warm_up(every_kernel=False)


#: The signals blocked while workers are created (see :func:`_signals_blocked`).
_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def _signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM blocked (held pending, not lost) in this thread inside.  Processes created inside start
    with them blocked (a signal sent to the whole group then stays pending in the new worker too) and unblock them
    once their own handlers are set (:func:`_worker_start`), so that no worker acts on a signal with the handlers it
    inherited; this process gets a signal that arrived meanwhile as it leaves."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class LocalPool:
    """``workers`` worker processes running sweep batches (see the module docstring).

    Parameters
    ----------
    workers : int

    Attributes
    ----------
    close_fd : int or None
        A descriptor the workers close as they start (the sweep directory's lock, inherited when forked), for the
        workers created after it is set.
    """

    def __init__(self, workers: int):
        self.workers = workers
        self.close_fd: int | None = None
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(method)
        self._executor: ProcessPoolExecutor | None = None
        self._starting: tuple[ProcessPoolExecutor, Future] | None = None

    def start(self) -> None:
        """Create the workers now, without waiting for them: they load the compiled kernels while the caller goes
        on (the first :meth:`submit` waits until they have started)."""
        if self._executor is None and self._starting is None:
            self._starting = self._create()

    def _create(self) -> tuple[ProcessPoolExecutor, Future]:
        """New workers, created with signals blocked (:func:`_signals_blocked`), and the future of their first
        task."""
        with _signals_blocked():
            ex = ProcessPoolExecutor(self.workers, mp_context=self._ctx, initializer=_worker_start,
                                     initargs=(self.close_fd,))
            return ex, ex.submit(os.getpid)

    def _start(self) -> ProcessPoolExecutor:
        """Workers that have started (one task answered; those of :meth:`start` if it was called); :data:`START_TRIES`
        tries."""
        for _ in range(START_TRIES):
            ex, ready = self._starting or self._create()
            self._starting = None
            try:
                ready.result()
                return ex
            except BrokenProcessPool:
                _end(ex, kill=False)
            except BaseException:  # (Ctrl-C while they start)
                _end(ex, kill=True)
                raise
        raise SweepError(f"workers: the local worker processes died as they started, {START_TRIES} times; the "
                         "finished runs are saved (LCNFLOW_DEBUG=1 or a run in one process shows more)")

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run ``fn(*args)`` in a worker; the first call (and the first after :meth:`restart`) starts the
        workers.

        Raises
        ------
        concurrent.futures.process.BrokenProcessPool
            When a worker has died since the last call (restart, then submit again).
        SweepError
            When the workers die as they start.
        """
        if self._executor is None:
            self._executor = self._start()
        return self._executor.submit(fn, *args)

    def restart(self) -> None:
        """End the workers (after one of them died: the pool cannot be used again); the next :meth:`submit`
        starts new ones."""
        self.close(kill=True)

    def close(self, kill: bool = False) -> None:
        """Shut the workers down: after their current batch, or at once with ``kill`` (SIGTERM: they die
        silently); batches not started are cancelled."""
        ex, self._executor = self._executor, None
        if ex is not None:
            _end(ex, kill)
        if self._starting is not None:
            ex, self._starting = self._starting[0], None
            _end(ex, kill)


def _end(ex: ProcessPoolExecutor, kill: bool) -> None:
    """Shut ``ex`` down; with ``kill``, its workers are ended first (SIGTERM: they die silently)."""
    if kill:
        # (ProcessPoolExecutor has no public way to end running workers before Python 3.14)
        for proc in list((getattr(ex, "_processes", None) or {}).values()):
            try:
                proc.terminate()
            except (OSError, AttributeError):
                pass
    ex.shutdown(wait=True, cancel_futures=True)
