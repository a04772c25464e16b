r"""The compiled integrator: many steps of the flow per call, with the driver's per-step tests inside.

For the square loss a gradient from the statistics ``(G, v̂)`` costs well under a microsecond of arithmetic, and for
the other built-in losses one pass over the data (about 0.1 ms for 500 signals of 64 samples), so a run's time would
otherwise be spent in the Python around it: the integrator's step logic, the driver's tests and the recorder.
:class:`CompiledRodas4Stepper` runs the scheme of :class:`~lcnflow.dynamics.steppers.Rodas4Stepper` (Rodas4: order
4, L-stable, exact Hessian — a third of the steps ``ode23s`` takes on the same runs, each with one Hessian and one
LU factorization) in one Numba function, :func:`rodas4_segment`, with the gradients and the Hessian evaluated into
one workspace (no allocation per evaluation; the function-space part from the statistics or from the data passes of
:mod:`lcnflow.kernels`, :func:`function_space_args`); it takes steps until something needs the driver:

* a possible candidate limit — the driver's cheap pre-test ``‖∇L(w)‖ ≤ 100 · tol · S_ub(w)``, where
  ``S_ub = D(w)(f_0 + κ Π_i ‖w^{(i)}‖_1) ≥ S(w)`` (:func:`~lcnflow.analysis.certify.gradient_scale`);
* the flow leaving the last rejected candidate (``‖∇L‖ > gtol · S_ub`` while the tolerance is tightened);
* ``‖w‖`` above the blow-up bound or collapsed onto the origin, a non-finite state, a step size that underflows;
* the time limit (the next save time, ``t_max`` or the stall time), a step budget, a full record buffer, or
  steps that became small against the clock (it restarts).

Each accepted step's arc length and invariant drift are accumulated as :class:`~lcnflow.dynamics.result.Recorder`
does, and the steps the recorder keeps (by its rules: arc length, estimated loss fall, time since the last event,
absolute time) are written to a buffer the driver hands to it.
The driver then applies exactly the tests it applies after a Python step, so a run takes the same decisions on
either path; the compiled and Python steppers agree to rounding (``tests/test_compiled_flow.py``).
"""

from __future__ import annotations

import math

import numpy as np

from lcnflow import kernels as K
from lcnflow.analysis.certify import problem_scales
from lcnflow.dynamics.result import LOSS_STEP
from lcnflow.dynamics.steppers import RODAS4_A, RODAS4_C, RODAS4_GAMMA, RODAS4_M, Rodas4Stepper, _initial_step
from lcnflow.model.risk import EmpiricalRisk

# what ended a segment
STEP_BUDGET, T_LIMIT, CANDIDATE, REARM, BLOWUP, NONFINITE, UNDERFLOW, RECORD_FULL, CLOCK = range(9)

# the scalar state a segment reads and writes (one float64 array)
_T, _H, _ARC, _DRIFT, _NEXT_T, _NFEV, _NHEV, _NSTEPS, _NREC, _LOSS, _TPREV = range(11)
# the recorder's rule (lcnflow.dynamics.result.Recorder): arc length and estimated loss fall since the last record,
# ‖w‖ and the smallest loss recorded, L(0), the last event's time, the next time by the time-since-the-event rule,
# whether the next step is recorded (an event at a step that was not), the arc-length step and the loss step (inf: off)
_ARC_SINCE, _FALL_SINCE, _NORM_REC, _MIN_LOSS, _LOSS0, _EVENT_T, _NEXT_REL, _PENDING, _ARC_STEP, _LOSS_STEP = (
    range(11, 21))
_STATE_SIZE = 21

#: Rows of the record buffer (a segment returns when it is full).
RECORD_ROWS = 64


# ------------------------------------------------------------------ square-loss evaluations without allocations
# (Functions called from one place only are inlined into their caller, inline="always": each compiled function
# costs a compilation of its own, and every compiled caller optimizes its code again — the first run waits for it.)
# A workspace holds, for the current w, the prefix products pre[i] = w⁽¹⁾ ∗ ⋯ ∗ w⁽ⁱ⁾ and the suffix products
# suf[i] = w⁽ⁱ⁺¹⁾ ∗ ⋯ ∗ w⁽ᴺ⁾ (dilated filters, as 2D arrays with their shapes), from which π = pre[N], the cofactor
# c_i = pre[i−1] ∗ suf[i] of layer i (dπᵀg and the Jacobian) and the Hessian's e_il follow.  Every step of a segment
# evaluates into the same buffers; the kernels of lcnflow.kernels (which allocate) are the reference.


