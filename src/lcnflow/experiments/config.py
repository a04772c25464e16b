"""Experiment configuration: one TOML file (or dict) that fully describes a run.

A configuration has five sections, each with defaults for every field::

    [architecture]  input_size, filter_sizes, strides, channels
    [loss]          name and the loss's parameters (e.g. delta for pseudo_huber)
    [data]          source (planted, file, mnist1d, image), its parameters, seed
    [init]          scale, seed, optional explicit filters
    [flow]          method (gradient_flow or gradient_descent) and its options

plus two top-level strings, ``name`` and ``description``.  The field defaults are the built-in default experiment
(MNIST-1D deblurring with a three-layer filling network, see :mod:`lcnflow.experiments`); :func:`default_config`
returns it with its name and description.

Configs are built by :func:`load_config` (a TOML file plus ``dotted.key=value`` overrides) or by
:func:`config_from_dict` (a base dict plus overrides).  Every problem is reported as a :class:`ConfigError` whose
message names the field, the offending value and what would be valid, e.g. ``loss.delta: must be > 0, got -1``.
:meth:`ExperimentConfig.to_toml` writes the fully resolved config back, with a comment per key.
"""

from __future__ import annotations

import copy
import math
import re
import tomllib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lcnflow.dynamics.options import (
    DEFAULT_EPOCHS,
    INTEGRATORS,
    SAMPLINGS,
    SCHEDULES,
    DescentOptions,
    FlowOptions,
    SGDOptions,
    StopOptions,
)
from lcnflow.model.architecture import Architecture, SizeRuleWarning
from lcnflow.model.conv import as_filters
from lcnflow.model.losses import LOSS_NAMES, LOSS_PARAMETERS, Loss, get_loss

__all__ = [
    "BUILTIN_DEFAULT",
    "COLOUR_IMAGE_NAMES",
    "DATA_SOURCES",
    "GRAY_IMAGE_NAMES",
    "IMAGE_NAMES",
    "ArchitectureConfig",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "FileData",
    "FlowConfig",
    "GradientDescentConfig",
    "GradientFlowConfig",
    "ImageData",
    "InitConfig",
    "LossConfig",
    "Mnist1dData",
    "PlantedData",
    "StochasticGradientDescentConfig",
    "apply_overrides",
    "config_from_dict",
    "default_config",
    "load_config",
    "parse_overrides",
]

#: Grayscale test images bundled with scikit-image that the ``image`` source accepts.
GRAY_IMAGE_NAMES = ("camera", "moon", "text", "coins", "page", "brick", "grass", "gravel", "clock")
#: Colour (RGB) test images bundled with scikit-image: read in colour with ``architecture.channels`` ``c_0 = c_N = 3``,
#: as luminance with one channel.
COLOUR_IMAGE_NAMES = ("astronaut", "coffee", "chelsea", "rocket")
#: Every bundled image name the ``image`` source accepts.
IMAGE_NAMES = GRAY_IMAGE_NAMES + COLOUR_IMAGE_NAMES


class ConfigError(ValueError):
    """Bad experiment input.  The message names the field, the value and what would be valid."""


