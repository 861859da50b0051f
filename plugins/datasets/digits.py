"""``digits``: scikit-learn's handwritten digits, offline.

Source: the test part of the UCI "Optical Recognition of Handwritten
Digits" data set as shipped with scikit-learn (``sklearn.datasets.load_digits``):
1,797 images of 8x8 cells, each the count (0..16) of set pixels in a 4x4
block of a 32x32 bitmap, 10 classes.  Cite: E. Alpaydin and C. Kaynak,
"Optical Recognition of Handwritten Digits", UCI Machine Learning
Repository, 1998.

Preprocessing: counts divided by 16 to float32 in [0, 1], shape (8, 8, 1);
labels int32.  A share ``test_fraction`` of the samples, drawn with a fixed
seed (0, not the run's), is held out as the test set.  With ``normalize =
"standard"``, then ``(x - 0.3049) / 0.3759``: the mean and standard
deviation of the pixels of the 1,438 training samples of the default
``test_fraction`` (0.2), computed here once (all 1,797 samples: 0.3053 /
0.3760); the same numbers for any ``test_fraction``.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Dataset, DatasetArrays, DatasetInfo
from fedarena.core.plugin.params import param
from fedarena.plugins.datasets._common import ChannelStats, holdout_split, normalize_param, normalized


@attrs.frozen
class Digits(Dataset):
    """scikit-learn's 1,797 handwritten 8x8 digits (ships with scikit-learn, offline)."""

    paper = "Alpaydin and Kaynak 1998, UCI Machine Learning Repository"

    test_fraction: float = param(0.2, doc="share of samples held out at the server for testing", gt=0, lt=1)
    normalize: str = normalize_param()

    STATS: ClassVar[ChannelStats] = ChannelStats(
        (0.3049,), (0.3759,), "the 1,438 training samples of test_fraction = 0.2, computed once")

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=10, input_shape=(8, 8, 1))

    def load(self, seed: int) -> DatasetArrays:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)[..., None]
        y = digits.target.astype(np.int32)
        # The held-out test set depends only on the dataset, not on the run's
        # seed, so that runs with different seeds are scored on the same data.
        return normalized(holdout_split(x, y, self.test_fraction, 0, self.info()), self.normalize, self.STATS,
                          "digits")


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("digits", Digits)
