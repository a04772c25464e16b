"""Inputs a user can get wrong end in a ValueError/TypeError naming the parameter (API) or exit 2 with one line
naming the field (command line) — never an internal error, never a silent misreading.

Oracles: the same input written correctly (a config without its BOM, a file named .npz instead of .NPZ) gives the
same result; counts of recorded points against the limit asked for; the gradient at a point against its scale.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

import lcnflow
from lcnflow import Architecture, Dataset, EmpiricalRisk
from lcnflow.cli import app
from lcnflow.experiments import load_config
from lcnflow.sweep import SweepError, expand, load_sweep
from sweep_helpers import tiny_sweep

runner = CliRunner()



def _risk(arch: Architecture, seed: int = 0) -> EmpiricalRisk:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, arch.input_size))
    return EmpiricalRisk(arch, "square", Dataset(X, rng.standard_normal((40, arch.output_size))))


def test_random_init_names_a_wrong_arch():
    with pytest.raises(TypeError, match=r"^arch: expected an lcnflow\.Architecture, got str"):
        lcnflow.random_init("arch")
    with pytest.raises(TypeError, match=r"^arch:"):
        lcnflow.random_init([2, 2], 0.5, 1)


def test_boolean_or_complex_filters_are_refused_naming_the_layer():
    arch = Architecture(10, [2, 2])
    with pytest.raises(ValueError, match=r"^filters\[1\] \(layer 2\): boolean coefficients"):
        lcnflow.as_filters(arch, [np.array([0.5, 1.0]), np.array([True, False])])
    with pytest.raises(ValueError, match=r"^filters: boolean coefficients"):
        lcnflow.as_filters(arch, np.array([True, False, True, True]))
    with pytest.raises(ValueError, match=r"^filters\[0\] \(layer 1\): complex coefficients"):
        lcnflow.as_filters(arch, [np.array([0.5 + 1j, 1.0]), np.array([1.0, 2.0])])
    with pytest.raises(ValueError, match=r"^init\[0\] \(layer 1\): boolean"):
        lcnflow.gradient_flow(_risk(arch), [[True, False], [1.0, 2.0]])
    # integers are numbers: accepted, as floats
    out = lcnflow.as_filters(arch, [np.array([1, 2]), [3, 4]])
    assert all(w.dtype == np.float64 for w in out) and out[1].tolist() == [3.0, 4.0]


def test_filters_as_torch_tensors_that_require_grad_are_read():
    torch = pytest.importorskip("torch")
    arch = Architecture(10, [2, 3])
    ws = [torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True),
          torch.tensor([1.0, 2.0, 0.25], dtype=torch.float64, requires_grad=True)]
    out = lcnflow.as_filters(arch, ws)
    assert [w.tolist() for w in out] == [[0.5, -1.0], [1.0, 2.0, 0.25]]


def test_from_torch_refuses_non_finite_weights_naming_the_layer():
    torch = pytest.importorskip("torch")
    arch = Architecture(10, [2, 3])
    net = lcnflow.to_torch(arch, lcnflow.random_init(arch, 0.5, 1))
    with torch.no_grad():
        net[1].weight[0, 0, 2] = float("nan")
    with pytest.raises(ValueError, match=r"^module\[1\] \(Conv1d\): 1 non-finite weight\(s\), first at index \(2,\)"):
        lcnflow.from_torch(net, 10)


def test_negative_seeds_are_refused_everywhere(tmp_path):
    arch = Architecture(10, [2, 2])
    with pytest.raises(ValueError, match=r"^seed:"):
        lcnflow.random_init(arch, 0.5, -1)
    with pytest.raises(ValueError, match=r"init\.seed"):
        load_config(None, {"init.seed": -1})
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(tiny_sweep(init_scale=None, grid="init.seed = [-1, 2]")), encoding="utf-8")
    with pytest.raises(ValueError, match=r"init\.seed"):
        expand(load_sweep(path))


@pytest.mark.parametrize("grid, key", [
    ("init.scale = [0.5, nan]", "grid.init.scale"),
    ("data.noise_std = [inf]", "grid.data.noise_std"),
    ("init.scale = {values = [-inf, 1.0]}", "grid.init.scale"),
    ("[[grid.cases]]\n    init.scale = nan", "grid.cases[0].init.scale"),
])
def test_nan_or_inf_in_a_grid_is_named(tmp_path, grid, key):
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(tiny_sweep(init_scale=None, grid=grid)), encoding="utf-8")
    with pytest.raises(SweepError, match=rf"^{key.replace('.', chr(92) + '.').replace('[', chr(92) + '[')}"):
        load_sweep(path)
    res = runner.invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"])
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}") and "finite" in lines[0]


@pytest.mark.parametrize("address", ["localhost", "tcp://localhost", ":8786", "host:99999"])
def test_a_scheduler_address_without_a_port_is_refused_before_anything_starts(tmp_path, address):
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(tiny_sweep(init_scale=None, grid="init.seed = [1, 2]")), encoding="utf-8")
    res = runner.invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out"), "--scheduler", address])
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --scheduler:") and "8786" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_config_or_sweep_file_with_a_utf8_bom_reads_as_without(tmp_path):
    text = textwrap.dedent("""\
        name = "bom"
        [architecture]
        input_size = 14
        filter_sizes = [3, 2]
        [init]
        seed = 4
    """)
    plain, bom = tmp_path / "plain.toml", tmp_path / "bom.toml"
    plain.write_text(text, encoding="utf-8")
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    a, b = load_config(plain), load_config(bom)
    assert a.model_dump() == {**b.model_dump(), "name": a.name} and b.init.seed == 4
    sweep_text = textwrap.dedent(tiny_sweep(init_scale=None, grid="init.seed = [1, 2]"))
    (tmp_path / "s1.toml").write_text(sweep_text, encoding="utf-8")
    (tmp_path / "s2.toml").write_bytes(b"\xef\xbb\xbf" + sweep_text.encode("utf-8"))
    p1, p2 = expand(load_sweep(tmp_path / "s1.toml")), expand(load_sweep(tmp_path / "s2.toml"))
    assert p1.fingerprint == p2.fingerprint and len(p2.runs) == 2


def test_data_file_suffixes_are_case_insensitive(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 12))
    np.savez(tmp_path / "lower.npz", inputs=x, targets=x[:, :10] - 0.5 * x[:, 1:11] + 0.25 * x[:, 2:12])
    (tmp_path / "UPPER.NPZ").write_bytes((tmp_path / "lower.npz").read_bytes())
    from lcnflow.experiments import prepare

    def data(name):
        cfg = load_config(None, {"architecture.input_size": 12, "architecture.filter_sizes": [2, 2],
                                 "data.source": "file", "data.path": str(tmp_path / name)})
        return prepare(cfg).risk.data

    a, b = data("lower.npz"), data("UPPER.NPZ")
    assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.targets, b.targets)


@pytest.mark.parametrize("max_record", [2, 3, 4, 7])
def test_max_record_bounds_the_recorded_points_and_keeps_the_ends(max_record):
    arch = Architecture(10, [2, 2])
    res = lcnflow.gradient_flow(_risk(arch), lcnflow.random_init(arch, 0.5, 1), max_record=max_record)
    assert 2 <= len(res.times) <= max_record
    assert res.times[0] == 0.0 and res.times[-1] == res.t_final
    assert len(res.losses) == len(res.gradient_norms) == len(res.trajectory) == len(res.times)


def test_a_point_that_is_not_critical_is_called_so():
    arch = Architecture(10, [2, 2])
    risk = _risk(arch)
    w = lcnflow.random_init(arch, 0.5, 1)
    g = float(np.linalg.norm(risk.gradient(lcnflow.flatten(w))))
    assert g > 1e-3  # far from critical
    cp = lcnflow.classify_critical_point(risk, w)
    assert cp.kind == "not_critical" and not cp.is_minimum
    assert cp.summary().startswith("not a critical point") and math.isclose(cp.gradient_norm, g, rel_tol=1e-12)
    # a certified limit is classified as before
    res = lcnflow.gradient_flow(risk, w)
    again = lcnflow.classify_critical_point(risk, res.limit)
    assert res.converged and again.kind == res.critical_point.kind != "not_critical"
    with pytest.raises(ValueError, match=r"^critical_rtol"):
        lcnflow.classify_critical_point(risk, w, critical_rtol=2.0)


def test_a_start_float64_cannot_tell_from_the_origin_is_refused_naming_init():
    arch = Architecture(20, [3, 3, 2])
    risk = _risk(arch)
    for scale in (1e-160, 1e-170, 1e-300):
        with pytest.raises(ValueError, match=r"^init: ‖w\(0\)‖ = .* cannot be told from the origin"):
            lcnflow.gradient_flow(risk, lcnflow.random_init(arch, scale, 3))
        with pytest.raises(ValueError, match=r"^init:"):
            lcnflow.gradient_descent(risk, lcnflow.random_init(arch, scale, 3), step_size=1e-3, max_steps=10)
    res = runner.invoke(app, ["run", "--set", "init.scale=1e-160", "--quiet"])
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: init.scale: ‖w(0)‖")
    # deep: the gradient underflows to 0 long before the layers do; that is not a critical start
    deep = Architecture(20, [2] * 6)
    with pytest.raises(ValueError, match="underflows to 0"):
        lcnflow.gradient_flow(_risk(deep), lcnflow.random_init(deep, 1e-70, 3))
    # the origin itself is a valid start: a critical point, and said to be one
    at_zero = lcnflow.gradient_flow(risk, [np.zeros(3), np.zeros(3), np.zeros(2)])
    assert at_zero.stop_reason == "stable_saddle" and "∇L(w(0)) = 0 exactly" in at_zero.message
    # and a small start that float64 represents runs as before
    assert lcnflow.gradient_flow(risk, lcnflow.random_init(arch, 1e-40, 3)).converged


def test_an_npy_header_that_claims_more_than_the_file_holds_is_refused_before_allocating(tmp_path):
    import io

    from numpy.lib import format as npformat

    buf = io.BytesIO()
    npformat.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**10, 12)})
    buf.write(np.zeros(240).tobytes())
    forged = tmp_path / "x.npy"
    forged.write_bytes(buf.getvalue())
    good = tmp_path / "y.npy"
    np.save(good, np.zeros((20, 10)))
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [architecture]
        input_size = 12
        filter_sizes = [2, 2]
        [data]
        source = "file"
        path = "{forged}"
        targets_path = "{good}"
    """), encoding="utf-8")
    res = runner.invoke(app, ["run", str(cfg), "--quiet"])
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data.path:") and "truncated or damaged" in lines[0]
    assert "(10000000000, 12)" in lines[0]


