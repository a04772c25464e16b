r"""The compiled integrator: many steps of the flow per call, for many runs of one risk at once, with the driver's
per-step tests inside.

For the square loss a gradient from the statistics ``(G, v̂)`` costs well under a microsecond of arithmetic, and for
the other built-in losses one pass over the data (about 0.1 ms for 500 signals of 64 samples), so a run's time would
otherwise be spent in the Python around it: the integrator's step logic, the driver's tests and the recorder.
:class:`CompiledRodas4Stepper` runs the scheme of :class:`~lcnflow.dynamics.steppers.Rodas4Stepper` (Rodas4: order
4, L-stable, exact Hessian — a third of the steps ``ode23s`` takes on the same runs, each with one Hessian and one
LU factorization) in one Numba function, :func:`rodas4_segments`, with the gradients and the Hessian evaluated into
one workspace (no allocation per evaluation; the function-space part from the statistics or from the data passes of
:mod:`lcnflow.kernels`, :func:`function_space_args`); it takes steps until something needs the driver:

* a candidate limit — ``‖∇L(w)‖ ≤ tol · S(w)`` with the gradient scale ``S``
  (:func:`~lcnflow.analysis.certify.gradient_scale`; the driver checks it again with its own ``S``);
* the flow leaving the last rejected candidate (``‖∇L‖ > gtol · S_ub`` while the tolerance is tightened);
* ``‖w‖`` above the blow-up bound or collapsed onto the origin, a non-finite state, a step size that underflows;
* the time limit (the next save time, ``t_max`` or the stall time), a step budget, a full record buffer, or
  steps that became small against the clock (it restarts).

Each accepted step's arc length and invariant drift are accumulated as :class:`~lcnflow.dynamics.result.Recorder`
does, and the steps the recorder keeps (by its rules: arc length, estimated loss fall, time since the last event,
absolute time) are written to a buffer the driver hands to it.
The driver then applies exactly the tests it applies after a Python step, so a run takes the same decisions on
either path; the compiled and Python steppers agree to rounding (``tests/test_compiled_flow.py``).

**Many runs.**  The arrays of :func:`rodas4_segments` carry the run as their last axis, and every loop of its
arithmetic ends in a loop over the runs, which the compiler vectorizes: on a three-layer 1D network with nine
parameters and 64 runs a step costs about 3 µs per run, against about 15 µs for a run alone.  Each run keeps its
own step size, tests and record, and its numbers are computed in the same order whatever else is in the batch — one
run is a batch of one, and a run batched with others takes exactly the steps it takes alone
(:func:`lcnflow.dynamics.batch.iter_flows` feeds it).
"""

from __future__ import annotations

import math
import threading
import weakref

import numpy as np

from lcnflow import kernels as K
from lcnflow.analysis.certify import problem_scales
from lcnflow.dynamics.result import LOSS_STEP
from lcnflow.dynamics.steppers import RODAS4_A, RODAS4_C, RODAS4_GAMMA, Rodas4Stepper, _initial_step
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
# steps taken in the current segment, and 1.0 while a rejected step is retried (a batch may return in between)
_SEG_STEPS, _RETRY = 21, 22
_STATE_SIZE = 23

#: Rows of the record buffer (a segment returns when it is full).
RECORD_ROWS = 128


#: Length of the function-space tuple of the square loss (its statistics); the data passes' tuple is longer.
_STATS_LEN = 3

if K.HAVE_NUMBA:
    from numba.extending import overload


# ------------------------------------------------------------------ many runs at once: runs innermost
# The arrays of a batch carry the run as their last axis (``w[p, r]``, ``pre[i, x, y, r]``): every loop of the
# evaluations below ends in a loop over the runs, which the compiler vectorizes, and each run's numbers are computed
# in the same order whatever the batch (one run is a batch of one).  Compiled without fast-math flags (``strict``):
# no contraction or reassociation that could round a run differently in a batch of 64 than alone.


def _workspace_batch(kh, kw, dh, dw, runs: int) -> tuple:
    """The buffers of :func:`_eval_batch` for the layers ``(kh, kw, dh, dw)`` and ``runs`` runs: the prefix and suffix
    products (with their shapes, the same for every run), three scratch filters, ``∇ℒ`` in π's shape, ``e``, the
    values, and a contiguous filter and gradient for one run's data pass."""
    n = kh.size
    KH = 1 + int(np.sum((kh - 1) * dh))
    KW = 1 + int(np.sum((kw - 1) * dw))
    return (np.zeros((n + 1, KH, KW, runs)), np.zeros((n + 1, 2), np.int64), np.zeros((n + 1, KH, KW, runs)),
            np.zeros((n + 1, 2), np.int64), np.zeros((3, KH, KW, runs)), np.zeros((KH, KW, runs)),
            np.zeros((KH * KW, runs)), np.zeros(runs), np.zeros((KH, KW)), np.zeros(KH * KW))


@K._jit(strict=True, inline="always")
def _layer_conv_batch(a, ah, aw, w, o, kh, kw, dh, dw, out, nr):
    """``out[:oh, :ow, r] = a[:ah, :aw, r] ∗ (layer filter w[o:, r])`` for the runs ``r < nr``; returns ``(oh, ow)``."""
    oh, ow = ah + (kh - 1) * dh, aw + (kw - 1) * dw
    for x in range(oh):
        for y in range(ow):
            for r in range(nr):
                out[x, y, r] = 0.0
    for j1 in range(kh):
        for j2 in range(kw):
            p = o + j1 * kw + j2
            o1, o2 = j1 * dh, j2 * dw
            for x in range(ah):
                for y in range(aw):
                    for r in range(nr):
                        out[o1 + x, o2 + y, r] += w[p, r] * a[x, y, r]
    return oh, ow


@K._jit(strict=True, inline="always")
def _full_conv_batch(a, ah, aw, b, bh, bw, out, nr):
    """``out[:ah+bh−1, :aw+bw−1, r] = a ∗ b`` (full 2D convolution) for the runs ``r < nr``; returns the shape."""
    oh, ow = ah + bh - 1, aw + bw - 1
    for x in range(oh):
        for y in range(ow):
            for r in range(nr):
                out[x, y, r] = 0.0
    for i1 in range(bh):
        for i2 in range(bw):
            for x in range(ah):
                for y in range(aw):
                    for r in range(nr):
                        out[i1 + x, i2 + y, r] += b[i1, i2, r] * a[x, y, r]
    return oh, ow


