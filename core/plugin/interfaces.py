"""What each kind of plugin provides.

A plugin is a frozen attrs class that subclasses one of these and declares
its parameters with `fedarena.core.plugin.params.param`.  Methods marked "in TF"
run inside TFF computations: they take and return tensors and must not
call back into Python state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np


@attrs.frozen
class DatasetInfo:
    """What can be known of a dataset without loading it."""

    num_classes: int
    input_shape: tuple[int, ...]
    # Each training sample has a writer (a natural client), for the
    # ``natural`` split (`fedarena.plugins.datasets._writers`).
    has_writers: bool = False


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
    root_samples: int = 0  # clean samples the server holds (training setting root_samples)
    # The folder of the scenario file ("" when there is none: the working
    # directory); relative paths in plugin parameters are read from here.
    scenario_dir: str = ""
    has_writers: bool = False  # the dataset's training samples have writers (DatasetInfo.has_writers)
    protocol: str = "fedavg"  # the training protocol: "fedavg" (local epochs) or "fedsgd" (one gradient)

    def resolve(self, path: str) -> Path:
        """A path given in a plugin parameter: ``~`` expanded, and a relative
        path taken from the scenario file's folder (`scenario_dir`)."""
        return resolve_path(path, self.scenario_dir)


def resolve_path(path: str, folder: str) -> Path:
    """``path`` with ``~`` expanded, and taken from ``folder`` ("" for the
    working directory) when relative: how a scenario's file names are read."""
    location = Path(os.path.expanduser(path))
    return location if location.is_absolute() else Path(folder or ".") / location


@attrs.frozen
class Layer:
    """One weight tensor of the model, as a slice of the flat update vector."""

    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@attrs.frozen(eq=False)
class ServerContext:
    """What the server stage knows in a round.  Fields other than ``facts``
    and ``layers`` are tensors (this is used inside TF computations)."""

    facts: Facts
    layers: tuple[Layer, ...]
    client_ids: Any  # int32 [K]: the client of each row
    num_examples: Any  # float32 [K]
    global_weights: Any  # float32 [d]: the model the clients started from
    round: Any  # int32 scalar, 1-based
    seed: Any  # int64 [2]: stateless seed unique to this round
    # The server's own update this round: local training on its root
    # samples from the global model, as a client would (only computed when
    # a plugin sets ``needs_root_update``; FLTrust's g0).
    root_update: Any = None

    def take(self, index) -> "ServerContext":
        """The context of the rows ``index`` (int ``[n]``) only: per-row
        fields (``client_ids``, ``num_examples``) gathered, the rest as is.
        The server stage hands detectors and aggregators the kept rows with
        such a context."""
        import tensorflow as tf

        return attrs.evolve(self, client_ids=tf.gather(self.client_ids, index),
                            num_examples=tf.gather(self.num_examples, index))

    def columns(self, layer_names: tuple[str, ...] | None):
        """Indices of the update columns belonging to the named layers
        (a layer matches if its name contains one of the given names)."""
        if not layer_names:
            return None
        picked = [np.arange(l.offset, l.offset + l.size) for l in self.layers
                  if any(name in l.name for name in layer_names)]
        return np.concatenate(picked) if picked else np.zeros([0], np.int64)


@attrs.frozen
class RunInfo:
    """What the lifecycle hooks receive about a run (`fedarena_run_start`,
    `fedarena_round_end`, `fedarena_run_end`)."""

    scenario: Any  # the checked `fedarena.core.scenario.check.Scenario`: settings and resolved plugins
    output: str  # the results file's path (a sweep's points share one file)
    workers: tuple[str, ...]  # addresses of the TFF workers the run uses (its own worker's included)


