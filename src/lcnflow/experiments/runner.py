r"""Running an experiment: config → problem → flow → certified, classified limit → files.

:func:`build_problem` builds what a config's architecture, loss and data describe (an immutable :class:`Problem`:
architecture, loss, data, risk), once for any number of runs; :meth:`RunSpec.from_config` is one run of it (``w(0)``
and the flow); :func:`prepare` builds both (an :class:`Experiment`).  :func:`run_experiment` integrates a config and
returns the :class:`~lcnflow.FlowResult`; :func:`execute` also computes the function-space optimum for comparison and
returns an :class:`ExperimentRun`, which writes a run directory (``result.json``, ``trajectory.npz``,
``config.toml``) with :meth:`ExperimentRun.save`.  ``result.json`` is a :class:`~lcnflow.record.RunRecord`
(:meth:`ExperimentRun.record`), written with its one writer, :meth:`~lcnflow.record.RunRecord.to_json_dict`.

The **function-space optimum** is ``ℒ* = min_{v ∈ R^{k_v}} ℒ(v)``, a convex problem solved by damped Newton in
``k_v`` dimensions.  When the architecture is filling, ``M = R^{k_v}`` and ``ℒ*`` is the global minimum of ``L``;
otherwise it is a lower bound.  ``L(w*) − ℒ*`` tells how far the flow's limit is from the best any network of
this architecture could do (when filling).
"""

from __future__ import annotations

import datetime
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lcnflow import __version__
from lcnflow._files import fsync_dir, stage_file
from lcnflow.analysis.certify import check_start
from lcnflow.analysis.optimum import unconstrained_optimum
from lcnflow.analysis.phases import FUNCTION_SPACE_OPTIMUM, announce
from lcnflow.dynamics.descent import run_descent
from lcnflow.dynamics.integrate import run_flow
from lcnflow.dynamics.sgd import stochastic_gradient_descent
from lcnflow.experiments.config import (
    ConfigError,
    ExperimentConfig,
    GradientFlowConfig,
    InitConfig,
    StochasticGradientDescentConfig,
)
from lcnflow.experiments.sources import DataBundle, apply_final_filter, make_data
from lcnflow.flow import CriticalPoint, FlowResult, TheoremCheck, invariants, theorem_hypotheses
from lcnflow.kernels import CompileClock
from lcnflow.model.architecture import Architecture
from lcnflow.model.condition import DataCondition
from lcnflow.model.conv import as_filters, final_filter, flatten, random_init, unflatten
from lcnflow.model.losses import Loss, get_loss
from lcnflow.model.risk import EmpiricalRisk, population_square_risk
from lcnflow.record import (
    ArchitectureSummary,
    CriticalPointSummary,
    DataConditionSummary,
    DataSummary,
    DroppedInputs,
    HypothesesSummary,
    LayerSummary,
    LossSummary,
    OptimumSummary,
    PlateauSummary,
    ResultSummary,
    RunRecord,
    SolverSummary,
    Timings,
    Verdict,
    jsonable,
)

__all__ = [
    "RUN_FILES",
    "Experiment",
    "ExperimentRun",
    "FunctionSpaceOptimum",
    "Problem",
    "RunSpec",
    "architecture_summary",
    "build_problem",
    "check_data",
    "execute",
    "function_space_optimum",
    "initial_filters",
    "jsonable",
    "prepare",
    "run_experiment",
]

#: Files of a run directory written by :meth:`ExperimentRun.save` (the report adds ``report.html``, ``figures/``).
RUN_FILES = ("result.json", "trajectory.npz", "config.toml")

#: Number of samples kept in ``trajectory.npz`` to show inputs, outputs and targets.
NUM_EXAMPLES = 3

Callback = Callable[[float, np.ndarray, float, float], "bool | None"]


def initial_filters(cfg: InitConfig, arch: Architecture) -> list[np.ndarray]:
    """``w(0)``: ``cfg.filters`` if given, else each coefficient i.i.d. ``N(0, scale²)`` from ``seed``."""
    if cfg.filters is not None:
        return as_filters(arch, cfg.filters, "init.filters")
    return random_init(arch, cfg.scale, cfg.seed)


