"""Units: multiplying the data by a constant changes no verdict.

Strided and 2D architectures, where ℒ*_M is a bound from local searches and every tolerance the searches, the
polishing and the classification use meets the data.  Scaling inputs and targets by ``c`` leaves every final filter
``v`` with the same outputs relative to the targets, so ``ℒ`` is multiplied by ``c²`` exactly and the same
initialization reaches the same limit; scaling the targets alone by ``c`` maps the flow from ``w(0)`` to the flow
from ``c^{1/N} w(0)`` (each layer times ``c^{1/N}``, time divided by ``c^{2 − 2/N}``).  The labels at ``c = 1`` are
the reference: the test checks that they do not move, and that the losses scale as the algebra says.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lcnflow
from lcnflow import Architecture, Dataset, EmpiricalRisk

#: (input size, filter sizes, strides, data seed): 1D with strides before a layer, and 2D (stride 1 and 2), chosen so
#: that the labels on M differ (local on M, undecided on M).
CASES = [
    (12, [3, 2, 2], [1, 2, 1], 0),
    (12, [3, 2, 2], [1, 2, 1], 2),
    (16, [4, 2, 2], [2, 2, 1], 0),
    (13, [2, 3, 2], [2, 1, 1], 1),
    ((7, 7), [(3, 3), (2, 2)], None, 0),
    ((6, 6), [(2, 2), (2, 2)], None, 1),
    ((9, 9), [(2, 2), (2, 2)], [(2, 2), (1, 1)], 1),
]


def _problem(d0, ks, ss, seed):
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some sizes drop trailing inputs (a warning, not an error)
        arch = Architecture(d0, ks, ss)
    shape = (d0,) if isinstance(d0, int) else tuple(d0)
    out = arch.output_size
    X = rng.standard_normal((20, *shape))
    Y = rng.standard_normal((20, *((out,) if isinstance(out, int) else tuple(out))))
    init = [0.5 * rng.standard_normal(int(np.prod(k))).reshape(k) for k in ks]
    return arch, X, Y, init


def _labels(res):
    cp = res.critical_point
    return res.certified, res.kind, cp.on_m, cp.degenerate_hessian, cp.origin


def test_scaling_the_data_changes_no_label():
    """Every case keeps its labels under both scalings and both factors; the set is not trivial: it holds limits
    that are local on M and limits that are undecided on M."""
    seen = set()
    for d0, ks, ss, seed in CASES:
        arch, X, Y, init = _problem(d0, ks, ss, seed)
        ref = lcnflow.gradient_flow(EmpiricalRisk(arch, "square", Dataset(X, Y)), init)
        assert ref.certified
        seen.add(ref.critical_point.on_m)
        N = len(ks)
        for c in (1e-3, 1e3):
            both = lcnflow.gradient_flow(EmpiricalRisk(arch, "square", Dataset(c * X, c * Y)), init)
            assert _labels(both) == _labels(ref), f"{arch}: inputs and targets × {c:g}"
            # ℒ is multiplied by c² exactly; the limits agree to the certificate's accuracy (1e-8 relative is far
            # above what a certified non-degenerate minimum leaves, far below the differences between minima)
            assert both.loss == pytest.approx(c**2 * ref.loss, rel=1e-8)
            targets = lcnflow.gradient_flow(EmpiricalRisk(arch, "square", Dataset(X, c * Y)),
                                            [w * c ** (1.0 / N) for w in init])
            assert _labels(targets) == _labels(ref), f"{arch}: targets × {c:g}"
            assert targets.loss == pytest.approx(c**2 * ref.loss, rel=1e-8)
    assert {"local on M", "undecided on M"} <= seen


def test_a_robust_loss_case_that_four_starts_labelled_by_its_units():
    """ℓ4 loss, targets from a planted network plus 5 % noise, k = (2, 3, 2) with strides (2, 1, 1): with ℒ*_M from
    four local searches the limit was "undecided on M" at c = 1 and c = 10³ but "local on M" at c = 10⁻³ (the searches
    found a better point of M in one unit only).  Every search now draws starts until three agree on the best value."""
    from lcnflow.model.conv import predict

    rng = np.random.default_rng(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 12 of the 13 inputs are used
        arch = Architecture(13, [2, 3, 2], [2, 1, 1])
    X = rng.standard_normal((20, 13))
    Y = predict(arch, [rng.standard_normal(k) for k in (2, 3, 2)], X)
    Y = Y + 0.05 * np.std(Y) * rng.standard_normal(Y.shape)
    init = [0.5 * rng.standard_normal(k) for k in (2, 3, 2)]
    loss = lcnflow.get_loss("lp", p=4)
    ref = lcnflow.gradient_flow(EmpiricalRisk(arch, loss, Dataset(X, Y)), init)
    assert ref.certified
    for c in (1e-3, 1e3):
        res = lcnflow.gradient_flow(EmpiricalRisk(arch, loss, Dataset(c * X, c * Y)), init)
        assert _labels(res) == _labels(ref), f"inputs and targets × {c:g}"
        assert res.loss == pytest.approx(c**4 * ref.loss, rel=1e-8)  # ℓ4: ℒ scales as c⁴
