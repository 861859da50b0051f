"""Sign flipping: the attacker sends a negated update.

"Sign flipping" has four meanings in the literature; three replace the
submitted update and are provided here:

    own:          u' = -u                     (the attacker's own update)
    benign_mean:  u' = -mean(reference rows)
    scaled:       u' = -scale * u             (scale 4: the sign-flipping attack of
                                               L. Li, W. Xu, T. Chen, G. B. Giannakis
                                               and Q. Ling, 2019, "RSA: Byzantine-Robust
                                               Stochastic Aggregation Methods for
                                               Distributed Learning from Heterogeneous
                                               Datasets", AAAI)

The fourth, gradient negation during local training, changes local
training rather than the submitted update and is not provided.

>>> rows = tf.constant([[1.0, -2.0], [3.0, 0.5], [-1.0, 1.0]])
>>> sign_flip(rows, "scaled", 4.0).numpy().tolist()
[[-4.0, 8.0], [-12.0, -2.0], [4.0, -4.0]]
>>> sign_flip(rows, "benign_mean", 4.0, reference=rows).numpy().astype(float).round(3).tolist()
[-1.0, 0.167]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf  # noqa: F401 (the doctest uses it)
from fedarena.plugins._tensor import column_mean
from fedarena.plugins.attacks._common import KNOWLEDGE, KNOWLEDGE_DOC, UpdateAttack, reference_rows


def sign_flip(updates, variant, scale, reference=None):
    """The crafted rows: ``-updates`` (``"own"``), ``-scale * updates``
    (``"scaled"``), or one row, minus the mean of ``reference``
    (``"benign_mean"``)."""
    if variant == "own":
        return -updates
    if variant == "scaled":
        return -scale * updates
    return -column_mean(reference)


@attrs.frozen
class SignFlip(UpdateAttack):
    """Sign flipping, in the update-replacement forms (of the four meanings
    found in practice; the fourth is below).

    ``variant``: ``"own"`` (default) sends the attacker's own update negated;
    ``"benign_mean"`` sends the negated mean of the reference updates
    (``knowledge``); ``"scaled"`` sends ``-scale`` times its own update
    (default factor -4, the value of the sign-flipping attack in Li et al.
    2019, "RSA", AAAI).  Gradient negation during
    local training -- the fourth meaning -- changes local training, not the
    submitted update, and is not provided here.
    """

    paper = "common practice; variant scaled: Li et al. 2019, AAAI"

    variant: str = param("own", doc="what is negated", choices=("own", "benign_mean", "scaled"))
    scale: float = param(4.0, doc="factor of the 'scaled' variant: the row sent is -scale * own update", gt=0)
    knowledge: str = param("omniscient", doc=KNOWLEDGE_DOC + " (variant benign_mean)", choices=KNOWLEDGE)

    def craft(self, updates, own, benign, ctx):
        reference = reference_rows(updates, own, benign, self.knowledge) if self.variant == "benign_mean" else None
        return sign_flip(updates, self.variant, self.scale, reference)


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("sign_flip", SignFlip)
