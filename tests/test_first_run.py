"""The first ``lcnflow run`` in a new environment: it runs on the NumPy path while one background process builds the
compiled code into Numba's cache, and the next run loads it (lcnflow.dynamics.compile_cache)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from lcnflow import kernels

pytestmark = pytest.mark.skipif(not kernels.ENABLED, reason="the compiled kernels are switched off")


def _run_json(env: dict[str, str]) -> dict:
    res = subprocess.run([sys.executable, "-m", "lcnflow", "run", "--json"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_first_run_uses_numpy_while_the_compiled_code_is_built_for_the_next_run(tmp_path):
    cache = tmp_path / "numba-cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    first = _run_json(env)
    assert first["timings"].get("compiled_in_background") is True
    assert "compiled" not in first["result"]["integrator"]
    deadline = time.monotonic() + 600  # (the build runs at the lowest priority beside the other tests)
    while time.monotonic() < deadline and not list(cache.rglob("*.ready")):
        time.sleep(1.0)
    assert list(cache.rglob("*.ready")), "the background build wrote no ready marker"
    assert not list(cache.rglob("*.building")), "the background build left its lock behind"
    second = _run_json(env)
    assert "compiled_in_background" not in second["timings"]
    assert "compiled" in second["result"]["integrator"]
    assert second["timings"]["compilations"] == 0  # everything came from the cache the build filled
    # the same run on either path: same certified limit, loss to rounding of the integrator's tolerance
    a, b = first["result"], second["result"]
    assert a["certified"] and b["certified"] and a["kind"] == b["kind"]
    assert abs(a["loss"] - b["loss"]) <= 1e-8 * abs(b["loss"])


def test_a_second_build_is_not_started_while_one_holds_the_lock(tmp_path, monkeypatch):
    from lcnflow.dynamics import compile_cache

    marker = tmp_path / "lcnflow-compiled-x.ready"
    monkeypatch.setattr(compile_cache, "ready_marker", lambda: marker)
    started = []
    monkeypatch.setattr(compile_cache.subprocess, "Popen", lambda *a, **k: started.append(a) or _Proc())
    assert compile_cache.start_background_build() is True
    assert compile_cache.start_background_build() is True  # (the lock names a live process: this one)
    assert len(started) == 1
    marker.with_suffix(".building").write_text("999999999\n")  # a build killed half-way: its lock is taken over
    assert compile_cache.start_background_build() is True and len(started) == 2
    marker.write_text("ready\n")
    assert compile_cache.start_background_build() is False and len(started) == 2


class _Proc:
    pid = os.getpid()