@K._jit(strict=True, inline="always")
def _products_batch(w, kh, kw, dh, dw, off, pre, pre_shape, suf, suf_shape, nr):
    """Fill the prefix and suffix products of the layers at ``w[:, r]``, ``r < nr``."""
    n = kh.size
    for r in range(nr):
        pre[0, 0, 0, r] = 1.0
        suf[n, 0, 0, r] = 1.0
    pre_shape[0, 0], pre_shape[0, 1] = 1, 1
    for i in range(n):
        pre_shape[i + 1, 0], pre_shape[i + 1, 1] = _layer_conv_batch(
            pre[i], pre_shape[i, 0], pre_shape[i, 1], w, off[i], kh[i], kw[i], dh[i], dw[i], pre[i + 1], nr)
    suf_shape[n, 0], suf_shape[n, 1] = 1, 1
    for i in range(n - 1, -1, -1):
        suf_shape[i, 0], suf_shape[i, 1] = _layer_conv_batch(
            suf[i + 1], suf_shape[i + 1, 0], suf_shape[i + 1, 1], w, off[i], kh[i], kw[i], dh[i], dw[i], suf[i], nr)


@K._jit(strict=True, inline="always")
def _cofactor_batch(ws, i, nr):
    """``c_i = pre[i] ∗ suf[i+1]`` (the product of every layer but ``i``) into ``tmp[0]``; its shape."""
    pre, pre_shape, suf, suf_shape, tmp = ws[0], ws[1], ws[2], ws[3], ws[4]
    return _full_conv_batch(pre[i], pre_shape[i, 0], pre_shape[i, 1], suf[i + 1], suf_shape[i + 1, 0],
                            suf_shape[i + 1, 1], tmp[0], nr)


