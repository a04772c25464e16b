"""Every Python block of docs/*.md runs as written, and what its text says about the outcome holds.

Each block is registered in ``CHECKS`` under (page, index of the block on the page) with the function that runs it
and checks its claims; a block without an entry fails :func:`test_every_docs_block_is_checked`, so a new snippet
cannot go unchecked.  Blocks run in a subprocess in a scratch folder (``examples/`` linked in); the check appends
lines *after* the block (never inside it) to print what it needs as JSON.  Each block runs in well under the
two minutes allowed per block on a 2-core machine; the long experiments the pages quote live in ``examples/``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md"))
MARK = "@@CHECK@@"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)


def env(**extra: str) -> dict[str, str]:
    path = [str(ROOT / "src"), *extra.pop("PYTHONPATH", "").split(os.pathsep), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "MPLBACKEND": "Agg", "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(p for p in path if p), **extra}


def run_block(code: str, cwd: Path, after: str = "", timeout: float = 120, **extra_env: str):
    """Run ``code`` (then ``after``) in ``cwd``; return (stdout before the check's output, the check's JSON)."""
    script = code + ("\n" + textwrap.dedent(after) if after else "")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env(**extra_env))
    assert proc.returncode == 0, proc.stderr[-4000:]
    out, _, checked = proc.stdout.partition(MARK)
    return out, (json.loads(checked) if checked.strip() else None)


@pytest.fixture
def scratch(tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    return tmp_path


# ----------------------------------------------------------------------------------------------------- own-data.md
def _own_data_python(code: str, cwd: Path):
    """"From Python the same run is": the page's photo.toml on a photograph made here (as tests/test_readers.py
    does for the page's commands) runs, converges with a certificate and prints its headline and comparison."""
    from PIL import Image

    doc = (ROOT / "docs" / "own-data.md").read_text(encoding="utf-8")
    (cwd / "photo.toml").write_text(re.findall(r"```toml\n(.*?)```", doc, re.S)[0], encoding="utf-8")
    y, x = np.mgrid[0:48, 0:64]
    img = (127 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0) + 40 * (x > 30)).clip(0, 255).astype(np.uint8)
    Image.fromarray(np.stack([img, img // 2 + 50, 255 - img], axis=-1)).save(cwd / "photo.png")
    out, verdict = run_block(code, cwd, f"import json; print({MARK!r} + json.dumps(run.verdict, default=str))")
    assert verdict["converged"] and verdict["certified"]
    assert run_verdict_line(verdict) in out


def run_verdict_line(verdict: dict) -> str:
    return f"{verdict['headline']} {verdict['comparison']}"


# ----------------------------------------------------------------------------------------------------------- sgd.md
def _sgd_python(code: str, cwd: Path):
    """"For SGD ``converged`` is set to ``certified``", "only a certified point is classified"; the summary says
    whether the endpoint was certified."""
    out, res = run_block(code, cwd, f"""
        import json
        print({MARK!r} + json.dumps({{"converged": result.converged, "certified": result.certified,
              "classified": result.critical_point is not None, "method": result.method}}))
        """)
    assert res["method"] == "sgd"
    assert res["converged"] == res["certified"]
    assert res["classified"] == res["certified"]
    if res["certified"]:
        assert out.startswith("SGD endpoint polished to a certified critical point")
    else:
        assert "SGD endpoint NOT certified" in out.splitlines()[0]


def _sgd_compare_python(code: str, cwd: Path):
    """The side-by-side run: the page's table (GD and SGD reach the flow's spurious limit; their largest distances
    to the flow at matched times 0.145 and 0.175) and the figure it writes."""
    out, _ = run_block(code, cwd)
    doc = (ROOT / "docs" / "sgd.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (gradient descent, η = 0\.003|SGD, B = 8, η = 0\.003) \|.*\| ([0-9.]+) \|$", doc,
                           re.M))
    assert len(rows) == 2
    for method, claimed in rows.items():
        (line,) = [ln for ln in out.splitlines() if ln.startswith(method)]
        assert "spurious" in line and "same limit as the flow: yes" in line
        printed = float(re.search(r"max ‖w_k − w\(t_k\)‖ = ([0-9.]+)", line).group(1))
        # printed with 3 significant digits, the page quotes the same 3 digits
        assert printed == pytest.approx(float(claimed), abs=5e-4), (method, printed, claimed)
    (flow_line,) = [ln for ln in out.splitlines() if ln.startswith("gradient flow")]
    assert "spurious" in flow_line
    assert (cwd / "curves.png").stat().st_size > 10_000


# -------------------------------------------------------------------------------------------------------- sweeps.md
SMALL_SEEDS = "init.seed = {range = [0, 1]}"


def _small_sweep(cwd: Path) -> int:
    """The page's sweep.toml with one seed per cell instead of 1 000 (9 runs instead of 9 000, same grid
    otherwise); returns the number of runs."""
    doc = (ROOT / "docs" / "sweeps.md").read_text(encoding="utf-8")
    toml = re.findall(r"```toml\n(.*?)```", doc, re.S)[0]
    assert "init.seed = {range = [0, 1000]}" in toml
    (cwd / "sweep.toml").write_text(toml.replace("init.seed = {range = [0, 1000]}", SMALL_SEEDS), encoding="utf-8")
    return 9


def test_sweeps_page_flagship_sweep_shows_what_the_page_says(tmp_path):
    """The quick start's sweep file is examples/sweep.toml, and a run of it with eight seeds per cell (72 runs, one
    worker) gives the outcome table the page prints: every column of each row (percentages exactly, the median loss
    and gap to ℒ*_M to the digits printed)."""
    doc = (ROOT / "docs" / "sweeps.md").read_text(encoding="utf-8")
    toml = re.findall(r"```toml\n(.*?)```", doc, re.S)[0]
    assert toml == (ROOT / "examples" / "sweep.toml").read_text(encoding="utf-8")
    eight = "init.seed = {range = [0, 8]}"
    assert f"`{eight}`" in doc
    (tmp_path / "sweep.toml").write_text(toml.replace("init.seed = {range = [0, 1000]}", eight), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "lcnflow.cli", "sweep", "sweep.toml", "--out", "out", "--workers", "1",
                    "--quiet"], cwd=tmp_path, env=env(), check=True, capture_output=True, timeout=300)
    import lcnflow

    table = lcnflow.sweep.read_results(tmp_path / "out").to_pylist()
    block = doc[doc.index("What it finds:"):]
    block = re.search(r"```text\n(.*?)```", block, re.S).group(1).splitlines()
    header = [h.strip() for h in block[0].split("┃")]
    rows = [[c.strip() for c in re.split("[│┃]", line)] for line in block[1:]]
    assert len(rows) == 9 and len(table) == 72
    for row in rows:
        cell = dict(zip(header, row, strict=True))
        runs = [r for r in table if json.dumps(r["architecture.filter_sizes"], separators=(",", ":"))
                == cell["filter_sizes"] and r["init.scale"] == float(cell["scale"])]
        assert len(runs) == int(cell["runs"]) == 8
        for outcome, col in (("global_minimum", "global %"), ("spurious", "spurious %"),
                             ("strict_saddle", "saddle %"), ("degenerate", "degen %")):
            pct = 100 * sum(r["outcome"] == outcome for r in runs) / len(runs)
            assert f"{pct:.1f}" == cell[col], (cell, col)
        assert float(f"{np.median([r['loss'] for r in runs]):.3g}") == float(cell["L median"]), cell
        gap = float(np.median([r["loss"] - r["best_loss"] for r in runs]))
        assert gap == pytest.approx(float(cell["L − ℒ*_M med"]), rel=1e-2, abs=1e-14), cell


def _sweeps_quickstart(code: str, cwd: Path):
    """"or from Python": the sweep runs every run, ``summarize`` writes results/summary.html and summary.csv, and
    ``read_results`` gives one row per run with ``outcome`` as its last column."""
    n = _small_sweep(cwd)
    code = code.replace('lcnflow.sweep("sweep.toml", out="results")', 'lcnflow.sweep("sweep.toml", out="results", '
                        'workers=1)')  # one worker: the machine running the suite is small
    _, res = run_block(code, cwd, f"""
        import json
        print({MARK!r} + json.dumps({{"runs": outcome.num_runs, "completed": outcome.completed,
              "failed": outcome.failed, "rows": table.num_rows, "last": table.column_names[-1],
              "cells": summary.table.num_rows}}))
        """)
    assert res == {"runs": n, "completed": n, "failed": 0, "rows": n, "last": "outcome", "cells": 9}
    assert (cwd / "results" / "summary.html").is_file() and (cwd / "results" / "summary.csv").is_file()


def _sweeps_read_parquet(code: str, cwd: Path):
    """"read it without lcnflow": each line on a finished sweep's folder gives one row per run (pandas, polars,
    duckdb when installed; a line whose reader is missing is left out)."""
    n = _small_sweep(cwd)
    subprocess.run([sys.executable, "-m", "lcnflow.cli", "sweep", "sweep.toml", "--out", "DIR", "--workers", "1"],
                   cwd=cwd, env=env(), check=True, capture_output=True, timeout=300)
    ran = 0
    for line in code.strip().splitlines():
        module = re.match(r"import (\w+)", line).group(1)
        try:
            __import__(module)
        except ImportError:
            continue
        stmt, expr = (s.strip() for s in line.split(";", 1))
        _, res = run_block(stmt, cwd, f"""
            import json
            value = {expr}
            rows = value.num_rows if hasattr(value, "num_rows") else (value.shape[0] if hasattr(value, "shape")
                   else len(value.fetchall()))
            print({MARK!r} + json.dumps(rows))
            """)
        # the GROUP BY line gives one row per init.scale (3 of them), the others one row per run
        assert res == (3 if "GROUP BY" in expr else n), line
        ran += 1
    assert ran >= 1  # pyarrow is a dependency of lcnflow


def _sweeps_slurm(code: str, cwd: Path):
    """The SLURM script with a stand-in for ``dask_jobqueue`` (no SLURM here): ``SLURMCluster`` is a local cluster
    of one worker that accepts the page's arguments, so what runs is the page's lcnflow part with an external
    client.  That the documented keyword arguments are those of dask-jobqueue is not checked here."""
    n = _small_sweep(cwd)
    stub = cwd / "stub"
    stub.mkdir()
    (stub / "dask_jobqueue.py").write_text(textwrap.dedent("""
        from distributed import LocalCluster

        class SLURMCluster(LocalCluster):
            def __init__(self, *, queue, account, cores, processes, memory, walltime, job_script_prologue):
                super().__init__(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)

            def scale(self, n=None, jobs=0, **kwargs):
                return super().scale(1)
        """), encoding="utf-8")
    _, res = run_block(code, cwd, f"""
        import json
        print({MARK!r} + json.dumps({{"completed": outcome.completed, "failed": outcome.failed}}))
        """, PYTHONPATH=str(stub))
    assert res == {"completed": n, "failed": 0}


#: (page, index of the Python block on the page) → the function that runs and checks it.
# ----------------------------------------------------------------------------------------------------- channels.md
def _channels_example(code: str, cwd: Path):
    """"The summary says that the run ended certified (a global minimum …), that the run is outside the proved
    setting, and how far the invariants drifted"; the torch round trip gives the same architecture and layers."""
    out, res = run_block(code, cwd, f"""
        import json
        print({MARK!r} + json.dumps({{"certified": result.certified, "kind": result.critical_point.kind,
              "drift": result.invariant_drift, "covered": result.hypotheses.covered}}))
        """)
    assert res["certified"] and res["kind"] == "global_minimum" and not res["covered"]
    assert res["drift"] < 1e-6
    assert "outside the proved setting" in out and "invariant drift" in out
    assert "GL(3), dimension Σ c_i² = 9" in out
    assert out.strip().splitlines()[-1].startswith("True ")
    assert float(out.strip().splitlines()[-1].split()[1]) <= 1e-12


def _channels_width(code: str, cwd: Path):
    """"It prints the first two rows of the table above for three runs each: 3/3 spurious at c = 1, 3/3 global at
    c = 2"."""
    out, _ = run_block(code, cwd, timeout=300)
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:6]]
            for line in out.splitlines() if re.match(r"\| \d+ \|", line)}
    assert rows["1"][:3] == ["3", "0/3 = 0% (0%–56%)", "3/3 = 100% (44%–100%)"], out
    assert rows["2"][:3] == ["3", "3/3 = 100% (44%–100%)", "0/3 = 0% (0%–56%)"], out