class _Section(BaseModel):
    """Strict, closed section: unknown keys and wrong types are errors (ints are accepted for floats)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


# ---------------------------------------------------------------------------------------------------- architecture
class ArchitectureConfig(_Section):
    """``[architecture]``: the LCN.  2D networks give ``input_size = [h, w]`` and ``[k_h, k_w]`` per layer."""

    input_size: int | list[int] = Field(40, description="d_0: signal length, or [height, width] for images")
    filter_sizes: list[int | list[int]] = Field(
        default_factory=lambda: [3, 3, 3], description="k_1 … k_N: one filter size per layer ([k_h, k_w] in 2D)"
    )
    strides: list[int | list[int]] = Field(
        default_factory=list, description="s_1 … s_N: one stride per layer (default all 1)"
    )
    channels: list[int] = Field(
        default_factory=list,
        description="c_0 … c_N: channels of the input, of each hidden signal and of the output (default all 1)",
    )

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or set(data) - set(cls.model_fields):
            return data  # let pydantic report the unknown key or the non-table
        defaults = {"input_size": 40, "filter_sizes": [3, 3, 3]}
        strides = data.get("strides")
        channels = data.get("channels")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SizeRuleWarning)
            arch = Architecture(
                data.get("input_size", defaults["input_size"]),
                data.get("filter_sizes", defaults["filter_sizes"]),
                strides if strides else None,
                channels=channels if channels else None,
            )
        out = arch.to_dict()
        if channels:  # kept as given, also all ones (a sweep over widths shows [1, 1, 1] for width 1)
            out["channels"] = list(arch.channels)
        return out

    def build(self) -> Architecture:
        """The :class:`~lcnflow.Architecture` (emits :class:`~lcnflow.SizeRuleWarning` if inputs are dropped)."""
        return Architecture(self.input_size, self.filter_sizes, self.strides, channels=self.channels or None)


# ---------------------------------------------------------------------------------------------------- loss
class LossConfig(BaseModel):
    """``[loss]``: ``name`` (one of :data:`~lcnflow.LOSS_NAMES`) and that loss's parameters as further keys.

    Missing parameters take the loss's defaults; the resolved config lists them all.
    """

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    name: str = Field("square", description=f"loss: {', '.join(LOSS_NAMES)}")

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        params = dict(data)
        name = params.pop("name", "square")
        loss = get_loss(name, **params)  # ValueError naming loss.<field>, the value and the valid range
        return {"name": name, **loss.params}

    @property
    def params(self) -> dict[str, float]:
        """The loss parameters (all of them, defaults filled in)."""
        return dict(self.model_extra or {})

    def build(self) -> Loss:
        """The :class:`~lcnflow.Loss`."""
        return get_loss(self.name, **self.params)


# ---------------------------------------------------------------------------------------------------- data
_SOURCE_HELP = ("data source: planted, file, mnist1d (real signals), image (real images; needs lcnflow[images]), "
                "population (exact infinite-data square loss)")
_METHOD_HELP = "gradient_flow (integrated with error control), gradient_descent or sgd (minibatch SGD)"


class _DataBase(_Section):
    seed: int = Field(0, ge=0, description="seed of everything random in the data (samples, noise, planted truth)")


def _odd(value: int) -> int:
    if value < 1 or value % 2 == 0:
        raise ValueError(f"must be an odd integer ≥ 1 (the blur is centred), got {value}")
    return value


class PlantedData(_DataBase):
    """``source = "planted"``: synthetic inputs, targets from a planted filter or LCN plus noise.

    Inputs are i.i.d. standard Gaussian or Student-t entries.  The planted final filter ``v°`` is Gaussian with
    variance ``1/k_v`` (``target = "filter"``: any filter, possibly outside the function space) or ``π(w°)`` of
    planted layers with variance ``1/k_i`` (``target = "lcn"``: always in the function space).  Targets are
    ``Π(v°) x + ε`` with noise ``ε`` (scale ``noise_std``):

    * ``gaussian``: ``N(0, σ²)``;  ``laplace``: Laplace with standard deviation σ;
    * ``student_t``: ``σ · t_ν`` with ``ν = noise_df`` (heavy tails; infinite variance for ν ≤ 2);
    * ``outliers``: ``N(0, σ²)`` everywhere plus ``N(0, outlier_scale²)`` on a random ``outlier_fraction`` of
      the target entries (gross errors — what robust losses are for).
    """

    source: Literal["planted"] = Field("planted", description=_SOURCE_HELP)
    num_samples: int = Field(200, ge=1, description="m: number of samples")
    inputs: Literal["gaussian", "student_t"] = Field("gaussian", description="input entries: gaussian or student_t")
    input_df: float = Field(3.0, gt=0, description="degrees of freedom of Student-t inputs")
    target: Literal["filter", "lcn"] = Field("lcn", description="planted truth: a final filter or an LCN")
    noise: Literal["gaussian", "laplace", "student_t", "outliers"] = Field(
        "gaussian", description="target noise: gaussian, laplace, student_t or outliers"
    )
    noise_std: float = Field(0.1, ge=0, description="noise scale σ")
    noise_df: float = Field(3.0, gt=0, description="degrees of freedom of Student-t noise")
    outlier_fraction: float = Field(0.05, ge=0, le=1, description="fraction of target entries hit by outliers")
    outlier_scale: float = Field(10.0, ge=0, description="standard deviation of the outliers")


class FileData(_DataBase):
    """``source = "file"``: arrays or signals from disk.

    ``path`` is an ``.npz`` archive with arrays ``inputs`` and ``targets`` (names set by ``inputs_key`` and
    ``targets_key``), or an ``.npy`` file of inputs with ``targets_path`` the ``.npy`` file of targets.  Relative
    paths are relative to the config file (to the working directory for overrides and dicts).  Inputs have shape
    ``(m, d_0)`` or ``(m, h, w)``, targets ``(m, d_N)`` or ``(m, h_N, w_N)`` (with channels ``(m, c_0, …)`` and
    ``(m, c_N, …)``); all values finite.  ``path`` and ``targets_path`` may also be ``.csv`` or ``.wav`` signals,
    read by :mod:`lcnflow.experiments.readers` (one channel per WAV channel or CSV column where
    ``architecture.channels`` has several).
    """

    source: Literal["file"] = Field("file", description=_SOURCE_HELP)
    path: str = Field("data.npz", description=".npz with inputs and targets, or .npy/.csv/.wav of inputs")
    targets_path: str = Field("", description=".npy/.csv/.wav of targets when path is not an .npz")
    inputs_key: str = Field("inputs", description="array name of the inputs in the .npz")
    targets_key: str = Field("targets", description="array name of the targets in the .npz")


class Mnist1dData(_DataBase):
    """``source = "mnist1d"``: 1D deblurring/denoising of MNIST-1D signals.

    Clean signals of length ``d_0 + blur_size − 1`` are generated procedurally by the ``mnist1d`` package (no
    download).  Inputs are the clean signals correlated with a centred Gaussian blur (``blur_size`` taps, width
    ``blur_sigma``; valid mode, so no boundary effects) plus ``N(0, noise_std²)``; targets are the clean signal at
    the sample each output sees the centre of: ``y_a = c[a·s_v + (k_v − 1)//2 + (blur_size − 1)//2]``.
    """

    source: Literal["mnist1d"] = Field("mnist1d", description=_SOURCE_HELP)
    num_samples: int = Field(500, ge=1, description="m: number of signals")
    blur_sigma: float = Field(1.0, gt=0, description="width of the Gaussian blur, in samples")
    blur_size: int = Field(5, description="number of taps of the blur (odd)")
    noise_std: float = Field(0.05, ge=0, description="standard deviation of the input noise")

    @field_validator("blur_size")
    @classmethod
    def _check_blur(cls, value: int) -> int:
        return _odd(value)


class ImageData(_DataBase):
    """``source = "image"``: 2D deblurring of patches of an image bundled with scikit-image or of own photographs.

    Patches of size ``d_0 + blur_size − 1`` (per axis) are cut at random positions of the image (scaled to
    ``[0, 1]``), blurred by a separable centred Gaussian (valid mode) and corrupted by ``N(0, noise_std²)``; the
    targets are the clean patches at the pixels each output sees the centre of.  With ``architecture.channels``
    ``c_0 = c_N = 1`` images are grey (colour reduced to luminance); with ``c_0 = c_N = 3`` colour images are read
    as RGB, each channel blurred alike, then mixed by ``(1 − channel_mix)·I + channel_mix·J/3`` (``J`` all ones:
    colour cross-talk), and the targets are the clean patches in colour.  Needs ``pip install "lcnflow[images]"``
    (scikit-image).
    """

    source: Literal["image"] = Field("image", description=_SOURCE_HELP)
    image: str = Field("camera", description=f"bundled image ({', '.join(IMAGE_NAMES)}) or the path of a "
                       "PNG/JPEG/TIFF photograph or a folder of them")
    num_patches: int = Field(200, ge=1, description="m: number of patches")
    blur_sigma: float = Field(1.0, gt=0, description="width of the Gaussian blur, in pixels")
    blur_size: int = Field(5, description="taps of the blur per axis (odd)")
    noise_std: float = Field(0.02, ge=0, description="standard deviation of the input noise")
    channel_mix: float = Field(0.0, ge=0, le=1, description="colour images: fraction of each input channel replaced "
                               "by the mean of the channels after the blur (0: none; no effect on grey images)")

    @field_validator("blur_size")
    @classmethod
    def _check_blur(cls, value: int) -> int:
        return _odd(value)

    @field_validator("image")
    @classmethod
    def _check_image(cls, value: str) -> str:
        # a bundled name, or a path to the user's photographs (read by lcnflow.experiments.readers)
        if value in IMAGE_NAMES or any(c in value for c in "/\\.") or Path(value).expanduser().exists():
            return value
        raise ValueError(f"expected one of {', '.join(IMAGE_NAMES)}, or the path of a PNG/JPEG/TIFF photograph or "
                         f"a folder of them, got {value!r}")


class PopulationData(_DataBase):
    """``source = "population"``: the exact (infinite-data) square-loss risk of a teacher–student problem.

    Inputs are stationary Gaussian signals: ``white`` (``r(k) = δ_k``), ``ar1`` (``r(k) = ρ^|k|``) or ``given``
    (``autocovariance`` lists ``r(0), r(1), …``, at least ``k_v`` lags, positive definite).  Targets are the
    teacher's outputs plus ``N(0, noise_std²)``: a final filter (``teacher = "filter"``, variance ``1/k_v``) or a
    network ``π(w°)`` (``teacher = "lcn"``).  The risk is ``½(v − v_t)ᵀG(v − v_t) + d_N σ²/2`` with ``G`` the
    Toeplitz matrix of ``r`` times ``d_N`` — no sampling noise.  ``num_samples`` representative signals are drawn
    for the figures only.  1D architectures and the square loss only (other losses have no closed form here).
    """

    source: Literal["population"] = Field("population", description=_SOURCE_HELP)
    covariance: Literal["white", "ar1", "given"] = Field("white", description="input autocovariance: white, ar1, given")
    rho: float = Field(0.5, gt=-1, lt=1, description="AR(1) correlation between neighbouring inputs")
    autocovariance: list[float] = Field(default_factory=list, description="r(0), r(1), … for covariance = given")
    teacher: Literal["filter", "lcn"] = Field("filter", description="teacher: a final filter or an LCN")
    noise_std: float = Field(0.1, ge=0, description="target noise σ")
    num_samples: int = Field(20, ge=1, description="representative samples drawn for figures (the risk is exact)")


DataConfig = Annotated[PlantedData | FileData | Mnist1dData | ImageData | PopulationData,
                       Field(discriminator="source")]
DATA_SOURCES: dict[str, type[_DataBase]] = {
    "planted": PlantedData, "file": FileData, "mnist1d": Mnist1dData, "image": ImageData,
    "population": PopulationData,
}


# ---------------------------------------------------------------------------------------------------- init
class InitConfig(_Section):
    """``[init]``: ``w(0)``.  Each coefficient i.i.d. ``N(0, scale²)`` (seeded), unless ``filters`` is given."""

    scale: float = Field(0.1, ge=0, description="standard deviation of each initial coefficient")
    seed: int = Field(1, ge=0, description="seed of the initial filters")
    filters: list[list[Any]] | None = Field(
        None, description="explicit initial filters, one list per layer (nested lists in 2D); overrides scale/seed"
    )


# ---------------------------------------------------------------------------------------------------- flow
_STOP = StopOptions()
_FLOW = FlowOptions()
_DESCENT = DescentOptions()
_SGD = SGDOptions()


def _or_inf(value: float | None) -> float:
    """``inf`` for a key left out (``None``: no limit); any given value as it is, for the options to check."""
    return math.inf if value is None else value


class _FlowBase(_Section):
    """The keys every deterministic method shares.  Defaults and constraints live in the option classes of
    :mod:`lcnflow.dynamics.options` (one home for the API and the config): a section is validated by building its
    options (:meth:`options`)."""

    gtol: float = Field(_STOP.gtol, description="candidate limit when ‖∇L‖ ≤ gtol · S(w), S the gradient "
                        "scale (relative: no units); a candidate is polished and the run stops only at a minimum")
    certify_tol: float = Field(_STOP.certify_tol,
                               description="a polished point is certified when ‖∇L‖ ≤ certify_tol · S")
    polish_radius: float = Field(_STOP.polish_radius, description="polishing may move at most this · ‖w‖")
    classify: bool = Field(_STOP.classify, description="classify the limit (Hessian, function-space origin)")
    max_record: int = Field(_STOP.max_record, description="recorded trajectory points at most (log-spaced)")
    blowup_factor: float = Field(_STOP.blowup_factor,
                                 description="stop as unbounded when ‖w‖ > this · the problem's natural size")
    max_time: float | None = Field(None, description="wall-clock budget in seconds (default: none)")

    @model_validator(mode="after")
    def _check_with_the_options(self):
        self.options()  # one validation for config and API: the options class refuses what it refuses
        return self


class GradientFlowConfig(_FlowBase):
    """``method = "gradient_flow"``: ``ẇ = −∇L(w)`` integrated with error control (:func:`~lcnflow.gradient_flow`)."""

    method: Literal["gradient_flow"] = Field("gradient_flow", description=_METHOD_HELP)
    integrator: Literal[INTEGRATORS] = Field(_FLOW.integrator, description=f"integrator: {', '.join(INTEGRATORS)}")
    t_max: float | None = Field(None, description="largest flow time (default: none); reaching it means "
                                "not converged")
    rtol: float = Field(_FLOW.rtol, description="relative local error tolerance")
    atol: float = Field(_FLOW.atol, description="absolute local error tolerance, relative to the size of one "
                        "initial coefficient")
    max_steps: int = Field(_FLOW.max_steps, description="accepted + rejected steps at most")
    verify: bool = Field(_FLOW.verify, description="re-integrate at 100× tighter tolerances and report whether the "
                         "limit is the same")

    def options(self) -> FlowOptions:
        """The :class:`~lcnflow.dynamics.options.FlowOptions` of this section."""
        return FlowOptions(
            integrator=self.integrator, t_max=_or_inf(self.t_max), rtol=self.rtol, atol=self.atol,
            gtol=self.gtol, certify_tol=self.certify_tol, polish_radius=self.polish_radius, classify=self.classify,
            max_record=self.max_record, blowup_factor=self.blowup_factor, max_steps=self.max_steps,
            max_time=_or_inf(self.max_time), verify=self.verify,
        )


class GradientDescentConfig(_FlowBase):
    """``method = "gradient_descent"``: ``w ← w − η∇L(w)`` (:func:`~lcnflow.gradient_descent`)."""

    method: Literal["gradient_descent"] = Field("gradient_descent", description=_METHOD_HELP)
    step_size: float = Field(_DESCENT.step_size, description="η (initial η if adaptive)")
    adaptive: bool = Field(
        _DESCENT.adaptive, description="Armijo-safeguarded step size (false: plain fixed step η, the iteration "
        "users run; it diverges when η is too large)"
    )
    max_steps: int = Field(_DESCENT.max_steps, description="iterations at most")

    def options(self) -> DescentOptions:
        """The :class:`~lcnflow.dynamics.options.DescentOptions` of this section."""
        return DescentOptions(
            step_size=self.step_size, adaptive=self.adaptive, gtol=self.gtol, certify_tol=self.certify_tol,
            polish_radius=self.polish_radius, classify=self.classify, max_record=self.max_record,
            blowup_factor=self.blowup_factor, max_steps=self.max_steps, max_time=_or_inf(self.max_time),
        )


class StochasticGradientDescentConfig(_Section):
    """``method = "sgd"``: minibatch SGD for a fixed budget, then its endpoint polished, certified and (if certified)
    classified (:func:`~lcnflow.stochastic_gradient_descent`).  There is no ``gtol``: SGD has no stopping rule on
    ``‖∇L‖`` (with a constant step it does not converge)."""

    method: Literal["sgd"] = Field("sgd", description=_METHOD_HELP)
    step_size: float = Field(_SGD.step_size, description="η: the (initial) step size")
    batch_size: int = Field(_SGD.batch_size, description="B: samples per step (at most m; B = m is gradient descent)")
    epochs: int = Field(DEFAULT_EPOCHS, description="passes over the data: epochs · ⌈m/B⌉ steps")
    max_steps: int | None = Field(None, description="steps at most (the smaller budget wins)")
    schedule: Literal[SCHEDULES] = Field(_SGD.schedule, description="step sizes: constant, step or inverse_time")
    decay_steps: int = Field(_SGD.decay_steps, description="K: step schedule η·γ^⌊k/K⌋, inverse_time η/(1 + k/K)")
    decay_factor: float = Field(_SGD.decay_factor, description="γ of the step schedule")
    momentum: float = Field(_SGD.momentum, description="heavy-ball momentum μ (0: plain SGD)")
    sampling: Literal[SAMPLINGS] = Field(
        _SGD.sampling, description="minibatches: without_replacement (reshuffled epochs) or with_replacement"
    )
    seed: int = Field(_SGD.seed, description="seed of the minibatch sequence")
    max_time: float | None = Field(None, description="wall-clock cap in seconds")
    certify_tol: float = Field(_SGD.certify_tol,
                               description="a polished endpoint is certified when ‖∇L‖ ≤ certify_tol · S")
    polish_radius: float = Field(_STOP.polish_radius, description="polishing may move at most this · ‖w‖")
    classify: bool = Field(_SGD.classify, description="classify the polished endpoint when it is certified")
    max_record: int = Field(_SGD.max_record, description="recorded trajectory points at most (log-spaced in time)")
    blowup_factor: float = Field(_STOP.blowup_factor,
                                 description="stop as unbounded when ‖w‖ > this · the problem's natural size")

    @property
    def gtol(self) -> None:
        """``None``: not a key of this method (for code that reads ``flow.gtol`` of any method)."""
        return None

    @model_validator(mode="after")
    def _check_with_the_options(self):
        SGDOptions(**self.options())  # one validation for config and API
        return self

    def options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~lcnflow.stochastic_gradient_descent` (all but ``risk`` and ``init``)."""
        return self.model_dump(exclude={"method"})


FlowConfig = Annotated[
    GradientFlowConfig | GradientDescentConfig | StochasticGradientDescentConfig, Field(discriminator="method")
]
FLOW_METHODS: dict[str, type[_FlowBase] | type[StochasticGradientDescentConfig]] = {
    "gradient_flow": GradientFlowConfig, "gradient_descent": GradientDescentConfig,
    "sgd": StochasticGradientDescentConfig,
}

#: The discriminating key of each section with variants, and the key sets of the variants.
_VARIANTS: dict[str, tuple[str, str, dict[str, set[str]]]] = {
    "data": ("source", "mnist1d", {k: set(c.model_fields) for k, c in DATA_SOURCES.items()}),
    "flow": ("method", "gradient_flow", {k: set(c.model_fields) for k, c in FLOW_METHODS.items()}),
    "loss": ("name", "square", {k: {"name", *LOSS_PARAMETERS[k]} for k in LOSS_NAMES}),
}


# ---------------------------------------------------------------------------------------------------- experiment
class ExperimentConfig(BaseModel):
    """A complete experiment; the field defaults are the built-in default experiment (see :func:`default_config`).

    Build one with :func:`load_config`, :func:`config_from_dict` or ``ExperimentConfig.model_validate(dict)``
    (the latter raises pydantic's ``ValidationError``; the former two a :class:`ConfigError` with readable text).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field("experiment", description="short name of the experiment (default: the config file's name)")
    description: str = Field("", description="one sentence on what the experiment shows")
    architecture: ArchitectureConfig = Field(default_factory=ArchitectureConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    data: DataConfig = Field(default_factory=Mnist1dData)
    init: InitConfig = Field(default_factory=InitConfig)
    flow: FlowConfig = Field(default_factory=GradientFlowConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_variants(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        for section, (key, default, _) in _VARIANTS.items():
            if isinstance(data.get(section), Mapping) and key not in data[section]:
                data[section] = {key: default, **data[section]}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SizeRuleWarning)
            arch = self.architecture.build()
        needs = {"mnist1d": 1, "image": 2}.get(self.data.source)
        if needs is not None and arch.ndim != needs:
            example = "40" if needs == 1 else "[32, 32]"
            raise ValueError(
                f"data.source: {self.data.source!r} gives {needs}D data but the architecture is {arch.ndim}D "
                f"(architecture.input_size = {self.architecture.input_size!r}); use a {needs}D architecture, "
                f"e.g. input_size = {example}"
            )
        if self.init.filters is not None:
            as_filters(arch, self.init.filters, "init.filters")
        return self

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what :meth:`to_toml` writes); ``None`` fields (automatic defaults) are left out."""
        return self.model_dump(mode="python", exclude_none=True)

    def to_toml(self) -> str:
        """The fully resolved config as TOML, one comment per key; ``load_config`` of it gives an equal config."""
        return _dump_toml(self)


# ---------------------------------------------------------------------------------------------------- building
def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``["dotted.key=value", …]`` into ``{"dotted.key": value}``.

    The value is read as a TOML value (``3``, ``1e-3``, ``[3, 3]``, ``"text"``, ``true``); anything that is not
    valid TOML is taken as a plain string, so ``data.source=planted`` needs no quotes.

    Raises
    ------
    ConfigError
        For an item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. architecture.filter_sizes=[3,3]"
            )
        raw = raw.strip()
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key] = value
    return out


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``base`` with each ``"dotted.key": value`` of ``overrides`` set.

    Switching a section's variant (``data.source``, ``flow.method``, ``loss.name``) to a new value drops the base
    keys of that section that the new variant does not have, so ``data.source=planted`` on a config written for
    ``mnist1d`` starts from the planted defaults (keeping shared keys such as ``seed``).

    Raises
    ------
    ConfigError
        When a key walks into a value that is not a table.
    """
    out = copy.deepcopy(dict(base))
    for section, (key, _, variants) in _VARIANTS.items():
        new = overrides.get(f"{section}.{key}")
        old = out.get(section, {}).get(key) if isinstance(out.get(section), Mapping) else None
        if isinstance(new, str) and new in variants and new != old and isinstance(out.get(section), Mapping):
            out[section] = {k: v for k, v in out[section].items() if k in variants[new]}
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(f"{dotted}: cannot set it, {prefix} is {child!r}, not a table")
            node = child
        node[parts[-1]] = value
    return out


#: Name and description of the built-in default experiment (its sections are the field defaults).
BUILTIN_DEFAULT: dict[str, Any] = {
    "name": "mnist1d-deblur",
    "description": "Deblur and denoise MNIST-1D signals with a three-layer LCN trained by gradient flow on the "
    "square loss.",
}


def _modified_default_name(overrides: Mapping[str, Any]) -> str:
    """The name of the built-in default run with ``overrides``: ``mnist1d-deblur (modified)`` while the data are
    still MNIST-1D, ``default-SOURCE (modified)`` once ``data.source`` names another source."""
    source = overrides.get("data.source")
    data = overrides.get("data")
    if source is None and isinstance(data, Mapping):
        source = data.get("source")
    if isinstance(source, str) and source != "mnist1d":
        return f"default-{source} (modified)"
    return f"{BUILTIN_DEFAULT['name']} (modified)"


def default_config() -> ExperimentConfig:
    """The built-in default experiment (what ``lcnflow run`` runs without a config)."""
    return ExperimentConfig.model_validate(BUILTIN_DEFAULT)


def config_from_dict(
    base: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> ExperimentConfig:
    """Validate ``base`` with ``overrides`` applied.

    Parameters
    ----------
    base : mapping, optional
        A config as nested dicts (the TOML structure); missing keys take their defaults.  ``None``: the built-in
        default experiment (:func:`default_config`).
    overrides : mapping, optional
        ``{"dotted.key": value}``, see :func:`apply_overrides`.

    Returns
    -------
    ExperimentConfig

    Raises
    ------
    ConfigError
        With one line per problem, each naming the field, the value and what would be valid.
    """
    data = apply_overrides(BUILTIN_DEFAULT if base is None else base, overrides or {})
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except ValueError as exc:  # raised outside pydantic's wrapping (defensive)
        raise ConfigError(str(exc)) from None


#: The data fields that name files: ``path`` and ``targets_path`` (``source = "file"``) and ``image`` (the user's
#: photographs; a bundled image's name stays a name).
DATA_PATH_FIELDS = ("path", "targets_path", "image")


def resolve_data_paths(data: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """``data`` (a ``[data]`` table) with each relative file name of :data:`DATA_PATH_FIELDS` made absolute,
    relative to ``folder`` (the folder of the config or sweep file that gives it); the one rule for both."""
    out = dict(data)
    for key in DATA_PATH_FIELDS:
        value = out.get(key)
        if not isinstance(value, str) or not value or (key == "image" and value in IMAGE_NAMES):
            continue
        if not Path(value).expanduser().is_absolute():
            out[key] = str((folder / value).resolve())
    return out


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | Sequence[str] | None = None
) -> ExperimentConfig:
    """Read a TOML config (or the built-in default when ``path`` is None) and apply overrides.

    Parameters
    ----------
    path : str or Path, optional
        The TOML file.  A relative ``data.path``/``data.targets_path`` in it is taken relative to its folder.
    overrides : mapping or sequence of str, optional
        ``{"dotted.key": value}`` or ``["dotted.key=value", …]`` (see :func:`parse_overrides`).

    Returns
    -------
    ExperimentConfig

    Raises
    ------
    ConfigError
        Missing or unreadable file, invalid TOML, or an invalid config.
    """
    if overrides is None:
        overrides = {}
    elif not isinstance(overrides, Mapping):
        overrides = parse_overrides(list(overrides))
    base: dict[str, Any] | None = None
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config: file not found: {p}")
        if not p.is_file():
            raise ConfigError(f"config: {p} is not a file (give a .toml config file)")
        try:
            base = tomllib.loads(p.read_text(encoding="utf-8-sig"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {p} is not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config: cannot read {p}: {exc}") from None
        base.setdefault("name", p.stem)
        data = base.get("data")
        if isinstance(data, dict):
            base["data"] = resolve_data_paths(data, p.parent)
    if base is None and overrides:  # the built-in default, modified: keep its sections, not its description
        base = {"name": _modified_default_name(overrides)}
    return config_from_dict(base, overrides)


# ---------------------------------------------------------------------------------------------------- errors
_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dict_type": "a table",
}
#: A message that already starts with the field it is about (``loss.delta: …``, ``init.filters[1] (layer 2): …``).
_NAMED = re.compile(r"^[A-Za-z_][\w.\[\]]*( \([^)]*\))?: ")
_BOUNDS = {"greater_than": ">", "greater_than_equal": "≥", "less_than": "<", "less_than_equal": "≤"}


def _section_model(loc: tuple) -> tuple[type[BaseModel] | None, str]:
    """The model class a location's last key belongs to, and its dotted prefix."""
    if not loc:
        return ExperimentConfig, ""
    head = loc[0]
    if head == "data" and len(loc) >= 2 and loc[1] in DATA_SOURCES:
        return DATA_SOURCES[loc[1]], "data"
    if head == "flow" and len(loc) >= 2 and loc[1] in FLOW_METHODS:
        return FLOW_METHODS[loc[1]], "flow"
    return {"architecture": ArchitectureConfig, "init": InitConfig}.get(head), str(head)


