"""What each kind of plugin provides.

A plugin is a frozen attrs class that subclasses one of these and declares
its parameters with `fedarena.core.params.param`.  Methods marked "in TF"
run inside TFF computations: they take and return tensors and must not
call back into Python state.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np


@attrs.frozen
class DatasetInfo:
    """What can be known of a dataset without loading it."""

    num_classes: int
    input_shape: tuple[int, ...]


@attrs.frozen(eq=False)
class DatasetArrays:
    """A loaded dataset: features as float32, labels as int32."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    info: DatasetInfo


@attrs.frozen
class Facts:
    """What plugins may know of the scenario they run in, for checks and sizing."""

    num_clients: int
    clients_per_round: int
    num_classes: int
    input_shape: tuple[int, ...]
    server_learning_rate: float = 1.0
    num_attackers: int = 0


class Plugin:
    """Base of every plugin class; ``kind`` names its registry."""

    kind: ClassVar[str] = ""

    def check(self, facts: Facts) -> list[str]:
        """Rules that need the rest of the scenario; messages, empty if fine.
        Called by the checker before anything runs."""
        return []


class Dataset(Plugin):
    kind = "dataset"

    def info(self) -> DatasetInfo:
        raise NotImplementedError

    def load(self, seed: int) -> DatasetArrays:
        raise NotImplementedError


class Split(Plugin):
    kind = "split"

    def partition(self, labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Indices of the training samples of each client (deterministic in ``rng``)."""
        raise NotImplementedError


class Model(Plugin):
    kind = "model"

    def build(self, input_shape: tuple[int, ...], num_classes: int):
        """A new, uncompiled Keras model returning logits."""
        raise NotImplementedError


class Optimizer(Plugin):
    kind = "optimizer"

    def build(self):
        """A `tff.learning.optimizers.Optimizer` for local training."""
        raise NotImplementedError


class Attack(Plugin):
    """An attack acts on its own clients' data (``poison_data``), on their
    updates at the server stage (``poison_updates``), or both."""

    kind = "attack"
    poisons_data: ClassVar[bool] = False
    poisons_updates: ClassVar[bool] = False

    def poison_data(self, x, y, seed, facts: Facts):
        """In TF: a malicious client's (features, labels) -> poisoned ones.
        ``seed`` is an int32[2] stateless seed unique to the client and round."""
        return x, y

    def poison_updates(self, updates, own, benign, facts: Facts):
        """In TF: the round's ``[K, d]`` update matrix -> the same with this
        attack's rows (``own``, bool ``[K]``) replaced.  ``benign`` marks the
        rows an omniscient attacker may read."""
        return updates


class Detector(Plugin):
    kind = "detector"

    def detect(self, updates, keep, facts: Facts):
        """In TF: ``[K, d]`` updates and the rows still kept -> (score ``[K]``,
        keep ``[K]``); rows dropped earlier must stay dropped."""
        raise NotImplementedError


class Aggregator(Plugin):
    kind = "aggregator"

    def aggregate(self, updates, weights, facts: Facts):
        """In TF: ``[K, d]`` updates and ``[K]`` example counts (zero for rows
        dropped by detectors) -> (aggregate ``[d]``, effective weight per row
        ``[K]``)."""
        raise NotImplementedError


class Metric(Plugin):
    kind = "metric"

    def compute(self, labels: np.ndarray, logits: np.ndarray) -> float:
        """A test-set metric from true labels and model logits."""
        raise NotImplementedError


KINDS: dict[str, type[Plugin]] = {
    cls.kind: cls for cls in (Dataset, Split, Model, Optimizer, Attack, Detector, Aggregator, Metric)
}
