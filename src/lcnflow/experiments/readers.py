r"""Readers for the user's own data: photographs for the ``image`` source, CSV and WAV signals for ``file``.

**Photographs** (:func:`read_images`): one PNG, JPEG or TIFF file, or a folder of them (not its subfolders), read
with scikit-image's ``io.imread``.  Each becomes a float64 image in ``[0, 1]``: integer pixels are divided by their
type's largest value, an alpha channel (also of a grey image) is dropped, and floating-point images are divided by
their maximum when it exceeds 1.  Read in grey (:func:`to_gray`), colour is reduced to luminance
``0.2125 R + 0.7154 G + 0.0721 B``; read in colour (:func:`to_rgb`, for ``architecture.channels`` ``c_0 = 3``), a
colour image becomes an ``(3, h, w)`` array of its R, G, B planes, and an image without colour — a grey one, or an RGB
file whose three planes are equal (:func:`is_colour`) — stays ``(h, w)``, for the caller to refuse or skip.

**Signals** (:func:`read_signals`), 1D only:

* CSV — with one input and one output channel (``c_0 = c_N = 1``), one signal per row, numbers separated by commas
  (a first line that is not numeric is a header and is skipped).  ``data.path`` holds the inputs,
  ``data.targets_path`` the targets, row ``j`` for input ``j``.  Where ``architecture.channels`` has ``c_0 > 1`` or
  ``c_N > 1``, a CSV is a *recording* like a WAV file: one row per time step, one column per channel (``c_0``
  columns in ``data.path``, ``c_N`` in ``data.targets_path``, the same number of rows), cut into windows as below.
* WAV — one recording; ``data.path`` is the input recording (e.g. noisy), ``data.targets_path`` the target one (e.g.
  clean), of the same length.  Samples are scaled to ``[−1, 1]`` (integer formats by their range).  For one
  channel (``c_0 = 1``, resp. ``c_N = 1`` for the targets) several channels are averaged to mono; for ``c > 1`` the
  file must have exactly ``c`` channels, kept apart.  The recording is cut into consecutive, non-overlapping
  windows of ``d_0`` samples: window ``j`` (all its channels) is input ``j`` (a trailing part shorter than ``d_0``
  is left out).

Targets of a signal come in one of two forms:

* rows of ``d_N`` values (the network's output size) are the targets as they are;
* rows of ``d_0`` values — a target signal aligned with its input (every WAV target) — give, for each output ``a``,
  the target signal at the sample the output's receptive field is centred on:
  ``y_a = t[a·s_v + (k_v − 1)//2]``, the convention of the built-in deblurring sources (per channel).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lcnflow.experiments.config import ConfigError
from lcnflow.model.architecture import Architecture

__all__ = ["IMAGE_SUFFIXES", "SIGNAL_SUFFIXES", "centred_targets", "is_colour", "read_csv", "read_images",
           "read_signals", "read_wav", "to_gray", "to_rgb", "windows"]

#: File endings read as photographs.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: File endings the ``file`` source reads with :func:`read_signals` (``.npz``/``.npy`` are read by the source itself).
SIGNAL_SUFFIXES = (".csv", ".wav")
#: Luminance weights of an RGB pixel (ITU-R BT.709 primaries).
LUMINANCE = np.array([0.2125, 0.7154, 0.0721])


# ---------------------------------------------------------------------------------------------------- images
def to_gray(img: np.ndarray, what: str = "image") -> np.ndarray:
    """A pixel array as a grayscale float64 image in ``[0, 1]`` (see the module docstring for the rules).

    Raises
    ------
    ConfigError
        Not a 2D image (or a 2D image with 1 or 2 channels: grey, grey + alpha; or 3 or 4: RGB, RGBA), or
        non-finite pixels.
    """
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] in (1, 2):  # grey, grey + alpha: the grey channel
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        scale = float(np.iinfo(a.dtype).max) if a.dtype.kind in "ui" else 1.0
        rgb = a[..., :3].astype(np.float64) / scale
        gray = rgb @ LUMINANCE
    elif a.ndim == 2:
        scale = float(np.iinfo(a.dtype).max) if a.dtype.kind in "ui" else 1.0
        gray = a.astype(np.float64) / scale
    else:
        raise ConfigError(f"{what}: expected a grayscale (with or without alpha) or RGB(A) image, got pixel array of "
                          f"shape {a.shape}")
    if not np.all(np.isfinite(gray)):
        raise ConfigError(f"{what}: contains NaN or infinite pixels")
    top = float(gray.max()) if gray.size else 0.0
    if a.dtype.kind == "f" and top > 1.0:
        gray = gray / top
    return gray


def is_colour(img: np.ndarray) -> bool:
    """Whether a pixel array ``(h, w, 3)`` or ``(h, w, 4)`` (RGB, RGBA) has colour: its R, G and B planes differ."""
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        return False
    return not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]))


def to_rgb(img: np.ndarray, what: str = "image") -> np.ndarray:
    """A colour pixel array ``(h, w, 3|4)`` as float64 R, G, B planes ``(3, h, w)`` in ``[0, 1]``.

    The scaling rules of :func:`to_gray`: integer pixels divided by their type's largest value, alpha dropped,
    floating-point pixels divided by their maximum (over the three planes) when it exceeds 1.

    Raises
    ------
    ConfigError
        Not an RGB(A) array, or non-finite pixels.
    """
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ConfigError(f"{what}: expected an RGB(A) colour image, got pixel array of shape {a.shape}")
    scale = float(np.iinfo(a.dtype).max) if a.dtype.kind in "ui" else 1.0
    rgb = np.moveaxis(a[..., :3].astype(np.float64) / scale, -1, 0)
    if not np.all(np.isfinite(rgb)):
        raise ConfigError(f"{what}: contains NaN or infinite pixels")
    top = float(rgb.max()) if rgb.size else 0.0
    if a.dtype.kind == "f" and top > 1.0:
        rgb = rgb / top
    return np.ascontiguousarray(rgb)


#: Float64 arrays of a photograph's size held at once while it is decoded and reduced to grey (the decoded
#: channels counted separately): the factor in :func:`_check_decoded_size`.
DECODE_COPIES = 3


def _check_decoded_size(f: Path) -> None:
    """Refuse a photograph whose decoded pixels would not fit in the memory available, from its header alone."""

    try:
        from PIL import Image

        with Image.open(f) as im:  # reads the header only
            width, height, bands = im.width, im.height, len(im.getbands())
    except Exception:  # (not readable by PIL: scikit-image's reader says why below)
        return
    need = 8 * width * height * (bands + DECODE_COPIES)
    have = available_memory()
    if have is not None and need > have:
        raise ConfigError(f"data.image: {f} is {width}×{height} pixels ({bands} channel(s)); decoding it needs about "
                          f"{format_bytes(need)} of memory, more than the {format_bytes(have)} available; use a "
                          "smaller image")


def read_images(path: str | Path, colour: bool = False) -> tuple[list[np.ndarray], list[str]]:
    """Read one photograph or every photograph of a folder as grayscale or colour images in ``[0, 1]``.

    Parameters
    ----------
    path : str or Path
        A ``.png``, ``.jpg``/``.jpeg`` or ``.tif``/``.tiff`` file, or a folder holding such files (read in name
        order; other files and subfolders are ignored).
    colour : bool, default False
        Read colour images as R, G, B planes (:func:`to_rgb`) instead of luminance (:func:`to_gray`).

    Returns
    -------
    images : list of ndarray
        Float64 arrays of shape ``(h, w)`` (grey), with ``colour`` those of colour images ``(3, h, w)``.
    names : list of str
        The file names, in the same order.

    Raises
    ------
    ConfigError
        A missing path, a folder without images, a file of another kind, a file scikit-image cannot read
        (``data.image`` is named in each message).
    """
    try:
        import skimage.io
    except ImportError:
        raise ConfigError(
            "data.image: reading photographs needs scikit-image, an optional extra: pip install \"lcnflow[images]\""
        ) from None
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"data.image: the folder {p} holds no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} files")
    elif p.is_file():
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise ConfigError(f"data.image: {p} is not a photograph; expected a file ending in "
                              f"{', '.join(IMAGE_SUFFIXES)} or a folder of them")
        files = [p]
    else:
        raise ConfigError(f"data.image: file or folder not found: {p}")
    images = []
    for f in files:
        _check_decoded_size(f)
        try:
            pixels = skimage.io.imread(f)
        except Exception as exc:  # imageio, PIL and tifffile raise many types on a bad file
            raise ConfigError(f"data.image: cannot read {f} as an image: {exc}") from None
        what = f"data.image ({f.name})"
        images.append(to_rgb(pixels, what) if colour and is_colour(pixels) else to_gray(pixels, what))
    return images, [f.name for f in files]


# ---------------------------------------------------------------------------------------------------- signals
def read_csv(path: str | Path, what: str) -> np.ndarray:
    """Rows of comma-separated numbers as a float64 array ``(rows, columns)``; a non-numeric first line is skipped.

    So is a first line of column numbers ``0,1,…,n−1`` — the header pandas writes for unnamed columns
    (``DataFrame.to_csv``) — and, when that header starts with an empty field (``,0,1,…``, pandas' index column),
    the first column of every row (the row numbers ``0,1,…``).

    Raises
    ------
    ConfigError
        Missing or unreadable file, ragged rows, text in a row after the first, no rows.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{what}: file not found: {p}")
    try:
        lines = [ln for ln in p.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what}: cannot read {p}: {exc}") from None
    rows = []
    index_column, first = False, 1
    if lines:
        fields = [f.strip() for f in lines[0].split(",")]
        index_column = len(fields) > 1 and fields[0] == ""
        names = fields[1:] if index_column else fields
        if names == [str(i) for i in range(len(names))]:  # pandas' header of unnamed columns
            lines, first = lines[1:], 2
    for number, line in enumerate(lines, start=first):
        try:
            rows.append([float(x) for x in line.split(",")])
        except ValueError:
            if number == 1 and not rows:
                continue  # a header
            raise ConfigError(f"{what}: {p} line {number} is not a row of comma-separated numbers: "
                              f"{line[:60]!r}") from None
    if not rows:
        raise ConfigError(f"{what}: {p} has no rows of numbers")
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise ConfigError(f"{what}: {p} has rows of different lengths {sorted(lengths)}; every signal (row) needs "
                          "the same number of values")
    out = np.asarray(rows, dtype=np.float64)
    if index_column and out.shape[1] > 1 and np.array_equal(out[:, 0], np.arange(out.shape[0])):
        out = out[:, 1:]  # pandas' index column: the row numbers, not data
    return out


def read_wav(path: str | Path, what: str, channels: int = 1, channels_field: str = "architecture.channels[0]"
             ) -> tuple[np.ndarray, int]:
    """A WAV recording as float64 samples in ``[−1, 1]``, and its sample rate.

    Integer formats are divided by their range (``uint8`` is centred at 128 first).

    Parameters
    ----------
    path : str or Path
    what : str
        The config field that names the file (in messages).
    channels : int, default 1
        1: several channels are averaged to mono, samples ``(n,)``.  ``c > 1``: the file must have ``c`` channels,
        samples ``(n, c)``.
    channels_field : str
        The config field that asks for ``channels`` (in messages).

    Raises
    ------
    ConfigError
        Missing file, a file ``scipy.io.wavfile`` cannot read, or (``channels > 1``) another number of channels.
    """
    from scipy.io import wavfile

    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{what}: file not found: {p}")
    try:
        rate, samples = wavfile.read(p)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what}: cannot read {p} as a WAV file: {exc}") from None
    a = np.asarray(samples)
    if a.dtype == np.uint8:
        x = (a.astype(np.float64) - 128.0) / 128.0
    elif a.dtype.kind == "i":
        x = a.astype(np.float64) / float(-np.iinfo(a.dtype).min)
    else:
        x = a.astype(np.float64)
    if channels > 1:
        have = 1 if x.ndim == 1 else x.shape[1]
        if have != channels:
            raise ConfigError(f"{what}: {p.name} has {have} channel(s), but {channels_field} is {channels}; give a "
                              f"recording with {channels} channels or set {channels_field} = {have}")
        x = x.reshape(x.shape[0], channels)
    elif x.ndim == 2:
        x = x.mean(axis=1)
    if not np.all(np.isfinite(x)):
        raise ConfigError(f"{what}: {p} contains NaN or infinite samples")
    return x, int(rate)


