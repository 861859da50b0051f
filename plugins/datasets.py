"""Built-in datasets."""

from __future__ import annotations

import attrs
import numpy as np

from fedarena.core.hookspecs import hookimpl
from fedarena.core.interfaces import Dataset, DatasetArrays, DatasetInfo
from fedarena.core.params import param


def _holdout(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, info: DatasetInfo) -> DatasetArrays:
    """Split one labelled array into train and test, reproducibly."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return DatasetArrays(
        train_x=x[train], train_y=y[train], test_x=x[test], test_y=y[test], info=info
    )


@attrs.frozen
class Digits(Dataset):
    """scikit-learn's 1,797 handwritten 8x8 digits (ships with scikit-learn, offline)."""

    test_fraction: float = param(0.2, doc="share of samples held out at the server for testing", gt=0, lt=1)

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=10, input_shape=(8, 8, 1))

    def load(self, seed: int) -> DatasetArrays:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)[..., None]
        y = digits.target.astype(np.int32)
        # The held-out test set depends only on the dataset, not on the run's
        # seed, so that runs with different seeds are scored on the same data.
        return _holdout(x, y, self.test_fraction, 0, self.info())


@attrs.frozen
class Synthetic(Dataset):
    """Seeded Gaussian class clusters: a tiny, fast, learnable dataset for tests."""

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
        return _holdout(x, y, self.test_fraction, self.data_seed, self.info())


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("digits", Digits)
    registry.add("synthetic", Synthetic)
