r"""Options of a run: the single home of their defaults and their validation.

:func:`~lcnflow.gradient_flow` and :func:`~lcnflow.gradient_descent` build one of these from their keyword
arguments; the config layer (``[flow]`` of a TOML file) and sweeps validate through the same classes, so a value is
refused with the same message wherever it comes from.

Every tolerance is *relative* (see :func:`~lcnflow.analysis.certify.gradient_scale`): rescaling the data or the
initialization by a constant changes no verdict.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import numpy as np


class StopReason(StrEnum):
    """Why a run ended (``FlowResult.stop_reason``; ``str()`` of a member is its value).  Only ``MINIMUM`` and
    ``STABLE_SADDLE`` end at a certified limit; every other reason leaves an uncertified endpoint."""

    MINIMUM = "minimum"  #: a certified minimum (local or global, degenerate included)
    STABLE_SADDLE = "stable_saddle"  #: a certified saddle whose stable set the start lies on
    T_MAX = "t_max"
    MAX_STEPS = "max_steps"
    MAX_TIME = "max_time"
    BLOWUP = "blowup"  #: ‖w‖ above the blow-up bound
    NONFINITE = "nonfinite"
    FLOOR = "floor"  #: the floating-point floor of ‖∇L‖, or a collapse onto the origin off its stable set
    CALLBACK = "callback"
    FAILED = "failed"  #: the integrator failed (step size underflow)
    BUDGET = "budget"  #: stochastic gradient descent ran its epochs or steps

    @property
    def certified(self) -> bool:
        """Whether the run ended at a certified limit."""
        return self in (StopReason.MINIMUM, StopReason.STABLE_SADDLE)


#: Integrators of :func:`~lcnflow.gradient_flow`.
INTEGRATORS = ("auto", "rodas4", "exponential", "rosenbrock", "RK45", "DOP853", "Radau", "BDF", "LSODA")


def _positive(name: str, value: Any, *, allow_inf: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    ok = ok and (math.isfinite(value) or (allow_inf and value == math.inf))
    if not ok:
        what = "a number > 0 (inf allowed)" if allow_inf else "a finite number > 0"
        raise ValueError(f"flow.{name}: must be {what}, got {value!r}")
    return float(value)


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if not (isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= minimum):
        raise ValueError(f"flow.{name}: must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _fraction(name: str, value: Any) -> float:
    if not (isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1):
        raise ValueError(f"flow.{name}: must be a number in (0, 1), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class StopOptions:
    r"""When a run may stop, and how its limit is certified (shared by gradient flow and gradient descent).

    Attributes
    ----------
    gtol : float
        A state with ``‖∇L(w)‖ ≤ gtol · S(w)`` is a *candidate* limit (``S`` the gradient scale of
        :func:`~lcnflow.analysis.certify.gradient_scale`).  A candidate is polished and classified; the run ends there
        only if the polished point is a minimum, else it goes on with a 100× tighter candidate tolerance.
    certify_tol : float
        A polished point is certified when ``‖∇L‖ ≤ certify_tol · S``.
    polish_radius : float
        Polishing may move the state at most ``polish_radius · ‖w‖``.
    max_steps : int
        Accepted and rejected steps at most.
    max_time : float
        Wall-clock budget in seconds (``inf``: none).
    max_record : int
        Recorded (log-spaced) trajectory points at most.
    blowup_factor : float
        Stop as unbounded when ``‖w‖ > blowup_factor · max(‖w(0)‖, w_ref)`` with ``w_ref`` the natural size of the
        problem's parameters (``√N · ‖v_ref‖^{1/N}``, ``v_ref = ‖∇ℒ(0)‖/‖∇²ℒ(0)‖``).
    classify : bool
        Attach the classification of the limit.
    verify : bool
        Re-integrate at 100× tighter local error tolerances and report whether the limit is the same.
    """

    gtol: float = 1e-8
    certify_tol: float = 1e-10
    polish_radius: float = 1e-2
    max_steps: int = 200_000
    max_time: float = math.inf
    max_record: int = 400
    blowup_factor: float = 1e6
    classify: bool = True
    verify: bool = False

    def __post_init__(self) -> None:
        _fraction("gtol", self.gtol)
        _fraction("certify_tol", self.certify_tol)
        _positive("polish_radius", self.polish_radius)
        _positive_int("max_steps", self.max_steps)
        _positive("max_time", self.max_time, allow_inf=True)
        _positive_int("max_record", self.max_record, minimum=2)
        if not (isinstance(self.blowup_factor, int | float) and self.blowup_factor > 1
                and math.isfinite(self.blowup_factor)):
            raise ValueError(f"flow.blowup_factor: must be a finite number > 1, got {self.blowup_factor!r}")
        for name in ("classify", "verify"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"flow.{name}: must be true or false, got {getattr(self, name)!r}")
        self._as_floats("gtol", "certify_tol", "polish_radius", "max_time", "blowup_factor")

    def _as_floats(self, *names: str) -> None:
        """Store validated numbers as floats (an integer such as ``10**30`` must not reach compiled code)."""
        for name in names:
            object.__setattr__(self, name, float(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``inf`` as ``None``); a new dict at each call."""
        return dict(self._fields_dict)

    @functools.cached_property
    def _fields_dict(self) -> dict[str, Any]:
        # (every field is a number, a string or a bool, so the values themselves, and the options are frozen: built
        # once per options object, copied per run — asdict's deep copies cost more than a small run's bookkeeping)
        return {f.name: (None if isinstance(v := getattr(self, f.name), float) and math.isinf(v) else v)
                for f in fields(self)}