@dataclass(frozen=True)
class Problem:
    """What a config's ``[architecture]``, ``[loss]`` and ``[data]`` describe, built and checked once: runs that
    differ only in their initialization or flow share it (its risk keeps ``G``, ``b``, the data condition and
    ``ℒ*`` once computed).

    Attributes
    ----------
    config : ExperimentConfig
        The config it was built from (its ``[init]`` and ``[flow]`` play no part).
    architecture : Architecture
    loss : Loss
    data : DataBundle
    risk : EmpiricalRisk
    notes : tuple of str
        Warnings raised while building (e.g. inputs dropped by the size rule), as text.
    build_seconds : float
    """

    config: ExperimentConfig
    architecture: Architecture
    loss: Loss
    data: DataBundle
    risk: EmpiricalRisk
    notes: tuple[str, ...] = ()
    build_seconds: float = 0.0

    def describes(self, cfg: ExperimentConfig) -> bool:
        """Whether ``cfg`` has this problem's architecture, loss and data."""
        c = self.config
        # (the runs of a sweep share their sections with the problem's config: identity first, cheaper than ==)
        return all(a is b or a == b for a, b in ((c.architecture, cfg.architecture), (c.loss, cfg.loss),
                                                 (c.data, cfg.data)))

    def run(self, spec: RunSpec, callback: Callback | None = None) -> FlowResult:
        """Integrate ``spec`` on this problem; see :func:`run_experiment`."""
        f = spec.config.flow
        init = list(spec.init)
        if isinstance(f, StochasticGradientDescentConfig):
            return stochastic_gradient_descent(self.risk, init, callback=callback, **f.options())
        if isinstance(f, GradientFlowConfig):
            return run_flow(self.risk, init, f.options(), callback=callback)
        return run_descent(self.risk, init, f.options(), callback=callback)


@dataclass(frozen=True)
class RunSpec:
    """What one run adds to a :class:`Problem`: ``w(0)`` and the ``[flow]`` method with its options.

    Attributes
    ----------
    config : ExperimentConfig
        The run's whole config (its ``[init]`` and ``[flow]``, and the name and description its record carries).
    init : tuple of ndarray
        ``w(0)``, one filter per layer.
    """

    config: ExperimentConfig
    init: tuple[np.ndarray, ...]

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, problem: Problem) -> RunSpec:
        """The run ``cfg`` describes on ``problem``: ``w(0)`` from ``[init]`` (:func:`initial_filters`), checked
        against the problem.

        Raises
        ------
        ConfigError
            If ``cfg`` describes another problem (architecture, loss or data), or asks SGD for batches larger than
            the number of samples.
        """
        if not problem.describes(cfg):
            raise ConfigError("config: its architecture, loss or data differ from the problem's; build the problem "
                              "of this config (build_problem) or change only [init] and [flow]")
        m = problem.risk.num_samples
        if isinstance(cfg.flow, StochasticGradientDescentConfig) and cfg.flow.batch_size > m:
            raise ConfigError(f"flow.batch_size: must be at most the number of samples m = {m}, "
                              f"got {cfg.flow.batch_size}")
        init = initial_filters(cfg.init, problem.architecture)
        try:
            check_start(problem.risk, flatten(init), "init.scale" if cfg.init.filters is None else "init.filters")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for w in init:
            w.setflags(write=False)
        return cls(cfg, tuple(init))


@dataclass(frozen=True)
class Experiment:
    """A problem and one run of it: everything a config describes, built and checked, before integrating.

    The attributes of the two parts are at hand here: ``config``, ``init`` (the run's), ``architecture``,
    ``loss``, ``data``, ``risk``, ``notes``, ``build_seconds`` (the problem's).

    Attributes
    ----------
    problem : Problem
    spec : RunSpec
    """

    problem: Problem
    spec: RunSpec

    @property
    def config(self) -> ExperimentConfig:
        """The run's config."""
        return self.spec.config

    @property
    def init(self) -> list[np.ndarray]:
        """``w(0)``."""
        return list(self.spec.init)

    architecture = property(lambda self: self.problem.architecture, doc="The problem's architecture.")
    loss = property(lambda self: self.problem.loss, doc="The problem's loss.")
    data = property(lambda self: self.problem.data, doc="The problem's data (a DataBundle).")
    risk = property(lambda self: self.problem.risk, doc="The problem's EmpiricalRisk.")
    build_seconds = property(lambda self: self.problem.build_seconds, doc="Seconds building the problem.")

    @property
    def notes(self) -> list[str]:
        """Warnings raised while building the problem."""
        return list(self.problem.notes)

    def run(self, callback: Callback | None = None) -> FlowResult:
        """Integrate with the ``[flow]`` section's method and options; see :func:`run_experiment`."""
        return self.problem.run(self.spec, callback)


