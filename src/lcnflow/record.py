r"""The run record: the typed schema of ``result.json`` (format ``lcnflow-run/1``), its writer and its reader.

``lcnflow run --out DIR`` (:meth:`lcnflow.experiments.ExperimentRun.save`) writes the record of a run as
``DIR/result.json``, ``lcnflow run --json`` prints the same JSON, and ``lcnflow report DIR``
(:func:`lcnflow.report.load_run`) reads it back.  :class:`RunRecord` and its parts are frozen dataclasses whose
docstrings say what each field holds.  There is one way from a record to JSON, :meth:`RunRecord.to_json_dict`, and one
way back, :meth:`RunRecord.from_json_dict` (:func:`read_record` for a file), which checks that every field is present
with its type and otherwise raises a :class:`ReportError` naming the dotted field (``result.critical_point.kind``,
``architecture.layers[1].stride``), the value and what was expected.

Conventions of the JSON, kept from the records written before this schema existed (old and new files read alike):

* the keys and their order are those of the dataclass fields, ``format`` first; sequences are JSON arrays (tuples
  here); a *size* is an ``int`` in 1D and an ``[h, w]`` array in 2D (:data:`Size`);
* a number that is not finite (a diverged run's loss, an infinite condition number) is written as ``null``: every
  ``float`` field that can meet one is typed ``float | None``;
* arrays of numbers (filters, roots, eigenvalues) are kept as the nested JSON arrays of ``ndarray.tolist()``
  (:data:`JsonArray`), and the parts whose keys depend on the run — the config, the solver's options, the data source's
  details, the Łojasiewicz fit, the verification — as JSON objects (:data:`JsonObject`);
* fields added after the format's first version (``architecture.channels``,
  ``result.critical_point.degenerate_hessian``, …; each says so in its documentation) may be missing from older
  files: they are read as ``None`` ("not recorded"), sequences as ``()``, ``architecture.channels`` as one channel
  per signal.  Keys this schema does not know are ignored, so a newer file still reads.

Where it lives.  This module imports nothing from lcnflow (the standard library and NumPy only), so it sits in the
lowest layer of the import contract (pyproject.toml: beside :mod:`lcnflow._files` and :mod:`lcnflow._signals`).  The
writer (:mod:`lcnflow.experiments`) and the readers (:mod:`lcnflow.report`, :mod:`lcnflow.cli`) all sit above it, so
none needs an upward import — the report is *below* the experiments, and the record could not live with its writer —
and importing it loads neither Matplotlib (the report) nor Numba (the dynamics): the command line checks an
``--out`` directory with it before anything heavy is imported, and ``import lcnflow.experiments`` stays free of
Matplotlib.
"""

from __future__ import annotations

import json
import math
import types
from dataclasses import dataclass, field, fields, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

import numpy as np

__all__ = [
    "FORMAT",
    "ArchitectureSummary",
    "CriticalPointSummary",
    "DataConditionSummary",
    "DataSummary",
    "DroppedInputs",
    "HypothesesSummary",
    "JsonArray",
    "JsonObject",
    "LayerSummary",
    "LossSummary",
    "OptimumSummary",
    "PlateauSummary",
    "ReportError",
    "ResultSummary",
    "RunRecord",
    "Size",
    "SolverSummary",
    "Timings",
    "Verdict",
    "is_run_record",
    "jsonable",
    "read_record",
]

#: The ``format`` tag of a run record (the first key of ``result.json``).
FORMAT = "lcnflow-run/1"

#: A signal or filter size: an ``int`` in 1D, ``(h, w)`` in 2D.
Size = int | tuple[int, ...]
#: Numbers as the nested JSON arrays of ``ndarray.tolist()`` (non-finite entries ``null``), kept as they are.
JsonArray = list[Any]
#: A JSON object whose keys depend on the run (the config, options, details), kept as it is.
JsonObject = dict[str, Any]


class ReportError(ValueError):
    """A run directory that cannot be reported on (missing, unreadable or damaged files); the message names the file
    and, for a damaged run record, the field."""


