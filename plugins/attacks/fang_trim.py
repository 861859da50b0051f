"""Fang et al.'s attack on trimmed mean and median: each attacker samples
a row beyond the benign extremes, opposite the benign direction.

Paper: M. Fang, X. Cao, J. Jia and N. Z. Gong, 2020, "Local Model
Poisoning Attacks to Byzantine-Robust Federated Learning", USENIX Security
(Section 4.2), in update space.  Per coordinate j, with s_j the sign of the
benign sum and the benign minimum and maximum:

    s_j > 0:  u'_j ~ U[min_j / b, min_j]  (min_j > 0)  or  U[b min_j, min_j]
    else:     u'_j ~ U[max_j, b max_j]    (max_j > 0)  or  U[max_j, max_j / b]

With partial knowledge (mu, sigma of the attackers' own updates, s =
sign(mu)): U[mu - 4 sigma, mu - 3 sigma] where s_j > 0, else U[mu + 3 sigma,
mu + 4 sigma].  Coordinates with s_j = 0 are pushed up.  Draws come from the
round's stateless seed.

>>> reference = tf.constant([[1.0, -1.0], [2.0, -2.0]])
>>> u = tf.constant([[0.0, 0.0], [1.0, 1.0]])
>>> fang_trim(reference, u, "omniscient", b=2.0).numpy().tolist()
[[0.5, -1.0], [1.0, -0.5]]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins._tensor import column_mean, column_std, salted_seed
from fedarena.plugins.attacks._common import KNOWLEDGE, KNOWLEDGE_DOC, UpdateAttack, reference_rows

# Salt folded into the round seed for the draws.
FANG_TRIM_SALT = 0xFA9


def fang_trim(reference, u, knowledge, b=2.0):
    """The crafted rows, from uniform draws ``u`` [K, d] in [0, 1) and the
    ``reference`` rows [r, d] (``knowledge``: "omniscient" or "partial")."""
    if knowledge == "omniscient":
        s = tf.sign(tf.reduce_sum(reference, axis=0))
        high, low = tf.reduce_max(reference, axis=0), tf.reduce_min(reference, axis=0)
        down_lo, down_hi = tf.where(low > 0, low / b, low * b), low
        up_lo, up_hi = high, tf.where(high > 0, high * b, high / b)
    else:
        mu, sigma = column_mean(reference), column_std(reference)
        s = tf.sign(mu)
        down_lo, down_hi = mu - 4.0 * sigma, mu - 3.0 * sigma
        up_lo, up_hi = mu + 3.0 * sigma, mu + 4.0 * sigma
    lo = tf.where(s > 0, down_lo, up_lo)
    hi = tf.where(s > 0, down_hi, up_hi)
    return lo[None, :] + u * (hi - lo)[None, :]


@attrs.frozen
class FangTrim(UpdateAttack):
    """Fang et al.'s attack on trimmed mean and median (Fang et al. 2020,
    USENIX Security), in update space; each attacker samples its own row.

    Full knowledge (``"omniscient"``): per coordinate ``j``, ``s_j`` = sign of
    the benign sum; where ``s_j > 0`` each attacker samples uniformly below
    the benign minimum, in ``[min / b, min]`` if min > 0 else ``[b * min,
    min]``; elsewhere above the benign maximum, in ``[max, b * max]`` if
    max > 0 else between ``max`` and ``max / b`` (nearer zero).  Partial knowledge: with ``mu`` and
    ``sigma`` (population std) of the attackers' pre-attack updates and
    ``s`` the sign of ``mu``, sample in ``[mu - 4 sigma, mu - 3 sigma]``
    where ``s_j > 0``, else in ``[mu + 3 sigma, mu + 4 sigma]``.
    Coordinates with ``s_j = 0`` are treated as decreasing (pushed up).
    """

    paper = "Fang et al. 2020, USENIX Security"

    knowledge: str = param("omniscient", doc=KNOWLEDGE_DOC, choices=KNOWLEDGE)
    b: float = param(2.0, doc="how far beyond the benign extreme samples may go (full knowledge)", gt=1)

    def craft(self, updates, own, benign, ctx):
        reference = reference_rows(updates, own, benign, self.knowledge)
        seed = salted_seed(ctx.seed, FANG_TRIM_SALT)
        u = tf.random.stateless_uniform(tf.shape(updates), seed, dtype=updates.dtype)
        return fang_trim(reference, u, self.knowledge, self.b)


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("fang_trim", FangTrim)
