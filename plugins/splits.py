"""Built-in splits: how the training set is divided among clients."""

from __future__ import annotations

import attrs
import numpy as np

from fedarena.core.hookspecs import hookimpl
from fedarena.core.interfaces import Split


@attrs.frozen
class IID(Split):
    """Independent and identically distributed: a seeded shuffle cut into equal parts."""

    def partition(self, labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
        return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), num_clients)]


@hookimpl
def fedarena_register_splits(registry):
    registry.add("iid", IID)
