"""Entry points of the ``lcnflow`` command and ``python -m lcnflow.sweep``: Ctrl-C and SIGTERM are taken over before
the heavy imports (NumPy, SciPy, Numba, Typer), so an interrupt at any moment — start-up included — ends with one
line and exit code 130 (SIGINT) or 143 (SIGTERM), never a traceback (see :mod:`lcnflow._signals`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from ._signals import _SIGNAL_SEEN, _install_signal_handlers, interrupt_exit_code


def _start(load: Callable[[], Callable[[list[str] | None], int]], argv: list[str] | None) -> int:
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


def _load_main() -> Callable[[list[str] | None], int]:
    from .cli import main

    return main


def _load_sweep() -> Callable[[list[str] | None], int]:
    from .sweep.cli import main

    return main


def main(argv: list[str] | None = None) -> int:
    """``lcnflow …``: the main command line."""
    return _start(_load_main, argv)


def sweep_main(argv: list[str] | None = None) -> int:
    """``python -m lcnflow.sweep …``: the sweep commands alone."""
    return _start(_load_sweep, argv)


def console_script() -> None:  # pragma: no cover (the installed ``lcnflow`` script)
    sys.exit(main())