class Plugin:
    """Base of every plugin class; ``kind`` names its registry."""

    kind: ClassVar[str] = ""
    # The paper or source the plugin follows, as a short citation, "Authors
    # Year, Venue" ("Blanchard et al. 2017, NeurIPS"); for a plugin that
    # follows none, a short phrase saying so ("none (standard IID split)").
    # The README's catalogue of the built-in plugins shows it
    # (`fedarena.core.plugin.docs`); the docstring gives the full reference.
    paper: ClassVar[str] = ""
    # Server-stage plugins that read `ServerContext.root_update` say so.
    needs_root_update: ClassVar[bool] = False

    def check(self, facts: Facts) -> list[str]:
        """Rules that need the rest of the scenario; messages, empty if fine.
        Called by the checker before anything runs."""
        return []

    def initial_state(self, dim: int, facts: Facts) -> dict[str, np.ndarray]:
        """State kept across rounds at the server (e.g. per-client history),
        as named arrays of fixed shape; it travels through each round's TFF
        computation and is saved with the run.  Empty for stateless plugins."""
        return {}


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


@attrs.frozen(eq=False)
class Network:
    """A model written as a pure function of its tensors, for models with
    running statistics (BatchNorm), which TFF's conversion of Keras models
    cannot carry.  `Model.network` returns one; ``fedarena.plugins._functional``
    builds them from layer functions.

    ``trainable`` and ``statistics`` are ``(name, initial value)`` pairs in
    the order of the flat vector (trainable tensors first, then statistics).
    ``forward`` is, in TF, ``forward(trainable, statistics, x, training) ->
    (logits, new statistics)``: tuples of tensors in those orders, inputs
    ``[n, *input_shape]``, and ``training`` a Python bool (training uses
    batch statistics and returns the running statistics updated; evaluation
    uses the running ones and returns them unchanged).  ``local`` names the
    tensors each client keeps as its own instead of sharing them (FedBN),
    empty when the model shares everything."""

    trainable: tuple[tuple[str, np.ndarray], ...]
    statistics: tuple[tuple[str, np.ndarray], ...]
    forward: Any
    local: tuple[str, ...] = ()


class Model(Plugin):
    """A model is a Keras model (`build`), or a `Network` (`network`) when
    it has running statistics such as BatchNorm's."""

    kind = "model"

    def build(self, input_shape: tuple[int, ...], num_classes: int):
        """A new, uncompiled Keras model returning logits."""
        raise NotImplementedError

    def network(self, input_shape: tuple[int, ...], num_classes: int, rng: np.random.Generator) -> Network | None:
        """Optional: the model as a `Network`, its initial values drawn from
        ``rng``; the engine then uses it instead of `build`.  None (the
        default) for Keras models."""
        return None


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

    def poison_data(self, x, y, seed, facts: Facts, member):
        """In TF: a malicious client's (features, labels) -> poisoned ones.
        ``seed`` is an int64[2] stateless seed unique to the client and
        round; ``member`` (int32 scalar) is the client's index within its
        attack group (0 .. clients - 1), e.g. for distributed triggers."""
        return x, y

    def test_metrics(self, predict, test_x: np.ndarray, test_y: np.ndarray, facts: Facts) -> dict[str, float]:
        """Metrics of this attack's success on the clean test set, computed
        at each evaluation (e.g. a backdoor's attack success rate).
        ``predict(x)`` returns the global model's logits as NumPy.  Recorded
        in ``/metrics`` as ``<attack group>_<name>``."""
        return {}

    def poison_updates(self, updates, own, benign, ctx: ServerContext):
        """In TF: the round's ``[K, d]`` update matrix -> the same with this
        attack's rows (``own``, bool ``[K]``) replaced.  ``benign`` marks the
        rows an omniscient attacker may read."""
        return updates

    def apply(self, updates, own, benign, ctx: ServerContext, state: dict):
        """In TF: what the server stage calls, state in and state out:
        -> (updates, state).  Attacks with `initial_state` override this;
        the default calls `poison_updates` and passes the state through."""
        return self.poison_updates(updates, own, benign, ctx), state


