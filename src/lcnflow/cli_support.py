"""What every ``lcnflow`` command shares: exit codes, one-line errors, consoles that never wrap, the command guard.

The main command line (:mod:`lcnflow.cli`) and the sweep commands (:mod:`lcnflow.sweep.cli`, ``python -m
lcnflow.sweep``) use this one copy, so they fail the same way:

* exit **0** on success (a run that did not converge is a verdict, not an error); **2** on bad input (a
  ``MemoryError`` included: an input that needs more memory than the process may use), with *one* line
  on stderr ``error: <field>: <what was wrong> …`` — also for usage errors (an unknown option, a missing argument),
  which Click would otherwise print as several lines; **1** on an internal error (``LCNFLOW_DEBUG=1`` re-raises it
  with its traceback); **130** when interrupted (SIGINT, Ctrl-C) and **143** when terminated (SIGTERM), with one
  line and never a traceback — also when the interrupt surfaces as another exception (Numba's dispatcher turns a
  ``KeyboardInterrupt`` raised inside it into a ``SystemError``), since the signal itself is recorded;
* error lines are written as plain text, never wrapped, whatever the terminal width and whether or not stderr is a
  terminal (a pipe, a file, a test): a message's own line breaks are joined into one line;
* tables and summaries printed through :func:`console` are laid out at the terminal's width on a terminal and are
  never wrapped or truncated otherwise; then no line ends in spaces (Rich pads table cells to the column width).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from lcnflow._signals import (
    _REPORTED,
    _SIGNAL_SEEN,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    _install_signal_handlers,
    _restore_signal_handlers,
    interrupt_exit_code,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "BadInput",
    "LcnflowGroup",
    "Terminated",
    "console",
    "error_line",
    "guard",
    "interrupt_exit_code",
    "one_line",
    "run_app",
]

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2


def _interrupted_by_signal(exc: BaseException) -> bool:
    """Whether ``exc`` is, or came from, an interrupt: a signal was recorded, or a ``KeyboardInterrupt`` is in its
    chain of causes (as in the ``SystemError`` Numba's dispatcher raises when one reaches it)."""
    if _SIGNAL_SEEN[0] is not None:
        return True
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False

# Typer ships its own copy of Click; its exception classes are reached through the public ``typer.BadParameter``.
_UsageError: type[Exception] = typer.BadParameter.__mro__[1]
_ClickException: type[Exception] = typer.BadParameter.__mro__[2]
assert _UsageError.__name__ == "UsageError" and _ClickException.__name__ == "ClickException"

#: Width given to Rich when the output is not a terminal: wide enough that no table or line is ever wrapped.
UNWRAPPED_WIDTH = 100_000


class BadInput(Exception):
    """Raised inside a command for user errors (exit code 2); the message names the field, the value and the fix."""


def one_line(text: str) -> str:
    """``text`` with its line breaks and the indentation after them replaced by single spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def error_line(message: str, prefix: str = "error") -> None:
    """Write ``prefix: message`` to stderr as exactly one line of plain text (no markup, no wrapping)."""
    typer.echo(f"{prefix}: {one_line(message)}", err=True)


class TrailingSpaceStripper:
    """A text stream that writes to ``sys.stdout`` (or ``sys.stderr``) with the spaces at the end of every line
    removed.

    Spaces at the end of what was written so far are held back until the next write shows whether a line break
    (then they are dropped) or more text (then they are written) follows; spaces still held at exit are dropped.
    """

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._held = ""

    @property
    def stream(self):
        """The stream written to (looked up at each write, so a replaced ``sys.stdout`` is honoured)."""
        return sys.stderr if self._stderr else sys.stdout

    def write(self, text: str) -> int:
        lines = (self._held + text).split("\n")
        last = lines.pop()
        kept = last.rstrip(" ")
        self._held = last[len(kept):]
        self.stream.write("".join(line.rstrip(" ") + "\n" for line in lines) + kept)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, … of the stream
        return getattr(self.stream, name)


def console(stderr: bool = False) -> Console:
    """A Rich console: the terminal's width on a terminal; otherwise so wide that nothing is wrapped or cut, and
    without spaces at the ends of lines (see :class:`TrailingSpaceStripper`)."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return Console(stderr=stderr, highlight=False)
    return Console(file=TrailingSpaceStripper(stderr), highlight=False, width=UNWRAPPED_WIDTH, soft_wrap=True,
                   force_terminal=False)


def guard(
    fn: Callable[..., Any] | None = None,
    *,
    bad_input: tuple[type[BaseException], ...] = (BadInput,),
    interrupted: str = "interrupted",
) -> Any:
    """Decorate a command: ``bad_input`` exceptions → exit 2, interrupt → 130, anything else → exit 1.

    Parameters
    ----------
    fn : callable, optional
        The command (``@guard`` and ``@guard(bad_input=…)`` both work).
    bad_input : tuple of exception types
        Exceptions that are the user's input errors; their message is printed as ``error: …``.
    interrupted : str
        Printed on Ctrl-C.

    Warnings raised by the command are silenced here: commands collect them and show them as notes.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            """The command, with errors turned into exit codes and one-line messages."""
            saved = _install_signal_handlers()
            try:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        return func(*args, **kwargs)
                except (typer.Exit, typer.Abort, _ClickException):
                    raise
                except bad_input as exc:
                    if _interrupted_by_signal(exc):
                        raise KeyboardInterrupt from None
                    error_line(str(exc))
                    raise typer.Exit(EXIT_BAD_INPUT) from None
            except (typer.Exit, typer.Abort, _ClickException):
                raise
            except KeyboardInterrupt:
                _interrupted_exit(interrupted)
            except MemoryError as exc:  # the input asked for more memory than the process may use
                error_line(f"out of memory: {exc or 'an allocation failed'}; the data or the run need more memory "
                           "than this process may use — reduce data.num_samples or the sizes, or free memory")
                raise typer.Exit(EXIT_BAD_INPUT) from None
            except Exception as exc:
                if _interrupted_by_signal(exc):
                    _interrupted_exit(interrupted)
                if os.environ.get("LCNFLOW_DEBUG"):
                    raise
                error_line(f"{type(exc).__name__}: {exc} — this is a bug in lcnflow; rerun with LCNFLOW_DEBUG=1 "
                           "for the traceback and report it", prefix="internal error")
                raise typer.Exit(EXIT_INTERNAL) from None
            finally:
                _restore_signal_handlers(saved)

        return wrapper

    return decorate(fn) if fn is not None else decorate


def _interrupted_exit(interrupted: str, system_exit: bool = False) -> None:
    """One line, then exit 130 (SIGINT) or 143 (SIGTERM) (``typer.Exit`` inside a command, else ``SystemExit``); a
    second signal meanwhile changes nothing."""
    code = interrupt_exit_code()
    _REPORTED[0] = True
    with _signals_ignored():
        what = one_line(interrupted)
        if code == EXIT_TERMINATED:
            what = what.replace("interrupted", "terminated", 1)
        try:
            typer.echo(what, err=True)
        except (OSError, ValueError):
            pass
    if system_exit:
        sys.exit(code)
    raise typer.Exit(code) from None


class _signals_ignored:
    """SIGINT and SIGTERM ignored inside (main thread only); the previous handlers restored after."""

    def __enter__(self) -> None:
        self.saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, signal.SIG_IGN)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


class LcnflowGroup(TyperGroup):
    """Typer's command group, with usage errors (unknown option, missing argument, bad value) on one line.

    Click prints a usage error as a usage line, a hint and the error; here it is one line,
    ``error: <what> (see 'lcnflow run --help')``, and exit code 2 as before.
    """

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        """Run the group; in standalone mode exit with the command's code, usage errors as one line."""
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _ClickException as exc:
            if not standalone_mode:
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":  # no arguments at all: the help, as asked for
                typer.echo(exc.format_message(), err=True)  # type: ignore[attr-defined]
                sys.exit(exc.exit_code)  # type: ignore[attr-defined]
            message = exc.format_message()  # type: ignore[attr-defined]
            ctx = getattr(exc, "ctx", None)
            if isinstance(exc, _UsageError) and ctx is not None:
                message += f" (see '{ctx.command_path} --help')"
            error_line(message)
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        except typer.Abort as exc:
            if not standalone_mode:
                raise
            if _interrupted_by_signal(exc):  # Click turns Ctrl-C while it parses into Abort
                _interrupted_exit("interrupted", system_exit=True)
            typer.echo("aborted", err=True)
            sys.exit(EXIT_INTERNAL)
        if _SIGNAL_SEEN[0] is not None and not _REPORTED[0]:  # Typer turns an interrupt outside the command's
            _interrupted_exit("interrupted", system_exit=standalone_mode)  # guard into exit 130, silently
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


def run_app(app: typer.Typer, argv: list[str] | None = None, prog_name: str = "lcnflow") -> int:
    """Run ``app`` with ``argv`` (default ``sys.argv[1:]``) and return its exit code instead of exiting."""
    try:
        try:
            app(args=argv, prog_name=prog_name, standalone_mode=True)
        except KeyboardInterrupt:  # between the command's guard and the exit
            _interrupted_exit("interrupted", system_exit=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_INTERNAL)
    return EXIT_OK
