"""Shared helpers of the examples: fast mode and a plain-text table."""

from __future__ import annotations

import os
import sys


def fast_mode() -> bool:
    """``--fast`` on the command line or ``LCNFLOW_FAST=1``: small problems for CI (seconds, not minutes)."""
    return "--fast" in sys.argv[1:] or os.environ.get("LCNFLOW_FAST", "") not in ("", "0")


def out_dir() -> str | None:
    """The folder after ``--out`` on the command line, if any (a run directory with a report is written there)."""
    args = sys.argv[1:]
    return args[args.index("--out") + 1] if "--out" in args and args.index("--out") + 1 < len(args) else None


def table(header: list[str], rows: list[list[object]]) -> str:
    """Left-aligned columns, two spaces apart."""
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[j]) for r in cells) for j in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
