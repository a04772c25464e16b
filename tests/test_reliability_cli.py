"""Reliability of ``lcnflow run --out``, ``report`` and the command line's error output, as a user meets them.

Faults: someone else's files in the output directory, an earlier run there, a full disk, an unwritable directory, a
diverging run, damaged run files, and output that is not a terminal (pipes, files, CI logs).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import lcnflow.experiments as experiments
from lcnflow.cli import app

TINY = ["--set", "data.source=planted", "--set", "data.num_samples=20", "--set", "architecture.input_size=14",
        "--set", "architecture.filter_sizes=[3,2,2]", "--set", "init.scale=0.5"]
DIVERGING = [*TINY, "--set", "loss.name=lp", "--set", "loss.p=1e6"]

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def one_error_line(res, starts: str = "error: ") -> str:
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(starts), lines[0]
    return lines[0]


def snapshot(directory) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def hidden_leftovers(parent) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


@pytest.fixture
def quick_report(monkeypatch):
    """Replace drawing the report (tested in test_report.py) by writing its files, to keep these tests fast."""
    import lcnflow.report

    def build(run_dir, formats=("png",), figures=None):
        (run_dir / "figures").mkdir(exist_ok=True)
        for fmt in formats:
            (run_dir / "figures" / f"convergence.{fmt}").write_bytes(b"figure")
        (run_dir / "report.html").write_text("<html></html>")
        return run_dir / "report.html"

    monkeypatch.setattr(lcnflow.report, "build_report", build)


# ---------------------------------------------------------------------------------------------------- item 3
def test_out_refuses_a_directory_that_is_not_an_lcnflow_run(tmp_path, quick_report):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "result.json").write_text('{"accuracy": 0.93}')  # someone else's result.json
    (out / "notes.txt").write_text("keep me")
    before = snapshot(out)
    res = invoke("run", *TINY, "--quiet", "--out", str(out))
    assert res.exit_code == 2
    line = one_error_line(res, "error: --out: ")
    assert "not an lcnflow run" in line and "--overwrite" in line and "notes.txt" in line
    assert snapshot(out) == before
    assert hidden_leftovers(tmp_path) == []
    # asked for explicitly, the directory is replaced as a whole
    res = invoke("run", *TINY, "--quiet", "--out", str(out), "--overwrite")
    assert res.exit_code == 0, res.stderr
    assert not (out / "notes.txt").exists()
    assert json.loads((out / "result.json").read_text())["format"] == "lcnflow-run/1"


def test_out_replaces_an_earlier_run_as_a_whole(tmp_path, quick_report):
    out = tmp_path / "run"
    assert invoke("run", *TINY, "--quiet", "--svg", "--out", str(out)).exit_code == 0
    assert list((out / "figures").glob("*.svg"))
    (out / "notes.txt").write_text("the user's")  # not lcnflow's: kept, unchanged
    (out / "mine").mkdir()
    (out / "mine" / "a.csv").write_text("1,2")
    res = invoke("run", *TINY, "--set", "init.seed=7", "--quiet", "--out", str(out))
    assert res.exit_code == 0, res.stderr
    assert not list((out / "figures").glob("*.svg"))  # the earlier run's own files are replaced as a whole
    assert (out / "notes.txt").read_text() == "the user's" and (out / "mine" / "a.csv").read_text() == "1,2"
    record = json.loads((out / "result.json").read_text())
    assert record["config"]["init"]["seed"] == 7
    assert "seed = 7" in (out / "config.toml").read_text()
    with np.load(out / "trajectory.npz") as z:  # the trajectory of this run, not the earlier one
        assert np.array_equal(z["limit"], np.concatenate([np.ravel(w) for w in record["result"]["limit"]]))
    assert {"report.html", "result.json", "trajectory.npz", "config.toml"} <= {p.name for p in out.iterdir()}
    assert hidden_leftovers(tmp_path) == []


def test_out_dot_replaces_the_contents_of_the_working_directory_not_the_directory(tmp_path, monkeypatch,
                                                                                   quick_report):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert invoke("run", *TINY, "--quiet", "--svg", "--out", ".").exit_code == 0
    inode = here.stat().st_ino
    (here / "notes.txt").write_text("the user's")
    res = invoke("run", *TINY, "--quiet", "--out", ".")
    assert res.exit_code == 0, res.stderr
    assert here.stat().st_ino == inode and os.getcwd() == str(here)  # the shell's directory still exists
    assert not list((here / "figures").glob("*.svg")) and (here / "result.json").is_file()
    assert (here / "notes.txt").read_text() == "the user's"
    assert hidden_leftovers(here) == [] and hidden_leftovers(tmp_path) == []


def test_full_disk_keeps_the_earlier_run_and_says_so(tmp_path, monkeypatch, quick_report):
    out = tmp_path / "run"
    assert invoke("run", *TINY, "--quiet", "--out", str(out)).exit_code == 0
    before = snapshot(out)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full)
    res = invoke("run", *TINY, "--set", "init.seed=3", "--out", str(out))
    assert res.exit_code == 2
    line = one_error_line(res, "error: --out: ")
    assert "No space left on device" in line and "unchanged" in line
    assert "limit" in res.stdout  # the verdict is still shown
    assert snapshot(out) == before  # nothing truncated, nothing mixed
    assert hidden_leftovers(tmp_path) == []
    # into a new directory: nothing at all is left behind
    res = invoke("run", *TINY, "--quiet", "--out", str(tmp_path / "new"))
    assert res.exit_code == 2 and "nothing was written" in one_error_line(res)
    assert not (tmp_path / "new").exists() and hidden_leftovers(tmp_path) == []


def test_api_save_is_atomic_per_file_on_a_full_disk(tmp_path, monkeypatch):
    cfg = experiments.load_config(None, [a for a in TINY if a != "--set"])
    run = experiments.execute(cfg)
    run.save(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.setattr(np, "savez_compressed", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError, match="full"):
        run.save(tmp_path)
    assert snapshot(tmp_path) == before and hidden_leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------------- item 8
def test_unwritable_out_is_refused_before_running(tmp_path, monkeypatch):
    ran = []
    real = experiments.execute
    monkeypatch.setattr(experiments, "execute", lambda *a, **k: ran.append(1) or real(*a, **k))
    target = tmp_path / "file"
    target.write_text("x")
    res = invoke("run", *TINY, "--quiet", "--out", str(target / "sub"))  # its parent is a file
    assert res.exit_code == 2 and ran == []
    assert "--out: cannot write in" in one_error_line(res)
    res = invoke("run", *TINY, "--quiet", "--out", str(target))
    assert res.exit_code == 2 and ran == [] and "is not a directory" in one_error_line(res)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only directories")
def test_read_only_parent_is_refused_before_running(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res = invoke("run", *TINY, "--quiet", "--out", str(ro / "run"))
    finally:
        ro.chmod(0o755)
    assert res.exit_code == 2 and "Permission denied" in one_error_line(res)


# ---------------------------------------------------------------------------------------------------- item 4
def test_a_diverging_run_is_a_verdict_with_a_report(tmp_path):
    out = tmp_path / "div"
    res = invoke("run", *DIVERGING, "--out", str(out))
    assert res.exit_code == 0, res.stderr
    assert "NOT converged" in res.stdout and "non-finite" in res.stdout
    record = json.loads((out / "result.json").read_text())
    assert record["verdict"]["converged"] is False and record["result"]["loss"] is None
    assert (out / "report.html").is_file() and (out / "figures" / "convergence.png").is_file()
    html = (out / "report.html").read_text()
    assert "NOT converged" in html
    # the report is rebuilt from the files alone
    res = invoke("report", str(out))
    assert res.exit_code == 0, res.stderr


# ---------------------------------------------------------------------------------------------------- item 10, issue 13
def _cli(*args: str) -> subprocess.CompletedProcess:
    """The command line in a child process whose stdout and stderr are pipes (not a terminal)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run([sys.executable, "-m", "lcnflow.cli", *args], capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.mark.parametrize("args", [
    ["run", "--bogus"],
    ["run", "--set"],
    ["frobnicate"],
    ["sweep"],
    ["run", "--set", "architecture.filter_sizes=[3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3]"],
    ["summarize", "/nonexistent/" + "very-long-directory-name/" * 8],
])
def test_errors_are_one_line_when_stderr_is_not_a_terminal(args):
    proc = _cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "╭" not in proc.stderr and proc.stdout == ""


def test_help_is_plain_text_and_keeps_brackets():
    proc = _cli("sweep", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "[grid]" in text and "[sweep] batch_size" in text
    assert "<bool>" not in text and "╭" not in text
    proc = _cli("run", "--help")
    assert "lcnflow run [OPTIONS] [CONFIG]" in proc.stdout and "[[CONFIG]]" not in proc.stdout
    assert "--overwrite" in proc.stdout and "<bool>" not in proc.stdout


def test_output_is_not_wrapped_when_not_a_terminal():
    proc = _cli("run", *DIVERGING)
    assert proc.returncode == 0
    data_line = next(line for line in proc.stdout.splitlines() if line.startswith("data "))
    assert data_line.rstrip().endswith("noise.")  # the whole description on its line


# ---------------------------------------------------------------------------------------------------- item 7
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    cfg = experiments.load_config(None, [a for a in TINY if a != "--set"])
    experiments.execute(cfg).save(out, report=False)  # the run files only: the tests check report.html is not written
    return out


def _damaged_copy(src, dst, damage):
    import shutil

    shutil.copytree(src, dst)
    record = json.loads((dst / "result.json").read_text())
    with np.load(dst / "trajectory.npz") as z:
        arrays = {k: z[k] for k in z.files}
    damage(record, arrays, dst)
    return dst


def _set(path, value):
    def damage(record, arrays, dst):
        node = record
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
        (dst / "result.json").write_text(json.dumps(record))
    return damage


def _arrays(edit):
    def damage(record, arrays, dst):
        edit(arrays)
        np.savez(dst / "trajectory.npz", **arrays)
    return damage


def _truncate(record, arrays, dst):
    raw = (dst / "trajectory.npz").read_bytes()
    (dst / "trajectory.npz").write_bytes(raw[: len(raw) // 3])


@pytest.mark.parametrize("damage, file, words", [
    (_set("result.t_final", KeyError), "result.json", "field result.t_final is missing"),
    (_set("result.converged", "yes"), "result.json", "field result.converged must be bool"),
    (_set("architecture", [1, 2]), "result.json", "field architecture must be dict"),
    (_set("result.loss", "0.5"), "result.json", "field result.loss must be number or null"),
    (_set("verdict", KeyError), "result.json", "field verdict is missing"),
    (_truncate, "trajectory.npz", "damaged"),
    (_arrays(lambda a: a.pop("times")), "trajectory.npz", "array 'times' is missing"),
    (_arrays(lambda a: a.update(trajectory=a["trajectory"][:, :2])), "trajectory.npz", "array 'trajectory' has shape"),
    (_arrays(lambda a: a.update(limit=np.array(["x"] * a["limit"].size))), "trajectory.npz", "must hold real numbers"),
])
def test_report_refuses_damaged_run_files_naming_file_and_field(finished_run, tmp_path, damage, file, words):
    run_dir = _damaged_copy(finished_run, tmp_path / "damaged", damage)
    res = invoke("report", str(run_dir))
    line = one_error_line(res, "error: report: ")
    assert str(run_dir / file) in line and words in line, line
    assert not (run_dir / "report.html").exists()


# ---------------------------------------------------------------------------------------------------- no overwrite
COMPARE = ["compare", *TINY, "--step-size", "0.01", "--batch-size", "20", "--epochs", "20"]


def test_compare_out_never_overwrites_a_file_it_did_not_write(tmp_path):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare.json").write_text('{"mine": 1}')
    before = snapshot(out)
    res = invoke(*COMPARE, "--out", str(out))
    assert res.exit_code == 2
    line = one_error_line(res, "error: --out: ")
    assert "compare.json exists and was not written by lcnflow compare" in line
    assert snapshot(out) == before
    # a compare.png alone (someone's figure) is not replaced either
    other = tmp_path / "fig"
    other.mkdir()
    (other / "compare.png").write_bytes(b"my figure")
    res = invoke(*COMPARE, "--out", str(other))
    assert res.exit_code == 2 and "compare.png exists" in one_error_line(res)
    assert (other / "compare.png").read_bytes() == b"my figure"
    # its own output is replaced, whole
    fresh = tmp_path / "fresh"
    assert invoke(*COMPARE, "--out", str(fresh)).exit_code == 0
    first = json.loads((fresh / "compare.json").read_text())
    assert first["format"] == "lcnflow-compare/1"
    assert invoke(*COMPARE, "--seed", "3", "--out", str(fresh)).exit_code == 0
    assert json.loads((fresh / "compare.json").read_text())["format"] == "lcnflow-compare/1"
    assert hidden_leftovers(fresh) == []


def test_compare_out_on_a_full_disk_leaves_the_earlier_files_whole(tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    assert invoke(*COMPARE, "--out", str(out)).exit_code == 0
    before = snapshot(out)
    import lcnflow._files as files

    real = files.os.fsync

    def full(fd):
        real(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    res = invoke(*COMPARE, "--seed", "3", "--out", str(out))
    monkeypatch.undo()
    assert res.exit_code == 2 and "No space left on device" in one_error_line(res)
    assert snapshot(out) == before and hidden_leftovers(out) == []
    json.loads((out / "compare.json").read_text())  # whole


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    from lcnflow._files import atomic_write

    path = tmp_path / "a.json"
    atomic_write(path, '{"v": 1}')
    assert path.read_text() == '{"v": 1}'
    atomic_write(path, b'{"v": 2}')
    assert path.read_bytes() == b'{"v": 2}'

    def failing(fh):
        fh.write(b'{"v": 3, "half')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, failing)
    assert path.read_bytes() == b'{"v": 2}' and hidden_leftovers(tmp_path) == []


def test_out_through_a_symlink_writes_into_its_target_and_keeps_the_link(tmp_path, quick_report):
    real = tmp_path / "real"
    assert invoke("run", *TINY, "--quiet", "--out", str(real)).exit_code == 0
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    res = invoke("run", *TINY, "--set", "init.seed=5", "--quiet", "--out", str(link))
    assert res.exit_code == 0, res.stderr
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert json.loads((real / "result.json").read_text())["config"]["init"]["seed"] == 5
    assert hidden_leftovers(tmp_path) == []


def test_report_writes_nothing_when_it_fails_and_names_a_write_error(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert invoke("run", *TINY, "--quiet", "--out", str(out)).exit_code == 0
    before = snapshot(out)
    import lcnflow.report.html as html

    def broken_page(*args, **kwargs):
        raise KeyError("headline")

    monkeypatch.setattr(html, "_page", broken_page)
    res = invoke("report", str(out))
    assert res.exit_code == 2 and "cannot lay out the report" in one_error_line(res)
    assert snapshot(out) == before  # no figure rewritten before the failure
    monkeypatch.undo()

    def full(path, content):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(html, "atomic_write", full)
    res = invoke("report", str(out))
    assert res.exit_code == 2
    line = one_error_line(res, "error: report: cannot write")
    assert "No space left on device" in line and str(out) in line
    assert snapshot(out) == before


def test_long_out_names(tmp_path, quick_report, monkeypatch):
    """255 bytes is a valid name (the hidden staging folder beside it must not be longer); 300 is refused."""
    monkeypatch.chdir(tmp_path)
    ok = "r" * 250
    assert invoke("run", *TINY, "--quiet", "--out", ok).exit_code == 0
    assert (tmp_path / ok / "result.json").is_file()
    assert invoke("run", *TINY, "--quiet", "--out", ok).exit_code == 0  # replacing it too
    assert hidden_leftovers(tmp_path) == []
    for command in (["run", *TINY, "--quiet"], COMPARE):
        res = invoke(*command, "--out", "r" * 300)
        assert res.exit_code == 2
        assert "300 bytes long" in one_error_line(res, "error: --out: the name ")