def test_a_memory_error_is_one_line_and_exit_2(monkeypatch):
    import lcnflow.experiments as experiments

    def no_memory(cfg):
        raise MemoryError("Unable to allocate 894. GiB for an array with shape (120000000000,)")

    monkeypatch.setattr(experiments, "prepare", no_memory)
    res = runner.invoke(app, ["run", "--quiet"])
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: out of memory: Unable to allocate 894. GiB")


@pytest.mark.parametrize("index", [False, True])
def test_a_csv_written_by_pandas_reads_back_its_numbers(tmp_path, index):
    """pandas writes unnamed columns under a header 0,1,…,n−1 (and, with its index, a first column 0,1,…)."""
    from lcnflow.experiments.readers import read_csv

    x = np.random.default_rng(0).standard_normal((6, 16))
    path = tmp_path / "signals.csv"
    # what pandas.DataFrame(x).to_csv(path, index=index) writes (pandas is not a dependency of lcnflow)
    header = ("," if index else "") + ",".join(str(j) for j in range(16))
    rows = [(f"{i}," if index else "") + ",".join(repr(float(v)) for v in row) for i, row in enumerate(x)]
    path.write_text("\n".join([header, *rows]) + "\n")
    out = read_csv(path, "data.path")
    np.testing.assert_allclose(out, x, rtol=1e-15)
    # a file of data whose first column happens to be numbered is kept whole when there is no such header
    plain = tmp_path / "plain.csv"
    np.savetxt(plain, np.column_stack([np.arange(6), x]), delimiter=",")
    assert read_csv(plain, "data.path").shape == (6, 17)


