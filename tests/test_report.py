"""Run directories and their reports.

Oracles: ``numpy.polynomial.polynomial.polyfromroots`` (roots are built first, polynomials from them), the conftest's
polynomial-product final filter and loop correlation (saved arrays), JSON and PNG parsers (files), and the HTML text.
"""

from __future__ import annotations

import json
import re

import numpy as np
import numpy.polynomial.polynomial as npoly
import pytest

from conftest import loop_strided_correlation, polymul_final_filter
from lcnflow.experiments import RUN_FILES, config_from_dict, execute
from lcnflow.report import FIGURES, ReportError, build_report, load_run, polynomial_roots, shared_roots
from lcnflow.report.figures import _power_of_ten

TINY_1D = {"data.source": "planted", "data.num_samples": 20, "architecture.input_size": 14,
           "architecture.filter_sizes": [3, 2, 2], "init.scale": 0.5}
TINY_2D = {"data.source": "planted", "data.num_samples": 10, "architecture.input_size": [7, 8],
           "architecture.filter_sizes": [[2, 2], [2, 3]], "init.scale": 0.5}


@pytest.fixture(scope="module")
def run_1d(tmp_path_factory):
    run = execute(config_from_dict({"name": "tiny-1d"}, TINY_1D))
    out = tmp_path_factory.mktemp("run1d")
    run.save(out)
    return run, out, build_report(out, ("png", "svg"))


@pytest.fixture(scope="module")
def run_2d(tmp_path_factory):
    run = execute(config_from_dict({"name": "tiny-2d"}, TINY_2D))
    out = tmp_path_factory.mktemp("run2d")
    run.save(out)
    return run, out, build_report(out, figures=("filter_images", "examples", "roots", "final_filter"))


# ---------------------------------------------------------------------------------------------------- roots
def test_polynomial_roots_recovers_the_roots_it_was_built_from(rng):
    for degree in range(1, 7):
        roots = rng.standard_normal(degree) * 2
        coeffs = 3.0 * npoly.polyfromroots(roots)
        np.testing.assert_allclose(np.sort(polynomial_roots(coeffs).real), np.sort(roots), rtol=1e-8, atol=1e-8)
    # vanishing leading coefficients are roots at infinity: dropped
    np.testing.assert_allclose(polynomial_roots([2.0, 1.0, 0.0, 0.0]), [-2.0])
    assert polynomial_roots([0.0, 0.0]).size == 0 and polynomial_roots([5.0]).size == 0


def test_shared_roots_finds_exactly_the_shared_ones():
    a = polynomial_roots(npoly.polyfromroots([0.5, -2.0]))
    b = polynomial_roots(npoly.polyfromroots([0.5 + 1e-9, 3.0]))
    c = polynomial_roots(npoly.polyfromroots([7.0]))
    got = shared_roots([a, b, c])
    assert [(i, j) for i, j, _ in got] == [(1, 2)]
    assert got[0][2] == pytest.approx(0.5)
    assert shared_roots([a, c]) == []


def test_power_of_ten_labels():
    assert [_power_of_ten(x) for x in (1e-3, 1.0, 10.0, 100.0, 3e5, -1e2, 0.0)] == \
        ["10⁻³", "1", "10", "10²", "", "−10²", "0"]


# ---------------------------------------------------------------------------------------------------- run directory
def test_run_directory_files_are_complete_and_consistent(run_1d):
    run, out, _ = run_1d
    for name in RUN_FILES:
        assert (out / name).is_file()
    record = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert record["format"] == "lcnflow-run/1" and record["name"] == "tiny-1d"
    assert record["result"]["loss"] == run.result.loss
    assert record["verdict"]["headline"] == run.verdict["headline"]
    data = load_run(out)
    a = data.arrays
    arch = run.experiment.architecture
    # saved final filters are π of the saved states (polynomial-product oracle)
    for w, v in zip(a["trajectory"][[0, -1]], a["final_filter_trajectory"][[0, -1]], strict=True):
        np.testing.assert_allclose(v, polymul_final_filter(data.layer_filters(w), arch.strides), rtol=1e-12,
                                   atol=1e-14)
    np.testing.assert_allclose(a["final_filter"], polymul_final_filter(data.layer_filters(a["limit"]), arch.strides),
                               rtol=1e-12, atol=1e-14)
    # example outputs are the limit's network applied to the example inputs (loop oracle)
    for x, y in zip(a["example_inputs"], a["example_outputs_limit"], strict=True):
        expected = loop_strided_correlation(x, a["final_filter"], arch.final_stride, arch.output_size)
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-14)
    # conserved quantities are the layer-norm differences of the saved states
    norms = np.array([[w @ w for w in data.layer_filters(s)] for s in a["trajectory"]])
    np.testing.assert_allclose(a["invariants_trajectory"], np.diff(norms, axis=1), rtol=1e-12, atol=1e-14)
    assert a["times"][0] == 0 and np.all(np.diff(a["times"]) > 0)


def test_report_1d_has_the_figures_that_apply(run_1d):
    run, out, html_path = run_1d
    html = html_path.read_text(encoding="utf-8")
    ids = set(re.findall(r'<figure id="fig-(\w+)">', html))
    assert {"convergence", "roots", "final_filter", "examples", "filters", "invariants", "hessian"} <= ids
    assert "filter_images" not in ids
    assert html.count("data:image/png;base64,") == len(ids)
    assert run.verdict["headline"] in html.replace("&#x27;", "'")
    assert "Verdict" in html and "theorem hypotheses" in html and "[architecture]" in html
    for stem in ids:
        assert (out / "figures" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / "figures" / f"{stem}.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_report_2d_shows_filters_as_images(run_2d):
    _, out, html_path = run_2d
    ids = set(re.findall(r'<figure id="fig-(\w+)">', html_path.read_text(encoding="utf-8")))
    assert ids == {"filter_images", "examples"}  # the figures asked for that apply to 2D (no roots, no stems)
    assert not list((out / "figures").glob("*.svg"))  # PNG only by default


def test_unknown_figure_names_are_rejected(run_2d):
    with pytest.raises(ReportError, match="unknown figure"):
        build_report(run_2d[1], figures=("nope",))


def test_every_figure_is_registered_once():
    stems = [stem for stem, _, _ in FIGURES]
    assert len(stems) == len(set(stems))
    assert all(caption.endswith(".") for _, _, caption in FIGURES)


def test_load_run_errors(tmp_path, run_1d):
    with pytest.raises(ReportError, match="is not a directory"):
        load_run(tmp_path / "missing")
    with pytest.raises(ReportError, match=r"result\.json is missing"):
        load_run(tmp_path)
    (tmp_path / "result.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "trajectory.npz").write_bytes((run_1d[1] / "trajectory.npz").read_bytes())
    with pytest.raises(ReportError, match="cannot read"):
        load_run(tmp_path)
    (tmp_path / "result.json").write_text('{"format": "other"}', encoding="utf-8")
    with pytest.raises(ReportError, match="not an lcnflow run record"):
        load_run(tmp_path)
