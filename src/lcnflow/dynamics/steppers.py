r"""Steppers: one accepted step of an integrator (or of gradient descent) at a time, behind one interface.

A stepper owns its state ``(t, w)``, its step-size control and its counters; the driver
(:mod:`lcnflow.dynamics.driver`) owns everything else — when to stop, certification, recording, ``save_at``, callbacks
and the itinerary.  The interface follows scipy's ``OdeSolver``:

* :meth:`Stepper.step` advances by one accepted step, never past ``t_limit``, and returns ``None`` or a failure
  message;
* :meth:`Stepper.dense` gives the state at a time inside the last step;
* :meth:`Stepper.exact` gives ``(L, ∇L)`` at the current state (cached), :meth:`Stepper.speed` a cheap estimate of
  ``‖∇L‖`` there;
* counters ``nfev``, ``nhev``, ``nsteps`` (attempted steps, rejected ones included);
* steppers that run in compiled code (:mod:`lcnflow.dynamics.compiled`) have ``advance`` instead of ``step``: many
  steps per call, with the driver's per-step tests inside.

Integrators (float64, the structured gradient and exact Hessian of :class:`~lcnflow.EmpiricalRisk`):

* ``auto`` (the default, :func:`lcnflow.dynamics.solvers.auto_integrator`): ``rodas4`` below, run in compiled
  segments of many steps (:mod:`lcnflow.dynamics.compiled`) for the square loss and every built-in loss whose data
  passes the kernels run, in NumPy for custom losses; LSODA for built-in losses on long 2D filters, where a
  Hessian costs about thirty gradients.  LSODA is not the default elsewhere: its corrector iterations stop at the
  local error tolerance, so near a limit its trajectory wanders at that distance and ``‖∇L‖`` can stay above the
  candidate tolerance for ever (seen on a planted pseudo-Huber problem: 46 000 steps, ``‖∇L‖ ≈ 10⁻⁵``, 7·10⁻⁸
  from the minimum); a Rosenbrock step solves one linear system exactly, every limit is a fixed point of it, and
  L-stability makes the steps contract onto it.
* ``rodas4`` — Hairer and Wanner's Rodas4: a Rosenbrock method of order 4 (embedded order 3), stiffly accurate and
  L-stable, with the exact Hessian; one Hessian, one LU factorization and five gradients per step.
* ``LSODA`` — Adams–Moulton on non-stiff stretches, BDF with the exact Hessian as Jacobian
  where the flow is stiff; step sizes grow geometrically on plateaus and as the flow settles.
* ``exponential`` — exponential Rosenbrock ``exprb32`` with ``∇²L = QΛQᵀ``: ``U = w_n + h φ_1(−hΛ) F``,
  ``w_{n+1} = U + 2h φ_3(−hΛ) D``, ``F = −∇L(w_n)``, ``D = F(U) − F(w_n) + ∇²L (U − w_n)``; exact on quadratic
  stretches.
* ``rosenbrock`` — linearly implicit, L-stable Rosenbrock method of order 2 with an order-3 error estimate
  (Shampine & Reichelt's ``ode23s`` scheme), ``W = I + h d ∇²L``, ``d = 1/(2 + √2)``.
* scipy's ``RK45``, ``DOP853`` (explicit: held at the stability limit once the flow is stiff), ``Radau``, ``BDF``,
  ``LSODA``.
* :class:`DescentStepper` — gradient descent ``w ← w − η∇L(w)``, fixed or Armijo-safeguarded ``η``; its "time" is
  ``Σ η``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from lcnflow.kernels import step_factor
from lcnflow.model.conv import final_filter_parts, flat_norm, unflatten
from lcnflow.model.risk import EmpiricalRisk

_D = 1.0 / (2.0 + math.sqrt(2.0))
_E32 = 6.0 + math.sqrt(2.0)
#: A stiff scipy solver's Jacobian reuses ∇²ℒ(v) while π(w) moves less than this, relative (see ScipyStepper).
JACOBIAN_REUSE = 0.25

# Rodas4 (Hairer & Wanner, Solving ODEs II, §VI.4): 6 stages, order 4 with an embedded order-3 solution, stiffly
# accurate and L-stable.  Stage i: (I/(γh) − J) K_i = F(w + Σ_j a_ij K_j) + Σ_j (c_ij/h) K_j; w_{n+1} = w + Σ_j m_j K_j
# = (the last stage point) + K_6, whose size is the local error estimate.
RODAS4_GAMMA = 0.25
RODAS4_A = np.zeros((6, 6))
RODAS4_C = np.zeros((6, 6))
RODAS4_A[1, 0] = 1.544
RODAS4_A[2, :2] = 0.9466785280815826, 0.2557011698983284
RODAS4_A[3, :3] = 3.314825187068521, 2.896124015972201, 0.9986419139977817
RODAS4_A[4, :4] = 1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950
RODAS4_A[5, :5] = *RODAS4_A[4, :4], 1.0
RODAS4_C[1, 0] = -5.6688
RODAS4_C[2, :2] = -2.430093356833875, -0.2063599157091915
RODAS4_C[3, :3] = -0.1073529058151375, -9.594562251023355, -20.47028614809616
RODAS4_C[4, :4] = 7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160
RODAS4_C[5, :5] = 8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136, -6.058818238834054
RODAS4_M = np.array([*RODAS4_A[4, :4], 1.0, 1.0])
_TAYLOR1 = [1.0 / math.factorial(j + 1) for j in range(9)]
_TAYLOR3 = [1.0 / math.factorial(j + 3) for j in range(9)]


class Stepper:
    """Base class: the state, the cached exact evaluation and the counters (see the module docstring)."""

    description = ""

    def __init__(self, risk: EmpiricalRisk, w0: np.ndarray, loss0: float, g0: np.ndarray):
        self.risk = risk
        self.t = self.t_prev = 0.0
        self.w = self.w_prev = w0.copy()
        self.nfev, self.nhev, self.nsteps = 0, 0, 0
        self._cache: tuple[np.ndarray, float, np.ndarray] | None = (self.w, loss0, g0)

    def _evaluate(self, w: np.ndarray, need_value: bool = True) -> tuple[float, np.ndarray]:
        self.nfev += 1
        return self.risk.flat_value_and_gradient(w, need_value=need_value)

    def _accept(self, t: float, w: np.ndarray, loss: float | None = None, g: np.ndarray | None = None) -> None:
        self.t_prev, self.w_prev = self.t, self.w
        self.t, self.w = t, w
        self._cache = (w, loss, g) if g is not None and loss is not None else None

    def exact(self) -> tuple[float, np.ndarray]:
        """``(L(w), ∇L(w))`` at the current state (evaluated once per state)."""
        if self._cache is None or self._cache[0] is not self.w:
            loss, g = self._evaluate(self.w)
            self._cache = (self.w, loss, g)
        return self._cache[1], self._cache[2]

    def has_exact(self) -> bool:
        """Whether :meth:`exact` is free (already known at the current state)."""
        return self._cache is not None and self._cache[0] is self.w

    def speed(self) -> float:
        """A cheap estimate of ``‖∇L(w)‖``: exact when known (or when the last step did not advance the clock),
        else the chord speed of the last step."""
        if self.has_exact() or self.t <= self.t_prev:
            return flat_norm(self.exact()[1])
        return flat_norm(self.w - self.w_prev) / max(self.t - self.t_prev, 1e-300)

    def dense(self, t: float) -> np.ndarray:
        """The state at ``t`` in ``[t_prev, t]``.  The base class serves steppers that end a step on every time the
        driver asks for (``t_limit``), so only ``t = self.t`` can be asked; the others override this."""
        if t < self.t:
            raise NotImplementedError(f"{type(self).__name__} has no dense output inside a step")
        return self.w.copy()

    def step(self, t_limit: float) -> str | None:  # pragma: no cover - interface
        """Advance by one accepted step, not past ``t_limit``; ``None`` or a failure message."""
        raise NotImplementedError


def _initial_step(w: np.ndarray, g: np.ndarray, rtol: float, atol: float, t_limit: float) -> float:
    """A small fraction of the time scale ``‖w‖/‖∇L‖`` in the error norm."""
    sc = atol + rtol * np.abs(w)
    h = 0.01 * max(flat_norm(w / sc), 1.0) / max(flat_norm(g / sc), 1e-300)
    return min(h, t_limit)


def _phi13(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``φ_1(z) = (e^z − 1)/z`` and ``φ_3(z) = (e^z − 1 − z − z²/2)/z³``, stable for all real ``z``.

    Taylor series (8 terms, error < 1e-16) for ``|z| < 0.1``; closed forms elsewhere, with ``z`` capped at 700 so a
    step through a strongly unstable direction gives a huge, rejected error estimate instead of ``inf``.
    """
    z = np.minimum(z, 700.0)
    small = np.abs(z) < 0.1
    zl = np.where(small, 1.0, z)
    em1 = np.expm1(zl)
    phi1 = em1 / zl
    phi3 = (em1 - zl - 0.5 * zl * zl) / (zl * zl * zl)
    if small.any():
        zs = z[small]
        p1, p3 = _TAYLOR1[-1], _TAYLOR3[-1]
        for c1, c3 in zip(_TAYLOR1[-2::-1], _TAYLOR3[-2::-1], strict=True):
            p1 = p1 * zs + c1
            p3 = p3 * zs + c3
        phi1[small] = p1
        phi3[small] = p3
    return phi1, phi3


