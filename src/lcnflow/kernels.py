r"""Compiled kernels (Numba) for the per-evaluation work of a risk: π, ``dπᵀg``, the Hessian terms, the data passes.

Everything here works on plain float64 arrays; a layer set is described by the tuple :class:`Layout` (built by
:func:`layout`), with 1D architectures treated as 2D ones of height 1.  For layer ``i`` with filter ``k_i``
(``kh × kw``) and dilation ``S_{i−1}`` (the product of the earlier strides):

* π: ``v = w^{(1)} ∗ ↑_{S_1} w^{(2)} ∗ ⋯`` (:func:`final_filter`), accumulated tap by tap;
* ``dπᵀg``: ``(∇_{w^{(i)}})_j = Σ_t g_{j S_{i−1} + t} c_{i,t}`` with ``c_i`` the product of the other layers
  (:func:`vjp`); the Jacobian (:func:`jacobian`) and ``Σ_t g_t ∇²π_t`` (:func:`hessian_contraction`) likewise;
* square loss from the statistics: ``ℒ(v) = ½ eᵀGe + ℒ(v̂)``, ``∇ℒ = Ge``, ``e = v − v̂``, with the chain rule in
  the same call (:func:`square_value_grad`);
* other built-in losses: one pass over the data computes, per output row, the residual ``r = (Hv)_a − y_a``,
  ``ℓ(r)``, ``ℓ'(r)`` and adds ``ℓ'(r)·(patch of a)`` into ``Hᵀℓ'`` — no ``m·d``-sized temporary — in fixed blocks
  of samples run in parallel (:func:`data_pass`); the loss is applied to a whole output row at a time
  (:func:`row_loss`), in loops LLVM vectorizes; the loss terms are compiled without fast-math flags, so ``ℓ'``
  does not depend on whether ``ℓ`` is summed; the Hessian's weighted Gram ``Hᵀ diag(ℓ''(r)) H`` is built from
  blocks of rows scaled by ``√ℓ''`` (:func:`weighted_gram`; ``ℓ'' ≥ 0`` for every built-in loss);
* 1D data the same way with the samples innermost (the transposed signals; every loop runs over a block of samples):
  :func:`signal_pass`, :func:`signal_weighted_gram`;
* networks with channels: the same passes over inputs ``(m, c_0, ·)`` and targets ``(m, c_N, ·)`` with the final
  filter ``V`` ``(c_N, c_0, k_v)``: per sample, output channel and output row the residual (one correlation per input
  channel), ``ℓ'``, and its products with every input channel's patches (:func:`channel_data_pass`); the Hessian's
  diagonal blocks ``Σ ℓ''(r[·, o]) h hᵀ``, one per output channel, likewise (:func:`channel_weighted_gram`) — the
  multichannel patch matrix is never formed;
* long stride-1 filters (2D images): ``Hv`` and ``Hᵀq`` by FFT (:class:`SpectralCorrelator`), with the
  elementwise loss terms in one compiled pass (:func:`loss_terms_padded`).

Block boundaries do not depend on the number of threads, so results are bitwise reproducible for any thread count.

The compiled path is used when Numba imports and ``LCNFLOW_NO_NUMBA`` is not set to a non-empty value other than
``0``; :data:`ENABLED` can also be switched at run time (the NumPy code in :mod:`lcnflow.model.conv` and
:mod:`lcnflow.model.risk` is the reference).  Kernels are compiled on first use and cached on disk (``cache=True``); if
Numba cannot write its cache (a read-only install), they are compiled in memory on each start instead.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
import warnings
from typing import NamedTuple

import numpy as np

try:  # pragma: no cover - exercised by the environment, not by a test
    import numba as _nb

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    _nb = None
    HAVE_NUMBA = False

#: Whether the compiled kernels are used (Numba present and ``LCNFLOW_NO_NUMBA`` unset or ``0``).
ENABLED: bool = HAVE_NUMBA and os.environ.get("LCNFLOW_NO_NUMBA", "") in ("", "0")

#: Loss identifiers of the kernels, by built-in loss name.
LOSS_IDS = {"square": 0, "lp": 1, "pseudo_huber": 2, "generalized_huber": 3, "log_cosh": 4}

#: Data entries (``m · prod(d_N)``) from which the data passes run in parallel.
PARALLEL_MIN_ENTRIES = 50_000

#: Samples per block of the 1D passes with the samples innermost (:func:`signal_pass`): the loops' length.  Measured
#: (one thread, k_v = 7, log cosh): 512 gave 1.8 ms for 2 000 signals of d_0 = 256 against 3.8 ms with 128 and
#: 5.5 ms with 64, and the same time as 256–1 024 for 20 000 signals and for 500 of d_0 = 64.
SIGNAL_BLOCK = 512

#: Seconds spent compiling (or loading from the cache) per kernel, filled on first use (see :func:`warm_up`).
COMPILE_SECONDS: dict[str, float] = {}


class CompileClock:
    """Measures, inside a ``with`` block, the seconds Numba spends compiling or loading compiled code from its cache
    (the time its compiler lock is held, nested compilations counted once, all threads), and how many functions it
    compiled (0: everything came from the cache).  Without Numba both stay 0.

    >>> with CompileClock() as clock:
    ...     pass
    >>> clock.seconds, clock.compilations
    (0.0, 0)
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.compilations = 0
        self._depth = 0
        self._start = 0.0
        self._listeners: list = []

    def __enter__(self) -> CompileClock:
        if HAVE_NUMBA:
            from numba.core import event

            clock = self

            class _Lock(event.Listener):
                def on_start(self, ev) -> None:
                    if clock._depth == 0:
                        clock._start = time.perf_counter()
                    clock._depth += 1

                def on_end(self, ev) -> None:
                    clock._depth -= 1
                    if clock._depth == 0:
                        clock.seconds += time.perf_counter() - clock._start

            class _Compile(event.Listener):
                def on_start(self, ev) -> None:
                    clock.compilations += 1

                def on_end(self, ev) -> None:
                    pass

            self._listeners = [("numba:compiler_lock", _Lock()), ("numba:compile", _Compile())]
            for kind, listener in self._listeners:
                event.register(kind, listener)
        return self

    def __exit__(self, *exc) -> None:
        if self._listeners:
            from numba.core import event

            for kind, listener in self._listeners:
                event.unregister(kind, listener)
            self._listeners = []


def enabled() -> bool:
    """Whether the compiled path is in use now (:data:`ENABLED`)."""
    return ENABLED


def _jit(parallel: bool = False, inline: str = "never", nogil: bool = False, strict: bool = False):
    """``numba.njit(cache=True)``, falling back to an in-memory compilation when no cache location is writable.

    ``strict``: no fast-math flag at all.  The loss terms are compiled so: with reassociation or contraction allowed,
    LLVM rounds the same expression differently depending on what else uses its parts, and ``ℓ'`` must come out bit
    for bit the same whether or not the loop also sums ``ℓ``.  LLVM inlines them into the (fast-math) loops with
    their own flags.
    """

    def wrap(fn):
        if not HAVE_NUMBA:
            return fn
        # reassociation lets the compiler vectorize the dot products of the data passes; no other fast-math flag
        # (NaN and infinities must propagate exactly as in the reference path).  No C-callable wrapper: nothing takes
        # these functions' addresses, and a wrapper per function is compiled code a first run waits for.
        opts = dict(parallel=parallel, error_model="numpy", inline=inline, nogil=nogil,
                    fastmath=False if strict else {"reassoc", "contract"}, no_cfunc_wrapper=True)
        try:
            return _nb.njit(cache=True, **opts)(fn)
        except RuntimeError:  # "cannot cache function …: no locator available" (read-only install)
            return _nb.njit(cache=False, **opts)(fn)

    return wrap


def runtime(x):
    """``x`` as a run-time value in compiled code: a constant ``True`` or ``-1`` passed to a compiled function compiles
    a specialization of it (and of everything it calls) for that constant; through this, one compilation serves
    every value (one per type)."""
    return x


if HAVE_NUMBA:
    from numba.extending import overload as _overload

    @_overload(runtime)
    def _ol_runtime(x):  # (the overload is typed with the non-literal type of x first)
        return lambda x: x


# ---------------------------------------------------------------------------------------------- losses (scalars)
def _abs_pow(a: float, e: float) -> float:
    """``a^e`` for ``a ≥ 0``: by repeated squaring when ``e`` is a whole number up to 64 (``ℓ_p`` with an integer
    ``p``, the common case: a ``pow`` call per entry costs more than the rest of a data pass), else ``pow``."""
    k = int(e)
    if k == e and 0 <= k <= 64:  # seven squarings, the factors chosen by selects: no loop to stop vectorization
        out, base = 1.0, a
        for bit in range(7):
            out *= base if (k >> bit) & 1 else 1.0
            base *= base
        return out
    return a**e


def _loss_value(r: float, lid: int, p1: float, p2: float) -> float:
    """``ℓ(r)`` of the built-in loss ``lid`` (same rearranged formulas as :mod:`lcnflow.model.losses`)."""
    if lid == 0:
        return 0.5 * (r * r)
    a = abs(r)
    if lid == 1:
        return _abs_pow(a, p1) / p1
    if lid == 2:
        u = r / p1
        u2 = u * u
        if u2 < 1e300:
            return (a / (math.sqrt(1.0 + u2) + 1.0)) * a
        s = p1 / a
        return (p1 * (1.0 / (math.hypot(1.0, s) + s))) * a
    if lid == 3:
        alpha, beta = p1, p2
        log2b = math.log(2.0 + beta)
        if beta <= 1e6:
            return _generalized_huber_value(r, alpha, beta, log2b)
        aa = alpha * a
        if aa < min(700.0, 30.0 + log2b):
            t = 2.0 * math.sinh(0.5 * aa)
            return math.log1p(t * t / (2.0 + beta)) / alpha
        c = 2.0 * math.log1p(-math.exp(-aa)) - log2b
        L = aa + c
        if L > 0.0:
            return a + (c + math.log1p(math.exp(-L))) / alpha
        return math.log1p(math.exp(L)) / alpha
    # log cosh
    if a < 1.0:
        t = math.sinh(0.5 * a)
        return math.log1p(2.0 * t * t)
    return a + math.log1p(math.exp(-2.0 * a)) - math.log(2.0)


def _loss_d1(r: float, lid: int, p1: float, p2: float) -> float:
    """``ℓ'(r)``."""
    if lid == 0:
        return r
    a = abs(r)
    if lid == 1:
        return math.copysign(_abs_pow(a, p1 - 1.0), r)
    if lid == 2:
        u = r / p1
        u2 = u * u
        if u2 < 1e300:
            return r / math.sqrt(1.0 + u2)
        return math.copysign(p1 / math.hypot(1.0, p1 / a), r)
    if lid == 3:
        return _generalized_huber_d1(r, p1, p2)
    return math.tanh(r)


def _loss_d2(r: float, lid: int, p1: float, p2: float) -> float:
    """``ℓ''(r)``."""
    if lid == 0:
        return 1.0 if r == r else r
    a = abs(r)
    if lid == 1:
        if p1 == 2.0:
            return 1.0 if r == r else r
        return (p1 - 1.0) * _abs_pow(a, p1 - 2.0)
    if lid == 2:
        u = r / p1
        u2 = u * u
        if u2 < 1e300:
            c = 1.0 / math.sqrt(1.0 + u2)
            return c * c * c
        s = p1 / a
        c = s / math.hypot(1.0, s)
        return c * c * c
    if lid == 3:
        return _generalized_huber_d2(r, p1, p2)
    return _log_cosh_d2(r)


