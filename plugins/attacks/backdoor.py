"""Backdoor: malicious clients train on trigger-stamped samples labelled
``target``, so that the model learns to map the trigger to that class.

Papers: T. Gu, B. Dolan-Gavitt and S. Garg, 2017, "BadNets: Identifying
Vulnerabilities in the Machine Learning Model Supply Chain" (arXiv
1708.06733), the pixel-patch backdoor; E. Bagdasaryan, A. Veit, Y. Hua, D.
Estrin and V. Shmatikov, 2020, "How To Backdoor Federated Learning",
AISTATS, and A. N. Bhagoji, S. Chakraborty, P. Mittal and S. Calo, 2019,
"Analyzing Federated Learning through an Adversarial Lens", ICML, for the
boosting.  A chosen sample becomes

    x' = x * (1 - w) + w * pattern,   y' = target

(``w``, ``pattern``: the trigger plugin's), and with ``boost`` > 1 the
attacker's update row u becomes ``boost * u`` at the server.

Deviations: exactly ``round(poison_ratio * n)`` samples are chosen, anew
each round from the client's stateless seed (samples of any class, as
BadNets); boosting scales the finished update at the server stage.

>>> x = tf.zeros([3, 2])
>>> y = tf.constant([1, 2, 3])
>>> px, py = backdoor_samples(x, y, tf.ones([3, 2]), tf.constant([True, False, True]), target=0)
>>> px.numpy().tolist(), py.numpy().tolist()
([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]], [0, 2, 0])
"""

from __future__ import annotations

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Attack, Trigger
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins.attacks._common import poisoned_rows, rate, target_problems
from fedarena.plugins.triggers import Pixel


def backdoor_samples(x, y, stamped, chosen, target, input_rank=None):
    """The samples ``x`` [n, *input_shape] with the ``chosen`` ones (bool [n])
    replaced by ``stamped`` and their labels ``y`` [n] by ``target``
    (``input_rank``: ``len(input_shape)``, by default from ``x``'s shape)."""
    rank = len(x.shape) - 1 if input_rank is None else input_rank
    select = tf.reshape(chosen, [-1] + [1] * rank)
    return tf.where(select, stamped, x), tf.where(chosen, tf.constant(target, y.dtype), y)


def boosted_rows(updates, own, boost):
    """The rows ``own`` (bool [K]) of ``updates`` [K, d] scaled by ``boost``."""
    return tf.where(own[:, None], updates * boost, updates)


@attrs.frozen
class Backdoor(Attack):
    """Backdoor by trigger-stamped samples relabelled to ``target``.

    ``trigger`` is a trigger plugin (``fedarena plugins trigger`` lists
    them): ``pixel`` (BadNets patch, the default), ``blend`` (blended
    pattern, Chen et al. 2017) or ``dba`` (distributed trigger, Xie et al.
    2020), e.g. ``backdoor(target = 0, trigger = pixel(size = 4))``.  An
    attacker stamps the part of the trigger its index in the attack group
    picks (only DBA has several parts); evaluation stamps the whole trigger.

    ``poison_ratio``: exactly ``round(poison_ratio * n)`` of a malicious
    client's ``n`` samples, drawn anew each round from its stateless seed,
    get the trigger and the target label (samples of any class, as BadNets).

    ``boost`` > 1 also scales the attacker's own update rows at the server by
    ``boost`` (explicit boosting, Bhagoji et al. 2019; the scaling of
    Bagdasaryan et al. 2020): averaging with benign rows divides a single
    attacker's contribution by about the number of clients per round, and
    boosting undoes that.  With ``boost`` = 1 the attack touches data only
    (``poisons_updates`` is then False).

    Test metric ``attack_success_rate``: share of the test samples whose true
    label is not ``target`` that the model classifies as ``target`` once
    stamped with the full trigger.
    """

    paper = "Gu et al. 2017, arXiv:1708.06733; Bagdasaryan et al. 2020, AISTATS; Bhagoji et al. 2019, ICML"

    poisons_data = True

    target: int = param(doc="class every triggered sample is labelled as", ge=0)
    trigger: Trigger = param(Pixel(), doc="the trigger stamped on poisoned samples, e.g. pixel(size = 3)",
                             kind="trigger")
    poison_ratio: float = param(0.3, doc="share of each malicious client's samples stamped and relabelled", gt=0, le=1)
    boost: float = param(1.0, doc="factor applied to the attackers' own update rows at the server (1 = none)", gt=0)

    @property
    def poisons_updates(self) -> bool:  # type: ignore[override]
        return self.boost != 1.0

    @property
    def _name(self) -> str:
        return type(self).__name__.lower()

    def check(self, facts):
        problems = target_problems(self._name, self.target, facts)
        return problems + [f"{self._name} trigger: {message}" for message in self.trigger.check(facts)]

    def poison_data(self, x, y, seed, facts, member):
        shape = tuple(facts.input_shape)
        chosen, _ = poisoned_rows(tf.shape(y)[0], self.poison_ratio, seed)
        stamped = self.trigger.stamp_member(x, member, shape)
        return backdoor_samples(x, y, stamped, chosen, self.target, len(shape))

    def poison_updates(self, updates, own, benign, ctx):
        return boosted_rows(updates, own, self.boost)

    def test_metrics(self, predict, test_x, test_y, facts):
        pick = test_y != self.target
        if not pick.any():
            return {"attack_success_rate": float("nan")}
        predicted = np.argmax(predict(self.trigger.stamp(test_x[pick])), axis=1)
        return {"attack_success_rate": rate(predicted == self.target)}


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("backdoor", Backdoor)