class ExponentialStepper(Stepper):
    r"""Exponential Rosenbrock ``exprb32`` (order 3, embedded order 2) with the exact Hessian.

    With ``J = −∇²L(w_n) = −QΛQᵀ`` and ``F = −∇L``: ``U = w_n + h φ_1(hJ) F(w_n)``,
    ``D = F(U) − F(w_n) − J(U − w_n)``, ``w_{n+1} = U + 2h φ_3(hJ) D``; the local error estimate is
    ``2h φ_3(hJ) D``.  Steps end exactly on ``t_limit`` (the driver's save times), so no interpolation is needed
    there.  Layers that start equal up to sign stay exactly equal (:func:`keep_exchanged_layers_equal`).
    """

    description = "exponential Rosenbrock exprb32 (exact Hessian)"

    def __init__(self, risk, w0, loss0, g0, rtol, atol):
        super().__init__(risk, w0, loss0, g0)
        self.rtol, self.atol = rtol, atol
        self._hess = risk.flat_hessian(w0)
        self.nhev += 1
        self._eig = None
        self.h = None
        self.pairs = exchange_pairs(risk, w0)

    def step(self, t_limit: float) -> str | None:
        risk, w = self.risk, self.w
        g = self.exact()[1]
        if self.h is None:
            self.h = _initial_step(w, g, self.rtol, self.atol, t_limit - self.t)
        if self._eig is None:
            lam, Q = np.linalg.eigh(self._hess)
            self._eig = (lam, Q, Q.T @ g)
        lam, Q, a = self._eig
        while True:
            h_try = min(self.h, t_limit - self.t)
            phi1, phi3 = _phi13(-h_try * lam)
            dU = Q @ (-h_try * phi1 * a)
            U = w + dU
            _, gU = self._evaluate(U, False)
            self.nsteps += 1
            D = g - gU + self._hess @ dU  # F(U) − F(w) − J(U − w) with F = −∇L, J = −∇²L
            e = Q @ ((2.0 * h_try) * phi3 * (Q.T @ D))
            wn = U + e
            keep_exchanged_layers_equal(wn, self.pairs)
            scale = self.atol + self.rtol * np.maximum(np.abs(w), np.abs(wn))
            err = float(np.sqrt(np.mean((e / scale) ** 2)))
            if math.isfinite(err) and err <= 1.0:
                loss_n, g_n, hess_n = risk.flat_value_gradient_hessian(wn)
                self.nfev += 1
                self.nhev += 1
                if math.isfinite(loss_n):
                    break
            self.h = h_try * (0.25 if err <= 1.0 else step_factor(err, 1 / 3, False))  # (≤ 1: L(w_n) was not finite)
            if self.h < 1e-14 * max(abs(self.t), 1e-300):
                return "the step size underflowed"
        t_new = t_limit if h_try == t_limit - self.t else self.t + h_try
        self._accept(t_new, wn, loss_n, g_n)
        self._hess, self._eig = hess_n, None
        grow = step_factor(err, 1 / 3, True)
        self.h = max(self.h, h_try * grow) if h_try < self.h else h_try * grow
        return None


