"""Built-in datasets.

Image datasets come from Keras' loaders (which download once and cache under
``~/.keras/datasets``) or, offline, from local files in their standard
formats given by ``path``.  Pixels are scaled to [0, 1] as float32; images
keep their channel axis, (28, 28, 1) or (32, 32, 3); labels are int32.

``emnist`` is federated by writer (TFF's Federated EMNIST).  Its training
labels carry each sample's writer (see `WriterLabels`), which is how the
``natural`` split finds the writers through the unchanged
``Split.partition(labels, ...)`` interface.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import zlib
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Dataset, DatasetArrays, DatasetInfo
from fedarena.core.plugin.params import param


def _holdout(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, info: DatasetInfo) -> DatasetArrays:
    """Split one labelled array into train and test, reproducibly."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return DatasetArrays(
        train_x=x[train], train_y=y[train], test_x=x[test], test_y=y[test], info=info
    )


@attrs.frozen
class Digits(Dataset):
    """scikit-learn's 1,797 handwritten 8x8 digits (ships with scikit-learn, offline)."""

    test_fraction: float = param(0.2, doc="share of samples held out at the server for testing", gt=0, lt=1)

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=10, input_shape=(8, 8, 1))

    def load(self, seed: int) -> DatasetArrays:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)[..., None]
        y = digits.target.astype(np.int32)
        # The held-out test set depends only on the dataset, not on the run's
        # seed, so that runs with different seeds are scored on the same data.
        return _holdout(x, y, self.test_fraction, 0, self.info())


@attrs.frozen
class Synthetic(Dataset):
    """Seeded Gaussian class clusters: a tiny, fast, learnable dataset for tests."""

    samples: int = param(1000, doc="total number of samples (train and test)", ge=10)
    features: int = param(16, doc="number of input features", ge=1)
    classes: int = param(4, doc="number of classes", ge=2)
    separation: float = param(3.0, doc="distance between class centres, in noise standard deviations", gt=0)
    test_fraction: float = param(0.2, doc="share of samples held out at the server for testing", gt=0, lt=1)
    data_seed: int = param(0, doc="seed of the generated data (independent of the scenario seed)")

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=self.classes, input_shape=(self.features,))

    def load(self, seed: int) -> DatasetArrays:
        rng = np.random.default_rng(self.data_seed)
        centres = rng.normal(size=(self.classes, self.features))
        centres *= self.separation / np.sqrt(2.0) / np.linalg.norm(centres, axis=1, keepdims=True).mean()
        y = rng.integers(0, self.classes, self.samples).astype(np.int32)
        x = (centres[y] + rng.normal(size=(self.samples, self.features))).astype(np.float32)
        return _holdout(x, y, self.test_fraction, self.data_seed, self.info())


# --------------------------------------------------------------------------
# Reading the standard file formats.

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(file: Path) -> bytes:
    """A file's contents, gunzipped when it is gzip (by its magic bytes,
    whatever its name)."""
    try:
        data = file.read_bytes()
        if data[:2] == _GZIP_MAGIC:
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise RunError(f"cannot read {file}: {error}") from error
    return data


def _verify_checksum(file: Path) -> None:
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