def build_problem(cfg: ExperimentConfig) -> Problem:
    """Build the architecture, loss, data and risk of ``cfg`` (its ``[init]`` and ``[flow]`` play no part).

    Warnings raised on the way are kept as text in :attr:`Problem.notes` and re-issued.

    Raises
    ------
    ValueError
        (including :class:`~lcnflow.experiments.ConfigError`) for data that do not fit: a missing file, a wrong
        shape, NaN values, …; the message names the field.
    """
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arch = cfg.architecture.build()
        loss = cfg.loss.build()
        bundle = make_data(cfg.data, arch)
        risk = EmpiricalRisk(arch, loss, bundle.dataset)
        if bundle.source == "population":  # exact statistics replace the representative samples' ones
            risk = _population_risk(arch, loss, bundle, cfg.data.noise_std)
    notes = tuple(dict.fromkeys(str(w.message) for w in caught))
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return Problem(cfg, arch, loss, bundle, risk, notes, time.perf_counter() - start)


def prepare(cfg: ExperimentConfig) -> Experiment:
    """Build the problem of ``cfg`` (:func:`build_problem`) and its run (:meth:`RunSpec.from_config`).

    Raises
    ------
    ValueError
        (including :class:`~lcnflow.experiments.ConfigError`) for data that do not fit (the message names the
        field), or an SGD batch larger than the data.
    """
    problem = build_problem(cfg)
    return Experiment(problem, RunSpec.from_config(cfg, problem))


def _population_risk(arch: Architecture, loss: Loss, bundle: DataBundle, noise_std: float) -> EmpiricalRisk:
    if loss != get_loss("square"):
        raise ConfigError(f"loss.name: the population source gives an exact risk for the square loss only, got "
                          f"{loss.name!r}; use loss.name = \"square\" or a sampled source (planted)")
    return population_square_risk(arch, bundle.dataset, bundle.details["autocovariance"], bundle.truth, noise_std)


def run_experiment(cfg: ExperimentConfig, callback: Callback | None = None) -> FlowResult:
    """Build ``cfg``'s problem and run its flow (gradient flow or gradient descent) to a certified limit.

    Parameters
    ----------
    cfg : ExperimentConfig
    callback : callable, optional
        ``callback(t, w_flat, loss, gradient_norm)`` after each accepted step; returning ``True`` stops the run.

    Returns
    -------
    FlowResult
    """
    return prepare(cfg).run(callback)


# ---------------------------------------------------------------------------------------------------- optimum
@dataclass(frozen=True)
class FunctionSpaceOptimum:
    """``ℒ* = min_v ℒ(v)`` over all final filters ``v ∈ R^{k_v}`` (convex).

    Attributes
    ----------
    filter : ndarray
        A minimizer ``v̂`` (minimum norm for the square loss when ``H`` is rank deficient).
    value : float
        ``ℒ(v̂)``.
    gradient_norm : float
        ``‖∇ℒ(v̂)‖``.
    exact : bool or None
        ``True`` if the architecture is filling (then ``ℒ*`` is the global minimum of ``L``), ``False`` if not
        (``ℒ*`` is a lower bound), ``None`` if filling is undecided.
    """

    filter: np.ndarray
    value: float
    gradient_norm: float
    exact: bool | None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {"filter": self.filter.tolist(), "value": self.value, "gradient_norm": self.gradient_norm,
                "exact": self.exact}


