"""Writing files atomically: the one helper every lcnflow output goes through.

A file is written to a hidden temporary name in its own folder (``.NAME.<random>.tmp``), flushed to disk
(``fsync``), then renamed onto its name with :func:`os.replace` — an atomic step on POSIX file systems — and the
folder's entry is flushed too.  A reader, or a process killed at any moment, sees the earlier file or the new one
whole, never a mixture; on an error (a full disk) the temporary is removed and the earlier file is unchanged.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Content = bytes | str | Callable[[BinaryIO], object]


def fsync_dir(path: str | Path) -> None:
    """Flush the entries of the folder ``path`` to disk (best effort: not every file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def stage_file(path: str | Path, content: Content) -> Path:
    """Write ``content`` (bytes, text as UTF-8, or a function writing into a binary file) to a temporary file beside
    ``path``, flushed to disk; return the temporary's path (rename it onto ``path`` with :func:`os.replace`, or
    remove it).  On an error nothing is left behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            if isinstance(content, str):
                fh.write(content.encode("utf-8"))
            elif isinstance(content, bytes | bytearray | memoryview):
                fh.write(content)
            else:
                content(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: str | Path, content: Content) -> Path:
    """Replace ``path`` by ``content`` atomically (see the module docstring); returns ``path``."""
    path = Path(path)
    tmp = stage_file(path, content)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path