def centred_targets(arch: Architecture, signals: np.ndarray) -> np.ndarray:
    """``y_a = t[a·s_v + (k_v − 1)//2]``: each output's target is the signal at its receptive field's centre.

    Parameters
    ----------
    arch : Architecture
        1D.
    signals : ndarray, shape ``(m, d_0)`` or ``(m, c, d_0)``
        Target signals aligned with the inputs (each channel alike).

    Returns
    -------
    ndarray, shape ``(m, d_N)`` or ``(m, c, d_N)``
    """
    kv, sv, dn = arch.final_filter_size, arch.final_stride, arch.output_size
    index = np.arange(dn) * sv + (kv - 1) // 2
    return np.asarray(signals, dtype=np.float64)[..., index]


def windows(recording: np.ndarray, length: int) -> np.ndarray:
    """Consecutive, non-overlapping windows of a recording: ``(n,)`` → ``(m, length)``, ``(n, c)`` → ``(m, c,
    length)``, ``m = ⌊n / length⌋`` (a trailing part shorter than ``length`` is left out)."""
    m = recording.shape[0] // length
    cut = recording[: m * length]
    if recording.ndim == 1:
        return cut.reshape(m, length)
    return np.ascontiguousarray(cut.reshape(m, length, recording.shape[1]).transpose(0, 2, 1))


