"""``mnist``: MNIST handwritten digits.

Source: Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based
learning applied to document recognition", Proceedings of the IEEE 86(11),
1998.  60,000 training and 10,000 test images of 28x28 grey levels, 10
classes; from the standard loader's cache (Keras' ``mnist.npz`` in
``~/.keras/datasets``, 11 MB, written by ``fedarena data fetch mnist``,
SHA-256 as Keras' loader declares it) or from local IDX or ``.npz`` files
(``_idx``).

Preprocessing: uint8 pixels divided by 255 to float32 in [0, 1], with a
channel axis, (28, 28, 1); labels int32.  With ``holdout = N``, N samples
of one labelled set (fixed seed 0) become the test set.  With ``normalize
= "standard"``, then ``(x - 0.1307) / 0.3081``, train and test alike: the
mean and standard deviation of the 60,000 training images' pixels, the
values of PyTorch's MNIST example (``pytorch/examples``, ``mnist/main.py``)
and of the papers that follow it (also with ``holdout``: the 8,000 images
left of the t10k files give 0.1325 / 0.3104).
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.plugins.datasets._common import ChannelStats
from fedarena.plugins.datasets._download import RemoteFile, Source
from fedarena.plugins.datasets._idx import IdxDataset, idx_path_hint

KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


@attrs.frozen
class Mnist(IdxDataset):
    """MNIST handwritten digits (LeCun et al. 1998), from Keras' cache or local IDX / .npz files.

    60,000 training and 10,000 test images, 28x28 grey levels, 10 classes.
    ``path``: a folder with the IDX files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``, each gzipped or not; a ``SHA256SUMS`` beside
    them is checked), or Keras' ``mnist.npz``.  With only the t10k pair,
    set ``holdout`` to split it."""

    paper = "LeCun et al. 1998, Proc. IEEE"

    NAME: ClassVar[str] = "mnist"
    STATS: ClassVar[ChannelStats] = ChannelStats(
        (0.1307,), (0.3081,), "the 60,000 training images; PyTorch's MNIST example (pytorch/examples)")
    SOURCE: ClassVar[Source] = Source(
        dataset="mnist", loader="keras", size="11 MB", path_hint=idx_path_hint("mnist"),
        files=(RemoteFile("datasets/mnist.npz", KERAS_ORIGIN + "mnist.npz",
                          sha256="731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),),
    )


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("mnist", Mnist)
