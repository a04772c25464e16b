r"""Stochastic gradient descent on minibatches, with the same result type, certificate and classification as the flow.

One step on a minibatch ``B_k`` (a multiset of sample indices) is

.. math:: w_{k+1} = w_k − η_k\, g_k, \qquad g_k = ∇L_{B_k}(w_k) = dπ(w_k)^\top ∇ℒ_{B_k}(π(w_k)),

or, with heavy-ball momentum ``μ ∈ [0, 1)``, ``u_{k+1} = μ u_k − η_k g_k``, ``w_{k+1} = w_k + u_{k+1}``.

* **Sampling.** ``"without_replacement"``: each epoch is a fresh random permutation of the ``m`` samples cut into
  ``⌈m/B⌉`` batches (the last one smaller when ``B`` does not divide ``m``).  ``"with_replacement"``: every batch is
  ``B`` independent uniform draws; an epoch is ``⌈m/B⌉`` such batches.  Everything random comes from one
  ``numpy.random.Generator`` seeded by ``seed`` (:func:`minibatches`), so a run is reproducible.
* **Schedules.** ``"constant"`` ``η_k = η``; ``"step"`` ``η_k = η·γ^{⌊k/K⌋}``; ``"inverse_time"``
  ``η_k = η/(1 + k/K)`` (``K = decay_steps``, ``γ = decay_factor``); or any callable ``k ↦ η_k``.
* **Flow time.** Step ``k`` advances the flow-time equivalent by ``η_k/(1 − μ)`` (the time scale on which small-step
  heavy ball follows the gradient flow), so ``t_k = Σ_{i<k} η_i/(1−μ)``: with ``μ = 0`` and a constant step,
  ``t_k = kη``.
* **Conserved quantities.** Without momentum one step changes ``δ_i = ‖w^{(i+1)}‖² − ‖w^{(i)}‖²`` by exactly
  ``η_k²(‖g_{k,i+1}‖² − ‖g_{k,i}‖²)`` with the *minibatch* layer gradients: the first-order term
  ``−2η_k(⟨w^{(i+1)}, g_{i+1}⟩ − ⟨w^{(i)}, g_i⟩)`` vanishes because ``⟨w^{(i)}, ∇_{w^{(i)}} R(π(w))⟩ = ⟨π(w),
  ∇R(π(w))⟩`` is the same for every layer for *any* function ``R`` of the final filter (π is multilinear), the
  minibatch risk included.  With momentum the step is not along the current gradient and no such identity holds.

**No convergence claim.**  With a constant step the iterates keep fluctuating at a distance of order ``η``·(gradient
noise) around a minimum; they do not converge.  The run does exactly its ``epochs``/``max_steps`` (it stops early
only when the iterates blow up, on ``max_time`` or when the callback asks), then its endpoint is Newton-polished
like the flow's limit.  The result is ``certified`` (and then also ``converged``) only when the polished point
passes the certificate within ``polish_radius`` of the endpoint; only then is it classified.  ``polish_distance``
says how far polishing moved.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from lcnflow._threads import one_blas_thread
from lcnflow.analysis.certify import check_start, reference_size
from lcnflow.dynamics.driver import settle_endpoint
from lcnflow.dynamics.options import DEFAULT_EPOCHS, SAMPLINGS, SCHEDULES, SGDOptions, StopOptions, StopReason
from lcnflow.dynamics.result import Callback, FlowResult, Recorder
from lcnflow.model.conv import as_filters, flatten
from lcnflow.model.risk import EmpiricalRisk

__all__ = ["DEFAULT_EPOCHS", "SAMPLINGS", "SCHEDULES", "minibatches", "step_sizes", "stochastic_gradient_descent"]

_SGD = SGDOptions()  # (the defaults of the keyword arguments below: one home, lcnflow.dynamics.options)


def minibatches(num_samples: int, batch_size: int, sampling: str = "without_replacement",
                seed: int | np.random.Generator | None = 0) -> Iterator[np.ndarray]:
    """The endless sequence of minibatches (arrays of sample indices) that :func:`stochastic_gradient_descent` uses.

    Parameters
    ----------
    num_samples : int
        ``m``.
    batch_size : int
        ``B``, ``1 ≤ B ≤ m``.
    sampling : str
        ``"without_replacement"`` (per epoch a random permutation cut into ``⌈m/B⌉`` batches, the last possibly
        smaller) or ``"with_replacement"`` (``B`` independent uniform indices per batch).
    seed : int or numpy.random.Generator
        The same seed gives the same sequence.

    Yields
    ------
    ndarray of int
    """
    _check_batch(num_samples, batch_size, sampling)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    per_epoch = -(-num_samples // batch_size)
    while True:
        if sampling == "with_replacement":
            for _ in range(per_epoch):
                yield rng.integers(0, num_samples, size=batch_size)
        else:
            perm = rng.permutation(num_samples)
            for start in range(0, num_samples, batch_size):
                yield perm[start : start + batch_size]


def step_sizes(step_size: float, num_steps: int, schedule: str | Callable[[int], float] = _SGD.schedule, *,
               decay_steps: int = _SGD.decay_steps, decay_factor: float = _SGD.decay_factor) -> np.ndarray:
    r"""``η_0 … η_{n−1}`` of a schedule.

    ``"constant"``: ``η_k = η``; ``"step"``: ``η_k = η·γ^{⌊k/K⌋}``; ``"inverse_time"``: ``η_k = η/(1 + k/K)``
    (``K = decay_steps``, ``γ = decay_factor``); a callable: ``η_k = schedule(k)``.

    Raises
    ------
    ValueError
        For an unknown schedule, bad parameters, or a callable returning something that is not a finite ``η > 0``.
    """
    SGDOptions(step_size=step_size, schedule=schedule, decay_steps=decay_steps, decay_factor=decay_factor)
    eta = _schedule(float(step_size), schedule, decay_steps, decay_factor)
    return np.array([eta(k) for k in range(num_steps)], dtype=float)


def _schedule(step_size: float, schedule: str | Callable[[int], float], decay_steps: int,
              decay_factor: float) -> Callable[[int], float]:
    """The schedule (validated by :class:`~lcnflow.dynamics.options.SGDOptions`) as a function ``k ↦ η_k`` that checks
    what a callable gives (evaluated step by step: no array of the whole budget)."""
    if callable(schedule):
        def user(k: int) -> float:
            value = schedule(k)
            if not (isinstance(value, int | float | np.floating | np.integer) and math.isfinite(value) and value > 0):
                raise ValueError(f"flow.schedule: the schedule gave η_{k} = {value!r}; step sizes must be finite "
                                 "and > 0")
            return float(value)

        return user
    if schedule == "constant":
        return lambda k: step_size
    if schedule == "step":
        return lambda k: step_size * float(decay_factor) ** (k // decay_steps)
    return lambda k: step_size / (1.0 + k / decay_steps)


def _check_batch(m: int, batch_size: int, sampling: str) -> None:
    if not (isinstance(batch_size, int) and not isinstance(batch_size, bool) and 1 <= batch_size <= m):
        raise ValueError(f"flow.batch_size: must be an integer in [1, m = {m}], got {batch_size!r}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"flow.sampling: unknown sampling {sampling!r}; valid: {', '.join(SAMPLINGS)}")


@one_blas_thread
def stochastic_gradient_descent(
    risk: EmpiricalRisk,
    init: Sequence[np.ndarray] | np.ndarray,
    step_size: float,
    batch_size: int,
    *,
    epochs: int | None = None,
    max_steps: int | None = None,
    schedule: str | Callable[[int], float] = _SGD.schedule,
    decay_steps: int = _SGD.decay_steps,
    decay_factor: float = _SGD.decay_factor,
    momentum: float = _SGD.momentum,
    sampling: str = _SGD.sampling,
    seed: int = _SGD.seed,
    save_at_steps: Sequence[int] | np.ndarray | None = None,
    max_time: float | None = None,
    callback: Callback | None = None,
    certify_tol: float = _SGD.certify_tol,
    polish_radius: float = _SGD.polish_radius,
    classify: bool = _SGD.classify,
    max_record: int = _SGD.max_record,
    blowup_factor: float = _SGD.blowup_factor,
) -> FlowResult:
    r"""Minibatch SGD from ``init`` for a fixed budget, then polish, certify and classify the endpoint.

    Parameters
    ----------
    risk : EmpiricalRisk
    init : list of ndarray or flat ndarray
    step_size : float
        ``η`` (> 0), the initial step of the schedule.
    batch_size : int
        ``B`` samples per step, ``1 ≤ B ≤ m``.  ``B = m`` without replacement is full-batch gradient descent.
    epochs : int, optional
        Run ``epochs·⌈m/B⌉`` steps.  Default: :data:`DEFAULT_EPOCHS` when ``max_steps`` is not given either
        (the config's ``flow.epochs`` has the same default).
    max_steps : int, optional
        Steps at most (the smaller budget wins when both are given).
    schedule : str or callable
        ``"constant"``, ``"step"``, ``"inverse_time"`` or ``k ↦ η_k`` (see :func:`step_sizes`).
    decay_steps, decay_factor
        ``K`` and ``γ`` of the named schedules.
    momentum : float
        Heavy-ball ``μ ∈ [0, 1)``.
    sampling : str
        ``"without_replacement"`` or ``"with_replacement"`` (see :func:`minibatches`).
    seed : int
        Seed of the minibatch sequence (the run is reproducible from it).
    save_at_steps : sequence of int, optional
        Step indices ``k`` (``0 ≤ k ≤`` the step budget, increasing) at which to keep ``w_k``: returned in
        ``saved_states`` with their flow times ``t_k`` in ``saved_times`` (rows for steps never reached are NaN).
    max_time : float, optional
        Wall-clock cap in seconds.
    callback : callable, optional
        ``callback(t, w_flat, batch_loss, batch_gradient_norm)`` after each step (``L_B`` and ``‖∇L_B‖`` of that
        step's batch, at the point the step started from); returning ``True`` stops the run.
    certify_tol, polish_radius, classify, max_record, blowup_factor
        As for :func:`~lcnflow.gradient_flow`.  The record's losses and gradient norms are those of the full risk.

    Returns
    -------
    FlowResult
        ``t_final``/``times`` are flow-time equivalents.  ``converged`` equals ``certified``: the polished endpoint
        passed the certificate (SGD itself does not converge with a constant step; see the module docstring).
        ``flow_gradient_norm`` is the full ``‖∇L‖`` at the endpoint, ``polish_distance`` how far polishing moved.

    Raises
    ------
    ValueError
        For a bad step size, batch size, budget, schedule, momentum, sampling or ``save_at_steps``, naming the field.
    """
    opts = SGDOptions(step_size=step_size, batch_size=batch_size, epochs=epochs, max_steps=max_steps,
                      schedule=schedule, decay_steps=decay_steps, decay_factor=decay_factor, momentum=momentum,
                      sampling=sampling, seed=seed, max_time=max_time, certify_tol=certify_tol,
                      polish_radius=polish_radius, classify=classify, max_record=max_record,
                      blowup_factor=blowup_factor)
    m = risk.num_samples
    _check_batch(m, batch_size, sampling)
    budget = opts.budget(m)
    per_epoch = -(-m // batch_size)
    if epochs is None and max_steps is None:
        epochs = DEFAULT_EPOCHS  # (as the budget counts it; the record says so)
    eta_of = _schedule(float(step_size), schedule, decay_steps, decay_factor)
    save = _check_save(save_at_steps, budget)

    stop = opts.stop_options()
    clock = time.perf_counter
    start = clock()
    w = w0 = flatten(as_filters(risk.arch, init, "init"))
    check_start(risk, w0)
    loss, g_full = risk.flat_value_and_gradient(w)
    gn = float(np.linalg.norm(g_full))
    bound = blowup_factor * max(float(np.linalg.norm(w)), reference_size(risk, w))
    rec = Recorder(risk.arch, w, loss, gn, max_record, arc_step=None)  # log-spaced times: the iterates are noisy
    saved = np.full((save.size, w.size), np.nan)
    saved_times = np.full(save.size, np.nan)
    isave = 0
    batches = minibatches(m, batch_size, sampling, seed)
    velocity = np.zeros_like(w)
    time_scale = 1.0 / (1.0 - momentum)
    t, nfev, k = 0.0, 1, 0
    ended_by, message = StopReason.BUDGET, ""
    while True:
        while isave < save.size and save[isave] == k:
            saved[isave], saved_times[isave] = w, t
            isave += 1
        if k >= budget:
            message = f"ran {k} steps ({k / per_epoch:g} epochs)"
            break
        idx = next(batches)
        batch_loss, g = risk.flat_minibatch_value_and_gradient(w, idx, need_value=callback is not None)
        nfev += 1
        eta = eta_of(k)
        if momentum:
            velocity = momentum * velocity - eta * g
            w = w + velocity
        else:
            w = w - eta * g
        t += eta * time_scale
        k += 1
        wn = float(np.linalg.norm(w))
        if not (math.isfinite(wn) and wn <= bound):
            ended_by = StopReason.BLOWUP if math.isfinite(wn) else StopReason.NONFINITE
            message = f"the iterates grow without bound (‖w‖ = {wn:.3g} after {k} steps, t = {t:.4g})"
            break
        if rec.wants(t):
            loss, g_full = risk.flat_value_and_gradient(w)
            nfev += 1
            rec.step(t, w, loss, float(np.linalg.norm(g_full)))
        else:
            rec.step(t, w, math.nan, math.nan)
        if callback is not None and callback(t, w, batch_loss, float(np.linalg.norm(g))):
            ended_by, message = StopReason.CALLBACK, f"stopped by the callback after {k} steps (t = {t:.4g})"
            break
        if max_time is not None and clock() - start > max_time:
            ended_by, message = StopReason.MAX_TIME, f"reached max_time = {max_time:g} s after {k} steps (t = {t:.4g})"
            break
    if ended_by not in (StopReason.BLOWUP, StopReason.NONFINITE):
        loss, g_full = risk.flat_value_and_gradient(w)
        nfev += 1
        rec.set_last_values(loss, float(np.linalg.norm(g_full)))
        message += f"; endpoint ‖∇L‖ = {np.linalg.norm(g_full):.2e}, polished endpoint"
    sched = schedule if isinstance(schedule, str) else "callable"
    integrator = (f"stochastic gradient descent, B = {batch_size} ({sampling.replace('_', ' ')}), "
                  f"η = {step_size:g} ({sched})" + (f", momentum μ = {momentum:g}" if momentum else ""))
    options = {"step_size": step_size, "batch_size": batch_size, "epochs": epochs, "max_steps": budget,
               "schedule": sched, "decay_steps": decay_steps, "decay_factor": decay_factor, "momentum": momentum,
               "sampling": sampling, "seed": seed, "final_step_size": eta_of(k - 1) if k else float(step_size),
               **stop.to_dict()}
    return _finish(risk, w0, rec, ended_by=ended_by, message=message, integrator=integrator, nfev=nfev, nsteps=k,
                   start=start, stop=stop, saved_times=saved_times, saved_states=saved, options=options)


def _check_save(save_at_steps, budget: int) -> np.ndarray:
    if save_at_steps is None:
        return np.zeros(0, dtype=int)
    s = np.atleast_1d(np.asarray(save_at_steps))
    if (s.ndim != 1 or not np.issubdtype(s.dtype, np.integer) or np.any(s < 0) or np.any(np.diff(s) < 0)
            or (s.size and s[-1] > budget)):
        raise ValueError(
            f"flow.save_at_steps: must be increasing integer step indices in [0, {budget}], got {save_at_steps!r}"
        )
    return s.astype(int)


def _finish(risk: EmpiricalRisk, w0: np.ndarray, rec: Recorder, *, ended_by: StopReason, message: str, integrator: str,
            nfev: int, nsteps: int, start: float, stop: StopOptions, saved_times: np.ndarray,
            saved_states: np.ndarray, options: dict) -> FlowResult:
    """Polish and certify the endpoint with the driver's :func:`~lcnflow.dynamics.driver.settle_endpoint`: a certified
    minimum is the result's limit (``converged``); otherwise the endpoint is uncertified, with the nearest critical
    point found.  The record is noise around a point, so no Łojasiewicz exponent is claimed."""
    res = settle_endpoint(risk, w0, rec, stop, ended_by=ended_by, message=message, counts=(nfev, 0, nsteps, integrator),
                          saved_times=saved_times, saved=saved_states, options=options, start=start)
    res.method = "sgd"
    res.lojasiewicz_exponent = None
    res.lojasiewicz_fit = {"method": "not estimated for stochastic gradient descent (noisy iterates)",
                           "num_points": 0, "r_squared": None}
    return res