def test_inputs_of_the_wrong_kind_are_blamed_on_the_inputs(tmp_path):
    """Images (m, h, w) given to a 1D architecture: the inputs are wrong, not the targets."""
    x = np.random.default_rng(0).standard_normal((20, 4, 12))
    np.savez(tmp_path / "d.npz", inputs=x, targets=x[:, 0, :10])
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [architecture]
        input_size = 12
        filter_sizes = [2, 2]
        [data]
        source = "file"
        path = "{tmp_path / 'd.npz'}"
    """), encoding="utf-8")
    res = runner.invoke(app, ["run", str(cfg), "--quiet"])
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data.inputs: shape (20, 4, 12)") and "1D" in lines[0]
    # the API: (20, 4, 12) inputs with (20, 10) targets may be 4-channel signals, so the architecture decides; a
    # one-channel architecture refuses them, naming the channels
    with pytest.raises(ValueError, match=r"^data\.inputs: shape \(20, 4, 12\) has 4 channels.*architecture\.channels"):
        EmpiricalRisk(Architecture(12, [2, 2]), "square", Dataset(x, x[:, 0, :10]))


def test_a_grey_and_alpha_png_is_read_as_its_grey_channel(tmp_path):
    pytest.importorskip("skimage")
    from PIL import Image

    from lcnflow.experiments.readers import read_images

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(24, 32), dtype=np.uint8)
    alpha = rng.integers(0, 256, size=(24, 32), dtype=np.uint8)
    Image.fromarray(np.stack([grey, alpha], axis=-1), mode="LA").save(tmp_path / "la.png")
    Image.fromarray(grey, mode="L").save(tmp_path / "l.png")
    (la,), _ = read_images(tmp_path / "la.png")
    (l_only,), _ = read_images(tmp_path / "l.png")
    np.testing.assert_array_equal(la, grey / 255.0)
    np.testing.assert_array_equal(la, l_only)


def test_a_photograph_too_large_to_decode_is_refused_from_its_header(tmp_path, monkeypatch):
    pytest.importorskip("skimage")
    import skimage.io
    from PIL import Image

    from lcnflow.experiments import readers, sources

    Image.fromarray(np.zeros((600, 800), dtype=np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(readers, "available_memory", lambda: 2 * 2**20)  # 2 MiB left
    monkeypatch.setattr(skimage.io, "imread", lambda *a, **k: pytest.fail("decoded before the size was checked"))
    with pytest.raises(sources.ConfigError, match=r"^data\.image: .*big\.png is 800×600 pixels .* more than the 2 MiB"):
        readers.read_images(tmp_path / "big.png")


def test_available_memory_respects_the_address_space_limit(monkeypatch):
    import resource

    from lcnflow.experiments import readers

    monkeypatch.setattr(resource, "getrlimit", lambda what: (3 * 2**30, resource.RLIM_INFINITY))
    have = readers.available_memory()
    assert have is not None and have <= 3 * 2**30
    monkeypatch.setattr(resource, "getrlimit", lambda what: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert readers._address_space_left() is None


@pytest.mark.parametrize("integrator", ["RK45", "DOP853"])
def test_an_explicit_integrator_out_of_steps_says_what_solves_it(integrator):
    arch = Architecture(10, [2, 2])
    risk = _risk(arch)
    res = lcnflow.gradient_flow(risk, lcnflow.random_init(arch, 0.5, 1), integrator=integrator, max_steps=20)
    assert res.stop_reason == "max_steps" and not res.converged
    assert f"{integrator} is an explicit method" in res.message and '"auto"' in res.message
    auto = lcnflow.gradient_flow(risk, lcnflow.random_init(arch, 0.5, 1))
    assert auto.converged and "explicit" not in auto.message