def read_idx(file: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (the MNIST format, LeCun et al.: a
    magic number ``0x0000 08 <ndim>``, ``ndim`` big-endian uint32
    dimensions, then the data), gzipped or not."""
    _verify_checksum(file)
    data = _read_bytes(file)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise RunError(f"{file}: not an IDX file (its magic number should start with two zero bytes)")
    type_code, ndim = data[2], data[3]
    if type_code != 0x08:
        raise RunError(f"{file}: IDX element type 0x{type_code:02x}; expected unsigned bytes (0x08)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise RunError(f"{file}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != expected:
        raise RunError(
            f"{file}: {len(data) - header} bytes of data after the header, expected {expected} for shape {shape}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def _idx_names(prefix: str, kind: str) -> tuple[str, ...]:
    """``train-images-idx3-ubyte`` and the dotted spelling some mirrors use."""
    number = 3 if kind == "images" else 1
    return (f"{prefix}-{kind}-idx{number}-ubyte", f"{prefix}-{kind}.idx{number}-ubyte")


class _Sets(dict):
    """The labelled sets found at a path: ``{"train": (x, y), "test": (x, y)}``."""


def _to_float(images: np.ndarray) -> np.ndarray:
    return (np.asarray(images, np.float32) / np.float32(255.0))


def _checked(where: str, x: np.ndarray, y: np.ndarray, image_shape, num_classes: int):
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
    return _to_float(x), y.astype(np.int32)


@attrs.frozen
class _ImageDataset(Dataset):
    """Shared by `mnist`, `fashion_mnist` and `cifar10`."""

    path: str = param(
        "", doc="local copy of the dataset (folder or file, see the dataset's description); "
                "empty: Keras' loader, which downloads once to ~/.keras/datasets",
    )
    holdout: int = param(
        0, ge=0,
        doc="0: the standard train and test files; N > 0: hold out N samples (fixed, seed 0) of one labelled "
            "set as the test set and train on the rest -- the training files if present, else the test files "
            "alone (e.g. MNIST's t10k files with holdout = 2000 give 8,000 / 2,000)",
    )

    NAME: ClassVar[str] = ""
    NUM_CLASSES: ClassVar[int] = 10
    IMAGE_SHAPE: ClassVar[tuple[int, ...]] = ()

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=self.NUM_CLASSES, input_shape=self.IMAGE_SHAPE)

    def load(self, seed: int) -> DatasetArrays:
        if self.path:
            location = Path(os.path.expanduser(self.path))
            if not location.exists():
                raise RunError(f"{self.NAME}: path {location} does not exist ({self._expected()})")
            sets = self._read_local(location)
        else:
            sets = self._read_keras()
        return self._arrange(sets)

    def _arrange(self, sets: _Sets) -> DatasetArrays:
        info = self.info()
        where = f"{self.NAME} at {self.path}" if self.path else f"{self.NAME} (Keras)"
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

    def _read_keras(self) -> _Sets:
        import tensorflow as tf

        loader = getattr(tf.keras.datasets, self.NAME)
        try:
            (train_x, train_y), (test_x, test_y) = loader.load_data()
        except Exception as error:  # network or cache failures, whatever their type
            raise RunError(
                f"{self.NAME}: Keras' loader failed ({type(error).__name__}: {error}); it downloads to "
                f"~/.keras/datasets on first use -- without network, give path = ... ({self._expected()})"
            ) from error
        shape = self.IMAGE_SHAPE
        return _Sets(
            train=_checked(f"{self.NAME} (Keras)", train_x, train_y, shape, self.NUM_CLASSES),
            test=_checked(f"{self.NAME} (Keras)", test_x, test_y, shape, self.NUM_CLASSES),
        )

    def _read_local(self, location: Path) -> _Sets:
        raise NotImplementedError

    def _expected(self) -> str:
        raise NotImplementedError


class _IdxDataset(_ImageDataset):
    """MNIST-format datasets: IDX files or Keras' ``.npz`` layout."""

    IMAGE_SHAPE: ClassVar[tuple[int, ...]] = (28, 28, 1)

    def _expected(self) -> str:
        return (
            "expected a folder with IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each optionally .gz; the train or the t10k pair "
            f"alone with holdout), or a Keras-layout .npz file (x_train, y_train, x_test, y_test), or a folder "
            f"holding {self.NAME}.npz"
        )

    def _read_local(self, location: Path) -> _Sets:
        if location.is_file():
            return self._read_npz(location)
        sets = _Sets()
        for key, prefix in (("train", "train"), ("test", "t10k")):
            images = _find(location, _idx_names(prefix, "images"))
            labels = _find(location, _idx_names(prefix, "labels"))
            if images is None and labels is None:
                continue
            if images is None or labels is None:
                missing = _idx_names(prefix, "images" if images is None else "labels")[0]
                raise RunError(f"{self.NAME}: {location} has {(images or labels).name} but no {missing}[.gz]")
            x, y = read_idx(images), read_idx(labels)
            if x.ndim != 3 or y.ndim != 1:
                raise RunError(
                    f"{self.NAME}: {images} has {x.ndim} dimensions and {labels.name} {y.ndim}; "
                    "expected 3 (images) and 1 (labels)"
                )
            sets[key] = _checked(f"{self.NAME}: {images} / {labels.name}", x, y, self.IMAGE_SHAPE, self.NUM_CLASSES)
        if sets:
            return sets
        npz = location / f"{self.NAME}.npz"
        if npz.is_file():
            return self._read_npz(npz)
        raise RunError(f"{self.NAME}: no dataset files in {location}; {self._expected()}")

    def _read_npz(self, file: Path) -> _Sets:
        _verify_checksum(file)
        try:
            with np.load(file, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zlib.error) as error:
            raise RunError(f"{self.NAME}: cannot read {file} as a .npz archive: {error}") from error
        sets = _Sets()
        for key in ("train", "test"):
            x, y = arrays.get(f"x_{key}"), arrays.get(f"y_{key}")
            if x is None and y is None:
                continue
            if x is None or y is None:
                raise RunError(f"{self.NAME}: {file} has {'y' if x is None else 'x'}_{key} but no "
                               f"{'x' if x is None else 'y'}_{key}")
            sets[key] = _checked(f"{self.NAME}: {file} ({key})", x, y, self.IMAGE_SHAPE, self.NUM_CLASSES)
        if not sets:
            raise RunError(f"{self.NAME}: {file} holds {sorted(arrays)}; expected x_train, y_train, x_test, y_test")
        return sets


@attrs.frozen
class Mnist(_IdxDataset):
    """MNIST handwritten digits (LeCun et al. 1998), from Keras or local IDX / .npz files.

    60,000 training and 10,000 test images, 28x28 grey levels, 10 classes.
    ``path``: a folder with the IDX files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``, each gzipped or not; a ``SHA256SUMS`` beside
    them is checked), or Keras' ``mnist.npz``.  With only the t10k pair,
    set ``holdout`` to split it."""

    NAME: ClassVar[str] = "mnist"


@attrs.frozen
class FashionMnist(_IdxDataset):
    """Fashion-MNIST (Xiao et al. 2017), from Keras or local IDX / .npz files.

    Zalando article images in MNIST's format and sizes (60,000 / 10,000,
    28x28 grey levels, 10 classes).  ``path``: as for ``mnist`` (same IDX file names, or a Keras-layout
    ``.npz``)."""

    NAME: ClassVar[str] = "fashion_mnist"


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


def _unpickle_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: a dict with ``data`` (N x 3072 uint8, the
    1024 red, then green, then blue values of each row-major 32x32 image)
    and ``labels`` (N ints)."""
    try:
        batch = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # any unpickling failure means a bad file
        raise RunError(f"cifar10: cannot unpickle {where}: {type(error).__name__}: {error}") from error
    if not isinstance(batch, dict):
        raise RunError(f"cifar10: {where} holds a {type(batch).__name__}, expected a dict with data and labels")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise RunError(f"cifar10: {where} has keys {sorted(batch)}; expected 'data' and 'labels'")
    x = np.asarray(batch["data"])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise RunError(f"cifar10: {where}: data of shape {x.shape} and type {x.dtype}; expected N x 3072 uint8")
    x = x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, np.asarray(batch["labels"]).reshape(-1)


@attrs.frozen
class Cifar10(_ImageDataset):
    """CIFAR-10 (Krizhevsky 2009), from Keras or local python pickle batches.

    50,000 training and 10,000 test colour images, 32x32x3, 10 classes.
    ``path``: a folder with the python batches (``data_batch_1`` ..
    ``data_batch_5``, ``test_batch``), the folder holding the extracted
    ``cifar-10-batches-py``, or the ``cifar-10-python.tar.gz`` archive
    itself.  With ``test_batch`` alone, set ``holdout`` to split it.  The
    batches are unpickled with a loader that accepts only NumPy arrays and
    plain containers."""

    NAME: ClassVar[str] = "cifar10"
    IMAGE_SHAPE: ClassVar[tuple[int, ...]] = (32, 32, 3)
    TRAIN: ClassVar[tuple[str, ...]] = tuple(f"data_batch_{i}" for i in range(1, 6))

    def _expected(self) -> str:
        return ("expected a folder with the CIFAR-10 python batches data_batch_1 .. data_batch_5 and test_batch "
                "(test_batch alone with holdout), a folder holding cifar-10-batches-py, or cifar-10-python.tar.gz")

    def _read_local(self, location: Path) -> _Sets:
        if location.is_file():
            return self._read_archive(location)
        for folder in (location, location / "cifar-10-batches-py"):
            files = {name: folder / name for name in self.TRAIN + ("test_batch",) if (folder / name).is_file()}
            if files:
                for file in files.values():
                    _verify_checksum(file)
                return self._assemble({name: (str(file), _read_bytes(file)) for name, file in files.items()}, folder)
        archive = location / "cifar-10-python.tar.gz"
        if archive.is_file():
            return self._read_archive(archive)
        raise RunError(f"cifar10: no CIFAR-10 batches in {location}; {self._expected()}")

    def _read_archive(self, file: Path) -> _Sets:
        _verify_checksum(file)
        wanted = set(self.TRAIN + ("test_batch",))
        found = {}
        try:
            with tarfile.open(file) as archive:
                for member in archive.getmembers():
                    name = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and name in wanted:
                        found[name] = (f"{file}:{member.name}", archive.extractfile(member).read())
        except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
            raise RunError(f"cifar10: cannot read {file} as a tar archive: {error}") from error
        if not found:
            raise RunError(f"cifar10: {file} holds no CIFAR-10 batches; {self._expected()}")
        return self._assemble(found, file)

    def _assemble(self, found: dict[str, tuple[str, bytes]], where) -> _Sets:
        sets = _Sets()
        present = [name for name in self.TRAIN if name in found]
        if present:
            missing = [name for name in self.TRAIN if name not in found]
            if missing:
                raise RunError(f"cifar10: {where} has {', '.join(present)} but not {', '.join(missing)}")
            batches = [_unpickle_batch(found[name][1], found[name][0]) for name in self.TRAIN]
            x = np.concatenate([b[0] for b in batches])
            y = np.concatenate([b[1] for b in batches])
            sets["train"] = _checked(f"cifar10: {where} (training batches)", x, y, self.IMAGE_SHAPE, 10)
        if "test_batch" in found:
            x, y = _unpickle_batch(found["test_batch"][1], found["test_batch"][0])
            sets["test"] = _checked(f"cifar10: {found['test_batch'][0]}", x, y, self.IMAGE_SHAPE, 10)
        return sets


# --------------------------------------------------------------------------
# Federated EMNIST.


class WriterLabels(np.ndarray):
    """Training labels (int32) that also carry each sample's writer index in
    ``.writers`` (int32, same length), and the writers' names in
    ``.writer_names``.  This is how a dataset with natural clients hands them
    to the ``natural`` split while ``Split.partition`` takes labels only.

    The attributes live on the array returned by ``load`` only: indexing,
    slicing or converting it (``np.asarray``) gives plain labels."""

    writers: np.ndarray | None
    writer_names: tuple[str, ...]

    def __new__(cls, labels, writers, writer_names=()):
        labels = np.asarray(labels, np.int32)
        writers = np.asarray(writers, np.int32)
        if writers.shape != labels.shape:
            raise ValueError(f"writers of shape {writers.shape} for labels of shape {labels.shape}")
        obj = labels.view(cls)
        obj.writers, obj.writer_names = writers, tuple(writer_names)
        return obj

    def __array_finalize__(self, obj):
        # A derived array (slice, copy, arithmetic) does not keep the writers:
        # they would no longer line up with its elements.
        self.writers, self.writer_names = None, ()

    def __reduce__(self):
        # Pickles as plain labels, for the same reason.
        return np.asarray(self).__reduce__()


def writers_of(labels) -> np.ndarray | None:
    """The writer index of each sample if ``labels`` carries them (`WriterLabels`), else None."""
    return getattr(labels, "writers", None)


@attrs.frozen(eq=False)
class FederatedArrays(DatasetArrays):
    """`DatasetArrays` of a dataset with natural clients: ``writer_names``
    (index = writer id), ``train_writers`` and ``test_writers`` (int32, the
    writer of each sample).  ``train_y`` is a `WriterLabels` carrying
    ``train_writers`` too."""

    train_writers: np.ndarray = attrs.field(kw_only=True)
    test_writers: np.ndarray = attrs.field(kw_only=True)
    writer_names: tuple[str, ...] = attrs.field(kw_only=True)


_EMNIST_FILE = "emnist_all.sqlite"


@attrs.frozen
class Emnist(Dataset):
    """Federated EMNIST (Cohen et al. 2017; LEAF, Caldas et al. 2018), by writer, through TFF.

    Handwritten characters grouped by writer, 28x28, 3,383
    writers and 10 classes with ``only_digits``, else 3,400 writers and 62
    classes (digits, upper case, lower case).  Every writer has training and
    test samples; the training set is all writers' training samples and the
    test set all their test samples.  Each training sample's writer is
    known, for the ``natural`` split.

    Loaded with ``tff.simulation.datasets.emnist.load_data(cache_dir=path)``,
    which downloads ``emnist_all.sqlite.lzma`` once (about 1.5 GB unpacked)
    unless ``<path>/emnist_all.sqlite`` exists; the rows are then streamed
    from that SQLite file in stored order (rather than through one
    ``tf.data`` pipeline per writer), so a writer's samples need not be
    contiguous: ``train_writers`` says whose each one is.

    TFF stores ink as 0 and background as 1; ``invert`` (default) flips this
    to MNIST's convention, ink 1 on background 0."""

    only_digits: bool = param(True, doc="digits only (10 classes, 3,383 writers); false: 62 classes, 3,400 writers")
    path: str = param("", doc="TFF's cache folder holding emnist_all.sqlite; empty: ~/.tff (downloaded if absent)")
    invert: bool = param(True, doc="store ink as 1 and background as 0, as MNIST does (TFF's raw data is the reverse)")
    max_writers: int = param(0, ge=0, doc="keep only this many writers, chosen with a fixed seed (0: all)")

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=10 if self.only_digits else 62, input_shape=(28, 28, 1))

    def database(self) -> Path:
        folder = Path(os.path.expanduser(self.path)) if self.path else Path.home() / ".tff"
        return folder / _EMNIST_FILE

    def load(self, seed: int) -> FederatedArrays:
        import tensorflow_federated as tff

        cache = str(Path(os.path.expanduser(self.path))) if self.path else None
        try:
            train, test = tff.simulation.datasets.emnist.load_data(only_digits=self.only_digits, cache_dir=cache)
        except Exception as error:  # download, decompression or database-format failures
            raise RunError(
                f"emnist: TFF's loader failed ({type(error).__name__}: {error}); it needs network on first use, "
                f"or {self.database()} (TFF's emnist_all.sqlite, unpacked from emnist_all.sqlite.lzma)"
            ) from error
        database = getattr(train, "_filepath", None) or str(self.database())
        names = sorted(set(train.client_ids) | set(test.client_ids))
        if self.max_writers and self.max_writers < len(names):
            keep = np.random.default_rng(0).choice(len(names), self.max_writers, replace=False)
            names = [names[i] for i in np.sort(keep)]
        prefix = "digits_only" if self.only_digits else "all"
        train_x, train_y, train_w = self._read(database, f"{prefix}_train", names)
        test_x, test_y, test_w = self._read(database, f"{prefix}_test", names)
        return FederatedArrays(
            train_x=train_x, train_y=WriterLabels(train_y, train_w, names), test_x=test_x, test_y=test_y,
            info=self.info(), train_writers=train_w, test_writers=test_w, writer_names=tuple(names),
        )

    def _read(self, database: str, split_name: str, names: list[str]):
        """One split's samples of the chosen writers, streamed from the SQLite
        file in chunks (the full dataset is about 2 GB as float32)."""
        import sqlite3

        import tensorflow as tf

        index = {name: i for i, name in enumerate(names)}
        spec = {
            "pixels": tf.io.FixedLenFeature((28, 28), tf.float32),
            "label": tf.io.FixedLenFeature((), tf.int64),
        }
        # In the order stored (no ORDER BY: SQLite would sort gigabytes of blobs);
        # the natural split does not need a writer's samples to be contiguous.
        query = "SELECT client_id, serialized_example_proto FROM examples WHERE split_name = ?"
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
                (total,) = connection.execute(
                    "SELECT COUNT(*) FROM examples WHERE split_name = ?", (split_name,)).fetchone()
                pixels = np.zeros((total, 28, 28, 1), np.float32)
                labels = np.zeros(total, np.int32)
                writers = np.zeros(total, np.int32)
                cursor = connection.execute(query, (split_name,))
                filled = 0
                while rows := cursor.fetchmany(10_000):
                    rows = [row for row in rows if row[0] in index]
                    if not rows:
                        continue
                    parsed = tf.io.parse_example(tf.constant([bytes(row[1]) for row in rows]), spec)
                    end = filled + len(rows)
                    pixels[filled:end, ..., 0] = parsed["pixels"].numpy()
                    labels[filled:end] = parsed["label"].numpy()
                    writers[filled:end] = [index[row[0]] for row in rows]
                    filled = end
        except sqlite3.Error as error:
            raise RunError(f"emnist: cannot read {database}: {error}") from error
        except tf.errors.OpError as error:
            raise RunError(f"emnist: bad example in {database} ({split_name}): {error.message}") from error
        if filled < total:  # writers left out by max_writers
            pixels, labels, writers = pixels[:filled].copy(), labels[:filled].copy(), writers[:filled].copy()
        if self.invert:
            np.subtract(1.0, pixels, out=pixels)
        np.clip(pixels, 0.0, 1.0, out=pixels)
        num_classes = self.info().num_classes
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise RunError(f"emnist: {database} ({split_name}) has labels {labels.min()}..{labels.max()}, "
                           f"expected 0..{num_classes - 1}")
        return pixels, labels, writers


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("digits", Digits)
    registry.add("synthetic", Synthetic)
    registry.add("mnist", Mnist)
    registry.add("fashion_mnist", FashionMnist)
    registry.add("cifar10", Cifar10)
    registry.add("emnist", Emnist)
