"""Every fenced code block of README.md runs (or is checked) as written.

Python blocks run in a subprocess in a scratch folder (with ``examples/`` linked in, so paths read as from the
repository root); TOML blocks are validated by the config and sweep loaders; each shell command is either run or
listed in ``SKIPPED`` with the reason.  A block or command that is neither fails the test, so a new README snippet
cannot go unchecked.  What the README claims about the default run is checked against the run's own JSON.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, re.S | re.M)

#: Shell commands of the README that are not run here, and why.
SKIPPED = {
    "pip install .": "installs the package (minutes; the suite already runs on an installed package)",
    'pip install -e ".[test]"': "installs the package (minutes; the suite already runs on an installed package)",
    "python -m pytest -q": "the test suite itself",
    "python benchmarks/run_all.py": "about 20 minutes (benchmarks/RESULTS.md)",
    "lcnflow sweep sweep.toml --out results": "9 000 runs on a Dask cluster; the sweep command is tested on small "
    "grids in tests/test_sweep_run.py, and the README's sweep.toml is validated here",
    "lcnflow summarize results": "needs the sweep above; tested in tests/test_sweep_run.py",
    "ruff check .": "the linter, run by CI (.ci/run) beside the suite",
}


def blocks(lang: str) -> list[str]:
    return [code for tag, code in BLOCKS if tag == lang]


def shell_commands() -> list[str]:
    """Each ``&&``-separated command of the bash blocks, comments stripped."""
    out = []
    for code in blocks("bash"):
        for line in code.splitlines():
            line = line.split("#", 1)[0].strip()
            out.extend(c.strip() for c in line.split("&&") if c.strip())
    return out


def env() -> dict[str, str]:
    src = str(ROOT / "src")
    return {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def lcnflow_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lcnflow.cli", *args]


@pytest.fixture
def scratch(tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    return tmp_path


def test_every_block_has_a_known_language():
    assert BLOCKS, "no fenced code blocks found"
    assert {tag for tag, _ in BLOCKS} <= {"python", "bash", "toml"}


MARK = "@@CHECK@@"


def run_block(code: str, cwd: Path, after: str) -> tuple[str, dict]:
    """Run a README block as written in ``cwd``, then ``after`` (which prints ``MARK`` and JSON); return the block's
    stdout and the JSON."""
    proc = subprocess.run([sys.executable, "-c", code + "\n" + after], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    out, _, checked = proc.stdout.partition(MARK)
    return out, json.loads(checked)


def test_every_python_block_is_checked():
    """The README has the two Python blocks the tests below run; a new one needs its own test."""
    assert len(blocks("python")) == 2
    assert "lf.gradient_flow" in blocks("python")[0] and ".save(" in blocks("python")[1]


def test_library_block_is_certified_global_minimum(scratch):
    """The first block: a filling architecture (k_v = 7), targets from a planted filter plus small noise; it prints
    the data condition, a certificate and the classification (its comment), so the run must be certified, with the
    data condition satisfied.  From this start the flow heads for the global minimum (an LSODA run of it, which never
    certifies, ends within 1e-7 of a critical point classified as the global minimum), so that is the kind the block
    must print."""
    code = blocks("python")[0]
    out, res = run_block(code, scratch, f"""import json
print({MARK!r} + json.dumps({{"converged": bool(result.converged), "certified": bool(result.certified),
      "kind": result.kind, "condition": bool(risk.data_condition.satisfied)}}))""")
    assert "data condition satisfied" in out and res["condition"]
    assert res["converged"] and res["certified"], out
    assert res["kind"] == "global_minimum", out
    assert re.search(r"(?<!not )certified", out) and "NOT converged" not in out


def test_experiment_block_runs_and_saves(scratch):
    """The second block: the experiment's verdict is printed, ``run.save("out")`` writes the files its comment lists,
    and the second run reuses the first one's problem (the comment: shared by runs that change [init]/[flow])."""
    code = blocks("python")[1]
    out, res = run_block(code, scratch, f"""import json
print({MARK!r} + json.dumps({{"headline": run.verdict["headline"], "comparison": run.verdict["comparison"],
      "other": other.verdict["headline"], "shared": other.experiment.problem is problem}}))""")
    lines = out.splitlines()
    assert lines[0] == f"{res['headline']} {res['comparison']}" and lines[1] == res["other"]
    assert res["shared"]
    saved = re.search(r'\.save\("([^"]+)"', code).group(1)
    for name in ("result.json", "trajectory.npz", "config.toml", "report.html"):
        assert (scratch / saved / name).is_file(), name
    assert "<html" in (scratch / saved / "report.html").read_text(encoding="utf-8").lower()
    assert any((scratch / saved / "figures").glob("*.png"))
    record = json.loads((scratch / saved / "result.json").read_text(encoding="utf-8"))
    assert record["verdict"]["headline"] == res["headline"]


def test_library_block_is_short():
    assert len(blocks("python")[0].strip().splitlines()) <= 10


def test_config_block_is_a_valid_config(tmp_path):
    from lcnflow.experiments import load_config

    (config_block,) = [c for c in blocks("toml") if "[grid]" not in c]
    path = tmp_path / "exp.toml"
    path.write_text(config_block, encoding="utf-8")
    cfg = load_config(path)
    written = tomllib.loads(config_block)
    assert cfg.name == written["name"]
    assert cfg.loss.name == written["loss"]["name"] and cfg.data.source == written["data"]["source"]


def test_sweep_block_is_a_valid_sweep(tmp_path):
    from lcnflow.sweep import expand
    from lcnflow.sweep.grid import load_sweep

    (sweep_block,) = [c for c in blocks("toml") if "[grid]" in c]
    path = tmp_path / "sweep.toml"
    path.write_text(sweep_block, encoding="utf-8")
    plan = expand(load_sweep(path))
    assert len(plan.runs) == 3 * 3 * 1000  # three filter sizes × three scales × range(0, 1000)
    assert len(plan.cells) == 9


def test_every_shell_command_is_run_or_skipped_with_a_reason():
    run_here = {"lcnflow run", "lcnflow run --out runs/default"}
    unknown = [c for c in shell_commands() if c not in SKIPPED and c not in run_here]
    assert not unknown, f"README commands neither run nor skipped: {unknown}"


def test_default_run_is_what_the_readme_says(tmp_path):
    """``lcnflow run``: a certified spurious local minimum where two layers share a root, 0.044 above the global
    minimum.  (What ``--out`` writes is checked by tests/test_cli.py.)"""
    proc = subprocess.run(lcnflow_cmd("run", "--json"), capture_output=True, text=True, timeout=300, env=env(),
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    verdict = json.loads(proc.stdout)["verdict"]
    assert verdict["certified"] and verdict["kind"] == "local_minimum" and verdict["spurious"] is True
    assert any("share the root" in d for d in verdict["degeneracies"])
    claimed = float(re.search(r"spurious local minimum\*\* ([0-9.]+) above the global minimum", README).group(1))
    assert verdict["gap_to_optimum"] == pytest.approx(claimed, abs=0.0005)


def test_exit_2_message_of_the_text():
    """The example message of "Command line" is what a bad value prints (the run with ``--out`` and its rerun from
    ``config.toml`` are tested in tests/test_cli.py)."""
    quoted = "error: loss.delta: must be > 0, got -1"
    assert f"`{quoted}`" in README
    proc = subprocess.run(lcnflow_cmd("run", "--set", "loss.name=pseudo_huber", "--set", "loss.delta=-1"),
                          capture_output=True, text=True, timeout=120, env=env())
    assert proc.returncode == 2
    assert proc.stderr.strip() == quoted