def _csv_recording(path: Path, what: str, channels: int, channels_field: str) -> np.ndarray:
    """A CSV recording (one row per time step, one column per channel) as samples ``(n,)`` (one channel) or
    ``(n, c)``; the number of columns must be ``channels``."""
    rec = read_csv(path, what)
    if rec.shape[1] != channels:
        raise ConfigError(f"{what}: {path.name} has {rec.shape[1]} column(s) (one per channel), but {channels_field} "
                          f"is {channels}; give one column per channel or set {channels_field} = {rec.shape[1]}")
    return rec[:, 0] if channels == 1 else rec


def read_signals(path: str | Path, targets_path: str | Path, arch: Architecture) -> tuple[np.ndarray, np.ndarray,
                                                                                          str, dict]:
    """Inputs ``(m, d_0)`` and targets ``(m, d_N)`` from CSV or WAV files (see the module docstring).

    With channels (``arch.channels`` ``c_0`` or ``c_N`` > 1) inputs are ``(m, c_0, d_0)`` and targets
    ``(m, c_N, d_N)`` (one channel: no channel axis), cut from recordings with one channel per WAV channel or CSV
    column.

    Parameters
    ----------
    path : str or Path
        Inputs: a ``.csv`` (one signal per row; a recording, one column per channel, with channels) or a ``.wav``
        (one recording, cut into windows of ``d_0``).
    targets_path : str or Path
        Targets, in the same format: rows of ``d_N`` values as they are, or signals of ``d_0`` values (every
        recording) reduced to the values at the outputs' centres.
    arch : Architecture
        A 1D architecture (its ``d_0``, ``d_N``, ``k_v``, ``s_v``, ``c_0``, ``c_N``).

    Returns
    -------
    inputs, targets : ndarray
    description : str
        The files and how the targets were read.
    details : dict
        JSON-ready facts (files, sample rate, windows, channels).

    Raises
    ------
    ConfigError
        A 2D architecture, a missing ``targets_path``, files that do not fit ``d_0``/``d_N``, mismatched sample
        counts, a channel count other than ``architecture.channels`` asks for; the message names ``data.path`` or
        ``data.targets_path`` and the sizes.
    """
    p, t = Path(path), Path(targets_path) if targets_path else None
    kind = p.suffix.lower()
    if arch.ndim != 1:
        raise ConfigError(f"data.path: {kind[1:].upper()} files hold 1D signals, but architecture.input_size is 2D "
                          f"{arch.input_size}; use an .npz of images or the image source")
    c0, cn = arch.channels[0], arch.channels[-1]
    recording = kind == ".wav" or c0 > 1 or cn > 1
    if t is None:
        raise ConfigError(f"data.targets_path: required with a {kind[1:].upper()} data.path ({p}); give the "
                          f"{kind} file of targets (one row per input for CSV, a recording as long as the input for "
                          f"{'a CSV recording or ' if recording and kind == '.csv' else ''}WAV)")
    if t.suffix.lower() != kind:
        raise ConfigError(f"data.targets_path: expected a {kind} file like data.path, got {t}")
    d0, dn = arch.input_size, arch.output_size
    details: dict = {"path": str(p), "targets_path": str(t)}
    fields = ("architecture.channels[0]", "architecture.channels[-1]")
    if not recording:
        X = read_csv(p, "data.path")
        T = read_csv(t, "data.targets_path")
        if X.shape[1] != d0:
            raise ConfigError(f"data.path: {p.name} has rows of {X.shape[1]} values, but the input size d_0 is {d0} "
                              f"(architecture.input_size)")
        if T.shape[0] != X.shape[0]:
            raise ConfigError(f"data.targets_path: {t.name} has {T.shape[0]} rows but {p.name} has {X.shape[0]}; "
                              "give one target row per input row")
        what = f"CSV {p.name} (inputs, one per row), {t.name} (targets)"
    else:
        if kind == ".wav":
            x, rate = read_wav(p, "data.path", c0, fields[0])
            y, trate = read_wav(t, "data.targets_path", cn, fields[1])
            if trate != rate or y.shape[0] != x.shape[0]:
                raise ConfigError(f"data.targets_path: {t.name} ({y.shape[0]} samples at {trate} Hz) must match "
                                  f"{p.name} ({x.shape[0]} samples at {rate} Hz)")
            details["sample_rate"] = rate
            source = f"WAV {p.name} (input) and {t.name} (target), {rate} Hz"
        else:
            x = _csv_recording(p, "data.path", c0, fields[0])
            y = _csv_recording(t, "data.targets_path", cn, fields[1])
            if y.shape[0] != x.shape[0]:
                raise ConfigError(f"data.targets_path: {t.name} has {y.shape[0]} rows (time steps) but {p.name} has "
                                  f"{x.shape[0]}; give recordings of the same length")
            source = f"CSV recordings {p.name} (input) and {t.name} (target), one column per channel"
        n = x.shape[0]
        m = n // d0
        if m == 0:
            raise ConfigError(f"data.path: {p.name} has {n} samples, fewer than one input window of d_0 = {d0}")
        X, T = windows(x, d0), windows(y, d0)
        details.update({"windows": m, "samples_left_out": int(n - m * d0)})
        if c0 > 1 or cn > 1:
            details["channels"] = [c0, cn]
        chans = f" ({c0} input and {cn} target channel(s))" if c0 > 1 or cn > 1 else ""
        what = f"{source}{chans}, cut into {m} windows of {d0} samples"
    if T.shape[-1] == dn:
        Y, how = T, "targets as given"
    elif T.shape[-1] == d0:
        Y, how = centred_targets(arch, T), "targets: the target signal at each output's centre"
    else:
        raise ConfigError(f"data.targets_path: {t.name} has rows of {T.shape[-1]} values; expected d_N = {dn} "
                          f"(the targets) or d_0 = {d0} (a target signal per input)")
    details["targets"] = how
    return X, Y, f"{what}; {how}", details


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation, or ``None``: ``MemAvailable`` on Linux (else physical
    memory), and at most what the process's address-space limit (``RLIMIT_AS``, where set) leaves."""
    have: int | None = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    have = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if have is None:
        try:
            have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            have = None
    left = _address_space_left()
    if left is not None:
        have = left if have is None else min(have, left)
    return have


def _address_space_left() -> int | None:
    """Bytes the address-space limit ``RLIMIT_AS`` still allows this process (``None`` when there is none)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError, AttributeError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = 0
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return max(int(soft) - used, 0)


def format_bytes(n: float) -> str:
    """A byte count as people read it: ``512 bytes``, ``3.2 MiB``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}" if unit != "bytes" else f"{int(n)} bytes"
        n /= 1024
    return f"{n:.3g} EiB"  # pragma: no cover