@dataclass(frozen=True)
class FlowOptions(StopOptions):
    r"""Options of :func:`~lcnflow.gradient_flow` (see :class:`StopOptions` for the shared ones).

    Attributes
    ----------
    integrator : str
        One of :data:`INTEGRATORS`; ``"auto"`` is the Rosenbrock method Rodas4 (many steps per compiled call for
        every built-in loss whose data passes the kernels run), LSODA for built-in losses on long 2D filters
        (:func:`~lcnflow.dynamics.solvers.auto_integrator`).
    t_max : float
        Largest flow time (``inf`` by default: escaping a plateau from a tiny initialization can take flow time
        ``~ scale^{-(N-2)}``, which the integrators cross in a few steps).
    rtol, atol : float
        Local error tolerances.  ``atol`` is relative to the size of one coefficient of ``w(0)`` (``‖w(0)‖/√P``, or
        of ``w_ref`` when ``w(0) = 0``), so rescaling the initialization rescales it.
    """

    integrator: str = "auto"
    t_max: float = math.inf
    rtol: float = 1e-6
    atol: float = 1e-8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.integrator not in INTEGRATORS:
            raise ValueError(
                f"flow.integrator: unknown integrator {self.integrator!r}; valid: {', '.join(INTEGRATORS)}")
        _positive("t_max", self.t_max, allow_inf=True)
        _positive("rtol", self.rtol)
        _positive("atol", self.atol)
        if self.rtol < 1e-13:
            raise ValueError(f"flow.rtol: must be ≥ 1e-13 (float64 cannot do better), got {self.rtol!r}")
        self._as_floats("t_max", "rtol", "atol")


#: The defaults of :func:`~lcnflow.gradient_flow` and :func:`~lcnflow.gradient_flows` (their keyword defaults read it).
FLOW_DEFAULTS = FlowOptions()


@dataclass(frozen=True)
class DescentOptions(StopOptions):
    r"""Options of :func:`~lcnflow.gradient_descent` (see :class:`StopOptions` for the shared ones).

    Attributes
    ----------
    step_size : float
        ``η``; with ``adaptive`` the initial ``η`` of Armijo-safeguarded steps.
    adaptive : bool
        ``False`` (default): plain fixed-step descent ``w ← w − η∇L(w)``, the iteration users run.
        ``True``: a step is accepted only if ``L(w − ηg) ≤ L(w) − ½η‖g‖²`` (else η is halved); η grows by 1.25
        after each accepted step.
    """

    step_size: float = 0.01
    adaptive: bool = False
    max_steps: int = 100_000

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("step_size", self.step_size)
        if not isinstance(self.adaptive, bool):
            raise ValueError(f"flow.adaptive: must be true or false, got {self.adaptive!r}")
        self._as_floats("step_size")


#: Minibatch sequences of :func:`~lcnflow.stochastic_gradient_descent`.
SAMPLINGS = ("without_replacement", "with_replacement")
#: Named step-size schedules of :func:`~lcnflow.stochastic_gradient_descent`.
SCHEDULES = ("constant", "step", "inverse_time")
#: Epochs of :func:`~lcnflow.stochastic_gradient_descent` when neither ``epochs`` nor ``max_steps`` is given (and of
#: a config's ``flow.epochs``).
DEFAULT_EPOCHS = 300