def function_space_optimum(risk: EmpiricalRisk) -> FunctionSpaceOptimum:
    r"""Minimize the convex function-space risk ``ℒ(v) = (1/m) Σ ℓ(Hv − y)`` over ``v ∈ R^{k_v}``.

    Square loss: ``v̂ = G⁺ b`` (normal equations, minimum norm).  Other losses: damped Newton from the least-squares
    filter (:func:`~lcnflow.analysis.optimum.unconstrained_optimum`, cached per risk).

    Parameters
    ----------
    risk : EmpiricalRisk

    Returns
    -------
    FunctionSpaceOptimum
    """
    v, value = unconstrained_optimum(risk)
    return FunctionSpaceOptimum(
        filter=np.asarray(v).reshape(risk.arch.final_filter_shape),
        value=float(value),
        gradient_norm=float(np.linalg.norm(risk.function_space_gradient(v))),
        exact=risk.arch.is_filling,
    )


# ---------------------------------------------------------------------------------------------------- summaries
# The parts of the run record (lcnflow.record), built from the objects they describe.
def _architecture(arch: Architecture) -> ArchitectureSummary:
    layers = tuple(
        LayerSummary(layer=i + 1, filter_size=k, stride=s, input_size=arch.layer_sizes[i],
                     output_size=arch.layer_sizes[i + 1], num_params=arch.layer_num_params[i])
        for i, (k, s) in enumerate(zip(arch.filter_sizes, arch.strides, strict=True)))
    return ArchitectureSummary(
        ndim=arch.ndim,
        depth=arch.depth,
        input_size=arch.input_size,
        filter_sizes=tuple(arch.filter_sizes),
        strides=tuple(arch.strides),
        layer_sizes=tuple(arch.layer_sizes),
        layers=layers,
        output_size=arch.output_size,
        final_filter_size=arch.final_filter_size,
        final_stride=arch.final_stride,
        cumulative_strides=tuple(tuple(s) for s in arch.cumulative_strides),
        filter_shapes=tuple(tuple(s) for s in arch.filter_shapes),
        num_params=arch.num_params,
        function_space_dim=arch.function_space_dim,
        final_filter_num_params=arch.final_filter_num_params,
        filling=arch.is_filling,
        filling_reason=arch.filling_reason,
        dropped_inputs=tuple(DroppedInputs(layer=layer, count=count) for layer, count in arch.dropped_inputs()),
        channels=tuple(arch.channels),
        symmetry_dim=arch.symmetry_dim,
    )


def architecture_summary(arch: Architecture) -> dict[str, Any]:
    """JSON-ready description: sizes per layer, final filter size and stride, P, dim M, filling, dropped inputs
    (the ``architecture`` part of the run record, :class:`~lcnflow.record.ArchitectureSummary`)."""
    return _architecture(arch).to_json_dict()


def _loss(loss: Loss) -> LossSummary:
    return LossSummary(name=loss.name, params=dict(loss.params), description=loss.description, **loss.properties())


def _condition(cond: DataCondition) -> DataConditionSummary:
    return DataConditionSummary(**cond.to_dict())


def _data(exp: Experiment) -> DataSummary:
    ds = exp.data.dataset
    return DataSummary(source=exp.data.source, description=exp.data.description, num_samples=ds.num_samples,
                       input_shape=tuple(ds.inputs.shape[1:]), target_shape=tuple(ds.targets.shape[1:]),
                       details=exp.data.details, condition=_condition(exp.risk.data_condition))


def _hypotheses(check: TheoremCheck) -> HypothesesSummary:
    return HypothesesSummary(analytic_loss=check.analytic_loss, coercive_loss=check.coercive_loss,
                             data_condition=_condition(check.data_condition), covered=check.covered,
                             failures=tuple(check.failures), consequence=check.consequence)


def _critical_point(cp: CriticalPoint | None) -> CriticalPointSummary | None:
    return CriticalPointSummary(**cp.to_dict()) if cp is not None else None


def _result(res: FlowResult) -> ResultSummary:
    return ResultSummary(**{
        **res.to_dict(),
        "critical_point": _critical_point(res.critical_point),
        "hypotheses": _hypotheses(res.hypotheses) if res.hypotheses is not None else None,
        "nearest_critical_point": _critical_point(res.nearest_critical_point),
        "itinerary": tuple(PlateauSummary(**p.to_dict()) for p in res.itinerary),
    })


