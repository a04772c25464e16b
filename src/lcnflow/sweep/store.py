"""The results of a sweep on disk: a Parquet dataset written incrementally and atomically.

Layout of a sweep directory ``DIR``::

    DIR/sweep.json          what the sweep is (base config, grid, fingerprint, result columns); written first
    DIR/sweep.toml          the sweep file as given (when the sweep came from a file)
    DIR/runs/part-*.parquet one file per finished batch of runs, one row per run
    DIR/.lock               held (``flock``) by the process writing to DIR

A part is written to a hidden temporary name in ``DIR/runs`` (``.part-….tmp``), flushed to disk, and renamed to its
final name with :func:`os.replace` — an atomic step on POSIX file systems — so a reader, or a sweep killed at any
moment, sees each part either whole or not at all.  Readers (pyarrow, pandas, polars, DuckDB) skip hidden files.
Resuming reads the ``run_id`` column of the parts and runs only what is missing.

Read the results without lcnflow::

    pyarrow.dataset.dataset("DIR/runs").to_table()            # pyarrow
    pandas.read_parquet("DIR/runs")                           # pandas
    polars.read_parquet("DIR/runs/*.parquet")                 # polars
    duckdb.sql("SELECT * FROM 'DIR/runs/*.parquet'")          # DuckDB
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lcnflow import __version__
from lcnflow.dynamics.result import SCALAR_FIELDS
from lcnflow.sweep.grid import SweepError, SweepPlan, column_value

__all__ = [
    "FORMAT",
    "RESULT_FIELDS",
    "SWEEP_FIELDS",
    "SweepStore",
    "read_results",
    "read_sweep_info",
    "results_schema",
]

#: Format tag of ``sweep.json``.
FORMAT = "lcnflow-sweep/1"

#: Arrow type of a varied-key column of each kind (:attr:`~lcnflow.sweep.grid.SweepPlan.columns`).
KIND_TYPES = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "str": pa.string(), "json": pa.string(),
              "list[int]": pa.list_(pa.int64()), "list[float]": pa.list_(pa.float64()),
              "list[list[int]]": pa.list_(pa.list_(pa.int64())),
              "list[list[float]]": pa.list_(pa.list_(pa.float64()))}

_ARROW_TYPES = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}

#: The sweep's own columns after a run's :data:`~lcnflow.dynamics.result.SCALAR_FIELDS`.
SWEEP_FIELDS: tuple[pa.Field, ...] = (
    pa.field("optimum_loss", pa.float64()),  # ℒ* = min over all final filters (function-space optimum)
    pa.field("best_loss", pa.float64()),  # ℒ*_M = min over the function space M (the best the architecture can do)
    pa.field("best_exact", pa.bool_()),  # False: best_loss is the best found over local searches (an upper bound)
    pa.field("final_filter", pa.list_(pa.float64())),  # π(w*), flattened row-major
    pa.field("final_filter_shape", pa.list_(pa.int64())),
    pa.field("limit", pa.list_(pa.list_(pa.float64()))),  # the limit filters w*^(i), each flattened
    pa.field("setup_time", pa.float64()),  # seconds building this run's config and (if not shared) its problem
    pa.field("notes", pa.string()),  # warnings raised by the run, one per line
)

#: Columns every results table has after ``run_id``, ``run_index``, ``cell`` and the varied-key columns: the status,
#: a run's flat result fields (:meth:`~lcnflow.FlowResult.scalars`, as in ``result.json``), then :data:`SWEEP_FIELDS`.
RESULT_FIELDS: tuple[pa.Field, ...] = (
    pa.field("status", pa.string()),  # "ok" or "error"
    pa.field("error", pa.string()),  # "ExceptionType: message" when status is "error"
    pa.field("traceback", pa.string()),
    *(pa.field(name, _ARROW_TYPES[kind]) for name, kind in SCALAR_FIELDS.items()),
    *SWEEP_FIELDS,
)


def results_schema(columns: Mapping[str, str]) -> pa.Schema:
    """The Arrow schema of a sweep's results: identifiers, one column per varied key, then :data:`RESULT_FIELDS`.

    Parameters
    ----------
    columns : mapping
        Varied-key column name → kind (see :class:`~lcnflow.sweep.grid.SweepPlan`).
    """
    fields = [pa.field("run_id", pa.string()), pa.field("run_index", pa.int64()), pa.field("cell", pa.int64())]
    fields += [pa.field(name, KIND_TYPES[kind]) for name, kind in columns.items()]
    return pa.schema(fields + list(RESULT_FIELDS))


def _fsync_dir(path: Path) -> None:
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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


#: Fields of ``sweep.json`` that readers rely on, with their JSON types.
INFO_FIELDS: dict[str, type] = {"fingerprint": str, "num_runs": int, "num_cells": int, "varied_keys": list,
                                "cell_keys": list, "seed_keys": list, "columns": dict, "cells": list, "base": dict,
                                "grid": list}


def read_sweep_info(out: str | Path) -> dict[str, Any]:
    """The content of ``DIR/sweep.json``.

    Raises
    ------
    SweepError
        If ``DIR`` is not a sweep directory or the file cannot be read.
    """
    path = Path(out) / "sweep.json"
    if not path.is_file():
        raise SweepError(f"{out}: not a sweep directory (no sweep.json); give the --out DIR of an lcnflow sweep")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SweepError(f"{path}: cannot read it: {exc}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        fmt = info.get("format") if isinstance(info, dict) else None
        raise SweepError(f"{path}: format {fmt!r} is not {FORMAT!r}")
    for key, kind in INFO_FIELDS.items():
        if key not in info:
            raise SweepError(f"{path}: field {key} is missing; the file is damaged (restore it, or start the sweep "
                             "in a new --out)")
        if not isinstance(info[key], kind) or isinstance(info[key], bool):
            raise SweepError(f"{path}: field {key} must be {kind.__name__}, got {type(info[key]).__name__}; the file "
                             "is damaged")
    bad = [k for k, v in info["columns"].items() if v not in KIND_TYPES]
    if bad:
        raise SweepError(f"{path}: field columns.{bad[0]} must be one of {', '.join(KIND_TYPES)}, got "
                         f"{info['columns'][bad[0]]!r}; the file is damaged")
    return info


def _part_files(runs_dir: Path) -> list[Path]:
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.glob("part-*.parquet") if p.is_file())


def read_results(out: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """All result rows of the sweep in ``DIR``, one per run (the first written, should a run appear twice).

    Parameters
    ----------
    out : str or Path
        The sweep directory.
    columns : sequence of str, optional
        Read only these columns (``run_id`` is always read).

    Returns
    -------
    pyarrow.Table
        Sorted by ``run_index``; empty (with the sweep's schema) when no run has finished.  When all columns are
        read, a last column ``outcome`` gives each run's outcome (:func:`~lcnflow.sweep.summary.outcomes`: ``error``,
        ``uncertified_endpoint``, ``global_minimum``, ``spurious``, …).
    """
    info = read_sweep_info(out)
    schema = results_schema(info["columns"])
    if columns is not None:
        names = list(dict.fromkeys(["run_id", "run_index", *columns]))
        unknown = [c for c in names if c not in schema.names]
        if unknown:
            raise SweepError(f"columns: unknown column(s) {unknown}; valid: {', '.join(schema.names)}")
        schema = pa.schema([schema.field(c) for c in names])
    parts = _part_files(Path(out) / "runs")
    if not parts:
        empty = schema.empty_table()
        return empty.append_column("outcome", pa.array([], pa.string())) if columns is None else empty
    tables = [pq.read_table(p, columns=schema.names, schema=schema) for p in parts]
    table = _dedupe(pa.concat_tables(tables)).sort_by("run_index")
    if columns is None:
        from lcnflow.sweep.summary import outcomes

        table = table.append_column("outcome", outcomes(table))
    return table


def _dedupe(table: pa.Table) -> pa.Table:
    """Keep the first row of each ``run_id``."""
    if table.num_rows == 0:
        return table
    ids = table.column("run_id")
    if pc.count_distinct(ids).as_py() == table.num_rows:
        return table
    indices = pa.array(range(table.num_rows), pa.int64())
    first = (pa.table({"id": ids, "i": indices}).group_by("id", use_threads=False)
             .aggregate([("i", "min")]).column("i_min"))
    # ``first`` holds, for each distinct run, the row number of its first occurrence: take those rows (in the
    # order they were written), not the positions that would sort ``first``.
    return table.take(pc.take(first, pc.sort_indices(first)))


class SweepStore:
    """Writes one sweep's results into ``DIR``; see the module docstring for the layout.

    Parameters
    ----------
    out : str or Path
        The sweep directory (created if needed).
    plan : SweepPlan
        The expanded sweep; its fingerprint must match an existing ``DIR/sweep.json``.

    Raises
    ------
    SweepError
        If ``DIR`` is a file, a non-empty directory that is not a sweep directory, a sweep directory of a different
        sweep, or locked by another process.
    """

    def __init__(self, out: str | Path, plan: SweepPlan):
        self.out = Path(out)
        self.plan = plan
        self.runs_dir = self.out / "runs"
        self.schema = results_schema(plan.columns)
        self._lock_fd: int | None = None
        self._session = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S") + f"-{uuid.uuid4().hex[:6]}"
        self._count = 0
        self._open()

    # ------------------------------------------------------------------ setup
    def _open(self) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise SweepError(f"--out: {out} exists and is not a directory")
        info_path = out / "sweep.json"
        if out.is_dir() and not info_path.exists():
            entries = [p.name for p in out.iterdir() if not p.name.startswith(".")]  # .lock, temporaries
            if entries:
                raise SweepError(
                    f"--out: {out} is not empty and is not a sweep directory (no sweep.json; found "
                    f"{', '.join(sorted(entries)[:5])}); give a new or empty directory"
                )
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / f".write-test-{uuid.uuid4().hex[:8]}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SweepError(f"--out: cannot write in {out} ({exc.strerror or exc}); choose a writable directory"
                             ) from None
        self._acquire_lock()
        try:
            if info_path.exists():
                info = read_sweep_info(out)
                self._check_same_sweep(info)
                if info["columns"] != self.plan.columns:
                    # a sweep started by an lcnflow that stored lists as JSON text resumes with the kinds it began
                    # with, so that all its parts share one schema
                    self.plan.columns.clear()
                    self.plan.columns.update(info["columns"])
                    self.schema = results_schema(self.plan.columns)
                if self.plan.spec.source_text is not None and not (out / "sweep.toml").exists():
                    _atomic_write_text(out / "sweep.toml", self.plan.spec.source_text)
            else:
                self._write_info()
            self.runs_dir.mkdir(exist_ok=True)
        except BaseException:
            self.close()
            raise

    def _acquire_lock(self) -> None:
        fd = os.open(self.out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise SweepError(
                    f"--out: another process is writing to {self.out} (its .lock is held); wait for it to finish, "
                    "or stop it, then resume"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _check_same_sweep(self, info: Mapping[str, Any]) -> None:
        spec = self.plan.spec
        if info.get("fingerprint") == self.plan.fingerprint:
            return
        what = []
        if info.get("base") != json.loads(json.dumps(spec.base)):
            what.append("the base config")
        if info.get("grid") != json.loads(json.dumps([[d.name, d.values] for d in spec.dimensions])):
            what.append("the grid")
        there, here = info.get("data_files") or {}, self.plan.data_files
        changed = [p for p in dict.fromkeys([*here, *there]) if there.get(p) != here.get(p)]
        if not what and changed and set(there) == set(here):
            path = changed[0]
            raise SweepError(
                f"data.path: the data file {path} changed since the sweep in {self.out} started (SHA-256 "
                f"{there[path][:16]} there, {here[path][:16]} now); resuming would mix two data sets: restore the "
                "file, or choose a new --out"
            )
        if changed:
            what.append("the data files")
        differs = " and ".join(what) or "the sweep"
        raise SweepError(
            f"--out: {self.out} holds results of a different sweep ({differs} differ; fingerprint "
            f"{info.get('fingerprint')} there, {self.plan.fingerprint} here); resume only with the same sweep file, "
            "or choose a new --out"
        )

    def _write_info(self) -> None:
        spec, plan = self.plan.spec, self.plan
        info = {
            "format": FORMAT,
            "lcnflow_version": __version__,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "fingerprint": plan.fingerprint,
            "source_path": spec.source_path,
            "num_runs": len(plan.runs),
            "num_cells": len(plan.cells),
            "varied_keys": spec.varied_keys,
            "cell_keys": plan.cell_keys,
            "seed_keys": plan.seed_keys,
            "columns": plan.columns,
            "cells": [{k: column_value(plan.columns[k], v) for k, v in c.items()} for c in plan.cells],
            "base": spec.base,
            "grid": [[d.name, d.values] for d in spec.dimensions],
            "sweep": {"batch_size": spec.batch_size},
            "data_files": plan.data_files,
        }
        _atomic_write_text(self.out / "sweep.json", json.dumps(info, indent=1, ensure_ascii=False) + "\n")
        if spec.source_text is not None:
            _atomic_write_text(self.out / "sweep.toml", spec.source_text)

    # ------------------------------------------------------------------ reading
    def finished_ids(self) -> set[str]:
        """``run_id`` of every run with a row on disk.

        A part that cannot be read (it can only be damaged from outside: parts are renamed into place whole) is
        moved aside to a hidden ``.corrupt-…`` name with a warning, and its runs count as not finished.
        """
        done: set[str] = set()
        for part in _part_files(self.runs_dir):
            try:
                ids = pq.read_table(part, columns=["run_id"]).column("run_id").to_pylist()
            except (OSError, pa.ArrowException) as exc:
                aside = part.with_name(f".corrupt-{part.name}")
                os.replace(part, aside)
                warnings.warn(f"{part}: unreadable ({exc}); moved to {aside.name}, its runs will be redone",
                              RuntimeWarning, stacklevel=2)
                continue
            done.update(ids)
        return done

    # ------------------------------------------------------------------ writing
    def write(self, rows: Iterable[Mapping[str, Any]]) -> Path:
        """Write ``rows`` (dicts keyed by column name) as one new part file, atomically.

        Returns
        -------
        Path
            The part file.
        """
        rows = list(rows)
        table = pa.Table.from_pylist(rows, schema=self.schema)
        self._count += 1
        name = f"part-{self._session}-{self._count:06d}.parquet"
        final = self.runs_dir / name
        tmp = self.runs_dir / f".{name}.tmp"
        try:
            with open(tmp, "wb") as fh:
                pq.write_table(table, fh, compression="zstd")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            kept = len(_part_files(self.runs_dir))
            raise SweepError(
                f"--out: cannot write results into {self.runs_dir} ({exc.strerror or exc}); the {kept} part file(s) "
                f"written before are kept whole and this batch of {len(rows)} run(s) is not recorded; free space "
                "and rerun the same command to resume"
            ) from None
        _fsync_dir(self.runs_dir)
        return final

    def cleanup_temporaries(self) -> int:
        """Remove temporary part files left by a killed writer; returns how many."""
        n = 0
        for tmp in self.runs_dir.glob(".part-*.tmp"):
            try:
                tmp.unlink()
                n += 1
            except OSError:
                pass
        return n

    def close(self) -> None:
        """Release the lock."""
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
