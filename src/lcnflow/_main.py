"""Entry point of the ``lcnflow`` command (``python -m lcnflow.sweep`` has its own, the same way): Ctrl-C and
SIGTERM are taken over before the heavy imports (NumPy, SciPy, Numba, Typer), so an interrupt at any moment —
start-up included — ends with one line and exit code 130 (SIGINT) or 143 (SIGTERM), never a traceback (see
:mod:`lcnflow._signals`)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from lcnflow._signals import run_guarded


def _load_main() -> Callable[[list[str] | None], int]:
    from lcnflow.cli import main

    return main


def main(argv: list[str] | None = None) -> int:
    """``lcnflow …``: the main command line."""
    return run_guarded(_load_main, argv)


def console_script() -> None:  # pragma: no cover (the installed ``lcnflow`` script)
    sys.exit(main())
