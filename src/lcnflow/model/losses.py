r"""Entrywise losses :math:`\ell:\mathbb{R}\to\mathbb{R}` for empirical risks.

An empirical risk built from an entrywise loss has the form

.. math::

    \mathcal{R}(\theta) = \frac{1}{m}\sum_{i=1}^{m} \ell\bigl(r_i(\theta)\bigr),

where :math:`r_i` are residuals. This module provides the :class:`Loss`
container (value, first and second derivative, and declared analytic
properties) together with a registry of built-in losses, obtained through
:func:`get_loss`:

- ``square``: :math:`\ell(r) = r^2/2`;
- ``lp`` (``p >= 2``): :math:`\ell(r) = |r|^p/p`;
- ``pseudo_huber`` (``delta > 0``): :math:`\ell(r) = \delta^2\bigl(\sqrt{1+(r/\delta)^2}-1\bigr)`;
- ``generalized_huber`` (``alpha > 0``, ``beta >= 0``):
  :math:`\ell(r) = \alpha^{-1}\log\bigl((e^{\alpha r}+e^{-\alpha r}+\beta)/(2+\beta)\bigr)`;
- ``log_cosh``: :math:`\ell(r) = \log\cosh r`.

All built-in callables are vectorized, work in float64 and are evaluated
through rearranged formulas that avoid overflow and cancellation, so that
they are finite, warning-free and accurate to a few ulps in *relative* terms
for :math:`10^{-300} \le |r| \le 10^{6}` (the only exception is ``lp`` with a
large exponent, see :func:`get_loss`).

This module deliberately imports nothing from the rest of :mod:`lcnflow`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = ["LOSS_NAMES", "LOSS_PARAMETERS", "SCALE_PARAMETER_RANGE", "Loss", "get_loss"]

ArrayFn = Callable[[np.ndarray], np.ndarray]

LOSS_NAMES: tuple[str, ...] = ("square", "lp", "pseudo_huber", "generalized_huber", "log_cosh")
"""Names accepted by :func:`get_loss`."""

# Private, immutable copy of the defaults; the public dict below is a convenience for config layers
# and mutating it does not change the behaviour of :func:`get_loss`.
_DEFAULTS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "square": MappingProxyType({}),
        "lp": MappingProxyType({"p": 4.0}),
        "pseudo_huber": MappingProxyType({"delta": 1.0}),
        "generalized_huber": MappingProxyType({"alpha": 1.0, "beta": 0.0}),
        "log_cosh": MappingProxyType({}),
    }
)

#: ``(lo, hi)``: the scale parameters ``delta`` (pseudo-Huber) and ``alpha`` (generalized Huber) must lie in this
#: range.  Their square and cube enter the loss's derivatives; outside it those underflow or overflow in float64.
SCALE_PARAMETER_RANGE: tuple[float, float] = (1e-100, 1e100)

LOSS_PARAMETERS: dict[str, dict[str, float]] = {name: dict(_DEFAULTS[name]) for name in LOSS_NAMES}
"""Default parameter values of every built-in loss, keyed by loss name."""


# ----------------------------------------------------------------------------------------------------------
# Input / output helpers
# ----------------------------------------------------------------------------------------------------------


def _as_real_array(r: Any) -> np.ndarray:
    """Convert ``r`` to a float64 ndarray, refusing complex input."""
    arr = np.asarray(r)
    if arr.dtype.kind == "c":
        raise ValueError(f"r: must be real-valued, got an array of dtype {arr.dtype}")
    try:
        return arr.astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"r: must be convertible to a float64 array, got {r!r}") from exc


def _is_real_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def _check_real(field: str, value: Any) -> float:
    """Return ``value`` as a finite Python float or raise a ValueError naming ``field``."""
    if not _is_real_number(value):
        raise ValueError(f"{field}: must be a real number, got {value!r} ({type(value).__name__})")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{field}: must be finite, got {value!r}")
    return x


# ----------------------------------------------------------------------------------------------------------
# Numerical kernels (operate on flat float64 arrays)
# ----------------------------------------------------------------------------------------------------------


def _square_value(r: np.ndarray) -> np.ndarray:
    return 0.5 * (r * r)


def _square_derivative(r: np.ndarray) -> np.ndarray:
    return r.copy()


def _square_second(r: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(r), np.nan, 1.0)


def _lp_value(r: np.ndarray, p: float) -> np.ndarray:
    return np.power(np.abs(r), p) / p


def _lp_derivative(r: np.ndarray, p: float) -> np.ndarray:
    return np.copysign(np.power(np.abs(r), p - 1.0), r)


def _lp_second(r: np.ndarray, p: float) -> np.ndarray:
    if p == 2.0:
        # |r|^0 = 1 including r = 0; returning the constant keeps NaN handling explicit.
        return np.where(np.isnan(r), np.nan, 1.0)
    return (p - 1.0) * np.power(np.abs(r), p - 2.0)


def _ph_parts(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``|r|``, the mask ``|r| <= delta`` and ``s = min(|r|, delta)/max(|r|, delta)``."""
    ar = np.abs(r)
    small = ar <= delta
    s = np.empty_like(ar)
    s[small] = ar[small] / delta
    big = ~small
    s[big] = delta / ar[big]  # |r| > delta > 0 (or NaN), so no division by zero
    return ar, small, s