def exchange_pairs(risk: EmpiricalRisk, w0: np.ndarray) -> np.ndarray:
    """Rows ``(start_i, start_j, size, σ)``: layers that start equal up to the sign ``σ`` and that the flow keeps equal
    (:func:`~lcnflow.analysis.symmetry.symmetric_layers`); empty ``(0, 4)`` when there are none."""
    from lcnflow.analysis.symmetry import layer_starts, symmetric_layers

    starts = layer_starts(risk.arch)
    sizes = risk.arch.layer_num_params
    rows = [(starts[i - 1], starts[j - 1], sizes[i - 1], s) for i, j, s in symmetric_layers(risk.arch, w0)]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def keep_exchanged_layers_equal(w: np.ndarray, pairs: np.ndarray) -> None:
    """In place: each pair of layers of :func:`exchange_pairs` set to their mean (up to the sign).  The exact flow
    keeps such layers equal; rounding in a step does not, and near a saddle the difference grows along its unstable
    direction until the run leaves the set the start lies on (and ends at another limit)."""
    for a, b, n, s in pairs:
        mean = 0.5 * (w[a : a + n] + s * w[b : b + n])
        w[a : a + n] = mean
        w[b : b + n] = s * mean


class Rodas4Stepper(Stepper):
    r"""Rodas4 with the exact Hessian (``J = −∇²L``), one Hessian and one LU factorization per step.

    With ``W = I + γh∇²L``: ``W K_i = γh (F(Y_i) + Σ_{j<i} (c_ij/h) K_j)``, ``Y_i = w_n + Σ_{j<i} a_ij K_j``,
    ``w_{n+1} = w_n + Σ_j m_j K_j``; the error estimate is ``K_6`` (order 4 against the embedded order 3, so steps
    change by ``err^{−1/4}``).  Steps end exactly on ``t_limit``.  Layers that start equal up to sign and that the
    flow keeps equal are kept exactly equal (:func:`keep_exchanged_layers_equal`).  This is the NumPy reference of
    the compiled segments (:mod:`lcnflow.dynamics.compiled`) the square loss runs by default.
    """

    description = "Rosenbrock Rodas4 (order 4, L-stable, exact Hessian)"

    def __init__(self, risk, w0, loss0, g0, rtol, atol):
        super().__init__(risk, w0, loss0, g0)
        self.rtol, self.atol = rtol, atol
        self.h = None
        self.pairs = exchange_pairs(risk, w0)

    def step(self, t_limit: float) -> str | None:
        risk, w = self.risk, self.w
        _, g = self.exact()
        if self.h is None:
            self.h = _initial_step(w, g, self.rtol, self.atol, t_limit - self.t)
        hess = risk.flat_hessian(w)
        self.nhev += 1
        eye = np.eye(w.size)
        while True:
            h = min(self.h, t_limit - self.t)
            self.nsteps += 1
            gh = RODAS4_GAMMA * h
            try:
                lu = scipy.linalg.lu_factor(eye + gh * hess, check_finite=False)
            except (ValueError, np.linalg.LinAlgError):
                lu = None
            ks: list[np.ndarray] = []
            loss_n = err = math.inf
            if lu is not None:
                for i in range(6):
                    F = -g if i == 0 else -self._evaluate(w + sum(RODAS4_A[i, j] * ks[j] for j in range(i)), False)[1]
                    rhs = gh * F + sum((RODAS4_GAMMA * RODAS4_C[i, j]) * ks[j] for j in range(i)) if i else gh * F
                    ks.append(scipy.linalg.lu_solve(lu, rhs, check_finite=False))
                wn = w + sum(RODAS4_M[j] * ks[j] for j in range(6))
                keep_exchanged_layers_equal(wn, self.pairs)
                loss_n, g_n = self._evaluate(wn)
                scale = self.atol + self.rtol * np.maximum(np.abs(w), np.abs(wn))
                err = float(np.sqrt(np.mean((ks[5] / scale) ** 2)))
            finite = math.isfinite(err) and math.isfinite(loss_n)
            if finite and err <= 1.0:
                break
            self.h = h * step_factor(err if finite else math.inf, 0.25, False)
            if self.h < 1e-14 * max(abs(self.t), 1e-300):
                return "the step size underflowed"
        t_new = t_limit if h == t_limit - self.t else self.t + h
        self._accept(t_new, wn, loss_n, g_n)
        self.h = h * step_factor(err, 0.25, True)
        return None