@K._jit(strict=True, inline="always")
def _stats_value_grad_batch(fs, v, e, ge, vals, need_value, nr, live, one_v, one_e):
    """The square loss from its statistics ``fs = (v̂, G, ℒ(v̂))`` for the runs ``r < nr``: ``vals[r] = ½ eᵀGe +
    ℒ(v̂)``, ``∇ℒ = Ge`` into ``ge`` (``e = v − v̂``); every run, ``live`` or not (the arithmetic is vectorized over
    the runs)."""
    v_hat, G, minimum = fs
    KW = v.shape[1]
    K_ = v_hat.size
    for t in range(K_):
        for r in range(nr):
            e[t, r] = v[t // KW, t % KW, r] - v_hat[t]
    for r in range(nr):
        vals[r] = 0.0
    for a in range(K_):
        a1, a2 = a // KW, a % KW
        for r in range(nr):
            ge[a1, a2, r] = 0.0
        for b in range(K_):
            gab = G[a, b]
            for r in range(nr):
                ge[a1, a2, r] += gab * e[b, r]
        for r in range(nr):
            vals[r] += e[a, r] * ge[a1, a2, r]
    for r in range(nr):
        vals[r] = 0.5 * vals[r] + minimum


@K._jit(strict=True, inline="always")
def _one_run(v, r, one_v):
    """Run ``r``'s final filter ``v[:, :, r]`` into the contiguous ``one_v`` (what a data pass reads)."""
    for a1 in range(one_v.shape[0]):
        for a2 in range(one_v.shape[1]):
            one_v[a1, a2] = v[a1, a2, r]


@K._jit(strict=True, inline="always")
def _data_value_grad_batch(fs, v, e, ge, vals, need_value, nr, live, one_v, one_e):
    """A built-in loss through one pass over the data per run ``r < nr``: ``vals[r] = (1/m) Σ ℓ(r)`` (NaN unless
    ``need_value``), ``∇ℒ = (1/m) Hᵀℓ'(r)`` into ``ge`` (``one_v``, ``one_e``: one run's filter and gradient); only
    for the runs with ``live[r]`` (a pass per run is what costs)."""
    x3, y3, xt, yt, sh, sw, lid, p1, p2, inv_m, block, part, pvals, _, _, _ = fs
    KW = one_v.shape[1]
    for r in range(nr):
        if not live[r]:
            continue
        _one_run(v, r, one_v)
        # (the passes are compiled once per need_value: a constant in each call, so LLVM drops the unused sums)
        if need_value:
            vals[r] = K.data_pass_serial(x3, y3, xt, yt, one_v, sh, sw, lid, p1, p2, True, block, part, pvals,
                                         one_e) * inv_m
        else:
            vals[r] = K.data_pass_serial(x3, y3, xt, yt, one_v, sh, sw, lid, p1, p2, False, block, part, pvals,
                                         one_e) * inv_m
        for t in range(one_e.size):
            ge[t // KW, t % KW, r] = one_e[t] * inv_m


@K._jit(strict=True, inline="always")
def _stats_curvature_batch(fs, v, G, nr, live, one_v):
    """``∇²ℒ`` of the square loss, the statistics' ``G``, for every run ``r < nr`` into ``G[:, :, r]``."""
    Gs = fs[1]
    for a in range(Gs.shape[0]):
        for b in range(Gs.shape[1]):
            for r in range(nr):
                G[a, b, r] = Gs[a, b]


@K._jit(strict=True, inline="always")
def _data_curvature_batch(fs, v, G, nr, live, one_v):
    """``∇²ℒ(v_r) = (1/m) Hᵀdiag(ℓ'')H`` for each run ``r < nr`` (one pass over the data each,
    :func:`lcnflow.kernels.weighted_gram_serial`) into ``G[:, :, r]``, for the runs with ``live[r]``."""
    x3, y3, xt, yt, sh, sw, lid, p1, p2, inv_m, block, _, vals, gram_part, rows, Gv = fs
    for r in range(nr):
        if not live[r]:
            continue
        _one_run(v, r, one_v)
        K.weighted_gram_serial(x3, y3, xt, yt, one_v, sh, sw, lid, p1, p2, block, gram_part, vals, rows[0], rows[1],
                               Gv)
        for a in range(Gv.shape[0]):
            for b in range(Gv.shape[1]):
                G[a, b, r] = Gv[a, b] * inv_m


def _fs_value_grad_batch(fs, v, e, ge, vals, need_value, nr, live, one_v, one_e):
    """:func:`_stats_value_grad_batch` or :func:`_data_value_grad_batch`, by the kind of ``fs`` (chosen when the
    caller is compiled: a square-loss segment compiles no data pass)."""
    impl = _stats_value_grad_batch if len(fs) == _STATS_LEN else _data_value_grad_batch
    return impl(fs, v, e, ge, vals, need_value, nr, live, one_v, one_e)


def _fs_curvature_batch(fs, v, G, nr, live, one_v):
    """:func:`_stats_curvature_batch` or :func:`_data_curvature_batch`, by the kind of ``fs``."""
    return (_stats_curvature_batch if len(fs) == _STATS_LEN else _data_curvature_batch)(fs, v, G, nr, live, one_v)


if K.HAVE_NUMBA:
    @overload(_fs_value_grad_batch, inline="always")
    def _ol_fs_value_grad_batch(fs, v, e, ge, vals, need_value, nr, live, one_v, one_e):
        if len(fs) == _STATS_LEN:
            return lambda fs, v, e, ge, vals, need_value, nr, live, one_v, one_e: _stats_value_grad_batch(
                fs, v, e, ge, vals, need_value, nr, live, one_v, one_e)
        return lambda fs, v, e, ge, vals, need_value, nr, live, one_v, one_e: _data_value_grad_batch(
            fs, v, e, ge, vals, need_value, nr, live, one_v, one_e)

    @overload(_fs_curvature_batch, inline="always")
    def _ol_fs_curvature_batch(fs, v, G, nr, live, one_v):
        if len(fs) == _STATS_LEN:
            return lambda fs, v, G, nr, live, one_v: _stats_curvature_batch(fs, v, G, nr, live, one_v)
        return lambda fs, v, G, nr, live, one_v: _data_curvature_batch(fs, v, G, nr, live, one_v)


@K._jit(strict=True)
def _eval_batch(w, kh, kw, dh, dw, off, fs, ws, grad, need_value, nr, live):
    r"""For the runs ``r < nr`` (those with ``live[r]`` at least: the others may be skipped): ``L(w_r)`` into the
    workspace's values ``ws[7]`` (NaN unless ``need_value``; always for the statistics), ``∇L = dπᵀ∇ℒ(π(w_r))`` into
    ``grad[:, r]``, and ``∇ℒ(π(w_r))`` in π's shape in the workspace (``ws[5]``) for the Hessian; the products stay
    in the workspace.

    ``fs`` is the function-space risk (:func:`function_space_args`): the square loss from its statistics
    (``ℒ = ½ eᵀGe + ℒ(v̂)``, ``∇ℒ = Ge``, ``e = v − v̂``), or a built-in loss through one pass over the data per run
    (``ℒ = (1/m) Σ ℓ(r)``, ``∇ℒ = (1/m) Hᵀℓ'(r)``, ``r = Hv − y``: :func:`lcnflow.kernels.data_pass_serial`).
    """
    pre, pre_shape, suf, suf_shape, tmp, ge, e, vals, one_v, one_e = ws
    _products_batch(w, kh, kw, dh, dw, off, pre, pre_shape, suf, suf_shape, nr)
    n = kh.size
    _fs_value_grad_batch(fs, pre[n], e, ge, vals, need_value, nr, live, one_v, one_e)  # (pre[n] = π(w))
    for i in range(n):
        ch, cw = _cofactor_batch(ws, i, nr)
        K.vjp_layer_runs(ge, tmp[0], ch, cw, kh, kw, dh, dw, off, i, grad, nr)


@K._jit(strict=True)
def _hessian_batch(w, kh, kw, dh, dw, off, fs, ws, G, J, GJ, hess, nr, live):
    r"""``∇²L = Jᵀ G J + Σ_t ∇ℒ_t ∇²π_t`` into ``hess[:, :, r]`` for the runs ``r < nr`` (those with ``live[r]`` at
    least; ``G = ∇²ℒ``, filled here),
    from the workspace filled by :func:`_eval_batch` at ``w`` (``J``, ``GJ``: ``k_v × P × runs`` scratch).

    ``∇²ℒ`` is evaluated anew at every step: Rodas4's order conditions assume the exact Jacobian, and an older
    ``∇²ℒ`` (kept while ``π(w)`` moves less than 25 %, or 1 %) multiplied the steps by 2 to 40 on planted 1D
    problems."""
    pre, pre_shape, suf, suf_shape, tmp, ge, _, _, one_v, _ = ws
    n = kh.size
    KW = ge.shape[1]
    K_, P = J.shape[0], J.shape[1]
    _fs_curvature_batch(fs, pre[n], G, nr, live, one_v)
    for a in range(K_):
        for p in range(P):
            for r in range(nr):
                J[a, p, r] = 0.0
                GJ[a, p, r] = 0.0
    for i in range(n):
        ch, cw = _cofactor_batch(ws, i, nr)
        K.jacobian_layer_runs(tmp[0], ch, cw, KW, kh, kw, dh, dw, off, i, J, nr)
    for a in range(K_):
        for b in range(K_):
            for j in range(P):
                for r in range(nr):
                    GJ[a, j, r] += G[a, b, r] * J[b, j, r]
    for p in range(P):
        for q in range(p, P):
            for r in range(nr):
                hess[p, q, r] = 0.0
            for a in range(K_):
                for r in range(nr):
                    hess[p, q, r] += J[a, p, r] * GJ[a, q, r]
    # the curvature of π: blocks (i, l), i < l, from e_il = pre[i] ∗ (layers i+1 … l−1) ∗ suf[l+1]
    for i in range(n):
        for l in range(i + 1, n):  # noqa: E741
            ah, aw = pre_shape[i, 0], pre_shape[i, 1]
            src = pre[i]
            k = 1
            for m in range(i + 1, l):
                ah, aw = _layer_conv_batch(src, ah, aw, w, off[m], kh[m], kw[m], dh[m], dw[m], tmp[k], nr)
                src = tmp[k]
                k = 3 - k
            eh, ew = _full_conv_batch(src, ah, aw, suf[l + 1], suf_shape[l + 1, 0], suf_shape[l + 1, 1], tmp[k], nr)
            K.contract_block_runs(ge, tmp[k], eh, ew, kh, kw, dh, dw, off, i, l, hess, nr)
    for p in range(P):
        for q in range(p + 1, P):
            for r in range(nr):
                hess[q, p, r] = hess[p, q, r]


@K._jit(strict=True, inline="always")
def _lu_batch(A, piv, nr, big):
    """In-place LU factorizations with partial pivoting of ``A[:, :, r]``, ``r < nr``, the pivots into ``piv[:, r]``
    (``big``: scratch of ``nr``; a singular pivot leaves a zero on the diagonal: the solves then give non-finite
    values, and the step is rejected).  The pivot of column ``k`` is its first entry of largest modulus on or below
    the diagonal, searched row by row for all the runs at once."""
    n = A.shape[0]
    for k in range(n):
        for r in range(nr):
            big[r] = abs(A[k, k, r])
            piv[k, r] = k
        for i in range(k + 1, n):
            for r in range(nr):
                a = abs(A[i, k, r])
                if a > big[r]:
                    big[r] = a
                    piv[k, r] = i
        for r in range(nr):
            p = piv[k, r]
            if p != k:
                for j in range(n):
                    A[k, j, r], A[p, j, r] = A[p, j, r], A[k, j, r]
        for i in range(k + 1, n):
            for r in range(nr):
                A[i, k, r] /= A[k, k, r]
            for j in range(k + 1, n):
                for r in range(nr):
                    A[i, j, r] -= A[i, k, r] * A[k, j, r]


@K._jit(strict=True, inline="always")
def _lu_solve_batch(LU, piv, b, x, nr):
    """``x[:, r] ← A_r⁻¹ b[:, r]`` from :func:`_lu_batch`, ``r < nr``."""
    n = b.shape[0]
    for k in range(n):
        for r in range(nr):
            x[k, r] = b[k, r]
    for k in range(n):
        for r in range(nr):
            p = piv[k, r]
            if p != k:
                x[k, r], x[p, r] = x[p, r], x[k, r]
    for i in range(n):
        for j in range(i):
            for r in range(nr):
                x[i, r] -= LU[i, j, r] * x[j, r]
    for i in range(n - 1, -1, -1):
        for j in range(i + 1, n):
            for r in range(nr):
                x[i, r] -= LU[i, j, r] * x[j, r]
        for r in range(nr):
            x[i, r] /= LU[i, i, r]


@K._jit(strict=True, inline="always")
def _stats_value(fs, v, e):
    """``ℒ(v)`` of the square loss from its statistics, for one final filter ``v`` (2D; ``e``: scratch)."""
    v_hat, G, minimum = fs
    return 0.5 * K.square_terms(v, v_hat, G, e, np.zeros(v.shape)) + minimum


@K._jit(strict=True, inline="always")
def _data_value(fs, v, e):
    """``ℒ(v)`` of a built-in loss by one data pass with the value, for one final filter ``v`` (2D; ``e``: scratch)."""
    x3, y3, xt, yt, sh, sw, lid, p1, p2, inv_m, block, part, vals, _, _, _ = fs
    return K.data_pass_serial(x3, y3, xt, yt, v, sh, sw, lid, p1, p2, True, block, part, vals, e) * inv_m


def _value_at(fs, v, e):
    """:func:`_stats_value` or :func:`_data_value`, by the kind of ``fs``."""
    return (_stats_value if len(fs) == _STATS_LEN else _data_value)(fs, v, e)


if K.HAVE_NUMBA:
    @overload(_value_at, inline="always")
    def _ol_value_at(fs, v, e):
        if len(fs) == _STATS_LEN:
            return lambda fs, v, e: _stats_value(fs, v, e)
        return lambda fs, v, e: _data_value(fs, v, e)


# the per-run parameters of a batched segment (rows of one float64 array)
(_P_OFFSET, _P_T_LIMIT, _P_MAX_STEPS, _P_CHECK, _P_TOL_REL, _P_REF_NORM, _P_ORIGIN, _P_BOUND, _P_NORM0,
 _P_REC_FACTOR, _P_RTOL, _P_ATOL, _P_GTOL) = range(13)
_PARAM_SIZE = 13


def _batch_scratch(P: int, kv: int, runs: int) -> tuple:
    """The buffers of :func:`rodas4_segments`' steps for ``runs`` runs of ``P`` parameters and ``k_v`` final-filter
    coefficients: ``∇²ℒ`` (``k_v × k_v``), ``J``, ``GJ`` (``k_v × P``), the Hessian, a second Hessian, the matrix
    ``I + γh∇²L`` (``P × P``), the six stages, the stage point, the right-hand side, two gradients, the new point
    (``P``), the LU pivots (each with a last axis of ``runs``), then per run the step size tried, ``γh``, the error and
    the new loss, one run's state and its predecessor as contiguous vectors, and two masks of runs (those going on,
    those needing a Hessian)."""
    return (np.empty((kv, kv, runs)), np.empty((kv, P, runs)), np.empty((kv, P, runs)), np.empty((P, P, runs)),
            np.empty((P, P, runs)), np.empty((P, P, runs)), np.empty((6, P, runs)), np.empty((P, runs)),
            np.empty((P, runs)), np.empty((P, runs)), np.empty((P, runs)), np.empty((P, runs)),
            np.empty((P, runs), np.int64), np.empty(runs), np.empty(runs), np.empty(runs), np.empty(runs),
            np.empty(P), np.empty(P), np.zeros(runs, np.bool_), np.zeros(runs, np.bool_))


@K._jit(strict=True)
def rodas4_segments(w, g, state, par, delta0, pairs, num_pairs, ended, stop_below,
                    kh, kw, dh, dw, off, fs, ws, scratch, A, C, gamma, f0, kappa,
                    rec_t, rec_w, rec_loss, rec_g, w_prev):
    r"""Steps of Rodas4 (:class:`~lcnflow.dynamics.steppers.Rodas4Stepper`: tableau ``A``, ``C``, ``γ``) on
    ``ẇ = −∇L(w)`` for the runs ``w[:, r]`` of one risk ``fs`` at once (:func:`function_space_args`; ``ws``,
    ``scratch``: buffers, :func:`_workspace_batch`, :func:`_batch_scratch`), each from ``(w[:, r], g[:, r] = ∇L)`` at
    ``state[_T, r]``, each with its own step size, tests and record, until its segment ends (``ended[r]``, one of the
    module's constants; ``-1`` while it goes on).  Returns when at most ``stop_below`` runs go on (their state is
    kept: a later call continues them exactly as if it had not returned).

    Runs whose ``ended[r] ≥ 0`` on entry take no step.  Per run, times are on its local clock ``τ = t − offset``
    (``par``: offset, ``t_limit`` on that clock, step budget, whether candidates are tested, candidate tolerance,
    reference filter norm, collapse and blow-up sizes, ``‖w(0)‖``-type norm of the drift, record factor, ``rtol``,
    ``atol``, ``gtol``); when the steps become small against ``τ`` (``h < 10⁻⁸ τ``) the segment ends ``CLOCK`` and
    the caller restarts the clock.
    ``w``, ``g`` are overwritten with the states reached and their gradients, ``w_prev`` with the last step's start,
    ``state`` with the scalars (time, step size, arc length, drift, next record time, counters, record rows, loss,
    previous time, the recorder's rule, the segment's steps and whether a rejected step is retried).

    ``L`` is evaluated at a state reached where the steps did not evaluate it (a data pass gives ``∇L`` without ``L``
    at a lower cost: the steps ask for the value only where they record it).  Every loop over coefficients ends in a
    loop over the runs, so each run's numbers do not depend on the others (a run alone is a batch of one).
    """
    G, J, GJ, hess, hess_new, W, ks, y, rhs, gs, g_n, wn, piv, hs, gh, err, loss_n, wc, pc = scratch[:19]
    P, nr = w.shape
    vals = ws[7]
    live, fresh_runs = scratch[19], scratch[20]
    for r in range(nr):
        live[r] = ended[r] < 0
    _eval_batch(w, kh, kw, dh, dw, off, fs, ws, gs, K.runtime(True), nr, live)  # the workspace at w
    # every run that goes on gets its Hessian at w (a retried step keeps the one of its first try: the same numbers)
    first = True
    while True:
        running = 0
        for r in range(nr):
            if ended[r] >= 0 or state[_RETRY, r] != 0.0:
                continue
            if state[_SEG_STEPS, r] >= par[_P_MAX_STEPS, r]:
                ended[r] = STEP_BUDGET
            elif state[_T, r] >= par[_P_T_LIMIT, r]:
                ended[r] = T_LIMIT
        for r in range(nr):
            if ended[r] < 0:
                running += 1
        if running == 0 or running <= stop_below:
            break
        fresh = 0  # runs that need a Hessian (at a new point, or at the start of this call)
        for r in range(nr):
            live[r] = ended[r] < 0
            fresh_runs[r] = live[r] and (first or state[_RETRY, r] == 0.0)
            fresh += fresh_runs[r]
        if fresh > 0:
            _hessian_batch(w, kh, kw, dh, dw, off, fs, ws, G, J, GJ, hess_new, nr, fresh_runs)  # (ws holds w there)
            for r in range(nr):
                if fresh_runs[r]:
                    for p in range(P):
                        for q in range(P):
                            hess[p, q, r] = hess_new[p, q, r]
                    if state[_RETRY, r] == 0.0:
                        state[_NHEV, r] += 1
        first = False
        # ---- one try of a step for every run that goes on (a rejected one is retried in the next round)
        for r in range(nr):
            if ended[r] < 0:
                hs[r] = min(state[_H, r], par[_P_T_LIMIT, r] - state[_T, r])
                gh[r] = gamma * hs[r]
                state[_SEG_STEPS, r] += 1
                state[_NSTEPS, r] += 1
            else:
                hs[r], gh[r] = 0.0, 0.0
        for i in range(P):
            for j in range(P):
                for r in range(nr):
                    W[i, j, r] = gh[r] * hess[i, j, r]
            for r in range(nr):
                W[i, i, r] += 1.0
        _lu_batch(W, piv, nr, err)  # (err: scratch until the steps' errors are computed, below)
        for i in range(6):
            # stage point y = w + Σ_j a_ij K_j and right-hand side γh F(y) + Σ_j γ c_ij K_j
            for p in range(P):
                for r in range(nr):
                    y[p, r] = w[p, r]
            for j in range(i):
                a = A[i, j]
                if a != 0.0:
                    for p in range(P):
                        for r in range(nr):
                            y[p, r] += a * ks[j, p, r]
            if i == 0:
                for p in range(P):
                    for r in range(nr):
                        rhs[p, r] = -gh[r] * g[p, r]
            else:
                _eval_batch(y, kh, kw, dh, dw, off, fs, ws, gs, K.runtime(False), nr, live)
                for p in range(P):
                    for r in range(nr):
                        rhs[p, r] = -gh[r] * gs[p, r]
            for j in range(i):
                c = gamma * C[i, j]
                for p in range(P):
                    for r in range(nr):
                        rhs[p, r] += c * ks[j, p, r]
            _lu_solve_batch(W, piv, rhs, ks[i], nr)
        for p in range(P):
            for r in range(nr):
                wn[p, r] = y[p, r] + ks[5, p, r]  # (stiffly accurate: w + Σ m_j K_j is the last stage point plus K_6)
        for r in range(nr):  # layers the flow keeps equal stay equal (keep_exchanged_layers_equal)
            for k in range(num_pairs[r]):
                a, b, m, sgn = pairs[r, k, 0], pairs[r, k, 1], pairs[r, k, 2], pairs[r, k, 3]
                for p in range(m):
                    mean = 0.5 * (wn[a + p, r] + sgn * wn[b + p, r])
                    wn[a + p, r] = mean
                    wn[b + p, r] = sgn * mean
        # (the value only where a data pass gives it for free: it is needed at recorded steps and at the end)
        _eval_batch(wn, kh, kw, dh, dw, off, fs, ws, g_n, K.runtime(False), nr, live)  # (the workspace: wn)
        for r in range(nr):
            loss_n[r] = vals[r]
            err[r] = 0.0
        for p in range(P):
            for r in range(nr):
                sc = par[_P_ATOL, r] + par[_P_RTOL, r] * max(abs(w[p, r]), abs(wn[p, r]))
                err[r] += (ks[5, p, r] / sc) ** 2
        for r in range(nr):
            if ended[r] >= 0:
                continue
            state[_NFEV, r] += 6
            e_r = math.sqrt(err[r] / P)
            gsq = 0.0
            for p in range(P):
                gsq += g_n[p, r] * g_n[p, r]
            # (the statistics always give the value; a data pass only where asked)
            finite = math.isfinite(e_r) and math.isfinite(gsq) and (loss_n[r] == loss_n[r] or len(fs) != _STATS_LEN)
            t = state[_T, r]
            if not (finite and e_r <= 1.0):
                h = hs[r] * K.step_factor(e_r if finite else math.inf, 0.25, K.runtime(False))
                state[_H, r] = h
                state[_RETRY, r] = 1.0
                if h < 1e-14 * max(abs(t), 1e-300):
                    ended[r] = UNDERFLOW
                continue
            state[_RETRY, r] = 0.0
            ended[r] = _accept(r, w, g, wn, g_n, w_prev, hs[r], e_r, loss_n[r], gsq, state, par, delta0, kh, kw,
                               dh, dw, off, fs, ws, wc, pc, f0, kappa, rec_t, rec_w, rec_loss, rec_g)
    for r in range(nr):
        if ended[r] >= 0 and state[_LOSS, r] != state[_LOSS, r]:
            _point_value(r, w, kh, kw, dh, dw, off, fs, ws, wc, state)
    return running


@K._jit(strict=True, inline="always")
def _point_value(r, w, kh, kw, dh, dw, off, fs, ws, wc, state):
    """``state[_LOSS, r] = L(w[:, r])`` (one more evaluation counted)."""
    for p in range(wc.size):
        wc[p] = w[p, r]
    v = K.product_except(wc, kh, kw, dh, dw, off, K.runtime(-1), K.runtime(-1))
    state[_LOSS, r] = _value_at(fs, v, ws[9])
    state[_NFEV, r] += 1


@K._jit(strict=True, inline="always")
def _accept(r, w, g, wn, g_n, w_prev, hs, err, loss_n, gsq, state, par, delta0, kh, kw, dh, dw, off, fs, ws, wc,
            pc, f0, kappa, rec_t, rec_w, rec_loss, rec_g):
    """Accept run ``r``'s step to ``wn[:, r]`` (size ``hs``, error ``err``, ``L`` there or NaN, ``‖∇L‖²`` there):
    move the run, record it by the recorder's rules, apply the driver's tests; returns the event that ends its segment,
    or ``-1``."""
    P = w.shape[0]
    t = state[_T, r]
    t_limit = par[_P_T_LIMIT, r]
    state[_TPREV, r] = par[_P_OFFSET, r] + t
    clipped = hs == t_limit - t
    t_new = t_limit if clipped else t + hs
    for p in range(P):
        w_prev[p, r] = w[p, r]
        w[p, r] = wn[p, r]
        g[p, r] = g_n[p, r]
        wc[p] = wn[p, r]
        pc[p] = w_prev[p, r]
    t = t_new
    state[_T, r], state[_H, r], state[_LOSS, r] = t, hs * K.step_factor(err, 0.25, K.runtime(True)), loss_n
    # ---- the recorder's per-step quantities (arc length, invariant drift) and the sizes of the tests below
    arc, change, total = K.step_terms(wc, pc, off, delta0[:, r])
    cof, l1 = K.scale_terms(wc, off)
    state[_ARC, r] += arc
    drift = change / max(par[_P_NORM0, r], total, 1e-300)
    if drift > state[_DRIFT, r] or drift != drift:
        state[_DRIFT, r] = drift
    gn = math.sqrt(gsq)
    t_abs = par[_P_OFFSET, r] + t
    state[_ARC_SINCE, r] += arc
    if hs > 0:
        state[_FALL_SINCE, r] += arc * arc / hs
    moved = (state[_ARC_SINCE, r] >= state[_ARC_STEP, r] * state[_NORM_REC, r]
             or state[_FALL_SINCE, r] >= state[_LOSS_STEP, r] * max(state[_LOSS0, r] - state[_MIN_LOSS, r],
                                                                    1e-2 * abs(state[_LOSS0, r])))
    rec_factor = par[_P_REC_FACTOR, r]
    if state[_PENDING, r] != 0.0 or t_abs >= state[_NEXT_T, r] or t_abs >= state[_NEXT_REL, r]:
        if loss_n != loss_n:
            _point_value(r, w, kh, kw, dh, dw, off, fs, ws, wc, state)
        event = moved or state[_PENDING, r] != 0.0
        k = int(state[_NREC, r])
        rec_t[r, k] = t_abs
        rec_loss[r, k] = state[_LOSS, r]
        rec_g[r, k] = gn
        for p in range(P):
            rec_w[r, k, p] = wc[p]
        state[_NREC, r] = k + 1
        state[_ARC_SINCE, r], state[_FALL_SINCE, r], state[_PENDING, r] = 0.0, 0.0, 0.0
        state[_NORM_REC, r] = math.sqrt(total)
        if state[_LOSS, r] < state[_MIN_LOSS, r]:
            state[_MIN_LOSS, r] = state[_LOSS, r]
        if t_abs >= state[_NEXT_T, r]:  # log-spaced in absolute time
            state[_NEXT_T, r] = t_abs * rec_factor if t_abs > 0 else 0.0
        if event:  # log-spaced in the time since this event, from the step that ended at it
            state[_EVENT_T, r] = t_abs
            state[_NEXT_REL, r] = t_abs + hs * rec_factor
        elif state[_EVENT_T, r] > 0 or state[_NEXT_REL, r] < math.inf:
            state[_NEXT_REL, r] = state[_EVENT_T, r] + (t_abs - state[_EVENT_T, r]) * rec_factor
    elif moved:  # (as the recorder does: the next step is recorded)
        state[_PENDING, r] = 1.0
    # ---- the driver's tests, the candidate's exact (gradient_scale with ‖π(w)‖, π from the workspace at w): the
    # driver is handed only states it will take as candidates (it checks them again with its own S)
    size = math.sqrt(total)
    s_ub = cof * (f0 + kappa * l1) if f0 != 0 else cof * kappa * max(l1, par[_P_REF_NORM, r])
    v = ws[0][kh.size]
    v_sq = 0.0
    for a1 in range(v.shape[0]):
        for a2 in range(v.shape[1]):
            v_sq += v[a1, a2, r] * v[a1, a2, r]
    v_norm = math.sqrt(v_sq)
    size_fs = f0 + kappa * v_norm if f0 != 0 else kappa * max(v_norm, par[_P_REF_NORM, r])
    scale = cof * (size_fs if size_fs != 0 else 1.0)
    tests = K.step_tests(gn, size, s_ub, scale, par[_P_TOL_REL, r], par[_P_GTOL, r], par[_P_ORIGIN, r],
                         par[_P_BOUND, r])
    if tests & K.TEST_NONFINITE:
        return NONFINITE
    if tests & K.TEST_REARM:
        return REARM
    if par[_P_CHECK, r] != 0.0 and tests & (K.TEST_CANDIDATE | K.TEST_COLLAPSED):
        return CANDIDATE
    if tests & K.TEST_BLOWUP:
        return BLOWUP
    if int(state[_NREC, r]) >= rec_t.shape[1]:
        return RECORD_FULL
    if not clipped and hs < 1e-8 * t:
        return CLOCK
    return -1


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


class SegmentRunner:
    """What the compiled segments of one risk share: the layers' layout, the function-space risk
    (:func:`function_space_args`), the problem's scales, and buffers for batches of each size (one runner per risk
    and thread, :func:`segment_runner`)."""

    def __init__(self, risk: EmpiricalRisk):
        arch = risk.arch
        self.layout = K.layout(arch.filter_shapes, arch.cumulative_strides[:-1])
        self.fs = function_space_args(risk)
        sc = problem_scales(risk)
        self.f0, self.kappa = sc.gradient_at_zero, sc.curvature
        self.num_params, self.kv = arch.num_params, arch.final_filter_num_params
        self._buffers: dict[int, tuple] = {}

    def buffers(self, runs: int) -> tuple:
        """The workspace and scratch of a batch of ``runs`` runs (room for the next power of two: a few sizes serve
        every batch)."""
        room = 1 << max(runs - 1, 0).bit_length()
        if room not in self._buffers:
            lay = self.layout
            self._buffers[room] = (_workspace_batch(lay.kh, lay.kw, lay.dh, lay.dw, room),
                                   _batch_scratch(self.num_params, self.kv, room))
        return self._buffers[room]

    def run(self, segments: list[Segment], early: bool = False) -> None:
        """Advance ``segments`` (one batch, in compiled code) until each has ended (``ended ≥ 0``), or with
        ``early`` for the square loss until a quarter of them go on: its steps are vectorized over the runs, so steps
        for a few stragglers cost as much as for all (the caller adds new segments to them and calls again).  Data
        passes run per run and only for the runs going on, and a run continued in a later call evaluates its state
        and Hessian again, so a batch of data-pass runs always runs to its end.  Each segment's arrays hold its state
        afterwards."""
        stop_below = len(segments) // 4 if early and len(self.fs) == _STATS_LEN else 0
        lay = self.layout
        ws, scratch = self.buffers(len(segments))
        if len(segments) == 1:  # views of the run's own arrays: the kernel writes into them
            s = segments[0]
            w, g, state, par, delta0, w_prev = (x[:, None] for x in (s.w, s.g, s.state, s.par, s.delta0, s.w_prev))
            pairs, npairs = s.pairs[None], np.array([s.pairs.shape[0]], np.int64)
            rec_t, rec_w, rec_loss, rec_g = (x[None] for x in s.rec)
        else:
            w, g, state, par, delta0, w_prev = (np.stack(x, axis=1) for x in zip(
                *((s.w, s.g, s.state, s.par, s.delta0, s.w_prev) for s in segments), strict=False))
            npairs = np.array([s.pairs.shape[0] for s in segments], np.int64)
            pairs = np.zeros((len(segments), int(npairs.max()), 4), np.int64)
            for r, s in enumerate(segments):
                pairs[r, : npairs[r]] = s.pairs
            # the record buffers: only the rows a segment holds so far are copied (none for a new segment)
            n = len(segments)
            rec_t, rec_w, rec_loss, rec_g = (np.empty((n, RECORD_ROWS)), np.empty((n, RECORD_ROWS, self.num_params)),
                                             np.empty((n, RECORD_ROWS)), np.empty((n, RECORD_ROWS)))
            for r, s in enumerate(segments):
                k = int(s.state[_NREC])
                if k:
                    rec_t[r, :k], rec_w[r, :k], rec_loss[r, :k], rec_g[r, :k] = (x[:k] for x in s.rec)
        ended = np.array([s.ended for s in segments], np.int64)
        rodas4_segments(w, g, state, par, delta0, pairs, npairs, ended, stop_below, lay.kh, lay.kw, lay.dh, lay.dw,
                        lay.off, self.fs, ws, scratch, RODAS4_A, RODAS4_C, RODAS4_GAMMA, self.f0, self.kappa,
                        rec_t, rec_w, rec_loss, rec_g, w_prev)
        for r, s in enumerate(segments):
            s.ended = int(ended[r])
            if len(segments) > 1:
                s.w, s.g, s.state, s.w_prev = w[:, r].copy(), g[:, r].copy(), state[:, r].copy(), w_prev[:, r].copy()
                s.rec = (rec_t[r], rec_w[r], rec_loss[r], rec_g[r])


_RUNNERS = threading.local()


def segment_runner(risk: EmpiricalRisk) -> SegmentRunner:
    """The :class:`SegmentRunner` of ``risk`` in this thread (built once: every run of the risk shares it)."""
    table = getattr(_RUNNERS, "table", None)
    if table is None:
        table = _RUNNERS.table = weakref.WeakKeyDictionary()
    runner = table.get(risk)
    if runner is None:
        runner = table[risk] = SegmentRunner(risk)
    return runner


class Segment:
    """One run's segment: what :func:`rodas4_segments` reads and writes for it (state, gradient, scalars, per-run
    parameters, record buffer), and the event that ended it (``-1`` while it goes on)."""

    __slots__ = ("delta0", "ended", "g", "pairs", "par", "rec", "state", "w", "w_prev")

    def __init__(self, w, g, state, par, delta0, pairs, rec, w_prev):
        self.w, self.g, self.state, self.par, self.delta0, self.pairs = w, g, state, par, delta0, pairs
        self.rec, self.w_prev, self.ended = rec, w_prev, -1


class CompiledRodas4Stepper(Rodas4Stepper):
    """:class:`~lcnflow.dynamics.steppers.Rodas4Stepper` (same scheme, same step-size control) whose segments of
    steps run in compiled code (see the module docstring): :meth:`advance` runs one, :meth:`begin` and
    :meth:`finish` let a batch run many runs' segments together (:meth:`SegmentRunner.run`); with a callback the
    driver asks for one step per segment."""

    description = "Rosenbrock Rodas4 (order 4, L-stable, exact Hessian), compiled"

    def __init__(self, risk, w0, loss0, g0, rtol, atol):
        super().__init__(risk, w0, loss0, g0, rtol, atol)
        self.runner = segment_runner(risk)
        self.offset, self._tau = 0.0, 0.0  # t = offset + τ (see rodas4_segments)

    def begin(self, t_limit: float, max_steps: int, *, check_candidate: bool, tol_rel: float, gtol: float,
              reference_norm: float, bounds: tuple[float, float], recorder) -> Segment:
        """The segment that :meth:`advance` runs, not yet run."""
        loss, g = self.exact()
        if self.h is None:
            self.h = _initial_step(self.w, g, self.rtol, self.atol, t_limit - self.t)
        st = np.zeros(_STATE_SIZE)
        st[_T], st[_H], st[_LOSS] = self._tau, self.h, loss
        st[_NEXT_T] = recorder._next_t
        (st[_ARC_SINCE], st[_FALL_SINCE], st[_NORM_REC], st[_MIN_LOSS], st[_LOSS0], st[_EVENT_T], st[_NEXT_REL],
         st[_PENDING]) = recorder.rule_state()
        st[_ARC_STEP] = math.inf if recorder.arc_step is None else recorder.arc_step
        st[_LOSS_STEP] = math.inf if recorder.arc_step is None else LOSS_STEP
        par = np.empty(_PARAM_SIZE)
        par[_P_OFFSET], par[_P_T_LIMIT], par[_P_MAX_STEPS] = self.offset, t_limit - self.offset, max_steps
        par[_P_CHECK], par[_P_TOL_REL], par[_P_REF_NORM] = float(check_candidate), tol_rel, reference_norm
        par[_P_ORIGIN], par[_P_BOUND] = bounds
        par[_P_NORM0], par[_P_REC_FACTOR] = recorder.norm0, 10 ** (32 / recorder.max_points)
        par[_P_RTOL], par[_P_ATOL], par[_P_GTOL] = self.rtol, self.atol, gtol
        P = self.w.size
        rec = (np.empty(RECORD_ROWS), np.empty((RECORD_ROWS, P)), np.empty(RECORD_ROWS), np.empty(RECORD_ROWS))
        delta0 = np.ascontiguousarray(recorder.delta0) if recorder.delta0.size else np.zeros(1)
        return Segment(self.w.copy(), g.copy(), st, par, delta0, np.ascontiguousarray(self.pairs), rec, np.empty(P))

    def finish(self, seg: Segment, recorder) -> int:
        """Take the state a run segment reached (it must have ended); returns its event."""
        st, w, g = seg.state, seg.w, seg.g
        self.nfev += int(st[_NFEV])
        self.nhev += int(st[_NHEV])
        self.nsteps += int(st[_NSTEPS])
        self.h = st[_H]
        if st[_T] > self._tau:  # at least one accepted step
            self.t_prev, self.w_prev = st[_TPREV], seg.w_prev
            self._tau = st[_T]
            self.t, self.w = self.offset + self._tau, w
            self._cache = (w, st[_LOSS], g)
        rec_t, rec_w, rec_loss, rec_g = seg.rec
        recorder.absorb(int(st[_NREC]), rec_t, rec_w, rec_loss, rec_g, st[_ARC], st[_DRIFT], st[_NEXT_T],
                        (self.t, self.w, st[_LOSS], float(np.linalg.norm(g))),
                        rule=(st[_ARC_SINCE], st[_FALL_SINCE], st[_EVENT_T], st[_NEXT_REL], st[_PENDING]))
        if seg.ended == CLOCK:  # restart the local clock at the current time
            self.offset, self._tau = self.t, 0.0
        return seg.ended

    def advance(self, t_limit: float, max_steps: int, *, check_candidate: bool, tol_rel: float, gtol: float,
                reference_norm: float, bounds: tuple[float, float], recorder) -> int:
        """Steps until one of the module's events (returned); the recorder receives the steps it keeps.  ``bounds``:
        the sizes of ``w`` below which it has collapsed onto the origin and above which it blows up."""
        seg = self.begin(t_limit, max_steps, check_candidate=check_candidate, tol_rel=tol_rel, gtol=gtol,
                         reference_norm=reference_norm, bounds=bounds, recorder=recorder)
        self.runner.run([seg])
        return self.finish(seg, recorder)

    def step(self, t_limit: float) -> str | None:
        """Not used: the driver calls :meth:`advance` (one step per call when it must see every step)."""
        raise NotImplementedError("the driver calls advance(); see lcnflow.dynamics.compiled")