def check_data(exp: Experiment) -> dict[str, Any]:
    """The data-condition report and the theorem-hypotheses check of a prepared experiment (nothing integrated)."""
    return jsonable({
        "name": exp.config.name,
        "architecture": _architecture(exp.architecture).to_json_dict(),
        "loss": _loss(exp.loss).to_json_dict(),
        "data": _data(exp).to_json_dict(),
        "hypotheses": _hypotheses(theorem_hypotheses(exp.risk)).to_json_dict(),
        "notes": exp.notes,
    })


#: The verdict's fields taken as they are from :meth:`~lcnflow.FlowResult.scalars`.
VERDICT_SCALARS = ("converged", "certified", "kind", "stop_reason", "stable_set", "limit_verified", "origin",
                   "spurious", "unconstrained_optimum_reached", "on_function_space", "gap_to_best")


def _verdict(result: FlowResult, opt: FunctionSpaceOptimum) -> Verdict:
    cp = result.critical_point
    gap = result.loss - opt.value
    gap_tol = 1e-8 * max(1.0, abs(opt.value))
    if not result.converged:
        headline = f"NOT converged (uncertified endpoint): {result.message.split(';')[0]}"
    else:
        what = cp.kind.replace("_", " ") if cp is not None else "critical point (not classified)"
        headline = f"certified {what}"
        if cp is not None:
            extra = [f"origin {cp.origin}"]
            if cp.best is not None and cp.best.method != "unconstrained":  # ℒ*_M ≠ ℒ*: say where on M
                extra.insert(0, cp.on_m)
            if cp.spurious:
                extra.append("spurious")
            headline += " (" + ", ".join(extra) + ")"
    best = cp.best if cp is not None else None
    if not result.converged:
        compare = f"the run ended at L = {result.loss:.6g}; the function-space optimum is ℒ* = {opt.value:.6g}"
    elif gap <= gap_tol:
        compare = f"L(w*) = {result.loss:.6g} equals the function-space optimum ℒ* = {opt.value:.6g}"
    elif best is not None and best.method != "unconstrained":
        how = ("the best the architecture can do" if best.exact
               else f"the best found over local searches, not proven: {best.what}")
        where = (f"equals ℒ*_M = {best.value:.6g}" if cp.global_on_m
                 else f"is L − ℒ*_M = {cp.gap_to_best:.3g} above ℒ*_M = {best.value:.6g}")
        outside = " (not in M)" if best.unconstrained_in_m is False else ""
        compare = (f"L(w*) = {result.loss:.6g} {where} ({how}; {cp.on_m}), {gap:.3g} above the unconstrained "
                   f"ℒ* = {opt.value:.6g}{outside}")
    else:
        bound = {True: "the global minimum of L (filling architecture)", False: "a lower bound (not filling)",
                 None: "a lower bound (filling undecided)"}[opt.exact]
        compare = f"L(w*) = {result.loss:.6g} is {gap:.3g} above ℒ* = {opt.value:.6g}, {bound}"
    scalars = result.scalars()
    return Verdict(
        **{key: scalars[key] for key in VERDICT_SCALARS},
        nearest_critical_point=(result.nearest_critical_point.summary()
                                if result.nearest_critical_point is not None else None),
        itinerary=tuple(p.summary() for p in result.itinerary),
        degeneracies=tuple(cp.degeneracies) if cp is not None else (),
        gap_to_optimum=gap,
        best_value=(best.value if best is not None else (opt.value if cp is not None else None)),
        best_exact=(best.exact if best is not None else (True if cp is not None else None)),
        best_statement=(best.statement if best is not None else None),
        headline=headline,
        comparison=compare,
    )


