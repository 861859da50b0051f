"""What the image datasets share: reading local files (gzipped or not,
checked against a ``SHA256SUMS`` beside them), checking and scaling images,
holding out a test set, Keras' loaders, and the ``path`` / ``holdout``
parameters with the logic that arranges train and test sets from them.

Every failure is a `RunError` that names the file and says what was
expected.  Nothing here imports TensorFlow until Keras' loader is used.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.interfaces import Dataset, DatasetArrays, DatasetInfo
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf


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


def find(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` present in ``folder``, as is or with ``.gz``."""
    for name in names:
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
    return None


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
# The image datasets' base.


@attrs.frozen
class ImageDataset(Dataset):
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

    def _arrange(self, sets: Sets) -> DatasetArrays:
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

    def _read_keras(self) -> Sets:
        loader = getattr(tf.keras.datasets, self.NAME)
        try:
            (train_x, train_y), (test_x, test_y) = loader.load_data()
        except Exception as error:  # network or cache failures, whatever their type
            raise RunError(
                f"{self.NAME}: Keras' loader failed ({type(error).__name__}: {error}); it downloads to "
                f"~/.keras/datasets on first use -- without network, give path = ... ({self._expected()})"
            ) from error
        shape = self.IMAGE_SHAPE
        return Sets(
            train=checked(f"{self.NAME} (Keras)", train_x, train_y, shape, self.NUM_CLASSES),
            test=checked(f"{self.NAME} (Keras)", test_x, test_y, shape, self.NUM_CLASSES),
        )

    def _read_local(self, location: Path) -> Sets:
        raise NotImplementedError

    def _expected(self) -> str:
        raise NotImplementedError
