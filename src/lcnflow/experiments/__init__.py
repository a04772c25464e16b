"""Experiments: a config (TOML or dict) → data → gradient flow → certified limit → run directory.

The API other tools (``lcnflow run``, sweeps) build on::

    from lcnflow.experiments import load_config, config_from_dict, build_problem, run_experiment, execute

    cfg = load_config("exp.toml", {"architecture.filter_sizes": [3, 3]})   # file (or None: built-in) + overrides
    cfg = config_from_dict({"data": {"source": "planted"}}, {"loss.name": "pseudo_huber"})
    cfg = ExperimentConfig.model_validate(d)                                 # pydantic, raises ValidationError
    result = run_experiment(cfg, callback=None)                              # FlowResult
    run = execute(cfg); run.save("out/")                                     # + ℒ*, verdict, result.json, …
    problem = build_problem(cfg)                     # Problem: architecture, loss, data, EmpiricalRisk (immutable)
    run = execute(problem, cfg2)                     # a run of cfg2 ([init], [flow]) on that problem, data reused

* :func:`load_config` / :func:`config_from_dict` raise :class:`ConfigError` (a ``ValueError``) whose message names
  the field, the value and what would be valid; overrides are ``{"dotted.key": value}`` or ``["key=value", …]``.
* :func:`default_config` (also ``load_config()`` and ``config_from_dict()``) is the built-in default experiment:
  MNIST-1D deblurring (500 signals of length 40, 5-tap Gaussian blur, noise 0.05) with three layers of size-3
  filters (``k_v = 7``, filling) on the square loss, small random initialization, gradient flow.  It uses real
  signals, runs in about a second, satisfies every hypothesis of the convergence theorem — and its certified limit
  is a *spurious* local minimum where two layers share a root, above the function-space optimum: the theorem
  promises convergence, not global optimality.
* :data:`SOURCES` maps each ``data.source`` to its builder; :func:`make_data` builds a :class:`DataBundle`.

Layering: this package imports the lower layers (architecture, losses, risk, flow); nothing below imports it.
"""

from lcnflow.experiments.config import (
    BUILTIN_DEFAULT,
    DATA_SOURCES,
    IMAGE_NAMES,
    ArchitectureConfig,
    ConfigError,
    ExperimentConfig,
    FileData,
    GradientDescentConfig,
    GradientFlowConfig,
    ImageData,
    InitConfig,
    LossConfig,
    Mnist1dData,
    PlantedData,
    StochasticGradientDescentConfig,
    apply_overrides,
    config_from_dict,
    default_config,
    load_config,
    parse_overrides,
)
from lcnflow.experiments.runner import (
    RUN_FILES,
    Experiment,
    ExperimentRun,
    FunctionSpaceOptimum,
    Problem,
    RunSpec,
    architecture_summary,
    build_problem,
    check_data,
    execute,
    function_space_optimum,
    initial_filters,
    jsonable,
    prepare,
    run_experiment,
)
from lcnflow.experiments.sources import (
    SOURCES,
    DataBundle,
    apply_final_filter,
    gaussian_blur_filter,
    make_data,
    mnist1d_signals,
)

__all__ = [
    "BUILTIN_DEFAULT",
    "DATA_SOURCES",
    "IMAGE_NAMES",
    "RUN_FILES",
    "SOURCES",
    "ArchitectureConfig",
    "ConfigError",
    "DataBundle",
    "Experiment",
    "ExperimentConfig",
    "ExperimentRun",
    "FileData",
    "FunctionSpaceOptimum",
    "GradientDescentConfig",
    "GradientFlowConfig",
    "ImageData",
    "InitConfig",
    "LossConfig",
    "Mnist1dData",
    "PlantedData",
    "Problem",
    "RunSpec",
    "StochasticGradientDescentConfig",
    "apply_final_filter",
    "apply_overrides",
    "architecture_summary",
    "build_problem",
    "check_data",
    "config_from_dict",
    "default_config",
    "execute",
    "function_space_optimum",
    "gaussian_blur_filter",
    "initial_filters",
    "jsonable",
    "load_config",
    "make_data",
    "mnist1d_signals",
    "parse_overrides",
    "prepare",
    "run_experiment",
]