def _clean_loc(loc: tuple) -> list[str | int]:
    """Drop the discriminator tags pydantic inserts (``data.planted.seed`` → ``data.seed``)."""
    out = list(loc)
    tags = {"data": DATA_SOURCES, "flow": FLOW_METHODS}
    if len(out) >= 2 and out[0] in tags and out[1] in tags[str(out[0])]:
        del out[1]
    return out


def _dotted(parts: list[str | int]) -> str:
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text


def format_validation_error(exc: ValidationError) -> str:
    """One line per error: ``field: what is wrong, got VALUE; what would be valid``."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        parts = _clean_loc(loc)
        path = _dotted(parts) or "config"
        kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
        if kind == "value_error":
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(msg if _NAMED.match(msg) else f"{path}: {msg}")
        elif kind == "extra_forbidden":
            model, prefix = _section_model(loc[:-1])
            valid = sorted(model.model_fields) if model is not None else []
            where = f"in [{prefix}]" if prefix else "at the top level"
            if prefix == "data":
                where = f"in [data] with source = {loc[1]!r}"
            if prefix == "flow":
                where = f"in [flow] with method = {loc[1]!r}"
            got = "" if isinstance(value, dict) else f" (got {value!r})"
            lines.append(f"{path}: unknown key {where}{got}; valid keys: {', '.join(valid)}")
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            key = "source" if parts[0] == "data" else "method"
            valid = ", ".join(repr(t) for t in (DATA_SOURCES if key == "source" else FLOW_METHODS))
            got = ctx.get("tag", None)
            lines.append(f"{path}.{key}: unknown {key} {got!r}; valid: {valid}")
        elif kind == "literal_error":
            lines.append(f"{path}: must be one of {ctx.get('expected')}, got {value!r}")
        elif kind in _BOUNDS:
            bound = next(v for k, v in ctx.items() if k in ("gt", "ge", "lt", "le"))
            lines.append(f"{path}: must be {_BOUNDS[kind]} {bound:g}, got {value!r}")
        elif kind == "finite_number":
            lines.append(f"{path}: must be a finite number, got {value!r}")
        elif kind == "missing":
            lines.append(f"{path}: required key is missing")
        elif kind in _TYPE_WORDS or kind.endswith("_type"):
            lines.append(f"{path}: must be {_TYPE_WORDS.get(kind, kind.removesuffix('_type'))}, got {value!r}")
        else:
            lines.append(f"{path}: {err['msg']}, got {value!r}")
    # pydantic reports one error per union member for ``int | list`` fields; keep each distinct line once
    return "\n".join(dict.fromkeys(lines))


# ---------------------------------------------------------------------------------------------------- TOML writer
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)
        if "e" not in text and value != 0 and not 1e-4 <= abs(value) < 1e6:
            text = next(t for n in range(18) if float(t := f"{value:.{n}e}") == value)
            text = re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", text)
        return text if any(c in text for c in ".eEn") else text + ".0"
    if isinstance(value, str):
        escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
        out = (escapes.get(c, f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c) for c in value)
        return '"' + "".join(out) + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() and name.isascii() else _toml_value(name)


def _comment(model: BaseModel, field: str) -> str:
    info = type(model).model_fields.get(field)
    return f"  # {info.description}" if info is not None and info.description else ""


def _dump_toml(cfg: ExperimentConfig) -> str:
    data = cfg.to_dict()
    lines = [
        "# lcnflow experiment (fully resolved): `lcnflow run THIS_FILE` repeats the run exactly.",
        "# Keys left out (flow.gtol, flow.certify_tol, init.filters, …) take their automatic defaults.",
        "",
    ]
    for key in ("name", "description"):
        lines.append(f"{_key(key)} = {_toml_value(data[key])}{_comment(cfg, key)}")
    for section in ("architecture", "loss", "data", "init", "flow"):
        model = getattr(cfg, section)
        lines += ["", f"[{section}]"]
        items = data[section]
        first = {"data": "source", "flow": "method", "loss": "name"}.get(section)
        base = {"data": set(_DataBase.model_fields), "flow": set(_FlowBase.model_fields)}.get(section, set())
        keys = sorted(items, key=lambda k: (k != first, k in base))  # discriminator, own keys, shared keys
        for key in keys:
            value = items[key]
            comment = _comment(model, key)
            if section == "loss" and key != "name":
                comment = f"  # parameter of the {cfg.loss.name} loss"
            lines.append(f"{_key(key)} = {_toml_value(value)}{comment}")
    return "\n".join(lines) + "\n"
