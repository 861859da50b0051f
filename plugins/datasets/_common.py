"""What the image datasets share: reading local files (gzipped or not,
checked against a ``SHA256SUMS`` beside them, or inside a tar archive),
unpickling CIFAR's python batches safely, decoding JPEG and PNG files,
checking and scaling images, standardizing them per channel (the
``normalize`` parameter of every image dataset), holding out a test set,
and the ``path`` / ``holdout`` parameters with the logic that arranges
train and test sets from them and checks, with the scenario, that the
data is on this machine (a ``path`` that exists, or the standard loader's
cache: ``_download``).

Every failure is a `RunError` that names the file and says what was
expected.  Nothing here imports TensorFlow; a download does (``_download``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.interfaces import Dataset, DatasetArrays, DatasetInfo, Facts
from fedarena.core.plugin.params import param
from fedarena.plugins.datasets._download import Source


def holdout_split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, info: DatasetInfo) -> DatasetArrays:
    """Split one labelled array into train and test, reproducibly."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return DatasetArrays(
        train_x=x[train], train_y=y[train], test_x=x[test], test_y=y[test], info=info
    )


# --------------------------------------------------------------------------
# Reading local files.

_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(file: Path) -> bytes:
    """A file's contents, gunzipped when it is gzip (by its magic bytes,
    whatever its name)."""
    try:
        data = file.read_bytes()
        if data[:2] == _GZIP_MAGIC:
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise RunError(f"cannot read {file}: {error}") from error
    return data


def verify_checksum(file: Path) -> None:
    """If the file's folder has a ``SHA256SUMS`` listing it (``<hex>  <name>``
    lines, as ``sha256sum`` writes), the file must match it."""
    sums = file.parent / "SHA256SUMS"
    if not sums.is_file():
        return
    for line in sums.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == file.name:
            found = hashlib.sha256(file.read_bytes()).hexdigest()
            if found.lower() != parts[0].lower():
                raise RunError(
                    f"{file}: SHA-256 is {found}, but {sums} lists {parts[0]}; the file is corrupt or not the one expected"
                )
            return


def read_members(location: Path, names: tuple[str, ...], subfolder: str, archive: str,
                 dataset: str, expected: str) -> tuple[dict[str, tuple[str, bytes]], Path]:
    """The files ``names`` of a dataset shipped as a tar archive (CIFAR's
    python versions), found as loose files in ``location`` or in its
    ``subfolder``, or in the archive: ``location`` itself or ``archive``
    inside it.  Returns ``{name: (where, contents)}`` for those present (each
    loose file checked against a ``SHA256SUMS`` beside it) and where they
    were found; a RunError saying ``expected`` when there are none."""
    if location.is_file():
        return _tar_members(location, names, dataset, expected), location
    for folder in (location, location / subfolder):
        files = {name: folder / name for name in names if (folder / name).is_file()}
        if files:
            for file in files.values():
                verify_checksum(file)
            return {name: (str(file), read_bytes(file)) for name, file in files.items()}, folder
    if (location / archive).is_file():
        return _tar_members(location / archive, names, dataset, expected), location / archive
    raise RunError(f"{dataset}: no {dataset} files in {location}; {expected}")


def _tar_members(file: Path, names: tuple[str, ...], dataset: str, expected: str) -> dict[str, tuple[str, bytes]]:
    verify_checksum(file)
    found = {}
    try:
        with tarfile.open(file) as archive:
            for member in archive.getmembers():
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in names:
                    found[name] = (f"{file}:{member.name}", archive.extractfile(member).read())
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise RunError(f"{dataset}: cannot read {file} as a tar archive: {error}") from error
    if not found:
        raise RunError(f"{dataset}: {file} holds none of {', '.join(names)}; {expected}")
    return found


