"""The results of a sweep on disk: a Parquet dataset written incrementally and atomically.

Layout of a sweep directory ``DIR``::

    DIR/sweep.json          what the sweep is (base config, grid, fingerprint, result columns); written first
    DIR/sweep.toml          the sweep file as given (when the sweep came from a file)
    DIR/runs/part-*.parquet one file per finished batch of runs, one row per run
    DIR/index.jsonl         the parts this sweep wrote, in write order: one JSON line per part with its file name
                            (relative to DIR/runs), its number of rows, size and SHA-256
    DIR/.lock               held (``flock``) by the process writing to DIR

A part is written to a hidden temporary name in ``DIR/runs`` (``.part-….tmp``) and flushed to disk, its line is
appended to ``index.jsonl`` (flushed to disk), and only then is it renamed to its final name with
:func:`os.replace` — an atomic step on POSIX file systems — so a reader, or a sweep killed at any moment, sees each
part either whole or not at all, and every part in ``runs/`` is one the index lists.  A sweep killed between the two
steps leaves a listed temporary, which resuming renames into place (its content checked against the index).
Readers (pyarrow, pandas, polars, DuckDB) skip hidden files.

lcnflow reads only the parts listed in the index, and each only if its size, SHA-256 and row count are those
recorded: a ``.parquet`` file that the sweep did not write (a copy, a file from elsewhere) is ignored with a
warning, and a damaged part is named in a warning (:func:`read_results`, ``lcnflow summarize``) while the other
parts are still read; resuming sets a damaged part aside (``.corrupt-…``) and runs its runs again.  The index holds
no absolute path, so a sweep directory copied or moved elsewhere reads the same.  A directory written before the
index existed (no ``index.jsonl``) is read as it was then: every ``part-*.parquet``, unverified; resuming such a
sweep records the parts found in a new index.
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
import hashlib
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
from lcnflow._files import atomic_write, fsync_dir, stage_file
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


#: The index of the parts a sweep wrote (see the module docstring).
INDEX_NAME = "index.jsonl"


def _read_index(out: Path) -> list[dict[str, Any]] | None:
    """The entries of ``DIR/index.jsonl`` in write order (the first entry of a part name wins); ``None`` when the
    directory has no index (written before the index existed).  A line that is not a complete entry (a write cut
    short) is skipped: its part counts as not written."""
    path = out / INDEX_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SweepError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    entries, names = [], set()
    for line in text.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if not (isinstance(e, dict) and isinstance(e.get("part"), str) and isinstance(e.get("rows"), int)
                and isinstance(e.get("bytes"), int) and isinstance(e.get("sha256"), str)):
            continue
        name = e["part"]
        if "/" in name or "\\" in name or name.startswith(".") or name in names:
            continue
        names.add(name)
        entries.append(e)
    return entries


def _verify_part(path: Path, entry: Mapping[str, Any]) -> str:
    """Why the part at ``path`` is not the one recorded in ``entry`` (``""`` when it is)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "listed in the index but missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if len(data) != entry["bytes"]:
        return f"{len(data)} bytes, {entry['bytes']} written"
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        return "its SHA-256 differs from the one recorded when it was written"
    try:
        rows = pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        return f"not a readable Parquet file ({exc})"
    if rows != entry["rows"]:
        return f"{rows} rows, {entry['rows']} written"
    return ""


def _scan_parts(out: Path) -> tuple[list[Path], list[tuple[Path, str]], list[Path], bool]:
    """``(good parts in write order, [(damaged part, why)], foreign files, indexed)`` of the sweep in ``out``."""
    runs_dir = out / "runs"
    entries = _read_index(out)
    if entries is None:  # written before the index existed: every part, unverified
        return _part_files(runs_dir), [], [], False
    good, bad = [], []
    for e in entries:
        path = runs_dir / e["part"]
        why = _verify_part(path, e)
        if why:
            bad.append((path, why))
        else:
            good.append(path)
    listed = {e["part"] for e in entries}
    foreign = [p for p in sorted(runs_dir.glob("*.parquet"))  # (hidden files — set aside, temporaries — are not)
               if p.is_file() and not p.name.startswith(".") and p.name not in listed] if runs_dir.is_dir() else []
    return good, bad, foreign, True


