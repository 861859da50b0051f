"""The MNIST file formats, shared by `mnist` and `fashion_mnist`: IDX files
(LeCun et al. 1998), gzipped or not, and Keras' ``.npz`` layout."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from fedarena.core.errors import RunError
from fedarena.plugins.datasets._common import ImageDataset, Sets, checked, find, read_bytes, verify_checksum


def read_idx(file: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (the MNIST format, LeCun et al.: a
    magic number ``0x0000 08 <ndim>``, ``ndim`` big-endian uint32
    dimensions, then the data), gzipped or not."""
    verify_checksum(file)
    data = read_bytes(file)
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


def idx_names(prefix: str, kind: str) -> tuple[str, ...]:
    """``train-images-idx3-ubyte`` and the dotted spelling some mirrors use."""
    number = 3 if kind == "images" else 1
    return (f"{prefix}-{kind}-idx{number}-ubyte", f"{prefix}-{kind}.idx{number}-ubyte")


def idx_path_hint(name: str) -> str:
    """What ``path`` takes instead of the cache, for messages."""
    return (f'"FOLDER" holding the IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, '
            f't10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (or a Keras-layout {name}.npz)')


class IdxDataset(ImageDataset):
    """MNIST-format datasets: IDX files or Keras' ``.npz`` layout."""

    IMAGE_SHAPE: ClassVar[tuple[int, ...]] = (28, 28, 1)

    def _expected(self) -> str:
        return (
            "expected a folder with IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each optionally .gz; the train or the t10k pair "
            f"alone with holdout), or a Keras-layout .npz file (x_train, y_train, x_test, y_test), or a folder "
            f"holding {self.NAME}.npz"
        )

    def _read_local(self, location: Path) -> Sets:
        if location.is_file():
            return self._read_npz(location)
        sets = Sets()
        for key, prefix in (("train", "train"), ("test", "t10k")):
            images = find(location, idx_names(prefix, "images"))
            labels = find(location, idx_names(prefix, "labels"))
            if images is None and labels is None:
                continue
            if images is None or labels is None:
                missing = idx_names(prefix, "images" if images is None else "labels")[0]
                raise RunError(f"{self.NAME}: {location} has {(images or labels).name} but no {missing}[.gz]")
            x, y = read_idx(images), read_idx(labels)
            if x.ndim != 3 or y.ndim != 1:
                raise RunError(
                    f"{self.NAME}: {images} has {x.ndim} dimensions and {labels.name} {y.ndim}; "
                    "expected 3 (images) and 1 (labels)"
                )
            sets[key] = checked(f"{self.NAME}: {images} / {labels.name}", x, y, self.IMAGE_SHAPE, self.NUM_CLASSES)
        if sets:
            return sets
        npz = location / f"{self.NAME}.npz"
        if npz.is_file():
            return self._read_npz(npz)
        raise RunError(f"{self.NAME}: no dataset files in {location}; {self._expected()}")

    def _read_npz(self, file: Path) -> Sets:
        verify_checksum(file)
        try:
            with np.load(file, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zlib.error) as error:
            raise RunError(f"{self.NAME}: cannot read {file} as a .npz archive: {error}") from error
        sets = Sets()
        for key in ("train", "test"):
            x, y = arrays.get(f"x_{key}"), arrays.get(f"y_{key}")
            if x is None and y is None:
                continue
            if x is None or y is None:
                raise RunError(f"{self.NAME}: {file} has {'y' if x is None else 'x'}_{key} but no "
                               f"{'x' if x is None else 'y'}_{key}")
            sets[key] = checked(f"{self.NAME}: {file} ({key})", x, y, self.IMAGE_SHAPE, self.NUM_CLASSES)
        if not sets:
            raise RunError(f"{self.NAME}: {file} holds {sorted(arrays)}; expected x_train, y_train, x_test, y_test")
        return sets