class RosenbrockStepper(Stepper):
    """Linearly implicit Rosenbrock method of order 2 (``ode23s`` scheme), exact Hessian, own dense output; layers
    that start equal up to sign and that the flow keeps equal are kept exactly equal
    (:func:`keep_exchanged_layers_equal`)."""

    description = "linearly implicit Rosenbrock ode23s (exact Hessian)"

    def __init__(self, risk, w0, loss0, g0, rtol, atol):
        super().__init__(risk, w0, loss0, g0)
        self.rtol, self.atol = rtol, atol
        self._eye = np.eye(w0.size)
        self._k = None
        self.h = None
        self.pairs = exchange_pairs(risk, w0)

    def step(self, t_limit: float) -> str | None:
        risk, w = self.risk, self.w
        _, g = self.exact()
        F0 = -g
        if self.h is None:
            self.h = _initial_step(w, g, self.rtol, self.atol, t_limit - self.t)
        hess = risk.flat_hessian(w)
        self.nhev += 1
        while True:
            h = min(self.h, t_limit - self.t)
            self.nsteps += 1
            try:
                Winv = np.linalg.inv(self._eye + (h * _D) * hess)
            except np.linalg.LinAlgError:
                self.h = 0.25 * h
                continue
            k1 = Winv @ F0
            _, g1 = self._evaluate(w + (0.5 * h) * k1, False)
            F1 = -g1
            k2 = Winv @ (F1 - k1) + k1
            wn = w + h * k2
            keep_exchanged_layers_equal(wn, self.pairs)
            loss_n, g2 = self._evaluate(wn)
            F2 = -g2
            k3 = Winv @ (F2 - _E32 * (k2 - F1) - 2.0 * (k1 - F0))
            scale = self.atol + self.rtol * np.maximum(np.abs(w), np.abs(wn))
            err = (h / 6.0) * float(np.sqrt(np.mean(((k1 - 2.0 * k2 + k3) / scale) ** 2)))
            if math.isfinite(err) and math.isfinite(loss_n) and err <= 1.0:
                break
            finite = math.isfinite(err) and math.isfinite(loss_n)
            self.h = h * step_factor(err if finite else math.inf, 1 / 3, False)
            if self.h < 1e-14 * max(abs(self.t), 1e-300):
                return "the step size underflowed"
        self._k = (k1, k2, h)
        self._accept(self.t + h, wn, loss_n, g2)
        self.h = h * step_factor(err, 1 / 3, True)
        return None

    def dense(self, t: float) -> np.ndarray:
        """The scheme's own continuous extension inside the last step."""
        if self._k is None or t >= self.t:
            return self.w.copy()
        k1, k2, h = self._k
        theta = (t - self.t_prev) / h
        return self.w_prev + h * ((theta * (1 - theta) / (1 - 2 * _D)) * k1
                                  + (theta * (theta - 2 * _D) / (1 - 2 * _D)) * k2)


