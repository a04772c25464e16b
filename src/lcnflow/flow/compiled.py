r"""The compiled integrator: many steps of the flow per call, with the driver's per-step tests inside.

For the square loss a gradient from the statistics ``(G, v̂)`` costs well under a microsecond of arithmetic, so a
run's time is spent in the Python around it: the integrator's step logic, the driver's tests and the recorder.
:class:`CompiledRosenbrockStepper` runs the scheme of :class:`~lcnflow.flow.steppers.RosenbrockStepper` (the
linearly implicit, L-stable ``ode23s`` pair, exact Hessian) in one Numba function, :func:`ode23s_square_segment`,
which takes steps until something needs the driver:

* a possible candidate limit — the driver's cheap pre-test ``‖∇L(w)‖ ≤ 100 · tol · S_ub(w)``, where
  ``S_ub = D(w)(f_0 + κ Π_i ‖w^{(i)}‖_1) ≥ S(w)`` (:func:`~lcnflow.flow.certify.gradient_scale`);
* the flow leaving the last rejected candidate (``‖∇L‖ > gtol · S_ub`` while the tolerance is tightened);
* ``‖w‖`` above the blow-up bound or collapsed onto the origin, a non-finite state, a step size that underflows;
* the time limit (the next save time, ``t_max`` or the stall time), a step budget, a full record buffer.

Each accepted step's arc length and invariant drift are accumulated as :class:`~lcnflow.flow.result.Recorder`
does, and the steps the recorder would keep (log-spaced in time) are written to a buffer the driver hands to it.
The driver then applies exactly the tests it applies after a Python step, so a run takes the same decisions on
either path; the compiled and Python steppers agree to rounding (``tests/test_compiled_flow.py``).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _kernels as K
from ..risk import EmpiricalRisk
from .certify import problem_scales
from .steppers import _D, _E32, RosenbrockStepper, _initial_step

# what ended a segment
STEP_BUDGET, T_LIMIT, CANDIDATE, REARM, BLOWUP, NONFINITE, UNDERFLOW, RECORD_FULL, CLOCK = range(9)

# the scalar state a segment reads and writes (one float64 array)
_T, _H, _ARC, _DRIFT, _NEXT_T, _NFEV, _NHEV, _NSTEPS, _NREC, _LOSS, _TPREV, _HLAST = range(12)
_STATE_SIZE = 12

#: Rows of the record buffer (a segment returns when it is full).
RECORD_ROWS = 64


@K._jit()
def _square_hessian(w, kh, kw, dh, dw, off, G, ge):
    r"""``∇²L = Jᵀ G J + Σ_t (Ge)_t ∇²π_t`` of the square loss (``J = dπ(w)``, ``ge = Ge`` in π's shape)."""
    J = K.jacobian(w, kh, kw, dh, dw, off)
    hess = J.T @ (G @ J) + K.hessian_contraction(w, kh, kw, dh, dw, off, ge)
    return 0.5 * (hess + hess.T)


@K._jit()
def _rms(x, w, wn, rtol, atol):
    s = 0.0
    for i in range(x.size):
        sc = atol + rtol * max(abs(w[i]), abs(wn[i]))
        s += (x[i] / sc) ** 2
    return math.sqrt(s / x.size)


@K._jit()
def ode23s_square_segment(w, g, state, offset, t_limit, max_steps, rtol, atol,
                          kh, kw, dh, dw, off, v_hat, G, minimum,
                          check_candidate, tol_rel, gtol, f0, kappa, reference_norm, origin_size, bound,
                          delta0, norm0, rec_factor, rec_t, rec_w, rec_loss, rec_g, w_prev, k1_out, k2_out):
    r"""Steps of ``ode23s`` on ``ẇ = −∇L(w)`` for the square loss, from ``(w, g = ∇L(w))`` at ``state[_T]``.

    Times are on the stepper's local clock ``τ = t − offset`` (``t_limit`` too; recorded times are absolute): the
    flow is autonomous, and when the steps become small against ``τ`` (``h < 10⁻⁸ τ``, e.g. an escape at
    ``t ~ 10³¹`` after a long plateau, where ``t + 1 = t`` in float64) the segment returns ``CLOCK`` and the caller
    restarts the clock.  ``w``, ``g`` are overwritten with the state reached and its gradient; ``w_prev``,
    ``k1_out``, ``k2_out`` with the last step's start and stages (dense output); ``state`` with the scalars (time,
    step size, arc length, drift, next record time, counters, record rows, loss, previous time, last step).  Returns
    the reason the segment ended (the module's constants).
    """
    P = w.size
    eye = np.eye(P)
    n_layers = off.size - 1
    t = state[_T]
    h = state[_H]
    nsteps = 0
    sq = np.empty(n_layers)
    while True:
        if nsteps >= max_steps:
            return STEP_BUDGET
        if t >= t_limit:
            return T_LIMIT
        # ---- one accepted step (rejections retried inside)
        _, _, ge0 = K.square_value_grad(w, kh, kw, dh, dw, off, v_hat, G, minimum, False)
        hess = _square_hessian(w, kh, kw, dh, dw, off, G, ge0)
        state[_NHEV] += 1
        F0 = -g
        while True:
            hs = min(h, t_limit - t)
            nsteps += 1
            state[_NSTEPS] += 1
            Winv = np.linalg.inv(eye + (hs * _D) * hess)
            k1 = Winv @ F0
            _, g1, _ = K.square_value_grad(w + (0.5 * hs) * k1, kh, kw, dh, dw, off, v_hat, G, minimum, False)
            F1 = -g1
            k2 = Winv @ (F1 - k1) + k1
            wn = w + hs * k2
            loss_n, g2, _ = K.square_value_grad(wn, kh, kw, dh, dw, off, v_hat, G, minimum, True)
            state[_NFEV] += 2
            F2 = -g2
            k3 = Winv @ (F2 - _E32 * (k2 - F1) - 2.0 * (k1 - F0))
            err = (hs / 6.0) * _rms(k1 - 2.0 * k2 + k3, w, wn, rtol, atol)
            finite = math.isfinite(err) and math.isfinite(loss_n)
            if finite and err <= 1.0:
                break
            h = hs * (max(0.2, 0.8 * err ** (-1.0 / 3.0)) if finite else 0.25)
            if h < 1e-14 * max(abs(t), 1e-300):
                state[_T], state[_H] = t, h
                return UNDERFLOW
        # ---- accept
        for i in range(P):
            w_prev[i] = w[i]
            k1_out[i] = k1[i]
            k2_out[i] = k2[i]
        state[_TPREV] = offset + t
        state[_HLAST] = hs
        clipped = hs == t_limit - t
        t_new = t_limit if clipped else t + hs
        arc = 0.0
        for i in range(P):
            d = wn[i] - w[i]
            arc += d * d
            w[i] = wn[i]
            g[i] = g2[i]
        t = t_new
        h = hs * (5.0 if err == 0 else min(5.0, 0.8 * err ** (-1.0 / 3.0)))
        state[_T], state[_H], state[_LOSS] = t, h, loss_n
        state[_ARC] += math.sqrt(arc)
        # ---- the recorder's per-step quantities: invariant drift, squared layer norms
        total, l1 = 0.0, 1.0
        for i in range(n_layers):
            s2, s1 = 0.0, 0.0
            for p in range(off[i], off[i + 1]):
                s2 += w[p] * w[p]
                s1 += abs(w[p])
            sq[i] = s2
            total += s2
            l1 *= s1
        change = 0.0
        for i in range(n_layers - 1):
            c = abs(sq[i + 1] - sq[i] - delta0[i])
            if c > change or c != c:
                change = c
        drift = change / max(norm0, total, 1e-300)
        if drift > state[_DRIFT] or drift != drift:
            state[_DRIFT] = drift
        gn = math.sqrt(np.sum(g * g))
        t_abs = offset + t
        if t_abs >= state[_NEXT_T]:
            r = int(state[_NREC])
            rec_t[r] = t_abs
            rec_loss[r] = loss_n
            rec_g[r] = gn
            for i in range(P):
                rec_w[r, i] = w[i]
            state[_NREC] = r + 1
            state[_NEXT_T] = t_abs * rec_factor if t_abs > 0 else 0.0
        # ---- the driver's tests
        size = math.sqrt(total)
        if not (math.isfinite(gn) and math.isfinite(size)):
            return NONFINITE
        cof = 0.0
        for i in range(n_layers):
            prod = 1.0
            for j in range(n_layers):
                if j != i:
                    prod *= sq[j]
            cof += prod
        cof = math.sqrt(cof)
        s_ub = cof * (f0 + kappa * l1) if f0 != 0 else cof * kappa * max(l1, reference_norm)
        if tol_rel < gtol and gn > gtol * s_ub:
            return REARM
        if check_candidate and (gn <= 100.0 * tol_rel * s_ub or size <= origin_size):
            return CANDIDATE
        if size > bound:
            return BLOWUP
        if int(state[_NREC]) >= rec_t.size:
            return RECORD_FULL
        if not clipped and hs < 1e-8 * t:
            return CLOCK


def available(risk: EmpiricalRisk) -> bool:
    """Whether the compiled integrator can run ``risk``: the square loss from its statistics, kernels enabled."""
    return K.ENABLED and risk.is_quadratic


class CompiledRosenbrockStepper(RosenbrockStepper):
    """:class:`~lcnflow.flow.steppers.RosenbrockStepper` (same scheme) whose :meth:`advance` runs many steps in one
    compiled call (see the module docstring).  :meth:`step` (one Python step) remains for runs with a callback."""

    description = "linearly implicit Rosenbrock ode23s (exact Hessian), compiled"

    def __init__(self, risk, w0, loss0, g0, rtol, atol):
        super().__init__(risk, w0, loss0, g0, rtol, atol)
        c = risk._compiled()
        self._args = (*c.args, np.ascontiguousarray(risk.least_squares_filter.reshape(-1), dtype=np.float64),
                      np.ascontiguousarray(risk.gram, dtype=np.float64), float(risk.minimum_value))
        sc = problem_scales(risk)
        self._f0, self._kappa = sc.gradient_at_zero, sc.curvature
        P = w0.size
        self.offset, self._tau = 0.0, 0.0  # t = offset + τ (see ode23s_square_segment)
        self._state = np.zeros(_STATE_SIZE)
        self._rec = (np.empty(RECORD_ROWS), np.empty((RECORD_ROWS, P)), np.empty(RECORD_ROWS), np.empty(RECORD_ROWS))
        self._kbuf = (np.empty(P), np.empty(P), np.empty(P))

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
        w, g = self.w.copy(), g.copy()
        w_prev, k1, k2 = self._kbuf
        rec_t, rec_w, rec_loss, rec_g = self._rec
        event = ode23s_square_segment(
            w, g, st, self.offset, t_limit - self.offset, max_steps, self.rtol, self.atol, *self._args,
            check_candidate, tol_rel, gtol,
            self._f0, self._kappa, reference_norm, *bounds, recorder.delta0, recorder.norm0,
            10 ** (32 / recorder.max_points), rec_t, rec_w, rec_loss, rec_g, w_prev, k1, k2)
        taken = int(st[_NSTEPS])
        self.nfev += int(st[_NFEV])
        self.nhev += int(st[_NHEV])
        self.nsteps += taken
        self.h = st[_H]
        if st[_T] > self._tau:  # at least one accepted step
            self.t_prev, self.w_prev = st[_TPREV], w_prev.copy()
            self._k = (k1.copy(), k2.copy(), st[_HLAST])
            self._tau = st[_T]
            self.t, self.w = self.offset + self._tau, w
            self._cache = (w, st[_LOSS], g)
        recorder.absorb(int(st[_NREC]), rec_t, rec_w, rec_loss, rec_g, st[_ARC], st[_DRIFT], st[_NEXT_T],
                        (self.t, self.w, st[_LOSS], float(np.linalg.norm(g))))
        if event == CLOCK:  # restart the local clock at the current time
            self.offset, self._tau = self.t, 0.0
        return event

    def step(self, t_limit: float) -> str | None:
        """One accepted step (for callers that drive steps one at a time)."""
        raise NotImplementedError("the driver calls advance(); see lcnflow.flow.compiled")
