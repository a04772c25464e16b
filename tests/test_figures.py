"""The report's figures say what they show: legends off the curves, zooms where roots crowd, mathtext, the drift's
normalisation, runs that stop at t = 0, the Hessian's labels, colour bars, and :func:`plot_result`.

Oracles: ``numpy.roots`` (roots of the layer polynomials), the conserved quantities recomputed here from the
recorded trajectory, the filters of a run, and Matplotlib's own layout (window extents of the drawn artists).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
import warnings

import numpy as np
import numpy.polynomial.polynomial as npoly
import pytest

import lcnflow as lf
from lcnflow.analysis import critical
from lcnflow.experiments import config_from_dict, execute
from lcnflow.report import figures as F
from lcnflow.report import load_run, plot_result

TINY_1D = {"data.source": "planted", "data.num_samples": 20, "architecture.input_size": 14,
           "architecture.filter_sizes": [3, 2, 2], "init.scale": 0.5}
TINY_2D = {"data.source": "planted", "data.num_samples": 10, "architecture.input_size": [7, 8],
           "architecture.filter_sizes": [[2, 2], [2, 3]], "init.scale": 0.5}


@pytest.fixture(scope="module")
def run_1d(tmp_path_factory):
    run = execute(config_from_dict({"name": "fig-1d"}, TINY_1D))
    out = tmp_path_factory.mktemp("fig1d")
    run.save(out, report=False)
    return run, load_run(out)


@pytest.fixture(scope="module")
def run_2d(tmp_path_factory):
    run = execute(config_from_dict({"name": "fig-2d"}, TINY_2D))
    out = tmp_path_factory.mktemp("fig2d")
    run.save(out, report=False)
    return run, load_run(out)


@pytest.fixture(scope="module")
def run_t0(tmp_path_factory):
    """Zero initial filters: ``∇L(0) = 0``, so the run stops at ``t = 0``."""
    run = execute(config_from_dict({"name": "fig-t0"}, {**TINY_1D, "init.scale": 0.0}))
    out = tmp_path_factory.mktemp("figt0")
    run.save(out, report=False)
    return run, load_run(out)


def draw(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def texts(fig) -> list[str]:
    """Every piece of text of a figure: titles, axis labels, legend entries, annotations."""
    out = [t.get_text() for t in fig.findobj(match=lambda a: hasattr(a, "get_text"))]
    return [t for t in out if t]


def test_one_copy_of_root_finding():
    assert F.finite_roots is critical.finite_roots and F.ROOT_TOL == critical.ROOT_TOL
    coeffs = 2.5 * npoly.polyfromroots([0.3, -1.7, 4.0])
    np.testing.assert_allclose(np.sort(F.polynomial_roots(coeffs).real), np.sort(np.roots(coeffs[::-1]).real),
                               rtol=1e-10)


def test_convergence_legends_sit_below_the_curves(run_1d):
    _, data = run_1d
    fig = F.convergence(data)
    renderer = draw(fig)
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        box, panel = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert box.y1 <= panel.y0 + 1, "legend overlaps its panel"
        # and it is inside the figure (not cut off)
        assert box.y0 >= 0 and box.x0 >= 0 and box.x1 <= fig.bbox.x1 + 1


def test_no_raw_superscripts_or_subscripts_outside_mathtext(run_1d, run_2d):
    for _, data in (run_1d, run_2d):
        for stem, func, _ in F.FIGURES:
            fig = func(data)
            if fig is None:
                continue
            for text in texts(fig):
                plain = re.sub(r"\$[^$]*\$", "", text)  # what is left outside mathtext
                assert not re.search(r"\^\(|\^\{|_\{|R\^k", plain), (stem, text)


def test_filters_have_a_legend_naming_each_coefficient(run_1d):
    _, data = run_1d
    fig = F.filters(data)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    sizes = [*data.arch.filter_sizes, data.arch.final_filter_size]
    assert len(visible) == len(sizes)
    for i, (ax, k) in enumerate(zip(visible, sizes, strict=True)):
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        symbol = "v" if i == len(sizes) - 1 else f"w^{{({i + 1})}}"
        assert labels == [f"${symbol}_{{{j}}}$" for j in range(k)]


def test_invariants_use_the_summary_normalisation(run_1d):
    run, data = run_1d
    fig = F.invariants(data)
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("$\\delta")]
    traj, times = data.arrays["trajectory"], data.arrays["times"]
    sl = data.layer_slices()
    norms = np.array([[float(row[s] @ row[s]) for s in sl] for row in traj])
    delta = norms[:, 1:] - norms[:, :-1]
    scale = np.maximum(norms.sum(axis=1), norms[0].sum())
    want = np.abs(delta - delta[0]) / scale[:, None]
    ok = times > 0
    for i, ln in enumerate(lines):
        # δ is a difference of squared norms: rounding of a few ε · ‖w‖², and the scale is ≥ ‖w‖²
        np.testing.assert_allclose(ln.get_ydata(), np.maximum(want[ok, i], 1e-17), rtol=0,
                                   atol=16 * np.finfo(float).eps)
    # the recorded points are a subset of the steps the summary's maximum runs over
    assert max(float(np.max(ln.get_ydata())) for ln in lines) <= run.result.invariant_drift * (1 + 1e-9) + 1e-17
    caption = dict((s, c) for s, _, c in F.FIGURES)["invariants"]
    assert "max(‖w(0)‖², ‖w(t)‖²)" in caption and "invariant drift" in caption


def test_a_run_stopped_at_t0_draws_its_point(run_t0):
    run, data = run_t0
    assert run.result.t_final == 0 and np.all(data.arrays["times"] == 0)
    for func in (F.convergence, F.filters, F.invariants):
        fig = func(data)
        for ax in [a for a in fig.axes if a.get_visible()]:
            drawn = [ln for ln in ax.get_lines() if len(ln.get_xdata()) and ln.get_label() != "machine ε"]
            said = [t for t in ax.texts if "stopped" not in t.get_text()]  # e.g. "L(w(t)) = L(w*)": nothing above
            assert drawn or said, (func.__name__, ax.get_title())
            assert any("stopped at t = 0" in t.get_text() for t in ax.texts), func.__name__
            assert ax.get_xscale() == "linear"


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_diverged_run_draws_every_figure(run_1d, bad):
    _, data = run_1d
    data = copy.deepcopy(data)
    a = data.arrays
    for key in ("limit", "final_filter"):
        a[key] = np.full_like(a[key], bad)
    for key in ("trajectory", "final_filter_trajectory", "invariants_trajectory"):
        a[key][-1] = bad
    a["losses"][-1] = a["gradient_norms"][-1] = np.inf
    data.record = dataclasses.replace(data.record, result=dataclasses.replace(
        data.record.result, loss=None, converged=False, certified=False))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Matplotlib's notes on non-finite data: drawing must still succeed
        for _, func, _ in F.FIGURES:
            fig = func(data)
            if fig is not None:
                draw(fig)
    assert F.polynomial_roots([1.0, bad, 2.0]).size == 0


def test_roots_zoom_on_roots_crowding_near_the_origin(run_1d):
    _, data = run_1d
    data = copy.deepcopy(data)
    # layer polynomials with roots 0.01, 0.02 (near 0) and far away at 5: the fixed axis cannot separate them
    w1 = npoly.polyfromroots([0.01, 5.0])
    w2, w3 = npoly.polyfromroots([0.02]), npoly.polyfromroots([-5.0])
    data.arrays["limit"] = np.concatenate([w1, w2, w3])
    data.arrays["init"] = data.arrays["limit"] * 1.5
    fig = F.roots(data)
    draw(fig)
    zooms = [ax for ax in fig.axes if ax.get_visible() and "zoom" in ax.get_title()]
    assert zooms, [ax.get_title() for ax in fig.axes]
    layer1 = next(ax for ax in zooms if ax.get_title().startswith("layer 1"))
    r = layer1.get_xlim()[1]
    assert r < 0.5, r  # zoomed: well inside the main panels' radius ≥ 1.3
    # the near root of layer 1 at the limit is drawn inside the zoom
    pts = np.concatenate([np.asarray(ln.get_xdata(), float) for ln in layer1.get_lines() if ln.get_marker() == "o"])
    assert np.any(np.abs(pts - 0.01) < 1e-9)


def test_no_zoom_when_roots_are_spread(run_1d):
    _, data = run_1d
    data = copy.deepcopy(data)
    data.arrays["init"] = np.concatenate([npoly.polyfromroots([1.0, -2.0]), npoly.polyfromroots([2.0]),
                                          npoly.polyfromroots([-1.5])])
    data.arrays["limit"] = data.arrays["init"].copy()
    data.arrays["final_filter_trajectory"] = np.array([npoly.polyfromroots([1.0, -2.0, 2.0, -1.5])])
    data.arrays["final_filter"] = data.arrays["final_filter_trajectory"][0]
    data.arrays["optimum_filter"] = npoly.polyfromroots([1.2, -2.0, 2.5, -1.5])
    fig = F.roots(data)
    assert not [ax for ax in fig.axes if ax.get_visible() and "zoom" in ax.get_title()]


@pytest.mark.parametrize("eig", [[-3.0, 0.0, 1e-12, 2.0, 300.0], [0.0, 0.0, 0.0], [1e-3, 1.0, 1e3]])
def test_hessian_labels_do_not_overlap(run_1d, eig):
    _, data = run_1d
    data = copy.deepcopy(data)
    data.arrays["hessian_eigenvalues"] = np.array(eig)
    fig = F.hessian(data)
    renderer = draw(fig)
    ax = fig.axes[0]
    boxes = [t.get_window_extent(renderer) for t in ax.get_yticklabels() if t.get_text() and t.get_visible()
             and ax.get_ylim()[0] <= t.get_position()[1] <= ax.get_ylim()[1]]
    for a, b in itertools.pairwise(boxes):
        assert not a.overlaps(b), (a, b)
    eig = np.array(eig)
    if np.any(eig < 0):  # a negative eigenvalue is drawn at |λ| with its own marker
        neg = next(ln for ln in ax.get_lines() if ln.get_marker() == "v")
        np.testing.assert_allclose(neg.get_ydata(), -eig[eig < -1e-7 * np.max(np.abs(eig))])


def test_2d_examples_have_a_colour_bar_per_sample(run_2d):
    _, data = run_2d
    fig = F.examples(data)
    bars = [ax for ax in fig.axes if ax.get_ylabel().startswith("sample")]
    n = min(data.arrays["example_inputs"].shape[0], 2)
    assert len(bars) == n


def test_log_time_hides_descent_by_the_width_left_after_the_escape():
    t = np.array([0.0, 1.0, 10.0, 100.0, 1000.0, 1100.0, 1200.0])
    late = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 0.5, 0.4])  # escape at 1100: log(1200/1100)/log(1200) ≈ 1 %
    early = np.array([2.0, 1.0, 0.6, 0.45, 0.41, 0.4, 0.4])  # escape at t = 1: the whole axis follows it
    assert F.log_time_hides_descent(t, late) and not F.log_time_hides_descent(t, early)
    assert not F.log_time_hides_descent(t, np.full(t.size, 2.0))  # no descent, nothing hidden
    assert not F.log_time_hides_descent(np.zeros(1), np.ones(1))
    # the threshold: the escape at t_e leaves log(t_end/t_e)/log(t_end/t_1) of the width
    te = 1200.0 ** (1 - F.AFTER_ESCAPE_WIDTH)
    for factor, hidden in ((1.05, True), (0.95, False)):
        tt = np.array([0.0, 1.0, te * factor, 1200.0])
        assert F.log_time_hides_descent(tt, np.array([2.0, 2.0, 1.0, 0.4])) == hidden


def test_recorded_arc_length_is_the_polygon_through_the_points():
    traj = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0], [3.0, 5.0]])
    np.testing.assert_allclose(F.recorded_arc_length(traj), [0.0, 5.0, 5.0, 6.0], rtol=0, atol=0)


def test_late_escape_gets_an_arc_length_row(run_1d, tmp_path):
    """A run from a small initialization leaves the origin's plateau late: on the log time axis its whole descent
    is a cliff at the right end, so the figure adds the same curves against arc length (every recorded point,
    spread by how far w moved); a run that escapes at once keeps the single row."""
    late = execute(config_from_dict({"name": "late"}, {**TINY_1D, "init.scale": 1e-3}))
    late.save(tmp_path, report=False)
    data = load_run(tmp_path)
    assert F.log_time_hides_descent(data.arrays["times"], data.arrays["losses"])
    fig = F.convergence(data)
    arc = [ax for ax in fig.axes if ax.get_xlabel().startswith("arc length")]
    assert len(arc) == 3
    (risk,) = [ax for ax in arc if ax.get_ylabel() == "risk L"]
    x, y = risk.get_lines()[0].get_data()
    np.testing.assert_allclose(x, F.recorded_arc_length(data.arrays["trajectory"]))
    np.testing.assert_allclose(y, data.arrays["losses"])
    # the descent takes a visible part of the arc-length axis (on the log time axis, under a fifth)
    drop = np.nonzero(y <= y[0] - 0.5 * (y[0] - y[-1]))[0][0]
    assert x[drop] - x[0] > 0.05 * (x[-1] - x[0])
    _, early = run_1d
    assert not [ax for ax in F.convergence(early).axes if ax.get_xlabel().startswith("arc length")]
    # the coefficient paths follow: every recorded point against arc length, on a linear axis
    panels = [ax for ax in F.filters(data).axes if ax.get_visible()]
    assert all(ax.get_xlabel().startswith("arc length") and ax.get_xscale() == "linear" for ax in panels)
    np.testing.assert_allclose(panels[0].get_lines()[0].get_xdata(), x)
    assert all(ax.get_xscale() == "log" for ax in F.filters(early).axes if ax.get_visible())
    # and the in-memory figure of the result
    fig = plot_result(late.result, late.experiment.risk)
    (risk_ax,) = [ax for ax in fig.axes if ax.get_title() == "Risk"]
    assert risk_ax.get_xlabel().startswith("arc length") and risk_ax.get_xscale() == "linear"
    np.testing.assert_allclose(risk_ax.get_lines()[0].get_xdata(), x)


@pytest.mark.parametrize("case", ["flat target", "all flat", "flat zero"])
def test_flat_2d_patches_are_not_drawn_black(run_2d, case):
    """A constant patch has no range of values of its own: a constant target is drawn on the range of the sample's
    other panels, and when every panel is constant (a zero patch included) it is drawn mid-grey, never at the bottom
    of the colour map as a zero-width range would draw it."""
    _, data = run_2d
    data = copy.deepcopy(data)
    a = data.arrays
    names = ["example_inputs", "example_outputs_limit", "example_outputs_optimum", "example_targets"]
    c = 0.0 if case == "flat zero" else 0.7
    for name in names if case != "flat target" else ["example_targets"]:
        a[name] = np.full_like(a[name], c)
    fig = F.examples(data)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 4 * min(a["example_inputs"].shape[0], 2)
    for im in images:
        lo, hi = im.norm.vmin, im.norm.vmax
        assert hi > lo
        values = np.asarray(im.get_array())
        if np.ptp(values) == 0:  # a constant panel
            shade = float(im.norm(values.flat[0]))
            if case == "flat target":
                assert lo <= c <= hi  # its true value on the other panels' range
            else:
                assert shade == pytest.approx(0.5, abs=1e-12)


def test_grey_range_is_the_target_range_when_it_has_one():
    y = np.array([[0.0, 2.0], [1.0, 1.5]])
    assert F.grey_range(y, [y, 10 * y]) == (0.0, 2.0)
    assert F.grey_range(np.full((2, 2), 3.0), [np.full((2, 2), 3.0)]) == (0.0, 6.0)
    assert F.grey_range(np.ones((2, 2)), [np.ones((2, 2)), np.array([[-1.0, 4.0]])]) == (-1.0, 4.0)


def test_plot_result_1d_draws_the_run_and_the_roots(rng):
    arch = lf.Architecture(20, [3, 3, 2])
    X = rng.standard_normal((40, 20))
    Y = lf.predict(arch, lf.random_init(arch, 1.0, 4), X) + 0.01 * rng.standard_normal((40, arch.output_size))
    risk = lf.EmpiricalRisk(arch, lf.get_loss("square"), lf.Dataset(X, Y))
    result = lf.gradient_flow(risk, lf.random_init(arch, 0.5, 2))
    fig = plot_result(result, risk)
    assert len(fig.axes) == 3
    risk_line = fig.axes[0].get_lines()[0]
    ok = result.times > 0
    np.testing.assert_array_equal(risk_line.get_xdata(), result.times[ok])
    np.testing.assert_array_equal(risk_line.get_ydata(), result.losses[ok])
    # filled markers of the roots panel: the roots of each layer at the limit (numpy.roots as oracle)
    filled = [ln for ln in fig.axes[2].get_lines() if ln.get_marker() == "o" and ln.get_markerfacecolor() != "none"
              and len(ln.get_xdata())]
    drawn = np.sort_complex(np.concatenate([np.asarray(ln.get_xdata()) + 1j * np.asarray(ln.get_ydata())
                                            for ln in filled]))
    want = np.sort_complex(np.concatenate([np.roots(w[::-1]) for w in result.limit]))
    inside = want[np.abs(want) <= fig.axes[2].get_xlim()[1]]
    np.testing.assert_allclose(drawn, np.sort_complex(inside), atol=1e-8)
    draw(fig)


def test_plot_result_2d(rng):
    arch = lf.Architecture((6, 6), [(2, 2), (2, 2)])
    X = rng.standard_normal((8, 6, 6))
    Y = lf.predict(arch, lf.random_init(arch, 1.0, 1), X)
    risk = lf.EmpiricalRisk(arch, lf.get_loss("log_cosh"), lf.Dataset(X, Y))
    result = lf.gradient_flow(risk, lf.random_init(arch, 0.5, 3))
    fig = plot_result(result, risk)
    assert len(fig.axes) == 2 and fig.axes[1].get_yscale() == "log"
    draw(fig)


def test_channel_invariants_draw_one_curve_per_matrix_from_the_layers(tmp_path):
    """With channels the conserved quantities are c_i × c_i matrices Δ_i = Σ_j W_i[j]W_i[j]ᵀ − Σ_j W_{i+1}[j]ᵀW_{i+1}[j]
    (up to the sign convention): one curve per matrix, its largest entry's drift, computed here from the layers."""
    run = execute(config_from_dict({"name": "fig-ch"}, {**TINY_1D, "architecture.channels": [1, 2, 3, 1]}))
    run.save(tmp_path, report=False)
    data = load_run(tmp_path)
    lines = [ln for ln in F.invariants(data).axes[0].get_lines() if ln.get_label().startswith("$\\Delta")]
    assert len(lines) == 2
    traj, times = data.arrays["trajectory"], data.arrays["times"]

    def deltas(w):
        layers = data.layer_filters(w)  # (c_i, c_{i-1}, k) each
        return [np.einsum("abk,cbk->ac", a, a) - np.einsum("bak,bck->ac", b, b) for a, b in itertools.pairwise(layers)]

    start = deltas(traj[0])
    scale = np.maximum(np.sum(traj * traj, axis=1), float(traj[0] @ traj[0]))
    ok = times > 0
    for i, ln in enumerate(lines):
        want = np.array([np.max(np.abs(deltas(w)[i] - start[i])) for w in traj]) / scale
        np.testing.assert_allclose(ln.get_ydata(), np.maximum(want[ok], 1e-17), rtol=0, atol=64 * np.finfo(float).eps)
