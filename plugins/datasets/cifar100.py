"""``cifar100``: CIFAR-100 colour images, 100 fine or 20 coarse classes.

Source: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny
Images", technical report, University of Toronto, 2009.  50,000 training
and 10,000 test images of 32x32x3, each with a fine label (100 classes)
and a coarse one (its superclass, 20 classes); from the standard loader's
cache (Keras' ``cifar-100-python.tar.gz`` in ``~/.keras/datasets``, 169 MB,
written by ``fedarena data fetch cifar100``, SHA-256 as Keras' loader
declares it) or from the local "python version" files ``train`` and
``test``: pickled dicts whose ``data`` rows hold the 1024 red, then green,
then blue values of a row-major image, with ``fine_labels`` and
``coarse_labels``.  They are unpickled with the loader of ``_common`` that
accepts only NumPy arrays and plain containers.

Preprocessing: as ``cifar10``: planes reordered to (32, 32, 3), uint8
pixels divided by 255 to float32 in [0, 1]; labels (fine by default,
``label_mode = "coarse"`` for the superclasses) int32.  With
``holdout = N``, N samples of one labelled set (fixed seed 0) become the
test set.  With ``normalize = "standard"``, then per channel ``(x -
(0.5071, 0.4865, 0.4409)) / (0.2673, 0.2564, 0.2762)``: the mean and
standard deviation over every pixel of the 50,000 training images, as
commonly used (not recomputed here: the data is not on the machine this
was written on).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import DatasetInfo
from fedarena.core.plugin.params import param
from fedarena.plugins.datasets._common import (
    ChannelStats, ImageDataset, Sets, checked, cifar_images, read_members, unpickle_dict,
)
from fedarena.plugins.datasets._download import RemoteFile, Source


@attrs.frozen
class Cifar100(ImageDataset):
    """CIFAR-100 (Krizhevsky 2009), from Keras' cache or the local python files ``train`` and ``test``.

    50,000 training and 10,000 test colour images, 32x32x3, 100 fine
    classes or (``label_mode = "coarse"``) their 20 superclasses.
    ``path``: a folder with the python files ``train`` and ``test``, the
    folder holding the extracted ``cifar-100-python``, or the
    ``cifar-100-python.tar.gz`` archive itself.  With ``test`` alone, set
    ``holdout`` to split it.  The files are unpickled with a loader that
    accepts only NumPy arrays and plain containers."""

    paper = "Krizhevsky 2009, tech. report, University of Toronto"

    label_mode: str = param("fine", choices=("fine", "coarse"),
                            doc="fine: the 100 classes; coarse: their 20 superclasses")

    NAME: ClassVar[str] = "cifar100"
    STATS: ClassVar[ChannelStats] = ChannelStats(
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "every pixel of the 50,000 training images")
    IMAGE_SHAPE: ClassVar[tuple[int, ...]] = (32, 32, 3)
    SOURCE: ClassVar[Source] = Source(
        dataset="cifar100", loader="keras", size="169 MB",
        path_hint='"FOLDER" holding the CIFAR-100 python files train and test (or cifar-100-python.tar.gz)',
        files=(RemoteFile("datasets/cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                          sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),),
    )

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=100 if self.label_mode == "fine" else 20, input_shape=self.IMAGE_SHAPE)

    def _expected(self) -> str:
        return ("expected a folder with the CIFAR-100 python files train and test (test alone with holdout), "
                "a folder holding cifar-100-python, or cifar-100-python.tar.gz")

    def _read_local(self, location: Path) -> Sets:
        found, _ = read_members(location, ("train", "test"), "cifar-100-python", "cifar-100-python.tar.gz",
                                "cifar100", self._expected())
        key = f"{self.label_mode}_labels"
        sets = Sets()
        for name, (where, data) in found.items():
            batch = unpickle_dict(data, where, "cifar100", ("data", key))
            x, y = cifar_images(batch, where, "cifar100"), np.asarray(batch[key]).reshape(-1)
            sets[name] = checked(f"cifar100: {where}", x, y, self.IMAGE_SHAPE, self.info().num_classes)
        return sets


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("cifar100", Cifar100)
