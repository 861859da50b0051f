"""``cinic10``: CINIC-10, CIFAR-10's classes from CIFAR-10 and ImageNet, from a local folder.

Source: L. N. Darlow, E. J. Crowley, A. Antoniou and A. J. Storkey,
"CINIC-10 is not ImageNet or CIFAR-10", arXiv:1810.03505, 2018.  270,000
PNG images of 32x32x3 in CIFAR-10's 10 classes (60,000 from CIFAR-10,
210,000 downsampled from ImageNet), split equally into ``train``,
``valid`` and ``test`` (90,000 each).  Not downloaded: ``path`` is the
folder as its archive unpacks: ``train/``, ``valid/`` and ``test/``, each
with one folder per class (``airplane``, ``automobile``, ``bird``, ``cat``,
``deer``, ``dog``, ``frog``, ``horse``, ``ship``, ``truck``) of PNG files.

Preprocessing: PNGs decoded with Pillow (installed with matplotlib), grey
images converted to RGB, uint8 pixels divided by 255 to float32 in [0, 1],
shape (32, 32, 3); labels are the class's index in the order above (CIFAR-10's),
int32.  The training set is ``train/`` (``use_valid = true``: ``train/`` and
``valid/``, as the authors suggest once hyper-parameters are chosen), the
test set ``test/``.  With ``normalize = "standard"``, then per channel
``(x - (0.47889522, 0.47227842, 0.43047404)) / (0.24205776, 0.23828046,
0.25874835)``: the means and standard deviations the authors give in the
dataset's README (github.com/BayesWatch/cinic-10), the same with
``use_valid``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Dataset, DatasetArrays, DatasetInfo, Facts
from fedarena.core.plugin.params import param
from fedarena.plugins.datasets._common import (
    ChannelStats, checked, decode_images, normalize_param, normalized, path_problem,
)

SHAPE = (32, 32, 3)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_EXPECTED = ('"FOLDER" holding CINIC-10 as its archive unpacks (train/, valid/ and test/, each with a folder of '
             'PNG files per class: ' + ", ".join(CLASSES) + ")")


@attrs.frozen
class Cinic10(Dataset):
    """CINIC-10 (Darlow et al. 2018): CIFAR-10's 10 classes, 32x32x3 PNGs, from a local folder.

    90,000 images in each of ``train/``, ``valid/`` and ``test/``, one
    folder per class.  The test set is ``test/``; the training set is
    ``train/``, or ``train/`` and ``valid/`` with ``use_valid``."""

    paper = "Darlow et al. 2018, arXiv:1810.03505"

    path: str = param(doc="the CINIC-10 folder (train/, valid/, test/, each with a folder per class)")
    use_valid: bool = param(False, doc="train on train/ and valid/ together (180,000 images) instead of train/ alone")
    normalize: str = normalize_param()

    STATS: ClassVar[ChannelStats] = ChannelStats(
        (0.47889522, 0.47227842, 0.43047404), (0.24205776, 0.23828046, 0.25874835),
        "the authors' README (BayesWatch/cinic-10)")

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=len(CLASSES), input_shape=SHAPE)

    def check(self, facts: Facts) -> list[str]:
        return path_problem("cinic10", self.path, _EXPECTED)

    def load(self, seed: int) -> DatasetArrays:
        root = Path(os.path.expanduser(self.path))
        parts = [self._part(root, "train")] + ([self._part(root, "valid")] if self.use_valid else [])
        train_x = np.concatenate([x for x, _ in parts])
        train_y = np.concatenate([y for _, y in parts])
        test_x, test_y = self._part(root, "test")
        arrays = DatasetArrays(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, info=self.info())
        return normalized(arrays, self.normalize, self.STATS, f"cinic10 at {root}")

    @staticmethod
    def _part(root: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
        folder = root / name
        if not folder.is_dir():
            raise RunError(f"cinic10: {folder} does not exist; give path = {_EXPECTED}")
        unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in CLASSES)
        if unknown:
            raise RunError(f"cinic10: {folder} has folders {', '.join(unknown)}, not CINIC-10 classes "
                           f"({', '.join(CLASSES)})")
        files, labels = [], []
        for label, cls in enumerate(CLASSES):
            found = sorted((folder / cls).glob("*.png"))
            if not found:
                raise RunError(f"cinic10: no PNG images in {folder / cls}; expected {_EXPECTED}")
            files += found
            labels += [label] * len(found)
        return checked(f"cinic10: {folder}", decode_images(files, SHAPE, "cinic10"), np.array(labels), SHAPE,
                       len(CLASSES))


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("cinic10", Cinic10)
