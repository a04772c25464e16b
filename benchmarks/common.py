"""Timing helpers shared by the benchmark scripts: medians of repeated runs in one process."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import scipy


def median_time(fn: Callable[[], object], repeats: int = 7, min_time: float = 0.05) -> float:
    """Median over ``repeats`` of the mean time of ``fn`` in a batch lasting at least ``min_time`` seconds."""
    fn()  # warm-up (caches, lazy imports)
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or number >= 1 << 20:
            break
        number *= 2
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def machine_info() -> str:
    """One line: CPU count, platform, library versions."""
    try:
        import torch

        torch_v = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        torch_v = "torch not installed"
    import lcnflow

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"NumPy {np.__version__}, SciPy {scipy.__version__}, {torch_v}, lcnflow {lcnflow.__version__}"
    )


def fmt_time(seconds: float) -> str:
    """Human-readable duration."""
    if not np.isfinite(seconds):
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"
