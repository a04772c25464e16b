"""The ``lcnflow`` command line, through its installed entry point (subprocess) and typer's in-process runner.

Every run here uses a tiny planted problem (``--set``) except the one that checks the built-in default.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from typer.testing import CliRunner

from lcnflow.cli import app
from lcnflow.experiments import RUN_FILES

TINY = ["--set", "data.source=planted", "--set", "data.num_samples=20", "--set", "architecture.input_size=14",
        "--set", "architecture.filter_sizes=[3,2,2]", "--set", "init.scale=0.5"]
RESULT_KEYS = {"format", "lcnflow_version", "name", "config", "architecture", "loss", "data", "hypotheses", "solver",
               "verdict", "function_space_optimum", "result", "notes", "timings"}

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def lcnflow(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """The installed console script if there is one on PATH next to this Python, else ``python -m``."""
    script = shutil.which("lcnflow", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    cmd = [script] if script else [sys.executable, "-m", "lcnflow.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={**os.environ, "COLUMNS": "120"})


# ---------------------------------------------------------------------------------------------------- real entry point
def test_default_run_through_the_entry_point():
    proc = lcnflow("run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for field in ("architecture", "k = (3, 3, 3)", "k_v = 7", "filling: yes", "loss", "square", "MNIST-1D",
                  "data condition", "holds", "solver", "gradient flow", "converged", "limit", "optimum", "time"):
        assert field in out, field
    # the default run ends at a certified limit: the words must be these, not "NOT converged … not certified"
    assert re.search(r"^converged\s+yes, certified: yes", out, re.M), out
    assert re.search(r"^limit\s+certified ", out, re.M) and "uncertified" not in out
    assert "Traceback" not in proc.stderr


def test_bad_input_through_the_entry_point_exits_2_without_traceback():
    proc = lcnflow("run", "--set", "loss.name=pseudo_huber", "--set", "loss.delta=-1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: loss.delta: must be > 0, got -1"
    assert proc.stdout == ""


def test_help_and_version():
    assert "run" in invoke("--help").stdout
    assert invoke("--version").stdout.startswith("lcnflow ")
    for cmd in ("run", "check-data", "describe", "report"):
        assert invoke(cmd, "--help").exit_code == 0


# ---------------------------------------------------------------------------------------------------- run
def test_json_prints_only_the_result_record():
    res = invoke("run", "--json", *TINY)
    assert res.exit_code == 0
    record = json.loads(res.stdout)
    assert RESULT_KEYS <= set(record)
    assert record["verdict"]["converged"] is True and record["verdict"]["certified"] is True
    assert record["result"]["critical_point"]["kind"] in ("global_minimum", "local_minimum", "strict_saddle",
                                                          "degenerate")
    assert record["architecture"]["final_filter_size"] == 5 and record["data"]["condition"]["satisfied"]
    assert res.stderr == ""


def test_time_line_states_the_compile_time_apart_from_the_flow():
    """The summary's time line: flow, data, and Numba's compiling (the first run in an environment) or loading the
    compiled kernels from its cache, each apart; the record carries the compile seconds too."""
    res = invoke("run", *TINY)
    assert res.exit_code == 0
    line = " ".join(res.stdout[res.stdout.index("\ntime "):].split())  # (the table may wrap the line)
    assert re.search(r"[\d.]+ s flow \+ [\d.]+ s data \+ [\d.]+ s (compile \(cached for later runs\)|loading "
                     r"compiled code)", line), line
    record = json.loads(invoke("run", "--json", *TINY).stdout)
    assert record["timings"]["compile_seconds"] >= 0 and record["timings"]["compilations"] >= 0
    from lcnflow.cli import _compile_part
    from lcnflow.record import Timings

    def timings(**compiling):
        return Timings.from_json_dict({"build_seconds": 0.1, "flow_seconds": 1.0, "optimum_seconds": 0.01,
                                       **compiling}, where="timings")

    assert _compile_part(timings(compile_seconds=12.345, compilations=40)) == (
        " + 12.35 s compile (cached for later runs)")
    assert _compile_part(timings(compile_seconds=0.21, compilations=0)) == " + 0.21 s loading compiled code"
    assert _compile_part(timings()) == ""  # (a record written before the compile time was kept)
    assert _compile_part(timings(compiled_in_background=True)).startswith(" (NumPy path; compiled code being built")


def test_quiet_prints_nothing():
    res = invoke("run", "--quiet", *TINY)
    assert res.exit_code == 0 and res.stdout == "" and res.stderr == ""


def test_out_writes_the_run_and_its_config_repeats_it_exactly(tmp_path):
    out = tmp_path / "run"
    res = invoke("run", "--out", str(out), "--json", *TINY)
    assert res.exit_code == 0, res.output
    for name in (*RUN_FILES, "report.html", "figures/convergence.png", "figures/roots.png"):
        assert (out / name).is_file(), name
    first = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert json.loads(res.stdout) == first  # --json prints exactly result.json
    config = tomllib.loads((out / "config.toml").read_text(encoding="utf-8"))
    assert config["data"]["source"] == "planted" and config["architecture"]["filter_sizes"] == [3, 2, 2]
    again = json.loads(invoke("run", "--json", str(out / "config.toml")).stdout)
    assert again["config"] == first["config"]
    for key in ("loss", "limit", "final_filter", "gradient_norm", "t_final", "num_steps"):
        assert again["result"][key] == first["result"][key], key
    with np.load(out / "trajectory.npz") as z:
        np.testing.assert_array_equal(z["final_filter"], np.array(first["result"]["final_filter"]))
    # the report can be rebuilt from the three run files alone
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in RUN_FILES:
        (copy / name).write_bytes((out / name).read_bytes())
    res = invoke("report", str(copy))
    assert res.exit_code == 0 and (copy / "report.html").is_file() and "report.html" in res.stdout


def test_not_converged_is_still_success():
    res = invoke("run", "--json", *TINY, "--set", "flow.max_steps=2")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["verdict"]["converged"] is False


def test_notes_for_dropped_inputs_go_to_stderr():
    res = invoke("run", *TINY, "--set", "architecture.input_size=16", "--set", "architecture.strides=[2,1,1]")
    assert res.exit_code == 0
    assert "note:" in res.stderr and "dropped" in res.stderr


# ---------------------------------------------------------------------------------------------------- other commands
def test_check_data_reports_the_condition_and_hypotheses():
    res = invoke("check-data", *TINY)
    assert res.exit_code == 0
    assert "rank H = k_v" in res.stdout and "theorem" in res.stdout and "covered" in res.stdout
    data = json.loads(invoke("check-data", "--json", *TINY).stdout)
    assert data["data"]["condition"]["rank"] == 5 and data["hypotheses"]["covered"] is True
    # too few equations: the condition fails, which is a finding, not an error
    few = json.loads(invoke("check-data", "--json", *TINY, "--set", "data.num_samples=1",
                            "--set", "architecture.input_size=6").stdout)
    assert few["data"]["condition"]["satisfied"] is False and few["hypotheses"]["covered"] is False


def test_describe_shows_sizes_and_filling():
    res = invoke("describe", "--set", "architecture.input_size=10", "--set", "architecture.filter_sizes=[3,2]",
                 "--set", "architecture.strides=[2,2]")
    assert res.exit_code == 0
    for text in ("k_v = 5", "s_v = 4", "P = 5", "dim M", "filling", "layer 1 drops its last 1 input"):
        assert text in res.stdout, text
    info = json.loads(invoke("describe", "--json").stdout)
    assert info["final_filter_size"] == 7 and info["num_params"] == 9 and info["filling"] is True
    assert [row["output_size"] for row in info["layers"]] == [38, 36, 34]


# ---------------------------------------------------------------------------------------------------- bad input
BAD = [
    (["run", "--set", "architecture.filter_sizes=[50,3]"], "architecture: layer 1 has filter size 50"),
    (["run", "--set", "architecture.filter_sizes=abc"], "architecture.filter_sizes: must be a non-empty list"),
    (["run", "--set", "foo.bar=1"], "foo: unknown key at the top level"),
    (["run", "--set", "flow.rtol=-1"], "flow.rtol: must be a finite number > 0, got -1.0"),
    (["run", "--set", "init.scale=abc"], "init.scale: must be a number, got 'abc'"),
    (["run", "--set", "novalue"], "--set 'novalue': expected KEY=VALUE"),
    (["run", "missing.toml"], "config: file not found: missing.toml"),
    (["run", "--set", "data.source=file", "--set", "data.path=nope.npz"], "data.path: file not found"),
    (["check-data", "--set", "data.source=image"], "data.source: 'image' gives 2D data but the architecture is 1D"),
    (["describe", "--set", "architecture.strides=[1]"], "architecture.strides: has 1 entries but there are 3 layers"),
    (["report", "no-such-dir"], "report: no-such-dir is not a directory"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[b[1].split(":")[0] for b in BAD])
def test_bad_input_exits_2_with_one_clear_message(args, message):
    res = invoke(*args)
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and message in " ".join(res.stderr.split()), res.stderr
    assert "Traceback" not in res.output and res.stdout == ""


def test_bad_data_files_exit_2(tmp_path):
    X = np.random.default_rng(0).standard_normal((5, 14))
    X[1, 2] = np.nan
    np.savez(tmp_path / "nan.npz", inputs=X, targets=np.zeros((5, 10)))
    np.savez(tmp_path / "shape.npz", inputs=np.zeros((5, 14)), targets=np.zeros((5, 9)))
    (tmp_path / "exp.toml").write_text('[data]\nsource = "file"\npath = "nan.npz"\n[architecture]\n'
                                       'input_size = 14\nfilter_sizes = [3, 2, 2]\n', encoding="utf-8")
    res = invoke("run", str(tmp_path / "exp.toml"))
    assert res.exit_code == 2 and "data.inputs: 1 non-finite value(s) (NaN or inf), first at index (1, 2)" in res.stderr
    res = invoke("run", str(tmp_path / "exp.toml"), "--set", f"data.path={tmp_path / 'shape.npz'}")
    assert res.exit_code == 2 and "data.targets: expected shape (5, 10)" in " ".join(res.stderr.split())
    (tmp_path / "broken.toml").write_text("[data\n", encoding="utf-8")
    res = invoke("run", str(tmp_path / "broken.toml"))
    assert res.exit_code == 2 and "is not valid TOML" in res.stderr


def test_usage_errors_exit_2():
    assert invoke("run", "--no-such-option").exit_code == 2
    assert invoke("frobnicate").exit_code == 2


def test_internal_errors_exit_1_without_traceback(monkeypatch):
    import lcnflow.experiments

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(lcnflow.experiments, "execute", boom)
    res = invoke("run", *TINY)
    assert res.exit_code == 1
    assert "internal error: RuntimeError: simulated failure" in res.stderr and "Traceback" not in res.output
