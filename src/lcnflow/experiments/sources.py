r"""Data sources of the ``[data]`` section: ``planted``, ``file``, ``mnist1d`` and ``image``.

Each source turns its config section and the architecture into a :class:`DataBundle`: the
:class:`~lcnflow.Dataset` plus a one-line description and JSON-ready facts (the planted truth, the blur filter, …)
that the report shows.  The two real sources are deblurring problems built the same way: a clean signal ``c``, a
centred Gaussian blur ``b`` with ``k_b`` taps, inputs

.. math:: x_i = \sum_j b_j\, c_{i+j} + ε_i, \qquad ε_i \sim N(0, σ^2)\ \text{(valid correlation: no boundary effects)},

and targets the clean signal at the sample the output's receptive field is centred on,
``y_a = c[a·s_v + (k_v − 1)//2 + (k_b − 1)//2]`` (per axis in 2D).  The network then has to learn a deblurring
filter of size ``k_v``.  Colour images (``image`` with ``architecture.channels`` ``c_0 = c_N = 3``) are blurred
and centred the same way in each of their R, G, B channels, then optionally mixed across channels
(``data.channel_mix``).
"""

from __future__ import annotations

import math
import random
import zipfile
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lcnflow.experiments import readers
from lcnflow.experiments.config import (
    COLOUR_IMAGE_NAMES,
    IMAGE_NAMES,
    ConfigError,
    FileData,
    ImageData,
    Mnist1dData,
    PlantedData,
    PopulationData,
)
from lcnflow.experiments.readers import available_memory, format_bytes
from lcnflow.model.architecture import Architecture, fmt
from lcnflow.model.conv import final_filter, patch_rows
from lcnflow.model.data import Dataset

__all__ = [
    "SOURCES",
    "DataBundle",
    "apply_final_filter",
    "available_memory",
    "data_memory_estimate",
    "gaussian_blur_filter",
    "make_data",
]


@dataclass
class DataBundle:
    """A data set and what a reader needs to know about it.

    Attributes
    ----------
    dataset : Dataset
    source : str
        The ``data.source`` that made it.
    description : str
        One or two sentences: what the samples are, how inputs and targets were made.
    details : dict
        JSON-ready facts (blur filter, planted filter, noise model, …).
    truth : ndarray or None
        The planted final filter ``v°`` (``planted`` source), for comparison with the learned one.
    """

    dataset: Dataset
    source: str
    description: str
    details: dict[str, Any] = field(default_factory=dict)
    truth: np.ndarray | None = None


