"""``mnist``: MNIST handwritten digits.

Source: Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based
learning applied to document recognition", Proceedings of the IEEE 86(11),
1998.  60,000 training and 10,000 test images of 28x28 grey levels, 10
classes; read with Keras' loader (downloaded once to ``~/.keras/datasets``)
or from local IDX or ``.npz`` files (``_idx``).

Preprocessing: uint8 pixels divided by 255 to float32 in [0, 1], with a
channel axis, (28, 28, 1); labels int32.  With ``holdout = N``, N samples
of one labelled set (fixed seed 0) become the test set.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.plugins.datasets._idx import IdxDataset


@attrs.frozen
class Mnist(IdxDataset):
    """MNIST handwritten digits (LeCun et al. 1998), from Keras or local IDX / .npz files.

    60,000 training and 10,000 test images, 28x28 grey levels, 10 classes.
    ``path``: a folder with the IDX files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``, each gzipped or not; a ``SHA256SUMS`` beside
    them is checked), or Keras' ``mnist.npz``.  With only the t10k pair,
    set ``holdout`` to split it."""

    paper = "LeCun et al. 1998, Proc. IEEE"

    NAME: ClassVar[str] = "mnist"


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("mnist", Mnist)