def find(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` present in ``folder``, as is or with ``.gz``."""
    for name in names:
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only: a dataset file must
    not be able to run code (``pickle.load`` would run any callable)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def unpickle_dict(data: bytes, where: str, name: str, keys: tuple[str, ...]) -> dict:
    """A pickled dict of plain values and NumPy arrays (CIFAR's python
    batches), read with an unpickler that cannot run code; its byte-string
    keys decoded.  ``name`` (the dataset) and ``where`` (the file) go into
    the messages; ``keys`` must be present."""
    try:
        loaded = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # any unpickling failure means a bad file
        raise RunError(f"{name}: cannot unpickle {where}: {type(error).__name__}: {error}") from error
    if not isinstance(loaded, dict):
        raise RunError(f"{name}: {where} holds a {type(loaded).__name__}, expected a dict with "
                       f"{' and '.join(keys)}")
    loaded = {k.decode() if isinstance(k, bytes) else k: v for k, v in loaded.items()}
    missing = [key for key in keys if key not in loaded]
    if missing:
        raise RunError(f"{name}: {where} has keys {sorted(map(str, loaded))}; expected {', '.join(map(repr, keys))}")
    return loaded


def cifar_images(batch: dict, where: str, name: str) -> np.ndarray:
    """The images of a CIFAR python batch: ``data`` rows of 3072 uint8, the
    1024 red, then green, then blue values of a row-major 32x32 image ->
    (N, 32, 32, 3)."""
    x = np.asarray(batch["data"])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise RunError(f"{name}: {where}: data of shape {x.shape} and type {x.dtype}; expected N x 3072 uint8")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def decode_images(files: list[Path], shape: tuple[int, int, int], dataset: str) -> np.ndarray:
    """JPEG or PNG files decoded to uint8 RGB images of ``shape`` (h, w, 3),
    grey or palette images converted to RGB, with Pillow (installed with
    matplotlib).  A file that is not an image, or of another size, is a
    RunError naming it."""
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(files), *shape), np.uint8)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise RunError(f"{dataset}: cannot decode {file} as an image: {error}") from error
        if pixels.shape != tuple(shape):
            raise RunError(f"{dataset}: {file} is {pixels.shape[1]}x{pixels.shape[0]} pixels, expected "
                           f"{shape[1]}x{shape[0]}")
        out[i] = pixels
    return out


# --------------------------------------------------------------------------
# Checking and scaling images.


class Sets(dict):
    """The labelled sets found at a path: ``{"train": (x, y), "test": (x, y)}``."""


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels scaled to float32 in [0, 1]."""
    return (np.asarray(images, np.float32) / np.float32(255.0))


def checked(where: str, x: np.ndarray, y: np.ndarray, image_shape, num_classes: int):
    """Images and labels checked (uint8 pixels of ``image_shape``, one label
    in 0 .. num_classes - 1 per image), with a channel axis added to grey
    images, then scaled: (float32 images, int32 labels)."""
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    if x.dtype != np.uint8:
        raise RunError(f"{where}: images of type {x.dtype}, expected uint8 pixels")
    if x.ndim == len(image_shape) and image_shape[-1] == 1:  # (N, h, w) -> (N, h, w, 1)
        x = x[..., None]
    if tuple(x.shape[1:]) != tuple(image_shape):
        raise RunError(f"{where}: images of shape {tuple(x.shape[1:])}, expected {tuple(image_shape)}")
    if len(x) != len(y):
        raise RunError(f"{where}: {len(x)} images but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise RunError(f"{where}: labels range over {y.min()}..{y.max()}, expected 0..{num_classes - 1}")
    return to_float(x), y.astype(np.int32)


# --------------------------------------------------------------------------
# Standardization: the ``normalize`` parameter.

NORMALIZE = ("none", "standard")


@attrs.frozen
class ChannelStats:
    """A dataset's per-channel mean and standard deviation of its pixels
    scaled to [0, 1], and where the numbers come from (for the docs)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str


def normalize_param():
    """The ``normalize`` parameter every image dataset declares."""
    return param(
        "none", choices=NORMALIZE,
        doc='"none": inputs as described (pixels in [0, 1]); "standard": minus the per-channel mean, divided '
            "by the per-channel standard deviation of the training set, the same numbers for train and test "
            "(docs/data.md lists them); a trigger's value is then in that standardized space",
    )


def channel_stats(x: np.ndarray, rows: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (last axis) mean and population standard deviation of
    ``x``, in float64, in two passes over ``rows`` pixels at a time (no
    float64 copy of a gigabyte training set)."""
    channels = x.shape[-1]
    flat = x.reshape(-1, channels)
    total = np.zeros(channels)
    for start in range(0, len(flat), rows):
        total += flat[start : start + rows].sum(axis=0, dtype=np.float64)
    mean = total / max(len(flat), 1)
    squares = np.zeros(channels)
    for start in range(0, len(flat), rows):
        squares += np.square(flat[start : start + rows] - mean).sum(axis=0)
    return mean, np.sqrt(squares / max(len(flat), 1))


def normalized(arrays: DatasetArrays, normalize: str, stats: ChannelStats | None, where: str) -> DatasetArrays:
    """``arrays`` as they are (``normalize = "none"``) or standardized
    (``"standard"``): train and test inputs replaced by ``(x - mean) / std``
    per channel (the inputs' last axis), in float32, with the dataset's
    stated ``stats`` or, when it has none, those of ``arrays.train_x``.
    The loader's own fresh arrays are changed in place (Tiny ImageNet's
    training set is 4.9 GB: no second copy)."""
    if normalize == "none":
        return arrays
    channels = arrays.train_x.shape[-1]
    if stats is None:
        mean, std = channel_stats(arrays.train_x)
    else:
        mean, std = np.asarray(stats.mean), np.asarray(stats.std)
    if len(mean) != channels or (std <= 0).any():
        raise RunError(f"{where}: cannot standardize {channels} channels with mean {tuple(mean)} and standard "
                       f"deviation {tuple(std)}; use normalize = \"none\"")
    mean, std = mean.astype(np.float32), std.astype(np.float32)
    for x in (arrays.train_x, arrays.test_x):
        np.subtract(x, mean, out=x)
        np.divide(x, std, out=x)
    return arrays


# --------------------------------------------------------------------------
# The image datasets' base.


def path_problem(name: str, path: str, expected: str) -> list[str]:
    """The check-time message for a ``path`` that does not exist."""
    location = Path(os.path.expanduser(path))
    if location.exists():
        return []
    return [f"dataset '{name}': path {location} does not exist; give path = {expected}"]


@attrs.frozen
class ImageDataset(Dataset):
    """Shared by `mnist`, `fashion_mnist`, `cifar10` and `cifar100`: ``path``,
    ``holdout`` and ``normalize``."""

    path: str = param(
        "", doc="local copy of the dataset (folder or file, see the dataset's description); "
                "empty: the standard loader's cache (~/.keras/datasets, or $FEDARENA_DATA/keras/datasets), "
                "filled by 'fedarena data fetch NAME'",
    )
    holdout: int = param(
        0, ge=0,
        doc="0: the standard train and test files; N > 0: hold out N samples (fixed, seed 0) of one labelled "
            "set as the test set and train on the rest -- the training files if present, else the test files "
            "alone (e.g. MNIST's t10k files with holdout = 2000 give 8,000 / 2,000)",
    )
    normalize: str = normalize_param()

    NAME: ClassVar[str] = ""
    NUM_CLASSES: ClassVar[int] = 10
    IMAGE_SHAPE: ClassVar[tuple[int, ...]] = ()
    SOURCE: ClassVar[Source]  # the standard loader's download and cache
    STATS: ClassVar[ChannelStats]  # what normalize = "standard" subtracts and divides by

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=self.NUM_CLASSES, input_shape=self.IMAGE_SHAPE)

    def check(self, facts: Facts) -> list[str]:
        if self.path:
            return path_problem(self.NAME, self.path, self.SOURCE.path_hint)
        problem = self.SOURCE.problem()
        return [problem] if problem else []

    def load(self, seed: int) -> DatasetArrays:
        if self.path:
            location = Path(os.path.expanduser(self.path))
            if not location.exists():
                raise RunError(f"{self.NAME}: path {location} does not exist ({self._expected()})")
        else:
            location = self.SOURCE.ensure()
        return normalized(self._arrange(self._read_local(location)), self.normalize, self.STATS, self.NAME)

    def _arrange(self, sets: Sets) -> DatasetArrays:
        info = self.info()
        where = f"{self.NAME} at {self.path or self.SOURCE.location()}"
        if self.holdout:
            which = "train" if "train" in sets else "test"
            x, y = sets[which]
            if self.holdout >= len(y):
                raise RunError(
                    f"{where}: holdout = {self.holdout}, but the {which} set has only {len(y)} samples"
                )
            order = np.random.default_rng(0).permutation(len(y))
            test, train = np.sort(order[: self.holdout]), np.sort(order[self.holdout :])
            return DatasetArrays(train_x=x[train], train_y=y[train], test_x=x[test], test_y=y[test], info=info)
        if "train" not in sets:
            raise RunError(
                f"{where}: no training set found, only a test set of {len(sets['test'][1])} samples; "
                "set holdout = N to split it into training and test data"
            )
        if "test" not in sets:
            raise RunError(f"{where}: no test set found; set holdout = N to hold out N training samples instead")
        (train_x, train_y), (test_x, test_y) = sets["train"], sets["test"]
        return DatasetArrays(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, info=info)

    def _read_local(self, location: Path) -> Sets:
        raise NotImplementedError

    def _expected(self) -> str:
        raise NotImplementedError
