"""Data with channels from the user's files and the bundled images: colour photographs for the ``image`` source
(``architecture.channels`` ``c_0 = c_N = 3``), multichannel WAV and CSV recordings for ``file``, and one CLI run
on each.

Oracles: pixel arrays written here with Pillow (expected colours: the written numbers over 255), scikit-image's
``rgb2gray`` and ``img_as_float`` for the bundled images, patches located by brute-force search and blurred with
``scipy.signal.correlate2d`` per channel and mixed by a matrix written out here, WAV samples written with
``scipy.io.wavfile`` and CSV text written here, windows and centred targets indexed by explicit loops.
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


def colour_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB pixels ``(h, w, 3)`` with different structure in each channel."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    planes = [127 + 50 * np.sin(x / 3.1) * np.cos(y / 4.3) + 30 * (x > w // 2),
              127 + 60 * np.cos(x / 2.3 + y / 5.0),
              100 + 40 * (y > h // 3) + 30 * np.sin(y / 2.0)]
    f = np.stack(planes, axis=-1) + 20 * rng.standard_normal((h, w, 3))
    return f.clip(0, 255).astype(np.uint8)


def image_config(image: str, input_size, filter_sizes, channels, **data):
    over = {"data.source": "image", "data.image": image, "architecture.input_size": input_size,
            "architecture.filter_sizes": filter_sizes, "architecture.channels": channels}
    return config_from_dict({}, over | {f"data.{k}": v for k, v in data.items()})


def locate(clean: np.ndarray, block: np.ndarray) -> list[tuple[int, int]]:
    """Every position ``(r, c)`` where ``block`` (..., h, w) occurs in ``clean`` (..., H, W), to rounding."""
    h, w = block.shape[-2:]
    win = np.lib.stride_tricks.sliding_window_view(clean, (h, w), axis=(-2, -1))  # (..., R, C, h, w)
    diff = np.abs(win - block[..., None, None, :, :]).max(axis=(-2, -1))
    if diff.ndim == 3:
        diff = diff.max(axis=0)
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(diff <= 1e-12), strict=True)]


# ---------------------------------------------------------------------------------------------------- colour
def test_own_colour_photo_patches_blurred_per_channel_mixed_and_centred_in_colour(tmp_path):
    pixels = colour_image(19, 22)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    rgb = np.moveaxis(pixels, -1, 0) / 255.0  # (3, h, w)
    mix_a = 0.3
    cfg = image_config(str(tmp_path / "p.png"), [5, 6], [[2, 2], [2, 3]], [3, 2, 3], num_patches=6, noise_std=0.0,
                       blur_size=3, channel_mix=mix_a)
    arch = cfg.architecture.build()
    bundle = make_data(cfg.data, arch)
    X, Y = bundle.dataset.inputs, bundle.dataset.targets
    assert X.shape == (6, 3, 5, 6) and Y.shape == (6, 3, 3, 3)  # k_v = 3×4: d_N = (5 − 3 + 1, 6 − 4 + 1)
    kernel = np.outer(*(2 * [gaussian_blur_filter(3, 1.0)]))
    mix = np.array([[1 - mix_a + mix_a / 3, mix_a / 3, mix_a / 3],
                    [mix_a / 3, 1 - mix_a + mix_a / 3, mix_a / 3],
                    [mix_a / 3, mix_a / 3, 1 - mix_a + mix_a / 3]])
    for j in range(6):
        # the target (clean pixels under the outputs' centres: offset (k_v − 1)//2 + blur offset 1 = 2, 2)
        hits = [(r - 2, c - 2) for r, c in locate(rgb, Y[j])]
        assert hits, j
        found = False
        for r, c in hits:
            if r < 0 or c < 0 or r + 7 > 19 or c + 8 > 22:
                continue
            blurred = np.stack([scipy.signal.correlate2d(rgb[ch, r:r + 7, c:c + 8], kernel, "valid")
                                for ch in range(3)])
            want = np.einsum("oc,chw->ohw", mix, blurred)
            found |= np.allclose(want, X[j], rtol=0, atol=1e-12)
        assert found, j
    assert "RGB" in bundle.description and "channel_mix = 0.3" in bundle.description
    assert bundle.details["images_used"] == ["p.png"] and bundle.details["channel_mix"] == 0.3


def test_bundled_colour_image_in_colour_and_as_luminance():
    import skimage.color
    import skimage.data
    from skimage.util import img_as_float

    rgb = np.moveaxis(img_as_float(skimage.data.chelsea()), -1, 0)
    cfg = image_config("chelsea", [6, 6], [[1, 1], [3, 3]], [3, 3, 3], num_patches=4, noise_std=0.0, blur_size=3)
    bundle = make_data(cfg.data, cfg.architecture.build())
    X, Y = bundle.dataset.inputs, bundle.dataset.targets
    assert X.shape == (4, 3, 6, 6) and Y.shape == (4, 3, 4, 4)
    kernel = np.outer(*(2 * [gaussian_blur_filter(3, 1.0)]))
    for j in range(4):
        (r, c), *_ = [(r - 2, c - 2) for r, c in locate(rgb, Y[j])]
        want = np.stack([scipy.signal.correlate2d(rgb[ch, r:r + 8, c:c + 8], kernel, "valid") for ch in range(3)])
        np.testing.assert_allclose(X[j], want, rtol=0, atol=1e-12)  # no mixing by default
    # with one channel the same image is its luminance
    gray = skimage.color.rgb2gray(skimage.data.chelsea())
    cfg1 = image_config("chelsea", [6, 6], [[1, 1], [3, 3]], [1, 1, 1], num_patches=4, noise_std=0.0, blur_size=3)
    Y1 = make_data(cfg1.data, cfg1.architecture.build()).dataset.targets
    assert Y1.shape == (4, 4, 4)
    for j in range(4):
        assert locate(gray, Y1[j]), j


def test_colour_images_read_as_rgb_planes_and_grey_files_stay_grey(tmp_path):
    pixels = colour_image(9, 11)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    rgba = np.concatenate([pixels, np.full((9, 11, 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "b.png")
    g = pixels[..., 0]
    Image.fromarray(np.stack([g, g, g], axis=-1)).save(tmp_path / "c.png")  # RGB file without colour
    Image.fromarray(g).save(tmp_path / "d.png")
    images, names = read_images(tmp_path, colour=True)
    assert names == ["a.png", "b.png", "c.png", "d.png"]
    for im in images[:2]:  # alpha dropped
        assert im.shape == (3, 9, 11)
        np.testing.assert_array_equal(im, np.moveaxis(pixels, -1, 0) / 255.0)
    for im in images[2:]:
        assert im.shape == (9, 11)  # (the equal planes' luminance: the grey value, to rounding)
        np.testing.assert_allclose(im, g / 255.0, rtol=0, atol=1e-15)


def test_grey_images_with_three_channels_and_other_channel_counts_are_refused_or_skipped(tmp_path):
    with pytest.raises(ConfigError, match=r"data.image: 'camera' is a grayscale image, but architecture.channels "
                                          r"asks for 3 .*astronaut"):
        cfg = image_config("camera", [6, 6], [[3, 3]], [3, 3])
        make_data(cfg.data, cfg.architecture.build())
    Image.fromarray(colour_image(20, 20)[..., 1]).save(tmp_path / "grey.png")
    with pytest.raises(ConfigError, match=r"data.image: grey.png has no colour, but architecture.channels \[3, 3\] "
                                          r"asks for 3 \(RGB\) channels"):
        cfg = image_config(str(tmp_path / "grey.png"), [6, 6], [[3, 3]], [3, 3])
        make_data(cfg.data, cfg.architecture.build())
    Image.fromarray(colour_image(20, 20)).save(tmp_path / "colour.png")
    cfg = image_config(str(tmp_path), [6, 6], [[3, 3]], [3, 3], num_patches=5)
    bundle = make_data(cfg.data, cfg.architecture.build())
    assert bundle.details["images_used"] == ["colour.png"]
    assert bundle.details["images_skipped_grey"] == ["grey.png"]
    for channels in ([3, 1], [2, 2], [1, 3]):
        cfg = image_config("astronaut", [6, 6], [[3, 3]], channels)
        with pytest.raises(ConfigError, match=rf"architecture.channels: \[{channels[0]}, {channels[1]}\] has .*"
                                              r"c_0 = c_N = 1 \(grey\) or c_0 = c_N = 3 \(RGB colour\)"):
            make_data(cfg.data, cfg.architecture.build())
    with pytest.raises(ConfigError, match=r"data.channel_mix.*1"):
        image_config("astronaut", [6, 6], [[3, 3]], [3, 3], channel_mix=1.5)


def test_own_data_doc_colour_config_reads_the_photo_in_colour(tmp_path):
    """docs/own-data.md "In colour": its photo.toml next to a colour PNG gives RGB patches and colour targets."""
    doc = (ROOT / "docs" / "own-data.md").read_text(encoding="utf-8")
    toml = re.findall(r"```toml\n(.*?)```", doc, re.S)[1]
    assert "channels = [3, 3, 3]" in toml
    (tmp_path / "photo.toml").write_text(toml, encoding="utf-8")
    Image.fromarray(colour_image(40, 50)).save(tmp_path / "photo.png")
    cfg = load_config(tmp_path / "photo.toml")
    bundle = make_data(cfg.data, cfg.architecture.build())
    assert bundle.dataset.inputs.shape == (60, 3, 12, 12) and bundle.dataset.targets.shape == (60, 3, 10, 10)
    assert "RGB in [0, 1]" in bundle.description and "channel_mix = 0.2" in bundle.description


# ---------------------------------------------------------------------------------------------------- signals
ARCH = dict(input_size=10, filter_sizes=[3, 2], strides=[1, 2])  # k_v = 4, s_v = 2, d_N = 4: centres 2a + 1


def arch(channels) -> lf.Architecture:
    return lf.Architecture(ARCH["input_size"], ARCH["filter_sizes"], ARCH["strides"], channels=channels)


def expected_windows(rec: np.ndarray, d0: int = 10) -> np.ndarray:
    """(n, c) → (m, c, d0) by explicit loops."""
    m, c = rec.shape[0] // d0, rec.shape[1]
    out = np.empty((m, c, d0))
    for j in range(m):
        for ch in range(c):
            for t in range(d0):
                out[j, ch, t] = rec[j * d0 + t, ch]
    return out


def expected_centres(win: np.ndarray) -> np.ndarray:
    return np.array([[[w[ch, 2 * a + 1] for a in range(4)] for ch in range(w.shape[0])] for w in win])


def test_multichannel_wav_windows_per_channel_and_centred_targets(tmp_path, rng):
    n = 47
    noisy = (rng.standard_normal((n, 3)) * 8000).astype(np.int16)
    clean = (rng.standard_normal((n, 2)) * 8000).astype(np.int16)
    wavfile.write(tmp_path / "noisy.wav", 8000, noisy)
    wavfile.write(tmp_path / "clean.wav", 8000, clean)
    X, Y, description, details = read_signals(tmp_path / "noisy.wav", tmp_path / "clean.wav", arch([3, 4, 2]))
    np.testing.assert_array_equal(X, expected_windows(noisy / 32768.0))
    np.testing.assert_array_equal(Y, expected_centres(expected_windows(clean / 32768.0)))
    assert X.shape == (4, 3, 10) and Y.shape == (4, 2, 4)
    assert details["channels"] == [3, 2] and details["windows"] == 4 and details["samples_left_out"] == 7
    assert "3 input and 2 target channel(s)" in description
    # one target channel: the target recording is averaged to mono, as without channels
    wavfile.write(tmp_path / "stereo.wav", 8000, clean)
    _, Y1, _, _ = read_signals(tmp_path / "noisy.wav", tmp_path / "stereo.wav", arch([3, 1, 1]))
    mono = clean.mean(axis=1, keepdims=True) / 32768.0
    np.testing.assert_allclose(Y1, expected_centres(expected_windows(mono))[:, 0], rtol=0, atol=1e-15)
    with pytest.raises(ConfigError, match=r"^data.path: noisy.wav has 3 channel\(s\), but architecture.channels\[0\] "
                                          r"is 2; .*set architecture.channels\[0\] = 3$"):
        read_signals(tmp_path / "noisy.wav", tmp_path / "clean.wav", arch([2, 2, 2]))
    with pytest.raises(ConfigError, match=r"^data.targets_path: clean.wav has 2 channel\(s\), but "
                                          r"architecture.channels\[-1\] is 3"):
        read_signals(tmp_path / "noisy.wav", tmp_path / "clean.wav", arch([3, 3, 3]))
    wavfile.write(tmp_path / "mono.wav", 8000, clean[:, 0])
    with pytest.raises(ConfigError, match=r"data.path: mono.wav has 1 channel\(s\), but architecture.channels\[0\] "
                                          r"is 2"):
        read_signals(tmp_path / "mono.wav", tmp_path / "clean.wav", arch([2, 2, 2]))


def test_csv_recordings_one_column_per_channel(tmp_path, rng):
    n = 33
    x = rng.standard_normal((n, 2)).round(6)
    y = rng.standard_normal((n, 1)).round(6)
    (tmp_path / "x.csv").write_text("left,right\n" + "".join(f"{a},{b}\n" for a, b in x), encoding="utf-8")
    (tmp_path / "y.csv").write_text("".join(f"{a}\n" for (a,) in y), encoding="utf-8")
    X, Y, description, details = read_signals(tmp_path / "x.csv", tmp_path / "y.csv", arch([2, 2, 1]))
    np.testing.assert_array_equal(X, expected_windows(x))
    np.testing.assert_array_equal(Y, expected_centres(expected_windows(y))[:, 0])
    assert details["windows"] == 3 and details["samples_left_out"] == 3 and "one column per channel" in description
    (tmp_path / "y2.csv").write_text("".join(f"{a},{a}\n" for (a,) in y), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^data.targets_path: y2.csv has 2 column\(s\) \(one per channel\), but "
                                          r"architecture.channels\[-1\] is 1"):
        read_signals(tmp_path / "x.csv", tmp_path / "y2.csv", arch([2, 2, 1]))
    with pytest.raises(ConfigError, match=r"^data.path: x.csv has 2 column\(s\) .*architecture.channels\[0\] is 3"):
        read_signals(tmp_path / "x.csv", tmp_path / "y.csv", arch([3, 2, 1]))
    (tmp_path / "short.csv").write_text("".join(f"{a}\n" for (a,) in y[:20]), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"data.targets_path: short.csv has 20 rows \(time steps\) but x.csv has 33"):
        read_signals(tmp_path / "x.csv", tmp_path / "short.csv", arch([2, 2, 1]))


def test_file_source_gives_the_channel_arrays_to_the_dataset(tmp_path, rng):
    samples = rng.standard_normal((60, 2))
    wavfile.write(tmp_path / "in.wav", 8000, samples.astype(np.float32))
    wavfile.write(tmp_path / "out.wav", 8000, (0.5 * samples).astype(np.float32))
    cfg = config_from_dict({}, {"data.source": "file", "data.path": str(tmp_path / "in.wav"),
                                "data.targets_path": str(tmp_path / "out.wav"), "architecture.input_size": 10,
                                "architecture.filter_sizes": [3, 2], "architecture.strides": [1, 2],
                                "architecture.channels": [2, 3, 2]})
    bundle = make_data(cfg.data, cfg.architecture.build())
    want = expected_windows(samples.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(bundle.dataset.inputs, want)
    np.testing.assert_array_equal(bundle.dataset.targets, expected_centres(0.5 * want))
    assert bundle.description.startswith("File WAV in.wav (input) and out.wav (target), 8000 Hz (2 input")


# ---------------------------------------------------------------------------------------------------- the CLI
def run_cli(cwd: Path, toml: str) -> dict:
    (cwd / "exp.toml").write_text(toml, encoding="utf-8")
    env = {**os.environ, "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "lcnflow.cli", "run", "exp.toml", "--out", "out"],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((cwd / "out" / "result.json").read_text(encoding="utf-8"))


def test_cli_runs_a_colour_image(tmp_path):
    record = run_cli(tmp_path, '[architecture]\ninput_size = [6, 6]\nfilter_sizes = [[1, 1], [3, 3]]\n'
                               'channels = [3, 3, 3]\n[data]\nsource = "image"\nimage = "astronaut"\n'
                               'num_patches = 30\nblur_size = 3\nchannel_mix = 0.2\n')
    assert "Image 'astronaut' (scikit-image, 512×512 RGB pixels)" in record["data"]["description"]
    assert record["verdict"]["converged"] is True and record["verdict"]["certified"] is True


@pytest.mark.parametrize("kind", ["wav", "csv"])
def test_cli_runs_a_multichannel_recording(tmp_path, rng, kind):
    t = np.arange(400)
    clean = np.stack([np.sin(t / 7.0), np.cos(t / 11.0)], axis=1)
    noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    if kind == "wav":
        wavfile.write(tmp_path / "noisy.wav", 8000, noisy.astype(np.float32))
        wavfile.write(tmp_path / "clean.wav", 8000, clean.astype(np.float32))
    else:
        np.savetxt(tmp_path / "noisy.csv", noisy, delimiter=",", header="a,b", comments="")
        np.savetxt(tmp_path / "clean.csv", clean, delimiter=",")
    record = run_cli(tmp_path, f'[architecture]\ninput_size = 16\nfilter_sizes = [3, 3]\nchannels = [2, 2, 2]\n'
                               f'[data]\nsource = "file"\npath = "noisy.{kind}"\ntargets_path = "clean.{kind}"\n')
    assert "cut into 25 windows of 16 samples" in record["data"]["description"]
    assert record["verdict"]["converged"] is True and record["verdict"]["certified"] is True
