"""``fashion_mnist``: Fashion-MNIST, Zalando's article images in MNIST's format.

Source: H. Xiao, K. Rasul and R. Vollgraf, "Fashion-MNIST: a Novel Image
Dataset for Benchmarking Machine Learning Algorithms", arXiv:1708.07747,
2017.  60,000 training and 10,000 test images of 28x28 grey levels, 10
classes; from the standard loader's cache (Keras' four IDX ``.gz`` files in
``~/.keras/datasets/fashion-mnist``, 30 MB, written by ``fedarena data
fetch fashion_mnist``) or from local IDX or ``.npz`` files with MNIST's file
names (``_idx``).  Keras' loader declares no checksum; the SHA-256 values
here are those of the files Zalando publishes (whose README gives their
MD5s), which Keras' mirror serves.

Preprocessing: as ``mnist``: uint8 pixels divided by 255 to float32 in
[0, 1], with a channel axis, (28, 28, 1); labels int32.  With
``holdout = N``, N samples of one labelled set (fixed seed 0) become the
test set.  With ``normalize = "standard"``, then ``(x - 0.2860) /
0.3530``: the mean and standard deviation of the 60,000 training images'
pixels, as commonly used (not recomputed here: the data is not on the
machine this was written on).
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.plugins.datasets._common import ChannelStats
from fedarena.plugins.datasets._download import RemoteFile, Source
from fedarena.plugins.datasets._idx import IdxDataset, idx_path_hint
from fedarena.plugins.datasets.mnist import KERAS_ORIGIN

# Keras' loader downloads these four, in this order, to datasets/fashion-mnist.
_FILES = (
    ("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    ("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    ("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    ("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
)


@attrs.frozen
class FashionMnist(IdxDataset):
    """Fashion-MNIST (Xiao et al. 2017), from Keras' cache or local IDX / .npz files.

    Zalando article images in MNIST's format and sizes (60,000 / 10,000,
    28x28 grey levels, 10 classes).  ``path``: as for ``mnist`` (same IDX file names, or a Keras-layout
    ``.npz``)."""

    paper = "Xiao et al. 2017, arXiv:1708.07747"

    NAME: ClassVar[str] = "fashion_mnist"
    STATS: ClassVar[ChannelStats] = ChannelStats((0.2860,), (0.3530,), "the 60,000 training images, as commonly used")
    SOURCE: ClassVar[Source] = Source(
        dataset="fashion_mnist", loader="keras", size="30 MB", path_hint=idx_path_hint("fashion_mnist"),
        files=tuple(RemoteFile(f"datasets/fashion-mnist/{name}", KERAS_ORIGIN + name, sha256=digest)
                    for name, digest in _FILES),
    )


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("fashion_mnist", FashionMnist)
