"""One BLAS thread while lcnflow iterates.

lcnflow's loops alternate many short calls: compiled kernels, small BLAS products, SciPy's L-BFGS-B.  With a
threaded BLAS (NumPy's and SciPy's OpenBLAS use every core by default) they ran far slower — most likely because
each small product wakes a second BLAS thread that has gone to sleep since the last one.  Measured on 2 cores: one
L-BFGS minimization of a log-cosh risk on 64 images 21×21 (k = 5×5, 5×5, 3×3) took 33 s with two BLAS threads and
3.1 s with one; on 64 images 128×128, 1 000 iterations 22.8 s against 11.3 s; a gradient flow on the latter 71 s
against 68 s.
:func:`one_blas_thread` limits BLAS to one thread for the duration of a call (through threadpoolctl, which finds
the BLAS libraries loaded in the process) and restores the user's setting afterwards.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_controller = None


def _blas_controller():
    """threadpoolctl's view of the BLAS libraries, made once after SciPy's linear algebra is loaded (so it sees
    SciPy's BLAS as well as NumPy's)."""
    global _controller
    if _controller is None:
        import scipy.linalg  # noqa: F401  (loads SciPy's BLAS)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def one_blas_thread(function: F) -> F:
    """Run ``function`` with BLAS limited to one thread (see the module docstring); about 10 µs per call."""

    @functools.wraps(function)
    def limited(*args, **kwargs):
        with _blas_controller().limit(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return limited  # type: ignore[return-value]
