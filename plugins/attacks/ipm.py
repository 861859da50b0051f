"""Inner product manipulation (IPM): every attacker sends the negated,
scaled benign mean, so that the aggregate's inner product with the true
gradient turns negative.

Paper: C. Xie, O. Koyejo and I. Gupta, 2020, "Fall of Empires: Breaking
Byzantine-tolerant SGD by Inner Product Manipulation", UAI:

    u' = -epsilon * mean(reference rows)

(epsilon = 0.1 defeats Krum, epsilon = 100 the mean, in the paper).

>>> ipm(tf.constant([[1.0, 2.0], [3.0, -2.0]]), epsilon=0.5).numpy().tolist()
[-1.0, -0.0]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf  # noqa: F401 (the doctest uses it)
from fedarena.plugins._tensor import column_mean
from fedarena.plugins.attacks._common import KNOWLEDGE, KNOWLEDGE_DOC, UpdateAttack, reference_rows


def ipm(reference, epsilon):
    """The crafted row: ``-epsilon`` times the mean of the ``reference`` rows."""
    return -epsilon * column_mean(reference)


@attrs.frozen
class IPM(UpdateAttack):
    """Inner product manipulation (Xie et al. 2020, "Fall of Empires:
    Breaking Byzantine-tolerant SGD by Inner Product Manipulation", UAI):
    every attacker sends ``-epsilon`` times the mean of the reference
    updates.  The paper: epsilon = 0.1 defeats Krum, epsilon = 100 the mean."""

    paper = "Xie et al. 2020, UAI"

    epsilon: float = param(0.1, doc="scale of the negated reference mean", gt=0)
    knowledge: str = param("omniscient", doc=KNOWLEDGE_DOC, choices=KNOWLEDGE)

    def craft(self, updates, own, benign, ctx):
        return ipm(reference_rows(updates, own, benign, self.knowledge), self.epsilon)


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("ipm", IPM)
