"""What several built-in attacks share beyond tensor math (that is in
``fedarena.plugins._tensor``): the ``knowledge`` parameter, the base of the
model-poisoning attacks, the sample choice of data poisoning."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from fedarena.core.plugin.interfaces import Attack
from fedarena.plugins import _tf as tf

KNOWLEDGE = ("omniscient", "partial")
KNOWLEDGE_DOC = "reference updates: 'omniscient' the round's benign rows, 'partial' the attackers' own rows before the attack"


def reference_rows(updates, own, benign, knowledge):
    """The rows a model-poisoning attack reads: the ``benign`` rows for
    ``"omniscient"`` knowledge, the attack's ``own`` rows (before the attack)
    for ``"partial"``."""
    return tf.boolean_mask(updates, benign if knowledge == "omniscient" else own)


class UpdateAttack(Attack):
    """Base of the model-poisoning attacks: ``craft`` returns the new own
    rows (``[K, d]``, or one ``[d]`` row sent by every attacker)."""

    poisons_updates: ClassVar[bool] = True

    def craft(self, updates, own, benign, ctx):
        raise NotImplementedError

    def poison_updates(self, updates, own, benign, ctx):
        updates = tf.convert_to_tensor(updates)
        own = tf.convert_to_tensor(own, tf.bool)
        benign = tf.convert_to_tensor(benign, tf.bool)

        def attacked():
            crafted = tf.cast(self.craft(updates, own, benign, ctx), updates.dtype)
            return tf.where(own[:, None], tf.broadcast_to(crafted, tf.shape(updates)), updates)

        return tf.cond(tf.reduce_any(own), attacked, lambda: updates)


def rate(hits: np.ndarray) -> float:
    """The share of true values (NaN when there are none)."""
    return float(np.mean(hits)) if hits.size else float("nan")


def poisoned_rows(n, ratio: float, seed):
    """In TF: the samples a data-poisoning attack changes, exactly
    ``round(ratio * n)`` of ``n`` drawn from the stateless seed -> (bool
    ``[n]``, int32 ``[n]`` ranks of a random permutation: the chosen samples
    are those of rank below the count)."""
    count = tf.cast(tf.round(ratio * tf.cast(n, tf.float32)), tf.int32)
    ranks = tf.math.invert_permutation(tf.argsort(tf.random.stateless_uniform([n], seed)))
    return ranks < count, ranks


def target_problems(name: str, target: int, facts) -> list[str]:
    """The check of an attack's ``target`` class."""
    if target >= facts.num_classes:
        return [f"{name} target {target} is not a class of this dataset (classes 0..{facts.num_classes - 1})"]
    return []