@K._jit()
def _layer_conv(a, ah, aw, w, o, kh, kw, dh, dw, out):
    """``out[:oh, :ow] = a[:ah, :aw] ∗ (layer filter w[o:], kh × kw taps, dilation dh × dw)``; returns ``(oh, ow)``."""
    oh, ow = ah + (kh - 1) * dh, aw + (kw - 1) * dw
    out[:oh, :ow] = 0.0
    for j1 in range(kh):
        for j2 in range(kw):
            c = w[o + j1 * kw + j2]
            o1, o2 = j1 * dh, j2 * dw
            for x in range(ah):
                for y in range(aw):
                    out[o1 + x, o2 + y] += c * a[x, y]
    return oh, ow


@K._jit()
def _full_conv(a, ah, aw, b, bh, bw, out):
    """``out[:ah+bh−1, :aw+bw−1] = a ∗ b`` (full 2D convolution); returns the shape."""
    oh, ow = ah + bh - 1, aw + bw - 1
    out[:oh, :ow] = 0.0
    for i1 in range(bh):
        for i2 in range(bw):
            c = b[i1, i2]
            if c != 0.0:
                for x in range(ah):
                    for y in range(aw):
                        out[i1 + x, i2 + y] += c * a[x, y]
    return oh, ow


def _workspace(kh, kw, dh, dw):
    """The buffers of :func:`_eval` for the layers ``(kh, kw, dh, dw)`` (allocated once per stepper, in Python)."""
    n = kh.size
    KH = 1 + int(np.sum((kh - 1) * dh))
    KW = 1 + int(np.sum((kw - 1) * dw))
    return (np.zeros((n + 1, KH, KW)), np.zeros((n + 1, 2), np.int64), np.zeros((n + 1, KH, KW)),
            np.zeros((n + 1, 2), np.int64), np.zeros((3, KH, KW)), np.zeros((KH, KW)), np.zeros(KH * KW))


def _scratch(P: int, kv: int) -> tuple:
    """The buffers of :func:`rodas4_segment`'s steps for ``P`` parameters and ``k_v`` final-filter coefficients:
    ``J``, ``GJ`` (``k_v × P``), the Hessian and the matrix ``I + γh∇²L`` (``P × P``), the six stages, the stage point,
    the right-hand side, two gradients, the new point (``P``) and the LU pivots (allocated once per stepper)."""
    return (np.empty((kv, P)), np.empty((kv, P)), np.empty((P, P)), np.empty((P, P)), np.empty((6, P)), np.empty(P),
            np.empty(P), np.empty(P), np.empty(P), np.empty(P), np.empty(P, np.int64))


@K._jit(inline="always")
def _products(w, kh, kw, dh, dw, off, pre, pre_shape, suf, suf_shape):
    """Fill the prefix and suffix products of the layers at ``w``."""
    n = kh.size
    pre[0, 0, 0] = 1.0
    pre_shape[0, 0], pre_shape[0, 1] = 1, 1
    for i in range(n):
        pre_shape[i + 1, 0], pre_shape[i + 1, 1] = _layer_conv(pre[i], pre_shape[i, 0], pre_shape[i, 1], w, off[i],
                                                               kh[i], kw[i], dh[i], dw[i], pre[i + 1])
    suf[n, 0, 0] = 1.0
    suf_shape[n, 0], suf_shape[n, 1] = 1, 1
    for i in range(n - 1, -1, -1):
        suf_shape[i, 0], suf_shape[i, 1] = _layer_conv(suf[i + 1], suf_shape[i + 1, 0], suf_shape[i + 1, 1], w,
                                                       off[i], kh[i], kw[i], dh[i], dw[i], suf[i])


@K._jit()
def _cofactor(ws, i: int) -> tuple[int, int]:
    """``c_i = pre[i] ∗ suf[i+1]`` (the product of every layer but ``i``) into the workspace's ``tmp[0]``; its shape."""
    pre, pre_shape, suf, suf_shape, tmp, _, _ = ws
    return _full_conv(pre[i], pre_shape[i, 0], pre_shape[i, 1], suf[i + 1], suf_shape[i + 1, 0], suf_shape[i + 1, 1],
                      tmp[0])


