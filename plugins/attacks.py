"""Built-in attacks."""

from __future__ import annotations

import attrs

from fedarena.core.hookspecs import hookimpl
from fedarena.core.interfaces import Attack
from fedarena.core.params import param


@attrs.frozen
class LabelFlip(Attack):
    """Label flipping (Tolpegin et al. 2020, "Data Poisoning Attacks Against
    Federated Learning Systems", ESORICS).

    Modes: ``targeted`` relabels samples of class ``source`` as ``target``
    (the paper's attack); ``all_to_one`` relabels every sample as ``target``;
    ``random`` relabels each sample as a uniformly drawn other class.
    ``poison_ratio`` is the share of eligible samples flipped, drawn anew
    each round from the client's stateless seed.
    """

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
        import tensorflow as tf

        n = tf.shape(y)[0]
        chosen = tf.random.stateless_uniform([n], seed) < self.poison_ratio
        if self.mode == "targeted":
            flip, new = chosen & tf.equal(y, self.source), tf.fill([n], tf.constant(self.target, y.dtype))
        elif self.mode == "all_to_one":
            flip, new = chosen, tf.fill([n], tf.constant(self.target, y.dtype))
        else:
            offset = tf.random.stateless_uniform(
                [n], seed + 1, minval=1, maxval=facts.num_classes, dtype=tf.int32
            )
            flip, new = chosen, (y + tf.cast(offset, y.dtype)) % facts.num_classes
        return x, tf.where(flip, new, y)


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("label_flip", LabelFlip)
