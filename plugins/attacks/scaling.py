"""Scaling (model replacement): the attacker scales its update so that
averaging replaces the global model with its own.

Paper: E. Bagdasaryan, A. Veit, Y. Hua, D. Estrin and V. Shmatikov, 2020,
"How To Backdoor Federated Learning", AISTATS.  For the attacker's target
model X and the global model G:

    submitted = gamma (X - G) + G,  i.e.  u' = gamma * u,   gamma = n / eta

(n clients per round, eta the server learning rate).  With ``share`` the
attack's m rows of a round each scale by gamma / m, so that together they
replace the model once.

>>> rows = tf.constant([[1.0, 2.0], [0.5, -1.0]])
>>> scaled_rows(rows, tf.constant([True, False]), gamma=5.0, share=True).numpy().tolist()
[[5.0, 10.0], [2.5, -5.0]]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins.attacks._common import UpdateAttack


def scaled_rows(updates, own, gamma, share=False):
    """``updates`` times ``gamma``, divided by the number of ``own`` rows with ``share``."""
    gamma = tf.constant(gamma, updates.dtype)
    if share:
        gamma = gamma / tf.reduce_sum(tf.cast(own, updates.dtype))
    return gamma * updates


@attrs.frozen
class Scaling(UpdateAttack):
    """Model replacement by scaling (Bagdasaryan et al. 2020, "How To
    Backdoor Federated Learning", AISTATS): the attacker submits
    ``gamma * (X - G) + G`` for its target model ``X``, i.e. its update
    scaled by ``gamma``; ``gamma = n / eta`` (clients per round over the
    server learning rate) unless given, which replaces the global model by
    ``X`` under FedAvg with equal weights when the benign updates cancel.

    The paper has one attacker per round.  With several, each scales its own
    update by ``gamma``; ``share = true`` divides ``gamma`` by the number of
    this attack's rows in the round, so that together they replace the model
    once.  The attacker's target model comes from its local training (pair
    it with a data-poisoning attack's data via a second attack group, or use
    ``backdoor(boost = ...)``, which is this scaling on backdoored updates).
    """

    paper = "Bagdasaryan et al. 2020, AISTATS"

    gamma: float | None = param(None, doc="scale factor; default clients_per_round / server_learning_rate", gt=0)
    share: bool = param(False, doc="divide gamma among this attack's rows in the round")

    def check(self, facts):
        if self.gamma is None and facts.server_learning_rate <= 0:
            return ["scaling needs 'gamma' when the server learning rate is 0"]
        return []

    def factor(self, facts) -> float:
        return float(self.gamma) if self.gamma is not None else facts.clients_per_round / facts.server_learning_rate

    def craft(self, updates, own, benign, ctx):
        return scaled_rows(updates, own, self.factor(ctx.facts), self.share)


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("scaling", Scaling)
