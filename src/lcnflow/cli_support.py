"""What every ``lcnflow`` command shares: exit codes, one-line errors, consoles that never wrap, the command guard.

The main command line (:mod:`lcnflow.cli`) and the sweep commands (:mod:`lcnflow.sweep.cli`, ``python -m
lcnflow.sweep``) use this one copy, so they fail the same way:

* exit **0** on success (a run that did not converge is a verdict, not an error); **2** on bad input, with *one* line
  on stderr ``error: <field>: <what was wrong> …`` — also for usage errors (an unknown option, a missing argument),
  which Click would otherwise print as several lines; **1** on an internal error (``LCNFLOW_DEBUG=1`` re-raises it
  with its traceback); **130** when interrupted;
* error lines are written as plain text, never wrapped, whatever the terminal width and whether or not stderr is a
  terminal (a pipe, a file, a test): a message's own line breaks are joined into one line;
* tables and summaries printed through :func:`console` are laid out at the terminal's width on a terminal and are
  never wrapped or truncated otherwise; then no line ends in spaces (Rich pads table cells to the column width).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "BadInput",
    "LcnflowGroup",
    "console",
    "error_line",
    "guard",
    "one_line",
    "run_app",
]

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

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
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return func(*args, **kwargs)
            except (typer.Exit, typer.Abort, _ClickException):
                raise
            except bad_input as exc:
                error_line(str(exc))
                raise typer.Exit(EXIT_BAD_INPUT) from None
            except KeyboardInterrupt:
                typer.echo(one_line(interrupted), err=True)
                raise typer.Exit(EXIT_INTERRUPTED) from None
            except Exception as exc:
                if os.environ.get("LCNFLOW_DEBUG"):
                    raise
                error_line(f"{type(exc).__name__}: {exc} — this is a bug in lcnflow; rerun with LCNFLOW_DEBUG=1 "
                           "for the traceback and report it", prefix="internal error")
                raise typer.Exit(EXIT_INTERNAL) from None

        return wrapper

    return decorate(fn) if fn is not None else decorate


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
        except typer.Abort:
            if not standalone_mode:
                raise
            typer.echo("aborted", err=True)
            sys.exit(EXIT_INTERNAL)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


def run_app(app: typer.Typer, argv: list[str] | None = None, prog_name: str = "lcnflow") -> int:
    """Run ``app`` with ``argv`` (default ``sys.argv[1:]``) and return its exit code instead of exiting."""
    try:
        app(args=argv, prog_name=prog_name, standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_INTERNAL)
    return EXIT_OK
