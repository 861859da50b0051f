"""``cifar10``: CIFAR-10 colour images.

Source: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny
Images", technical report, University of Toronto, 2009.  50,000 training
and 10,000 test images of 32x32x3, 10 classes; read with Keras' loader
(downloaded once to ``~/.keras/datasets``) or from the local "python
version" batches: ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``,
each a pickled dict whose ``data`` rows hold the 1024 red, then green, then
blue values of a row-major image.  The batches are unpickled with a loader
that accepts only NumPy arrays and plain containers, so a file cannot run
code.

Preprocessing: planes reordered to (32, 32, 3), uint8 pixels divided by 255
to float32 in [0, 1]; labels int32.  With ``holdout = N``, N samples of one
labelled set (fixed seed 0) become the test set.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.plugins.datasets._common import ImageDataset, Sets, checked, read_bytes, verify_checksum


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
class Cifar10(ImageDataset):
    """CIFAR-10 (Krizhevsky 2009), from Keras or local python pickle batches.

    50,000 training and 10,000 test colour images, 32x32x3, 10 classes.
    ``path``: a folder with the python batches (``data_batch_1`` ..
    ``data_batch_5``, ``test_batch``), the folder holding the extracted
    ``cifar-10-batches-py``, or the ``cifar-10-python.tar.gz`` archive
    itself.  With ``test_batch`` alone, set ``holdout`` to split it.  The
    batches are unpickled with a loader that accepts only NumPy arrays and
    plain containers."""

    paper = "Krizhevsky 2009, tech. report, University of Toronto"

    NAME: ClassVar[str] = "cifar10"
    IMAGE_SHAPE: ClassVar[tuple[int, ...]] = (32, 32, 3)
    TRAIN: ClassVar[tuple[str, ...]] = tuple(f"data_batch_{i}" for i in range(1, 6))

    def _expected(self) -> str:
        return ("expected a folder with the CIFAR-10 python batches data_batch_1 .. data_batch_5 and test_batch "
                "(test_batch alone with holdout), a folder holding cifar-10-batches-py, or cifar-10-python.tar.gz")

    def _read_local(self, location: Path) -> Sets:
        if location.is_file():
            return self._read_archive(location)
        for folder in (location, location / "cifar-10-batches-py"):
            files = {name: folder / name for name in self.TRAIN + ("test_batch",) if (folder / name).is_file()}
            if files:
                for file in files.values():
                    verify_checksum(file)
                return self._assemble({name: (str(file), read_bytes(file)) for name, file in files.items()}, folder)
        archive = location / "cifar-10-python.tar.gz"
        if archive.is_file():
            return self._read_archive(archive)
        raise RunError(f"cifar10: no CIFAR-10 batches in {location}; {self._expected()}")

    def _read_archive(self, file: Path) -> Sets:
        verify_checksum(file)
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

    def _assemble(self, found: dict[str, tuple[str, bytes]], where) -> Sets:
        sets = Sets()
        present = [name for name in self.TRAIN if name in found]
        if present:
            missing = [name for name in self.TRAIN if name not in found]
            if missing:
                raise RunError(f"cifar10: {where} has {', '.join(present)} but not {', '.join(missing)}")
            batches = [_unpickle_batch(found[name][1], found[name][0]) for name in self.TRAIN]
            x = np.concatenate([b[0] for b in batches])
            y = np.concatenate([b[1] for b in batches])
            sets["train"] = checked(f"cifar10: {where} (training batches)", x, y, self.IMAGE_SHAPE, 10)
        if "test_batch" in found:
            x, y = _unpickle_batch(found["test_batch"][1], found["test_batch"][0])
            sets["test"] = checked(f"cifar10: {found['test_batch'][0]}", x, y, self.IMAGE_SHAPE, 10)
        return sets


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("cifar10", Cifar10)