def _channels_colour(code: str, cwd: Path):
    """Colour patches of astronaut: "(40, 3, 6, 6) (40, 3, 4, 4)", "a certified global minimum", "the network's colour
    outputs are about half as far from the clean patches as the blurred inputs (RMS error 0.016 against 0.031)"."""
    out, _ = run_block(code, cwd)
    lines = out.strip().splitlines()
    assert "512×512 RGB pixels" in lines[0] and "channel_mix = 0.2" in lines[0]
    assert lines[1].startswith("certified global minimum")
    assert lines[2] == "(40, 3, 6, 6) (40, 3, 4, 4)"
    blurred, net = map(float, re.fullmatch(r"RMS error: blurred input ([0-9.]+), network ([0-9.]+)", lines[3]).groups())
    doc = (ROOT / "docs" / "channels.md").read_text(encoding="utf-8")
    claimed = re.search(r"RMS error ([0-9.]+) against ([0-9.]+)", doc).groups()
    assert (f"{net:.3f}", f"{blurred:.3f}") == claimed
    assert 0.4 < net / blurred < 0.6  # "about half"


def _own_data_stereo(code: str, cwd: Path):
    """The stereo recording: 100 windows of 2 × 40 samples, targets 2 × 32, a certified global minimum."""
    out, _ = run_block(code, cwd)
    lines = out.strip().splitlines()
    assert "(2 input and 2 target channel(s)), cut into 100 windows of 40 samples" in lines[0]
    assert lines[1] == "(100, 2, 40) (100, 2, 32)"
    assert lines[2].startswith("certified global minimum")


CHECKS: dict[tuple[str, int], Callable[[str, Path], None]] = {
    ("channels.md", 0): _channels_example,
    ("channels.md", 1): _channels_colour,
    ("channels.md", 2): _channels_width,
    ("own-data.md", 0): _own_data_python,
    ("own-data.md", 1): _own_data_stereo,
    ("sgd.md", 0): _sgd_python,
    ("sgd.md", 1): _sgd_compare_python,
    ("sweeps.md", 0): _sweeps_quickstart,
    ("sweeps.md", 1): _sweeps_read_parquet,
    ("sweeps.md", 2): _sweeps_slurm,
}


def test_every_docs_block_is_checked():
    found = {(page.name, i) for page in PAGES for i in range(len(python_blocks(page)))}
    assert found, "no Python blocks found in docs/"
    assert found == set(CHECKS), f"unchecked: {sorted(found - set(CHECKS))}; stale: {sorted(set(CHECKS) - found)}"


@pytest.mark.parametrize("key", sorted(CHECKS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_docs_block(key, scratch):
    page, index = key
    code = python_blocks(ROOT / "docs" / page)[index]
    CHECKS[key](code, scratch)