def _foreign_warning(path: Path) -> str:
    return (f"{path}: not written by this sweep (not in its {INDEX_NAME}); ignored — move it out of runs/ to "
            "silence this warning")


def _damaged_warning(path: Path, why: str, resume: bool = False) -> str:
    then = "its runs will be run again" if resume else "its runs are left out; resume the sweep to run them again"
    return f"{path}: damaged or unreadable part ({why}); {then}"


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
        read, a last column ``outcome`` gives each run's outcome (:func:`outcomes`: ``error``,
        ``uncertified_endpoint``, ``global_minimum``, ``spurious``, …).

    Warns
    -----
    RuntimeWarning
        Once per part that is damaged (left out; the other parts are read) and per ``.parquet`` file in ``runs/``
        that the sweep did not write (ignored).  See the module docstring.
    """
    info = read_sweep_info(out)
    schema = results_schema(info["columns"])
    if columns is not None:
        names = list(dict.fromkeys(["run_id", "run_index", *columns]))
        unknown = [c for c in names if c not in schema.names]
        if unknown:
            raise SweepError(f"columns: unknown column(s) {unknown}; valid: {', '.join(schema.names)}")
        schema = pa.schema([schema.field(c) for c in names])
    parts, damaged, foreign, _ = _scan_parts(Path(out))
    for path in foreign:
        warnings.warn(_foreign_warning(path), RuntimeWarning, stacklevel=2)
    tables = []
    for path in parts:
        try:
            tables.append(pq.read_table(path, columns=schema.names, schema=schema))
        except (OSError, pa.ArrowException) as exc:
            damaged.append((path, str(exc)))
    for path, why in damaged:
        warnings.warn(_damaged_warning(path, why), RuntimeWarning, stacklevel=2)
    if not tables:
        empty = schema.empty_table()
        return empty.append_column("outcome", pa.array([], pa.string())) if columns is None else empty
    table = _dedupe(pa.concat_tables(tables)).sort_by("run_index")
    if columns is None:
        table = table.append_column("outcome", outcomes(table))
    return table


def outcomes(table: pa.Table) -> pa.Array:
    """The outcome of each row of a results table, as a string array: ``error``, ``uncertified_endpoint``,
    ``unclassified``, or the limit's kind (``spurious`` for a spurious local minimum, ``undecided_on_m`` for a
    minimum that matches a best-found bound on ℒ*_M: not shown global, not shown local)."""
    n = table.num_rows
    if n == 0:
        return pa.array([], pa.string())
    status = table.column("status")
    converged = pc.fill_null(table.column("converged"), False)
    kind = table.column("kind")
    spurious = pc.fill_null(table.column("spurious"), False)
    # a minimum whose loss matches a best-found bound on ℒ*_M is neither shown global nor local on M
    undecided = (pc.fill_null(pc.equal(table.column("on_function_space"), "undecided"), False)
                 if "on_function_space" in table.column_names else pa.array([False] * n))
    local = pc.if_else(undecided, "undecided_on_m", "local_minimum")
    out = pc.if_else(pc.equal(kind, "global_minimum"), "global_minimum",
                     pc.if_else(spurious, "spurious",
                                pc.if_else(pc.equal(kind, "strict_saddle"), "strict_saddle",
                                           pc.if_else(pc.equal(kind, "degenerate"), "degenerate", local))))
    out = pc.if_else(pc.is_null(kind), "unclassified", pc.fill_null(out, "unclassified"))
    out = pc.if_else(converged, out, "uncertified_endpoint")
    out = pc.if_else(pc.equal(status, "error"), "error", out)
    return pc.fill_null(out, "error").combine_chunks() if isinstance(out, pa.ChunkedArray) else out


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


def _entry(name: str, data: bytes, rows: int) -> dict[str, Any]:
    return {"part": name, "rows": int(rows), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _readable_parts(runs_dir: Path) -> list[Path]:
    """The ``part-*.parquet`` files of a directory written before the index existed that Parquet can read."""
    out = []
    for p in _part_files(runs_dir):
        try:
            pq.ParquetFile(p).metadata  # noqa: B018 (reads the footer)
            out.append(p)
        except (OSError, pa.ArrowException):
            pass
    return out


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
        self.index_path = self.out / INDEX_NAME
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
                    atomic_write(out / "sweep.toml", self.plan.spec.source_text)
            else:
                self._write_info()
            self.runs_dir.mkdir(exist_ok=True)
            if _read_index(out) is None:  # a new sweep, or one written before the index: record what is there
                self._write_index([_entry(p.name, p.read_bytes(), pq.ParquetFile(p).metadata.num_rows)
                                   for p in _readable_parts(self.runs_dir)])
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
        atomic_write(self.out / "sweep.json", json.dumps(info, indent=1, ensure_ascii=False) + "\n")
        if spec.source_text is not None:
            atomic_write(self.out / "sweep.toml", spec.source_text)

    @property
    def lock_fd(self) -> int | None:
        """The descriptor holding the directory's lock (worker processes forked from this one close their copy)."""
        return self._lock_fd

    # ------------------------------------------------------------------ reading
    def finished_ids(self) -> set[str]:
        """``run_id`` of every run with a row in a part this sweep wrote.

        A part that is damaged (it can only be damaged from outside: parts are renamed into place whole and
        verified against the index) is moved aside to a hidden ``.corrupt-…`` name and dropped from the index with a
        warning, and its runs count as not finished; ``.parquet`` files the sweep did not write are ignored with a
        warning.
        """
        done: set[str] = set()
        parts, damaged, foreign, _ = _scan_parts(self.out)
        for path in foreign:
            warnings.warn(_foreign_warning(path), RuntimeWarning, stacklevel=2)
        for part in parts:
            try:
                ids = pq.read_table(part, columns=["run_id"]).column("run_id").to_pylist()
            except (OSError, pa.ArrowException) as exc:
                damaged.append((part, str(exc)))
                continue
            done.update(ids)
        if damaged:
            for part, why in damaged:
                if part.exists():
                    aside = part.with_name(f".corrupt-{part.name}")
                    os.replace(part, aside)
                    why += f"; moved to {aside.name}"
                warnings.warn(_damaged_warning(part, why, resume=True), RuntimeWarning, stacklevel=2)
            names = {p.name for p, _ in damaged}
            self._write_index([e for e in (_read_index(self.out) or []) if e["part"] not in names])
        return done

    def _write_index(self, entries: Sequence[Mapping[str, Any]]) -> None:
        atomic_write(self.index_path, "".join(json.dumps(e) + "\n" for e in entries))

    def _append_index(self, entry: Mapping[str, Any]) -> None:
        with open(self.index_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

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
        tmp = None
        try:
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="zstd")
            data = sink.getvalue().to_pybytes()
            # recorded in the index before it becomes visible: a part in runs/ is always one the index lists, and a
            # writer killed between the two leaves its listed temporary, which cleanup_temporaries renames into place
            tmp = stage_file(final, data)
            self._append_index(_entry(name, data, table.num_rows))
            os.replace(tmp, final)
            fsync_dir(self.runs_dir)
        except OSError as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            if not final.exists():  # (an index line without its part reads as a damaged part: dropped on resume)
                entries = _read_index(self.out) or []
                if any(e["part"] == name for e in entries):
                    self._write_index([e for e in entries if e["part"] != name])
            kept = len(_part_files(self.runs_dir))
            raise SweepError(
                f"--out: cannot write results into {self.runs_dir} ({exc.strerror or exc}); the {kept} part file(s) "
                f"written before are kept whole and this batch of {len(rows)} run(s) is not recorded; free space "
                "and rerun the same command to resume"
            ) from None
        return final

    def cleanup_temporaries(self) -> int:
        """Finish or remove the temporary part files a killed writer left: one the index lists (the writer was
        killed after recording it, before renaming it into place) is renamed into place if its content is the one
        recorded; every other one is removed.  Returns how many were removed."""
        n = 0
        listed = {e["part"]: e for e in _read_index(self.out) or []}
        for tmp in self.runs_dir.glob(".part-*.tmp"):
            name = tmp.name[1:].rsplit(".", 2)[0]  # (.NAME.<random>.tmp, see lcnflow._files.stage_file)
            final = self.runs_dir / name
            try:
                if name in listed and not final.exists() and not _verify_part(tmp, listed[name]):
                    os.replace(tmp, final)
                    fsync_dir(self.runs_dir)
                    continue
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