@dataclass
class ExperimentRun:
    """A finished experiment: what was run, its :class:`~lcnflow.FlowResult`, and the function-space optimum.

    Attributes
    ----------
    experiment : Experiment
        The problem and the run's spec.
    result : FlowResult
    optimum : FunctionSpaceOptimum
    timings : dict
        ``build_seconds`` (the problem's), ``flow_seconds``, ``optimum_seconds`` (both without compiling),
        ``compile_seconds``: Numba compiling the kernels, or loading them from its cache, during the run and the
        optimum (:class:`~lcnflow.kernels.CompileClock`), and ``compilations``, how many functions it compiled.
    notes : list of str
        Warnings raised while building the problem and during the run, as text.
    """

    experiment: Experiment
    result: FlowResult
    optimum: FunctionSpaceOptimum
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> dict[str, Any]:
        """Converged, certified, kind, origin, spurious, gap to ``ℒ*``, and a one-line headline: the record's
        :class:`~lcnflow.record.Verdict` in its JSON form (non-finite numbers as ``None``)."""
        return _verdict(self.result, self.optimum).to_json_dict()

    def record(self) -> RunRecord:
        """The run record (the content of ``result.json``), as its reader sees it: built from the run and read back
        through :meth:`RunRecord.from_json_dict <lcnflow.record.RunRecord.from_json_dict>`, so what it holds is what
        the file holds (JSON values: tuples, ``None`` for non-finite numbers)."""
        exp, res = self.experiment, self.result
        t = self.timings
        built = RunRecord(
            lcnflow_version=__version__,
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            name=exp.config.name,
            description=exp.config.description,
            config=exp.config.to_dict(),
            architecture=_architecture(exp.architecture),
            loss=_loss(exp.loss),
            data=_data(exp),
            hypotheses=_hypotheses(theorem_hypotheses(exp.risk)),
            solver=SolverSummary(method=exp.config.flow.method, integrator=res.integrator, options=res.options),
            verdict=_verdict(res, self.optimum),
            function_space_optimum=OptimumSummary(**self.optimum.to_dict()),
            result=_result(res),
            notes=tuple(self.notes),
            timings=Timings(build_seconds=t.get("build_seconds"), flow_seconds=t.get("flow_seconds"),
                            optimum_seconds=t.get("optimum_seconds"), compile_seconds=t.get("compile_seconds"),
                            compilations=t.get("compilations")),
        )
        return RunRecord.from_json_dict(built.to_json_dict())

    def to_dict(self) -> dict[str, Any]:
        """The content of ``result.json`` (also what ``lcnflow run --json`` prints); JSON-ready:
        ``self.record().to_json_dict()``."""
        return self.record().to_json_dict()

    def arrays(self) -> dict[str, np.ndarray]:
        """The content of ``trajectory.npz``: the recorded trajectory and what the figures need."""
        exp, res = self.experiment, self.result
        arch = exp.architecture
        traj = res.trajectory
        ff = np.stack([final_filter(arch, unflatten(arch, w)).reshape(-1) for w in traj])
        inv = np.stack([invariants(arch, w) for w in traj]) if arch.depth > 1 else np.zeros((traj.shape[0], 0))
        ds = exp.data.dataset
        n = min(NUM_EXAMPLES, ds.num_samples)
        x = ds.inputs[:n]
        out = {
            "times": res.times,
            "losses": res.losses,
            "gradient_norms": res.gradient_norms,
            "trajectory": traj,
            "final_filter_trajectory": ff,
            "invariants_trajectory": inv,
            "init": flatten(exp.init),
            "limit": flatten(res.limit),
            "final_filter": res.final_filter,
            "optimum_filter": self.optimum.filter,
            "example_inputs": x,
            "example_targets": ds.targets[:n],
            "example_outputs_init": apply_final_filter(arch, x, final_filter(arch, exp.init)),
            "example_outputs_limit": apply_final_filter(arch, x, res.final_filter),
            "example_outputs_optimum": apply_final_filter(arch, x, self.optimum.filter),
        }
        if exp.data.truth is not None:
            out["true_filter"] = exp.data.truth
        if res.critical_point is not None:
            out["hessian_eigenvalues"] = res.critical_point.hessian_eigenvalues
        return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}

    def save(self, out_dir: str | Path, record: RunRecord | dict[str, Any] | None = None, report: bool = True,
             formats: tuple[str, ...] = ("png",)) -> dict[str, Path]:
        """Write ``result.json``, ``trajectory.npz``, ``config.toml`` and the report into ``out_dir`` (created).

        Parameters
        ----------
        out_dir : str or Path
        record : RunRecord or dict, optional
            The record to write (default: :meth:`record`, computed now), or its :meth:`to_dict` form; pass it to
            write exactly what was shown.
        report : bool, default True
            Also write ``report.html`` and ``figures/`` (what ``lcnflow report DIR`` would build from the files).
        formats : tuple of str, default ("png",)
            Figure formats when ``report`` is true (``("png", "svg")`` adds SVG files).

        Returns
        -------
        dict
            File name → path (``"report.html"`` included when ``report`` is true).
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / name for name in RUN_FILES}
        record = self.record() if record is None else record
        content = record.to_json_dict() if isinstance(record, RunRecord) else record
        text = json.dumps(content, indent=2, ensure_ascii=False) + "\n"
        # every file is written to a temporary name first and renamed into place only when complete; the three
        # are renamed together at the end, so a failure (a full disk) leaves the earlier files as they were
        staged: list[tuple[Path, Path]] = []
        try:
            for name, content in (
                ("trajectory.npz", lambda fh: np.savez_compressed(fh, **self.arrays())),
                ("config.toml", self.experiment.config.to_toml()),
                ("result.json", text),
            ):
                staged.append((stage_file(paths[name], content), paths[name]))
            for tmp, final in staged:
                os.replace(tmp, final)
            fsync_dir(out)
        finally:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
        if report:
            # imported here only, on request: the report loads Matplotlib, which a run without a report does
            # without (the record, lcnflow.record, loads neither Matplotlib nor the report)
            from lcnflow.report import build_report

            paths["report.html"] = build_report(out, formats)
        return paths


def execute(what: ExperimentConfig | Experiment | Problem, spec: RunSpec | ExperimentConfig | None = None, *,
            callback: Callback | None = None) -> ExperimentRun:
    """Run an experiment and compare its limit with the function-space optimum.

    Parameters
    ----------
    what : ExperimentConfig, Experiment or Problem
        A config (its problem is built, :func:`prepare`), a prepared experiment, or a problem built once and shared
        by several runs (then ``spec`` says which run).
    spec : RunSpec or ExperimentConfig, optional
        With a problem: the run (a config is turned into one with :meth:`RunSpec.from_config`).
    callback : callable, optional
        As for :func:`run_experiment`.

    Returns
    -------
    ExperimentRun

    Raises
    ------
    ValueError
        A problem without a spec, a spec with a config or an experiment, or a spec for another problem.
    """
    if isinstance(what, Problem):
        if spec is None:
            raise ValueError("spec: a problem needs the run to execute, a RunSpec or an ExperimentConfig")
        exp = Experiment(what, spec if isinstance(spec, RunSpec) else RunSpec.from_config(spec, what))
    elif spec is not None:
        raise ValueError(f"spec: only with a Problem; got a {type(what).__name__}, which already says the run")
    else:
        exp = prepare(what) if isinstance(what, ExperimentConfig) else what
    if not exp.problem.describes(exp.config):
        raise ValueError("spec: its config describes another architecture, loss or data than the problem's")
    start = time.perf_counter()
    clock = CompileClock()  # (compiling is reported apart: the first run in an environment compiles the kernels)
    with warnings.catch_warnings(record=True) as caught, clock:
        warnings.simplefilter("always")
        result = exp.run(callback)
    flow_compile = clock.seconds
    flow_seconds = time.perf_counter() - start - flow_compile
    notes = list(exp.problem.notes)
    notes.extend(n for n in dict.fromkeys(str(w.message) for w in caught) if n not in notes)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    start = time.perf_counter()
    announce(FUNCTION_SPACE_OPTIMUM)
    with clock:
        opt = function_space_optimum(exp.risk)
    timings = {"build_seconds": exp.build_seconds, "flow_seconds": flow_seconds,
               "optimum_seconds": time.perf_counter() - start - (clock.seconds - flow_compile),
               "compile_seconds": clock.seconds, "compilations": clock.compilations}
    return ExperimentRun(exp, result, opt, timings, notes)