class Trigger(Plugin):
    """A backdoor trigger, the value of an attack's parameter
    (``backdoor(trigger = pixel(size = 3))``).

    A trigger blends a pattern into an input, ``x' = x * (1 - w) + w *
    pattern``, with weights ``w`` in [0, 1] given as one or more parts: in
    training, the attacker with index ``member`` in its group stamps part
    ``member mod parts`` (distributed triggers); the test-time trigger is
    the sum of the parts.  A trigger states ``weights`` and ``pattern``;
    stamping is done here, the same way for every trigger.
    """

    kind = "trigger"

    def weights(self, input_shape: tuple[int, ...]) -> np.ndarray:
        """float32 ``[parts, *input_shape]``: the weights of each part (one
        part for a trigger every attacker stamps whole); the full trigger's
        weights are their sum."""
        raise NotImplementedError

    def pattern(self, input_shape: tuple[int, ...]) -> np.ndarray:
        """float32 ``input_shape``: the values the trigger blends in."""
        raise NotImplementedError

    def stamp(self, x: np.ndarray, part: int | None = None) -> np.ndarray:
        """NumPy: inputs ``[n, *input_shape]`` stamped with the full trigger
        (``part`` None, as at test time) or with part ``part mod parts``."""
        shape = tuple(x.shape[1:])
        weights = self.weights(shape)
        w = weights.sum(axis=0) if part is None else weights[part % len(weights)]
        return (x * (1.0 - w) + w * self.pattern(shape)).astype(np.float32)

    def stamp_member(self, x, member, input_shape: tuple[int, ...]):
        """In TF: inputs ``[n, *input_shape]`` stamped with the part of the
        attacker ``member`` (int32 scalar, its index in its attack group)."""
        import tensorflow as tf

        shape = tuple(input_shape)
        weights = tf.constant(self.weights(shape))
        w = tf.gather(weights, tf.math.floormod(tf.cast(member, tf.int32), weights.shape[0]))
        return x * (1.0 - w) + w * tf.constant(self.pattern(shape))


class Detector(Plugin):
    """Scores the round's update rows and keeps or drops each.

    The server stage hands a detector only the rows still kept (rows dropped
    earlier, as non-finite or by an earlier detector, never reach it), with
    a context whose per-row fields match those rows; it scatters the results
    back (a dropped row's score is NaN) and skips the detector when no row
    is left."""

    kind = "detector"

    def detect(self, rows, ctx: ServerContext):
        """In TF: the kept rows ``[n, d]`` (``n >= 1``, known only when the
        graph runs) -> (score ``[n]``, keep bool ``[n]``)."""
        raise NotImplementedError

    def apply(self, rows, ctx: ServerContext, state: dict):
        """In TF: what the server stage calls, state in and state out:
        -> (rows, score, keep, state).  Detectors that also change the rows
        they keep (FLAME clips and adds noise) or keep state across rounds
        override this; the default calls `detect`."""
        score, keep = self.detect(rows, ctx)
        return rows, score, keep, state


class Aggregator(Plugin):
    """Combines the round's kept update rows into one update.

    The server stage hands an aggregator only the kept rows (with a context
    whose per-row fields match them), never an empty set (the aggregate is
    then zero), and scatters each row's share back."""

    kind = "aggregator"

    def aggregate(self, rows, weights, ctx: ServerContext):
        """In TF: the kept rows ``[n, d]`` (``n >= 1``, known only when the
        graph runs) and their example counts ``[n]`` (all > 0) ->
        (aggregate ``[d]``, share of each row in the aggregate ``[n]``)."""
        raise NotImplementedError

    def apply(self, rows, weights, ctx: ServerContext, state: dict):
        """In TF: what the server stage calls, state in and state out:
        -> (aggregate, share, state).  Aggregators with `initial_state`
        override this; the default calls `aggregate`."""
        aggregate, share = self.aggregate(rows, weights, ctx)
        return aggregate, share, state


class Metric(Plugin):
    kind = "metric"

    def compute(self, labels: np.ndarray, logits: np.ndarray) -> float:
        """A test-set metric from true labels and model logits."""
        raise NotImplementedError


__all__ = [
    "DatasetInfo", "DatasetArrays", "Facts", "Layer", "ServerContext", "RunInfo", "Plugin", "Dataset", "Split", "Model",
    "Network", "Optimizer", "Attack", "Trigger", "Detector", "Aggregator", "Metric",
]
