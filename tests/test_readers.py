"""The user's own data: photographs for the ``image`` source, CSV and WAV signals for ``file``, and
docs/own-data.md run end to end on a small PNG made here.

Oracles: pixel arrays written by Pillow and tifffile (so the expected grays are the written numbers over the type's
range, and luminance by hand), patches found by brute-force search in the image and blurred with
``scipy.signal.correlate2d``, CSV text and WAV samples written here with hand-computed scaling, and centred targets
indexed by explicit loops.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
from scipy.io import wavfile

import lcnflow as lf
from lcnflow.experiments import ConfigError, config_from_dict, load_config, make_data
from lcnflow.experiments.readers import read_images, read_signals
from lcnflow.experiments.sources import gaussian_blur_filter

pytest.importorskip("skimage")
Image = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parent.parent
LUMA = np.array([0.2125, 0.7154, 0.0721])


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 pixels with structure at several scales (so the patches' H has full rank)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    f = 127 + 50 * np.sin(x / 3.1) * np.cos(y / 4.3) + 30 * (x > w // 2) + 20 * rng.standard_normal((h, w))
    return f.clip(0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------- images
def test_read_images_gray_rgb_rgba_and_16_bit(tmp_path):
    import tifffile

    gray = smooth_image(9, 11)
    rgb = np.stack([gray, 255 - gray, gray // 3], axis=-1)
    rgba = np.concatenate([rgb, np.full((9, 11, 1), 17, np.uint8)], axis=-1)
    deep = (gray.astype(np.uint16) * 257 + 3)
    Image.fromarray(gray).save(tmp_path / "a_gray.png")
    Image.fromarray(rgb).save(tmp_path / "b_rgb.png")
    Image.fromarray(rgba).save(tmp_path / "c_rgba.png")
    tifffile.imwrite(tmp_path / "d_deep.tif", deep)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    Image.fromarray(gray).save(tmp_path / "sub" / "ignored.png")
    images, names = read_images(tmp_path)
    assert names == ["a_gray.png", "b_rgb.png", "c_rgba.png", "d_deep.tif"]
    np.testing.assert_allclose(images[0], gray / 255.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(images[1], (rgb / 255.0) @ LUMA, rtol=0, atol=1e-12)
    np.testing.assert_allclose(images[2], (rgba[..., :3] / 255.0) @ LUMA, rtol=0, atol=1e-12)  # alpha dropped
    np.testing.assert_allclose(images[3], deep / 65535.0, rtol=0, atol=1e-15)
    # one file works too; JPEG is lossy: within a few grey levels
    Image.fromarray(gray).save(tmp_path / "e.jpg", quality=95)
    (jpeg,), _ = read_images(tmp_path / "e.jpg")
    assert np.max(np.abs(jpeg - gray / 255.0)) < 12 / 255


def test_read_images_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"data.image: file or folder not found"):
        read_images(tmp_path / "missing.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"data.image: the folder .* holds no png/jpg/jpeg/tif/tiff files"):
        read_images(tmp_path / "empty")
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(ConfigError, match=r"data.image: .*x.gif is not a photograph; expected a file ending in"):
        read_images(tmp_path / "x.gif")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ConfigError, match=r"data.image: cannot read .*broken.png as an image"):
        read_images(tmp_path / "broken.png")


def test_image_source_cuts_blurs_and_centres_patches_of_own_photo(tmp_path):
    img = smooth_image(20, 23)
    Image.fromarray(img).save(tmp_path / "p.png")
    clean_img = img / 255.0
    cfg = config_from_dict({}, {"data.source": "image", "data.image": str(tmp_path / "p.png"),
                                "data.num_patches": 6, "data.noise_std": 0.0, "data.blur_size": 3,
                                "architecture.input_size": [6, 7], "architecture.filter_sizes": [[2, 2], [2, 3]]})
    arch = lf.Architecture([6, 7], [[2, 2], [2, 3]])
    bundle = make_data(cfg.data, arch)
    X, Y = bundle.dataset.inputs, bundle.dataset.targets
    b = gaussian_blur_filter(3, 1.0)
    kernel = np.outer(b, b)
    size = (6 + 2, 7 + 2)
    for j in range(6):
        # brute force: where in the image is a patch whose blur is this input?
        hits = [(r, c) for r in range(20 - size[0] + 1) for c in range(23 - size[1] + 1)
                if np.allclose(scipy.signal.correlate2d(clean_img[r:r + size[0], c:c + size[1]], kernel, "valid"),
                               X[j], rtol=0, atol=1e-12)]
        assert hits, j
        r, c = hits[0]
        # the target: the clean pixel under each output's receptive-field centre (k_v = 3×4, blur offset 1)
        for a in range(Y.shape[1]):
            for bb in range(Y.shape[2]):
                assert Y[j, a, bb] == pytest.approx(clean_img[r + a + 1 + 1, c + bb + 1 + 1], abs=1e-15)
    assert bundle.details["images_used"] == ["p.png"] and "Own photographs (p.png" in bundle.description


def test_image_path_in_a_config_is_relative_to_it_and_too_small_photos_are_named(tmp_path):
    (tmp_path / "pics").mkdir()
    Image.fromarray(smooth_image(30, 30)).save(tmp_path / "pics" / "big.png")
    Image.fromarray(smooth_image(5, 5)).save(tmp_path / "pics" / "tiny.png")
    (tmp_path / "exp.toml").write_text('[architecture]\ninput_size = [8, 8]\nfilter_sizes = [[3, 3]]\n'
                                       '[data]\nsource = "image"\nimage = "pics"\nnum_patches = 5\n')
    cfg = load_config(tmp_path / "exp.toml")
    assert Path(cfg.data.image) == (tmp_path / "pics").resolve()
    bundle = make_data(cfg.data, lf.Architecture([8, 8], [[3, 3]]))
    assert bundle.details["images_used"] == ["big.png"]
    assert bundle.details["images_skipped_too_small"] == ["tiny.png"]
    with pytest.raises(ConfigError, match=r"architecture.input_size: patches of 44×44 pixels .* do not fit any "
                                          r"image of data.image \(big.png 30×30, tiny.png 5×5\)"):
        make_data(cfg.data.model_copy(), lf.Architecture([40, 40], [[3, 3]]))
    # bundled names keep working; an unknown bare word is refused with the choices
    assert config_from_dict({}, {"data.source": "image", "data.image": "coins",
                                 "architecture.input_size": [9, 9], "architecture.filter_sizes": [[3, 3]]})
    with pytest.raises(ConfigError, match=r"data.image: expected one of camera, .*got 'lena'"):
        config_from_dict({}, {"data.source": "image", "data.image": "lena"})


# ---------------------------------------------------------------------------------------------------- signals
ARCH_1D = lf.Architecture(10, [3, 2], [1, 2])  # k_v = 1 + 2 + 1·1 = 4, s_v = 2, d_N = 4


def test_csv_inputs_and_targets_as_given_or_centred(tmp_path, rng):
    X = np.round(rng.standard_normal((5, 10)), 6)
    T_out = np.round(rng.standard_normal((5, 4)), 6)
    T_sig = np.round(rng.standard_normal((5, 10)), 6)
    (tmp_path / "x.csv").write_text("t0,t1,t2,t3,t4,t5,t6,t7,t8,t9\n" + "\n".join(",".join(repr(float(v)) for v in row)
                                                                               for row in X) + "\n")
    (tmp_path / "y.csv").write_text("\n".join(",".join(str(v) for v in row) for row in T_out))
    (tmp_path / "s.csv").write_text("\n".join(",".join(str(v) for v in row) for row in T_sig))
    assert (ARCH_1D.final_filter_size, ARCH_1D.final_stride, ARCH_1D.output_size) == (4, 2, 4)
    got_x, got_y, text, _ = read_signals(tmp_path / "x.csv", tmp_path / "y.csv", ARCH_1D)
    np.testing.assert_array_equal(got_x, X)
    np.testing.assert_array_equal(got_y, T_out)
    assert "targets as given" in text
    _, got_c, text, _ = read_signals(tmp_path / "x.csv", tmp_path / "s.csv", ARCH_1D)
    want = np.array([[T_sig[j, a * 2 + (4 - 1) // 2] for a in range(4)] for j in range(5)])
    np.testing.assert_array_equal(got_c, want)
    assert "centre" in text
    # through a config: the file source, paths relative to the config file
    (tmp_path / "e.toml").write_text('[architecture]\ninput_size = 10\nfilter_sizes = [3, 2]\nstrides = [1, 2]\n'
                                     '[data]\nsource = "file"\npath = "x.csv"\ntargets_path = "y.csv"\n')
    bundle = make_data(load_config(tmp_path / "e.toml").data, ARCH_1D)
    np.testing.assert_array_equal(bundle.dataset.targets, T_out)


def test_csv_errors_name_the_field_and_sizes(tmp_path):
    (tmp_path / "x.csv").write_text("1,2,3\n4,5\n")
    (tmp_path / "w.csv").write_text(("1," * 8 + "1\n") * 2)
    (tmp_path / "ok.csv").write_text(("1," * 9 + "1\n") * 2)
    (tmp_path / "t3.csv").write_text("1,2,3\n1,2,3\n")
    (tmp_path / "t1.csv").write_text("1,2,3,4\n")
    (tmp_path / "bad.csv").write_text("1,2\nx,y\n")
    cases = [
        ("x.csv", "ok.csv", "data.path: .*x.csv has rows of different lengths \\[2, 3\\]"),
        ("w.csv", "ok.csv", "data.path: w.csv has rows of 9 values, but the input size d_0 is 10"),
        ("ok.csv", "t3.csv", "data.targets_path: t3.csv has rows of 3 values; expected d_N = 4 .* or d_0 = 10"),
        ("ok.csv", "t1.csv", "data.targets_path: t1.csv has 1 rows but ok.csv has 2"),
        ("bad.csv", "ok.csv", "data.path: .*bad.csv line 2 is not a row of comma-separated numbers"),
        ("ok.csv", "nope.csv", "data.targets_path: file not found"),
        ("ok.csv", "", "data.targets_path: required with a CSV data.path"),
    ]
    for x, y, message in cases:
        with pytest.raises(ConfigError, match=message):
            read_signals(tmp_path / x, tmp_path / y if y else "", ARCH_1D)
    with pytest.raises(ConfigError, match=r"data.path: CSV files hold 1D signals, but architecture.input_size is 2D"):
        read_signals(tmp_path / "ok.csv", tmp_path / "ok.csv", lf.Architecture([5, 5], [[2, 2]]))


def test_wav_windows_scaling_and_centred_targets(tmp_path, rng):
    n = 47  # 4 windows of 10, 7 samples left out
    noisy = (rng.standard_normal((n, 2)) * 8000).astype(np.int16)  # stereo: averaged
    clean = (rng.standard_normal(n) * 8000).astype(np.int16)
    wavfile.write(tmp_path / "noisy.wav", 8000, noisy)
    wavfile.write(tmp_path / "clean.wav", 8000, clean)
    X, Y, _, details = read_signals(tmp_path / "noisy.wav", tmp_path / "clean.wav", ARCH_1D)
    mono = noisy.astype(np.float64).mean(axis=1) / 32768.0
    np.testing.assert_allclose(X, mono[:40].reshape(4, 10), rtol=0, atol=1e-15)
    c = clean / 32768.0
    want = np.array([[c[10 * j + 2 * a + 1] for a in range(4)] for j in range(4)])
    np.testing.assert_allclose(Y, want, rtol=0, atol=1e-15)
    assert details["windows"] == 4 and details["samples_left_out"] == 7 and details["sample_rate"] == 8000
    wavfile.write(tmp_path / "short.wav", 8000, clean[:30])
    with pytest.raises(ConfigError, match=r"data.targets_path: short.wav \(30 samples at 8000 Hz\) must match"):
        read_signals(tmp_path / "noisy.wav", tmp_path / "short.wav", ARCH_1D)
    with pytest.raises(ConfigError, match=r"data.targets_path: expected a .wav file like data.path"):
        read_signals(tmp_path / "noisy.wav", tmp_path / "clean.csv", ARCH_1D)


# ---------------------------------------------------------------------------------------------------- the doc
def test_own_data_doc_deblurs_a_photo_end_to_end(tmp_path):
    """docs/own-data.md as written: its photo.toml next to a PNG made here, then its two commands."""
    doc = (ROOT / "docs" / "own-data.md").read_text(encoding="utf-8")
    toml = re.findall(r"```toml\n(.*?)```", doc, re.S)[0]
    commands = [ln.split("#")[0].strip() for ln in re.findall(r"```bash\n(.*?)```", doc, re.S)[0].splitlines()]
    assert commands == ["lcnflow check-data photo.toml", "lcnflow run photo.toml --out runs/photo"]
    (tmp_path / "photo.toml").write_text(toml, encoding="utf-8")
    y, x = np.mgrid[0:48, 0:64]
    img = (127 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0) + 40 * (x > 30)).clip(0, 255).astype(np.uint8)
    Image.fromarray(np.stack([img, img // 2 + 50, 255 - img], axis=-1)).save(tmp_path / "photo.png")  # colour
    env = {**os.environ, "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    lcnflow = [sys.executable, "-m", "lcnflow.cli"]
    check = subprocess.run([*lcnflow, *commands[0].split()[1:], "--json"], capture_output=True, text=True,
                           cwd=tmp_path, env=env, timeout=300)
    assert check.returncode == 0, check.stderr
    checked = json.loads(check.stdout)["data"]
    # 60 patches of 12×12 → 8×8 outputs through a 5×5 final filter: H is 3840 × 25 and has full column rank
    assert checked["num_samples"] == 60 and checked["condition"]["satisfied"] is True
    assert checked["condition"]["rank"] == 25
    run = subprocess.run([*lcnflow, *commands[1].split()[1:]], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "runs" / "photo"
    record = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert record["data"]["source"] == "image" and "Own photographs (photo.png" in record["data"]["description"]
    assert record["data"]["condition"]["satisfied"] is True
    assert record["verdict"]["converged"] is True
    assert (out / "report.html").is_file() and (out / "figures" / "examples.png").is_file()
