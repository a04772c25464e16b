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
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

__all__ = ["LocalPool"]


def _worker_start(close_fd: int | None) -> None:
    """Run in each worker process as it starts: signals as described in the module docstring, the inherited
    descriptor of the sweep directory's lock closed (the lock stays the driving process's alone), kernels loaded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if close_fd is not None:
        try:
            os.close(close_fd)
        except OSError:
            pass
    from lcnflow.dynamics.integrate import warm_up

    warm_up()


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored inside (main thread only), so that processes started inside inherit an ignored SIGINT."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


class LocalPool:
    """``workers`` worker processes running sweep batches (see the module docstring).

    Parameters
    ----------
    workers : int
    close_fd : int, optional
        A descriptor the workers close as they start (the sweep directory's lock, inherited when forked).
    """

    def __init__(self, workers: int, close_fd: int | None = None):
        self.workers = workers
        self._close_fd = close_fd
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(method)
        self._executor: ProcessPoolExecutor | None = None

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self._ctx, initializer=_worker_start,
                                   initargs=(self._close_fd,))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run ``fn(*args)`` in a worker.  The first call starts the workers (with SIGINT ignored while they
        start, so that they inherit it ignored)."""
        if self._executor is None:
            with _sigint_ignored():
                self._executor = self._start()
                return self._executor.submit(fn, *args)
        return self._executor.submit(fn, *args)

    def restart(self) -> None:
        """End the workers (after one of them died: the pool cannot be used again); the next :meth:`submit`
        starts new ones."""
        self.close(kill=True)

    def close(self, kill: bool = False) -> None:
        """Shut the workers down: after their current batch, or at once with ``kill`` (SIGTERM: they die
        silently); batches not started are cancelled."""
        ex, self._executor = self._executor, None
        if ex is None:
            return
        if kill:
            # (ProcessPoolExecutor has no public way to end running workers before Python 3.14)
            for proc in list(getattr(ex, "_processes", {}).values()):
                try:
                    proc.terminate()
                except (OSError, AttributeError):
                    pass
        ex.shutdown(wait=True, cancel_futures=True)