def _loss_value_d1(r: float, lid: int, p1: float, p2: float, need_value: bool) -> tuple[float, float]:
    """``(ℓ(r), ℓ'(r))`` sharing the transcendental functions (``ℓ`` is NaN unless ``need_value``).

    log cosh: with ``u = expm1(−|r|)`` (so ``e^{−|r|} = 1 + u``), ``tanh|r| = −u(2 + u)/(2 + 2u + u²)`` and
    ``cosh r − 1 = u²/(2(1 + u))``, both free of cancellation; ``log cosh r = log1p(cosh r − 1)`` for ``|r| < 1`` and
    ``|r| + log1p((1 + u)²) − log 2`` above.  Pseudo-Huber shares ``√(1 + (r/δ)²)``.
    """
    if lid == 4:
        a = abs(r)
        u = math.expm1(-a)
        d1 = math.copysign(-u * (2.0 + u) / (2.0 + u * (2.0 + u)), r)
        if not need_value:
            return np.nan, d1
        if a < 1.0:
            return math.log1p(u * u / (2.0 * (1.0 + u))), d1
        e = 1.0 + u
        return a + math.log1p(e * e) - math.log(2.0), d1
    if lid == 2:
        u = r / p1
        u2 = u * u
        if u2 < 1e300:
            h = math.sqrt(1.0 + u2)
            a = abs(r)
            return (a / (h + 1.0)) * a, r / h
    if lid == 0:
        return 0.5 * (r * r), r
    val = _loss_value(r, lid, p1, p2) if need_value else np.nan
    return val, _loss_d1(r, lid, p1, p2)


_abs_pow = _jit(inline="always")(_abs_pow)
_loss_value = _jit(inline="always")(_loss_value)
_loss_d1 = _jit(inline="always")(_loss_d1)
_loss_d2 = _jit(inline="always")(_loss_d2)
_loss_value_d1 = _jit(inline="always")(_loss_value_d1)


# ---------------------------------------------------------------------------------------------- losses (rows)
# The data passes evaluate the loss on a whole output row at a time, in loops with no call and no data-dependent
# branch in them (branches are written as selects), so LLVM vectorizes them.  Numba's exp/expm1/log1p are calls into
# libm and stop that; log cosh therefore uses the two vectorizable functions below, accurate to a few ulps on the
# ranges where they are used (tests/test_kernels.py checks them against NumPy over those ranges).

#: ``ln 2 = _LN2_HI + _LN2_LO`` with the low 32 significand bits of ``_LN2_HI`` zero, so ``k·_LN2_HI`` is exact for
#: ``|k| < 2^20`` (``_LN2_LO`` is ``ln 2 − _LN2_HI`` rounded, from a 60-digit ``decimal`` logarithm: the sum is
#: ``ln 2`` to 3·10⁻²³).
_LN2_HI = 0.6931467056274414
_LN2_LO = 4.7493250390316726e-07
_INV_LN2 = 1.4426950408889634
_LN2 = math.log(2.0)


if HAVE_NUMBA:
    from llvmlite import ir as _ir
    from numba.core import types as _types
    from numba.extending import intrinsic as _intrinsic

    @_intrinsic
    def _pow2(typingctx, k):
        """``2.0**k`` for an integer ``−1022 ≤ k ≤ 1023``: ``k + 1023`` placed in the exponent field of a float64
        (two integer instructions, which vectorize; a call to ``ldexp`` would not)."""
        if not isinstance(k, _types.Integer):
            return None

        def codegen(context, builder, signature, args):
            i64 = _ir.IntType(64)
            biased = builder.add(context.cast(builder, args[0], signature.args[0], _types.int64), i64(1023))
            return builder.bitcast(builder.shl(biased, i64(52)), _ir.DoubleType())

        return _types.float64(k), codegen

    @_intrinsic
    def _exponent_mantissa(typingctx, x):
        """``(k, m)`` with ``x = 2^k m``, ``1 ≤ m < 2`` (``k`` as a float), for a positive normal float64 ``x``: the
        exponent field and the significand with the exponent of 1.0, by integer operations on the bits (which
        vectorize)."""
        if not isinstance(x, _types.Float):
            return None

        def codegen(context, builder, signature, args):
            i64, f64 = _ir.IntType(64), _ir.DoubleType()
            bits = builder.bitcast(context.cast(builder, args[0], signature.args[0], _types.float64), i64)
            # the biased exponent e placed in the significand of 2^52 gives the float 2^52 + e exactly (no
            # integer-to-float conversion, which needs AVX-512 to vectorize)
            biased = builder.bitcast(builder.or_(builder.lshr(bits, i64(52)), i64(0x4330000000000000)), f64)
            k = builder.fsub(biased, f64(4503599627370496.0 + 1023.0))
            m = builder.bitcast(builder.or_(builder.and_(bits, i64(0x000FFFFFFFFFFFFF)), i64(0x3FF0000000000000)),
                                f64)
            return context.make_tuple(builder, signature.return_type, (k, m))

        return _types.Tuple((_types.float64, _types.float64))(x), codegen

    @_intrinsic
    def _fma(typingctx, a, b, c):
        """``a·b + c`` with one rounding (``llvm.fma``, which vectorizes), whatever the fast-math flags: the
        polynomials below are compiled strictly, and this keeps their multiply-adds fused."""
        if not all(isinstance(t, _types.Float) for t in (a, b, c)):
            return None

        def codegen(context, builder, signature, args):
            vals = [context.cast(builder, v, t, _types.float64) for v, t in zip(args, signature.args, strict=True)]
            return builder.fma(*vals)

        return _types.float64(a, b, c), codegen
else:  # pragma: no cover
    def _exponent_mantissa(x: float) -> tuple[float, float]:
        """``(k, m)`` with ``x = 2^k m``, ``1 ≤ m < 2`` (the compiled version reads the bits)."""
        m, k = math.frexp(x)
        return float(k - 1), 2.0 * m

    def _pow2(k: int) -> float:
        """``2.0**k`` (the compiled version builds the float from its bits)."""
        return math.ldexp(1.0, k)

    def _fma(a: float, b: float, c: float) -> float:
        """``a·b + c`` (the compiled version rounds once)."""
        return a * b + c


#: ``1/12!, 1/11!, …, 1/2!`` (Horner order after ``1/13!``), rounded from exact fractions.
_EXPM1_COEFS = (1.6059043836821613e-10, 2.08767569878681e-09, 2.505210838544172e-08, 2.755731922398589e-07,
                2.7557319223985893e-06, 2.48015873015873e-05, 0.0001984126984126984, 0.001388888888888889,
                0.008333333333333333, 0.041666666666666664, 0.16666666666666666, 0.5)
#: ``1/21, 1/19, …, 1/3`` (Horner order after ``1/23``).
_ARTANH_COEFS = tuple(1.0 / k for k in range(21, 2, -2))


def _exp_neg(x: float) -> tuple[float, float]:
    r"""``(expm1(x), exp(x))`` for ``−700 ≤ x ≤ 0``, without a library call (vectorizable), to about 2 ulps.

    ``x = k ln 2 + f`` with ``k = round(x / ln 2) ∈ [−1010, 0]`` and ``|f| ≤ ln 2 / 2`` (Cody–Waite: ``k·ln2_hi`` is
    exact, so ``f`` carries one rounding); ``p = expm1(f) = f + f²(1/2! + f/3! + ⋯ + f¹¹/13!)``, whose truncation
    error ``|f|^{14}/14! < 5·10⁻¹⁸`` is below the rounding; ``2^k`` is built exactly from its bits
    (:func:`_pow2`).  Then ``expm1(x) = 2^k p + (2^k − 1)`` (exactly ``p`` for ``k = 0``: no
    cancellation near ``x = 0``) and ``exp(x) = 2^k p + 2^k``.  Outside ``[−700, 0]`` the result is meaningless:
    the callers clamp ``x`` (log cosh's ``ℓ'`` and ``ℓ`` at −40, where they are exact in float64) and see that a NaN
    argument gives NaN.
    """
    kf = np.rint(x * _INV_LN2)
    f = _fma(-kf, _LN2_LO, _fma(-kf, _LN2_HI, x))
    q = 1.1470745597729725e-11  # 1/13!
    for coef in _EXPM1_COEFS:
        q = _fma(f, q, coef)
    p = _fma(f * f, q, f)
    s = _pow2(int(kf))
    return _fma(s, p, s - 1.0), _fma(s, p, s)


def _log1p_series(s: float) -> float:
    r"""``2 artanh(s) = 2s Σ_{j≥0} s^{2j}/(2j + 1)`` for ``0 ≤ s ≤ 0.231``: twelve terms leave a truncation error
    below ``s^{24}/25 < 10⁻¹⁶·s`` relative (``log1p(z)`` for ``s = z/(2 + z)``)."""
    t = s * s
    q = 1.0 / 23.0
    for coef in _ARTANH_COEFS:
        q = _fma(t, q, coef)
    return _fma(2.0 * s, t * q, 2.0 * s)


def _log_pos(x: float) -> float:
    r"""``log x`` for a positive normal finite ``x`` without a library call (vectorizable), to about 2 ulps.

    ``x = 2^k m`` (:func:`_exponent_mantissa`), ``m`` brought into ``[√½, √2)``; ``log x = k ln 2 + 2 artanh(s)``
    with ``s = (m − 1)/(m + 1)``, ``|s| ≤ 0.172`` (:func:`_log1p_series`, odd in ``s``), ``k·ln2_hi`` exact.
    """
    k, m = _exponent_mantissa(x)
    big = m > 1.4142135623730951
    m = 0.5 * m if big else m
    kf = k + 1.0 if big else k
    return _fma(kf, _LN2_HI, _fma(kf, _LN2_LO, _log1p_series((m - 1.0) / (m + 1.0))))


def _log1p_any(z: float) -> float:
    r"""``log1p(z)`` for ``0 ≤ z < ∞`` (finite) without a library call, in one :func:`_log_pos`: ``u = 1 + z``
    rounded, ``log1p(z) = log u − ((u − 1) − z)/u`` (the second term undoes the rounding of ``u`` to first order;
    for ``z`` below the rounding of 1 it leaves ``z``)."""
    u = 1.0 + z
    return _log_pos(u) - ((u - 1.0) - z) / u


# Compiled strictly, as separate functions (not inlined by Numba, whose inlining of large bodies multiplies compile
# times, and which would give them the fast-math flags of the caller): LLVM inlines them into the loops, where they
# vectorize.
_exp_neg = _jit(strict=True)(_exp_neg)
_log1p_series = _jit(strict=True)(_log1p_series)
_log_pos = _jit(strict=True)(_log_pos)
_log1p_any = _jit(strict=True)(_log1p_any)


def _pseudo_huber_terms(r: float, delta: float, inv: float, need_value: bool) -> tuple[float, float]:
    r"""Pseudo-Huber ``(ℓ(r), ℓ'(r))`` (``ℓ`` is 0 unless ``need_value``), ``inv = 1/δ``; vectorizable.

    With ``u = r/δ`` (as ``r·(1/δ)``), ``h = √(1 + u²)``: ``ℓ' = r/h``, ``ℓ = |r|·(|r|/(h + 1))`` (``= δ²(h − 1)``
    without cancellation).  ``ℓ'`` is computed the same way with or without the value (a gradient does not depend on
    whether the value was asked for), so the value costs a second division.  Where ``u² ≥ 10³⁰⁰`` (``h`` would
    overflow), ``ℓ' = ±δ`` and ``ℓ = δ|r|``, the limits to within ``|u|⁻¹ < 10⁻¹⁵⁰`` relative.  NaN propagates
    through the first branch, ``±∞`` takes the second.
    """
    u = r * inv
    u2 = u * u
    big = u2 >= 1e300
    h = math.sqrt(1.0 + u2)
    d1 = math.copysign(delta, r) if big else r / h
    if not need_value:
        return 0.0, d1
    a = abs(r)
    return (delta * a if big else a * (a / (h + 1.0))), d1


def _generalized_huber_d1(r: float, alpha: float, beta: float) -> float:
    r"""``ℓ'(r)`` of the generalized Huber loss, vectorizable: ``sign(r)·(1 − e^{−2a})/(1 + e^{−2a} + β e^{−a})``,
    ``a = α|r|``, with ``1 − e^{−2a} = −u(2 + u)``, ``(u, e^{−a}) = (expm1(−a), exp(−a))`` from one call of
    :func:`_exp_neg` (``a`` clamped at 700: within 1 ulp of libm there, checked by tests/test_kernels.py; beyond,
    ``β e^{−a} < 10⁻³⁰⁴β`` is lost against 1).  NaN propagates, ``±∞`` gives ``±1``."""
    a = alpha * abs(r)
    u, e = _exp_neg(-(a if a < 700.0 else 700.0))
    d1 = math.copysign(-u * (2.0 + u) / (1.0 + e * e + beta * e), r)
    return d1 if r == r else r


