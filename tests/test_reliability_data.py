"""Reliability of data and loss input as a user meets it: damaged files, extreme scales, arrays of the wrong kind.

Each fault must end in exit code 2 (or a ``ValueError`` from the API) with one message naming the field and the file,
never an internal error, and never a verdict computed from numbers that overflowed or underflowed.
"""

from __future__ import annotations

import json
import textwrap

import mpmath
import numpy as np
import pytest
from typer.testing import CliRunner

import lcnflow as lf
from lcnflow.cli import app
from lcnflow.model.data import DATA_SCALE_RANGE
from lcnflow.model.losses import SCALE_PARAMETER_RANGE

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def one_error_line(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def _planted(rng: np.random.Generator, m: int = 20) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((m, 12))
    return x, x[:, :10] - 0.5 * x[:, 1:11] + 0.25 * x[:, 2:12] + 0.01 * rng.standard_normal((m, 10))


def _config(tmp_path, data_lines: str, loss: str = "") -> str:
    path = tmp_path / "exp.toml"
    path.write_text(textwrap.dedent(f"""\
        [architecture]
        input_size = 12
        filter_sizes = [2, 2]
        [data]
        source = "file"
        {data_lines}
        {loss}
    """), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------------------------------- item 6
@pytest.fixture
def good(tmp_path):
    x, y = _planted(np.random.default_rng(0))
    np.savez(tmp_path / "good.npz", inputs=x, targets=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path


@pytest.mark.parametrize("damage, field, words", [
    ("empty", "data.path", "is empty"),
    ("truncated", "data.path", "truncated or damaged"),
    ("random", "data.path", "is not a zip archive"),
    ("directory", "data.path", "is a directory"),
])
def test_damaged_npz_is_refused_naming_the_file(good, damage, field, words):
    bad = good / "bad.npz"
    raw = (good / "good.npz").read_bytes()
    if damage == "empty":
        bad.write_bytes(b"")
    elif damage == "truncated":
        bad.write_bytes(raw[: len(raw) // 2])
    elif damage == "random":
        bad.write_bytes(np.random.default_rng(1).bytes(4096))
    else:
        bad.mkdir()
    for command in ("run", "check-data"):
        line = one_error_line(invoke(command, _config(good, f'path = "{bad}"'), "--json"))
        assert line.startswith(f"error: {field}: ") and str(bad) in line and words in line, line
        assert "pickle" not in line.lower() or "pickled Python objects" in line


def test_damaged_targets_file_is_blamed_on_the_targets(good):
    bad = good / "bad_y.npy"
    bad.write_bytes(np.random.default_rng(2).bytes(300))
    line = one_error_line(invoke("check-data", _config(good, f'path = "{good / "x.npy"}"\ntargets_path = "{bad}"')))
    assert line.startswith("error: data.targets_path: ") and str(bad) in line and "x.npy" not in line
    # a truncated .npy (valid header, missing data) is named too
    raw = (good / "y.npy").read_bytes()
    bad.write_bytes(raw[: len(raw) - 40])
    line = one_error_line(invoke("check-data", _config(good, f'path = "{good / "x.npy"}"\ntargets_path = "{bad}"')))
    assert line.startswith("error: data.targets_path: ") and str(bad) in line


def test_pickled_objects_are_refused_without_numpy_advice(good):
    obj = good / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    line = one_error_line(invoke("check-data", _config(good, f'path = "{obj}"\ntargets_path = "{good / "y.npy"}"')))
    assert line.startswith("error: data.path: ") and "pickled Python objects" in line
    assert "allow_pickle" not in line


def test_one_damaged_member_of_an_npz_names_that_array(good):
    import zipfile

    bad = good / "member.npz"
    with zipfile.ZipFile(good / "good.npz") as src, zipfile.ZipFile(bad, "w") as dst:
        dst.writestr("inputs.npy", src.read("inputs.npy"))
        dst.writestr("targets.npy", src.read("targets.npy")[:60])  # header only, data cut off
    line = one_error_line(invoke("check-data", _config(good, f'path = "{bad}"')))
    assert line.startswith("error: data.targets_key: ") and "'targets'" in line and str(bad) in line


# ---------------------------------------------------------------------------------------------------- item 5
@pytest.mark.parametrize("scale", [1e300, 1e-300, 1e120, 1e-120])
def test_data_outside_the_float64_safe_range_is_refused(good, scale):
    x, y = _planted(np.random.default_rng(3))
    path = good / "scaled.npz"
    np.savez(path, inputs=x * scale, targets=y * scale)
    for command in ("check-data", "run"):
        line = one_error_line(invoke(command, _config(good, f'path = "{path}"')))
        assert line.startswith("error: data.inputs: largest magnitude") and "divide" in line and "scaled.npz" in line


def test_targets_alone_out_of_range_are_named(good):
    x, y = _planted(np.random.default_rng(3))
    path = good / "tiny_targets.npz"
    np.savez(path, inputs=x, targets=y * 1e-300)  # the risk would underflow to 0 at any point
    line = one_error_line(invoke("run", _config(good, f'path = "{path}"')))
    assert line.startswith("error: data.targets: largest magnitude")


def test_data_at_the_edges_of_the_range_give_the_verdict_of_unit_data(good):
    """Rescaling by a constant changes no verdict: the data condition is the same at 1e±50 as at 1."""
    x, y = _planted(np.random.default_rng(4))
    reports = []
    top = max(np.max(np.abs(x)), np.max(np.abs(y)))
    for scale in (1.0, DATA_SCALE_RANGE[1] / top, DATA_SCALE_RANGE[0] / min(np.max(np.abs(x)), np.max(np.abs(y)))):
        path = good / f"s{scale:g}.npz"
        np.savez(path, inputs=x * scale, targets=y * scale)
        res = invoke("check-data", _config(good, f'path = "{path}"'), "--json")
        assert res.exit_code == 0, res.stderr
        reports.append(json.loads(res.stdout)["data"]["condition"])
    for r in reports[1:]:
        assert r["satisfied"] is True and r["rank"] == reports[0]["rank"] == 3
        # σ_min/σ_max is scale-free; compare with numpy's SVD of the patch matrix built by hand (the oracle)
        assert r["condition_number"] == pytest.approx(reports[0]["condition_number"], rel=1e-8)
    patches = np.stack([x[:, t:t + 10] for t in range(3)], axis=-1).reshape(-1, 3)
    sv = np.linalg.svd(patches, compute_uv=False)
    assert reports[0]["condition_number"] == pytest.approx(sv[0] / sv[-1], rel=1e-8)


def test_data_scale_range_is_a_documented_float64_bound():
    lo, hi = DATA_SCALE_RANGE
    # squares of the largest values summed over 10^9 entries stay finite; squares of the smallest stay normal
    assert np.isfinite(hi * hi * 1e9) and lo * lo > np.finfo(np.float64).tiny


@pytest.mark.parametrize("key, value", [("delta", 1e-200), ("delta", 1e200)])
def test_pseudo_huber_scale_outside_the_range_is_refused(key, value):
    res = invoke("run", "--set", "loss.name=pseudo_huber", "--set", f"loss.{key}={value!r}")
    line = one_error_line(res)
    assert line.startswith(f"error: loss.{key}: must be between") and repr(value) in line
    with pytest.raises(ValueError, match=f"loss.{key}: must be between"):
        lf.get_loss("pseudo_huber", **{key: value})
    with pytest.raises(ValueError, match=r"loss\.alpha: must be between"):
        lf.get_loss("generalized_huber", alpha=value)


@pytest.mark.parametrize("delta", [SCALE_PARAMETER_RANGE[0], 1e-60, SCALE_PARAMETER_RANGE[1]])
def test_pseudo_huber_at_the_edges_of_its_range_matches_mpmath(delta):
    """ℓ = δ²(√(1+(r/δ)²) − 1), ℓ' = r/√(1+(r/δ)²), ℓ'' = (1+(r/δ)²)^(−3/2), in 1000-digit arithmetic."""
    loss = lf.get_loss("pseudo_huber", delta=delta)
    r = np.array([0.0, 1e-120, -3e-100, 1e-30, -2.5, 7.0, 1e80])
    mpmath.mp.dps = 1000  # the defining formula cancels to (r/δ)² ~ 1e-440: work with enough digits
    d = mpmath.mpf(delta)
    for fn, exact in ((loss.value, lambda t: d**2 * (mpmath.sqrt(1 + (t / d) ** 2) - 1)),
                      (loss.derivative, lambda t: t / mpmath.sqrt(1 + (t / d) ** 2)),
                      (loss.second_derivative, lambda t: (1 + (t / d) ** 2) ** mpmath.mpf(-1.5))):
        got = fn(r)
        want = np.array([float(exact(mpmath.mpf(float(t)))) for t in r])
        assert np.all(np.isfinite(got))
        # a few ulps relative, or absolutely negligible next to the smallest normal float64
        assert np.allclose(got, want, rtol=1e-13, atol=1e-300), (fn, got, want)


# ---------------------------------------------------------------------------------------------------- item 11: Dataset
@pytest.mark.parametrize("inputs, words", [
    (np.ones((3, 12)) + 1j, "complex"),
    ([["1.5"] * 12] * 3, "real numeric array"),
    (None, "real numeric array"),
    ([[object()] * 12] * 3, "real numeric array"),
])
def test_dataset_refuses_what_it_would_silently_convert(inputs, words):
    with pytest.raises(ValueError, match=f"data.inputs: .*{words}"):
        lf.Dataset(inputs, np.ones((3, 10)))
    with pytest.raises(ValueError, match=f"data.targets: .*{words}"):
        lf.Dataset(np.ones((3, 12)), inputs)


def test_dataset_keeps_integer_and_bool_data_exactly():
    x = np.arange(36).reshape(3, 12)
    ds = lf.Dataset(x, x[:, :10] > 5)
    assert ds.inputs.dtype == np.float64 and np.array_equal(ds.inputs, x)
    assert np.array_equal(ds.targets, (x[:, :10] > 5).astype(float))


def test_generated_data_out_of_range_point_at_the_generator_settings():
    res = invoke("run", "--set", "data.source=planted", "--set", "data.noise_std=1e300")
    line = one_error_line(res)
    assert line.startswith("error: data.targets: largest magnitude") and "noise_std" in line and "divide" not in line


@pytest.mark.parametrize("ks, loss", [([3, 3, 2], "square"), ([2, 2, 2, 2, 2], "square"), ([3, 3], "pseudo_huber")])
def test_flow_verdicts_are_those_of_unit_data_at_the_edges_of_the_range(ks, loss):
    """X → cX, Y → cY (and δ → cδ) maps the flow onto itself, time-rescaled: the same limit filter, the same kind,
    and the loss times c², for c at both ends of DATA_SCALE_RANGE."""
    rng = np.random.default_rng(1)
    arch = lf.Architecture(20, ks)
    x, y = rng.standard_normal((60, 20)), rng.standard_normal((60, arch.output_size))
    w0 = lf.random_init(arch, 0.5, 3)
    results = {}
    top, low = max(np.max(np.abs(x)), np.max(np.abs(y))), min(np.max(np.abs(x)), np.max(np.abs(y)))
    edges = (DATA_SCALE_RANGE[0] / low, DATA_SCALE_RANGE[1] / top)  # the largest magnitudes at the ends
    for c in (1.0, *edges):
        risk_loss = lf.get_loss("pseudo_huber", delta=0.5 * c) if loss == "pseudo_huber" else loss
        risk = lf.EmpiricalRisk(arch, risk_loss, lf.Dataset(x * c, y * c))
        results[c] = lf.gradient_flow(risk, w0)
    ref = results[1.0]
    assert ref.converged
    v_ref = np.ravel(ref.final_filter)
    for c in edges:
        r = results[c]
        assert r.converged and r.critical_point.kind == ref.critical_point.kind
        assert np.linalg.norm(np.ravel(r.final_filter) - v_ref) <= 1e-8 * np.linalg.norm(v_ref)
        assert r.loss / c**2 == pytest.approx(ref.loss, rel=1e-8)


def test_data_just_outside_the_range_is_refused_naming_the_array():
    x = np.random.default_rng(0).standard_normal((20, 12))
    for c in (1e60, 1e-60):
        with pytest.raises(ValueError, match=r"^data\.inputs:"):
            lf.Dataset(x * c, x[:, :10])
        with pytest.raises(ValueError, match=r"^data\.targets:"):
            lf.Dataset(x, x[:, :10] * c)