def jsonable(obj: Any) -> Any:
    """Convert NumPy scalars/arrays, tuples and complex numbers to JSON types; non-finite floats become ``None``."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, complex | np.complexfloating):
        return [jsonable(obj.real), jsonable(obj.imag)]
    return obj


#: Field metadata of a field added after the format's first version: older records lack it and read it as ``None``
#: (``_ADDED_EMPTY``: as ``()``).
_ADDED = types.MappingProxyType({"missing": None})
_ADDED_EMPTY = types.MappingProxyType({"missing": ()})


def _one_channel_each(read: dict[str, Any]) -> tuple[int, ...]:
    """``architecture.channels`` of a record written before channels existed: one per signal ``d_0 … d_N``."""
    return (1,) * (read["depth"] + 1)


# ---------------------------------------------------------------------------------------------------- reading
class _Section:
    """What every part of the record shares: its JSON form and the checked way back."""

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON form: one key per field, in field order, JSON types only (non-finite numbers as ``None``)."""
        return _write(self)

    @classmethod
    def from_json_dict(cls, d: Any, path: str | Path = "result.json", where: str = "") -> Any:
        """Read this part from its JSON form, checking every field (``where``: its dotted place in the record, e.g.
        ``"data.condition"``, which the messages name).

        Raises
        ------
        ReportError
            A field is missing or of the wrong type; the message names the file, the dotted field and the value.
        """
        return _read(cls, d, where or cls.__name__, str(path))


