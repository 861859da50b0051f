"""``cifar10``: CIFAR-10 colour images.

Source: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny
Images", technical report, University of Toronto, 2009.  50,000 training
and 10,000 test images of 32x32x3, 10 classes; from the standard loader's
cache (Keras' ``cifar-10-batches-py.tar.gz`` in ``~/.keras/datasets``, 170
MB, written by ``fedarena data fetch cifar10``, SHA-256 as Keras' loader
declares it) or from the local "python version" batches:
``data_batch_1`` .. ``data_batch_5`` and ``test_batch``, each a pickled
dict whose ``data`` rows hold the 1024 red, then green, then blue values of
a row-major image.  The batches are unpickled with a loader that accepts
only NumPy arrays and plain containers (``_common``), so a file cannot run
code.

Preprocessing: planes reordered to (32, 32, 3), uint8 pixels divided by 255
to float32 in [0, 1]; labels int32.  With ``holdout = N``, N samples of one
labelled set (fixed seed 0) become the test set.  With ``normalize =
"standard"``, then per channel (red, green, blue) ``(x - (0.4914, 0.4822,
0.4465)) / (0.2470, 0.2435, 0.2616)``: the mean and standard deviation
over every pixel of the 50,000 training images (as fb.resnet.torch's
125.3, 123.0, 113.9 / 63.0, 62.1, 66.7 out of 255).  Not the often copied
standard deviations (0.2023, 0.1994, 0.2010) of kuangliu/pytorch-cifar,
which are the mean of each image's own standard deviation (that
repository's issue 19).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.plugins.datasets._common import (
    ChannelStats, ImageDataset, Sets, checked, cifar_images, read_members, unpickle_dict,
)
from fedarena.plugins.datasets._download import RemoteFile, Source


@attrs.frozen
class Cifar10(ImageDataset):
    """CIFAR-10 (Krizhevsky 2009), from Keras' cache or local python pickle batches.

    50,000 training and 10,000 test colour images, 32x32x3, 10 classes.
    ``path``: a folder with the python batches (``data_batch_1`` ..
    ``data_batch_5``, ``test_batch``), the folder holding the extracted
    ``cifar-10-batches-py``, or the ``cifar-10-python.tar.gz`` archive
    itself.  With ``test_batch`` alone, set ``holdout`` to split it.  The
    batches are unpickled with a loader that accepts only NumPy arrays and
    plain containers."""

    paper = "Krizhevsky 2009, tech. report, University of Toronto"

    NAME: ClassVar[str] = "cifar10"
    STATS: ClassVar[ChannelStats] = ChannelStats(
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "every pixel of the 50,000 training images")
    IMAGE_SHAPE: ClassVar[tuple[int, ...]] = (32, 32, 3)
    TRAIN: ClassVar[tuple[str, ...]] = tuple(f"data_batch_{i}" for i in range(1, 6))
    SOURCE: ClassVar[Source] = Source(
        dataset="cifar10", loader="keras", size="170 MB",
        path_hint='"FOLDER" holding the CIFAR-10 python batches data_batch_1 .. data_batch_5 and test_batch '
                  '(or cifar-10-python.tar.gz)',
        files=(RemoteFile("datasets/cifar-10-batches-py.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                          sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),),
    )

    def _expected(self) -> str:
        return ("expected a folder with the CIFAR-10 python batches data_batch_1 .. data_batch_5 and test_batch "
                "(test_batch alone with holdout), a folder holding cifar-10-batches-py, or cifar-10-python.tar.gz")

    def _read_local(self, location: Path) -> Sets:
        found, where = read_members(location, self.TRAIN + ("test_batch",), "cifar-10-batches-py",
                                    "cifar-10-python.tar.gz", "cifar10", self._expected())
        sets = Sets()
        present = [name for name in self.TRAIN if name in found]
        if present:
            missing = [name for name in self.TRAIN if name not in found]
            if missing:
                raise RunError(f"cifar10: {where} has {', '.join(present)} but not {', '.join(missing)}")
            batches = [self._batch(*found[name]) for name in self.TRAIN]
            x = np.concatenate([b[0] for b in batches])
            y = np.concatenate([b[1] for b in batches])
            sets["train"] = checked(f"cifar10: {where} (training batches)", x, y, self.IMAGE_SHAPE, 10)
        if "test_batch" in found:
            x, y = self._batch(*found["test_batch"])
            sets["test"] = checked(f"cifar10: {found['test_batch'][0]}", x, y, self.IMAGE_SHAPE, 10)
        return sets

    @staticmethod
    def _batch(where: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """One python batch: a dict with ``data`` (N x 3072 uint8) and ``labels`` (N ints)."""
        batch = unpickle_dict(data, where, "cifar10", ("data", "labels"))
        return cifar_images(batch, where, "cifar10"), np.asarray(batch["labels"]).reshape(-1)


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("cifar10", Cifar10)