@dataclass(frozen=True)
class SGDOptions:
    r"""Options of :func:`~lcnflow.stochastic_gradient_descent` (the config's ``[flow]`` with ``method = "sgd"``):
    their defaults and their validation, in one place.  What depends on the run is checked when it starts
    (``batch_size ≤ m``, the values a callable schedule gives).

    Attributes
    ----------
    step_size : float
        ``η > 0``, the initial step of the schedule (the API requires it; the config's default is 0.003).
    batch_size : int
        ``B ≥ 1`` samples per step (the API requires it; the config's default is 8).
    epochs, max_steps : int or None
        The budget: ``epochs·⌈m/B⌉`` steps, ``max_steps`` steps, the smaller when both are given;
        :data:`DEFAULT_EPOCHS` epochs when neither is.
    schedule : str or callable
        One of :data:`SCHEDULES` or ``k ↦ η_k``.
    decay_steps, decay_factor : int, float
        ``K ≥ 1`` and ``γ ∈ (0, 1]`` of the named schedules (``η·γ^⌊k/K⌋``, ``η/(1 + k/K)``).
    momentum : float
        Heavy-ball ``μ ∈ [0, 1)``.
    sampling : str
        One of :data:`SAMPLINGS`.
    seed : int
        Seed of the minibatch sequence, ``≥ 0``.
    max_time : float or None
        Wall-clock cap in seconds.
    certify_tol, polish_radius, classify, max_record, blowup_factor
        As in :class:`StopOptions` (same defaults, same constraints).
    """

    step_size: float = 0.003
    batch_size: int = 8
    epochs: int | None = None
    max_steps: int | None = None
    schedule: str | Callable[[int], float] = "constant"
    decay_steps: int = 1000
    decay_factor: float = 0.5
    momentum: float = 0.0
    sampling: str = "without_replacement"
    seed: int = 0
    max_time: float | None = None
    certify_tol: float = StopOptions.certify_tol
    polish_radius: float = StopOptions.polish_radius
    classify: bool = StopOptions.classify
    max_record: int = StopOptions.max_record
    blowup_factor: float = StopOptions.blowup_factor

    def __post_init__(self) -> None:
        _positive("step_size", self.step_size)
        _positive_int("batch_size", self.batch_size)
        for name in ("epochs", "max_steps"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if not callable(self.schedule) and self.schedule not in SCHEDULES:
            raise ValueError(f"flow.schedule: unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)} or "
                             "a callable")
        _positive_int("decay_steps", self.decay_steps)
        if not (isinstance(self.decay_factor, int | float) and not isinstance(self.decay_factor, bool)
                and 0 < self.decay_factor <= 1):
            raise ValueError(f"flow.decay_factor: must be in (0, 1], got {self.decay_factor!r}")
        if not (isinstance(self.momentum, int | float) and not isinstance(self.momentum, bool)
                and 0 <= self.momentum < 1):
            raise ValueError(f"flow.momentum: must be in [0, 1), got {self.momentum!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"flow.sampling: unknown sampling {self.sampling!r}; valid: {', '.join(SAMPLINGS)}")
        _positive_int("seed", self.seed, minimum=0)
        if self.max_time is not None:
            _positive("max_time", self.max_time, allow_inf=True)
        self.stop_options()  # certify_tol … blowup_factor, checked as for every method

    def stop_options(self) -> StopOptions:
        """The :class:`StopOptions` of the endpoint's polish, certificate and classification."""
        return StopOptions(certify_tol=self.certify_tol, polish_radius=self.polish_radius, classify=self.classify,
                           max_record=self.max_record, blowup_factor=self.blowup_factor)

    def budget(self, num_samples: int) -> int:
        """Steps of a run on ``num_samples`` samples: ``epochs·⌈m/B⌉`` and ``max_steps``, the smaller."""
        epochs = DEFAULT_EPOCHS if self.epochs is None and self.max_steps is None else self.epochs
        per_epoch = -(-num_samples // self.batch_size)
        return int(min(epochs * per_epoch if epochs is not None else math.inf, self.max_steps or math.inf))


def check_save_at(save_at: Any, t_max: float) -> np.ndarray:
    """``save_at`` as an increasing array of times in ``[0, t_max]`` (empty when ``None``)."""
    if save_at is None:
        return np.zeros(0)
    try:
        s = np.atleast_1d(np.asarray(save_at, dtype=float))
    except (TypeError, ValueError):
        s = np.array([np.nan])
    if s.ndim != 1 or np.any(~np.isfinite(s)) or np.any(s < 0) or np.any(np.diff(s) < 0) or (s.size and s[-1] > t_max):
        raise ValueError(f"flow.save_at: must be increasing finite times in [0, t_max={t_max:g}], got {save_at!r}")
    return s


def check_callback(callback: Any) -> Callable | None:
    """``callback`` if it is callable or ``None``."""
    if callback is not None and not callable(callback):
        raise ValueError(
            f"callback: must be callable(t, w, loss, gradient_norm) or None, got {type(callback).__name__}")
    return callback
