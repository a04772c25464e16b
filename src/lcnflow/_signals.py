"""Ctrl-C and SIGTERM for the command line (standard library only, so that it loads before anything heavy).

SIGINT raises ``KeyboardInterrupt`` (as Python does by default) and SIGTERM raises :class:`Terminated`, a
``KeyboardInterrupt``, so that every ``except KeyboardInterrupt`` that saves work (a sweep keeping its finished runs)
does the same for both; the signal is recorded, so that an interrupt that surfaces as another exception (Numba's
dispatcher turns a ``KeyboardInterrupt`` raised inside it into a ``SystemError``) is still recognised.  Exit codes:
130 after SIGINT, 143 after SIGTERM (128 + the signal number, as shells report them).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's ``KeyboardInterrupt`` (so every ``except KeyboardInterrupt`` that saves work —
    a sweep keeping its finished runs — does the same), but ending with exit code 143."""


#: The signal that interrupted this process (``None`` until one did).
_SIGNAL_SEEN: list[int | None] = [None]
#: Whether the interrupt has been reported (its one line written).
_REPORTED: list[bool] = [False]


def _on_signal(signum: int, frame: object) -> None:
    _SIGNAL_SEEN[0] = signum
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _install_signal_handlers() -> dict[int, object]:
    """SIGINT → ``KeyboardInterrupt``, SIGTERM → :class:`Terminated`, both recorded (main thread only); returns the
    handlers they replace."""
    _SIGNAL_SEEN[0], _REPORTED[0] = None, False
    saved: dict[int, object] = {}
    if threading.current_thread() is not threading.main_thread():
        return saved
    if sys.unraisablehook is not _unraisable:
        _PREVIOUS_HOOK[0] = sys.unraisablehook
        sys.unraisablehook = _unraisable
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # (a shell running us in the background ignores SIGINT)
            saved[sig] = signal.signal(sig, _on_signal)
    return saved


#: The hook :func:`_unraisable` passes other unraisable exceptions to.
_PREVIOUS_HOOK: list = [sys.__unraisablehook__]


def _unraisable(unraisable) -> None:
    """An interrupt raised where Python cannot propagate it (a weakref callback, ``__del__``) would be printed as
    "Exception ignored" and lost: deliver the signal again instead, to be raised in ordinary code."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _SIGNAL_SEEN[0] is not None:
        # sent again from a short-lived thread, so that the handler runs once this hook has returned: a signal
        # raised here is handled inside the hook, where its exception is unraisable again ("Exception ignored in
        # sys.unraisablehook" and a traceback, seen once in a test run)
        timer = threading.Timer(0.01, os.kill, (os.getpid(), _SIGNAL_SEEN[0]))
        timer.daemon = True
        timer.start()
        return
    _PREVIOUS_HOOK[0](unraisable)


def _restore_signal_handlers(saved: dict[int, object]) -> None:
    for sig, handler in saved.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def interrupt_exit_code() -> int:
    """143 when SIGTERM interrupted the process, else 130."""
    return EXIT_TERMINATED if _SIGNAL_SEEN[0] == signal.SIGTERM else EXIT_INTERRUPTED


def run_guarded(load: Callable[[], Callable[[list[str] | None], int]], argv: list[str] | None) -> int:
    """Install the signal handlers, then ``load()(argv)``: an interrupt at any moment ends with one line and exit
    code 130 (SIGINT) or 143 (SIGTERM)."""
    _install_signal_handlers()
    try:
        command = load()
        code = command(argv)
    except BaseException as exc:
        # an interrupt (SIGTERM included) before or after the command's own guard — also as whatever an import
        # turned it into (NumPy reports an interrupted import of its C extensions as an ImportError)
        if not (isinstance(exc, KeyboardInterrupt) or _SIGNAL_SEEN[0] is not None) or isinstance(exc, SystemExit):
            raise
        code = interrupt_exit_code()
        try:
            sys.stderr.write(("terminated" if code == 143 else "interrupted") + "\n")
        except (OSError, ValueError):
            pass
        _exit_now(code)  # (outside the command: nothing of its own to clean up)
    return code


def _exit_now(code: int) -> None:
    """Exit at once after an interrupt: the command has saved what it keeps, and finalizing an interpreter whose
    imports (Numba, BLAS threads) were cut short can abort the process."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)