def _tanh(r: float) -> float:
    r"""``tanh r = ℓ'(r)`` of log cosh, vectorizable: ``u = expm1(−|r|)`` (:func:`_exp_neg`, ``|r|`` clamped at 40,
    where ``tanh = 1`` in float64), ``w = u(2 + u) = expm1(−2|r|)``, ``tanh|r| = −w/(2 + w)``.  NaN and ``±∞``
    propagate."""
    a = abs(r)
    u, _ = _exp_neg(-(a if a < 40.0 else 40.0))
    w = u * (2.0 + u)
    t = math.copysign(-w / (2.0 + w), r)
    return t if r == r else r


def _log_cosh(r: float) -> float:
    r"""``log cosh r``, vectorizable: with ``u = expm1(−|r|)``, ``e = e^{−|r|}`` (:func:`_exp_neg`, ``|r|`` clamped
    at 40; next to :func:`_tanh` the compiler computes them once), ``log1p(N/D)`` with ``N/D = u²/(2e) = cosh r − 1``
    for ``|r| < 1``, and ``|r| + log1p(N/D) − log 2`` with ``N/D = e²`` above, where :func:`_log1p_series` takes
    ``s = z/(2 + z) = N/(2D + N)``.  NaN and ``±∞`` propagate."""
    a = abs(r)
    u, e = _exp_neg(-(a if a < 40.0 else 40.0))
    small = a < 1.0
    N = u * u if small else e * e
    D = 2.0 * e if small else 1.0
    lg = _log1p_series(N / (2.0 * D + N))
    return lg if small else (a + lg) - _LN2


def _generalized_huber_value(r: float, alpha: float, beta: float, log2b: float) -> float:
    r"""``ℓ(r)`` of the generalized Huber loss for ``β ≤ 10⁶``, vectorizable (``log2b = log(2 + β)``): with
    ``a = α|r|``, ``u = expm1(−a)``, ``e = e^{−a}`` (:func:`_exp_neg`, ``a`` clamped at 700),
    ``α ℓ = log1p(4 sinh²(a/2)/(2 + β))``, ``4 sinh²(a/2) = u²/e``, below ``a = 30 + log(2 + β)``, and
    ``α ℓ = a + log1p(e² + βe) − log(2 + β)`` above (``e^a + e^{−a} + β = e^a(1 + e² + βe)``), both by
    :func:`_log1p_any`.  NaN and ``±∞`` propagate."""
    aa = alpha * abs(r)
    u, e = _exp_neg(-(700.0 if aa > 700.0 else aa))  # (a NaN stays NaN through every step below)
    small = aa < 30.0 + log2b
    # (both sides computed, then selected: with a division inside a conditional, or a last select for NaN, LLVM
    # does not vectorize the loop)
    z_small = (u * u) / (e * (2.0 + beta))
    z_large = e * (e + beta)
    lg = _log1p_any(z_small if small else z_large)
    val_small = lg / alpha
    val_large = ((aa + lg) - log2b) / alpha
    return val_small if small else val_large


def _lp_terms(r: float, p: float, need_value: bool) -> tuple[float, float]:
    r"""``(ℓ(r), ℓ'(r)) = (|r|^p/p, sign(r)|r|^{p−1})`` of the ``ℓ_p`` loss (``ℓ`` is 0 unless ``need_value``);
    vectorizable for a whole ``p ≤ 65`` (:func:`_abs_pow`)."""
    a = abs(r)
    q = _abs_pow(a, p - 1.0)
    d1 = math.copysign(q, r)
    if not need_value:
        return 0.0, d1
    return (q * a) / p, d1  # (one power per entry: |r|^p = |r|^{p−1}·|r|, one rounding more)


def _generalized_huber_d2(r: float, alpha: float, beta: float) -> float:
    r"""``ℓ''(r)`` of the generalized Huber loss, vectorizable: with ``e = e^{−a}``, ``a = α|r|``, ``D = 1 + e² + βe``:
    ``α((2e/D)² + (βe/D)(1 + e²)/D)``.  ``e = e^{−a₁} e^{−a₂}`` with ``a₁ = min(a, 700)`` and ``a₂ = min(a − a₁,
    700)`` (:func:`_exp_neg` is exact to within ulps down to −700; the product rounds into the subnormal range as
    ``exp`` does, and is 0 from ``a ≈ 745`` on).  NaN propagates."""
    aa = alpha * abs(r)
    a1 = aa if aa < 700.0 else 700.0
    a2 = aa - a1
    _, e_hi = _exp_neg(-a1)
    _, e_lo = _exp_neg(-(a2 if a2 < 700.0 else 700.0))
    e1 = e_hi * e_lo
    e2 = e1 * e1
    d = 1.0 + e2 + beta * e1
    w = 2.0 * e1 / d
    val = alpha * (w * w + (beta * e1 / d) * ((1.0 + e2) / d))
    return val if r == r else r


def _log_cosh_d2(r: float) -> float:
    r"""``sech² r = ℓ''(r)`` of log cosh, vectorizable: ``(2e/(1 + e²))²`` with ``e = e^{−|r|}`` (:func:`_exp_neg`,
    ``|r|`` clamped at 700, where the square has long underflowed to 0).  NaN propagates."""
    a = abs(r)
    _, e1 = _exp_neg(-(a if a < 700.0 else 700.0))
    w = 2.0 * e1 / (1.0 + e1 * e1)
    return w * w if r == r else r


_pseudo_huber_terms = _jit(strict=True)(_pseudo_huber_terms)
_tanh = _jit(strict=True)(_tanh)
_generalized_huber_d2 = _jit(strict=True)(_generalized_huber_d2)
_generalized_huber_value = _jit(strict=True)(_generalized_huber_value)
_lp_terms = _jit(strict=True)(_lp_terms)
_log_cosh_d2 = _jit(strict=True)(_log_cosh_d2)
_generalized_huber_d1 = _jit(strict=True)(_generalized_huber_d1)
_log_cosh = _jit(strict=True)(_log_cosh)


# one compiled loop per loss and need_value, with no branch in it: LLVM vectorizes each
@_jit()
def _row_square(row: np.ndarray, n: int) -> float:
    """``Σ r²/2`` over ``row[:n]`` (``ℓ' = r``: the row stays)."""
    acc = 0.0
    for i in range(n):
        acc += row[i] * row[i]
    return 0.5 * acc


@_jit()
def _row_pseudo_huber(row: np.ndarray, n: int, delta: float) -> float:
    """``row[:n] ← ℓ'(row[:n])`` for pseudo-Huber (:func:`_pseudo_huber_terms`); returns ``Σ ℓ``."""
    inv = 1.0 / delta
    acc = 0.0
    for i in range(n):
        val, row[i] = _pseudo_huber_terms(row[i], delta, inv, True)
        acc += val
    return acc


@_jit()
def _row_pseudo_huber_d1(row: np.ndarray, n: int, delta: float) -> float:
    """``row[:n] ← ℓ'(row[:n])`` for pseudo-Huber; returns NaN (no value)."""
    inv = 1.0 / delta
    for i in range(n):
        _, row[i] = _pseudo_huber_terms(row[i], delta, inv, False)
    return np.nan


@_jit()
def _row_log_cosh(row: np.ndarray, n: int) -> float:
    """``row[:n] ← tanh(row[:n])`` (:func:`_tanh`); returns ``Σ log cosh`` (:func:`_log_cosh`)."""
    acc = 0.0
    for i in range(n):
        r = row[i]
        acc += _log_cosh(r)
        row[i] = _tanh(r)
    return acc


@_jit()
def _row_log_cosh_d1(row: np.ndarray, n: int) -> float:
    """``row[:n] ← tanh(row[:n])``; returns NaN (no value)."""
    for i in range(n):
        row[i] = _tanh(row[i])
    return np.nan


@_jit()
def _row_generalized_huber_d1(row: np.ndarray, n: int, alpha: float, beta: float) -> float:
    """``row[:n] ← ℓ'(row[:n])`` for the generalized Huber loss (:func:`_generalized_huber_d1`); returns NaN."""
    for i in range(n):
        row[i] = _generalized_huber_d1(row[i], alpha, beta)
    return np.nan


@_jit()
def _row_generalized_huber(row: np.ndarray, n: int, alpha: float, beta: float) -> float:
    """``row[:n] ← ℓ'(row[:n])`` for the generalized Huber loss with ``β ≤ 10⁶``; returns ``Σ ℓ``
    (:func:`_generalized_huber_value`)."""
    log2b = math.log(2.0 + beta)
    acc = 0.0
    for i in range(n):
        r = row[i]
        acc += _generalized_huber_value(r, alpha, beta, log2b)
        row[i] = _generalized_huber_d1(r, alpha, beta)
    return acc


@_jit()
def _row_lp(row: np.ndarray, n: int, p: float) -> float:
    """``row[:n] ← ℓ'(row[:n])`` for the ``ℓ_p`` loss; returns ``Σ ℓ`` (:func:`_lp_terms`)."""
    acc = 0.0
    for i in range(n):
        val, row[i] = _lp_terms(row[i], p, True)
        acc += val
    return acc


@_jit()
def _row_lp_d1(row: np.ndarray, n: int, p: float) -> float:
    """``row[:n] ← ℓ'(row[:n])`` for the ``ℓ_p`` loss; returns NaN (no value)."""
    for i in range(n):
        _, row[i] = _lp_terms(row[i], p, False)
    return np.nan


@_jit()
def _row_log_cosh_d2(row: np.ndarray, n: int) -> None:
    """``row[:n] ← sech²(row[:n])`` (:func:`_log_cosh_d2`)."""
    for i in range(n):
        row[i] = _log_cosh_d2(row[i])


@_jit()
def _row_generalized_huber_d2(row: np.ndarray, n: int, alpha: float, beta: float) -> None:
    """``row[:n] ← ℓ''(row[:n])`` for the generalized Huber loss (:func:`_generalized_huber_d2`)."""
    for i in range(n):
        row[i] = _generalized_huber_d2(row[i], alpha, beta)


@_jit()
def _row_scalar(row: np.ndarray, n: int, lid: int, p1: float, p2: float, need_value: bool) -> float:
    """Any built-in loss on ``row[:n]``, element by element (:func:`_loss_value_d1`)."""
    acc = 0.0
    for i in range(n):
        val, row[i] = _loss_value_d1(row[i], lid, p1, p2, need_value)
        acc += val
    return acc if need_value else np.nan


@_jit()
def row_loss(row: np.ndarray, n: int, lid: int, p1: float, p2: float, need_value: bool) -> float:
    """``row[:n] ← ℓ'(row[:n])`` for the built-in loss ``lid``; returns ``Σ ℓ`` (NaN unless ``need_value``).

    Every built-in loss goes through a vectorized loop (one compiled loop per loss and ``need_value``), except the
    value of the generalized Huber loss with ``β > 10⁶``, element by element (with the same ``ℓ'``).
    """
    if lid == 0:
        return _row_square(row, n) if need_value else np.nan  # ℓ'(r) = r: nothing to do
    if lid == 2:
        return _row_pseudo_huber(row, n, p1) if need_value else _row_pseudo_huber_d1(row, n, p1)
    if lid == 4:
        return _row_log_cosh(row, n) if need_value else _row_log_cosh_d1(row, n)
    if lid == 3 and not need_value:
        return _row_generalized_huber_d1(row, n, p1, p2)
    if lid == 3 and p2 <= 1e6:
        return _row_generalized_huber(row, n, p1, p2)
    if lid == 1:
        return _row_lp(row, n, p1) if need_value else _row_lp_d1(row, n, p1)
    return _row_scalar(row, n, lid, p1, p2, need_value)


