r"""Sweep files and their expansion into validated, identified runs.

A sweep file is an experiment config (as for ``lcnflow run``) plus a ``[grid]`` table of keys to vary, and an
optional ``[sweep]`` table of execution options::

    name = "depth-and-scale"

    [architecture]
    input_size = 64
    filter_sizes = [3, 3, 3]

    [data]
    source = "planted"
    num_samples = 500

    [sweep]
    batch_size = 32                               # runs per task (default: automatic)
    verify_fraction = 0.1                         # re-integrate this share of the runs at 100× tighter tolerances

    [grid]
    "architecture.filter_sizes" = [[2, 2], [3, 2], [2, 2, 2]]
    init.scale = { logspace = [-3, 0, 4] }        # 1e-3, 1e-2, 1e-1, 1
    init.seed = { range = [0, 1000] }             # 0, 1, …, 999

Every grid key is a dotted config key (quoted, or written as TOML dotted keys — both give the same grid).  A value
is either a list of values or a table:

==========================  ================================================================
``[a, b, c]``               these values
``{values = [a, b, c]}``    the same
``{range = [start, stop]}``  integers ``start, start+1, …, stop−1`` (Python's ``range``; also
                            ``[stop]`` and ``[start, stop, step]``)
``{linspace = [a, b, n]}``  ``n`` equally spaced numbers from ``a`` to ``b``
``{logspace = [a, b, n]}``  ``10^x`` for ``n`` equally spaced ``x`` from ``a`` to ``b``
==========================  ================================================================

``[[grid.cases]]`` (an array of tables) adds one more dimension whose values are *sets* of keys changed together,
e.g. a loss together with its parameters::

    [[grid.cases]]
    loss.name = "square"
    [[grid.cases]]
    loss.name = "pseudo_huber"
    loss.delta = 0.5

The runs are the Cartesian product of all dimensions, in the order the file lists them.  :func:`expand` validates
every run's config before anything is executed and gives each run a stable identifier: the SHA-256 of the
canonical JSON of its *resolved* varied values (what the validated config holds, so ``1`` and ``1.0`` for a float
field are the same run).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from lcnflow.experiments import ConfigError, ExperimentConfig, config_from_dict
from lcnflow.experiments.config import DATA_PATH_FIELDS, resolve_data_paths

__all__ = [
    "GRID_FORMS",
    "LIST_KINDS",
    "MAX_RUNS",
    "Dimension",
    "Run",
    "SweepError",
    "SweepPlan",
    "SweepSpec",
    "canonical_json",
    "expand",
    "file_digest",
    "load_sweep",
    "sweep_from_dict",
]

#: The table forms a grid value may take, besides a plain list.
GRID_FORMS = ("values", "range", "linspace", "logspace")
#: Top-level tables of a sweep file that are not part of the experiment config.
SWEEP_TABLES = ("grid", "sweep")
#: Keys of the optional ``[sweep]`` table.
SWEEP_OPTIONS = ("batch_size", "verify_fraction")
#: At most this many invalid cells are listed in an error message.
MAX_LISTED_ERRORS = 10
#: A sweep has at most this many runs (and a grid dimension at most this many values): the expanded plan keeps a few
#: kilobytes per run in memory (:data:`PLAN_BYTES_PER_RUN`), so larger grids are refused before being expanded.
MAX_RUNS = 1_000_000
#: Rough memory of one expanded run (its ``Run`` record, overrides, values and result row), for the refusal message.
PLAN_BYTES_PER_RUN = 4096


def _too_many(where: str, count: int, what: str) -> SweepError:
    gib = count * PLAN_BYTES_PER_RUN / 2**30
    return SweepError(
        f"{where}: {what} {count:,} runs; a sweep may have at most {MAX_RUNS:,} (expanding {count:,} would need about "
        f"{gib:,.1f} GiB of memory before anything runs); split it into several sweeps or use fewer values"
    )


class SweepError(ConfigError):
    """Bad sweep input (file, grid, options, output directory).  The message names the key, the value and the fix."""


def canonical_json(value: Any) -> str:
    """Canonical JSON text of plain data: sorted keys, no spaces, no NaN (stable across runs and machines)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _digest(value: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def _get_path(data: Mapping[str, Any], dotted: str) -> Any:
    """``data[a][b][c]`` for ``"a.b.c"``; ``None`` when a key is missing."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _is_seed_key(key: str) -> bool:
    """Seed fields (``init.seed``, ``data.seed``): plain integers ≥ 0 that no other field's validation depends on."""
    return key in ("init.seed", "data.seed")


# ---------------------------------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class Dimension:
    """One axis of the grid.

    Attributes
    ----------
    name : str
        The dotted config key, or ``"cases"`` for ``[[grid.cases]]``.
    values : list
        The values (for ``cases``: one ``{"dotted.key": value}`` dict per case).
    """

    name: str
    values: list[Any]

    @property
    def is_cases(self) -> bool:
        """Whether this is the ``[[grid.cases]]`` dimension."""
        return self.name == "cases"

    @property
    def keys(self) -> list[str]:
        """The dotted config keys this dimension sets (one, or the union over the cases)."""
        if not self.is_cases:
            return [self.name]
        return list(dict.fromkeys(k for case in self.values for k in case))

    def overrides(self, index: int) -> dict[str, Any]:
        """``{"dotted.key": value}`` of value number ``index``."""
        value = self.values[index]
        return dict(value) if self.is_cases else {self.name: value}


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep: the base experiment config, the grid, and execution options.

    Attributes
    ----------
    base : dict
        The experiment config as nested dicts (relative data paths already made absolute).
    dimensions : list of Dimension
        The grid, in file order.
    batch_size : int or None
        Runs per task from ``[sweep]`` (``None``: automatic).
    verify_fraction : float
        Share of the runs (chosen by their run id, so the same runs on every resume) whose gradient flow is
        re-integrated at 100× tighter tolerances (``flow.verify``); their rows get ``limit_verified``.
    source_text : str or None
        The sweep file's text, saved into the output directory.
    source_path : str or None
    """

    base: dict[str, Any]
    dimensions: list[Dimension]
    batch_size: int | None = None
    verify_fraction: float = 0.0
    source_text: str | None = None
    source_path: str | None = None

    @property
    def varied_keys(self) -> list[str]:
        """Every dotted config key the grid sets, in file order."""
        return list(dict.fromkeys(k for d in self.dimensions for k in d.keys))

    @property
    def num_runs(self) -> int:
        """Number of runs: the product of the dimension lengths."""
        return math.prod(len(d.values) for d in self.dimensions)

    def fingerprint_data(self) -> dict[str, Any]:
        """What identifies a sweep (base config and grid, not options or comments): plain data."""
        return {"base": self.base, "grid": [[d.name, d.values] for d in self.dimensions]}

    def fingerprint(self) -> str:
        """SHA-256 (hex, 16 digits) of :meth:`fingerprint_data`: equal for the same sweep, written any way."""
        return _digest(self.fingerprint_data())

    def to_dict(self) -> dict[str, Any]:
        """Plain data: base, grid (``[[name, values], …]``) and options; :func:`sweep_from_dict` reads it back."""
        out = {"base": self.base, "grid": [[d.name, d.values] for d in self.dimensions]}
        options = {k: v for k, v in (("batch_size", self.batch_size), ("verify_fraction", self.verify_fraction))
                   if v not in (None, 0.0)}
        if options:
            out["sweep"] = options
        return out

    def verifies(self, run_id: str) -> bool:
        """Whether run ``run_id`` is among the :attr:`verify_fraction` that are verified (a hash of the id)."""
        if self.verify_fraction <= 0:
            return False
        return int(hashlib.sha256(run_id.encode()).hexdigest()[:12], 16) < self.verify_fraction * 16**12


def _grid_values(key: str, value: Any) -> list[Any]:
    """Expand one grid entry (a list or a table of one of :data:`GRID_FORMS`) into its list of values."""
    where = f"grid.{key}"
    if isinstance(value, list):
        values = value
    elif isinstance(value, Mapping):
        forms = [f for f in value if f in GRID_FORMS]
        if len(value) != 1 or len(forms) != 1:
            raise SweepError(
                f"{where}: a table must have exactly one of the keys {', '.join(GRID_FORMS)}, got keys "
                f"{sorted(value)}; e.g. {key} = {{range = [0, 100]}}"
            )
        form, arg = forms[0], value[forms[0]]
        if form == "values":
            if not isinstance(arg, list):
                raise SweepError(f"{where}.values: must be a list, got {arg!r}")
            values = arg
        elif form == "range":
            if not (isinstance(arg, list) and 1 <= len(arg) <= 3
                    and all(isinstance(a, int) and not isinstance(a, bool) for a in arg)):
                raise SweepError(
                    f"{where}.range: must be [stop], [start, stop] or [start, stop, step] with integers, got {arg!r}"
                )
            if len(arg) == 3 and arg[2] == 0:
                raise SweepError(f"{where}.range: step must not be 0, got {arg!r}")
            if len(range(*arg)) > MAX_RUNS:
                raise _too_many(f"{where}.range", len(range(*arg)), f"{arg!r} alone gives")
            values = list(range(*arg))
        else:
            ok = (isinstance(arg, list) and len(arg) == 3 and all(isinstance(a, int | float) for a in arg[:2])
                  and isinstance(arg[2], int) and not isinstance(arg[2], bool) and arg[2] >= 1
                  and all(math.isfinite(a) for a in arg[:2]))
            if not ok:
                raise SweepError(
                    f"{where}.{form}: must be [start, stop, count] with finite numbers and an integer count ≥ 1, "
                    f"got {arg!r}"
                )
            if arg[2] > MAX_RUNS:
                raise _too_many(f"{where}.{form}", arg[2], "a count of")
            x = np.linspace(float(arg[0]), float(arg[1]), int(arg[2]))
            values = [float(v) for v in (x if form == "linspace" else 10.0 ** x)]
    else:
        raise SweepError(
            f"{where}: expected a list of values or a table such as {{range = [0, 100]}}, got {value!r}; "
            f"to fix a key to one value, set it in the base config instead"
        )
    if not values:
        raise SweepError(f"{where}: gives no values (an empty grid dimension would give no runs)")
    for i, v in enumerate(values):  # NaN and inf name no run (and have no place in the sweep's JSON records)
        at = _non_finite(v)
        if at is not None:
            raise SweepError(f"{where}{at}: value {i + 1} of {len(values)} is not a finite number ({v!r}); grid "
                             "values must be finite")
    seen: dict[str, int] = {}
    for i, v in enumerate(values):
        text = canonical_json(v)
        if text in seen:
            raise SweepError(f"{where}: value {v!r} appears twice (positions {seen[text]} and {i}); runs must differ")
        seen[text] = i
    return list(values)


def _flatten_grid(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, grid entry)`` pairs of a possibly nested ``[grid]`` table.

    Config keys are ``section.field``, so a table under a section name (``init = {seed = …}``) is walked into, and
    a table under a field (``init.seed = {…}``) is a grid entry (one of :data:`GRID_FORMS`).
    """
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and "." not in dotted and not (set(value) & set(GRID_FORMS)):
            if not value:
                raise SweepError(f"grid.{dotted}: empty table; give a list of values or e.g. {{range = [0, 10]}}")
            yield from _flatten_grid(value, dotted + ".")
        else:
            yield dotted, value


def _flatten_case(case: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in case.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten_case(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _resolve_paths(overrides: dict[str, Any], folder: Path | None) -> dict[str, Any]:
    """``overrides`` (dotted keys) with relative data file names made absolute, relative to the sweep file's folder
    (:func:`~lcnflow.experiments.config.resolve_data_paths`, the rule of a config file)."""
    if folder is None:
        return overrides
    data = {k.removeprefix("data."): v for k, v in overrides.items() if k.startswith("data.")}
    return {**overrides, **{f"data.{k}": v for k, v in resolve_data_paths(data, folder).items()}}


def sweep_from_dict(data: Mapping[str, Any], folder: str | Path | None = None) -> SweepSpec:
    """Parse a sweep given as nested dicts (the TOML structure of a sweep file).

    Parameters
    ----------
    data : mapping
        Experiment config tables plus ``grid`` (required) and ``sweep`` (optional).  The output of
        :meth:`SweepSpec.to_dict` (keys ``base``, ``grid``, ``sweep``) is accepted too.
    folder : str or Path, optional
        Relative data paths (``data.path``, ``data.targets_path``) are taken relative to this folder.

    Returns
    -------
    SweepSpec

    Raises
    ------
    SweepError
        Naming the grid key, the value and what would be valid.
    """
    if not isinstance(data, Mapping):
        raise SweepError(f"sweep: expected a table (dict), got {type(data).__name__}")
    base_dir = Path(folder) if folder is not None else None
    if "base" in data and isinstance(data.get("grid"), list):  # SweepSpec.to_dict() form
        base = copy.deepcopy(dict(data["base"]))
        dims = []
        for entry in data["grid"]:
            if not (isinstance(entry, list | tuple) and len(entry) == 2 and isinstance(entry[1], list)):
                raise SweepError(f"grid: expected [name, values] pairs, got {entry!r}")
            dims.append(Dimension(str(entry[0]), list(entry[1])))
        options = data.get("sweep", {})
    else:
        base = {k: copy.deepcopy(v) for k, v in data.items() if k not in SWEEP_TABLES}
        grid = data.get("grid")
        if grid is None:
            raise SweepError(
                "grid: a sweep file needs a [grid] table of keys to vary, e.g. [grid] init.seed = {range = [0, 100]}"
            )
        if not isinstance(grid, Mapping):
            raise SweepError(f"grid: must be a table of keys to vary, got {grid!r}")
        dims = []
        for key, value in grid.items():
            if key == "cases":
                dims.append(_cases_dimension(value, base_dir))
                continue
            for dotted, entry in _flatten_grid({key: value}):
                if dotted.split(".")[0] in SWEEP_TABLES:
                    raise SweepError(f"grid.{dotted}: [{dotted.split('.')[0]}] cannot be varied")
                values = _grid_values(dotted, entry)
                if dotted.removeprefix("data.") in DATA_PATH_FIELDS and base_dir is not None:
                    values = [_resolve_paths({dotted: v}, base_dir)[dotted] for v in values]
                dims.append(Dimension(dotted, values))
        options = data.get("sweep", {})
    if not dims:
        raise SweepError("grid: is empty; give at least one key to vary, e.g. init.seed = {range = [0, 100]}")
    for d in dims:  # (the SweepSpec.to_dict() form; the file form is checked as it is read)
        for i, v in enumerate(d.values):
            where = _non_finite(v)
            if where is not None:
                raise SweepError(f"grid.{d.name}{where}: value {i + 1} of {len(d.values)} is not a finite number "
                                 f"({v!r}); grid values must be finite")
    where = _non_finite(base)
    if where is not None:
        raise SweepError(f"{where.lstrip('.')}: is not a finite number; a sweep's base config holds finite values "
                         "only")
    total = math.prod(len(d.values) for d in dims)
    if total > MAX_RUNS:
        sizes = " × ".join(str(len(d.values)) for d in dims)
        raise _too_many("grid", total, f"the product of its dimensions ({sizes}) is")
    names = [d.name for d in dims]
    keys = [k for d in dims for k in d.keys]
    for k in dict.fromkeys(keys):
        if keys.count(k) > 1:
            raise SweepError(f"grid.{k}: set by two grid dimensions ({', '.join(names)}); vary each key once")
    data_section = base.get("data")
    if isinstance(data_section, dict) and base_dir is not None:
        base["data"] = resolve_data_paths(data_section, base_dir)
    batch_size, verify_fraction = _sweep_options(options)
    return SweepSpec(base=base, dimensions=dims, batch_size=batch_size, verify_fraction=verify_fraction)


def _non_finite(value: Any, where: str = "") -> str | None:
    """Where (``""``, ``".key"``, ``"[i]"``, …) in ``value`` a float is NaN or infinite, or ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = _non_finite(v, f"{where}.{k}")
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = _non_finite(v, f"{where}[{i}]")
            if found is not None:
                return found
    return None


def _cases_dimension(value: Any, folder: Path | None) -> Dimension:
    if not (isinstance(value, list) and value and all(isinstance(c, Mapping) for c in value)):
        raise SweepError(
            f"grid.cases: must be a non-empty array of tables ([[grid.cases]] blocks), got {value!r}"
        )
    cases = []
    for i, case in enumerate(value):
        flat = _resolve_paths(_flatten_case(case), folder)
        if not flat:
            raise SweepError(f"grid.cases[{i}]: is empty; each case sets at least one key")
        at = _non_finite(flat)
        if at is not None:
            raise SweepError(f"grid.cases[{i}]{at}: is not a finite number; grid values must be finite")
        cases.append(flat)
    seen: dict[str, int] = {}
    for i, case in enumerate(cases):
        text = canonical_json(case)
        if text in seen:
            raise SweepError(f"grid.cases: cases {seen[text]} and {i} are the same ({case!r}); runs must differ")
        seen[text] = i
    return Dimension("cases", cases)


def _sweep_options(options: Any) -> tuple[int | None, float]:
    if not isinstance(options, Mapping):
        raise SweepError(f"sweep: [sweep] must be a table, got {options!r}")
    unknown = sorted(set(options) - set(SWEEP_OPTIONS))
    if unknown:
        raise SweepError(f"sweep.{unknown[0]}: unknown key in [sweep]; valid keys: {', '.join(SWEEP_OPTIONS)}")
    batch = options.get("batch_size")
    if batch is not None and not (isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1):
        raise SweepError(f"sweep.batch_size: must be an integer ≥ 1 (runs per task), got {batch!r}")
    fraction = options.get("verify_fraction", 0.0)
    if not (isinstance(fraction, int | float) and not isinstance(fraction, bool) and 0 <= fraction <= 1):
        raise SweepError(f"sweep.verify_fraction: must be a number in [0, 1] (the share verified), got {fraction!r}")
    return batch, float(fraction)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep file (TOML): experiment config tables, ``[grid]`` and optionally ``[sweep]``.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    SweepSpec
        With the file's text kept in ``source_text``.

    Raises
    ------
    SweepError
        Missing or unreadable file, invalid TOML, or a malformed grid.
    """
    p = Path(path)
    if not p.exists():
        raise SweepError(f"sweep file: not found: {p}")
    if not p.is_file():
        raise SweepError(f"sweep file: {p} is not a file (give a .toml sweep file)")
    try:
        text = p.read_text(encoding="utf-8-sig")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"sweep file: {p} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(f"sweep file: cannot read {p}: {exc}") from None
    spec = sweep_from_dict(data, folder=p.resolve().parent)
    return SweepSpec(spec.base, spec.dimensions, spec.batch_size, spec.verify_fraction, text, str(p.resolve()))


# ---------------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Run:
    """One run of a sweep.

    Attributes
    ----------
    index : int
        Position in the expanded grid (product order).
    run_id : str
        Stable identifier: hash of the resolved varied values.
    cell : int
        Index of the grid cell: the combination of the non-seed dimensions.
    overrides : dict
        ``{"dotted.key": value}`` applied to the base config for this run.
    values : dict
        ``{"dotted.key": resolved value}`` of every varied key and of ``init.seed`` and ``data.seed``.
    problem : str
        Hash of the resolved ``architecture``, ``loss`` and ``data``: runs with equal ``problem`` share one
        :class:`~lcnflow.EmpiricalRisk`.
    """

    index: int
    run_id: str
    cell: int
    overrides: dict[str, Any]
    values: dict[str, Any]
    problem: str


@dataclass
class SweepPlan:
    """A validated sweep: the spec and every run, in grid order.

    Attributes
    ----------
    spec : SweepSpec
    runs : list of Run
    cells : list of dict
        ``{"dotted.key": resolved value}`` of the non-seed varied keys, one per cell.
    columns : dict
        Column name → kind (``"bool"``, ``"int"``, ``"float"``, ``"str"``, one of :data:`LIST_KINDS` for lists of
        numbers, or ``"json"`` for other structured values) of the varied-value columns of the results.
    data_files : dict
        Path → SHA-256 of the contents of every data file the runs read (``data.source = "file"``); a file that
        does not exist maps to ``"missing"`` (its runs fail and are recorded as errors).
    """

    spec: SweepSpec
    runs: list[Run]
    cells: list[dict[str, Any]]
    columns: dict[str, str] = field(default_factory=dict)
    data_files: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """What identifies the sweep: the spec's fingerprint, and the contents of its data files if it reads any.

        Without data files (every source but ``file``) this is :meth:`SweepSpec.fingerprint`; with them it is the
        SHA-256 of that and of :attr:`data_files`, so a data file whose contents changed makes a different sweep.
        """
        if not self.data_files:
            return self.spec.fingerprint()
        return _digest({"spec": self.spec.fingerprint(), "data_files": self.data_files})

    @property
    def seed_keys(self) -> list[str]:
        """Varied keys that are seeds (their values are the repetitions of a cell)."""
        return [k for k in self.spec.varied_keys if _is_seed_key(k)]

    @property
    def cell_keys(self) -> list[str]:
        """Varied keys that define the cells (all but the seeds)."""
        return [k for k in self.spec.varied_keys if not _is_seed_key(k)]

    def config(self, run: Run) -> ExperimentConfig:
        """The validated config of ``run``."""
        return config_from_dict(self.spec.base, run.overrides)


#: Column kinds of list-valued grid keys (stored as Arrow lists): lists, or lists of lists, of numbers.
LIST_KINDS = ("list[int]", "list[float]", "list[list[int]]", "list[list[float]]")


def _list_kind(values: Sequence[Any]) -> str | None:
    """The list kind of ``values`` if every one is a list of numbers, or every one a list of lists of numbers."""
    def leaves(v: Any, depth: int) -> list | None:
        if not isinstance(v, list):
            return None
        if depth == 1:
            return v if all(isinstance(x, int | float) and not isinstance(x, bool) for x in v) else None
        out = [leaves(x, depth - 1) for x in v]
        return None if any(x is None for x in out) else [y for x in out for y in x]

    for depth in (1, 2):
        flat = [leaves(v, depth) for v in values]
        if all(f is not None for f in flat):
            numbers = [x for f in flat for x in f]
            elem = "int" if all(isinstance(x, int) for x in numbers) else "float"
            return ("list[{}]" if depth == 1 else "list[list[{}]]").format(elem)
    return None


def _column_kind(values: Sequence[Any]) -> str:
    present = [v for v in values if v is not None]
    kind = _list_kind(present) if present else None
    if kind is not None:
        return kind
    if present and all(isinstance(v, bool) for v in present):
        return "bool"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int"
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return "float"
    if present and all(isinstance(v, str) for v in present):
        return "str"
    return "json"


def column_value(kind: str, value: Any) -> Any:
    """A resolved config value as stored in a column of kind ``kind``: lists of numbers as lists (entries as floats
    for the ``…[float]`` kinds), other structured values (tables, mixed lists) as canonical JSON text."""
    if value is None:
        return None
    if kind == "json":
        return canonical_json(value)
    if kind == "float":
        return float(value)
    if kind == "list[float]":
        return [float(x) for x in value]
    if kind == "list[list[float]]":
        return [[float(x) for x in row] for row in value]
    return value


def _describe(overrides: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} = {json.dumps(v)}" for k, v in overrides.items())


def expand(spec: SweepSpec) -> SweepPlan:
    """Validate every run of ``spec`` and give each its identifier, cell and problem.

    The cells (products of the non-seed dimensions) are validated with :func:`~lcnflow.experiments.config_from_dict`
    one by one; each value of a seed dimension (``init.seed``, ``data.seed`` — plain integers no other field
    depends on) is validated once.  Together that validates every run of the product.

    Parameters
    ----------
    spec : SweepSpec

    Returns
    -------
    SweepPlan

    Raises
    ------
    SweepError
        Listing the invalid cells (up to :data:`MAX_LISTED_ERRORS`), each with its values and the config error.
    """
    dims = spec.dimensions
    seed_dims = [i for i, d in enumerate(dims) if not d.is_cases and _is_seed_key(d.name)]
    cell_dims = [i for i in range(len(dims)) if i not in seed_dims]
    errors: list[str] = []
    n_bad = 0

    def check(overrides: dict[str, Any]) -> ExperimentConfig | None:
        nonlocal n_bad
        try:
            return config_from_dict(spec.base, overrides)
        except ConfigError as exc:
            n_bad += 1
            if len(errors) < MAX_LISTED_ERRORS:
                errors.append(f"cell {{{_describe(overrides)}}}:\n    " + str(exc).replace("\n", "\n    "))
            return None

    first_seeds = {k: v for i in seed_dims for k, v in dims[i].overrides(0).items()}
    base_cfg: ExperimentConfig | None = None  # the first valid cell's config, with the first seeds
    cells: list[dict[str, Any]] = []
    cell_data: list[tuple[dict[str, Any], dict[str, Any], str]] = []  # overrides, resolved values, problem text
    for combo in np.ndindex(*[len(dims[i].values) for i in cell_dims]) if cell_dims else [()]:
        overrides: dict[str, Any] = {}
        for i, j in zip(cell_dims, combo, strict=True):
            overrides.update(dims[i].overrides(j))
        cfg = check({**overrides, **first_seeds})
        if cfg is None:
            continue
        if base_cfg is None:
            base_cfg = cfg
        resolved = cfg.to_dict()
        keys = [k for i in cell_dims for k in dims[i].keys]
        cells.append({k: _get_path(resolved, k) for k in keys})
        problem = {s: resolved.get(s) for s in ("architecture", "loss", "data")}
        cell_data.append((overrides, resolved, canonical_json(problem)))
    seed_values: dict[str, list[Any]] = {}
    if base_cfg is not None:
        base_overrides = cell_data[0][0]
        for i in seed_dims:
            key = dims[i].name
            section_name, field = key.split(".")
            section = getattr(base_cfg, section_name)
            fields = section.model_dump()
            resolved_seeds = []
            for v in dims[i].values:
                # the seed's own section validated with it (its rule, from the config model); a value it refuses
                # goes through the whole config, for the error message every other config error gets
                try:
                    resolved_seeds.append(getattr(type(section).model_validate({**fields, field: v}), field))
                except ValidationError:
                    cfg = check({**base_overrides, **first_seeds, key: v})
                    resolved_seeds.append(None if cfg is None else _get_path(cfg.to_dict(), key))
            seed_values[key] = resolved_seeds
    if n_bad:
        more = f"\n… and {n_bad - len(errors)} more invalid cell(s)" if n_bad > len(errors) else ""
        total = spec.num_runs
        raise SweepError(
            f"grid: {n_bad} invalid cell(s) or value(s); nothing was run (the sweep has {total} runs). "
            "Fix the [grid] values or the base config:\n" + "\n".join(errors) + more
        )
    runs: list[Run] = []
    ids: dict[str, int] = {}
    shape = [len(d.values) for d in dims]
    cell_shape = [len(dims[i].values) for i in cell_dims]
    # per cell: the seeds' resolved values (for the columns of runs whose grid leaves them alone); per cell and seeds
    # of the data: the problem's digest (runs that differ only in init.seed share it)
    cell_seeds = [{key: _get_path(resolved, key) for key in ("init.seed", "data.seed")} for _, resolved, _ in cell_data]
    problems: dict[tuple, str] = {}
    for index, combo in enumerate(np.ndindex(*shape)):
        cell = int(np.ravel_multi_index([combo[i] for i in cell_dims], cell_shape)) if cell_dims else 0
        overrides_c, resolved, problem_text = cell_data[cell]
        overrides = dict(overrides_c)
        values = dict(cells[cell])
        problem_seeds = {}
        for i in seed_dims:
            key = dims[i].name
            overrides[key] = dims[i].values[combo[i]]
            values[key] = seed_values[key][combo[i]]
            if not key.startswith("init."):
                problem_seeds[key] = values[key]
        # put overrides and values in file order of the dimensions
        overrides = {k: overrides[k] for i in range(len(dims)) for k in dims[i].keys if k in overrides}
        varied = {k: values.get(k) for k in spec.varied_keys}
        run_id = _digest(varied)
        if run_id in ids:
            raise SweepError(
                f"grid: runs {ids[run_id]} and {index} resolve to the same config ({_describe(varied)}); "
                "two grid values mean the same thing — remove one"
            )
        ids[run_id] = index
        for key, value in cell_seeds[cell].items():
            values.setdefault(key, value)
        problem_key = (cell, *problem_seeds.items())
        problem = problems.get(problem_key)
        if problem is None:
            problem = problems[problem_key] = _digest([problem_text, problem_seeds])
        runs.append(Run(index, run_id, cell, overrides, values, problem))
    columns: dict[str, str] = {}
    for key in [*spec.varied_keys, "init.seed", "data.seed"]:
        columns.setdefault(key, _column_kind([r.values.get(key) for r in runs]))
    paths = [p for _, resolved, _ in cell_data for p in _data_paths(resolved)]
    data_files = {p: file_digest(p) for p in sorted(dict.fromkeys(paths))}
    return SweepPlan(spec, runs, cells, columns, data_files)


def _data_paths(resolved: Mapping[str, Any]) -> list[str]:
    """The files a resolved config reads its data from (``data.path`` and ``data.targets_path`` of a file source)."""
    data = resolved.get("data") or {}
    if data.get("source") != "file":
        return []
    return [str(Path(p).expanduser()) for p in (data.get("path"), data.get("targets_path")) if p]


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks; ``"missing"`` if it is not a readable file.

    Parameters
    ----------
    path : str or Path
    chunk : int
        Bytes read at a time (memory stays bounded for large data files).
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    except OSError:
        return "missing"
    return h.hexdigest()
