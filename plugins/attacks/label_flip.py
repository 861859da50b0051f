"""Label flipping: malicious clients train on samples of one class
labelled as another.

Paper: V. Tolpegin, S. Truex, M. E. Gursoy and L. Liu, 2020, "Data
Poisoning Attacks Against Federated Learning Systems", ESORICS.  Each
eligible sample (x, y) of a malicious client is, with probability
``poison_ratio``, replaced by

    (x, target)                       mode targeted, where y = source (the paper)
    (x, target)                       mode all_to_one, every sample
    (x, (y + r) mod C), r ~ U{1..C-1} mode random

Deviation: the ``all_to_one`` and ``random`` modes and ``poison_ratio`` are
additions; draws come anew each round from the client's stateless seed.

>>> y = tf.constant([0, 1, 2, 1])
>>> flip_labels(y, tf.constant([1, 2], tf.int64), "targeted", source=1, target=0, ratio=1.0,
...             num_classes=3).numpy().tolist()
[0, 0, 2, 0]
"""

from __future__ import annotations

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Attack
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins.attacks._common import rate


def flip_labels(y, seed, mode, source, target, ratio, num_classes):
    """The labels ``y`` [n] with the chosen samples flipped (see the module
    docstring); ``seed`` is the client's int64 [2] stateless seed."""
    n = tf.shape(y)[0]
    chosen = tf.random.stateless_uniform([n], seed) < ratio
    if mode == "targeted":
        flip, new = chosen & tf.equal(y, source), tf.fill([n], tf.constant(target, y.dtype))
    elif mode == "all_to_one":
        flip, new = chosen, tf.fill([n], tf.constant(target, y.dtype))
    else:
        offset = tf.random.stateless_uniform(
            [n], seed + 1, minval=1, maxval=num_classes, dtype=tf.int32
        )
        flip, new = chosen, (y + tf.cast(offset, y.dtype)) % num_classes
    return tf.where(flip, new, y)


@attrs.frozen
class LabelFlip(Attack):
    """Label flipping (Tolpegin et al. 2020, "Data Poisoning Attacks Against
    Federated Learning Systems", ESORICS).

    Modes: ``targeted`` relabels samples of class ``source`` as ``target``
    (the paper's attack); ``all_to_one`` relabels every sample as ``target``;
    ``random`` relabels each sample as a uniformly drawn other class.
    ``poison_ratio`` is the share of eligible samples flipped, drawn anew
    each round from the client's stateless seed.

    Test metrics: mode ``targeted`` reports ``source_recall`` (share of
    source-class test samples classified as the source, the paper's measure)
    and ``flip_rate`` (share of them classified as the target); mode
    ``all_to_one`` reports ``flip_rate`` over the test samples of every other
    class; mode ``random`` reports nothing (clean accuracy says it all).
    """

    paper = "Tolpegin et al. 2020, ESORICS"

    poisons_data = True

    source: int | None = param(None, doc="class whose samples are relabelled (mode targeted)", ge=0)
    target: int | None = param(None, doc="class the flipped samples get (modes targeted, all_to_one)", ge=0)
    mode: str = param("targeted", doc="which labels flip", choices=("targeted", "all_to_one", "random"))
    poison_ratio: float = param(1.0, doc="share of eligible samples flipped", gt=0, le=1)

    def check(self, facts):
        problems = []
        needs = {"targeted": ("source", "target"), "all_to_one": ("target",), "random": ()}[self.mode]
        for name in needs:
            if getattr(self, name) is None:
                problems.append(f"label_flip mode '{self.mode}' needs '{name}'")
        for name in ("source", "target"):
            value = getattr(self, name)
            if value is not None and value >= facts.num_classes:
                problems.append(
                    f"label_flip {name} {value} is not a class of this dataset (classes 0..{facts.num_classes - 1})"
                )
        if self.mode == "targeted" and self.source is not None and self.source == self.target:
            problems.append("label_flip source and target are the same class: nothing would flip")
        return problems

    def poison_data(self, x, y, seed, facts, member):
        return x, flip_labels(y, seed, self.mode, self.source, self.target, self.poison_ratio, facts.num_classes)

    def test_metrics(self, predict, test_x, test_y, facts):
        if self.mode == "targeted":
            pick = test_y == self.source
            if not pick.any():
                return {"source_recall": float("nan"), "flip_rate": float("nan")}
            predicted = np.argmax(predict(test_x[pick]), axis=1)
            return {"source_recall": rate(predicted == self.source), "flip_rate": rate(predicted == self.target)}
        if self.mode == "all_to_one":
            pick = test_y != self.target
            if not pick.any():
                return {"flip_rate": float("nan")}
            return {"flip_rate": rate(np.argmax(predict(test_x[pick]), axis=1) == self.target)}
        return {}


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("label_flip", LabelFlip)