class ScipyStepper(Stepper):
    """One of scipy's ``OdeSolver`` classes on ``ẇ = −∇L(w)`` (stiff ones get the exact Hessian as Jacobian).

    The exact gradient is evaluated at accepted steps only on request (:meth:`exact`); :meth:`speed` is the chord
    speed ``‖w_{n+1} − w_n‖/h``, an estimate of ``‖∇L‖`` since ``ẇ = −∇L``.

    The Jacobian of the stiff methods is ``−∇²L = −(dπᵀ ∇²ℒ(v) dπ + Σ_t ∂_tℒ(v) ∇²π_t)`` at the requested point,
    except that for losses other than the square loss the function-space Hessian ``∇²ℒ`` (a weighted pass over all
    the data, the costly part) is reused while ``v = π(w)`` stays within :data:`JACOBIAN_REUSE` (relative) of where
    it was computed.  The Jacobian only drives the solver's Newton iterations: accuracy is the error control's
    business, and an older ``∇²ℒ`` at most costs an iteration more.

    The flow is autonomous, so the solver runs on a shifted clock ``t − t_offset``: when its steps become small
    against its own clock (``h < 1e-8 t``, e.g. an escape at ``t ~ 1e31`` after a long plateau, where ``t + 1 = t``
    in float64) it is restarted at local time 0 and the steps are resolved again.
    """

    def __init__(self, risk, w0, loss0, g0, method, rtol, atol, t_max):
        super().__init__(risk, w0, loss0, g0)
        import scipy.integrate  # imported when a run needs it (about 0.8 s at start-up)

        self.description = "LSODA (Adams/BDF switching, exact Hessian as Jacobian)" if method == "LSODA" else (
            f"scipy {method}")
        self._last: tuple[np.ndarray, float, np.ndarray] = (w0.copy(), loss0, g0)
        kwargs = {"rtol": rtol, "atol": atol}
        if method in ("Radau", "BDF", "LSODA"):
            kwargs["jac"] = self._jac
        self._new_solver = lambda y, bound: getattr(scipy.integrate, method)(self._fun, 0.0, y, bound, **kwargs)
        self.t_max, self.offset = t_max, 0.0
        self.solver = self._last_solver = self._new_solver(w0.copy(), t_max)
        self._step_offset = 0.0
        self._dense = None
        self._fs: tuple[np.ndarray, np.ndarray] | None = None
        self.num_function_space_hessians = 0

    def _fun(self, _t, y):
        val, grad = self._evaluate(y)
        self._last = (y.copy(), val, grad)
        return -grad

    def _jac(self, _t, y):
        """``−∇²L(y)``, for the other losses with the function-space Hessian of a nearby point (see the class)."""
        self.nhev += 1
        risk = self.risk
        if risk.is_quadratic:
            return -risk.flat_hessian(y)
        parts = final_filter_parts(risk.arch, unflatten(risk.arch, y))
        v = parts.final_filter.ravel()
        if self._fs is None or np.linalg.norm(v - self._fs[0]) > JACOBIAN_REUSE * np.linalg.norm(self._fs[0]):
            self._fs = (v.copy(), risk.function_space_hessian(v))
            self.num_function_space_hessians += 1
        J = parts.jacobian()
        g = risk.function_space_gradient(v.reshape(risk.arch.final_filter_shape))
        hess = J.T @ self._fs[1] @ J + parts.hessian_contraction(g)
        return -0.5 * (hess + hess.T)

    def step(self, t_limit: float) -> str | None:
        s = self.solver
        if s.status != "running":
            return f"scipy {type(s).__name__} stopped: {s.status}"
        t_old = s.t
        msg = s.step()
        self.nsteps += 1
        if s.status == "failed":
            return f"scipy {type(s).__name__} failed: {msg}"
        y = s.y.copy()
        self._dense, self._last_solver, self._step_offset = None, s, self.offset
        last_y, loss, g = self._last
        known = np.array_equal(last_y, y)
        self._accept(self.offset + float(s.t), y, loss if known else None, g if known else None)
        if s.status == "running" and s.t > 0 and s.t - t_old < 1e-8 * s.t:  # restart on a shifted clock
            self.offset = self.t
            self.solver = self._new_solver(y, self.t_max - self.offset)
        return None

    def dense(self, t: float) -> np.ndarray:
        if t >= self.t:
            return self.w.copy()
        if self._dense is None:
            self._dense = self._last_solver.dense_output()
        return np.asarray(self._dense(t - self._step_offset))