def apply_final_filter(arch: Architecture, inputs: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Network output ``Π_{k_v, s_v}(v) x`` for each input, shape ``(m, *d_N)``: ``y_a = Σ_t v_t x_{a·s_v + t}``."""
    x = np.asarray(inputs, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64).reshape(arch.final_filter_shape)
    if arch.is_multichannel:  # inputs (m, c_0, *d_0) (or (m, *d_0) when c_0 = 1), outputs (m, c_N, *d_N)
        if x.ndim == arch.ndim + 1:
            x = x[:, None]
        out = np.tensordot(patch_rows(arch, x), v, axes=(list(range(arch.ndim + 1, 2 * arch.ndim + 2)),
                                                         list(range(1, arch.ndim + 2))))
        return np.moveaxis(out, -1, 1)
    return np.tensordot(patch_rows(arch, x), v, axes=arch.ndim)


def gaussian_blur_filter(size: int, sigma: float) -> np.ndarray:
    """Centred Gaussian ``b_j ∝ exp(−(j − (size−1)/2)²/(2σ²))``, ``j = 0 … size−1``, normalized to ``Σ b_j = 1``."""
    j = np.arange(size, dtype=np.float64) - (size - 1) / 2
    b = np.exp(-0.5 * (j / sigma) ** 2)
    return b / b.sum()


def _blur(clean: np.ndarray, b: np.ndarray, ndim: int) -> np.ndarray:
    """Valid correlation of each sample (each channel alike) with ``b`` along its last ``ndim`` axes (separable in
    2D)."""
    out = clean
    for axis in range(clean.ndim - ndim, clean.ndim):
        win = np.lib.stride_tricks.sliding_window_view(out, b.size, axis=axis)
        out = win @ b
    return out


def _centred_targets(arch: Architecture, clean: np.ndarray, blur_size: int) -> np.ndarray:
    """``y_a = c[a·s_v + (k_v − 1)//2 + (blur_size − 1)//2]`` per axis (the last axes; each channel alike)."""
    index = []
    sizes = arch.axes_final_filter_size
    for kv, sv, dn in zip(sizes, arch.cumulative_strides[-1], arch.axes_layer_sizes[-1],
                          strict=True):
        index.append(np.arange(dn) * sv + (kv - 1) // 2 + (blur_size - 1) // 2)
    if arch.ndim == 1:
        return clean[..., index[0]]
    return clean[..., index[0][:, None], index[1][None, :]]


# ---------------------------------------------------------------------------------------------------- planted
def _planted(cfg: PlantedData, arch: Architecture) -> DataBundle:
    rng = np.random.default_rng(cfg.seed)
    shape = (cfg.num_samples, *arch.axes_layer_sizes[0])
    if arch.channels[0] > 1:  # c_0 input channels, each drawn like a one-channel input
        shape = (cfg.num_samples, arch.channels[0], *arch.axes_layer_sizes[0])
    if cfg.inputs == "gaussian":
        X = rng.standard_normal(shape)
        input_text = "standard Gaussian"
    else:
        X = rng.standard_t(cfg.input_df, shape)
        input_text = f"Student-t (ν = {cfg.input_df:g})"
    if cfg.target == "lcn":
        layers = [rng.standard_normal(s) / math.sqrt(math.prod(s)) for s in arch.filter_shapes]
        truth = final_filter(arch, layers)
        truth_text = "a planted LCN v° = π(w°) (layers with variance 1/k_i)"
    else:
        layers = None
        truth = rng.standard_normal(arch.final_filter_shape) / math.sqrt(arch.final_filter_num_params)
        truth_text = "a planted final filter v° (variance 1/k_v, not necessarily in the function space)"
    clean = apply_final_filter(arch, X, truth)
    sigma = cfg.noise_std
    if cfg.noise == "gaussian":
        noise = sigma * rng.standard_normal(clean.shape)
        noise_text = f"N(0, {sigma:g}²) noise"
    elif cfg.noise == "laplace":
        noise = rng.laplace(0.0, sigma / math.sqrt(2.0), clean.shape)
        noise_text = f"Laplace noise (standard deviation {sigma:g})"
    elif cfg.noise == "student_t":
        noise = sigma * rng.standard_t(cfg.noise_df, clean.shape)
        noise_text = f"{sigma:g}·t_{cfg.noise_df:g} noise (heavy-tailed)"
    else:
        noise = sigma * rng.standard_normal(clean.shape)
        hit = rng.random(clean.shape) < cfg.outlier_fraction
        noise = noise + hit * rng.normal(0.0, cfg.outlier_scale, clean.shape)
        noise_text = (
            f"N(0, {sigma:g}²) noise plus gross outliers N(0, {cfg.outlier_scale:g}²) on "
            f"{int(hit.sum())} of {hit.size} target entries ({100 * hit.mean():.1f}%)"
        )
    Y = clean + noise
    description = (
        f"Planted: {cfg.num_samples} {input_text} inputs of size {fmt(arch.input_size)}; targets from {truth_text} "
        f"plus {noise_text}."
    )
    details: dict[str, Any] = {
        "planted_final_filter": truth.tolist(),
        "noise": cfg.noise,
        "noise_std": sigma,
    }
    if layers is not None:
        details["planted_layers"] = [w.tolist() for w in layers]
    return DataBundle(Dataset(X, Y), "planted", description, details, truth=truth)


# ---------------------------------------------------------------------------------------------------- file
#: What reading a damaged NumPy file can raise (truncated or foreign bytes, a broken zip member, pickled objects).
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError)


#: First bytes of the two NumPy formats: an ``.npz`` is a zip archive, an ``.npy`` starts with its magic string.
_MAGIC = {".npz": (b"PK\x03\x04", "a zip archive (numpy.savez)"), ".npy": (b"\x93NUMPY", "a NumPy .npy file")}


def _check_magic(path: Path, field: str, suffix: str) -> None:
    """Refuse a file whose first bytes are not those of the NumPy format its suffix names."""
    magic, what = _MAGIC[suffix]
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(magic))
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {path}: {exc.strerror or exc}") from None
    if head != magic:
        raise ConfigError(f"{field}: cannot read {path}: it is not {what} (its first bytes are not the format's "
                          "signature: a different kind of file, or damaged)")


def _why_unreadable(exc: BaseException) -> str:
    """A short reason for a NumPy file that cannot be read, in lcnflow's words."""
    text = str(exc)
    if "pickle" in text:
        return "it holds pickled Python objects (an object array); lcnflow reads numeric arrays only"
    if isinstance(exc, zipfile.BadZipFile | zlib.error | EOFError):
        return f"it is truncated or damaged ({type(exc).__name__}: {text or 'unexpected end of data'})"
    return f"it is not a valid NumPy file ({text or type(exc).__name__})"


def _check_file(path: Path, field: str, wanted: str) -> None:
    """Refuse a path that is missing, a directory, or empty, naming ``field``."""
    if path.is_dir():
        raise ConfigError(f"{field}: {path} is a directory, not a file (give {wanted})")
    if not path.is_file():
        raise ConfigError(f"{field}: file not found: {path} (give {wanted})")
    if path.stat().st_size == 0:
        raise ConfigError(f"{field}: {path} is empty (0 bytes); give {wanted}")


def _check_npy_header(path: Path, field: str) -> None:
    """Refuse an .npy whose header promises more data than the file holds (a damaged or forged header would make
    NumPy try to allocate all of it first)."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
            offset = fh.tell()
    except _READ_ERRORS as exc:
        raise ConfigError(f"{field}: cannot read {path} as a NumPy .npy array: {_why_unreadable(exc)}") from None
    if dtype.hasobject:
        return  # (refused with its own message when loaded)
    claimed = math.prod(shape) * dtype.itemsize
    held = path.stat().st_size - offset
    if claimed > held:
        raise ConfigError(f"{field}: {path} is truncated or damaged: its header describes an array of shape "
                          f"{tuple(shape)} ({claimed:,} bytes of {dtype}), the file holds {max(held, 0):,}")


def _load_npy(path: Path, field: str) -> np.ndarray:
    _check_magic(path, field, ".npy")
    _check_npy_header(path, field)
    try:
        return np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise ConfigError(f"{field}: cannot read {path} as a NumPy .npy array: {_why_unreadable(exc)}") from None


def _read_arrays(cfg: FileData) -> tuple[np.ndarray, np.ndarray, str]:
    path = Path(cfg.path).expanduser()
    wanted = "an .npz with inputs and targets, or an .npy of inputs with data.targets_path"
    _check_file(path, "data.path", wanted)
    if path.suffix.lower() == ".npz":
        _check_magic(path, "data.path", ".npz")
        try:
            archive = np.load(path, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise ConfigError(f"data.path: cannot read {path} as a NumPy .npz archive: {_why_unreadable(exc)}"
                              ) from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ConfigError(f"data.path: {path} is a single .npy array, not an .npz archive; rename it to .npy "
                              "and give data.targets_path, or save inputs and targets with numpy.savez")
        with archive:
            names = list(archive.files)
            arrays = []
            for key, what in ((cfg.inputs_key, "inputs_key"), (cfg.targets_key, "targets_key")):
                if key not in names:
                    raise ConfigError(
                        f"data.{what}: {path} has no array {key!r}; it has: {', '.join(names) or '(none)'}"
                    )
                try:
                    arrays.append(archive[key])
                except _READ_ERRORS as exc:
                    raise ConfigError(
                        f"data.{what}: cannot read the array {key!r} of {path}: {_why_unreadable(exc)}"
                    ) from None
        return arrays[0], arrays[1], f"{path.name}"
    if path.suffix.lower() == ".npy":
        if not cfg.targets_path:
            raise ConfigError(
                f"data.targets_path: required when data.path is an .npy file ({path}); give the .npy of targets"
            )
        tpath = Path(cfg.targets_path).expanduser()
        _check_file(tpath, "data.targets_path", "an .npy of targets")
        return _load_npy(path, "data.path"), _load_npy(tpath, "data.targets_path"), f"{path.name}, {tpath.name}"
    raise ConfigError(f"data.path: {path} must end in .npz or .npy, got {path.suffix or 'no suffix'!r}")


def _file(cfg: FileData, arch: Architecture) -> DataBundle:
    if Path(cfg.path).suffix.lower() in readers.SIGNAL_SUFFIXES:  # CSV / WAV signals: lcnflow.experiments.readers
        X, Y, description, details = readers.read_signals(cfg.path, cfg.targets_path, arch)
        return DataBundle(Dataset(X, Y), "file", f"File {description}.", details)
    X, Y, names = _read_arrays(cfg)
    for arr, what in ((X, "data.inputs"), (Y, "data.targets")):
        if arr.dtype.kind not in "biuf":
            raise ConfigError(f"{what}: must be a real numeric array, got dtype {arr.dtype} in {cfg.path}")
    # the inputs decide what the samples are: name them (with channels the architecture reads them)
    if not arch.is_multichannel and X.ndim in (2, 3) and X.ndim - 1 != arch.ndim:
        wanted = f"(m, {arch.input_size})" if arch.ndim == 1 else "(m, h, w)"
        raise ConfigError(f"data.inputs: shape {X.shape} in {names} holds {'signals' if X.ndim == 2 else 'images'}, "
                          f"but the architecture is {arch.ndim}D; give inputs of shape {wanted} (the targets follow "
                          "the inputs)")
    try:  # finiteness, scale, ranks and sample counts, with messages naming data.inputs/data.targets
        data = Dataset(X, Y)
    except ValueError as exc:
        raise ConfigError(f"{exc} (read from {names})") from None
    description = (
        f"File {names}: {data.num_samples} samples, inputs of size {fmt(X.shape[1:])}, targets of size "
        f"{fmt(Y.shape[1:])}."
    )
    return DataBundle(data, "file", description, {"path": str(cfg.path), "targets_path": cfg.targets_path})


# ---------------------------------------------------------------------------------------------------- mnist1d
@contextmanager
def _preserved_global_rng():
    """The ``mnist1d`` generator seeds NumPy's and Python's global generators; restore them afterwards."""
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002 (restoring the legacy state)
    try:
        yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


def mnist1d_signals(num_samples: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clean MNIST-1D signals and their digit labels, generated procedurally (no download).

    Parameters
    ----------
    num_samples : int
        Signals returned (generated in whole rounds of the 10 classes, then the first ``num_samples`` kept).
    length : int
        Samples per signal (the package resamples its templates to this length).
    seed : int
        Seed of the generator.

    Returns
    -------
    signals : ndarray, shape (num_samples, length)
        Normalized by the package to mean 0 and standard deviation 1 over the whole set.
    labels : ndarray of int, shape (num_samples,)
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise ConfigError(
            "data.source: 'mnist1d' needs the mnist1d package (a dependency of lcnflow): pip install mnist1d"
        ) from None
    args = get_dataset_args()
    args.num_samples = 10 * math.ceil(num_samples / 10)
    args.train_split = 1.0
    args.final_seq_length = length
    args.seed = seed
    with _preserved_global_rng():
        ds = make_dataset(args)
    return np.asarray(ds["x"][:num_samples], dtype=np.float64), np.asarray(ds["y"][:num_samples])


def _mnist1d(cfg: Mnist1dData, arch: Architecture) -> DataBundle:
    d0 = arch.axes_layer_sizes[0][0]
    length = d0 + cfg.blur_size - 1
    clean, labels = mnist1d_signals(cfg.num_samples, length, cfg.seed)
    b = gaussian_blur_filter(cfg.blur_size, cfg.blur_sigma)
    rng = np.random.default_rng(cfg.seed + 1)
    X = _blur(clean, b, 1) + cfg.noise_std * rng.standard_normal((cfg.num_samples, d0))
    Y = _centred_targets(arch, clean, cfg.blur_size)
    description = (
        f"MNIST-1D: {cfg.num_samples} signals (digits 0–9, generated by the mnist1d package, seed {cfg.seed}), "
        f"blurred by a {cfg.blur_size}-tap Gaussian (σ = {cfg.blur_sigma:g} sample spacings) plus "
        f"N(0, {cfg.noise_std:g}²) noise, length {d0}; targets: the clean signals at the {fmt(arch.output_size)} "
        "output positions."
    )
    details = {"blur_filter": b.tolist(), "clean_length": length, "labels": labels[:20].tolist()}
    return DataBundle(Dataset(X, Y), "mnist1d", description, details)


# ---------------------------------------------------------------------------------------------------- image
def load_image(name: str, colour: bool = False) -> np.ndarray:
    """A test image bundled with scikit-image, as float64 in ``[0, 1]``: ``(h, w)``, or ``(3, h, w)`` (R, G, B)
    with ``colour`` (a colour image: one of :data:`~lcnflow.experiments.config.COLOUR_IMAGE_NAMES`).

    A grey image is divided by its largest pixel; a colour image is scaled by the rules for photographs
    (:func:`~lcnflow.experiments.readers.to_rgb`, or :func:`~lcnflow.experiments.readers.to_gray` for its luminance).
    """
    try:
        import skimage.data
    except ImportError:
        raise ConfigError(
            "data.source: 'image' needs scikit-image, an optional extra: pip install \"lcnflow[images]\""
        ) from None
    if name in COLOUR_IMAGE_NAMES:
        pixels = getattr(skimage.data, name)()
        what = f"data.image ({name})"
        return readers.to_rgb(pixels, what) if colour else readers.to_gray(pixels, what)
    if colour:
        raise ConfigError(f"data.image: {name!r} is a grayscale image, but architecture.channels asks for 3 (RGB) "
                          f"channels; use a colour image ({', '.join(COLOUR_IMAGE_NAMES)}) or c_0 = c_N = 1")
    img = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)  # (every grey name is a 2D array)
    top = img.max()
    return img / top if top > 0 else img


#: Channel counts ``c_0 = c_N`` the ``image`` source gives: grey (1) and RGB colour (3).
IMAGE_CHANNELS = (1, 3)


def _image_channels(arch: Architecture) -> int:
    """``c_0`` of an ``image`` run: 1 (grey) or 3 (RGB), with ``c_N = c_0``; anything else is refused."""
    c0, cn = arch.channels[0], arch.channels[-1]
    if c0 != cn or c0 not in IMAGE_CHANNELS:
        raise ConfigError(f"architecture.channels: {list(arch.channels)} has {c0} input and {cn} output channel(s); "
                          "the image source (data.image) gives c_0 = c_N = 1 (grey) or c_0 = c_N = 3 (RGB colour)")
    return c0


def _degrade(cfg: ImageData, clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Inputs from clean patches ``(m, [3,] h, w)``: the separable Gaussian blur (each channel alike), the colour
    mixing ``(1 − α)·I + α·J/3`` (``α = channel_mix``, colour only), then ``N(0, noise_std²)``; and the blur."""
    b = gaussian_blur_filter(cfg.blur_size, cfg.blur_sigma)
    blurred = _blur(clean, b, 2)
    if clean.ndim == 4 and cfg.channel_mix > 0:
        c = clean.shape[1]
        mix = (1.0 - cfg.channel_mix) * np.eye(c) + cfg.channel_mix / c
        blurred = np.einsum("oc,mchw->mohw", mix, blurred)
    return blurred + cfg.noise_std * rng.standard_normal(blurred.shape), b


def _colour_text(cfg: ImageData, colour: bool) -> tuple[str, str]:
    """The words a description adds for colour data: after the blur, and for the targets."""
    if not colour:
        return "", ""
    mixed = (f", mixed across channels (channel_mix = {cfg.channel_mix:g})" if cfg.channel_mix > 0 else "")
    return f" in each RGB channel{mixed}", " in colour"


def _image(cfg: ImageData, arch: Architecture) -> DataBundle:
    d0 = arch.axes_layer_sizes[0]
    size = tuple(d + cfg.blur_size - 1 for d in d0)
    colour = _image_channels(arch) == 3
    if cfg.image not in IMAGE_NAMES:  # the user's own photographs: lcnflow.experiments.readers
        return _own_images(cfg, arch, size, colour)
    img = load_image(cfg.image, colour)
    hw = img.shape[-2:]
    if any(p > s for p, s in zip(size, hw, strict=True)):
        raise ConfigError(
            f"architecture.input_size: patches of {fmt(size)} pixels (input size {fmt(d0)} plus the blur's "
            f"{cfg.blur_size - 1}) do not fit the image {cfg.image!r} of {fmt(hw)} pixels"
        )
    rng = np.random.default_rng(cfg.seed)
    rows = rng.integers(0, hw[0] - size[0] + 1, cfg.num_patches)
    cols = rng.integers(0, hw[1] - size[1] + 1, cfg.num_patches)
    clean = np.stack([img[..., r : r + size[0], c : c + size[1]] for r, c in zip(rows, cols, strict=True)])
    X, b = _degrade(cfg, clean, rng)
    Y = _centred_targets(arch, clean, cfg.blur_size)
    blur_text, target_text = _colour_text(cfg, colour)
    description = (
        f"Image {cfg.image!r} (scikit-image, {fmt(hw)}{' RGB' if colour else ''} pixels): {cfg.num_patches} random "
        f"patches of {fmt(d0)}, blurred by a separable {cfg.blur_size}×{cfg.blur_size} Gaussian (σ = "
        f"{cfg.blur_sigma:g} pixels){blur_text} plus N(0, {cfg.noise_std:g}²) noise; targets: the clean patches"
        f"{target_text} at the {fmt(arch.output_size)} output pixels."
    )
    details: dict[str, Any] = {"blur_filter": np.outer(b, b).tolist(), "image": cfg.image,
                               "image_shape": list(img.shape)}
    if colour:
        details["channel_mix"] = cfg.channel_mix
    return DataBundle(Dataset(X, Y), "image", description, details)


def _own_images(cfg: ImageData, arch: Architecture, size: tuple[int, ...], colour: bool) -> DataBundle:
    """The ``image`` source on the user's photographs: patches from every image large enough, blurred and noised;
    with ``colour``, from the colour ones (grey ones are skipped and listed; if all are grey the run is refused)."""
    d0 = arch.axes_layer_sizes[0]
    images, names = readers.read_images(cfg.image, colour)
    grey = [i for i, img in enumerate(images) if colour and img.ndim == 2]
    if grey and len(grey) == len(images):
        listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ConfigError(f"data.image: {listed} {'has' if len(names) == 1 else 'have'} no colour, but "
                          f"architecture.channels {list(arch.channels)} asks for 3 (RGB) channels; give colour "
                          "photographs or set c_0 = c_N = 1")
    fits = [i for i, img in enumerate(images)
            if i not in grey and all(p <= s for p, s in zip(size, img.shape[-2:], strict=True))]
    if not fits:
        shapes = ", ".join(f"{n} {fmt(img.shape[-2:])}" for n, img in zip(names, images, strict=True))
        raise ConfigError(
            f"architecture.input_size: patches of {fmt(size)} pixels (input size {fmt(d0)} plus the blur's "
            f"{cfg.blur_size - 1}) do not fit any image of data.image ({shapes})"
        )
    rng = np.random.default_rng(cfg.seed)
    which = np.asarray(fits)[rng.integers(0, len(fits), cfg.num_patches)]
    clean = np.empty((cfg.num_patches, *((3,) if colour else ()), *size))
    for n, i in enumerate(which):
        img = images[i]
        r = rng.integers(0, img.shape[-2] - size[0] + 1)
        c = rng.integers(0, img.shape[-1] - size[1] + 1)
        clean[n] = img[..., r : r + size[0], c : c + size[1]]
    X, b = _degrade(cfg, clean, rng)
    Y = _centred_targets(arch, clean, cfg.blur_size)
    used = [names[i] for i in fits]
    listed = ", ".join(used[:5]) + (f" and {len(used) - 5} more" if len(used) > 5 else "")
    blur_text, target_text = _colour_text(cfg, colour)
    description = (
        f"Own photographs ({listed}; {'RGB' if colour else 'grayscale'} in [0, 1]): {cfg.num_patches} random patches "
        f"of {fmt(d0)}, blurred by a separable {cfg.blur_size}×{cfg.blur_size} Gaussian (σ = {cfg.blur_sigma:g} "
        f"pixels){blur_text} plus N(0, {cfg.noise_std:g}²) noise; targets: the clean patches{target_text} at the "
        f"{fmt(arch.output_size)} output pixels."
    )
    details: dict[str, Any] = {"blur_filter": np.outer(b, b).tolist(), "image": str(cfg.image), "images_used": used,
                               "images_skipped_too_small": [n for i, n in enumerate(names)
                                                            if i not in fits and i not in grey]}
    if colour:
        details["images_skipped_grey"] = [names[i] for i in grey]
        details["channel_mix"] = cfg.channel_mix
    return DataBundle(Dataset(X, Y), "image", description, details)


#: ``data.source`` → function ``(section config, architecture) -> DataBundle``.
SOURCES: dict[str, Callable[[Any, Architecture], DataBundle]] = {
    "planted": _planted,
    "file": _file,
    "mnist1d": _mnist1d,
    "image": _image,
}


#: Float64 arrays of the size of the data that a source holds at once (inputs, targets, noise, clean signals, and the
#: copy :class:`~lcnflow.Dataset` makes): the factor in :func:`data_memory_estimate`.  The ``mnist1d`` package
#: resamples and transforms its signals in several more arrays of the same size (measured: about 6).
WORKING_COPIES = 4
MNIST1D_WORKING_COPIES = 8


def data_memory_estimate(cfg: PlantedData | FileData | Mnist1dData | ImageData, arch: Architecture) -> int | None:
    """Bytes a source needs to build its data for ``arch``, before it allocates anything; ``None`` for files.

    ``8 · m · (c_0 Π d_0 + c_N Π d_N + c_0 Π c) · copies`` with ``m`` samples (or patches), ``c_0``/``c_N`` the
    input and output channels, ``c`` the clean signal or patch a deblurring source draws (``d_0`` plus the blur's
    ``blur_size − 1`` per axis), float64 entries, and ``copies`` :data:`WORKING_COPIES`
    (:data:`MNIST1D_WORKING_COPIES` for ``mnist1d``).
    """
    m = getattr(cfg, "num_samples", None) or getattr(cfg, "num_patches", None)
    if m is None:
        return None
    d0, dN = arch.axes_layer_sizes[0], arch.axes_layer_sizes[-1]
    extra = getattr(cfg, "blur_size", 1) - 1
    clean = math.prod(d + extra for d in d0)
    copies = MNIST1D_WORKING_COPIES if cfg.source == "mnist1d" else WORKING_COPIES
    c0, cn = arch.channels[0], arch.channels[-1]
    return 8 * int(m) * (c0 * math.prod(d0) + cn * math.prod(dN) + c0 * clean) * copies


def _check_memory(cfg: Any, arch: Architecture) -> None:
    need = data_memory_estimate(cfg, arch)
    have = available_memory()
    if need is None or have is None or need <= have:
        return
    m_key = "num_patches" if hasattr(cfg, "num_patches") else "num_samples"
    m = getattr(cfg, m_key)
    raise ConfigError(
        f"data.{m_key}: {m} samples of size {fmt(arch.input_size)} (architecture.input_size) would need about "
        f"{format_bytes(need)} of memory to build, more than the {format_bytes(have)} available; use fewer samples or "
        "a smaller input size"
    )


#: Sources that give data with several input or output channels (``planted``: ``c_0`` Gaussian or Student-t input
#: channels and a planted multichannel target; ``file``: arrays ``(m, c_0, *d_0)`` and ``(m, c_N, *d_N)``, CSV and
#: WAV recordings with one channel per column; ``image``: RGB colour, ``c_0 = c_N = 3``).
CHANNEL_SOURCES = ("planted", "file", "image")


def make_data(cfg: PlantedData | FileData | Mnist1dData | ImageData, arch: Architecture) -> DataBundle:
    """Build the data set a ``[data]`` section describes, for ``arch``.

    Parameters
    ----------
    cfg : PlantedData, FileData, Mnist1dData or ImageData
    arch : Architecture

    Returns
    -------
    DataBundle

    Raises
    ------
    ConfigError or ValueError
        A missing file or package, arrays that do not fit ``arch``, non-finite values; the message names the field.
    """
    _check_memory(cfg, arch)
    if (arch.channels[0] > 1 or arch.channels[-1] > 1) and cfg.source not in CHANNEL_SOURCES:
        raise ConfigError(
            f"data.source: {cfg.source!r} gives one-channel data, but architecture.channels {list(arch.channels)} has "
            f"{arch.channels[0]} input and {arch.channels[-1]} output channel(s); use one of {list(CHANNEL_SOURCES)} "
            "(or c_0 = c_N = 1 to vary only the hidden channels)")
    try:
        bundle = SOURCES[cfg.source](cfg, arch)
    except ConfigError:
        raise
    except ValueError as exc:
        if cfg.source == "file" or "largest magnitude" not in str(exc):
            raise
        raise ConfigError(  # generated data out of range: the user controls the generator, not the array
            f"{str(exc).split('; divide')[0]}; these data are generated from the [data] section (source "
            f"{cfg.source!r}): bring its scales (noise_std, outlier_scale, …) back into range"
        ) from None
    bundle.dataset.for_architecture(arch).check_architecture(arch)
    return bundle


# ---------------------------------------------------------------------------------------------------- population
def population_autocovariance(cfg: PopulationData, lags: int) -> np.ndarray:
    """``r(0), …, r(lags − 1)`` of the ``population`` source's inputs (``data.autocovariance`` checked)."""
    if cfg.covariance == "white":
        return np.eye(1, lags).ravel()
    if cfg.covariance == "ar1":
        return cfg.rho ** np.arange(lags, dtype=np.float64)
    r = np.asarray(cfg.autocovariance, dtype=np.float64)
    if r.size < lags:
        raise ConfigError(f"data.autocovariance: needs at least {lags} lags (the input size), got {r.size}")
    r = r[:lags]
    idx = np.abs(np.arange(lags)[:, None] - np.arange(lags)[None, :])
    if not np.all(np.isfinite(r)) or np.linalg.eigvalsh(r[idx])[0] <= 0:
        raise ConfigError("data.autocovariance: must be finite and positive definite (a stationary covariance), got "
                          f"{cfg.autocovariance}")
    return r


def _population(cfg: PopulationData, arch: Architecture) -> DataBundle:
    if arch.ndim != 1:
        raise ConfigError(f"data.source: 'population' is implemented for 1D architectures, got {arch.ndim}D")
    rng = np.random.default_rng(cfg.seed)
    d0 = arch.axes_layer_sizes[0][0]
    r = population_autocovariance(cfg, d0)
    idx = np.abs(np.arange(d0)[:, None] - np.arange(d0)[None, :])
    X = rng.standard_normal((cfg.num_samples, d0)) @ np.linalg.cholesky(r[idx]).T
    if cfg.teacher == "lcn":
        layers = [rng.standard_normal(s) / math.sqrt(math.prod(s)) for s in arch.filter_shapes]
        truth = final_filter(arch, layers)
    else:
        truth = rng.standard_normal(arch.final_filter_shape) / math.sqrt(arch.final_filter_num_params)
    clean = apply_final_filter(arch, X, truth)
    Y = clean + cfg.noise_std * rng.standard_normal(clean.shape)
    kind = {"white": "white", "ar1": f"AR(1) (ρ = {cfg.rho:g})", "given": "given-autocovariance"}[cfg.covariance]
    description = (
        f"Population: the exact square-loss risk of {kind} stationary Gaussian inputs of size {d0} and a teacher "
        f"{'network' if cfg.teacher == 'lcn' else 'final filter'} with N(0, {cfg.noise_std:g}²) target noise (no "
        f"sampling); {cfg.num_samples} representative samples are drawn for the figures."
    )
    details: dict[str, Any] = {"autocovariance": r[: arch.final_filter_num_params].tolist(),
                               "teacher_final_filter": truth.tolist(), "noise_std": cfg.noise_std,
                               "covariance": cfg.covariance}
    return DataBundle(Dataset(X, Y), "population", description, details, truth=truth)


SOURCES["population"] = _population

