r"""The empirical risk of an LCN and its exact derivatives, computed through the final filter.

With the patch operator ``H`` (:func:`~lcnflow.model.conv.patch_matrix`) and residual ``r = H v − y``:

.. math::

    ℒ(v) = \frac1m \sum ℓ(r), \qquad ∇ℒ(v) = \frac1m H^\top ℓ'(r), \qquad
    ∇^2ℒ(v) = \frac1m H^\top \operatorname{diag}(ℓ''(r)) H,

    L(w) = ℒ(π(w)), \qquad ∇L(w) = dπ(w)^\top ∇ℒ(v), \qquad
    ∇^2 L(w) = dπ(w)^\top ∇^2ℒ(v)\, dπ(w) + \sum_t ∇ℒ(v)_t ∇^2 π_t(w).

A gradient of ``L`` is one pass over the data for ``ℒ`` plus a chain rule through π that costs ``O(N k_v^2)`` —
never a pass through the layers.  For the square loss ``ℒ(v) = ½ vᵀGv − bᵀv + c`` with ``G = HᵀH/m``,
``b = Hᵀy/m``, ``c = ‖y‖²/(2m)`` is precomputed once, so later evaluations cost nothing proportional to ``m`` or ``d``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import NamedTuple

import numpy as np

from lcnflow.model.architecture import Architecture
from lcnflow.model.condition import DataCondition, check_data_condition
from lcnflow.model.conv import (
    Filters,
    as_filters,
    final_filter_parts,
    final_filter_unchecked,
    flatten,
    patch_matrix,
    patch_rows,
    unflatten,
    unflatten_unchecked,
)
from lcnflow.model.data import Dataset
from lcnflow.model.losses import Loss, get_loss

#: Default memory budget for a dense patch matrix ``H``; larger data sets are streamed in chunks of samples.
DEFAULT_MAX_PATCH_BYTES = 256 * 2**20
#: Dense ``H`` up to this size is used for ``H v`` and ``Hᵀq`` of general losses (cache-resident BLAS).
SMALL_PATCH_BYTES = 8 * 2**20


def _is_builtin_square(loss: Loss) -> bool:
    return loss == get_loss("square")


#: Final filters with at least this many coefficients and stride 1 use FFT correlations on the compiled path.
SPECTRAL_MIN_KV = 49
_LOSS_PARAMS = {"square": (), "lp": ("p",), "pseudo_huber": ("delta",), "generalized_huber": ("alpha", "beta"),
                "log_cosh": ()}


_KERNELS_MODULE = None


def compiled_kernels():
    """The compiled kernels (:mod:`lcnflow.kernels`, imported on first use) when enabled, else ``None``."""
    global _KERNELS_MODULE
    if _KERNELS_MODULE is None:
        from lcnflow import kernels as k

        _KERNELS_MODULE = k
    return _KERNELS_MODULE if _KERNELS_MODULE.ENABLED else None


def kernel_loss(loss: Loss, k) -> tuple[int, float, float]:
    """The loss as the kernels take it: ``(id, p1, p2)`` (:data:`lcnflow.kernels.LOSS_IDS`), id ``−1`` for a loss
    that is not built in."""
    from lcnflow.model.losses import _BuiltinFn

    if not (isinstance(loss.value, _BuiltinFn) and loss.name in k.LOSS_IDS):
        return -1, math.nan, math.nan
    lid = k.LOSS_IDS[loss.name]
    vals = [float(loss.params[n]) for n in _LOSS_PARAMS[loss.name]] + [0.0, 0.0]
    return lid, (1.0 if lid in (0, 4) else vals[0]), vals[1]


class SecondOrder(NamedTuple):
    """What :meth:`EmpiricalRisk.flat_second_order` returns for ``n`` points (rows)."""

    values: np.ndarray
    """``L(w_j)``, shape ``(n,)``."""
    gradients: np.ndarray
    """``∇L(w_j)``, shape ``(n, P)``."""
    hessians: np.ndarray
    """``∇²L(w_j)``, shape ``(n, P, P)``, symmetric."""
    jacobians: np.ndarray
    """``dπ(w_j)``, shape ``(n, k_v, P)`` (the final filter flattened row-major)."""


class KernelView:
    """What the compiled kernels need about one risk: the layer layout, the loss as an id and parameters, and the
    data as C-contiguous 3D arrays (1D signals as images of height 1); the FFT of the inputs when it pays."""

    def __init__(self, risk: EmpiricalRisk, k) -> None:
        arch = risk.arch
        self.k = k
        lay = k.layout(arch.filter_shapes, arch.cumulative_strides[:-1])
        self.args = (lay.kh, lay.kw, lay.dh, lay.dw, lay.off)
        kv = arch.final_filter_shape
        self.kv2 = (1, kv[0]) if arch.ndim == 1 else kv
        sv = arch.cumulative_strides[-1]
        self.sh, self.sw = (1, sv[0]) if arch.ndim == 1 else sv
        self.loss_id, self.p1, self.p2 = kernel_loss(risk.loss, k)
        # whether the risk's data passes go through the kernels: 2D with a small dense H (a few MB) is applied faster
        # by BLAS (measured on 64 patches of 32×32, log-cosh: one gradient 0.9 ms compiled, 0.35 ms through BLAS); in
        # 1D the compiled pass wins
        small_dense_2d = arch.ndim == 2 and getattr(risk, "_H_small", None) is not None
        self.routed = risk.is_quadratic or (self.loss_id >= 0 and not small_dense_2d)
        m = risk.num_samples
        X, Y = risk.data.inputs, risk.data.targets
        self.x3 = np.ascontiguousarray(X.reshape(m, 1, -1) if arch.ndim == 1 else X, dtype=np.float64)
        self.y3 = np.ascontiguousarray(Y.reshape(m, 1, -1) if arch.ndim == 1 else Y, dtype=np.float64)
        H, W = self.x3.shape[1:]
        spectra = 16 * m * H * (W // 2 + 1)  # X̂ kept, and as much again per evaluation
        self.spectral_ok = ((self.sh, self.sw) == (1, 1) and math.prod(kv) >= SPECTRAL_MIN_KV
                            and spectra <= getattr(risk, "_max_patch_bytes", DEFAULT_MAX_PATCH_BYTES))
        self._spectral = None
        # 1D data also with the samples innermost (d_0 × m and d_N × m), for the passes that loop over blocks of
        # samples (lcnflow.kernels.signal_pass), where those loops are at least as long as the rows (d_N): 2× faster
        # than the row passes for 500 and 2 000 signals of d_0 = 64 and 256, as fast for 20 000, 2× slower for 200
        # signals of 1 024 (one thread, k_v = 7); the weighted Gram 2–8× faster than BLAS on scaled patches (k_v = 7
        # to 40); empty for images, the FFT path, the square loss and losses of the user's own
        d_n = self.y3.shape[2]
        self.signal = (arch.ndim == 1 and not self.spectral_ok and not risk.is_quadratic and self.loss_id >= 0
                       and min(m, k.SIGNAL_BLOCK) >= d_n)
        self.xt = np.ascontiguousarray(self.x3[:, 0].T) if self.signal else np.zeros((0, 0))
        self.yt = np.ascontiguousarray(self.y3[:, 0].T) if self.signal else np.zeros((0, 0))

    def spectral(self):
        if self._spectral is None:
            self._spectral = self.k.SpectralCorrelator(self.x3, self.kv2)
        return self._spectral

    def fs_value_grad(self, v: np.ndarray, need_value: bool) -> tuple[float, np.ndarray]:
        """Unnormalized ``(Σ ℓ(r), Hᵀℓ'(r))`` for a built-in loss, ``r = Hv − y``."""
        v2 = np.ascontiguousarray(v.reshape(self.kv2))
        if self.spectral_ok:
            return self.spectral().value_grad(v2, self.y3, self.loss_id, self.p1, self.p2, need_value)
        if self.signal:
            return self.k.signal_pass(self.xt, self.yt, v2[0], self.sw, self.loss_id, self.p1, self.p2, need_value)
        return self.k.data_pass(self.x3, self.y3, v2, self.sh, self.sw, self.loss_id, self.p1, self.p2, need_value)

    def gram(self, v: np.ndarray) -> np.ndarray:
        """Unnormalized ``Hᵀ diag(ℓ''(r)) H``."""
        v2 = np.ascontiguousarray(v.reshape(self.kv2))
        if self.signal:
            return self.k.signal_weighted_gram(self.xt, self.yt, v2[0], self.sw, self.loss_id, self.p1, self.p2)
        rows = max(16, (1 << 18) // v2.size)
        return self.k.weighted_gram(self.x3, self.y3, v2, self.sh, self.sw, self.loss_id, self.p1, self.p2, rows)


_KERNEL_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _checked_parts(arch: Architecture, loss: Loss | str, data: Dataset) -> tuple[Loss, Dataset]:
    """The loss (a name looked up) and the data read for ``arch`` (channel axes as the architecture says), checked
    against it; a one-line ``ValueError`` naming ``arch``, ``loss`` or ``data`` otherwise."""
    if not isinstance(arch, Architecture):
        raise ValueError(f"arch: expected a lcnflow.Architecture, got {type(arch).__name__}")
    if isinstance(loss, str):
        loss = get_loss(loss)
    if not isinstance(loss, Loss):
        raise ValueError(f"loss: expected a lcnflow.Loss or a loss name, got {type(loss).__name__}")
    if not isinstance(data, Dataset):
        raise ValueError(f"data: expected a lcnflow.Dataset, got {type(data).__name__}")
    data = data.for_architecture(arch)
    data.check_architecture(arch)
    return loss, data


class EmpiricalRisk:
    r"""``L(w) = (1/m) Σ_j Σ_a ℓ((V x_j − y_j)_a)`` and its function-space counterpart ``ℒ(v)``.

    Parameters
    ----------
    arch : Architecture
    loss : Loss or str
        A :class:`~lcnflow.Loss` or the name of a built-in loss (default parameters).
    data : Dataset
        Inputs ``(m, *d_0)`` and targets ``(m, *d_N)`` for ``arch``.
    max_patch_bytes : int, optional
        Largest dense ``H`` (``m·d_N × k_v`` float64) kept in memory; above it the data are streamed by samples.

    Notes
    -----
    Methods taking ``filters`` accept a list of arrays (one per layer) or a flat vector (:func:`~lcnflow.flatten`
    order) and return derivatives in the same form.  For the square loss, ``value``/``gradient``/``hessian`` use the
    precomputed statistics ``G, b, c``.

    Evaluations run through compiled kernels (:mod:`lcnflow.kernels`, Numba) for the built-in losses: one call
    for a square-loss gradient, one fused pass over the data otherwise (FFT correlations for stride-1 final filters
    with ``k_v ≥ 49``).  ``LCNFLOW_NO_NUMBA=1`` (or ``lcnflow.kernels.ENABLED = False``) selects the NumPy
    reference path; the two agree to rounding.
    """

    def __new__(cls, *args, **kwargs):
        arch = args[0] if args else kwargs.get("arch")
        if cls is EmpiricalRisk and isinstance(arch, Architecture) and arch.is_multichannel:
            return super().__new__(ChannelRisk)
        return super().__new__(cls)

    def __init__(
        self,
        arch: Architecture,
        loss: Loss | str,
        data: Dataset,
        *,
        max_patch_bytes: int = DEFAULT_MAX_PATCH_BYTES,
    ):
        loss, data = _checked_parts(arch, loss, data)
        self.arch = arch
        self.loss = loss
        self.data = data
        self.num_samples = data.num_samples
        self._kv_shape = arch.final_filter_shape
        self._kv = arch.final_filter_num_params
        self._y = data.targets.reshape(-1)
        self._max_patch_bytes = max_patch_bytes
        self._chunk = max(1, int(max_patch_bytes // (8 * self._kv * max(1, math.prod(arch.axes_layer_sizes[-1])))))
        self._H = patch_matrix(arch, data.inputs) if self._chunk >= self.num_samples else None
        self._windows = patch_rows(arch, data.inputs)  # strided view (m, *d_N, *k_v): no copy of the data
        self._H_small = self._H if self._H is not None and self._H.nbytes <= SMALL_PATCH_BYTES else None
        nd = arch.ndim
        out_axes, filt_axes = "ijk"[: nd + 1], "ab"[:nd]
        self._apply_spec = f"{out_axes}{filt_axes},{filt_axes}->{out_axes}"
        self._adjoint_spec = f"{out_axes}{filt_axes},{out_axes}->{filt_axes}"
        self.is_quadratic = _is_builtin_square(loss)
        if self.is_quadratic:
            self.gram, self.moment, self.constant = self._square_statistics()
            self.least_squares_filter, self.minimum_value = self._least_squares()

    @cached_property
    def data_condition(self) -> DataCondition:
        """The theorem's data condition for this architecture and data (computed once, see
        :func:`~lcnflow.check_data_condition`)."""
        return check_data_condition(self.arch, self.data, gram=self.gram if self.is_quadratic else None)

    # ------------------------------------------------------------------ compiled path
    def kernel_view(self) -> KernelView | None:
        """The compiled kernels' view of this risk (built on first use), or ``None`` on the reference path."""
        k = compiled_kernels()
        if k is None:
            return None
        state = _KERNEL_VIEWS.get(self)
        if state is None:
            state = _KERNEL_VIEWS[self] = KernelView(self, k)
        return state

    def _compiled_value_grad(self, w: np.ndarray, need_value: bool) -> tuple[float, np.ndarray] | None:
        """``(L, ∇L)`` (flat) through the kernels: one call for the square loss, else π, a data pass and ``dπᵀ``."""
        c = self.kernel_view()
        if c is None or (not self.is_quadratic and c.loss_id < 0):
            return None
        if w.dtype != np.float64 or not w.flags.c_contiguous:
            w = np.ascontiguousarray(w, dtype=np.float64)
        if self.is_quadratic:
            val, grad, _ = c.k.square_value_grad(w, *c.args, self.least_squares_filter, self.gram,
                                                 self.minimum_value, need_value)
            return float(val), grad
        v = c.k.product_except(w, *c.args, -1, -1)
        val, g = self._fs_gradient(v.reshape(-1), need_value)  # the compiled pass where it is the faster one
        return float(val), c.k.vjp(w, *c.args, np.ascontiguousarray(g.reshape(c.kv2)))

    # ------------------------------------------------------------------ data passes
    def _chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(H_chunk, y_chunk)`` blocks of whole samples, each at most ``max_patch_bytes``."""
        if self._H is not None:
            yield self._H, self._y
            return
        per = math.prod(self.arch.axes_layer_sizes[-1])
        for start in range(0, self.num_samples, self._chunk):
            stop = min(start + self._chunk, self.num_samples)
            rows = patch_rows(self.arch, self.data.inputs[start:stop]).reshape(-1, self._kv)
            yield rows, self._y[start * per : stop * per]

    def _square_statistics(self) -> tuple[np.ndarray, np.ndarray, float]:
        G = np.zeros((self._kv, self._kv))
        b = np.zeros(self._kv)
        for H, y in self._chunks():
            G += H.T @ H
            b += H.T @ y
        m = self.num_samples
        G /= m
        return (G + G.T) / 2, b / m, float(self._y @ self._y) / (2 * m)

    def _least_squares(self) -> tuple[np.ndarray, float]:
        """Minimum-norm minimizer ``v̂`` of the square-loss ``ℒ`` over ``R^{k_v}`` and ``ℒ(v̂)`` (one data pass).

        With them ``ℒ(v) = ½ (v − v̂)ᵀ G (v − v̂) + ℒ(v̂)`` and ``∇ℒ(v) = G (v − v̂)``: no cancellation between
        large terms, so values and gradients near a minimum keep their relative accuracy.
        """
        lam, Q = np.linalg.eigh(self.gram)
        well_conditioned = lam.size > 0 and lam[0] > 1e-8 * lam[-1] > 0  # κ(H) < 10⁴
        if self._H is not None and not well_conditioned:
            v_hat = np.linalg.lstsq(self._H, self._y, rcond=None)[0]  # minimum norm, backward stable
        else:
            keep = lam > lam.max() * self._kv * np.finfo(float).eps if lam.size else lam > 0

            def solve(rhs):
                return Q[:, keep] @ ((Q[:, keep].T @ rhs) / lam[keep])

            v_hat = solve(self.moment)
            if well_conditioned:
                # one step of iterative refinement with the residual computed from H: the normal equations' error
                # (~κ(H)² ε) shrinks by that factor again, to the accuracy of an orthogonal solve, at the cost of a
                # matrix-vector pass instead of an SVD of H
                correction = sum(H.T @ (y - H @ v_hat) for H, y in self._chunks()) / self.num_samples
                v_hat = v_hat + solve(correction)
        rss = sum(float(np.sum((H @ v_hat - y) ** 2)) for H, y in self._chunks())
        return v_hat, rss / (2 * self.num_samples)

    def _outputs(self, v: np.ndarray) -> np.ndarray:
        """``H v`` for a flat ``v`` as an array ``(m, *d_N)``: with the dense ``H`` when it is small (BLAS on a few
        MB is fastest), else on the strided view of the data (no ``H`` is formed; as fast as BLAS once
        memory-bound)."""
        if self._H_small is not None:
            return (self._H_small @ v).reshape(self.data.targets.shape)
        if self.arch.final_stride in (1, (1, 1)):  # SciPy's C correlation on whole rows/images is fastest here
            import scipy.ndimage

            kv = self._kv_shape
            out = (slice(None), *(slice(0, d) for d in self.arch.axes_layer_sizes[-1]))
            if self.arch.ndim == 1:
                full = scipy.ndimage.correlate1d(self.data.inputs, v, axis=1, mode="constant", origin=-(kv[0] // 2))
            else:
                full = scipy.ndimage.correlate(self.data.inputs, v.reshape(1, *kv), mode="constant",
                                               origin=(0, *(-(k // 2) for k in kv)))
            return full[out]
        if self.arch.ndim == 1:
            return self._windows @ v
        return np.einsum(self._apply_spec, self._windows, v.reshape(self._kv_shape))

    def _adjoint(self, q: np.ndarray) -> np.ndarray:
        """``Hᵀ q`` (flat ``k_v``) for ``q`` of shape ``(m, *d_N)`` (dense ``H`` if small, else the strided view)."""
        if self._H_small is not None:
            return q.reshape(-1) @ self._H_small
        return np.einsum(self._adjoint_spec, self._windows, q).reshape(-1)

    # ------------------------------------------------------------------ function space
    def _vector(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        if v.size != self._kv or v.shape not in (self._kv_shape, (self._kv,)):
            raise ValueError(f"final filter v: expected shape {self._kv_shape}, got {v.shape}")
        return v.reshape(-1)

    def function_space_outputs(self, v: np.ndarray) -> np.ndarray:
        r"""The network's outputs on the data for the final filter ``v``: ``V x_j = Π_{k_v, s_v}(v) x_j``, i.e.
        ``H v`` arranged as the targets, shape ``(m, *d_N)``; the residual is ``function_space_outputs(v) − y``.

        Parameters
        ----------
        v : ndarray
            Final filter, shape ``arch.final_filter_shape`` or flat (``k_v``).
        """
        return self._outputs(self._vector(v))

    def function_space_value(self, v: np.ndarray) -> float:
        """``ℒ(v) = (1/m) Σ ℓ(H v − y)``."""
        v = self._vector(v)
        if self.is_quadratic:
            e = v - self.least_squares_filter
            return float(0.5 * e @ (self.gram @ e) + self.minimum_value)
        c = self.kernel_view()
        if c is not None and c.routed:  # the same pass as the gradient's, so the values agree bitwise
            return self._fs_gradient(v, True)[0]
        return float(np.sum(self.loss.value(self._outputs(v) - self.data.targets))) / self.num_samples

    def _fs_gradient(self, v: np.ndarray, need_value: bool = True) -> tuple[float, np.ndarray]:
        """``(ℒ(v), ∇ℒ(v))`` for a flat ``v`` (one pass over the data); the value is NaN unless ``need_value``."""
        if self.is_quadratic:
            e = v - self.least_squares_filter
            Ge = self.gram @ e
            return float(0.5 * e @ Ge + self.minimum_value), Ge
        c = self.kernel_view()
        if c is not None and c.routed:
            val, g = c.fs_value_grad(v, need_value)
            return float(val) / self.num_samples, g / self.num_samples
        r = np.subtract(self._outputs(v), self.data.targets)  # contiguous, whatever layout H v came in
        val = float(np.sum(self.loss.value(r))) / self.num_samples if need_value else math.nan
        return val, self._adjoint(self.loss.derivative(r)) / self.num_samples

    def function_space_gradient(self, v: np.ndarray) -> np.ndarray:
        """``∇ℒ(v) = (1/m) Hᵀ ℓ'(H v − y)``, same shape as ``v``."""
        v = np.asarray(v, dtype=np.float64)
        return self._fs_gradient(self._vector(v))[1].reshape(v.shape)

    def function_space_hessian(self, v: np.ndarray) -> np.ndarray:
        """``∇²ℒ(v) = (1/m) Hᵀ diag(ℓ''(H v − y)) H``, a ``k_v × k_v`` matrix (flattened row-major)."""
        return self._fs_hessian(self._vector(v)).copy()

    def _fs_hessian(self, v: np.ndarray) -> np.ndarray:
        if self.is_quadratic:
            return self.gram
        c = self.kernel_view()
        if c is not None and c.routed:
            hess = c.gram(v) / self.num_samples
            return (hess + hess.T) / 2
        hess = np.zeros((self._kv, self._kv))
        for H, y in self._chunks():
            d2 = self.loss.second_derivative(H @ v - y)
            hess += H.T @ (d2[:, None] * H)
        hess /= self.num_samples
        return (hess + hess.T) / 2

    # ------------------------------------------------------------------ parameter space
    def _parse(self, filters: Sequence[np.ndarray] | np.ndarray) -> tuple[Filters, bool]:
        flat = isinstance(filters, np.ndarray) and filters.ndim == 1 and filters.dtype != object
        return as_filters(self.arch, filters), flat

    def value(self, filters: Sequence[np.ndarray] | np.ndarray) -> float:
        """``L(w) = ℒ(π(w))``."""
        return self.flat_value(flatten(self._parse(filters)[0]))

    def value_and_gradient(self, filters: Sequence[np.ndarray] | np.ndarray) -> tuple[float, Filters | np.ndarray]:
        """``(L(w), ∇L(w))`` with one pass over the data; the gradient has the structure of ``filters``."""
        ws, flat = self._parse(filters)
        val, g = self.flat_value_and_gradient(flatten(ws))
        return val, (g if flat else unflatten(self.arch, g))

    def gradient(self, filters: Sequence[np.ndarray] | np.ndarray) -> Filters | np.ndarray:
        r"""``∇L(w) = dπ(w)ᵀ ∇ℒ(π(w))``: per layer ``(∇_{w^{(i)}} L)_j = Σ_t g_{j S_{i−1}+t} c_{i,t}``."""
        ws, flat = self._parse(filters)
        g = self.flat_value_and_gradient(flatten(ws), need_value=False)[1]
        return g if flat else unflatten(self.arch, g)

    def hessian(self, filters: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Dense ``P × P`` Hessian of ``L`` in flat order: ``dπᵀ ∇²ℒ dπ + Σ_t (∇ℒ)_t ∇²π_t``."""
        return self.flat_value_gradient_hessian(flatten(self._parse(filters)[0]))[2]

    # ------------------------------------------------------------------ the objective on flat parameter vectors
    # What optimizers and integrators call: w is one float64 vector in flatten() order, used as given.  Only its
    # shape is checked, so a non-finite trial point gives non-finite numbers (which a step-size control rejects)
    # rather than an exception; the methods above validate their input and keep its structure.

    def _flat(self, w: np.ndarray) -> np.ndarray:
        if not (isinstance(w, np.ndarray) and w.dtype == np.float64):
            w = np.asarray(w, dtype=np.float64)
        if w.shape != (self.arch.num_params,):
            raise ValueError(
                f"w: expected a flat parameter vector of {self.arch.num_params} entries (flatten() order), "
                f"got shape {w.shape}"
            )
        return w

    def flat_value(self, w: np.ndarray) -> float:
        """``L(w)`` for a flat parameter vector (the number :meth:`flat_value_and_gradient` gives).

        Parameters
        ----------
        w : ndarray, shape ``(P,)``
            Parameters in :func:`~lcnflow.flatten` order; not checked for finiteness.

        Raises
        ------
        ValueError
            If ``w`` does not have shape ``(P,)``.
        """
        w = self._flat(w)
        fast = self._compiled_value_grad(w, True)  # the very number value_and_gradient gives
        if fast is not None:
            return fast[0]
        return self.function_space_value(final_filter_unchecked(self.arch, unflatten_unchecked(self.arch, w)))

    def flat_value_and_gradient(self, w: np.ndarray, *, need_value: bool = True) -> tuple[float, np.ndarray]:
        r"""``(L(w), ∇L(w))`` for a flat parameter vector, ``∇L(w) = dπ(w)ᵀ ∇ℒ(π(w))``.

        One pass over the data for ``∇ℒ`` (none for the square loss: ``∇ℒ(v) = G(v − v̂)``), then the chain rule
        through π in ``O(N k_v²)``.

        Parameters
        ----------
        w : ndarray, shape ``(P,)``
            Parameters in :func:`~lcnflow.flatten` order; not checked for finiteness.
        need_value : bool
            ``False`` skips ``L(w)`` where that saves work (the returned value may then be NaN).

        Returns
        -------
        value : float
        gradient : ndarray, shape ``(P,)``

        Raises
        ------
        ValueError
            If ``w`` does not have shape ``(P,)``.
        """
        w = self._flat(w)
        fast = self._compiled_value_grad(w, need_value)
        if fast is not None:
            return fast
        parts = final_filter_parts(self.arch, unflatten_unchecked(self.arch, w))
        val, g = self._fs_gradient(parts.final_filter.reshape(-1), need_value)
        return val, np.concatenate([gi.ravel() for gi in parts.vjp(g.reshape(self._kv_shape))])

    def flat_hessian(self, w: np.ndarray) -> np.ndarray:
        r"""``∇²L(w) = dπᵀ ∇²ℒ(v) dπ + Σ_t ∇ℒ(v)_t ∇²π_t(w)`` (``P × P``, symmetric) for a flat ``w``.

        See :meth:`flat_value_gradient_hessian` (which this returns the last item of).
        """
        return self.flat_value_gradient_hessian(w)[2]

    def flat_value_gradient_hessian(self, w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        r"""``(L(w), ∇L(w), ∇²L(w))`` for a flat ``w``, sharing π, ``dπ`` and one pass over the data.

        .. math:: ∇^2 L(w) = dπ(w)^\top ∇^2ℒ(v)\, dπ(w) + \sum_t ∇ℒ(v)_t\, ∇^2 π_t(w), \qquad v = π(w);

        the second term is the multilinear part of π (zero diagonal blocks).  The matrix is symmetrized.

        Parameters
        ----------
        w : ndarray, shape ``(P,)``
            Parameters in :func:`~lcnflow.flatten` order; not checked for finiteness.

        Returns
        -------
        value : float
        gradient : ndarray, shape ``(P,)``
        hessian : ndarray, shape ``(P, P)``
        """
        so = self._second_order(self._flat(w)[None])
        return float(so.values[0]), so.gradients[0], so.hessians[0]

    def flat_second_order(self, W: np.ndarray) -> SecondOrder:
        r"""``L``, ``∇L``, ``∇²L`` and ``dπ`` at each row of ``W`` (``n × P``), the matrix products of all the rows in
        stacked calls: row ``j`` is :meth:`flat_value_gradient_hessian` of ``W[j]`` bit for bit (NumPy runs the same
        matrix product on each matrix of a stack).  What polishing and classifying many points at once use.

        Parameters
        ----------
        W : ndarray, shape ``(n, P)``
            Flat parameter vectors as rows; not checked for finiteness.

        Returns
        -------
        SecondOrder
            ``values`` ``(n,)``, ``gradients`` ``(n, P)``, ``hessians`` ``(n, P, P)`` and ``jacobians``
            ``(n, k_v, P)`` (``dπ(w_j)``, the final filter's Jacobian, flattened row-major).
        """
        W = np.asarray(W, dtype=np.float64)
        P = self.arch.num_params
        if W.ndim != 2 or W.shape[1] != P:
            raise ValueError(f"W: expected shape (n, {P}) (flat parameter vectors as rows), got {W.shape}")
        return self._second_order(W)

    def _second_order(self, W: np.ndarray) -> SecondOrder:
        """:meth:`flat_second_order` without the check: π, ``dπ`` and the curvature of π through the kernels where
        they run this risk, else through :func:`~lcnflow.model.conv.final_filter_parts`."""
        n, P = W.shape
        c = self.kernel_view()
        compiled = c is not None and (self.is_quadratic or c.loss_id >= 0)
        grads = np.empty((n, P))
        curvature = None if self.is_quadratic else np.empty((n, self._kv, self._kv))
        values = np.empty(n)
        if compiled:  # π, then ∇ℒ at each, then dπ and the curvature of π: two compiled calls for the stack
            W = np.ascontiguousarray(W)
            V = c.k.products_many(W, *c.args)
            if self.is_quadratic:  # ℒ = ½ eᵀGe + ℒ(v̂), ∇ℒ = Ge, e = v − v̂: the stack's in array calls
                E = V.reshape(n, self._kv) - self.least_squares_filter
                GE = np.matmul(self.gram, E[:, :, None])[:, :, 0]  # (one product per row: the same for any n)
                values[:] = 0.5 * np.einsum("ij,ij->i", E, GE) + self.minimum_value
                fs_grads = GE.reshape(V.shape)
            else:
                fs_grads = np.empty(V.shape)
                for j in range(n):
                    values[j], g = self._fs_gradient(V[j].reshape(-1))
                    fs_grads[j] = g.reshape(V.shape[1:])
                    curvature[j] = self._fs_hessian(V[j].reshape(-1))
            J, hess = c.k.second_order_parts(W, *c.args, fs_grads)
            grads[:] = (J.transpose(0, 2, 1) @ fs_grads.reshape(n, self._kv, 1))[:, :, 0]
        else:
            J = np.empty((n, self._kv, P))
            hess = np.empty((n, P, P))
            for j in range(n):
                parts = final_filter_parts(self.arch, unflatten_unchecked(self.arch, W[j]))
                v = parts.final_filter.reshape(-1)
                J[j] = parts.jacobian()
                values[j], g = self._fs_gradient(v)
                grads[j] = J[j].T @ g
                if curvature is not None:
                    curvature[j] = self._fs_hessian(v)
                hess[j] = parts.hessian_contraction(g.reshape(self._kv_shape))
        A = np.broadcast_to(self.gram, (n, self._kv, self._kv)) if curvature is None else curvature
        products = J.transpose(0, 2, 1) @ A @ J
        products += hess
        return SecondOrder(values, grads, (products + products.transpose(0, 2, 1)) / 2, J)

    # ------------------------------------------------------------------ minibatches (stochastic gradient descent)
    # A minibatch is a multiset B of sample indices (repeats count, as in sampling with replacement); its risk is
    # L_B(w) = ℒ_B(π(w)) with ℒ_B(v) = (1/|B|) Σ_{j∈B} Σ_a ℓ((H_j v − y_j)_a).  For B = all samples, L_B = L.

    #: Largest stack of per-sample square-loss statistics ``G_j`` (``m·k_v²`` float64) kept for minibatches.
    max_sample_statistics_bytes: int = 64 * 2**20

    def _batch(self, batch: Sequence[int] | np.ndarray) -> np.ndarray:
        """Validate a minibatch: a non-empty 1D array of integer sample indices in ``[0, m)``."""
        idx = np.asarray(batch)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(
                f"batch: expected a non-empty 1D array of integer sample indices, got shape {idx.shape} "
                f"and dtype {idx.dtype}"
            )
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.num_samples:
            raise ValueError(
                f"batch: sample indices must lie in [0, {self.num_samples - 1}] (m = {self.num_samples}), "
                f"got {lo if lo < 0 else hi}"
            )
        return idx.astype(np.intp, copy=False)

    def minibatch_statistics(self, batch: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        r"""Square-loss statistics of a batch: ``G_B = H_BᵀH_B/|B|``, ``b_B = H_Bᵀy_B/|B|``, ``c_B = ‖y_B‖²/(2|B|)``.

        ``H_B`` stacks the patch rows of the samples in ``B`` (repeats included), so for the square loss
        ``ℒ_B(v) = ½ vᵀ G_B v − b_Bᵀ v + c_B``.  Computed from the batch's patch rows in ``O(|B|·d_N·k_v²)``: no
        pass through the layers and nothing proportional to ``m``.

        Returns
        -------
        G_B : ndarray, shape ``(k_v, k_v)``
        b_B : ndarray, shape ``(k_v,)``
        c_B : float
        """
        idx = self._batch(batch)
        rows = self._windows[idx].reshape(-1, self._kv)
        y = self.data.targets[idx].reshape(-1)
        n = idx.size
        G = rows.T @ rows / n
        return (G + G.T) / 2, rows.T @ y / n, float(y @ y) / (2 * n)

    @cached_property
    def _sample_statistics(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Per-sample square-loss statistics ``(G_j, b_j, c_j)`` (not divided by anything): a batch's are sums.

        Used when ``k_v < d_N`` (then ``G_B v − b_B`` from the sums costs ``O(|B| k_v²)`` instead of the
        ``O(|B| d_N k_v)`` of a residual) and ``m·k_v²`` floats fit in :attr:`max_sample_statistics_bytes`; ``None``
        otherwise.  Built once, on the first minibatch of a square-loss risk (one pass over the data).
        """
        per = math.prod(self.arch.axes_layer_sizes[-1])
        m, kv = self.num_samples, self._kv
        if not self.is_quadratic or kv >= per or m * kv * kv * 8 > self.max_sample_statistics_bytes:
            return None
        G = np.empty((m, kv, kv))
        b = np.empty((m, kv))
        step = max(1, int(SMALL_PATCH_BYTES // (8 * per * kv)))
        for start in range(0, m, step):
            stop = min(start + step, m)
            rows = self._windows[start:stop].reshape(stop - start, per, kv)
            y = self.data.targets[start:stop].reshape(stop - start, per)
            G[start:stop] = np.einsum("jak,jal->jkl", rows, rows)
            b[start:stop] = np.einsum("jak,ja->jk", rows, y)
        y = self.data.targets.reshape(m, per)
        return G, b, 0.5 * np.einsum("ja,ja->j", y, y)

    def _minibatch_fs_gradient(
        self, v: np.ndarray, idx: np.ndarray, need_value: bool = True
    ) -> tuple[float, np.ndarray]:
        """``(ℒ_B(v), ∇ℒ_B(v))`` for a flat ``v`` and validated indices (value NaN unless ``need_value``)."""
        n = idx.size
        stats = self._sample_statistics if self.is_quadratic else None
        if stats is not None:
            G = stats[0][idx].sum(axis=0)
            b = stats[1][idx].sum(axis=0)
            Gv = G @ v
            val = float(0.5 * v @ Gv - b @ v + stats[2][idx].sum()) / n if need_value else math.nan
            return val, (Gv - b) / n
        win = self._windows[idx]
        r = win @ v if self.arch.ndim == 1 else np.einsum(self._apply_spec, win, v.reshape(self._kv_shape))
        r = r - self.data.targets[idx]
        val = float(np.sum(self.loss.value(r))) / n if need_value else math.nan
        return val, np.einsum(self._adjoint_spec, win, self.loss.derivative(r)).reshape(-1) / n

    def minibatch_function_space_gradient(
        self, v: np.ndarray, batch: Sequence[int] | np.ndarray
    ) -> tuple[float, np.ndarray]:
        r"""``(ℒ_B(v), ∇ℒ_B(v))`` with ``∇ℒ_B(v) = (1/|B|) H_Bᵀ ℓ'(H_B v − y_B)`` (``G_B v − b_B`` for the square loss).

        One pass over the batch's patch rows; for the square loss sums of per-sample statistics when that is
        cheaper (see :meth:`minibatch_statistics`).  The gradient has the shape of ``v``.
        """
        v = np.asarray(v, dtype=np.float64)
        val, g = self._minibatch_fs_gradient(self._vector(v), self._batch(batch))
        return val, g.reshape(v.shape)

    def minibatch_value_and_gradient(
        self, filters: Sequence[np.ndarray] | np.ndarray, batch: Sequence[int] | np.ndarray
    ) -> tuple[float, Filters | np.ndarray]:
        r"""``(L_B(w), ∇L_B(w))`` of the minibatch risk ``L_B(w) = ℒ_B(π(w))``.

        ``∇L_B(w) = dπ(w)ᵀ ∇ℒ_B(π(w))``: the batch enters only through ``∇ℒ_B``, then the same ``O(N k_v²)`` chain
        rule as :meth:`gradient`.  ``batch`` holds sample indices (repeats count); the gradient has the structure of
        ``filters``.

        Raises
        ------
        ValueError
            For an empty batch, non-integer indices or indices outside ``[0, m)``.
        """
        ws, flat = self._parse(filters)
        val, g = self.flat_minibatch_value_and_gradient(flatten(ws), batch)
        return val, (g if flat else unflatten(self.arch, g))

    def flat_minibatch_value_and_gradient(
        self, w: np.ndarray, batch: Sequence[int] | np.ndarray, *, need_value: bool = True
    ) -> tuple[float, np.ndarray]:
        r"""``(L_B(w), ∇L_B(w))`` for a flat ``w`` (see :meth:`minibatch_value_and_gradient`).

        Parameters
        ----------
        w : ndarray, shape ``(P,)``
            Parameters in :func:`~lcnflow.flatten` order; not checked for finiteness.
        batch : array of int
            Sample indices in ``[0, m)``, repeats counted.
        need_value : bool
            ``False`` skips ``L_B(w)`` where that saves work (the returned value may then be NaN).

        Raises
        ------
        ValueError
            For a ``w`` not of shape ``(P,)``, an empty batch, non-integer indices or indices outside ``[0, m)``.
        """
        w, idx = self._flat(w), self._batch(batch)
        parts = final_filter_parts(self.arch, unflatten_unchecked(self.arch, w))
        val, g = self._minibatch_fs_gradient(parts.final_filter.reshape(-1), idx, need_value)
        return val, np.concatenate([gi.ravel() for gi in parts.vjp(g.reshape(self._kv_shape))])

    def __repr__(self) -> str:
        return f"EmpiricalRisk({self.arch!r}, loss={self.loss}, data={self.data!r})"


#: Largest ``c_0·k_v`` for which the Hessian blocks of a 1D channel risk come from the compiled pass (measured, 1D,
#: m = 1000, log cosh, dense ``H``, one loaded run: 22 ms compiled against 28 ms through BLAS at 14 columns, even at
#: 20, 2.5× slower at 36).
CHANNEL_GRAM_MAX_COLUMNS = 20


class ChannelKernelView:
    """What the compiled channel passes need about one risk: the loss as an id and parameters, the stride of the
    final filter per axis, the data as C-contiguous 4D arrays ``(m, c, h, w)`` (1D signals as images of height 1),
    and which passes go through the kernels.

    Routing (measured on 2 cores, medians): in 1D the compiled value-and-gradient pass is 2–8× faster than BLAS on the
    patch matrix, dense or chunked; in 2D (short output rows, many columns: 64 RGB patches of 32 × 32, ``c_0 k_v =
    75``, log cosh) it is 2× slower than BLAS on a dense ``H`` and 1.4× faster than rebuilding ``H`` in chunks, so 2D
    risks use it only when ``H`` is chunked.  The Hessian blocks come from the compiled pass in 1D up to
    :data:`CHANNEL_GRAM_MAX_COLUMNS` columns ``c_0 k_v`` (2–5× faster at 14 columns, m = 200 … 20 000); beyond, and
    in 2D (3–4× slower at 75 columns), BLAS on ``H`` does better.
    """

    def __init__(self, risk: ChannelRisk, k) -> None:
        arch = risk.arch
        self.k = k
        self.loss_id, self.p1, self.p2 = kernel_loss(risk.loss, k)
        self.route_pass = self.loss_id >= 0 and (arch.ndim == 1 or risk._H is None)
        self.route_gram = self.loss_id >= 0 and arch.ndim == 1 and risk._cols <= CHANNEL_GRAM_MAX_COLUMNS
        sv = arch.cumulative_strides[-1]
        self.sh, self.sw = (1, sv[0]) if arch.ndim == 1 else sv
        kv = arch.axes_final_filter_size
        c0, cN = arch.channels[0], arch.channels[-1]
        self.v4 = (cN, c0, *((1, kv[0]) if arch.ndim == 1 else kv))
        m = risk.num_samples
        X, Y = risk.data.inputs, risk.data.targets
        self.x4 = np.ascontiguousarray(X.reshape(m, c0, -1, X.shape[-1]), dtype=np.float64)
        self.y4 = np.ascontiguousarray(Y.reshape(m, cN, -1, Y.shape[-1]), dtype=np.float64)

    def fs_value_grad(self, v: np.ndarray, need_value: bool, idx: np.ndarray | None = None
                      ) -> tuple[float, np.ndarray]:
        """Unnormalized ``(Σ ℓ(R), ℓ'(R)ᵀH)`` (flat in ``v``'s order) over all samples, or the samples ``idx``."""
        x, y = (self.x4, self.y4) if idx is None else (self.x4[idx], self.y4[idx])
        V = np.ascontiguousarray(v.reshape(self.v4))
        return self.k.channel_data_pass(x, y, V, self.sh, self.sw, self.loss_id, self.p1, self.p2, need_value)

    def gram_blocks(self, v: np.ndarray) -> np.ndarray:
        """Unnormalized ``Hᵀ diag(ℓ''(R_{:,o})) H`` for each output channel ``o``, ``(c_N, c_0 k_v, c_0 k_v)``."""
        V = np.ascontiguousarray(v.reshape(self.v4))
        return self.k.channel_weighted_gram(self.x4, self.y4, V, self.sh, self.sw, self.loss_id, self.p1, self.p2)


_CHANNEL_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class ChannelRisk(EmpiricalRisk):
    r"""The empirical risk of a network with channels (``EmpiricalRisk(arch, …)`` builds one when some ``c_i > 1``).

    With the multichannel patch matrix ``H`` (rows: samples and output positions; columns: input channel and tap,
    :func:`~lcnflow.model.conv.patch_matrix`), output channel ``o`` of the network is ``H V[o]`` where
    ``V = v.reshape(c_N, c_0·k_v)``.  So for residuals ``R = H Vᵀ − Y`` (``Y``: targets, one column per output
    channel)

    .. math:: ℒ(v) = \frac1m \sum ℓ(R), \qquad ∇ℒ(v) = \frac1m ℓ'(R)^\top H, \qquad
              ∇^2ℒ(v) = \frac1m \bigoplus_{o} H^\top \operatorname{diag}(ℓ''(R_{:,o})) H,

    and for the square loss ``ℒ(v) = ½ Σ_o (V − V̂)[o] Γ (V − V̂)[o]ᵀ + ℒ(v̂)`` with the patch Gram
    ``Γ = HᵀH/m`` (``c_0 k_v × c_0 k_v``), i.e. ``G = I_{c_N} ⊗ Γ``: after one pass over the data no evaluation
    depends on ``m``.  For the other built-in losses, with the compiled kernels enabled, value, gradient and the
    Hessian blocks come from compiled passes over the data that never form ``H``
    (:func:`lcnflow.kernels.channel_data_pass`, :func:`lcnflow.kernels.channel_weighted_gram`) where those are the
    faster ones (:class:`ChannelKernelView`); custom losses, and every loss with ``lcnflow.kernels.ENABLED = False``,
    go through ``H`` in NumPy (the reference), built in chunks of samples where it does not fit in
    ``max_patch_bytes``.  π and its derivatives are computed in NumPy
    (:mod:`lcnflow.model.channels`).
    """

    def __init__(self, arch: Architecture, loss: Loss | str, data: Dataset, *,
                 max_patch_bytes: int = DEFAULT_MAX_PATCH_BYTES):
        loss, data = _checked_parts(arch, loss, data)
        self.arch, self.loss, self.data = arch, loss, data
        self.num_samples = m = data.num_samples
        self._kv_shape = arch.final_filter_shape
        self._kv = arch.final_filter_num_params
        self._cout = arch.channels[-1]
        self._cols = arch.channels[0] * math.prod(arch.axes_final_filter_size)
        self._per = math.prod(arch.axes_layer_sizes[-1])
        self._max_patch_bytes = max_patch_bytes
        self._windows = patch_rows(arch, data.inputs)  # (m, *d_N, c_0, *k_v), a view
        self._chunk = max(1, int(max_patch_bytes // (8 * self._cols * self._per)))
        self._H = self._windows.reshape(m * self._per, self._cols) if self._chunk >= m else None
        self._H_small = None
        # targets as (m·d_N, c_N): one column per output channel, rows in the order of H's
        self._Y = np.moveaxis(data.targets, 1, -1).reshape(m * self._per, self._cout)
        self._y = data.targets.reshape(-1)
        self.is_quadratic = _is_builtin_square(loss)
        if self.is_quadratic:
            gamma, B, c = self._patch_statistics()
            self.patch_gram, self.patch_moment = gamma, B
            self.gram = np.kron(np.eye(self._cout), gamma)
            self.moment, self.constant = B.reshape(-1), c
            self._V_hat, self.minimum_value = self._channel_least_squares()
            self.least_squares_filter = self._V_hat.reshape(-1)

    @cached_property
    def data_condition(self) -> DataCondition:
        """The data condition for channels: the multichannel patch matrix has full column rank ``c_0·k_v``."""
        return check_data_condition(self.arch, self.data, gram=self.patch_gram if self.is_quadratic else None)

    def kernel_view(self) -> None:
        """``None``: the one-channel kernels' view does not apply (see :meth:`channel_kernel_view`)."""
        return None

    def channel_kernel_view(self) -> ChannelKernelView | None:
        """The compiled channel passes' view of this risk (built on first use), or ``None`` where every evaluation
        runs in NumPy: the kernels disabled, the square loss (statistics), a custom loss.  Which passes it takes:
        ``route_pass`` and ``route_gram`` (see :class:`ChannelKernelView`)."""
        k = compiled_kernels()
        if k is None or self.is_quadratic:
            return None
        state = _CHANNEL_VIEWS.get(self)
        if state is None:
            state = _CHANNEL_VIEWS[self] = ChannelKernelView(self, k)
        return state if state.loss_id >= 0 else None

    # ------------------------------------------------------------------ data passes
    def _blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(H_chunk, Y_chunk)`` blocks of whole samples (``H`` rows and the matching targets, one column per
        output channel)."""
        if self._H is not None:
            yield self._H, self._Y
            return
        per = self._per
        for start in range(0, self.num_samples, self._chunk):
            stop = min(start + self._chunk, self.num_samples)
            yield (self._windows[start:stop].reshape(-1, self._cols), self._Y[start * per : stop * per])

    def _patch_statistics(self) -> tuple[np.ndarray, np.ndarray, float]:
        """``Γ = HᵀH/m``, ``B = YᵀH/m`` (``c_N × c_0 k_v``) and ``c = ‖Y‖²/(2m)``."""
        gamma = np.zeros((self._cols, self._cols))
        B = np.zeros((self._cout, self._cols))
        for H, Y in self._blocks():
            gamma += H.T @ H
            B += Y.T @ H
        m = self.num_samples
        gamma /= m
        return (gamma + gamma.T) / 2, B / m, float(self._y @ self._y) / (2 * m)

    def _channel_least_squares(self) -> tuple[np.ndarray, float]:
        """Minimum-norm ``V̂`` (``c_N × c_0 k_v``) minimizing the square-loss ``ℒ`` and ``ℒ(v̂)``."""
        if self._H is not None:
            V_hat = np.linalg.lstsq(self._H, self._Y, rcond=None)[0].T
        else:
            lam, Q = np.linalg.eigh(self.patch_gram)
            keep = lam > lam.max() * self._cols * np.finfo(float).eps if lam.size else lam > 0
            V_hat = ((self.patch_moment @ Q[:, keep]) / lam[keep]) @ Q[:, keep].T
        rss = sum(float(np.sum((H @ V_hat.T - Y) ** 2)) for H, Y in self._blocks())
        return V_hat, rss / (2 * self.num_samples)

    def _outputs(self, v: np.ndarray) -> np.ndarray:
        """``H Vᵀ`` arranged as the targets, ``(m, c_N, *d_N)``."""
        V = v.reshape(self._cout, self._cols)
        out = np.concatenate([H @ V.T for H, _ in self._blocks()]) if self._H is None else self._H @ V.T
        shape = (self.num_samples, *self.arch.axes_layer_sizes[-1], self._cout)
        return np.moveaxis(out.reshape(shape), -1, 1)

    # ------------------------------------------------------------------ function space
    def function_space_value(self, v: np.ndarray) -> float:
        """``ℒ(v) = (1/m) Σ ℓ(H Vᵀ − Y)``."""
        return self._fs_gradient(self._vector(v), True)[0]

    def _fs_gradient(self, v: np.ndarray, need_value: bool = True) -> tuple[float, np.ndarray]:
        V = v.reshape(self._cout, self._cols)
        if self.is_quadratic:
            E = V - self._V_hat
            GE = E @ self.patch_gram
            return float(0.5 * np.sum(E * GE) + self.minimum_value), GE.reshape(-1)
        m = self.num_samples
        c = self.channel_kernel_view()
        if c is not None and c.route_pass:
            val, g = c.fs_value_grad(v, need_value)
            return float(val) / m, g / m
        val, grad = 0.0, np.zeros((self._cout, self._cols))
        for H, Y in self._blocks():
            R = H @ V.T - Y
            if need_value:
                val += float(np.sum(self.loss.value(R)))
            grad += self.loss.derivative(R).T @ H
        return (val / m if need_value else math.nan), grad.reshape(-1) / m

    def _fs_hessian_blocks(self, v: np.ndarray) -> np.ndarray:
        """The diagonal blocks of ``∇²ℒ(v)``, one ``c_0 k_v × c_0 k_v`` block per output channel (``Γ`` for all of
        them for the square loss)."""
        n = self._cols
        if self.is_quadratic:
            return np.broadcast_to(self.patch_gram, (self._cout, n, n))
        c = self.channel_kernel_view()
        if c is not None and c.route_gram:
            blocks = c.gram_blocks(v) / self.num_samples
            return (blocks + blocks.transpose(0, 2, 1)) / 2
        V = v.reshape(self._cout, n)
        blocks = np.zeros((self._cout, n, n))
        for H, Y in self._blocks():
            d2 = self.loss.second_derivative(H @ V.T - Y)
            for o in range(self._cout):
                blocks[o] += H.T @ (d2[:, o, None] * H)
        blocks /= self.num_samples
        return (blocks + blocks.transpose(0, 2, 1)) / 2

    def _fs_hessian(self, v: np.ndarray) -> np.ndarray:
        if self.is_quadratic:
            return self.gram
        n = self._cols
        hess = np.zeros((self._kv, self._kv))
        for o, block in enumerate(self._fs_hessian_blocks(v)):
            hess[o * n : (o + 1) * n, o * n : (o + 1) * n] = block
        return hess

    def _second_order(self, W: np.ndarray) -> SecondOrder:
        r"""As in the base class, with the Gauss–Newton term ``dπᵀ ∇²ℒ dπ`` taken block by block over the output
        channels (``∇²ℒ`` is block diagonal: ``I_{c_N} ⊗ Γ`` for the square loss)."""
        n, P = W.shape
        out = SecondOrder(np.empty(n), np.empty((n, P)), np.empty((n, P, P)), np.empty((n, self._kv, P)))
        for j in range(n):
            parts = final_filter_parts(self.arch, unflatten_unchecked(self.arch, W[j]))
            v = parts.final_filter.reshape(-1)
            J = parts.jacobian()
            val, g = self._fs_gradient(v)
            Jr = J.reshape(self._cout, self._cols, -1)
            hess = J.T @ np.matmul(self._fs_hessian_blocks(v), Jr).reshape(J.shape)
            hess += parts.hessian_contraction(g.reshape(self._kv_shape))
            out.values[j], out.gradients[j], out.hessians[j], out.jacobians[j] = val, J.T @ g, (hess + hess.T) / 2, J
        return out

    # ------------------------------------------------------------------ minibatches
    @property
    def _sample_statistics(self) -> None:
        """Not kept for channels (a batch's residual is cheap against its ``c_N`` Gram blocks)."""
        return None

    def minibatch_statistics(self, batch: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        r"""Square-loss statistics of a batch: ``G_B = I_{c_N} ⊗ Γ_B``, ``b_B`` and ``c_B`` (see the base class)."""
        idx = self._batch(batch)
        rows = self._windows[idx].reshape(-1, self._cols)
        Y = np.moveaxis(self.data.targets[idx], 1, -1).reshape(-1, self._cout)
        n = idx.size
        gamma = rows.T @ rows / n
        gamma = (gamma + gamma.T) / 2
        return np.kron(np.eye(self._cout), gamma), (Y.T @ rows).reshape(-1) / n, float(np.sum(Y * Y)) / (2 * n)

    def _minibatch_fs_gradient(self, v: np.ndarray, idx: np.ndarray, need_value: bool = True
                               ) -> tuple[float, np.ndarray]:
        n = idx.size
        c = self.channel_kernel_view()
        if c is not None and c.route_pass:
            val, g = c.fs_value_grad(v, need_value, idx)
            return (float(val) / n if need_value else math.nan), g / n
        rows = self._windows[idx].reshape(-1, self._cols)
        R = rows @ v.reshape(self._cout, self._cols).T - np.moveaxis(self.data.targets[idx], 1, -1).reshape(
            -1, self._cout)
        val = float(np.sum(self.loss.value(R))) / n if need_value else math.nan
        return val, (self.loss.derivative(R).T @ rows).reshape(-1) / n


# ---------------------------------------------------------------------------------------------------- exact statistics
def square_risk_from_statistics(
    arch: Architecture,
    data: Dataset,
    gram: np.ndarray,
    moment: np.ndarray,
    constant: float,
    *,
    minimizer: np.ndarray | None = None,
    minimum: float | None = None,
) -> EmpiricalRisk:
    r"""A square-loss risk ``ℒ(v) = ½ vᵀGv − bᵀv + c`` given by its statistics instead of by samples.

    For an exact (population) risk, or any risk whose ``G``, ``b``, ``c`` are known in closed form.  ``data`` is a
    representative sample: it fixes the shapes and is what figures show, but every value and derivative comes from
    the statistics (the square-loss risk never touches the data after construction).

    Parameters
    ----------
    arch : Architecture
    data : Dataset
        Representative samples for ``arch``.
    gram : ndarray
        ``G`` (``k_v × k_v``, symmetric positive semi-definite).
    moment : ndarray
        ``b`` (``k_v``).
    constant : float
        ``c``.
    minimizer, minimum : optional
        ``v̂`` with ``G v̂ = b`` and ``ℒ(v̂)`` when known exactly (then ``ℒ(v) = ½(v − v̂)ᵀG(v − v̂) + ℒ(v̂)`` keeps
        its relative accuracy near the minimum); by default ``v̂ = G⁺b`` and ``ℒ(v̂) = c − ½ bᵀv̂``.

    Returns
    -------
    EmpiricalRisk
        With ``is_quadratic`` true and ``statistics_exact`` true.

    Raises
    ------
    ValueError
        Shapes that do not fit ``arch``, a non-symmetric or indefinite ``G``, non-finite values.
    """
    if arch.is_multichannel:
        raise ValueError(f"architecture.channels: risks from statistics are single-channel, got channels "
                         f"{list(arch.channels)}")
    kv = arch.final_filter_num_params
    G = np.asarray(gram, dtype=np.float64)
    b = np.asarray(moment, dtype=np.float64).reshape(-1)
    if G.shape != (kv, kv):
        raise ValueError(f"gram: expected shape ({kv}, {kv}) (k_v × k_v), got {G.shape}")
    if b.shape != (kv,):
        raise ValueError(f"moment: expected {kv} entries (k_v), got {b.size}")
    if not (np.all(np.isfinite(G)) and np.all(np.isfinite(b)) and math.isfinite(float(constant))):
        raise ValueError("gram, moment, constant: must be finite")
    if not np.allclose(G, G.T, rtol=1e-12, atol=1e-14 * float(np.max(np.abs(G), initial=0.0))):
        raise ValueError("gram: must be symmetric")
    lam = np.linalg.eigvalsh(G)
    if lam.size and lam[0] < -1e-12 * max(float(lam[-1]), 0.0):
        raise ValueError(f"gram: must be positive semi-definite, smallest eigenvalue {lam[0]:.3g}")
    risk = EmpiricalRisk(arch, get_loss("square"), data)
    risk.gram, risk.moment, risk.constant = (G + G.T) / 2, b, float(constant)
    if minimizer is None:
        v_hat = np.linalg.lstsq(risk.gram, b, rcond=None)[0]
        minimum = float(constant) - 0.5 * float(b @ v_hat)
    else:
        v_hat = np.asarray(minimizer, dtype=np.float64).reshape(-1)
        if minimum is None:
            minimum = float(constant) - 0.5 * float(b @ v_hat)
    risk.least_squares_filter, risk.minimum_value = v_hat, float(minimum)
    risk.statistics_exact = True
    risk.__dict__.pop("data_condition", None)  # recomputed from the exact G when asked
    return risk


def toeplitz_gram(arch: Architecture, autocovariance: np.ndarray) -> np.ndarray:
    r"""``E[HᵀH]/m = d_N·C`` for stationary inputs with autocovariance ``r``: ``C_{jk} = r(|j − k|)`` (1D).

    Each of the ``d_N`` output positions sees a window of ``k_v`` consecutive inputs, whose covariance is the
    Toeplitz matrix ``C`` whatever the position.

    Parameters
    ----------
    arch : Architecture
        1D.
    autocovariance : ndarray
        ``r(0), r(1), …`` with at least ``k_v`` entries.
    """
    if arch.ndim != 1:
        raise ValueError("architecture: exact stationary statistics are implemented for 1D architectures only")
    kv = arch.final_filter_num_params
    r = np.asarray(autocovariance, dtype=np.float64).reshape(-1)
    if r.size < kv:
        raise ValueError(f"autocovariance: needs at least k_v = {kv} lags, got {r.size}")
    idx = np.abs(np.arange(kv)[:, None] - np.arange(kv)[None, :])
    return arch.axes_layer_sizes[-1][0] * r[idx]


def population_square_risk(
    arch: Architecture, data: Dataset, autocovariance: np.ndarray, teacher: np.ndarray, noise_std: float
) -> EmpiricalRisk:
    r"""The exact square-loss risk of a teacher–student problem without sampling noise.

    Inputs are stationary Gaussian signals with autocovariance ``r``; targets are the teacher's outputs
    ``Π(v_t) x`` plus i.i.d. ``N(0, σ²)`` noise.  Per sample, ``E ½‖Π(v)x − y‖² = ½(v − v_t)ᵀG(v − v_t) + d_N σ²/2``
    with ``G = d_N·C`` (:func:`toeplitz_gram`): ``b = G v_t``, ``c = ½ v_tᵀGv_t + d_N σ²/2``, minimum ``d_N σ²/2``
    at ``v_t``.  An empirical risk of ``m`` samples of this distribution converges to it (its gradients at the rate
    ``1/√m``).

    Parameters
    ----------
    arch : Architecture
    data : Dataset
        Representative samples (shapes, figures).
    autocovariance : ndarray
        ``r(0), r(1), …`` (at least ``k_v`` lags).
    teacher : ndarray
        ``v_t`` (``k_v``).
    noise_std : float
        ``σ ≥ 0``.
    """
    G = toeplitz_gram(arch, autocovariance)
    v_t = np.asarray(teacher, dtype=np.float64).reshape(-1)
    if v_t.size != arch.final_filter_num_params:
        raise ValueError(f"teacher: expected {arch.final_filter_num_params} entries (k_v), got {v_t.size}")
    if not (noise_std >= 0 and math.isfinite(noise_std)):
        raise ValueError(f"noise_std: must be finite and ≥ 0, got {noise_std}")
    floor = 0.5 * arch.axes_layer_sizes[-1][0] * noise_std**2
    b = G @ v_t
    return square_risk_from_statistics(arch, data, G, b, 0.5 * float(v_t @ b) + floor, minimizer=v_t, minimum=floor)
