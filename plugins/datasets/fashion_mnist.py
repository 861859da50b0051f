"""``fashion_mnist``: Fashion-MNIST, Zalando's article images in MNIST's format.

Source: H. Xiao, K. Rasul and R. Vollgraf, "Fashion-MNIST: a Novel Image
Dataset for Benchmarking Machine Learning Algorithms", arXiv:1708.07747,
2017.  60,000 training and 10,000 test images of 28x28 grey levels, 10
classes; read with Keras' loader (downloaded once to ``~/.keras/datasets``)
or from local IDX or ``.npz`` files with MNIST's file names (``_idx``).

Preprocessing: as ``mnist``: uint8 pixels divided by 255 to float32 in
[0, 1], with a channel axis, (28, 28, 1); labels int32.  With
``holdout = N``, N samples of one labelled set (fixed seed 0) become the
test set.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.plugins.datasets._idx import IdxDataset


@attrs.frozen
class FashionMnist(IdxDataset):
    """Fashion-MNIST (Xiao et al. 2017), from Keras or local IDX / .npz files.

    Zalando article images in MNIST's format and sizes (60,000 / 10,000,
    28x28 grey levels, 10 classes).  ``path``: as for ``mnist`` (same IDX file names, or a Keras-layout
    ``.npz``)."""

    paper = "Xiao et al. 2017, arXiv:1708.07747"

    NAME: ClassVar[str] = "fashion_mnist"


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("fashion_mnist", FashionMnist)
