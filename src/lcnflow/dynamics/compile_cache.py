"""Compiled code built once per environment, in the background of the first command-line run.

lcnflow's kernels and its compiled Rodas4 segments are compiled by Numba on first use and cached on disk: a few
seconds per kernel, about ten seconds for everything the default run uses.  A library call compiles what it needs
when it first needs it.  ``lcnflow run`` does better for a user's first run in a new environment: when the cache does
not yet hold lcnflow's compiled code (no *ready marker*, see :func:`ready_marker`), it starts one background process
(:func:`start_background_build`, at the lowest CPU priority) that compiles everything into Numba's cache and then
writes the marker, and runs this one run on the NumPy reference path (the same integrator and the same tests in
NumPy; results agree to rounding).  Later runs load the compiled code from the cache.

The marker is a file in the directory where Numba caches the compiled segment (``NUMBA_CACHE_DIR`` if set), named
after a digest of Numba's and Python's versions and of the size and modification time of every lcnflow source file
that holds compiled code: an edited source or another Numba makes Numba recompile, and the marker then no longer
claims the cache is ready.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lcnflow import kernels as K

#: How long a build may hold its lock before another process takes it over (a build killed half-way leaves it).
STALE_LOCK_SECONDS = 600.0


def _sources() -> list[Path]:
    """The lcnflow source files whose functions Numba compiles."""
    from lcnflow.dynamics import compiled

    return [Path(K.__file__), Path(compiled.__file__)]


def ready_marker() -> Path | None:
    """The file whose existence says that Numba's cache holds lcnflow's compiled code for these sources, or ``None``
    where nothing is cached (kernels switched off, Numba missing, or no writable cache location)."""
    if not K.ENABLED:
        return None
    from lcnflow.dynamics import compiled

    cache = getattr(compiled.rodas4_segments, "_cache", None)
    try:
        directory = Path(cache._cache_path)  # (Numba's cache locator: NUMBA_CACHE_DIR, __pycache__ or user-wide)
    except (AttributeError, TypeError):
        return None
    import numba

    digest = hashlib.sha256(f"{numba.__version__} {sys.version}".encode())
    for src in _sources():
        st = src.stat()
        digest.update(f"{src.name} {st.st_size} {st.st_mtime_ns}".encode())
    return directory / f"lcnflow-compiled-{digest.hexdigest()[:16]}.ready"


def compiled_code_ready() -> bool:
    """Whether Numba's cache holds lcnflow's compiled code (the ready marker exists); ``True`` where nothing can be
    cached (then there is nothing a background build could do)."""
    marker = ready_marker()
    return marker is None or marker.exists()


def build() -> float:
    """Compile (or load) every kernel and the compiled segments of the square loss and of the losses run through data
    passes (one type signature serves 1D and 2D), into Numba's cache, then write the ready marker; returns seconds."""
    from lcnflow.dynamics.integrate import gradient_flow, warm_up
    from lcnflow.model.architecture import Architecture
    from lcnflow.model.data import Dataset
    from lcnflow.model.losses import get_loss
    from lcnflow.model.risk import EmpiricalRisk

    start = time.perf_counter()
    warm_up()  # (the kernels and the square loss's segment)
    x = np.linspace(-1.0, 1.0, 12).reshape(2, 6)
    risk = EmpiricalRisk(Architecture(6, [2, 2]), get_loss("pseudo_huber", delta=1.0), Dataset(x, x[:, :4] + x[:, 1:5]))
    gradient_flow(risk, [np.array([0.3, 0.2]), np.array([0.5, -0.1])], max_steps=50)
    marker = ready_marker()
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"lcnflow compiled code cached in {time.perf_counter() - start:.1f} s\n", encoding="utf-8")
    return time.perf_counter() - start


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def start_background_build() -> bool:
    """Start one background process that runs :func:`build` (lowest CPU priority, detached from this process and its
    terminal), unless the code is ready or another such process is at work; returns whether compiled code is being
    built (by this call or an earlier one)."""
    marker = ready_marker()
    if marker is None or marker.exists():
        return False
    lock = marker.with_suffix(".building")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        if lock.exists():
            try:
                pid = int(lock.read_text(encoding="utf-8").split()[0])
            except (OSError, ValueError, IndexError):
                pid = -1
            if pid > 0 and _pid_alive(pid) and time.time() - lock.stat().st_mtime < STALE_LOCK_SECONDS:
                return True
            lock.unlink(missing_ok=True)
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return True  # (another process took the lock just now)
    except OSError:
        return False  # (the cache directory cannot be written: compile in the foreground as a library call does)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lcnflow.dynamics.compile_cache", str(lock)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)
    except OSError:
        os.close(fd)
        lock.unlink(missing_ok=True)
        return False
    os.write(fd, f"{proc.pid}\n".encode())
    os.close(fd)
    return True


def _main(lock: str) -> None:  # pragma: no cover - runs in the background process (tested through the CLI)
    try:
        os.nice(19)
    except OSError:
        pass
    try:
        build()
    finally:
        Path(lock).unlink(missing_ok=True)


if __name__ == "__main__":  # pragma: no cover
    _main(sys.argv[1])