@_jit()
def row_d2(row: np.ndarray, n: int, lid: int, p1: float, p2: float) -> None:
    """``row[:n] ← ℓ''(row[:n])`` for the built-in loss ``lid``, in loops LLVM vectorizes: pseudo-Huber
    (``(1 + (r/δ)²)^{−3/2}``, which is 0 in float64 where ``(r/δ)² > 10³⁰⁰``), log cosh
    (:func:`_log_cosh_d2`), the generalized Huber loss (:func:`_generalized_huber_d2`); the others element by
    element."""
    if lid == 2:
        inv = 1.0 / p1
        for i in range(n):
            u = row[i] * inv
            c = 1.0 / math.sqrt(1.0 + u * u)
            row[i] = c * c * c
        return
    if lid == 4:
        _row_log_cosh_d2(row, n)
        return
    if lid == 3:
        _row_generalized_huber_d2(row, n, p1, p2)
        return
    for i in range(n):
        row[i] = _loss_d2(row[i], lid, p1, p2)


@_jit()
def loss_terms(r: np.ndarray, lid: int, p1: float, p2: float, order: int) -> np.ndarray:
    """``ℓ``, ``ℓ'`` or ``ℓ''`` (``order`` 0, 1, 2) of the built-in loss ``lid`` at every entry of a flat ``r``."""
    out = np.empty_like(r)
    for n in range(r.size):
        if order == 0:
            out[n] = _loss_value(r[n], lid, p1, p2)
        elif order == 1:
            out[n] = _loss_d1(r[n], lid, p1, p2)
        else:
            out[n] = _loss_d2(r[n], lid, p1, p2)
    return out


# ---------------------------------------------------------------------------------------------- layouts and π
class Layout(NamedTuple):
    """A layer set as arrays: filter heights/widths, dilations ``S_{i−1}`` per axis, flat offsets."""

    kh: np.ndarray
    kw: np.ndarray
    dh: np.ndarray
    dw: np.ndarray
    off: np.ndarray


def layout(filter_shapes, dilations) -> Layout:
    """The :class:`Layout` of filters ``filter_shapes`` (1D: ``(k,)``; 2D: ``(k_h, k_w)``) with ``dilations``."""
    kh, kw, dh, dw = [], [], [], []
    for k, s in zip(filter_shapes, dilations, strict=True):
        k2, s2 = ((1, k[0]), (1, s[0])) if len(k) == 1 else (tuple(k), tuple(s))
        kh.append(k2[0])
        kw.append(k2[1])
        dh.append(s2[0])
        dw.append(s2[1])
    kh_a, kw_a = np.array(kh, np.int64), np.array(kw, np.int64)
    off = np.concatenate([[0], np.cumsum(kh_a * kw_a)]).astype(np.int64)
    return Layout(kh_a, kw_a, np.array(dh, np.int64), np.array(dw, np.int64), off)


@_jit()
def product_except(w, kh, kw, dh, dw, off, skip_a: int, skip_b: int) -> np.ndarray:
    r"""``∗_{l ∉ \{a, b\}} ↑_{S_{l−1}} w^{(l)}`` as a 2D array (``skip = −1`` skips nothing: then it is π)."""
    out = np.ones((1, 1))
    for i in range(kh.size):
        if i == skip_a or i == skip_b:
            continue
        ph, pw = out.shape
        new = np.zeros((ph + (kh[i] - 1) * dh[i], pw + (kw[i] - 1) * dw[i]))
        for j1 in range(kh[i]):
            for j2 in range(kw[i]):
                c = w[off[i] + j1 * kw[i] + j2]
                o1, o2 = j1 * dh[i], j2 * dw[i]
                for a in range(ph):
                    for b in range(pw):
                        new[o1 + a, o2 + b] += c * out[a, b]
        out = new
    return out


# The layer terms of dπᵀg, dπ and Σ_t g_t ∇²π_t for several points at once: the last axis of g, c, e and the output
# is the run (the compiled segments advance many runs of one risk together, lcnflow.dynamics.compiled); one point is
# a run of one (views with a last axis of length 1).
@_jit(inline="always")
def vjp_layer_runs(g, c, ch: int, cw: int, kh, kw, dh, dw, off, i: int, out, nr: int) -> None:
    r"""Layer ``i`` of ``dπᵀg`` into ``out[:, r]`` for the runs ``r < nr``:
    ``(∇_{w^{(i)}})_j = Σ_t g_{j S_{i−1}+t}\, c_{i,t}`` (``c = c[:ch, :cw]``, the product of the other layers)."""
    for j1 in range(kh[i]):
        for j2 in range(kw[i]):
            o1, o2 = j1 * dh[i], j2 * dw[i]
            p = off[i] + j1 * kw[i] + j2
            for r in range(nr):
                out[p, r] = 0.0
            for t1 in range(ch):
                for t2 in range(cw):
                    for r in range(nr):
                        out[p, r] += g[o1 + t1, o2 + t2, r] * c[t1, t2, r]


@_jit(inline="always")
def jacobian_layer_runs(c, ch: int, cw: int, KW: int, kh, kw, dh, dw, off, i: int, J, nr: int) -> None:
    """The columns of layer ``i`` of ``dπ`` into ``J[:, :, r]`` (zero elsewhere) for the runs ``r < nr``:
    ``c = c[:ch, :cw]`` (the product of the other layers) shifted by ``j·S_{i−1}``; ``KW`` is the width of π."""
    for j1 in range(kh[i]):
        for j2 in range(kw[i]):
            col = off[i] + j1 * kw[i] + j2
            for t1 in range(ch):
                for t2 in range(cw):
                    row = (j1 * dh[i] + t1) * KW + j2 * dw[i] + t2
                    for r in range(nr):
                        J[row, col, r] = c[t1, t2, r]


@_jit(inline="always")
def contract_block_runs(g, e, eh: int, ew: int, kh, kw, dh, dw, off, i: int, l: int, out, nr: int) -> None:  # noqa: E741
    r"""Adds ``B_{il}[j, j'] = Σ_u g_{j S_{i−1} + j' S_{l−1} + u}\, e_{il,u}`` (layers ``i < l``, ``e = e[:eh, :ew]``)
    into the upper block ``(i, l)`` of ``out[:, :, r]`` for the runs ``r < nr``."""
    for j1 in range(kh[i]):
        for j2 in range(kw[i]):
            row = off[i] + j1 * kw[i] + j2
            for q1 in range(kh[l]):
                for q2 in range(kw[l]):
                    o1 = j1 * dh[i] + q1 * dh[l]
                    o2 = j2 * dw[i] + q2 * dw[l]
                    col = off[l] + q1 * kw[l] + q2
                    for u1 in range(eh):
                        for u2 in range(ew):
                            for r in range(nr):
                                out[row, col, r] += g[o1 + u1, o2 + u2, r] * e[u1, u2, r]


@_jit(inline="always")
def _one_run(a):
    """A contiguous 2D array as a batch of one run (a view with a last axis of length 1)."""
    return a.reshape((a.shape[0], a.shape[1], 1))


@_jit()
def vjp(w, kh, kw, dh, dw, off, g: np.ndarray) -> np.ndarray:
    r"""``dπ(w)ᵀ g`` (flat, :func:`vjp_layer_runs` for every layer) for a 2D ``g`` of π's shape."""
    out = np.empty(off[-1])
    for i in range(kh.size):
        c = product_except(w, kh, kw, dh, dw, off, i, runtime(-1))
        vjp_layer_runs(_one_run(g), _one_run(c), c.shape[0], c.shape[1], kh, kw, dh, dw, off, i,
                       out.reshape((out.size, 1)), 1)
    return out


@_jit()
def jacobian(w, kh, kw, dh, dw, off) -> np.ndarray:
    """``dπ(w)``, a ``k_v × P`` matrix: column ``j`` of layer ``i`` is ``c_i`` shifted by ``j·S_{i−1}``."""
    v = product_except(w, kh, kw, dh, dw, off, runtime(-1), runtime(-1))
    KH, KW = v.shape
    J = np.zeros((KH * KW, off[-1]))
    for i in range(kh.size):
        c = product_except(w, kh, kw, dh, dw, off, i, runtime(-1))
        jacobian_layer_runs(_one_run(c), c.shape[0], c.shape[1], KW, kh, kw, dh, dw, off, i, _one_run(J), 1)
    return J


@_jit()
def hessian_contraction(w, kh, kw, dh, dw, off, g: np.ndarray) -> np.ndarray:
    r"""``Σ_t g_t ∇²π_t(w)`` (``P × P``): zero diagonal blocks, and for layers ``i < l`` the blocks of
    :func:`contract_block_runs` (mirrored below the diagonal)."""
    P = off[-1]
    out = np.zeros((P, P))
    for i in range(kh.size):
        for l in range(i + 1, kh.size):  # noqa: E741
            e = product_except(w, kh, kw, dh, dw, off, i, l)
            contract_block_runs(_one_run(g), _one_run(e), e.shape[0], e.shape[1], kh, kw, dh, dw, off, i, l,
                                _one_run(out), 1)
    for p in range(P):
        for q in range(p + 1, P):
            out[q, p] = out[p, q]
    return out


@_jit()
def products_many(W, kh, kw, dh, dw, off) -> np.ndarray:
    """π of each row of ``W`` (``n × P``): an ``n × k_h × k_w`` stack (:func:`product_except` of each)."""
    n = W.shape[0]
    KH, KW = 1, 1
    for i in range(kh.size):
        KH += (kh[i] - 1) * dh[i]
        KW += (kw[i] - 1) * dw[i]
    out = np.empty((n, KH, KW))
    for j in range(n):
        out[j] = product_except(W[j], kh, kw, dh, dw, off, runtime(-1), runtime(-1))
    return out


@_jit()
def second_order_parts(W, kh, kw, dh, dw, off, g) -> tuple[np.ndarray, np.ndarray]:
    r"""For each row ``w_j`` of ``W`` (``n × P``) and ``g[j]`` (π's shape): ``dπ(w_j)`` (``n × k_v × P``,
    :func:`jacobian`) and ``Σ_t g_{j,t} ∇²π_t(w_j)`` (``n × P × P``, :func:`hessian_contraction`), in one call."""
    n, P = W.shape[0], off[-1]
    K = g.shape[1] * g.shape[2]
    J = np.empty((n, K, P))
    C = np.empty((n, P, P))
    for j in range(n):
        J[j] = jacobian(W[j], kh, kw, dh, dw, off)
        C[j] = hessian_contraction(W[j], kh, kw, dh, dw, off, g[j])
    return J, C