#: Length of the function-space tuple of the square loss (its statistics); the data passes' tuple is longer.
_STATS_LEN = 3


@K._jit()
def _stats_value_grad(fs, v, e, ge, need_value):
    """The square loss from its statistics ``fs = (v̂, G, ℒ(v̂))``: ``ℒ = ½ eᵀGe + ℒ(v̂)``, ``∇ℒ = Ge`` into ``ge``."""
    v_hat, G, minimum = fs
    return 0.5 * K.square_terms(v, v_hat, G, e, ge) + minimum


@K._jit()
def _data_value_grad(fs, v, e, ge, need_value):
    """A built-in loss through one pass over the data: ``ℒ = (1/m) Σ ℓ(r)`` (NaN unless ``need_value``),
    ``∇ℒ = (1/m) Hᵀℓ'(r)`` into ``ge`` (``e``: scratch)."""
    x3, y3, xt, yt, sh, sw, lid, p1, p2, inv_m, block, part, vals, _, _, _ = fs
    # (the passes are compiled once per need_value: a constant in each call, so LLVM drops the unused sums)
    if need_value:
        val = K.data_pass_serial(x3, y3, xt, yt, v, sh, sw, lid, p1, p2, True, block, part, vals, e) * inv_m
    else:
        val = K.data_pass_serial(x3, y3, xt, yt, v, sh, sw, lid, p1, p2, False, block, part, vals, e) * inv_m
    KW = ge.shape[1]
    for t in range(e.size):
        ge[t // KW, t % KW] = e[t] * inv_m
    return val


@K._jit()
def _stats_curvature(fs, v):
    """``∇²ℒ`` of the square loss: the statistics' ``G``."""
    return fs[1]


@K._jit()
def _data_curvature(fs, v):
    """``∇²ℒ(v) = (1/m) Hᵀdiag(ℓ'')H`` (one pass over the data, :func:`lcnflow.kernels.weighted_gram_serial`)."""
    x3, y3, xt, yt, sh, sw, lid, p1, p2, inv_m, block, _, vals, gram_part, rows, Gv = fs
    K.weighted_gram_serial(x3, y3, xt, yt, v, sh, sw, lid, p1, p2, block, gram_part, vals, rows[0], rows[1], Gv)
    for a in range(Gv.shape[0]):
        for b in range(Gv.shape[1]):
            Gv[a, b] *= inv_m
    return Gv


def _fs_value_grad(fs, v, e, ge, need_value):
    """:func:`_stats_value_grad` or :func:`_data_value_grad`, by the kind of ``fs``; in compiled code the choice is
    made when the caller is compiled (the overload below), so a square-loss segment compiles no data pass."""
    impl = _stats_value_grad if len(fs) == _STATS_LEN else _data_value_grad
    return impl(fs, v, e, ge, need_value)


def _fs_curvature(fs, v):
    """:func:`_stats_curvature` or :func:`_data_curvature`, by the kind of ``fs`` (chosen at compile time too)."""
    return (_stats_curvature if len(fs) == _STATS_LEN else _data_curvature)(fs, v)


if K.HAVE_NUMBA:
    from numba.extending import overload

    @overload(_fs_value_grad, inline="always")
    def _ol_fs_value_grad(fs, v, e, ge, need_value):
        if len(fs) == _STATS_LEN:
            return lambda fs, v, e, ge, need_value: _stats_value_grad(fs, v, e, ge, need_value)
        return lambda fs, v, e, ge, need_value: _data_value_grad(fs, v, e, ge, need_value)

    @overload(_fs_curvature, inline="always")
    def _ol_fs_curvature(fs, v):
        if len(fs) == _STATS_LEN:
            return lambda fs, v: _stats_curvature(fs, v)
        return lambda fs, v: _data_curvature(fs, v)


@K._jit()
def _eval(w, kh, kw, dh, dw, off, fs, ws, grad, need_value):
    r"""``L(w)`` (NaN unless ``need_value``; always for the statistics), ``∇L = dπᵀ∇ℒ(π(w))`` into ``grad``, and
    ``∇ℒ(π(w))`` in π's shape in the workspace (``ws[5]``) for the Hessian; the products stay in the workspace.

    ``fs`` is the function-space risk (:func:`function_space_args`): the square loss from its statistics
    (``ℒ = ½ eᵀGe + ℒ(v̂)``, ``∇ℒ = Ge``, ``e = v − v̂``), or a built-in loss through one pass over the data
    (``ℒ = (1/m) Σ ℓ(r)``, ``∇ℒ = (1/m) Hᵀℓ'(r)``, ``r = Hv − y``: :func:`lcnflow.kernels.data_pass_serial`).
    """
    pre, pre_shape, suf, suf_shape, tmp, ge, e = ws
    _products(w, kh, kw, dh, dw, off, pre, pre_shape, suf, suf_shape)
    n = kh.size
    val = _fs_value_grad(fs, pre[n], e, ge, need_value)  # (pre[n] = π(w))
    for i in range(n):
        ch, cw = _cofactor(ws, i)
        K.vjp_layer(ge, tmp[0], ch, cw, kh, kw, dh, dw, off, i, grad)
    return val


@K._jit(inline="always")
def _fs_hessian(ws, n, fs):
    r"""``∇²ℒ(v)`` at the point the workspace holds, ``v = π(w)``: the statistics' ``G``, or ``(1/m) Hᵀdiag(ℓ'')H``
    (one pass over the data, :func:`lcnflow.kernels.weighted_gram_serial`).

    Evaluated anew at every step: Rodas4's order conditions assume the exact Jacobian, and an older ``∇²ℒ`` (kept
    while ``π(w)`` moves less than 25 %, or 1 %) multiplied the steps by 2 to 40 on planted 1D problems."""
    return _fs_curvature(fs, ws[0][n])


@K._jit(inline="always")
def _hessian_ws(w, kh, kw, dh, dw, off, G, ws, J, GJ, hess):
    r"""``∇²L = Jᵀ G J + Σ_t ∇ℒ_t ∇²π_t`` into ``hess`` (``G = ∇²ℒ``), from the workspace filled by :func:`_eval` at
    ``w`` (``J``, ``GJ``: ``k_v × P`` scratch)."""
    pre, pre_shape, suf, suf_shape, tmp, ge, _ = ws
    n = kh.size
    KW = ge.shape[1]
    K_, P = J.shape
    J[:, :] = 0.0
    for i in range(n):
        ch, cw = _cofactor(ws, i)
        K.jacobian_layer(tmp[0], ch, cw, KW, kh, kw, dh, dw, off, i, J)
    GJ[:, :] = 0.0
    for a in range(K_):
        for b in range(K_):
            gab = G[a, b]
            if gab != 0.0:
                for j in range(P):
                    GJ[a, j] += gab * J[b, j]
    for p in range(P):
        for q in range(p, P):
            s = 0.0
            for a in range(K_):
                s += J[a, p] * GJ[a, q]
            hess[p, q] = s
    # the curvature of π: blocks (i, l), i < l, from e_il = pre[i] ∗ (layers i+1 … l−1) ∗ suf[l+1]
    for i in range(n):
        for l in range(i + 1, n):  # noqa: E741
            ah, aw = pre_shape[i, 0], pre_shape[i, 1]
            src = pre[i]
            k = 1
            for m in range(i + 1, l):
                ah, aw = _layer_conv(src, ah, aw, w, off[m], kh[m], kw[m], dh[m], dw[m], tmp[k])
                src = tmp[k]
                k = 3 - k
            eh, ew = _full_conv(src, ah, aw, suf[l + 1], suf_shape[l + 1, 0], suf_shape[l + 1, 1], tmp[k])
            K.contract_block(ge, tmp[k], eh, ew, kh, kw, dh, dw, off, i, l, hess)
    for p in range(P):
        for q in range(p + 1, P):
            hess[q, p] = hess[p, q]


@K._jit(inline="always")
def _lu(A, piv):
    """In-place LU factorization with partial pivoting of the small matrix ``A``, the pivots into ``piv`` (a singular
    pivot leaves a zero on the diagonal: the solves then give non-finite values, and the step is rejected)."""
    n = A.shape[0]
    for k in range(n):
        p = k
        big = abs(A[k, k])
        for i in range(k + 1, n):
            if abs(A[i, k]) > big:
                big, p = abs(A[i, k]), i
        piv[k] = p
        if p != k:
            for j in range(n):
                A[k, j], A[p, j] = A[p, j], A[k, j]
        d = A[k, k]
        for i in range(k + 1, n):
            A[i, k] /= d
            f = A[i, k]
            if f != 0.0:
                for j in range(k + 1, n):
                    A[i, j] -= f * A[k, j]


@K._jit(inline="always")
def _lu_solve(LU, piv, b, x):
    """``x ← A⁻¹ b`` from :func:`_lu`."""
    n = b.size
    for k in range(n):
        x[k] = b[k]
    for k in range(n):
        p = piv[k]
        if p != k:
            x[k], x[p] = x[p], x[k]
    for i in range(n):
        s = x[i]
        for j in range(i):
            s -= LU[i, j] * x[j]
        x[i] = s
    for i in range(n - 1, -1, -1):
        s = x[i]
        for j in range(i + 1, n):
            s -= LU[i, j] * x[j]
        x[i] = s / LU[i, i]


@K._jit(strict=True)
def _sum_squares(x) -> float:
    """``Σ x_i²`` summed in index order, without fast-math: the numbers of ``np.sum(x * x)`` without its temporary
    array (nor the compiled array expression and reduction it costs)."""
    s = 0.0
    for i in range(x.size):
        s += x[i] * x[i]
    return s


@K._jit(inline="always")
def _rms(x, w, wn, rtol, atol):
    s = 0.0
    for i in range(x.size):
        sc = atol + rtol * max(abs(w[i]), abs(wn[i]))
        s += (x[i] / sc) ** 2
    return math.sqrt(s / x.size)


@K._jit()
def rodas4_segment(w, g, state, offset, t_limit, max_steps, rtol, atol,
                   kh, kw, dh, dw, off, fs, ws, scratch, A, C, M, gamma, pairs,
                   check_candidate, tol_rel, gtol, f0, kappa, reference_norm, origin_size, bound,
                   delta0, norm0, rec_factor, rec_t, rec_w, rec_loss, rec_g, w_prev):
    r"""Steps of Rodas4 (:class:`~lcnflow.dynamics.steppers.Rodas4Stepper`: tableau ``A``, ``C``, ``M``, ``γ``) on
    ``ẇ = −∇L(w)`` for the risk ``fs`` (:func:`function_space_args`; ``ws``, ``scratch``: buffers, :func:`_workspace`,
    :func:`_scratch`), from ``(w, g = ∇L(w))`` at ``state[_T]``.

    Times are on the stepper's local clock ``τ = t − offset`` (``t_limit`` too; recorded times are absolute): the
    flow is autonomous, and when the steps become small against ``τ`` (``h < 10⁻⁸ τ``, e.g. an escape at
    ``t ~ 10³¹`` after a long plateau, where ``t + 1 = t`` in float64) the segment returns ``CLOCK`` and the caller
    restarts the clock.  ``w``, ``g`` are overwritten with the state reached and its gradient, ``w_prev`` with the
    last step's start, ``state`` with the scalars (time, step size, arc length, drift, next record time, counters,
    record rows, loss, previous time).  Returns the reason the segment ended (the module's constants).

    ``L`` is evaluated at the state reached where the steps did not evaluate it (a data pass gives ``∇L`` without
    ``L`` at a lower cost: the steps ask for the value only where they record it).  One compiled function, not a
    loop called by a wrapper: each compiled caller re-optimizes its callees' code, which doubled the compile time.
    """
    P = w.size
    t = state[_T]
    h = state[_H]
    nsteps = 0
    J, GJ, hess, W, ks, y, rhs, gs, g_n, wn, piv = scratch
    _eval(w, kh, kw, dh, dw, off, fs, ws, gs, K.runtime(True))  # the workspace at w
    ended = -1
    while True:
        if nsteps >= max_steps:
            ended = STEP_BUDGET
            break
        if t >= t_limit:
            ended = T_LIMIT
            break
        # ---- one accepted step (rejections retried inside)
        _hessian_ws(w, kh, kw, dh, dw, off, _fs_hessian(ws, kh.size, fs), ws, J, GJ, hess)  # (ws holds w)
        state[_NHEV] += 1
        while True:
            hs = min(h, t_limit - t)
            gh = gamma * hs
            nsteps += 1
            state[_NSTEPS] += 1
            for i in range(P):
                for j in range(P):
                    W[i, j] = gh * hess[i, j]
                W[i, i] += 1.0
            _lu(W, piv)
            for i in range(6):
                # stage point y = w + Σ_j a_ij K_j and right-hand side γh F(y) + Σ_j γ c_ij K_j
                for p in range(P):
                    y[p] = w[p]
                for j in range(i):
                    a = A[i, j]
                    if a != 0.0:
                        for p in range(P):
                            y[p] += a * ks[j, p]
                if i == 0:
                    for p in range(P):
                        rhs[p] = -gh * g[p]
                else:
                    _eval(y, kh, kw, dh, dw, off, fs, ws, gs, K.runtime(False))
                    for p in range(P):
                        rhs[p] = -gh * gs[p]
                for j in range(i):
                    c = gamma * C[i, j]
                    for p in range(P):
                        rhs[p] += c * ks[j, p]
                _lu_solve(W, piv, rhs, ks[i])
            for p in range(P):
                wn[p] = y[p] + ks[5, p]  # (stiffly accurate: w + Σ m_j K_j is the last stage point plus K_6)
            for r in range(pairs.shape[0]):  # layers the flow keeps equal stay equal (keep_exchanged_layers_equal)
                a, b, n, sgn = pairs[r, 0], pairs[r, 1], pairs[r, 2], pairs[r, 3]
                for p in range(n):
                    mean = 0.5 * (wn[a + p] + sgn * wn[b + p])
                    wn[a + p] = mean
                    wn[b + p] = sgn * mean
            # (the value only where a data pass gives it for free: it is needed at recorded steps and at the end)
            loss_n = _eval(wn, kh, kw, dh, dw, off, fs, ws, g_n, K.runtime(False))  # (the workspace: wn)
            state[_NFEV] += 6
            err = _rms(ks[5], w, wn, rtol, atol)
            # (the statistics always give the value; a data pass only where asked)
            finite = (math.isfinite(err) and math.isfinite(_sum_squares(g_n))
                      and (loss_n == loss_n or len(fs) != _STATS_LEN))
            if finite and err <= 1.0:
                break
            h = hs * K.step_factor(err if finite else math.inf, 0.25, K.runtime(False))
            if h < 1e-14 * max(abs(t), 1e-300):
                state[_T], state[_H] = t, h
                ended = UNDERFLOW
                break
        if ended == UNDERFLOW:
            break
        # ---- accept
        state[_TPREV] = offset + t
        clipped = hs == t_limit - t
        t_new = t_limit if clipped else t + hs
        for i in range(P):
            w_prev[i] = w[i]
            w[i] = wn[i]
            g[i] = g_n[i]
        t = t_new
        h = hs * K.step_factor(err, 0.25, K.runtime(True))
        state[_T], state[_H], state[_LOSS] = t, h, loss_n
        # ---- the recorder's per-step quantities (arc length, invariant drift) and the sizes of the tests below
        arc, change, total = K.step_terms(w, w_prev, off, delta0)
        cof, l1 = K.scale_terms(w, off)
        state[_ARC] += arc
        drift = change / max(norm0, total, 1e-300)
        if drift > state[_DRIFT] or drift != drift:
            state[_DRIFT] = drift
        gn = math.sqrt(_sum_squares(g))
        t_abs = offset + t
        state[_ARC_SINCE] += arc
        if hs > 0:
            state[_FALL_SINCE] += arc * arc / hs
        moved = (state[_ARC_SINCE] >= state[_ARC_STEP] * state[_NORM_REC]
                 or state[_FALL_SINCE] >= state[_LOSS_STEP] * max(state[_LOSS0] - state[_MIN_LOSS],
                                                                   1e-2 * abs(state[_LOSS0])))
        if state[_PENDING] != 0.0 or t_abs >= state[_NEXT_T] or t_abs >= state[_NEXT_REL]:
            if loss_n != loss_n:
                loss_n = _eval(w, kh, kw, dh, dw, off, fs, ws, gs, K.runtime(True))
                state[_LOSS] = loss_n
                state[_NFEV] += 1
            event = moved or state[_PENDING] != 0.0
            r = int(state[_NREC])
            rec_t[r] = t_abs
            rec_loss[r] = loss_n
            rec_g[r] = gn
            for i in range(P):
                rec_w[r, i] = w[i]
            state[_NREC] = r + 1
            state[_ARC_SINCE], state[_FALL_SINCE], state[_PENDING] = 0.0, 0.0, 0.0
            state[_NORM_REC] = math.sqrt(total)
            if loss_n < state[_MIN_LOSS]:
                state[_MIN_LOSS] = loss_n
            if t_abs >= state[_NEXT_T]:  # log-spaced in absolute time
                state[_NEXT_T] = t_abs * rec_factor if t_abs > 0 else 0.0
            if event:  # log-spaced in the time since this event, from the step that ended at it
                state[_EVENT_T] = t_abs
                state[_NEXT_REL] = t_abs + hs * rec_factor
            elif state[_EVENT_T] > 0 or state[_NEXT_REL] < math.inf:
                state[_NEXT_REL] = state[_EVENT_T] + (t_abs - state[_EVENT_T]) * rec_factor
        elif moved:  # (as the recorder does: the next step is recorded)
            state[_PENDING] = 1.0
        # ---- the driver's tests
        size = math.sqrt(total)
        s_ub = cof * (f0 + kappa * l1) if f0 != 0 else cof * kappa * max(l1, reference_norm)
        tests = K.step_tests(gn, size, s_ub, tol_rel, gtol, origin_size, bound)
        if tests & K.TEST_NONFINITE:
            ended = NONFINITE
        elif tests & K.TEST_REARM:
            ended = REARM
        elif check_candidate and tests & (K.TEST_CANDIDATE | K.TEST_COLLAPSED):
            ended = CANDIDATE
        elif tests & K.TEST_BLOWUP:
            ended = BLOWUP
        elif int(state[_NREC]) >= rec_t.size:
            ended = RECORD_FULL
        elif not clipped and hs < 1e-8 * t:
            ended = CLOCK
        if ended >= 0:
            break
    if state[_LOSS] != state[_LOSS]:
        state[_LOSS] = _eval(w, kh, kw, dh, dw, off, fs, ws, gs, K.runtime(True))
        state[_NFEV] += 1
    return ended




def available(risk: EmpiricalRisk) -> bool:
    """Whether the compiled integrator can run ``risk`` (kernels enabled): the square loss from its statistics, or a
    built-in loss whose data passes run in compiled code (not the FFT correlations of long 2D filters, which run
    through NumPy's FFT)."""
    view = risk.kernel_view()
    return view is not None and (risk.is_quadratic or (view.loss_id >= 0 and not view.spectral_ok))


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``: the segment is compiled once for every risk (Numba types read-only arrays apart)."""
    view = a.view()
    view.flags.writeable = False
    return view


def function_space_args(risk: EmpiricalRisk) -> tuple:
    r"""The function-space risk as the compiled segment reads it (see :func:`_eval`).

    The square loss: its statistics ``(v̂, G, ℒ(v̂))``; the other built-in losses: ``(x, y, xt, yt, s_h, s_w,
    loss id, p_1, p_2, 1/m, block, part, vals, gram part, two rows of scratch, ∇²ℒ)``, the data (3D, 1D signals as
    images of height 1; for 1D also transposed, ``xt``, ``yt``, else empty) and the loss, with the scratch of their
    data passes.  The two have different types, so a segment compiled for the square loss contains no data pass (and
    the data passes' segment no statistics)."""
    view = risk.kernel_view()
    kv = risk.arch.final_filter_num_params
    if risk.is_quadratic:
        return (np.ascontiguousarray(risk.least_squares_filter.reshape(-1), dtype=np.float64),
                np.ascontiguousarray(risk.gram, dtype=np.float64), float(risk.minimum_value))
    rows = np.zeros((2, view.y3.shape[2]))
    x3, y3 = _read_only(view.x3), _read_only(view.y3)
    block = K.SIGNAL_BLOCK if view.signal else K.block_size(y3)
    nb = -(-y3.shape[0] // block)
    return (x3, y3, _read_only(view.xt), _read_only(view.yt), int(view.sh), int(view.sw), int(view.loss_id),
            float(view.p1), float(view.p2), 1.0 / risk.num_samples, block, np.zeros((nb, kv)), np.zeros(nb),
            np.zeros((nb, kv * kv) if view.signal else (0, 0)), rows, np.zeros((kv, kv)))


class CompiledRodas4Stepper(Rodas4Stepper):
    """:class:`~lcnflow.dynamics.steppers.Rodas4Stepper` (same scheme, same step-size control) whose :meth:`advance`
    runs many steps in one compiled call (see the module docstring); with a callback the driver asks for one step
    per call."""

    description = "Rosenbrock Rodas4 (order 4, L-stable, exact Hessian), compiled"

    def __init__(self, risk, w0, loss0, g0, rtol, atol):
        super().__init__(risk, w0, loss0, g0, rtol, atol)
        arch = risk.arch
        lay = K.layout(arch.filter_shapes, arch.cumulative_strides[:-1])
        self._args = (lay.kh, lay.kw, lay.dh, lay.dw, lay.off, function_space_args(risk),
                      _workspace(lay.kh, lay.kw, lay.dh, lay.dw),
                      _scratch(w0.size, arch.final_filter_num_params),
                      RODAS4_A, RODAS4_C, RODAS4_M, RODAS4_GAMMA, self.pairs)
        sc = problem_scales(risk)
        self._f0, self._kappa = sc.gradient_at_zero, sc.curvature
        P = w0.size
        self.offset, self._tau = 0.0, 0.0  # t = offset + τ (see rodas4_segment)
        self._state = np.zeros(_STATE_SIZE)
        self._rec = (np.empty(RECORD_ROWS), np.empty((RECORD_ROWS, P)), np.empty(RECORD_ROWS), np.empty(RECORD_ROWS))
        self._w_prev = np.empty(P)

    def advance(self, t_limit: float, max_steps: int, *, check_candidate: bool, tol_rel: float, gtol: float,
                reference_norm: float, bounds: tuple[float, float], recorder) -> int:
        """Steps until one of the module's events (returned); the recorder receives the steps it keeps.  ``bounds``:
        the sizes of ``w`` below which it has collapsed onto the origin and above which it blows up."""
        loss, g = self.exact()
        if self.h is None:
            self.h = _initial_step(self.w, g, self.rtol, self.atol, t_limit - self.t)
        st = self._state
        st[:] = 0.0
        st[_T], st[_H], st[_LOSS] = self._tau, self.h, loss
        st[_NEXT_T] = recorder._next_t
        (st[_ARC_SINCE], st[_FALL_SINCE], st[_NORM_REC], st[_MIN_LOSS], st[_LOSS0], st[_EVENT_T], st[_NEXT_REL],
         st[_PENDING]) = recorder.rule_state()
        st[_ARC_STEP] = math.inf if recorder.arc_step is None else recorder.arc_step
        st[_LOSS_STEP] = math.inf if recorder.arc_step is None else LOSS_STEP
        w, g = self.w.copy(), g.copy()
        rec_t, rec_w, rec_loss, rec_g = self._rec
        event = rodas4_segment(
            w, g, st, self.offset, t_limit - self.offset, max_steps, self.rtol, self.atol, *self._args,
            check_candidate, tol_rel, gtol, self._f0, self._kappa, reference_norm, *bounds, recorder.delta0,
            recorder.norm0, 10 ** (32 / recorder.max_points), rec_t, rec_w, rec_loss, rec_g, self._w_prev)
        self.nfev += int(st[_NFEV])
        self.nhev += int(st[_NHEV])
        self.nsteps += int(st[_NSTEPS])
        self.h = st[_H]
        if st[_T] > self._tau:  # at least one accepted step
            self.t_prev, self.w_prev = st[_TPREV], self._w_prev.copy()
            self._tau = st[_T]
            self.t, self.w = self.offset + self._tau, w
            self._cache = (w, st[_LOSS], g)
        recorder.absorb(int(st[_NREC]), rec_t, rec_w, rec_loss, rec_g, st[_ARC], st[_DRIFT], st[_NEXT_T],
                        (self.t, self.w, st[_LOSS], float(np.linalg.norm(g))),
                        rule=(st[_ARC_SINCE], st[_FALL_SINCE], st[_EVENT_T], st[_NEXT_REL], st[_PENDING]))
        if event == CLOCK:  # restart the local clock at the current time
            self.offset, self._tau = self.t, 0.0
        return event

    def step(self, t_limit: float) -> str | None:
        """Not used: the driver calls :meth:`advance` (one step per call when it must see every step)."""
        raise NotImplementedError("the driver calls advance(); see lcnflow.dynamics.compiled")
