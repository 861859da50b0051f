"""``tiny_imagenet``: Tiny ImageNet, 200 ImageNet classes at 64x64, from a local folder.

Source: Y. Le and X. Yang, "Tiny ImageNet Visual Recognition Challenge",
CS231N course report, Stanford, 2015 (images from ImageNet: J. Deng et
al., CVPR 2009).  100,000 training images (500 per class) and 10,000
validation images (50 per class) of 64x64x3, 200 classes; the test images
have no labels and are not used.  Not downloaded: ``path`` is the
``tiny-imagenet-200`` folder as its archive unpacks: ``wnids.txt`` (the
200 WordNet ids), ``train/<wnid>/images/*.JPEG``, and ``val/images/*.JPEG``
with ``val/val_annotations.txt`` (tab-separated: file name, wnid, box).

Preprocessing: JPEGs decoded with Pillow (installed with matplotlib), the
few grey-level images converted to RGB, uint8 pixels divided by 255 to
float32 in [0, 1], shape (64, 64, 3); label = the wnid's index in sorted
order, int32.  The training set is ``train/``, the test set ``val/`` (the
usual practice, since the test labels are not public).  The full training
set takes 4.9 GB as float32.  With ``normalize = "standard"``, then per
channel ``(x - (0.4802, 0.4481, 0.3975)) / (0.2770, 0.2691, 0.2821)``: the
mean and standard deviation over every pixel of the 100,000 training
images, as commonly used (not recomputed here: the data is not on the
machine this was written on), rather than ImageNet's (0.485, 0.456, 0.406)
/ (0.229, 0.224, 0.225).
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

SHAPE = (64, 64, 3)
CLASSES = 200
_EXPECTED = ('"FOLDER" holding Tiny ImageNet as its archive unpacks (tiny-imagenet-200: wnids.txt, '
             'train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt)')


@attrs.frozen
class TinyImagenet(Dataset):
    """Tiny ImageNet (Le and Yang 2015): 200 classes, 64x64x3, from the local tiny-imagenet-200 folder.

    100,000 training images (``train/``) and 10,000 labelled validation
    images (``val/``, used as the test set).  ``path``: the
    ``tiny-imagenet-200`` folder, or the folder holding it.  Labels are the
    indices of the sorted WordNet ids of ``wnids.txt``."""

    paper = "Le and Yang 2015, CS231N report, Stanford"

    path: str = param(doc="the tiny-imagenet-200 folder (wnids.txt, train/, val/) or the folder holding it")
    normalize: str = normalize_param()

    STATS: ClassVar[ChannelStats] = ChannelStats(
        (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821), "every pixel of the 100,000 training images")

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=CLASSES, input_shape=SHAPE)

    def check(self, facts: Facts) -> list[str]:
        return path_problem("tiny_imagenet", self.path, _EXPECTED)

    def root(self) -> Path:
        location = Path(os.path.expanduser(self.path))
        if not (location / "wnids.txt").is_file() and (location / "tiny-imagenet-200" / "wnids.txt").is_file():
            return location / "tiny-imagenet-200"
        return location

    def load(self, seed: int) -> DatasetArrays:
        root = self.root()
        wnids = self._wnids(root)
        label = {wnid: i for i, wnid in enumerate(wnids)}
        train_files, train_labels = [], []
        for wnid in wnids:
            files = sorted((root / "train" / wnid / "images").glob("*.JPEG"))
            if not files:
                raise RunError(f"tiny_imagenet: no images in {root / 'train' / wnid / 'images'} (class {wnid} "
                               f"of wnids.txt); expected {_EXPECTED}")
            train_files += files
            train_labels += [label[wnid]] * len(files)
        test_files, test_labels = self._validation(root, label)
        where = f"tiny_imagenet at {root}"
        train_x, train_y = checked(where, decode_images(train_files, SHAPE, "tiny_imagenet"),
                                   np.array(train_labels), SHAPE, CLASSES)
        test_x, test_y = checked(where, decode_images(test_files, SHAPE, "tiny_imagenet"),
                                 np.array(test_labels), SHAPE, CLASSES)
        arrays = DatasetArrays(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, info=self.info())
        return normalized(arrays, self.normalize, self.STATS, where)

    @staticmethod
    def _wnids(root: Path) -> list[str]:
        file = root / "wnids.txt"
        if not file.is_file():
            raise RunError(f"tiny_imagenet: {root} has no wnids.txt; give path = {_EXPECTED}")
        wnids = [line.strip() for line in file.read_text(errors="replace").splitlines() if line.strip()]
        if len(set(wnids)) != CLASSES or len(wnids) != CLASSES:
            raise RunError(f"tiny_imagenet: {file} lists {len(wnids)} ids ({len(set(wnids))} distinct); "
                           f"Tiny ImageNet has {CLASSES}")
        return sorted(wnids)

    @staticmethod
    def _validation(root: Path, label: dict[str, int]) -> tuple[list[Path], list[int]]:
        annotations = root / "val" / "val_annotations.txt"
        if not annotations.is_file():
            raise RunError(f"tiny_imagenet: {annotations} does not exist; expected {_EXPECTED}")
        files, labels = [], []
        for number, line in enumerate(annotations.read_text(errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in label:
                raise RunError(f"tiny_imagenet: {annotations}, line {number}: expected 'FILE<tab>WNID<tab>box', "
                               f"WNID one of wnids.txt; got {line[:80]!r}")
            file = root / "val" / "images" / fields[0]
            if not file.is_file():
                raise RunError(f"tiny_imagenet: {annotations}, line {number} names {file}, which does not exist")
            files.append(file), labels.append(label[fields[1]])
        if not files:
            raise RunError(f"tiny_imagenet: {annotations} lists no images")
        return files, labels


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("tiny_imagenet", TinyImagenet)