def _ph_value_masked(r: np.ndarray, delta: float) -> np.ndarray:
    # l = delta^2 (h - 1) with h = sqrt(1 + (r/delta)^2); since h^2 - 1 = (r/delta)^2,
    # l = r^2/(h + 1) = delta |r| q with q = |r|/(H + delta), H = hypot(delta, r).
    ar, small, s = _ph_parts(r, delta)
    root = np.hypot(1.0, s)
    q = np.empty_like(ar)
    q[small] = s[small] / (root[small] + 1.0)  # |r| <= delta: q = s/(sqrt(1+s^2) + 1)
    big = ~small
    q[big] = 1.0 / (root[big] + s[big])  # |r| > delta: q = 1/(sqrt(1+s^2) + s)
    return (delta * q) * ar


def _ph_derivative_masked(r: np.ndarray, delta: float) -> np.ndarray:
    # l' = r/h = r delta / H.
    _, small, s = _ph_parts(r, delta)
    root = np.hypot(1.0, s)
    out = np.empty_like(r)
    out[small] = r[small] / root[small]
    big = ~small
    out[big] = np.copysign(delta / root[big], r[big])
    return out


def _ph_second_masked(r: np.ndarray, delta: float) -> np.ndarray:
    # l'' = 1/h^3 = (delta/H)^3.
    _, small, s = _ph_parts(r, delta)
    root = np.hypot(1.0, s)
    c = np.empty_like(r)
    c[small] = 1.0 / root[small]
    big = ~small
    c[big] = s[big] / root[big]
    return c * c * c