class DescentStepper(Stepper):
    r"""Gradient descent ``w ← w − η ∇L(w)``; with ``adaptive`` Armijo-safeguarded ``η`` (halved until
    ``L(w − ηg) ≤ L(w) − ½η‖g‖²``, then grown by 1.25).  Time is ``Σ η``; :meth:`dense` is the last iterate at or
    before ``t``."""

    def __init__(self, risk, w0, loss0, g0, step_size: float, adaptive: bool):
        super().__init__(risk, w0, loss0, g0)
        self.eta, self.adaptive = float(step_size), adaptive
        self.description = ("gradient descent, adaptive (Armijo-safeguarded)" if adaptive
                            else f"gradient descent, fixed step η = {step_size:g}")

    def step(self, t_limit: float) -> str | None:
        loss, g = self.exact()
        gn2 = float(g @ g)
        while True:
            trial = self.w - self.eta * g
            loss_t, g_t = self._evaluate(trial)
            self.nsteps += 1
            if not self.adaptive or loss_t <= loss - 0.5 * self.eta * gn2:
                break
            self.eta *= 0.5
            if self.eta < 1e-300:
                return "the adaptive step size underflowed"
        self._accept(self.t + self.eta, trial, loss_t, g_t)
        if self.adaptive:
            self.eta *= 1.25
        return None

    def dense(self, t: float) -> np.ndarray:
        return (self.w if t >= self.t else self.w_prev).copy()