@_jit()
def square_terms(v, v_hat, G, e, ge) -> float:
    """``e = v − v̂`` (flat) and ``Ge`` (into ``ge``, π's shape); returns ``eᵀGe``."""
    KW = v.shape[1]
    K = v.size
    for t in range(K):
        e[t] = v[t // KW, t % KW] - v_hat[t]
    val = 0.0
    for a in range(K):
        s = 0.0
        for b in range(K):
            s += G[a, b] * e[b]
        ge[a // KW, a % KW] = s
        val += e[a] * s
    return val


@_jit()
def square_value_grad(w, kh, kw, dh, dw, off, v_hat, G, minimum: float, need_value: bool):
    r"""``(L(w), ∇L(w))`` of the square loss from its statistics in one call.

    ``e = π(w) − v̂``, ``∇ℒ = G e``, ``ℒ = ½ eᵀGe + ℒ(v̂)`` (NaN unless ``need_value``), ``∇L = dπᵀ∇ℒ``.
    """
    v = product_except(w, kh, kw, dh, dw, off, runtime(-1), runtime(-1))
    ge = np.zeros(v.shape)
    val = square_terms(v, v_hat, G, np.empty(v.size), ge)
    value = 0.5 * val + minimum if need_value else np.nan
    return value, vjp(w, kh, kw, dh, dw, off, ge), ge


# -------------------------------------------------------------------------------------- the stopping rule's tests
#: Bits of :func:`step_tests`.
TEST_NONFINITE, TEST_REARM, TEST_CANDIDATE, TEST_COLLAPSED, TEST_BLOWUP = 1, 2, 4, 8, 16


@_jit()
def step_tests(speed: float, size: float, s_ub: float, scale: float, tol_rel: float, gtol: float,
               origin_size: float, bound: float) -> int:
    r"""The per-step tests of the stopping rule (:mod:`lcnflow.dynamics.driver`), in one place for the driver and the
    compiled segments: a bit mask of :data:`TEST_NONFINITE` (``‖∇L‖`` or ``‖w‖`` not finite; nothing else is
    tested), :data:`TEST_REARM` (the flow left the last rejected candidate: ``tol < gtol`` and
    ``‖∇L‖ > gtol · S_ub``), :data:`TEST_CANDIDATE` (a candidate limit: ``‖∇L‖ ≤ tol · S`` where the gradient scale
    ``S = scale`` is known, else the cheap pre-test ``‖∇L‖ ≤ 100 · tol · S_ub``), :data:`TEST_COLLAPSED`
    (``‖w‖ ≤ origin_size``) and :data:`TEST_BLOWUP` (``‖w‖ > bound``).  ``speed`` is ``‖∇L(w)‖`` or an estimate of
    it, ``S_ub ≥ S(w)`` the upper bound of the gradient scale, ``scale`` ``S(w)`` or NaN."""
    if not (math.isfinite(speed) and math.isfinite(size)):
        return TEST_NONFINITE
    out = 0
    if tol_rel < gtol and speed > gtol * s_ub:
        out |= TEST_REARM
    if speed <= (100.0 * tol_rel * s_ub if scale != scale else tol_rel * scale):
        out |= TEST_CANDIDATE
    if size <= origin_size:
        out |= TEST_COLLAPSED
    if size > bound:
        out |= TEST_BLOWUP
    return out


# ---------------------------------------------------------------------------------------------- step-size control
@_jit()
def step_factor(err: float, exponent: float, accepted: bool) -> float:
    r"""The one step-size controller of the integrators: the factor on the step size after a step with error
    estimate ``err`` (in units of the tolerance; ``exponent = 1/(q + 1)`` for an error estimate of order ``q``).

    Accepted: ``min(5, 0.9 err^{−exponent})`` (5 when ``err = 0``); rejected: ``max(0.2, 0.9 err^{−exponent})``;
    a non-finite estimate: ``0.25``."""
    if not math.isfinite(err):
        return 0.25
    if accepted:
        return 5.0 if err == 0.0 else min(5.0, 0.9 * err**-exponent)
    return max(0.2, 0.9 * err**-exponent)


# ---------------------------------------------------------------------------------------------- per-step bookkeeping
@_jit()
def scale_terms(w, off) -> tuple[float, float]:
    r"""``(D, Π_i ‖w^{(i)}‖_1)`` with ``D = (Σ_i Π_{j≠i} ‖w^{(j)}‖²)^{1/2}`` (the factors of the gradient scale)."""
    n = off.size - 1
    sq = np.empty(n)
    l1 = 1.0
    for i in range(n):
        s2 = 0.0
        s1 = 0.0
        for p in range(off[i], off[i + 1]):
            s2 += w[p] * w[p]
            s1 += abs(w[p])
        sq[i] = s2
        l1 *= s1
    total = 0.0
    for i in range(n):
        prod = 1.0
        for j in range(n):
            if j != i:
                prod *= sq[j]
        total += prod
    return math.sqrt(total), l1


@_jit()
def step_terms(w, prev, off, delta0) -> tuple[float, float, float]:
    r"""``(‖w − w_prev‖, max_i |δ_i(w) − δ_i(0)|, ‖w‖²)`` with ``δ_i = ‖w^{(i+1)}‖² − ‖w^{(i)}‖²``."""
    arc = 0.0
    for p in range(w.size):
        d = w[p] - prev[p]
        arc += d * d
    n = off.size - 1
    sq = np.empty(n)
    total = 0.0
    for i in range(n):
        s2 = 0.0
        for p in range(off[i], off[i + 1]):
            s2 += w[p] * w[p]
        sq[i] = s2
        total += s2
    change = 0.0
    for i in range(n - 1):
        c = abs(sq[i + 1] - sq[i] - delta0[i])
        if c > change or c != c:
            change = c
    return math.sqrt(arc), change, total


# ---------------------------------------------------------------------------------------------- data passes
@_jit(inline="always")
def _axpy4(row: np.ndarray, c0: float, s0, c1: float, s1, c2: float, s2, c3: float, s3, n: int) -> None:
    """``row[a] += (c_0 s_0[a] + c_1 s_1[a]) + (c_2 s_2[a] + c_3 s_3[a])`` for ``a < n``: four taps in one sweep."""
    for a in range(n):
        row[a] += (c0 * s0[a] + c1 * s1[a]) + (c2 * s2[a] + c3 * s3[a])


@_jit(inline="always")
def _dot4(q: np.ndarray, s0, s1, s2, s3, n: int) -> tuple[float, float, float, float]:
    """``(Σ_{a<n} q_a s_0[a], …, Σ_{a<n} q_a s_3[a])``: four dot products in one sweep over ``q``."""
    g0 = g1 = g2 = g3 = 0.0
    for a in range(n):
        u = q[a]
        g0 += u * s0[a]
        g1 += u * s1[a]
        g2 += u * s2[a]
        g3 += u * s3[a]
    return g0, g1, g2, g3


@_jit(inline="always")
def _correlate_add(row: np.ndarray, xr: np.ndarray, c: np.ndarray, n: int, k: int) -> None:
    r"""``row[a] += Σ_{t<k} c_t xr[a + t]`` for ``a < n``, four taps per sweep over ``row`` (one load and one store
    of ``row`` per four multiply-adds instead of per one), then the remaining three, two or one."""
    t = 0
    while t + 4 <= k:
        _axpy4(row, c[t], xr[t : t + n], c[t + 1], xr[t + 1 : t + 1 + n], c[t + 2], xr[t + 2 : t + 2 + n],
               c[t + 3], xr[t + 3 : t + 3 + n], n)
        t += 4
    if t + 3 == k:
        c0, c1, c2 = c[t], c[t + 1], c[t + 2]
        s0, s1, s2 = xr[t : t + n], xr[t + 1 : t + 1 + n], xr[t + 2 : t + 2 + n]
        for a in range(n):
            row[a] += (c0 * s0[a] + c1 * s1[a]) + c2 * s2[a]
    elif t + 2 == k:
        c0, c1 = c[t], c[t + 1]
        s0, s1 = xr[t : t + n], xr[t + 1 : t + 1 + n]
        for a in range(n):
            row[a] += c0 * s0[a] + c1 * s1[a]
    elif t < k:
        c0 = c[t]
        s0 = xr[t : t + n]
        for a in range(n):
            row[a] += c0 * s0[a]


@_jit(inline="always")
def _correlate_dot(row: np.ndarray, xr: np.ndarray, out: np.ndarray, o: int, n: int, k: int) -> None:
    r"""``out[o + t] += Σ_{a<n} row[a] xr[a + t]`` for ``t < k``, four taps per sweep over ``row``."""
    t = 0
    while t + 4 <= k:
        g0, g1, g2, g3 = _dot4(row, xr[t : t + n], xr[t + 1 : t + 1 + n], xr[t + 2 : t + 2 + n],
                               xr[t + 3 : t + 3 + n], n)
        out[o + t] += g0
        out[o + t + 1] += g1
        out[o + t + 2] += g2
        out[o + t + 3] += g3
        t += 4
    if t + 3 == k:
        s0, s1, s2 = xr[t : t + n], xr[t + 1 : t + 1 + n], xr[t + 2 : t + 2 + n]
        g0 = g1 = g2 = 0.0
        for a in range(n):
            q = row[a]
            g0 += q * s0[a]
            g1 += q * s1[a]
            g2 += q * s2[a]
        out[o + t] += g0
        out[o + t + 1] += g1
        out[o + t + 2] += g2
    elif t + 2 == k:
        s0, s1 = xr[t : t + n], xr[t + 1 : t + 1 + n]
        g0 = g1 = 0.0
        for a in range(n):
            q = row[a]
            g0 += q * s0[a]
            g1 += q * s1[a]
        out[o + t] += g0
        out[o + t + 1] += g1
    elif t < k:
        s0 = xr[t : t + n]
        g0 = 0.0
        for a in range(n):
            g0 += row[a] * s0[a]
        out[o + t] += g0


@_jit(inline="always")
def _correlate_rows_add(row: np.ndarray, x, v, j: int, a1: int, sh: int, sw: int, DW: int) -> None:
    r"""``row[a2] += Σ_t v_t x_{j, a1 s_h + t_1, a2 s_w + t_2}`` for ``a2 < DW`` (for stride 1, four taps per sweep:
    :func:`_correlate_add`): the products of :func:`_residual_row`, for the channel passes, which add one input
    channel after another (the one-channel pass keeps its own loop: through these helpers its 2D pass ran ~7 % slower,
    medians of four alternating runs)."""
    KH, KW = v.shape
    for t1 in range(KH):
        xr = x[j, a1 * sh + t1]
        if sw == 1:
            _correlate_add(row, xr, v[t1], DW, KW)
            continue
        for t2 in range(KW):
            c = v[t1, t2]
            for a2 in range(DW):
                row[a2] += c * xr[a2 * sw + t2]


@_jit(inline="always")
def _channel_residual_row(row: np.ndarray, xj, yr: np.ndarray, Vo, a1: int, sh: int, sw: int, DW: int) -> None:
    r"""``row ← r`` for output row ``a1`` of one sample and output channel ``o``: ``r_{a2} = Σ_c Σ_t V_{o,c,t}
    x_{c, a1 s_h + t_1, a2 s_w + t_2} − y_{a2}`` (``xj`` the sample's channels, ``Vo = V[o]``), one input channel
    after another (:func:`_correlate_rows_add`)."""
    for a2 in range(DW):
        row[a2] = -yr[a2]
    for c in range(Vo.shape[0]):
        _correlate_rows_add(row, xj, Vo[c], c, a1, sh, sw, DW)


@_jit(inline="always")
def _patch_dot(row: np.ndarray, x, out: np.ndarray, o: int, j: int, a1: int, sh: int, sw: int, KH: int, KW: int,
               DW: int) -> None:
    r"""``out[o + t_1 KW + t_2] += Σ_{a2 < DW} row_{a2} x_{j, a1 s_h + t_1, a2 s_w + t_2}``: the products of one
    output row with the taps of its patches (for stride 1, four taps per sweep: :func:`_correlate_dot`), as in
    :func:`data_pass_blocks`, at an offset ``o`` (the channel passes' entry ``(o, c)``)."""
    for t1 in range(KH):
        xr = x[j, a1 * sh + t1]
        if sw == 1:
            _correlate_dot(row, xr, out, o + t1 * KW, DW, KW)
            continue
        for t2 in range(KW):
            s = 0.0
            for a2 in range(DW):
                s += row[a2] * xr[a2 * sw + t2]
            out[o + t1 * KW + t2] += s


@_jit(inline="always")
def _residual_row(row: np.ndarray, x, yr: np.ndarray, v, j: int, a1: int, sh: int, sw: int) -> None:
    r"""``row ← r`` for output row ``a1`` of sample ``j``: ``r_{a2} = Σ_t v_t x_{j, a1 s_h + t_1, a2 s_w + t_2} − y``
    (for stride 1, four taps per sweep: :func:`_correlate_add`)."""
    KH, KW = v.shape
    DW = yr.size
    for a2 in range(DW):
        row[a2] = -yr[a2]
    for t1 in range(KH):
        xr = x[j, a1 * sh + t1]
        if sw == 1:
            _correlate_add(row, xr, v[t1], DW, KW)
            continue
        for t2 in range(KW):
            c = v[t1, t2]
            for a2 in range(DW):
                row[a2] += c * xr[a2 * sw + t2]


@_jit(nogil=True)
def data_pass_blocks(x, y, v, sh: int, sw: int, lid: int, p1: float, p2: float, need_value: bool, block: int,
                     b0: int, b1: int, part: np.ndarray, vals: np.ndarray) -> None:
    r"""Blocks ``b0 … b1−1`` of samples (``block`` each): ``part[b] = Σ ℓ'(r_a) h_a``, ``vals[b] = Σ ℓ(r_a)``.

    Per output row: ``r = −y + Σ_t v_t x_{a s + t}`` (for stride 1, four taps per sweep: :func:`_correlate_add`),
    then ``(ℓ, ℓ')`` in place (:func:`row_loss`), then the products ``Σ_a ℓ'(r_a) x_{a s + t}`` into ``Hᵀℓ'``
    (:func:`_correlate_dot`).  Releases the GIL, so threads can run disjoint block ranges.
    """
    m, DH, DW = y.shape
    KH, KW = v.shape
    row = np.empty(DW)
    for b in range(b0, b1):
        acc = 0.0
        pb = part[b]
        for j in range(b * block, min(m, (b + 1) * block)):
            for a1 in range(DH):
                _residual_row(row, x, y[j, a1], v, j, a1, sh, sw)
                acc += row_loss(row, DW, lid, p1, p2, need_value)
                for t1 in range(KH):
                    xr = x[j, a1 * sh + t1]
                    if sw == 1:
                        _correlate_dot(row, xr, pb, t1 * KW, DW, KW)
                        continue
                    for t2 in range(KW):
                        s = 0.0
                        for a2 in range(DW):
                            s += row[a2] * xr[a2 * sw + t2]
                        pb[t1 * KW + t2] += s
        vals[b] = acc


# 1D data with the samples innermost: ``xt`` (d_0 × m) and ``yt`` (d_N × m), the transposes of the signals.  Output
# ``a`` of every sample is one row of ``yt`` and its patch rows ``a·s + t`` are rows of ``xt``, so each loop runs over a
# block of samples (contiguous, hundreds long: LLVM vectorizes it with no remainder to speak of), where the row
# layout's loops run over the d_N outputs of one sample with a dot product per tap (measured on m = 500 signals of
# d_0 = 64, k_v = 7: a gradient pass 1.5–2×, the weighted Gram 2–3× faster).


@_jit(inline="always")
def _signal_residual(r: np.ndarray, xt, yt, v: np.ndarray, a: int, s: int, j0: int, n: int) -> None:
    r"""``r[j] ← Σ_t v_t xt[a s + t, j_0 + j] − yt[a, j_0 + j]`` for ``j < n``: output ``a`` of ``n`` samples, four
    taps per sweep over ``r``."""
    yr = yt[a, j0 : j0 + n]
    for j in range(n):
        r[j] = -yr[j]
    base = a * s
    k = v.size
    t = 0
    while t + 4 <= k:
        _axpy4(r, v[t], xt[base + t, j0 : j0 + n], v[t + 1], xt[base + t + 1, j0 : j0 + n], v[t + 2],
               xt[base + t + 2, j0 : j0 + n], v[t + 3], xt[base + t + 3, j0 : j0 + n], n)
        t += 4
    while t < k:
        c0 = v[t]
        x0 = xt[base + t, j0 : j0 + n]
        for j in range(n):
            r[j] += c0 * x0[j]
        t += 1


@_jit(inline="always")
def _signal_dot(q: np.ndarray, xt, base: int, out: np.ndarray, o: int, j0: int, n: int, k: int) -> None:
    r"""``out[o + t] += Σ_{j<n} q[j] xt[base + t, j_0 + j]`` for ``t < k``, four taps per sweep over ``q``."""
    t = 0
    while t + 4 <= k:
        g0, g1, g2, g3 = _dot4(q, xt[base + t, j0 : j0 + n], xt[base + t + 1, j0 : j0 + n],
                               xt[base + t + 2, j0 : j0 + n], xt[base + t + 3, j0 : j0 + n], n)
        out[o + t] += g0
        out[o + t + 1] += g1
        out[o + t + 2] += g2
        out[o + t + 3] += g3
        t += 4
    while t < k:
        x0 = xt[base + t, j0 : j0 + n]
        g0 = 0.0
        for j in range(n):
            g0 += q[j] * x0[j]
        out[o + t] += g0
        t += 1


@_jit(inline="always")
def _signal_fused8(xt, yt, v, a: int, s: int, j0: int, n: int, delta: float, inv: float, need_value: bool,
                   out: np.ndarray) -> float:
    r"""Output ``a`` of ``n`` samples, pseudo-Huber, ``k_v ≤ 8``, in a single loop over the samples:
    ``out[t] += Σ_j ℓ'(r_j) xt[a s + t, j_0 + j]``; returns ``Σ_j ℓ(r_j)`` (0 unless ``need_value``).

    The eight taps are named scalars, so each ``x`` is loaded once for the residual and the products and the eight
    sums stay in registers.  Taps ``t ≥ k_v`` have ``c_t = 0`` and their ``x`` replaced by 0 (an infinite ``x`` read
    there must not make ``0·∞``)."""
    k = v.size
    base = a * s
    last = base + k - 1
    c0 = v[0]
    c1 = v[1] if k > 1 else 0.0
    c2 = v[2] if k > 2 else 0.0
    c3 = v[3] if k > 3 else 0.0
    c4 = v[4] if k > 4 else 0.0
    c5 = v[5] if k > 5 else 0.0
    c6 = v[6] if k > 6 else 0.0
    c7 = v[7] if k > 7 else 0.0
    x0, x1 = xt[base, j0 : j0 + n], xt[min(base + 1, last), j0 : j0 + n]
    x2, x3 = xt[min(base + 2, last), j0 : j0 + n], xt[min(base + 3, last), j0 : j0 + n]
    x4, x5 = xt[min(base + 4, last), j0 : j0 + n], xt[min(base + 5, last), j0 : j0 + n]
    x6, x7 = xt[min(base + 6, last), j0 : j0 + n], xt[min(base + 7, last), j0 : j0 + n]
    k1, k2, k3, k4, k5, k6, k7 = k > 1, k > 2, k > 3, k > 4, k > 5, k > 6, k > 7
    yr = yt[a, j0 : j0 + n]
    g0 = g1 = g2 = g3 = g4 = g5 = g6 = g7 = 0.0
    acc = 0.0
    for j in range(n):
        u0 = x0[j]
        u1 = x1[j] if k1 else 0.0
        u2 = x2[j] if k2 else 0.0
        u3 = x3[j] if k3 else 0.0
        u4 = x4[j] if k4 else 0.0
        u5 = x5[j] if k5 else 0.0
        u6 = x6[j] if k6 else 0.0
        u7 = x7[j] if k7 else 0.0
        r = (((c0 * u0 + c1 * u1) + (c2 * u2 + c3 * u3)) + ((c4 * u4 + c5 * u5) + (c6 * u6 + c7 * u7))) - yr[j]
        val, d = _pseudo_huber_terms(r, delta, inv, need_value)
        acc += val
        g0 += d * u0
        g1 += d * u1
        g2 += d * u2
        g3 += d * u3
        g4 += d * u4
        g5 += d * u5
        g6 += d * u6
        g7 += d * u7
    g = (g0, g1, g2, g3, g4, g5, g6, g7)
    for t in range(k):
        out[t] += g[t]
    return acc


@_jit(nogil=True)
def signal_pass_blocks(xt, yt, v, s: int, lid: int, p1: float, p2: float, need_value: bool, block: int, b0: int,
                       b1: int, part: np.ndarray, vals: np.ndarray) -> None:
    r"""Blocks ``b0 … b1−1`` of ``block`` samples of 1D data (``xt``: ``d_0 × m``, ``yt``: ``d_N × m``, final filter
    ``v`` flat, stride ``s``): ``part[b] += Σ ℓ'(r_{j,a}) h_{j,a}``, ``vals[b] = Σ ℓ(r_{j,a})``.

    Per output ``a``: the residuals of the block's samples (:func:`_signal_residual`), ``(ℓ, ℓ')`` in place
    (:func:`row_loss`), then the products with the patch rows ``a s + t`` (:func:`_signal_dot`); pseudo-Huber with
    ``k_v ≤ 8`` in one loop instead (:func:`_signal_fused8`: on 2 000 and 20 000 signals of d_0 = 256, k_v = 7, one
    thread, 1.4× faster than the three loops; for log cosh, whose terms need more registers, the old row layout's
    fused loop was 10 % slower).  Releases the GIL.
    """
    DW, m = yt.shape
    r = np.empty(block)
    fused = lid == 2 and v.size <= 8
    inv = 1.0 / p1
    for b in range(b0, b1):
        j0 = b * block
        n = min(m, j0 + block) - j0
        acc = 0.0
        pb = part[b]
        for a in range(DW):
            if fused:
                if need_value:
                    acc += _signal_fused8(xt, yt, v, a, s, j0, n, p1, inv, True, pb)
                else:
                    _signal_fused8(xt, yt, v, a, s, j0, n, p1, inv, False, pb)
                continue
            _signal_residual(r, xt, yt, v, a, s, j0, n)
            acc += row_loss(r, n, lid, p1, p2, need_value)
            _signal_dot(r, xt, a * s, pb, 0, j0, n, v.size)
        vals[b] = acc


@_jit(nogil=True)
def signal_gram_blocks(xt, yt, v, s: int, lid: int, p1: float, p2: float, block: int, b0: int, b1: int,
                       part: np.ndarray, vals: np.ndarray) -> None:
    r"""Blocks ``b0 … b1−1`` of :func:`signal_weighted_gram`: ``part[b]`` (flat ``k_v × k_v``) gets the upper
    triangle of ``Σ ℓ''(r_{j,a}) h_{j,a} h_{j,a}ᵀ`` over the block's samples; ``vals[b] = 0``.

    Per output ``a``: the residuals (:func:`_signal_residual`), ``ℓ''`` in place (:func:`row_d2`), then for each tap
    ``p`` the products ``d_j = ℓ''(r_j) xt[a s + p, j]`` and their dot products with the rows of the taps ``q ≥ p``
    (:func:`_signal_dot`).  Releases the GIL.
    """
    DW, m = yt.shape
    k = v.size
    r = np.empty(block)
    d = np.empty(block)
    for b in range(b0, b1):
        j0 = b * block
        n = min(m, j0 + block) - j0
        pb = part[b]
        for a in range(DW):
            _signal_residual(r, xt, yt, v, a, s, j0, n)
            row_d2(r, n, lid, p1, p2)
            for p in range(k):
                xp = xt[a * s + p, j0 : j0 + n]
                for j in range(n):
                    d[j] = r[j] * xp[j]
                _signal_dot(d, xt, a * s + p, pb, p * k + p, j0, n, k - p)
        vals[b] = 0.0


@_jit(nogil=True)
def channel_pass_blocks(x, y, V, sh: int, sw: int, lid: int, p1: float, p2: float, need_value: bool, block: int,
                        b0: int, b1: int, part: np.ndarray, vals: np.ndarray) -> None:
    r""":func:`data_pass_blocks` with channels: inputs ``x`` ``(m, c_0, H, W)``, targets ``y`` ``(m, c_N, d_h, d_w)``,
    final filter ``V`` ``(c_N, c_0, k_h, k_w)``; ``part[b]`` is ``Σ ℓ'(r) h`` flat in ``V``'s order.

    Per sample ``j``, output channel ``o`` and output row ``a_1``: the residual row
    ``r_{a_2} = Σ_{c,t} V[o, c, t] x[j, c, a_1 s_h + t_1, a_2 s_w + t_2] − y[j, o, a_1, a_2]`` (one
    :func:`_correlate_rows_add` per input channel), ``(ℓ, ℓ')`` in place (:func:`row_loss`), then for every input
    channel ``c`` the products ``Σ_{a_2} ℓ'(r_{a_2}) x[j, c, a_1 s_h + t_1, a_2 s_w + t_2]`` into the entries
    ``(o, c, t)`` (:func:`_patch_dot`).  The patch matrix is never formed.  Releases the GIL.
    """
    m, cN, DH, DW = y.shape
    c0, KH, KW = V.shape[1], V.shape[2], V.shape[3]
    K = KH * KW
    row = np.empty(DW)
    for b in range(b0, b1):
        acc = 0.0
        pb = part[b]
        for j in range(b * block, min(m, (b + 1) * block)):
            xj = x[j]
            for o in range(cN):
                for a1 in range(DH):
                    _channel_residual_row(row, xj, y[j, o, a1], V[o], a1, sh, sw, DW)
                    acc += row_loss(row, DW, lid, p1, p2, need_value)
                    for c in range(c0):
                        _patch_dot(row, xj, pb, (o * c0 + c) * K, c, a1, sh, sw, KH, KW, DW)
        vals[b] = acc


@_jit(nogil=True)
def loss_terms_padded_blocks(full, y, lid: int, p1: float, p2: float, need_value: bool, block: int, b0: int,
                             b1: int, vals: np.ndarray) -> None:
    """Blocks ``b0 … b1−1`` of :func:`loss_terms_padded`: ``vals[b] = Σ ℓ`` over the block's samples."""
    m, DH, DW = y.shape
    for b in range(b0, b1):
        acc = 0.0
        for j in range(b * block, min(m, (b + 1) * block)):
            for a1 in range(DH):
                fr = full[j, a1]
                yr = y[j, a1]
                for a2 in range(DW):
                    fr[a2] -= yr[a2]
                acc += row_loss(fr, DW, lid, p1, p2, need_value)
                fr[DW:] = 0.0
            full[j, DH:] = 0.0
        vals[b] = acc


@_jit(nogil=True)
def spectral_sum_rows(Xh, Qh, a0: int, a1: int, out) -> None:
    r"""Rows ``a0 … a1−1`` of ``Σ_j X̂_j \overline{Q̂_j}``."""
    m, _, B = Xh.shape
    for a in range(a0, a1):
        for j in range(m):
            for b in range(B):
                out[a, b] += Xh[j, a, b] * Qh[j, a, b].conjugate()


@_jit(nogil=True)
def data_pass_serial(x, y, xt, yt, v, sh: int, sw: int, lid: int, p1: float, p2: float, need_value: bool,
                     block: int, part: np.ndarray, vals: np.ndarray, out: np.ndarray) -> float:
    r""":func:`data_pass` (images) or :func:`signal_pass` (1D: ``xt`` not empty) in one thread, from compiled code:
    ``out ← Σ_b part[b] = Hᵀℓ'(r)`` (flat, unnormalized); returns ``Σ ℓ(r)`` (NaN unless ``need_value``).

    The same blocks of ``block`` samples as the threaded passes, summed in block order (``part``: ``nb × k_v``,
    ``vals``: ``nb``, scratch).
    """
    nb = part.shape[0]
    part[:, :] = 0.0
    if xt.size > 0:
        signal_pass_blocks(xt, yt, v[0], sw, lid, p1, p2, need_value, block, 0, nb, part, vals)
    else:
        data_pass_blocks(x, y, v, sh, sw, lid, p1, p2, need_value, block, 0, nb, part, vals)
    out[:] = 0.0
    acc = 0.0
    for b in range(nb):
        acc += vals[b]
        for t in range(out.size):
            out[t] += part[b, t]
    return acc if need_value else np.nan


@_jit(nogil=True)
def weighted_gram_serial(x, y, xt, yt, v, sh: int, sw: int, lid: int, p1: float, p2: float, block: int,
                         part: np.ndarray, vals: np.ndarray, row: np.ndarray, dx: np.ndarray, out: np.ndarray) -> None:
    r"""``out ← Hᵀ diag(ℓ''(r)) H = Σ_a ℓ''(r_a) h_a h_aᵀ`` (``k_v × k_v``, unnormalized) in one thread, from compiled
    code (:func:`weighted_gram` is the BLAS version for large ``k_v``); 1D data (``xt`` not empty) by the blocks of
    :func:`signal_weighted_gram` (``part``: ``nb × k_v²``, ``vals``: ``nb``, scratch), images as follows.

    Output row by output row: the residuals ``r`` and ``ℓ''(r)`` of the row (``row``, scratch of ``d_N`` entries),
    then for each tap ``p`` the row ``ℓ''(r_a) x_{a s + p}`` (``dx``, scratch) and its dot products with the taps
    ``q ≥ p`` (for stride 1 four taps per sweep, :func:`_correlate_dot`); the upper triangle is mirrored at the end.
    """
    m, DH, DW = y.shape
    KH, KW = v.shape
    K = KH * KW
    out[:, :] = 0.0
    if xt.size > 0:  # 1D: the blocks of signal_weighted_gram (part: nb × k_v², scratch), summed in block order
        part[:, :] = 0.0
        signal_gram_blocks(xt, yt, v[0], sw, lid, p1, p2, block, 0, part.shape[0], part, vals)
        for b in range(part.shape[0]):
            for p in range(K):
                for q in range(p, K):
                    out[p, q] += part[b, p * K + q]
        for p in range(K):
            for q in range(p + 1, K):
                out[q, p] = out[p, q]
        return
    for j in range(m):
        for a1 in range(DH):
            _residual_row(row, x, y[j, a1], v, j, a1, sh, sw)
            row_d2(row, DW, lid, p1, p2)
            for p in range(K):
                t1, t2 = p // KW, p % KW
                xp = x[j, a1 * sh + t1]
                if sw == 1:  # Σ_a dx_a x_{a+q}, four taps q per sweep (_correlate_dot); upper triangle only
                    xs = xp[t2 : t2 + DW]
                    for a2 in range(DW):
                        dx[a2] = row[a2] * xs[a2]
                    _correlate_dot(dx, xp[t2:], out[p], p, DW, KW - t2)
                    for u1 in range(t1 + 1, KH):
                        _correlate_dot(dx, x[j, a1 * sh + u1], out[p], u1 * KW, DW, KW)
                    continue
                for a2 in range(DW):
                    dx[a2] = row[a2] * xp[a2 * sw + t2]
                for q in range(p, K):
                    xq = x[j, a1 * sh + q // KW]
                    oq = q % KW
                    acc = 0.0
                    for a2 in range(DW):
                        acc += dx[a2] * xq[a2 * sw + oq]
                    out[p, q] += acc
    for p in range(K):
        for q in range(p + 1, K):
            out[q, p] = out[p, q]


def _threads() -> int:
    """Threads for the data passes: Numba's thread count (``NUMBA_NUM_THREADS``, default the CPUs available)."""
    return max(1, int(_nb.config.NUMBA_NUM_THREADS)) if HAVE_NUMBA else 1


_pool = None
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    """In a forked child the parent's pool threads do not exist: start a fresh pool there when one is needed."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _run_split(fn, n: int, size: int) -> None:
    """``fn(lo, hi)`` over ``[0, n)``: in one call below :data:`PARALLEL_MIN_ENTRIES` data entries, else split in
    contiguous ranges over a thread pool (the kernels release the GIL)."""
    global _pool
    threads = min(_threads(), n)
    if threads <= 1 or size < PARALLEL_MIN_ENTRIES:
        fn(0, n)
        return
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                from concurrent.futures import ThreadPoolExecutor

                _pool = ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="lcnflow-kernels")
    cuts = [n * i // threads for i in range(threads + 1)]
    futures = [_pool.submit(fn, lo, hi) for lo, hi in itertools.pairwise(cuts)]
    for f in futures:
        f.result()


def data_pass(x, y, v, sh: int, sw: int, lid: int, p1: float, p2: float, need_value: bool):
    r"""``(Σ ℓ(r), Hᵀℓ'(r))`` for ``r = Hv − y`` (unnormalized), in one pass over 3D ``x``/``y`` (images; 1D signals
    as images of height 1, though :func:`signal_pass` runs them faster).

    Fixed blocks of samples, run by threads above :data:`PARALLEL_MIN_ENTRIES` data entries; the per-block partial
    sums are added in block order, so the result does not depend on the thread count (:func:`data_pass_blocks`).
    """
    return _block_pass(y.shape[0], _per_sample(y), block_size(y), v.size, need_value,
                       lambda block, lo, hi, part, vals: data_pass_blocks(x, y, v, sh, sw, lid, p1, p2, need_value,
                                                                          block, lo, hi, part, vals))


def signal_pass(xt, yt, v, s: int, lid: int, p1: float, p2: float, need_value: bool):
    r"""``(Σ ℓ(r), Hᵀℓ'(r))`` for 1D data with the samples innermost: ``xt`` (``d_0 × m``) and ``yt`` (``d_N × m``)
    the transposed signals, ``v`` the flat final filter, ``s`` its stride (:func:`signal_pass_blocks`); the blocks
    and threads of :func:`data_pass`."""
    return _block_pass(yt.shape[1], yt.shape[0], SIGNAL_BLOCK, v.size, need_value,
                       lambda block, lo, hi, part, vals: signal_pass_blocks(xt, yt, v, s, lid, p1, p2, need_value,
                                                                            block, lo, hi, part, vals))


def signal_weighted_gram(xt, yt, v, s: int, lid: int, p1: float, p2: float) -> np.ndarray:
    r"""``Σ_a ℓ''(r_a)\, h_a h_aᵀ = Hᵀ diag(ℓ'') H`` (``k_v × k_v``, unnormalized) for 1D data with the samples
    innermost (as :func:`signal_pass`; :func:`signal_gram_blocks`), the blocks and threads of :func:`data_pass`."""
    k = v.size
    _, flat = _block_pass(yt.shape[1], yt.shape[0], SIGNAL_BLOCK, k * k, False,
                          lambda block, lo, hi, part, vals: signal_gram_blocks(xt, yt, v, s, lid, p1, p2, block, lo,
                                                                               hi, part, vals))
    upper = flat.reshape(k, k)
    return np.triu(upper) + np.triu(upper, 1).T


def channel_data_pass(x, y, V, sh: int, sw: int, lid: int, p1: float, p2: float, need_value: bool):
    r"""``(Σ ℓ(r), g)`` with channels (unnormalized), in one pass over 4D ``x``/``y`` (1D: height 1):

    .. math:: r[j, o, a] = \sum_{c, t} x[j, c, a·s + t]\, V[o, c, t] − y[j, o, a], \qquad
              g[o, c, t] = \sum_{j, a} ℓ'(r[j, o, a])\, x[j, c, a·s + t]

    (``a·s + t`` per axis), i.e. ``ℓ'(R)ᵀH`` for the multichannel patch matrix ``H`` without forming it.  ``x``
    ``(m, c_0, H, W)``, ``y`` ``(m, c_N, d_h, d_w)``, ``V`` ``(c_N, c_0, k_h, k_w)``, all C-contiguous float64;
    ``g`` is flat in ``V``'s order.  The blocks and threads of :func:`data_pass` (:func:`channel_pass_blocks`).
    """
    return _block_pass(y.shape[0], _per_sample(y), block_size(y), V.size, need_value,
                       lambda block, lo, hi, part, vals: channel_pass_blocks(x, y, V, sh, sw, lid, p1, p2,
                                                                             need_value, block, lo, hi, part, vals))


def _block_pass(m: int, per: int, block: int, width: int, need_value: bool, blocks) -> tuple[float, np.ndarray]:
    """The block and thread frame of the data passes over ``m`` samples of ``per`` data entries each:
    ``blocks(block, lo, hi, part, vals)`` fills the partial sums of blocks ``lo … hi−1`` of ``block`` samples
    (``part``: ``nb × width``, ``vals``: ``nb``), run by :func:`_run_split`; returns ``(Σ vals, Σ part)`` added in
    block order (NaN value unless ``need_value``)."""
    nb = (m + block - 1) // block
    part = np.zeros((nb, width))
    vals = np.zeros(nb)
    _run_split(lambda lo, hi: blocks(block, lo, hi, part, vals), nb, m * per)
    return (float(np.sum(vals)) if need_value else math.nan), np.sum(part, axis=0)


def loss_terms_padded(full, y, lid: int, p1: float, p2: float, need_value: bool) -> float:
    """On ``full`` (``m × H × W``): ``ℓ'(full − y)`` on the leading ``d_N`` block, zero elsewhere; returns ``Σ ℓ``."""
    block = block_size(y)
    nb = (y.shape[0] + block - 1) // block
    vals = np.zeros(nb)
    _run_split(lambda lo, hi: loss_terms_padded_blocks(full, y, lid, p1, p2, need_value, block, lo, hi, vals),
               nb, y.size)
    return float(np.sum(vals)) if need_value else math.nan


def spectral_sum(Xh, Qh) -> np.ndarray:
    r"""``Σ_j X̂_j \overline{Q̂_j}`` over the first axis."""
    out = np.zeros(Xh.shape[1:], dtype=np.complex128)
    _run_split(lambda lo, hi: spectral_sum_rows(Xh, Qh, lo, hi, out), Xh.shape[1], Xh.size)
    return out


def block_size(y: np.ndarray) -> int:
    """Samples per block of the row passes (the first axis of ``y``): about 16 384 data entries, whatever the thread
    count."""
    return max(1, 16_384 // _per_sample(y))


def _per_sample(y: np.ndarray) -> int:
    """Data entries per sample of ``y`` (samples on the first axis)."""
    return max(1, math.prod(y.shape[1:]))


@_jit(nogil=True)
def scaled_patches(x, y, v, sh: int, sw: int, lid: int, p1: float, p2: float, start: int, P: np.ndarray) -> int:
    r"""Rows ``start, start+1, …`` of ``diag(√ℓ''(r)) H`` into ``P`` (as many as fit); returns how many were written.

    Row ``(j, a)`` is the patch ``h_{j,a}`` of output ``a`` of sample ``j`` times ``√ℓ''(r_{j,a})``, where
    ``r_{j,a} = h_{j,a}·v − y_{j,a}`` (``ℓ'' ≥ 0`` for every built-in loss; a negative value gives NaN).
    """
    m, DH, DW = y.shape
    KH, KW = v.shape
    count = min(P.shape[0], m * DH * DW - start)
    for n in range(count):
        row = start + n
        a2 = row % DW
        a1 = (row // DW) % DH
        j = row // (DW * DH)
        r = -y[j, a1, a2]
        for t1 in range(KH):
            xr = x[j, a1 * sh + t1]
            for t2 in range(KW):
                h = xr[a2 * sw + t2]
                P[n, t1 * KW + t2] = h
                r += v[t1, t2] * h
        d2 = _loss_d2(r, lid, p1, p2)
        sq = math.sqrt(d2) if d2 >= 0 else np.nan
        for t in range(KH * KW):
            P[n, t] *= sq
    return count


def weighted_gram(x, y, v, sh: int, sw: int, lid: int, p1: float, p2: float, rows: int) -> np.ndarray:
    r"""``Σ_a ℓ''(r_a)\, h_a h_aᵀ = Hᵀ diag(ℓ'') H`` (``k_v × k_v``, unnormalized), ``h_a`` the patch of output ``a``.

    Blocks of ``rows`` scaled patches (:func:`scaled_patches`) go through the BLAS rank-k update ``C += PᵀP``
    (``dsyrk``, half the flops of a general product); the upper triangle is mirrored at the end.
    """
    from scipy.linalg.blas import dsyrk

    K = v.size
    total = y.size
    P = np.empty((min(rows, total), K))
    G = np.zeros((K, K), order="F")
    start = 0
    while start < total:
        n = scaled_patches(x, y, v, sh, sw, lid, p1, p2, start, P)
        block = P[:n]
        # block.T is Fortran-ordered K × n, so dsyrk computes block.T @ block without a copy
        G = dsyrk(1.0, block.T, beta=1.0, c=G, trans=0, lower=0, overwrite_c=1)
        start += n
    upper = np.triu(G)
    return upper + np.triu(G, 1).T


@_jit(nogil=True)
def channel_gram_blocks(x, y, V, sh: int, sw: int, lid: int, p1: float, p2: float, block: int, b0: int, b1: int,
                        part: np.ndarray, vals: np.ndarray) -> None:
    r"""Blocks ``b0 … b1−1`` of samples of :func:`channel_weighted_gram`: ``part[b]`` (flat ``c_N × n × n``,
    ``n = c_0 k_v``) gets the upper triangles of ``Σ ℓ''(r[j, o, a]) h_{j,a} h_{j,a}ᵀ`` over the block's samples;
    ``vals[b] = 0``.

    Per sample, output channel ``o`` and output row ``a_1``: the residual row (:func:`_correlate_rows_add`), then
    ``ℓ''`` in place (:func:`row_d2`), then for each patch entry ``p = (c, t)`` the row
    ``dx_{a_2} = ℓ''(r_{a_2}) x[j, c, a_1 s_h + t_1, a_2 s_w + t_2]`` and its products with the entries ``q ≥ p``
    (:func:`_patch_dot`; for the rest of the filter row of ``p`` at stride 1, :func:`_correlate_dot` from tap
    ``t_2``).  Releases the GIL.
    """
    m, cN, DH, DW = y.shape
    c0, KH, KW = V.shape[1], V.shape[2], V.shape[3]
    K = KH * KW
    n = c0 * K
    row = np.empty(DW)
    dx = np.empty(DW)
    for b in range(b0, b1):
        pb = part[b]
        for j in range(b * block, min(m, (b + 1) * block)):
            xj = x[j]
            for o in range(cN):
                for a1 in range(DH):
                    _channel_residual_row(row, xj, y[j, o, a1], V[o], a1, sh, sw, DW)
                    row_d2(row, DW, lid, p1, p2)
                    for p in range(n):
                        c, t = p // K, p % K
                        t1, t2 = t // KW, t % KW
                        xp = xj[c, a1 * sh + t1]
                        for a2 in range(DW):
                            dx[a2] = row[a2] * xp[a2 * sw + t2]
                        out = pb[(o * n + p) * n : (o * n + p + 1) * n]
                        if sw == 1:  # the rest of p's filter row: taps t2 … KW−1, four per sweep
                            _correlate_dot(dx, xp[t2:], out, p, DW, KW - t2)
                        else:
                            for q2 in range(t2, KW):
                                acc = 0.0
                                for a2 in range(DW):
                                    acc += dx[a2] * xp[a2 * sw + q2]
                                out[p - t2 + q2] += acc
                        for u1 in range(t1 + 1, KH):  # the later filter rows of channel c
                            xu = xj[c, a1 * sh + u1]
                            if sw == 1:
                                _correlate_dot(dx, xu, out, c * K + u1 * KW, DW, KW)
                            else:
                                for q2 in range(KW):
                                    acc = 0.0
                                    for a2 in range(DW):
                                        acc += dx[a2] * xu[a2 * sw + q2]
                                    out[c * K + u1 * KW + q2] += acc
                        for c2 in range(c + 1, c0):  # the later channels, all their taps
                            _patch_dot(dx, xj, out, c2 * K, c2, a1, sh, sw, KH, KW, DW)
        vals[b] = 0.0


def channel_weighted_gram(x, y, V, sh: int, sw: int, lid: int, p1: float, p2: float) -> np.ndarray:
    r"""The diagonal blocks of ``∇²ℒ`` with channels (unnormalized): for each output channel ``o``,

    .. math:: Γ_o = \sum_{j, a} ℓ''(r[j, o, a])\, h_{j,a} h_{j,a}^\top \qquad (c_0 k_v × c_0 k_v),

    ``h_{j,a}`` the multichannel patch of output ``a`` of sample ``j`` (``x[j, c, a·s + t]`` over ``(c, t)``), shapes
    as in :func:`channel_data_pass`; returns ``(c_N, c_0 k_v, c_0 k_v)``.  The patch matrix is never formed: the
    blocks and threads of :func:`data_pass` run :func:`channel_gram_blocks` (upper triangles), mirrored at the end.
    """
    cN, n = V.shape[0], V[0].size
    _, flat = _block_pass(y.shape[0], _per_sample(y), block_size(y), cN * n * n, False,
                          lambda block, lo, hi, part, vals: channel_gram_blocks(x, y, V, sh, sw, lid, p1, p2, block,
                                                                                lo, hi, part, vals))
    upper = np.triu(flat.reshape(cN, n, n))
    return upper + np.triu(upper, 1).transpose(0, 2, 1)


# ---------------------------------------------------------------------------------------------- FFT correlations
class SpectralCorrelator:
    r"""``Hv`` and ``Hᵀq`` of a stride-1 final filter by FFT over whole images (or signals).

    ``(Hv)_{j,a} = Σ_t x_{j,a+t} v_t`` is the valid part of the circular correlation of ``x_j`` with ``v`` (zero
    padded to the image size), so ``Hv = F^{-1}(X̂_j \overline{V̂})`` restricted to ``a < d_N``; likewise
    ``Hᵀq = F^{-1}(Σ_j X̂_j \overline{Q̂_j})`` restricted to ``t < k_v``, ``q_j`` zero outside ``a < d_N``.  No index
    wraps around in either restriction, so both are exact up to rounding (about ``ε log n`` relative to the terms).
    The transforms ``X̂_j`` of the inputs are computed once.
    """

    def __init__(self, x: np.ndarray, kv: tuple[int, int]):
        import scipy.fft

        self._fft = scipy.fft
        self.shape = x.shape[1:]
        self.kv = kv
        self.workers = _threads()
        self.xhat = scipy.fft.rfft2(x, workers=self.workers)

    def value_grad(self, v: np.ndarray, y: np.ndarray, lid: int, p1: float, p2: float, need_value: bool):
        """``(Σ ℓ(r), Hᵀℓ'(r))`` (unnormalized), ``r = Hv − y``, ``v`` of shape ``k_v`` (2D), ``y`` ``(m, *d_N)``."""
        fft = self._fft
        vhat = fft.rfft2(v, s=self.shape)
        full = fft.irfft2(self.xhat * vhat.conj(), s=self.shape, workers=self.workers)
        value = loss_terms_padded(full, y, lid, p1, p2, need_value)
        qhat = fft.rfft2(full, workers=self.workers)
        g = fft.irfft2(spectral_sum(self.xhat, qhat), s=self.shape)
        return value, np.ascontiguousarray(g[: self.kv[0], : self.kv[1]]).reshape(-1)


def warm_up() -> dict[str, float]:
    """Compile (or load from the cache) every kernel on a tiny problem; returns and records seconds per kernel."""
    lay = layout([(2,), (2,)], [(1,), (1,)])
    w = np.array([1.0, 0.5, -0.3, 2.0])
    x = np.random.default_rng(0).standard_normal((2, 1, 6))
    y = np.zeros((2, 1, 4))
    v = np.ones((1, 3))
    jobs = {
        "product_except": lambda: product_except(w, *lay[:4], lay.off, -1, -1),
        "vjp": lambda: vjp(w, *lay[:4], lay.off, v),
        "jacobian": lambda: jacobian(w, *lay[:4], lay.off),
        "hessian_contraction": lambda: hessian_contraction(w, *lay[:4], lay.off, v),
        "products_many": lambda: products_many(w[None], *lay[:4], lay.off),
        "second_order_parts": lambda: second_order_parts(w[None], *lay[:4], lay.off, v[None]),
        "square_value_grad": lambda: square_value_grad(w, *lay[:4], lay.off, np.zeros(3), np.eye(3), 0.0, True),
        "data_pass": lambda: data_pass(x, y, v, 1, 1, 4, 1.0, 0.0, True),
        "signal_pass": lambda: signal_pass(x[:, 0].T.copy(), y[:, 0].T.copy(), v[0], 1, 2, 1.0, 0.0, True),
        "signal_weighted_gram": lambda: signal_weighted_gram(x[:, 0].T.copy(), y[:, 0].T.copy(), v[0], 1, 4, 1.0,
                                                             0.0),
        "loss_terms_padded": lambda: loss_terms_padded(x.copy(), y, 4, 1.0, 0.0, True),
        "scaled_patches": lambda: scaled_patches(x, y, v, 1, 1, 4, 1.0, 0.0, 0, np.empty((4, 3))),
        "channel_data_pass": lambda: channel_data_pass(x[:, None], y[:, None], v[None, None], 1, 1, 4, 1.0, 0.0, True),
        "channel_weighted_gram": lambda: channel_weighted_gram(x[:, None], y[:, None], v[None, None], 1, 1, 4, 1.0,
                                                               0.0),
        "loss_terms": lambda: loss_terms(np.zeros(2), 4, 1.0, 0.0, 0),
        "scale_terms": lambda: scale_terms(w, lay.off),
        "step_terms": lambda: step_terms(w, w, lay.off, np.zeros(1)),
    }
    for name, job in jobs.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            job()
        COMPILE_SECONDS[name] = time.perf_counter() - t0
    return dict(COMPILE_SECONDS)
