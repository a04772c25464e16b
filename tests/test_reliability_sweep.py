"""Reliability of sweeps as a user meets it: duplicated parts, changed data files, grids too large to hold.

Each test is a fault a user can cause from outside (copying a part file, editing the data between two runs of the same
sweep, a typo in a range) and checks the promised behaviour: nothing lost, nothing mixed, a refusal naming the cause.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from lcnflow.cli import app as main_app
from lcnflow.sweep import execute as sweep_execute
from lcnflow.sweep.execute import _row, run_batch
from lcnflow.sweep.grid import SweepError, expand, file_digest, load_sweep
from lcnflow.sweep.store import SweepStore, read_results
from lcnflow.sweep.summary import summarize
from sweep_helpers import tiny_sweep

runner = CliRunner()

SWEEP_TOML = tiny_sweep('init.scale = [0.01, 1]\ninit.seed = {range = [0, 3]}')

FILE_SWEEP_TOML = """\
    name = "from-file"
    [architecture]
    input_size = 12
    filter_sizes = [2, 2]
    [data]
    source = "file"
    path = "data.npz"
    [grid]
    init.seed = {range = [0, 4]}
"""


def _write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _save_data(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((20, 12))
    np.savez(path, inputs=x, targets=x[:, :10] - 0.5 * x[:, 1:11] + 0.25 * x[:, 2:12])


def _run_and_store(out: Path, plan, runs, per_part: int = 2) -> None:
    sweep_execute._PROBLEMS.clear()
    results = run_batch(plan.spec.base, [(r.run_id, r.overrides, r.problem) for r in runs])
    rows = [_row(plan, r, res) for r, res in zip(runs, results, strict=True)]
    with SweepStore(out, plan) as store:
        for i in range(0, len(rows), per_part):
            store.write(rows[i:i + per_part])


# ---------------------------------------------------------------------------------------------------- item 1
def test_a_duplicated_part_file_loses_no_run_and_counts_each_once(tmp_path):
    """Copying a part (a user's backup, a sync tool) used to return duplicates and drop real runs."""
    plan = expand(load_sweep(_write(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    _run_and_store(out, plan, plan.runs)  # 6 runs in 3 parts of 2
    parts = sorted((out / "runs").glob("part-*.parquet"))
    assert len(parts) == 3
    # duplicate the first part under a name that sorts between the originals: the run ids then repeat in the
    # middle of the concatenated rows, where taking "the first k rows" duplicates some runs and drops others
    shutil.copy(parts[0], out / "runs" / f"{parts[0].stem}-copy.parquet")
    with pytest.warns(RuntimeWarning, match=r"-copy\.parquet: not written by this sweep"):
        table = read_results(out)
    ids = table.column("run_id").to_pylist()
    assert sorted(ids) == sorted(r.run_id for r in plan.runs)  # every run, each exactly once
    assert table.column("run_index").to_pylist() == list(range(len(plan.runs)))
    # every row is the row written for that run (not another run's row under its id)
    written = {}
    for p in parts:
        for row in pq.read_table(p).to_pylist():
            written[row["run_id"]] = row
    for row in table.to_pylist():
        assert row["run_index"] == written[row["run_id"]]["run_index"]
        assert row["loss"] == written[row["run_id"]]["loss"]
    with pytest.warns(RuntimeWarning, match="not written by this sweep"):
        summary = summarize(out, html_file=False, csv_file=False, figures=False)
    assert summary.num_finished == len(plan.runs)


def test_first_written_row_wins_when_a_run_is_recorded_twice(tmp_path):
    plan = expand(load_sweep(_write(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    run = plan.runs[4]
    _run_and_store(out, plan, plan.runs[:3])
    sweep_execute._PROBLEMS.clear()
    res = run_batch(plan.spec.base, [(run.run_id, run.overrides, run.problem)])[0]
    first, second = dict(_row(plan, run, res)), dict(_row(plan, run, res))
    first["message"], second["message"] = "first", "second"
    with SweepStore(out, plan) as store:
        store.write([first])
        store.write([second])
    table = read_results(out)
    assert table.num_rows == 4
    rows = {r["run_id"]: r for r in table.to_pylist()}
    # parts are read in name order and their names carry the write order
    assert rows[run.run_id]["message"] == "first"


# ---------------------------------------------------------------------------------------------------- item 2
def test_changed_data_file_is_refused_on_resume_naming_the_file(tmp_path):
    data = tmp_path / "data.npz"
    _save_data(data, 0)
    sweep_file = _write(tmp_path, FILE_SWEEP_TOML)
    plan = expand(load_sweep(sweep_file))
    assert plan.data_files == {str(data.resolve()): file_digest(data)}
    out = tmp_path / "out"
    _run_and_store(out, plan, plan.runs[:2])
    # the same file rewritten with the same contents resumes
    _save_data(data, 0)
    with SweepStore(out, expand(load_sweep(sweep_file))) as store:
        assert len(store.finished_ids()) == 2
    # other contents under the same name: refused, naming the file
    _save_data(data, 1)
    with pytest.raises(SweepError, match=r"data\.path: the data file .*data\.npz changed"):
        SweepStore(out, expand(load_sweep(sweep_file)))
    # through the command line: exit 2, one line, before any cluster starts
    res = runner.invoke(main_app, ["sweep", str(sweep_file), "--out", str(out), "--quiet"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.npz changed" in lines[0] and lines[0].startswith("error: data.path:")
    # nothing was added to the results
    assert read_results(out).num_rows == 2


def test_data_file_contents_enter_the_fingerprint_only_for_file_sources(tmp_path):
    planted = expand(load_sweep(_write(tmp_path, SWEEP_TOML)))
    assert planted.data_files == {} and planted.fingerprint == planted.spec.fingerprint()
    data = tmp_path / "data.npz"
    _save_data(data, 0)
    a = expand(load_sweep(_write(tmp_path, FILE_SWEEP_TOML)))
    _save_data(data, 1)
    b = expand(load_sweep(_write(tmp_path, FILE_SWEEP_TOML)))
    assert a.spec.fingerprint() == b.spec.fingerprint() and a.fingerprint != b.fingerprint


# ---------------------------------------------------------------------------------------------------- item 8
def test_full_disk_during_a_sweep_keeps_the_written_parts_and_says_so(tmp_path, monkeypatch):
    import errno

    import lcnflow.sweep.store as store_module

    plan = expand(load_sweep(_write(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    _run_and_store(out, plan, plan.runs[:4])  # two parts
    before = {p.name: p.read_bytes() for p in (out / "runs").iterdir()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.pq, "write_table", full)
    with SweepStore(out, plan) as store, pytest.raises(SweepError) as info:
        store.write([_row(plan, plan.runs[4], {"run_id": plan.runs[4].run_id, "status": "error"})])
    message = str(info.value)
    assert message.startswith("--out: cannot write results") and "No space left on device" in message
    assert "2 part file(s) written before are kept" in message and "resume" in message
    assert {p.name: p.read_bytes() for p in (out / "runs").iterdir()} == before  # no temporary left, parts whole
    monkeypatch.undo()
    assert read_results(out).num_rows == 4


def test_unwritable_sweep_directory_is_refused_before_running(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    plan = expand(load_sweep(_write(tmp_path, SWEEP_TOML)))
    with pytest.raises(SweepError, match=r"^--out: cannot write in .*file/out"):
        SweepStore(blocker / "out", plan)


# ---------------------------------------------------------------------------------------------------- issue 13
def test_summarize_output_is_complete_when_not_a_terminal(tmp_path):
    import os
    import subprocess
    import sys

    plan = expand(load_sweep(_write(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    _run_and_store(out, plan, plan.runs)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.run([sys.executable, "-m", "lcnflow.sweep", "summarize", str(out), "--no-html"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if "runs" in line and "scale" in line)
    for name in ("scale", "runs", "conv %", "cert %", "L median", "time med (s)"):
        assert name in header, header
    assert "…" not in proc.stdout
    body = [line for line in lines if line.strip()[:1].isdigit()]
    assert len(body) == 2  # one row per cell (init.scale = 0.01, 1), none wrapped


@pytest.mark.parametrize("damage, words", [
    (lambda info: info.pop("columns"), "field columns is missing"),
    (lambda info: info.update(num_runs="12"), "field num_runs must be int"),
    (lambda info: info.update(columns={"init.scale": "complex"}), "field columns.init.scale must be one of"),
])
def test_damaged_sweep_json_is_refused_naming_the_field(tmp_path, damage, words):
    import json

    plan = expand(load_sweep(_write(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    _run_and_store(out, plan, plan.runs[:2])
    info = json.loads((out / "sweep.json").read_text())
    damage(info)
    (out / "sweep.json").write_text(json.dumps(info))
    res = runner.invoke(main_app, ["summarize", str(out), "--no-html"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out / 'sweep.json'}: ") and words in lines[0]


# ---------------------------------------------------------------------------------------------------- integrity
def _damage_inside(path: Path) -> None:
    """Change one byte in the middle of the file: the Parquet footer (its last bytes) stays intact."""
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_part_damaged_inside_is_named_and_the_rest_still_read(tmp_path):
    plan = expand(load_sweep(_write(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    _run_and_store(out, plan, plan.runs)  # 6 runs in 3 parts of 2
    parts = sorted((out / "runs").glob("part-*.parquet"))
    expected = {r["run_id"]: r for p in parts[1:] for r in pq.read_table(p).to_pylist()}  # the parts left whole
    _damage_inside(parts[0])
    assert pq.ParquetFile(parts[0]).metadata.num_rows == 2  # the footer still reads: only a checksum sees it
    with pytest.warns(RuntimeWarning, match=rf"{parts[0].name}: damaged or unreadable part") as caught:
        table = read_results(out)
    assert len(caught) == 1
    assert sorted(table.column("run_id").to_pylist()) == sorted(expected)
    for row in table.to_pylist():
        assert row["loss"] == expected[row["run_id"]]["loss"]
    # summarize: the same table, and the damaged part named in one line
    with pytest.warns(RuntimeWarning):
        summary = summarize(out, html_file=False, csv_file=False, figures=False)
    assert summary.num_finished == 4 and len(summary.problems) == 1 and parts[0].name in summary.problems[0]
    res = runner.invoke(main_app, ["summarize", str(out), "--no-html"])
    assert res.exit_code == 0
    lines = [ln for ln in res.output.splitlines() if parts[0].name in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "damaged" in lines[0]
    # resume: the damaged part is set aside and its runs (and only they) are run again
    lost = {r.run_id for r in plan.runs} - set(expected)
    with SweepStore(out, plan) as store, pytest.warns(RuntimeWarning, match="its runs will be run again"):
        done = store.finished_ids()
    assert done == set(expected)
    assert (out / "runs" / f".corrupt-{parts[0].name}").exists()
    _run_and_store(out, plan, [r for r in plan.runs if r.run_id in lost])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = read_results(out)
    assert sorted(table.column("run_id").to_pylist()) == sorted(r.run_id for r in plan.runs)


def test_only_parts_the_sweep_wrote_are_read(tmp_path):
    """A Parquet file with the right schema dropped into runs/ (1 003 rows for a 1 000-run sweep, once) is ignored."""
    plan = expand(load_sweep(_write(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    _run_and_store(out, plan, plan.runs)
    rows = read_results(out).drop_columns(["outcome"])
    foreign = rows.slice(0, 3).set_column(0, "run_id", [["x-1", "x-2", "x-3"]])
    pq.write_table(foreign, out / "runs" / "part-zzz-foreign.parquet")
    pq.write_table(foreign, out / "runs" / "extra.parquet")
    with pytest.warns(RuntimeWarning, match="not written by this sweep") as caught:
        table = read_results(out)
    assert len(caught) == 2
    assert table.num_rows == len(plan.runs) and not {"x-1", "x-2", "x-3"} & set(table.column("run_id").to_pylist())
    with SweepStore(out, plan) as store, pytest.warns(RuntimeWarning, match="not written by this sweep"):
        assert store.finished_ids() == {r.run_id for r in plan.runs}
    assert (out / "runs" / "extra.parquet").exists()  # not ours: left where it is


def test_a_sweep_directory_copied_elsewhere_reads_the_same(tmp_path):
    plan = expand(load_sweep(_write(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    _run_and_store(out, plan, plan.runs)
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = read_results(moved)
    assert table.num_rows == len(plan.runs)
    assert "/" not in (moved / "index.jsonl").read_text() .replace("\\/", "")  # names only, no paths


def test_a_sweep_written_before_the_index_still_reads_and_resumes(tmp_path):
    plan = expand(load_sweep(_write(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    _run_and_store(out, plan, plan.runs[:4])
    (out / "index.jsonl").unlink()
    assert read_results(out).num_rows == 4  # every part, as before the index existed
    with SweepStore(out, plan) as store:  # resuming records the parts found
        assert len(store.finished_ids()) == 4
    assert len((out / "index.jsonl").read_text().splitlines()) == 2


def test_summarize_on_a_full_disk_prints_the_table_and_keeps_the_earlier_files(tmp_path, monkeypatch):
    import errno

    import lcnflow.sweep.summary as summary_module

    plan = expand(load_sweep(_write(tmp_path, SWEEP_TOML)))
    out = tmp_path / "out"
    _run_and_store(out, plan, plan.runs)
    assert runner.invoke(main_app, ["summarize", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def full(path, content):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(summary_module, "atomic_write", full)
    res = runner.invoke(main_app, ["summarize", str(out)])
    assert res.exit_code == 2
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "summarize: cannot write" in errors[0]
    assert "6 of 6 runs finished" in res.stdout  # the table still printed
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