def _gh_value_masked(r: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    # With a = alpha |r|:  e^a + e^-a + beta = (2 + beta) (1 + u),  u = 4 sinh^2(a/2)/(2 + beta),
    # so alpha l = log1p(u). For large a, log u = L = a + 2 log1p(-e^-a) - log(2 + beta) and
    # alpha l = log1p(e^L) = L + log1p(e^-L).
    ar = np.abs(r)
    a = alpha * ar
    log2b = math.log(2.0 + beta)
    # The direct form is exact-to-ulps and cannot overflow while a <= 700 (4 sinh^2(350) ~ 1e304); past
    # a = 30 + log(2 + beta) we have L >= ~30, so the log-space form has no cancellation either.
    small = a < min(700.0, 30.0 + log2b)
    out = np.empty_like(a)
    a_s = a[small]
    t = 2.0 * np.sinh(0.5 * a_s)
    out[small] = np.log1p(t * t / (2.0 + beta)) / alpha
    big = ~small  # includes NaN and inf
    a_b = a[big]
    ar_b = ar[big]
    c = 2.0 * np.log1p(-np.exp(-a_b)) - log2b
    L = a_b + c
    pos = L > 0.0
    v = np.empty_like(a_b)
    # L > 0: l = |r| + (c + log1p(e^-L))/alpha, which stays finite even when alpha |r| overflows.
    v[pos] = ar_b[pos] + (c[pos] + np.log1p(np.exp(-L[pos]))) / alpha
    # L <= 0 only for astronomically large beta: l = log1p(e^L)/alpha.
    neg = ~pos
    v[neg] = np.log1p(np.exp(L[neg])) / alpha
    out[big] = v
    return out


def _ph_root(r: np.ndarray, delta: float) -> np.ndarray | None:
    """``h = √(1 + (r/δ)²)`` computed in place in one buffer, or ``None`` when ``(r/δ)²`` would overflow or ``r``
    holds NaN (the masked forms handle those)."""
    if delta == 1.0:
        h = np.multiply(r, r)
    else:
        h = np.divide(r, delta)
        with np.errstate(over="ignore"):
            np.multiply(h, h, out=h)
    if h.size and not h.max() < 1e300:
        return None
    h += 1.0
    return np.sqrt(h, out=h)


def _ph_value(r: np.ndarray, delta: float) -> np.ndarray:
    # Fast path without masks: l = r²/(h + 1) = |r|·(|r|/(h + 1)); |r|/(h + 1) ≤ δ.
    h = _ph_root(r, delta)
    if h is None:
        return _ph_value_masked(r, delta)
    h += 1.0
    ar = np.abs(r)
    np.divide(ar, h, out=h)
    return np.multiply(h, ar, out=h)


def _ph_derivative(r: np.ndarray, delta: float) -> np.ndarray:
    h = _ph_root(r, delta)
    if h is None:
        return _ph_derivative_masked(r, delta)
    return np.divide(r, h, out=h)


def _ph_second(r: np.ndarray, delta: float) -> np.ndarray:
    h = _ph_root(r, delta)
    if h is None:
        return _ph_second_masked(r, delta)
    np.reciprocal(h, out=h)
    return h * h * h


def _gh_value(r: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    # Fast path without masks for beta <= 1e6: both branches of the masked form, each on an argument clipped to
    # its own range (so neither overflows nor divides by zero), joined by np.where.
    if beta > 1e6:
        return _gh_value_masked(r, alpha, beta)
    log2b = math.log(2.0 + beta)
    switch = 30.0 + log2b
    a = alpha * np.abs(r)
    t = 2.0 * np.sinh(0.5 * np.minimum(a, switch))
    small = np.log1p(t * t / (2.0 + beta)) / alpha
    ab = np.maximum(a, switch)
    c = 2.0 * np.log1p(-np.exp(-ab)) - log2b
    big = ab / alpha + (c + np.log1p(np.exp(-(ab + c)))) / alpha
    return np.where(a < switch, small, big)


def _gh_derivative(r: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    # l' = sign(r) (e^a - e^-a)/(e^a + e^-a + beta) = sign(r) (1 - e^-2a)/(1 + e^-2a + beta e^-a).
    a = alpha * np.abs(r)
    e1 = np.exp(-a)
    e2 = e1 * e1
    return np.copysign(-np.expm1(-2.0 * a) / (1.0 + e2 + beta * e1), r)


def _gh_second(r: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    # l'' = alpha (4 + beta (e^a + e^-a))/(e^a + e^-a + beta)^2
    #     = alpha [ (2 e^-a / D)^2 + (beta e^-a / D)(1 + e^-2a)/D ],  D = 1 + e^-2a + beta e^-a,
    # written so that no intermediate overflows even for huge beta.
    a = alpha * np.abs(r)
    e1 = np.exp(-a)
    e2 = e1 * e1
    d = 1.0 + e2 + beta * e1
    w = 2.0 * e1 / d
    return alpha * (w * w + (beta * e1 / d) * ((1.0 + e2) / d))


def _log_cosh_value(r: np.ndarray) -> np.ndarray:
    # log cosh r = log1p(2 sinh²(r/2)) (no cancellation for small r) = |r| + log1p(e^{−2|r|}) − log 2 (no overflow
    # for large r); each branch on an argument clipped to its own range, joined by np.where.
    a = np.abs(r)
    t = np.sinh(0.5 * np.minimum(a, 1.0))
    big = a + np.log1p(np.exp(-2.0 * np.maximum(a, 1.0))) - math.log(2.0)
    return np.where(a < 1.0, np.log1p(2.0 * t * t), big)


def _log_cosh_derivative(r: np.ndarray) -> np.ndarray:
    return np.tanh(r)


def _log_cosh_second(r: np.ndarray) -> np.ndarray:
    # sech^2 r = (2 e^-|r| / (1 + e^-2|r|))^2 (no cancellation, unlike 1 - tanh^2 r).
    e1 = np.exp(-np.abs(r))
    w = 2.0 * e1 / (1.0 + e1 * e1)
    return w * w


_KERNELS: Mapping[str, tuple[Callable[..., np.ndarray], ...]] = MappingProxyType(
    {
        "square": (_square_value, _square_derivative, _square_second),
        "lp": (_lp_value, _lp_derivative, _lp_second),
        "pseudo_huber": (_ph_value, _ph_derivative, _ph_second),
        "generalized_huber": (_gh_value, _gh_derivative, _gh_second),
        "log_cosh": (_log_cosh_value, _log_cosh_derivative, _log_cosh_second),
    }
)


class _BuiltinFn:
    """Picklable, comparable callable for the ``order``-th derivative of a built-in loss."""

    __slots__ = ("name", "order", "params")

    def __init__(self, name: str, order: int, params: tuple[tuple[str, float], ...]) -> None:
        self.name = name
        self.order = order
        self.params = params

    def __call__(self, r: Any) -> np.ndarray:
        arr = _as_real_array(r)
        flat = arr.reshape(-1)
        out = _KERNELS[self.name][self.order](flat, **dict(self.params))
        return np.asarray(out, dtype=np.float64).reshape(arr.shape)

    def _key(self) -> tuple[Any, ...]:
        return (self.name, self.order, self.params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _BuiltinFn):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_BuiltinFn, self._key())

    def __repr__(self) -> str:
        label = ("value", "derivative", "second_derivative")[self.order]
        args = ", ".join(f"{k}={v!r}" for k, v in self.params)
        return f"<{self.name}({args}).{label}>"


class _Float64Fn:
    """Wrap a user callable so that it returns a float64 array with the shape of its input."""

    __slots__ = ("fn", "label")

    def __init__(self, fn: Callable[..., Any], label: str) -> None:
        self.fn = fn
        self.label = label

    def __call__(self, r: Any) -> np.ndarray:
        arr = _as_real_array(r)
        out = np.asarray(self.fn(arr))
        if out.dtype.kind == "c":
            if np.any(out.imag != 0):
                raise ValueError(f"{self.label}: returned complex values with a nonzero imaginary part")
            out = out.real
        try:
            out = out.astype(np.float64, copy=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.label}: returned a value not convertible to float64: {out!r}") from exc
        if out.shape != arr.shape:
            try:
                out = np.broadcast_to(out, arr.shape).copy()
            except ValueError as exc:
                raise ValueError(
                    f"{self.label}: returned shape {out.shape}, which cannot be broadcast to the "
                    f"input shape {arr.shape}"
                ) from exc
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Float64Fn):
            return NotImplemented
        return self.fn == other.fn and self.label == other.label

    def __hash__(self) -> int:
        return hash((self.fn, self.label))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Float64Fn, (self.fn, self.label))

    def __repr__(self) -> str:
        return f"<{self.label}: {self.fn!r}>"


def _wrap(fn: Any, label: str) -> ArrayFn:
    if isinstance(fn, _BuiltinFn | _Float64Fn):
        return fn
    if not callable(fn):
        raise ValueError(f"{label}: must be callable, got {fn!r}")
    return _Float64Fn(fn, label)


def _rebuild_loss(kwargs: dict[str, Any]) -> Loss:
    return Loss(**kwargs)


# ----------------------------------------------------------------------------------------------------------
# The Loss container
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loss:
    r"""An entrywise loss :math:`\ell:\mathbb{R}\to\mathbb{R}` with its first two derivatives.

    The loss enters an empirical risk :math:`\frac1m\sum_i \ell(r_i)`; gradient flows need
    :math:`\ell'` and Hessians need :math:`\ell''`. The declared properties are what the theory
    relies on: real-analyticity of :math:`\ell` on :math:`\mathbb{R}` (for the Łojasiewicz
    gradient inequality), convexity, coercivity (:math:`\ell(r)\to\infty` as :math:`|r|\to\infty`)
    and the growth order :math:`g` with :math:`\ell(r)\asymp |r|^{g}` as :math:`|r|\to\infty`.

    Parameters
    ----------
    name : str
        Identifier of the loss (an entry of :data:`LOSS_NAMES` for built-ins).
    params : Mapping[str, float]
        Parameter values; stored as a read-only mapping of Python floats.
    value, derivative, second_derivative : callable
        Vectorized :math:`\ell`, :math:`\ell'`, :math:`\ell''`. Each accepts a scalar or an array and
        returns a float64 ndarray of the same shape (a 0-d array for scalar input). Callables that are
        not built-in are wrapped on construction to enforce this (a scalar result is broadcast).
    analytic, convex, coercive : bool or None
        Declared properties; ``None`` means unknown.
    growth : float or None
        Growth order :math:`g > 0`; ``None`` means unknown.
    description : str
        One-line formula.

    Notes
    -----
    Built-in losses compare equal (and hash equal) when their names and parameters agree; custom losses
    compare equal only when they wrap equal callables. Instances are immutable, and picklable whenever
    their callables are.
    """

    name: str
    params: Mapping[str, float]
    value: ArrayFn
    derivative: ArrayFn
    second_derivative: ArrayFn
    analytic: bool | None = None
    convex: bool | None = None
    coercive: bool | None = None
    growth: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"loss.name: must be a non-empty string, got {self.name!r}")
        if not isinstance(self.params, Mapping):
            raise ValueError(f"loss.params: must be a mapping of str to float, got {self.params!r}")
        params: dict[str, float] = {}
        for key, val in self.params.items():
            if not isinstance(key, str):
                raise ValueError(f"loss.params: keys must be strings, got {key!r}")
            params[key] = _check_real(f"loss.{key}", val)
        object.__setattr__(self, "params", MappingProxyType(params))
        object.__setattr__(self, "value", _wrap(self.value, "loss.value"))
        object.__setattr__(self, "derivative", _wrap(self.derivative, "loss.derivative"))
        object.__setattr__(self, "second_derivative", _wrap(self.second_derivative, "loss.second_derivative"))
        for field in ("analytic", "convex", "coercive"):
            flag = getattr(self, field)
            if flag is not None and not isinstance(flag, bool):
                raise ValueError(f"loss.{field}: must be True, False or None, got {flag!r}")
        if self.growth is not None:
            g = _check_real("loss.growth", self.growth)
            if g <= 0.0:
                raise ValueError(f"loss.growth: must be > 0 or None, got {self.growth!r}")
            object.__setattr__(self, "growth", g)
        if not isinstance(self.description, str):
            raise ValueError(f"loss.description: must be a string, got {self.description!r}")

    # -- evaluation -----------------------------------------------------------------------------------------

    def __call__(self, r: Any) -> np.ndarray:
        r"""Evaluate :math:`\ell(r)` elementwise (same as :attr:`value`)."""
        return self.value(r)

    # -- metadata -------------------------------------------------------------------------------------------

    def properties(self) -> dict[str, bool | float | None]:
        """Return the declared properties.

        Returns
        -------
        dict
            ``{"analytic": ..., "convex": ..., "coercive": ..., "growth": ...}``.
        """
        return {
            "analytic": self.analytic,
            "convex": self.convex,
            "coercive": self.coercive,
            "growth": self.growth,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"name": name, **params}``.

        For built-in losses ``get_loss(**loss.to_dict())`` rebuilds an equal loss; custom losses cannot
        be rebuilt from this dictionary because their callables are not serialised.
        """
        return {"name": self.name, **self.params}

    def __str__(self) -> str:
        if not self.params:
            return self.name
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"

    def __hash__(self) -> int:
        return hash(
            (
                self.name,
                tuple(self.params.items()),
                self.value,
                self.derivative,
                self.second_derivative,
                self.analytic,
                self.convex,
                self.coercive,
                self.growth,
                self.description,
            )
        )

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {
            "name": self.name,
            "params": dict(self.params),
            "value": self.value,
            "derivative": self.derivative,
            "second_derivative": self.second_derivative,
            "analytic": self.analytic,
            "convex": self.convex,
            "coercive": self.coercive,
            "growth": self.growth,
            "description": self.description,
        }
        return (_rebuild_loss, (kwargs,))

    # -- constructors ---------------------------------------------------------------------------------------

    @classmethod
    def from_callables(
        cls,
        value: Callable[..., Any],
        derivative: Callable[..., Any],
        second_derivative: Callable[..., Any],
        *,
        name: str = "custom",
        analytic: bool | None = None,
        convex: bool | None = None,
        coercive: bool | None = None,
        growth: float | None = None,
        description: str = "",
    ) -> Loss:
        r"""Build a loss from user-supplied :math:`\ell`, :math:`\ell'` and :math:`\ell''`.

        Parameters
        ----------
        value, derivative, second_derivative : callable
            Vectorized functions of a float64 array. Their results are converted to float64 and a
            result of a different but broadcastable shape (e.g. a constant) is broadcast to the input
            shape.
        name : str, optional
            Name of the loss, ``"custom"`` by default.
        analytic, convex, coercive : bool or None, optional
            Declared properties (not verified).
        growth : float or None, optional
            Declared growth order.
        description : str, optional
            One-line formula.

        Returns
        -------
        Loss
            A loss with no parameters.
        """
        return cls(
            name=name,
            params={},
            value=value,
            derivative=derivative,
            second_derivative=second_derivative,
            analytic=analytic,
            convex=convex,
            coercive=coercive,
            growth=growth,
            description=description,
        )

    @classmethod
    def from_sympy(
        cls,
        expr: Any,
        symbol: Any = None,
        *,
        name: str = "custom",
        analytic: bool | None = None,
        convex: bool | None = None,
        coercive: bool | None = None,
        growth: float | None = None,
    ) -> Loss:
        r"""Build a loss from a symbolic expression :math:`\ell(r)`.

        The derivatives :math:`\ell'` and :math:`\ell''` are obtained with :func:`sympy.diff` and all
        three are compiled with :func:`sympy.lambdify` for NumPy. The variable is treated as real, so
        that e.g. :math:`\frac{d}{dr}|r|^3 = 3r|r|`. Dirac-delta terms (which sympy produces at kinks,
        e.g. :math:`r^2\delta(r)` in :math:`\frac{d^2}{dr^2}|r|^3`) are replaced by zero, i.e. the
        derivative is taken almost everywhere.

        Parameters
        ----------
        expr : sympy.Expr or str
            Expression in one variable; a string is parsed with :func:`sympy.sympify`.
        symbol : sympy.Symbol or str, optional
            The variable. If omitted, ``expr`` must have exactly one free symbol.
        name : str, optional
            Name of the loss, ``"custom"`` by default.
        analytic, convex, coercive : bool or None, optional
            Declared properties (not verified).
        growth : float or None, optional
            Declared growth order.

        Returns
        -------
        Loss

        Raises
        ------
        ImportError
            If sympy is not installed.
        ValueError
            If the expression cannot be parsed or does not have exactly one free variable.

        Notes
        -----
        The generated code evaluates the expression literally; it inherits whatever overflow or
        cancellation the formula has (e.g. ``log(cosh(r))`` overflows for :math:`|r|>710`).
        """
        try:
            import sympy
        except ImportError as exc:
            raise ImportError(
                "Loss.from_sympy requires sympy; install it with `pip install lcnflow[sympy]`"
            ) from exc

        if isinstance(expr, str):
            try:
                parsed = sympy.sympify(expr)
            except (sympy.SympifyError, SyntaxError, TypeError) as exc:
                raise ValueError(f"expr: could not be parsed by sympy, got {expr!r}") from exc
        else:
            parsed = expr
        if not isinstance(parsed, sympy.Expr):
            raise ValueError(f"expr: must be a sympy expression or a string, got {expr!r}")

        free = parsed.free_symbols
        if symbol is None:
            if len(free) != 1:
                names = sorted(str(s) for s in free)
                raise ValueError(
                    f"expr: must contain exactly one free symbol when symbol is None, got {len(free)} "
                    f"({', '.join(names) or 'none'}) in {str(parsed)!r}"
                )
            (sym,) = free
        else:
            if isinstance(symbol, str):
                matches = [s for s in free if s.name == symbol]
                sym = matches[0] if matches else sympy.Symbol(symbol)
            elif isinstance(symbol, sympy.Symbol):
                sym = symbol
            else:
                raise ValueError(f"symbol: must be a sympy Symbol, a string or None, got {symbol!r}")
            others = sorted(str(s) for s in free if s != sym)
            if others:
                raise ValueError(
                    f"expr: free symbols other than symbol={str(sym)!r} are not allowed, got "
                    f"{', '.join(others)} in {str(parsed)!r}"
                )

        r = sympy.Symbol(sym.name, real=True)
        ell = parsed.subs(sym, r)

        def drop_delta(e: Any) -> Any:
            return e.replace(lambda x: isinstance(x, sympy.DiracDelta), lambda x: sympy.S.Zero)

        d1 = drop_delta(sympy.diff(ell, r))
        d2 = drop_delta(sympy.diff(d1, r))
        for label, e in (("derivative", d1), ("second_derivative", d2)):
            if e.has(sympy.Derivative, sympy.Subs):
                raise ValueError(f"expr: sympy could not differentiate it in closed form ({label} = {e})")

        value = sympy.lambdify(r, ell, modules="numpy")
        derivative = sympy.lambdify(r, d1, modules="numpy")
        second = sympy.lambdify(r, d2, modules="numpy")
        return cls.from_callables(value, derivative, second, name=name, analytic=analytic, convex=convex,
                                  coercive=coercive, growth=growth, description=f"ℓ({r}) = {ell}")


# ----------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------


def _validate_params(name: str, given: Mapping[str, Any]) -> dict[str, float]:
    defaults = _DEFAULTS[name]
    unknown = [k for k in given if k not in defaults]
    if unknown:
        valid = ", ".join(defaults) if defaults else "(none)"
        raise ValueError(
            f"loss.{unknown[0]}: unknown parameter for loss {name!r} (got {given[unknown[0]]!r}); "
            f"valid parameters: {valid}"
        )
    params = {k: _check_real(f"loss.{k}", given.get(k, dflt)) for k, dflt in defaults.items()}
    if name == "lp" and params["p"] < 2.0:
        raise ValueError(f"loss.p: must be >= 2, got {given.get('p')!r}")
    if name == "pseudo_huber" and params["delta"] <= 0.0:
        raise ValueError(f"loss.delta: must be > 0, got {given.get('delta')!r}")
    if name == "generalized_huber":
        if params["alpha"] <= 0.0:
            raise ValueError(f"loss.alpha: must be > 0, got {given.get('alpha')!r}")
    for key in ("delta", "alpha"):
        if key in params and not SCALE_PARAMETER_RANGE[0] <= params[key] <= SCALE_PARAMETER_RANGE[1]:
            lo, hi = SCALE_PARAMETER_RANGE
            raise ValueError(
                f"loss.{key}: must be between {lo:g} and {hi:g} (its square and cube must stay normal float64 "
                f"numbers), got {given.get(key)!r}; rescale the data instead: the loss's shape depends only on the "
                f"ratio of the residuals to {'delta' if key == 'delta' else '1/alpha'}"
            )
    if name == "generalized_huber":
        if params["beta"] < 0.0:
            raise ValueError(f"loss.beta: must be >= 0, got {given.get('beta')!r}")
    return params


def get_loss(name: str, **params: float) -> Loss:
    r"""Return a built-in loss.

    Parameters
    ----------
    name : str
        One of :data:`LOSS_NAMES`:

        ``"square"``
            :math:`\ell(r) = r^2/2`; :math:`\ell' = r`, :math:`\ell'' = 1`. Analytic, convex, coercive,
            growth 2.
        ``"lp"`` (parameter ``p >= 2``, default 4)
            :math:`\ell(r) = |r|^p/p`; :math:`\ell' = \operatorname{sign}(r)|r|^{p-1}`,
            :math:`\ell'' = (p-1)|r|^{p-2}` (exactly 1 for :math:`p=2`). Convex, coercive, growth
            :math:`p`; analytic iff :math:`p` is an even integer (otherwise :math:`C^2` but not analytic
            at 0). :math:`|r|^p` overflows to ``inf`` (with NumPy's overflow warning) once it exceeds
            ~1.8e308; for :math:`p\le 50` and :math:`|r|\le 10^6` everything is finite.
        ``"pseudo_huber"`` (parameter ``delta > 0``, default 1)
            :math:`\ell(r) = \delta^2\bigl(\sqrt{1+(r/\delta)^2}-1\bigr)`. With
            :math:`h=\sqrt{1+(r/\delta)^2}`: :math:`\ell = r^2/(h+1)`, :math:`\ell' = r/h`,
            :math:`\ell'' = h^{-3}`. Analytic, convex, coercive, growth 1.
        ``"generalized_huber"`` (parameters ``alpha > 0`` default 1, ``beta >= 0`` default 0)
            :math:`\ell(r) = \alpha^{-1}\log\frac{e^{\alpha r}+e^{-\alpha r}+\beta}{2+\beta}`. With
            :math:`a = \alpha|r|`:
            :math:`\ell = \alpha^{-1}\operatorname{log1p}\bigl(4\sinh^2(a/2)/(2+\beta)\bigr)`,
            :math:`\ell' = \operatorname{sign}(r)\,\frac{1-e^{-2a}}{1+e^{-2a}+\beta e^{-a}}`,
            :math:`\ell'' = \alpha\,\frac{4e^{-2a}+\beta(1+e^{-2a})e^{-a}}{(1+e^{-2a}+\beta e^{-a})^2}`.
            Analytic, convex, coercive, growth 1. ``beta = 0`` gives :math:`\alpha^{-1}\log\cosh(\alpha r)`.
        ``"log_cosh"``
            :math:`\ell(r) = \log\cosh r`; :math:`\ell' = \tanh r`, :math:`\ell'' = \operatorname{sech}^2 r`.
            Analytic, convex, coercive, growth 1.
    **params : float
        Parameters of the loss (see above); missing ones take the defaults in :data:`LOSS_PARAMETERS`.

    Returns
    -------
    Loss

    Raises
    ------
    ValueError
        For an unknown name, an unknown parameter, or a parameter that is not a finite real number in
        its valid range. The message names the field and the offending value.

    Notes
    -----
    The implementations use rearranged formulas (``hypot``, ``log1p``, ``expm1``, factoring out
    :math:`e^{a}`) so that, for :math:`|r|` between :math:`10^{-300}` and :math:`10^{6}`, no intermediate
    overflows and no cancellation occurs; the results have a relative error of a few ulps wherever the
    exact value is a normal float64 number.
    """
    if not isinstance(name, str) or name not in _DEFAULTS:
        raise ValueError(f"loss.name: unknown loss {name!r}; valid names: {', '.join(LOSS_NAMES)}")
    values = _validate_params(name, params)
    key = tuple(values.items())
    fns = [_BuiltinFn(name, order, key) for order in range(3)]

    if name == "square":
        props: dict[str, Any] = dict(analytic=True, convex=True, coercive=True, growth=2.0)
        description = "r²/2"
    elif name == "lp":
        p = values["p"]
        props = dict(analytic=p % 2.0 == 0.0, convex=True, coercive=True, growth=p)
        description = f"|r|^p/p, p = {p!r}"
    elif name == "pseudo_huber":
        props = dict(analytic=True, convex=True, coercive=True, growth=1.0)
        description = f"δ²(√(1+(r/δ)²) − 1), δ = {values['delta']!r}"
    elif name == "generalized_huber":
        props = dict(analytic=True, convex=True, coercive=True, growth=1.0)
        description = (
            f"(1/α)·log((e^(αr) + e^(−αr) + β)/(2 + β)), α = {values['alpha']!r}, β = {values['beta']!r}"
        )
    else:  # log_cosh
        props = dict(analytic=True, convex=True, coercive=True, growth=1.0)
        description = "log cosh(r)"

    return Loss(
        name=name,
        params=values,
        value=fns[0],
        derivative=fns[1],
        second_derivative=fns[2],
        description=description,
        **props,
    )
