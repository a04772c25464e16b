"""The benchmark problems B1–B6, built deterministically from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial import polynomial as P

import lcnflow as lf
from lcnflow.model.conv import patch_rows


@dataclass
class Problem:
    name: str
    description: str
    arch: lf.Architecture
    inputs: np.ndarray
    targets: np.ndarray
    loss: lf.Loss
    init: list[np.ndarray]

    @property
    def risk(self) -> lf.EmpiricalRisk:
        return lf.EmpiricalRisk(self.arch, self.loss, lf.Dataset(self.inputs, self.targets))


def _planted(arch: lf.Architecture, m: int, v: np.ndarray, rng: np.random.Generator, noise: float = 0.0):
    X = rng.standard_normal((m, *arch.axes_layer_sizes[0]))
    Y = (lf.patch_matrix(arch, X) @ v.ravel()).reshape(m, *arch.axes_layer_sizes[-1])
    return X, Y + noise * rng.standard_normal(Y.shape)


def _init(arch: lf.Architecture, scale: float, rng: np.random.Generator) -> list[np.ndarray]:
    return [scale * rng.standard_normal(s) for s in arch.filter_shapes]


def b1(seed: int = 0, init_scale: float = 0.5, m: int = 500) -> Problem:
    """1D k=(3,3,3), d_0=64, m=500, Gaussian inputs, planted random length-7 filter, square loss, init N(0, 0.5²)."""
    rng = np.random.default_rng(seed)
    arch = lf.Architecture(64, [3, 3, 3])
    X, Y = _planted(arch, m, rng.standard_normal(7), rng)
    return Problem("B1", "1D k=(3,3,3), d0=64, m=500, planted filter, square loss", arch, X, Y,
                   lf.get_loss("square"), _init(arch, init_scale, rng))


def b2(seed: int = 0) -> Problem:
    """B1 from a small initialization (scale 1e-3): a long plateau near the saddle at 0."""
    p = b1(seed, init_scale=1e-3)
    p.name, p.description = "B2", "B1 from init scale 1e-3 (plateau at the saddle 0)"
    return p


def b3(seed: int = 0) -> Problem:
    """1D k=(2,2,2) (not filling), target filter with complex roots: outside M, degenerate limit."""
    rng = np.random.default_rng(seed)
    arch = lf.Architecture(64, [2, 2, 2])
    v = np.real(P.polyfromroots([-0.7, 0.4 + 0.9j, 0.4 - 0.9j]))  # a complex pair: no real factorization
    X, Y = _planted(arch, 500, v, rng)
    return Problem("B3", "1D k=(2,2,2), target outside M (complex roots), square loss", arch, X, Y,
                   lf.get_loss("square"), _init(arch, 0.5, rng))


def b4(seed: int = 0) -> Problem:
    """1D strided k=(4,3,2), s=(2,2,1), MNIST-1D-style smooth signals, 5% gross outliers, pseudo-Huber loss."""
    rng = np.random.default_rng(seed)
    arch = lf.Architecture(40, [4, 3, 2], strides=[2, 2, 1])
    d0, m = 40, 500
    grid = np.linspace(0, 1, d0)
    # smooth signals: sums of a few random bumps and ramps, like MNIST-1D digits after their random transforms
    centers = rng.uniform(0, 1, (m, 4))
    widths = rng.uniform(0.03, 0.12, (m, 4))
    heights = rng.normal(0, 1, (m, 4))
    X = np.sum(heights[:, :, None] * np.exp(-((grid - centers[:, :, None]) ** 2) / (2 * widths[:, :, None] ** 2)), 1)
    X += 0.1 * rng.standard_normal((m, d0)) + rng.normal(0, 0.3, (m, 1)) * grid
    v = rng.standard_normal(arch.final_filter_size) / 3
    Y = (lf.patch_matrix(arch, X) @ v).reshape(m, -1) + 0.01 * rng.standard_normal((m, arch.output_size))
    outliers = rng.random(Y.shape) < 0.05
    Y[outliers] += rng.choice([-1, 1], outliers.sum()) * rng.uniform(5, 20, outliers.sum())
    return Problem("B4", "1D k=(4,3,2) s=(2,2,1), smooth signals with 5% gross outliers, pseudo-Huber", arch, X, Y,
                   lf.get_loss("pseudo_huber", delta=1.0), _init(arch, 0.5, rng))


def b5(seed: int = 0) -> Problem:
    """2D k=((3,3),(3,3)), s=((1,1),(2,2)), 64 image patches of 32×32 (deblurring), log-cosh loss."""
    rng = np.random.default_rng(seed)
    arch = lf.Architecture((32, 32), [(3, 3), (3, 3)], strides=[(1, 1), (2, 2)])
    # natural-image-like patches: smoothed noise with edges (a 1/f-ish spectrum)
    freq = np.fft.fftfreq(32)
    radius = np.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)
    spectrum = 1.0 / np.maximum(radius, 1 / 32)
    X = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((64, 32, 32))) * spectrum))
    X /= X.std()
    v = rng.standard_normal(arch.final_filter_shape) / 5
    Y = (lf.patch_matrix(arch, X) @ v.ravel()).reshape(64, *arch.axes_layer_sizes[-1])
    Y += 0.01 * rng.standard_normal(Y.shape)
    return Problem("B5", "2D k=(3×3,3×3) s=(1,2), 64 patches 32×32, log-cosh", arch, X, Y,
                   lf.get_loss("log_cosh"), _init(arch, 0.5, rng))


def b6(seed: int = 0) -> Problem:
    """2D k=((5,5),(5,5),(3,3)), 64 natural-image-like images of 128×128 (deblurring), log-cosh loss."""
    rng = np.random.default_rng(seed)
    n = 128
    arch = lf.Architecture((n, n), [(5, 5), (5, 5), (3, 3)])
    freq = np.fft.fftfreq(n)
    radius = np.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)
    spectrum = 1.0 / np.maximum(radius, 1 / n)  # 1/f-ish, like photographs
    X = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((64, n, n))) * spectrum))
    X /= X.std()
    v = rng.standard_normal(arch.final_filter_shape) / 11
    Y = np.tensordot(patch_rows(arch, X), v, axes=2)
    Y += 0.01 * rng.standard_normal(Y.shape)
    return Problem("B6", "2D k=(5×5,5×5,3×3), 64 images 128×128, log-cosh", arch, X, Y,
                   lf.get_loss("log_cosh"), _init(arch, 0.5, rng))


PROBLEMS = {"B1": b1, "B2": b2, "B3": b3, "B4": b4, "B5": b5, "B6": b6}
