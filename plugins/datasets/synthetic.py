"""``synthetic``: seeded Gaussian class clusters, for tests and quick checks.

Source: none; generated.  ``classes`` centres are drawn from a standard
normal in ``features`` dimensions and rescaled so that their mean norm is
``separation / sqrt(2)`` (about ``separation`` noise standard deviations
between two centres); each of ``samples`` samples takes a uniformly drawn
class and is its centre plus standard normal noise.  Everything derives
from ``data_seed``, not from the run's seed.

Preprocessing: none; features float32 of shape (features,), labels int32.
A share ``test_fraction`` of the samples (drawn with ``data_seed``) is held
out as the test set.
"""

from __future__ import annotations

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Dataset, DatasetArrays, DatasetInfo
from fedarena.core.plugin.params import param
from fedarena.plugins.datasets._common import holdout_split


@attrs.frozen
class Synthetic(Dataset):
    """Seeded Gaussian class clusters: a tiny, fast, learnable dataset for tests."""

    paper = "none (generated)"

    samples: int = param(1000, doc="total number of samples (train and test)", ge=10)
    features: int = param(16, doc="number of input features", ge=1)
    classes: int = param(4, doc="number of classes", ge=2)
    separation: float = param(3.0, doc="distance between class centres, in noise standard deviations", gt=0)
    test_fraction: float = param(0.2, doc="share of samples held out at the server for testing", gt=0, lt=1)
    data_seed: int = param(0, doc="seed of the generated data (independent of the scenario seed)")

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=self.classes, input_shape=(self.features,))

    def load(self, seed: int) -> DatasetArrays:
        rng = np.random.default_rng(self.data_seed)
        centres = rng.normal(size=(self.classes, self.features))
        centres *= self.separation / np.sqrt(2.0) / np.linalg.norm(centres, axis=1, keepdims=True).mean()
        y = rng.integers(0, self.classes, self.samples).astype(np.int32)
        x = (centres[y] + rng.normal(size=(self.samples, self.features))).astype(np.float32)
        return holdout_split(x, y, self.test_fraction, self.data_seed, self.info())


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("synthetic", Synthetic)