def _write(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in fields(value):
            v = getattr(value, f.name)
            if "omit" in f.metadata and v == f.metadata["omit"]:
                continue
            out[f.name] = _write(v)
        return out
    if isinstance(value, dict):
        return {str(k): _write(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_write(v) for v in value]
    return jsonable(value)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _kinds(tp: Any) -> tuple[str, ...]:
    """The JSON kinds a type accepts, as the error messages name them."""
    if _is_union(tp):
        return tuple(dict.fromkeys(k for a in get_args(tp) for k in _kinds(a)))
    if tp is type(None):
        return ("null",)
    if tp is Any:
        return ("any",)
    origin = get_origin(tp) or tp
    if origin in (tuple, list):
        return ("list",)
    if origin is dict or is_dataclass(tp):
        return ("dict",)
    return ({bool: "bool", int: "int", float: "number", str: "str"}[tp],)


def _accepts(tp: Any, value: Any) -> bool:
    """Whether ``value`` is of the JSON kind of ``tp`` (one level deep)."""
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    origin = get_origin(tp) or tp
    if origin in (tuple, list):
        return isinstance(value, list | tuple)
    if origin is dict or is_dataclass(tp):
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, tp)


def _wrong(tp: Any, value: Any, where: str, path: str) -> ReportError:
    return ReportError(f"report: {path}: field {where} must be {' or '.join(_kinds(tp))}, got "
                       f"{type(value).__name__} {str(value)[:40]!r}; the file is damaged")


def _read(tp: Any, value: Any, where: str, path: str) -> Any:
    if _is_union(tp):
        for option in get_args(tp):
            if _accepts(option, value):
                return _read(option, value, where, path)
        raise _wrong(tp, value, where, path)
    if not _accepts(tp, value):
        raise _wrong(tp, value, where, path)
    if is_dataclass(tp):
        return _read_section(tp, value, where, path)
    origin = get_origin(tp) or tp
    if origin is tuple:
        item = get_args(tp)[0]
        return tuple(_read(item, v, f"{where}[{i}]", path) for i, v in enumerate(value))
    if origin in (list, dict):
        return jsonable(value)  # free-form JSON: a copy (the record does not share the caller's lists)
    return value


def _read_section(cls: type, data: dict[str, Any], where: str, path: str) -> Any:
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        dotted = f"{where}.{f.name}" if where else f.name
        if f.name in data:
            values[f.name] = _read(hints[f.name], data[f.name], dotted, path)
        elif "missing" in f.metadata:
            values[f.name] = f.metadata["missing"]
        elif "missing_from" in f.metadata:
            values[f.name] = f.metadata["missing_from"](values)
        else:
            raise ReportError(f"report: {path}: field {dotted} is missing; the file is damaged or not written by "
                              "`lcnflow run` (rerun the experiment with --out)")
    return cls(**values)


# ---------------------------------------------------------------------------------------------------- architecture
@dataclass(frozen=True)
class LayerSummary(_Section):
    """One layer ``i`` of the network: the strided cross-correlation ``d_{i−1} → d_i`` by the filter ``w^{(i)}``.

    Attributes
    ----------
    layer : int
        ``i``, from 1 (the layer next to the input) to ``N``.
    filter_size : Size
        ``k_i``.
    stride : Size
        ``s_i``.
    input_size, output_size : Size
        ``d_{i−1}`` and ``d_i = ⌊(d_{i−1} − k_i)/s_i⌋ + 1`` (per axis).
    num_params : int
        Coefficients of ``w^{(i)}``: ``k_i`` (``k_h k_w`` in 2D), times ``c_i c_{i−1}`` with channels.
    """

    layer: int
    filter_size: Size
    stride: Size
    input_size: Size
    output_size: Size
    num_params: int


@dataclass(frozen=True)
class DroppedInputs(_Section):
    """Trailing inputs of a layer that no output reads (its size rule drops them).

    Attributes
    ----------
    layer : int
        ``i`` (from 1).
    count : Size
        ``d_{i−1} − (s_i (d_i − 1) + k_i)`` (per axis).
    """

    layer: int
    count: Size


@dataclass(frozen=True)
class ArchitectureSummary(_Section):
    """The network: sizes per layer, the final filter ``v = π(w)``, ``P``, ``dim M`` and whether π is filling.

    Attributes
    ----------
    ndim : int
        1 (signals) or 2 (images).
    depth : int
        ``N``, the number of layers.
    input_size : Size
        ``d_0``.
    filter_sizes, strides : tuple of Size
        ``k_1 … k_N`` and ``s_1 … s_N``.
    layer_sizes : tuple of Size
        ``d_0 … d_N``.
    layers : tuple of LayerSummary
        The same, per layer.
    output_size : Size
        ``d_N``.
    final_filter_size : Size
        ``k_v = 1 + Σ_i (k_i − 1) S_{i−1}`` (per axis).
    final_stride : Size
        ``s_v = S_N = s_1 ⋯ s_N`` (per axis).
    cumulative_strides : tuple of tuple of int
        ``S_0 … S_N`` per axis, ``S_0 = 1`` and ``S_i = s_1 ⋯ s_i``.
    filter_shapes : tuple of tuple of int
        NumPy shapes of the filters: ``(k,)`` / ``(k_h, k_w)``; with channels ``(c_i, c_{i−1}, k…)``.
    num_params : int
        ``P``, all filter coefficients (the length of the flat parameter vector ``w``).
    function_space_dim : int
        ``dim M`` of the function space ``M = π(R^P)``: ``P − (N − 1)`` for one channel.
    final_filter_num_params : int
        Coefficients of ``v``: ``k_v`` (``k_h k_w``), times ``c_N c_0`` with channels.
    filling : bool or None
        π is onto ``R^{k_v}`` (``M`` is the whole ambient space); ``None``: undecided.
    filling_reason : str
        Why, in one sentence.
    dropped_inputs : tuple of DroppedInputs
        The layers whose size rule drops trailing inputs (empty when none does).
    channels : tuple of int
        ``c_0 … c_N``, channels of the input, the hidden signals and the output.  Added with channels: read as
        ``(1,) * (depth + 1)`` from older records (one channel per signal).
    symmetry_dim : int or None
        Dimension of the symmetry group of π, ``Σ_{i=1}^{N−1} c_i²`` (``N − 1`` rescalings for one channel).
        Added later: ``None`` in older records.
    """

    ndim: int
    depth: int
    input_size: Size
    filter_sizes: tuple[Size, ...]
    strides: tuple[Size, ...]
    layer_sizes: tuple[Size, ...]
    layers: tuple[LayerSummary, ...]
    output_size: Size
    final_filter_size: Size
    final_stride: Size
    cumulative_strides: tuple[tuple[int, ...], ...]
    filter_shapes: tuple[tuple[int, ...], ...]
    num_params: int
    function_space_dim: int
    final_filter_num_params: int
    filling: bool | None
    filling_reason: str
    dropped_inputs: tuple[DroppedInputs, ...]
    channels: tuple[int, ...] = field(metadata={"missing_from": _one_channel_each})
    symmetry_dim: int | None = field(metadata=_ADDED)

    @property
    def multichannel(self) -> bool:
        """Whether some signal has more than one channel."""
        return any(c != 1 for c in self.channels)


# ---------------------------------------------------------------------------------------------------- loss, data
@dataclass(frozen=True)
class LossSummary(_Section):
    """The loss ``ℓ`` of the risk ``L(w) = (1/m) Σ_j ℓ(π(w) ⋆ x_j − y_j)`` and its declared properties.

    Attributes
    ----------
    name : str
        ``square``, ``pseudo_huber``, … (``loss.name`` of the config), or a custom loss's name.
    params : JsonObject
        Its parameters, name → value (``{"delta": 1.0}``).
    description : str
        ``ℓ(r)`` as a formula.
    analytic, convex, coercive : bool or None
        As the loss declares them (``None``: not declared); the convergence theorem needs analytic and coercive.
    growth : float or None
        The declared growth exponent ``p`` of ``ℓ(r) ~ |r|^p`` (``None``: not declared).
    """

    name: str
    params: JsonObject
    description: str
    analytic: bool | None
    convex: bool | None
    coercive: bool | None
    growth: float | None


@dataclass(frozen=True)
class DataConditionSummary(_Section):
    """The data condition of the convergence theorem: the patch operator ``H`` has full column rank ``k_v``.

    Attributes
    ----------
    satisfied : bool
        ``rank H = k_v`` (numerically).
    rank : int
        The numerical rank of ``H``.
    final_filter_size : int
        The rank needed: ``k_v`` coefficients (``k_h k_w`` in 2D; ``c_0 k_v`` with channels).
    smallest_singular_value, largest_singular_value : float or None
        ``σ_min(H)`` and ``σ_max(H)``.
    condition_number : float or None
        ``σ_max / σ_min``; ``None`` when infinite (``σ_min = 0``).
    inputs_full_row_rank : bool
        The classical, stronger condition ``rank X = d_0``.
    inputs_rank : int
        ``rank X`` of the ``d_0 × m`` input matrix.
    input_dim : int
        ``d_0`` (counted over all axes and channels).
    num_equations : int
        Rows of ``H``: ``m · d_N``.
    explanation : str
        What holds or fails, what it means for convergence, how to fix it.
    """

    satisfied: bool
    rank: int
    final_filter_size: int
    smallest_singular_value: float | None
    largest_singular_value: float | None
    condition_number: float | None
    inputs_full_row_rank: bool
    inputs_rank: int
    input_dim: int
    num_equations: int
    explanation: str


@dataclass(frozen=True)
class DataSummary(_Section):
    """The data set ``(x_j, y_j)_{j=1}^m`` the risk averages over.

    Attributes
    ----------
    source : str
        ``data.source`` of the config (``planted``, ``mnist1d``, ``file``, ``image``, ``population``, …).
    description : str
        What the data are, in words.
    num_samples : int
        ``m``.
    input_shape, target_shape : tuple of int
        Shape of one input ``x_j`` and one target ``y_j`` (channels first when there are channels).
    details : JsonObject
        What the source adds (a planted filter, noise, skipped files, …); its keys depend on the source.
    condition : DataConditionSummary
        The data condition ``rank H = k_v``.
    """

    source: str
    description: str
    num_samples: int
    input_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    details: JsonObject
    condition: DataConditionSummary


@dataclass(frozen=True)
class HypothesesSummary(_Section):
    """Which hypotheses of the convergence theorem hold: analytic and coercive loss, ``rank H = k_v``.

    Attributes
    ----------
    analytic_loss, coercive_loss : bool or None
        As declared by the loss (``None``: not declared).
    data_condition : DataConditionSummary
    covered : bool
        All hold: every gradient-flow trajectory is bounded and converges to one critical point.
    failures : tuple of str
        One sentence per hypothesis that fails or is unknown.
    consequence : str
        What follows, in one sentence.
    """

    analytic_loss: bool | None
    coercive_loss: bool | None
    data_condition: DataConditionSummary
    covered: bool
    failures: tuple[str, ...]
    consequence: str


@dataclass(frozen=True)
class SolverSummary(_Section):
    """What integrated the run.

    Attributes
    ----------
    method : str
        ``gradient_flow``, ``gradient_descent`` or ``sgd`` (``flow.method`` of the config).
    integrator : str
        The integrator or iteration actually used, in words (``"Rosenbrock Rodas4 (order 4, L-stable, exact
        Hessian), compiled"``, ``"gradient descent, fixed step η = 0.05"``).
    options : JsonObject
        The options the run used (tolerances, limits; they depend on the method).
    """

    method: str
    integrator: str
    options: JsonObject


# ---------------------------------------------------------------------------------------------------- verdict
@dataclass(frozen=True)
class Verdict(_Section):
    """Where the run ended, in words and flags: converged, certified, the limit's kind and origin, and how ``L(w*)``
    compares with the function-space optimum ``ℒ*``.

    Its fields up to ``gap_to_best`` are those of the result (:class:`ResultSummary`, the same values).

    Attributes
    ----------
    converged, certified : bool
        The run ended at a certified limit (polished ``‖∇L‖ ≤ certify_tol · S``).
    kind : str or None
        ``global_minimum``, ``local_minimum``, ``strict_saddle``, ``degenerate``, ``certified (not classified)`` or
        ``uncertified_endpoint``.
    stop_reason : str or None
        Why the run stopped (``minimum``, ``stable_saddle``, ``t_max``, ``max_steps``, ``blowup``, …).  Added later.
    stable_set : str or None
        With ``stop_reason = stable_saddle``: why the start lies on the saddle's stable set.  Added later.
    limit_verified : bool or None
        With ``flow.verify``: the same limit at 100× tighter tolerances.  Added later.
    origin : str or None
        How the limit arises: ``global``, ``pure`` or ``rank_deficient`` (classified limits).
    spurious : bool or None
        A rank-deficient limit that is not critical on the function space ``M``.
    unconstrained_optimum_reached : bool or None
        ``ℒ(v*) = ℒ*`` (``∇ℒ(v*) = 0``).  Added later.
    on_function_space : str or None
        ``global``, ``local`` or ``undecided`` on ``M``.  Added later.
    gap_to_best : float or None
        ``L(w*) − ℒ*_M``.  Added later.
    nearest_critical_point : str or None
        For an uncertified endpoint: the nearest critical point the run found, in words (not the limit).  Added
        later.
    itinerary : tuple of str
        The plateaus the run crossed, one line each.  Added later (``()`` in older records).
    degeneracies : tuple of str
        Named causes of rank deficiency at the limit (zero filter, shared or repeated roots).
    gap_to_optimum : float or None
        ``L(w*) − ℒ*`` against the unconstrained function-space optimum.
    best_value : float or None
        ``ℒ*_M``, the best value on the function space, as far as known.  Added later.
    best_exact : bool or None
        Whether ``best_value`` is proven to be the minimum over ``M``.  Added later.
    best_statement : str or None
        How ``best_value`` was found.  Added later.
    headline : str
        The verdict in one line (``"certified global minimum (origin global)"``).
    comparison : str
        ``L(w*)`` against ``ℒ*`` (and ``ℒ*_M``), in one sentence.
    """

    converged: bool
    certified: bool
    kind: str | None
    stop_reason: str | None = field(metadata=_ADDED)
    stable_set: str | None = field(metadata=_ADDED)
    limit_verified: bool | None = field(metadata=_ADDED)
    origin: str | None = field()
    spurious: bool | None = field()
    unconstrained_optimum_reached: bool | None = field(metadata=_ADDED)
    on_function_space: str | None = field(metadata=_ADDED)
    gap_to_best: float | None = field(metadata=_ADDED)
    nearest_critical_point: str | None = field(metadata=_ADDED)
    itinerary: tuple[str, ...] = field(metadata=_ADDED_EMPTY)
    degeneracies: tuple[str, ...] = field()
    gap_to_optimum: float | None = field()
    best_value: float | None = field(metadata=_ADDED)
    best_exact: bool | None = field(metadata=_ADDED)
    best_statement: str | None = field(metadata=_ADDED)
    headline: str = field()
    comparison: str = field()


@dataclass(frozen=True)
class OptimumSummary(_Section):
    """The function-space optimum ``ℒ* = min_{v ∈ R^{k_v}} ℒ(v)`` (convex), against which the limit is compared.

    Attributes
    ----------
    filter : JsonArray
        A minimizer ``v̂`` (minimum norm for the square loss), shaped as the final filter.
    value : float or None
        ``ℒ* = ℒ(v̂)``: the global minimum of ``L`` when the architecture is filling, a lower bound otherwise.
    gradient_norm : float or None
        ``‖∇ℒ(v̂)‖``.
    exact : bool or None
        ``True``: filling, ``ℒ*`` is the minimum of ``L``; ``False``: a lower bound; ``None``: filling undecided.
    """

    filter: JsonArray
    value: float | None
    gradient_norm: float | None
    exact: bool | None


# ---------------------------------------------------------------------------------------------------- result
@dataclass(frozen=True)
class CriticalPointSummary(_Section):
    """The classification of a critical point ``w*`` of ``L`` (:class:`lcnflow.CriticalPoint`).

    Attributes
    ----------
    kind : str
        ``global_minimum``, ``local_minimum``, ``strict_saddle``, ``degenerate`` or ``not_critical``.
    origin : str
        ``global``, ``pure`` (``dπ`` has full rank and ``∇ℒ(v*) = 0`` on ``M``) or ``rank_deficient``.
    spurious : bool or None
        Rank deficient and not critical on ``M`` (``None``: not decided).
    spurious_reason : str
        Why, in words.
    hessian_eigenvalues : JsonArray
        Eigenvalues of ``∇²L(w*)`` on the complement of the symmetry directions, ascending.
    symmetry_dimension : int
        Dimension of the symmetry directions (the fibre of π) left out.
    dpi_rank : int
        ``rank dπ(w*)``.
    function_space_dim : int
        ``dim M`` (full rank of ``dπ``).
    gradient_norm : float or None
        ``‖∇L(w*)‖``.
    function_space_gradient_norm : float or None
        ``‖∇ℒ(v*)‖`` at ``v* = π(w*)``.
    degeneracies : tuple of str
        Named causes of rank deficiency (zero filter, shared or repeated roots).
    layer_roots : JsonArray
        1D: per layer, the roots of ``p_{w^{(i)}}(t^{S_{i−1}})`` as ``[re, im]`` pairs (empty in 2D).
    final_filter_roots : JsonArray
        1D: the roots of ``p_v`` as ``[re, im]`` pairs.
    shared_roots : JsonArray
        1D: ``[i, l, re, im]`` for layers ``i < l`` whose polynomials share the root ``re + i·im``.
    repeated_roots : JsonArray
        1D: repeated roots of ``p_v``, ``[re, im]`` pairs.
    not_a_minimum : bool or None
        Degenerate points: ``True`` when ``L`` decreases along a null direction (higher-order saddle).
    unconstrained_optimum_reached : bool or None
        ``ℒ(v*) = ℒ*`` within ``value_tolerance``.  Added later.
    global_on_m : bool or None
        ``L(w*) = ℒ*_M`` (``None``: matched a best-found bound, not proven).  Added later.
    gap_to_best : float or None
        ``L(w*) − ℒ*_M``.  Added later.
    best_value : float or None
        ``ℒ*_M`` (``None`` when the unconstrained optimum was reached).  Added later.
    best_exact : bool or None
        Whether ``best_value`` is proven.  Added later.
    best_statement : str or None
        How ``best_value`` was found.  Added later.
    value_tolerance : float or None
        ``τ``: values within it count as equal.  Added later.
    index : int or None
        Number of negative Hessian eigenvalues on the complement.  Added later.
    undecided : str or None
        What was left undecided because the time given ran out (``""``: nothing).  Added later.
    degenerate_hessian : bool or None
        The Hessian is singular beyond the symmetry directions (or not steady on the scale of the Newton step):
        ``‖∇L(w*)‖`` does not bound the distance to the limit.  Added later.
    newton_distance : float or None
        ``‖(∇²L)⁺∇L‖`` relative to ``‖w*‖``: how far the limit is estimated to be (``None`` where the Hessian is not
        steady, and at saddles).  Added later.
    """

    kind: str
    origin: str
    spurious: bool | None
    spurious_reason: str
    hessian_eigenvalues: JsonArray
    symmetry_dimension: int
    dpi_rank: int
    function_space_dim: int
    gradient_norm: float | None
    function_space_gradient_norm: float | None
    degeneracies: tuple[str, ...]
    layer_roots: JsonArray
    final_filter_roots: JsonArray
    shared_roots: JsonArray
    repeated_roots: JsonArray
    not_a_minimum: bool | None
    unconstrained_optimum_reached: bool | None = field(metadata=_ADDED)
    global_on_m: bool | None = field(metadata=_ADDED)
    gap_to_best: float | None = field(metadata=_ADDED)
    best_value: float | None = field(metadata=_ADDED)
    best_exact: bool | None = field(metadata=_ADDED)
    best_statement: str | None = field(metadata=_ADDED)
    value_tolerance: float | None = field(metadata=_ADDED)
    index: int | None = field(metadata=_ADDED)
    undecided: str | None = field(metadata=_ADDED)
    degenerate_hessian: bool | None = field(metadata=_ADDED)
    newton_distance: float | None = field(metadata=_ADDED)


@dataclass(frozen=True)
class PlateauSummary(_Section):
    """A plateau the run crossed: a stretch where ``L`` stayed nearly level near a critical point.

    Attributes
    ----------
    t_enter, t_leave : float or None
        Flow times at which the run entered and left it.
    loss : float or None
        ``L`` on the plateau.
    kind : str
        Kind of the nearby critical point (``higher_order_saddle`` for a degenerate point along whose null
        directions ``L`` decreases), or ``unidentified``.
    index : int or None
        Negative Hessian eigenvalues there.
    dpi_rank : int or None
        ``rank dπ`` there.
    degeneracies : tuple of str
        Named causes of rank deficiency there.
    distance : float or None
        How far the critical point lies from the run's state on the plateau.
    gradient_norm : float or None
        ``‖∇L‖`` at the critical point (at the state when none was found).
    note : str
        How the critical point was found.
    point : JsonArray or None
        The critical point (flat parameters), ``None`` when none was found.
    """

    t_enter: float | None
    t_leave: float | None
    loss: float | None
    kind: str
    index: int | None
    dpi_rank: int | None
    degeneracies: tuple[str, ...]
    distance: float | None
    gradient_norm: float | None
    note: str
    point: JsonArray | None


@dataclass(frozen=True)
class ResultSummary(_Section):
    """The run's result (:meth:`lcnflow.FlowResult.to_dict`): its flat fields
    (:data:`lcnflow.dynamics.result.SCALAR_FIELDS`, in that order), then the limit, its classification and the
    certificate's details.

    Any flat field may be ``None`` where it does not apply; a non-finite number is ``None`` too.

    Attributes
    ----------
    method : str
        ``gradient_flow``, ``gradient_descent`` or ``sgd`` (records written before the methods were named hold the
        integrator's description here).
    integrator : str or None
        The integrator or iteration used, in words.  Added later.
    converged, certified : bool
        The run ended at a certified limit.
    kind : str or None
        As :attr:`Verdict.kind`.  Added later.
    stop_reason, stable_set : str or None
        Why the run stopped; for a stable saddle why the start is on its stable set.  Added later.
    origin : str or None
        ``global``, ``pure`` or ``rank_deficient``.  Added later.
    spurious, unconstrained_optimum_reached : bool or None
        As in :class:`CriticalPointSummary`.  Added later.
    on_function_space : str or None
        ``global``, ``local`` or ``undecided`` on ``M``.  Added later.
    gap_to_best : float or None
        ``L(w*) − ℒ*_M``.  Added later.
    degenerate_hessian : bool or None
        As in :class:`CriticalPointSummary`.  Added later.
    loss : float or None
        ``L(w*)`` (``None``: not finite, the run diverged).
    gradient_norm : float or None
        ``‖∇L(w*)‖`` after polishing (the certificate's number).
    flow_gradient_norm : float or None
        ``‖∇L‖`` where the run itself stopped, before polishing.
    polish_distance : float or None
        ``‖w* − w(t_final)‖``, how far Newton polishing moved.
    polish_accepted : bool
        Whether polishing was accepted.
    t_final : float
        Flow time reached (gradient descent: ``Σ η``).
    num_steps, num_gradient_evaluations, num_hessian_evaluations : int
    num_candidates : int or None
        States at which the run tried to stop.  Added later.
    num_plateaus : int or None
        Plateaus crossed.  Added later.
    first_escape_time : float or None
        When the first plateau was left.  Added later.
    invariant_drift : float or None
        ``max_t max_i |δ_i(t) − δ_i(0)| / max(‖w(0)‖², ‖w(t)‖²)`` of the conserved
        ``δ_i = ‖w^{(i+1)}‖² − ‖w^{(i)}‖²``: zero for the exact flow.
    arc_length : float or None
        ``Σ ‖w_{n+1} − w_n‖`` over accepted steps.
    lojasiewicz_exponent : float or None
        The fitted ``θ`` of ``|L(w) − L(w*)|^θ ≤ C ‖∇L(w)‖`` (``None``: no fit).
    nearest_distance : float or None
        Uncertified endpoint: distance to the nearest critical point found.  Added later.
    limit_verified : bool or None
        With ``flow.verify``: the same limit at 100× tighter tolerances.  Added later.
    wall_time : float or None
        Seconds, including polishing and classification.
    message : str
        Why the run stopped, and the certificate's outcome.
    limit : JsonArray
        ``w*`` (or the uncertified endpoint), one nested array per layer.
    final_filter : JsonArray
        ``v* = π(w*)``.
    polish_message : str
        What polishing did.
    invariants : JsonArray
        ``δ_i`` at the start.
    lojasiewicz_fit : JsonObject
        How ``θ`` was fitted.
    critical_point : CriticalPointSummary or None
        The certified limit's classification (``None``: uncertified, or not classified).
    hypotheses : HypothesesSummary or None
        The convergence theorem's hypotheses for the risk.
    options : JsonObject
        The options the run used.
    nearest_critical_point : CriticalPointSummary or None
        Uncertified endpoint: the nearest critical point found (not the limit).  Added later.
    itinerary : tuple of PlateauSummary
        The plateaus the run crossed.  Added later (``()`` in older records).
    verification : JsonObject or None
        What the verification compared.  Added later.
    """

    method: str
    integrator: str | None = field(metadata=_ADDED)
    converged: bool = field()
    certified: bool = field()
    kind: str | None = field(metadata=_ADDED)
    stop_reason: str | None = field(metadata=_ADDED)
    stable_set: str | None = field(metadata=_ADDED)
    origin: str | None = field(metadata=_ADDED)
    spurious: bool | None = field(metadata=_ADDED)
    unconstrained_optimum_reached: bool | None = field(metadata=_ADDED)
    on_function_space: str | None = field(metadata=_ADDED)
    gap_to_best: float | None = field(metadata=_ADDED)
    degenerate_hessian: bool | None = field(metadata=_ADDED)
    loss: float | None = field()
    gradient_norm: float | None = field()
    flow_gradient_norm: float | None = field()
    polish_distance: float | None = field()
    polish_accepted: bool = field()
    t_final: float = field()
    num_steps: int = field()
    num_gradient_evaluations: int = field()
    num_hessian_evaluations: int = field()
    num_candidates: int | None = field(metadata=_ADDED)
    num_plateaus: int | None = field(metadata=_ADDED)
    first_escape_time: float | None = field(metadata=_ADDED)
    invariant_drift: float | None = field()
    arc_length: float | None = field()
    lojasiewicz_exponent: float | None = field()
    nearest_distance: float | None = field(metadata=_ADDED)
    limit_verified: bool | None = field(metadata=_ADDED)
    wall_time: float | None = field()
    message: str = field()
    limit: JsonArray = field()
    final_filter: JsonArray = field()
    polish_message: str = field()
    invariants: JsonArray = field()
    lojasiewicz_fit: JsonObject = field()
    critical_point: CriticalPointSummary | None = field()
    hypotheses: HypothesesSummary | None = field()
    options: JsonObject = field()
    nearest_critical_point: CriticalPointSummary | None = field(metadata=_ADDED)
    itinerary: tuple[PlateauSummary, ...] = field(metadata=_ADDED_EMPTY)
    verification: JsonObject | None = field(metadata=_ADDED)


@dataclass(frozen=True)
class Timings(_Section):
    """Where the run's time went, in seconds.

    Attributes
    ----------
    build_seconds : float or None
        Building the problem (data, risk statistics).
    flow_seconds : float or None
        The run, without compiling.
    optimum_seconds : float or None
        The function-space optimum, without compiling.
    compile_seconds : float or None
        Numba compiling the kernels, or loading them from its cache.  Added later.
    compilations : int or None
        How many functions were compiled.  Added later.
    compiled_in_background : bool, default False
        The run went on the NumPy path while the compiled code was built in the background (``lcnflow run``'s
        first run in an environment).  Written only when true.
    """

    build_seconds: float | None
    flow_seconds: float | None
    optimum_seconds: float | None
    compile_seconds: float | None = field(metadata=_ADDED)
    compilations: int | None = field(metadata=_ADDED)
    compiled_in_background: bool = field(default=False, metadata={"missing": False, "omit": False})


# ---------------------------------------------------------------------------------------------------- the record
@dataclass(frozen=True)
class RunRecord(_Section):
    """The record of one run: the content of ``result.json`` (format :data:`FORMAT`).

    Attributes
    ----------
    lcnflow_version : str
        The version that wrote it.
    created : str
        When, ISO 8601 in UTC to the second (``2026-12-06T11:37:15+00:00``).
    name, description : str
        The config's ``name`` and ``description``.
    config : JsonObject
        The fully resolved config (what ``config.toml`` beside it holds).
    architecture : ArchitectureSummary
    loss : LossSummary
    data : DataSummary
    hypotheses : HypothesesSummary
        The convergence theorem's hypotheses for this loss, data and architecture.
    solver : SolverSummary
    verdict : Verdict
    function_space_optimum : OptimumSummary
    result : ResultSummary
    notes : tuple of str
        Warnings raised while building the problem and during the run.
    timings : Timings
    """

    #: The ``format`` tag every record is written with and read back only with.
    FORMAT: ClassVar[str] = FORMAT

    lcnflow_version: str
    created: str
    name: str
    description: str
    config: JsonObject
    architecture: ArchitectureSummary
    loss: LossSummary
    data: DataSummary
    hypotheses: HypothesesSummary
    solver: SolverSummary
    verdict: Verdict
    function_space_optimum: OptimumSummary
    result: ResultSummary
    notes: tuple[str, ...]
    timings: Timings

    def to_json_dict(self) -> dict[str, Any]:
        """The content of ``result.json``: ``format`` and then every field, JSON types only (the one writer)."""
        return {"format": FORMAT, **_write(self)}

    @classmethod
    def from_json_dict(cls, d: Any, path: str | Path = "result.json") -> RunRecord:  # type: ignore[override]
        """Read a record from its JSON form (the one reader), checking its format and every field.

        Parameters
        ----------
        d : Any
            The parsed JSON.
        path : str or Path
            The file it came from, for the messages.

        Raises
        ------
        ReportError
            Not a run record (no ``format`` of :data:`FORMAT`), or a field missing or of the wrong type; the message
            names the file, the dotted field, the value and what was expected.
        """
        if not is_run_record(d):
            raise ReportError(f"report: {path} is not an lcnflow run record (format {FORMAT})")
        return _read_section(cls, d, "", str(path))


def is_run_record(d: Any) -> bool:
    """Whether parsed JSON is tagged as a run record (``format`` :data:`FORMAT`; its fields are not checked)."""
    return isinstance(d, dict) and d.get("format") == FORMAT


def read_record(path: str | Path) -> RunRecord:
    """Read and check the run record in the file ``path`` (a ``result.json``).

    Raises
    ------
    ReportError
        The file cannot be read or parsed, is not a run record, or a field is missing or of the wrong type.
    """
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"report: cannot read {path}: {exc}") from None
    return RunRecord.from_json_dict(d, path)
