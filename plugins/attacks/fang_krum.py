"""Fang et al.'s attack on Krum: the attackers send copies of one row
pointing against the benign direction, as far out as Krum still picks it.

Paper: M. Fang, X. Cao, J. Jia and N. Z. Gong, 2020, "Local Model
Poisoning Attacks to Byzantine-Robust Federated Learning", USENIX Security
(Section 4.1), in update space.  With s = sign(sum of the reference
updates), n rows, m attackers and d coordinates:

    u' = -lambda * s
    lambda_0 = 1 / ((n - 2m - 1) sqrt(d)) * min_i sum_{k in N_i} ||r_i - r_k||
               + 1 / sqrt(d) * max_i ||r_i||
    lambda <- lambda / 2 until Krum(m copies of u' + reference) picks u'
                          or lambda < threshold

(N_i: the n - m - 2 nearest reference rows of r_i).  Choices where the
paper is silent: the denominator is clamped to at least 1 and the
neighbour count to the reference rows available; ties in the simulated
Krum go to the crafted row.

>>> reference = tf.constant([[1.0, 1.0], [1.2, 0.8], [0.9, 1.1], [1.1, 1.0]])
>>> row = fang_krum(reference, n=tf.constant(6), m=tf.constant(2))
>>> (row.numpy() < 0).tolist()
[True, True]
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins._tensor import self_squared_distances, sum_smallest_off_diagonal
from fedarena.plugins.attacks._common import KNOWLEDGE, KNOWLEDGE_DOC, UpdateAttack, reference_rows


def fang_krum(reference, n, m, f=None, threshold=1e-5):
    """The crafted row ``-lambda * sign(sum of reference rows)`` for a round
    of ``n`` rows (int32 scalar), ``m`` of them the attack's (int32 scalar),
    against Krum with parameter ``f`` (default ``m``): lambda from Fang's
    bound, halved until the simulated Krum picks the crafted row or lambda
    falls below ``threshold``."""
    dtype = tf.float64
    reference = tf.cast(reference, dtype)
    dim = float(reference.shape[1])
    r = tf.shape(reference)[0]
    direction = -tf.sign(tf.reduce_sum(reference, axis=0))  # against the benign direction

    # Starting lambda (an upper bound on the one Krum still accepts).
    ref_dist = self_squared_distances(reference)
    neighbours = tf.clip_by_value(n - m - 2, 0, tf.maximum(r - 1, 0))
    summed = sum_smallest_off_diagonal(tf.sqrt(ref_dist), neighbours)
    denominator = tf.cast(tf.maximum(n - 2 * m - 1, 1), dtype)
    lam0 = (tf.reduce_min(summed) / denominator + tf.reduce_max(tf.norm(reference, axis=1))) / math.sqrt(dim)
    lam0 = tf.where(tf.math.is_finite(lam0), lam0, tf.zeros_like(lam0))

    # Squared distance from lambda * direction to each reference row: a quadratic in lambda.
    dd = tf.reduce_sum(direction * direction)
    dr = tf.linalg.matvec(reference, direction)
    rr = tf.reduce_sum(reference * reference, axis=1)
    f = m if f is None else tf.constant(f, tf.int32)
    krum_neighbours = m + r - f - 2

    def crafted_selected(lam):
        to_ref = tf.maximum(lam * lam * dd - 2.0 * lam * dr + rr, 0.0)  # [r]
        top = tf.concat([tf.zeros([m, m], dtype), tf.tile(to_ref[None, :], [m, 1])], axis=1)
        bottom = tf.concat([tf.tile(to_ref[:, None], [1, m]), ref_dist], axis=1)
        scores = sum_smallest_off_diagonal(tf.concat([top, bottom], axis=0), krum_neighbours)
        best_reference = tf.reduce_min(tf.concat([scores[m:], tf.constant([np.inf], dtype)], axis=0))
        return tf.reduce_min(scores[:m]) <= best_reference

    lam = tf.while_loop(
        lambda lam: tf.logical_and(lam >= threshold, tf.logical_not(crafted_selected(lam))),
        lambda lam: [lam / 2.0],
        [lam0],
    )
    lam = lam[0] if isinstance(lam, (list, tuple)) else lam
    return lam * direction


@attrs.frozen
class FangKrum(UpdateAttack):
    """Fang et al.'s attack on Krum (Fang et al. 2020, "Local Model
    Poisoning Attacks to Byzantine-Robust Federated Learning", USENIX
    Security), in update space.

    ``s = sign(sum of reference updates)``; the crafted update is
    ``-lambda * s`` and every attacker of the group sends a copy of it.
    ``lambda`` starts at ``1 / ((n - 2m - 1) sqrt(d)) * min_i sum of
    distances from reference update i to its n - m - 2 nearest reference
    updates + 1 / sqrt(d) * max_i ||reference update i||`` (n rows in the
    round, m of them this attack's) and is halved until Krum, run on the
    m crafted copies plus the reference updates with parameter ``f``
    (default m) and ``n' - f - 2`` neighbours by squared distance (``n'`` =
    m + reference rows; rows of other attack groups take no part), picks a
    crafted copy, or until ``lambda < threshold`` (1e-5; that last, tiny
    lambda is then used).

    ``knowledge = "partial"``: the attackers' pre-attack updates stand in
    for the benign ones, in the direction, the bound and the simulated Krum
    (as the paper does).  Choices where the paper is silent: the
    denominator is clamped to at least 1 and the neighbour count to the
    reference rows available (both matter only with partial knowledge);
    ties in the simulated Krum go to the crafted update, so with too few
    rows for Krum (``n' <= f + 2``) the starting lambda is kept.
    """

    paper = "Fang et al. 2020, USENIX Security"

    f: int | None = param(None, doc="Krum's f assumed by the attacker; default this attack's rows in the round", ge=0)
    knowledge: str = param("omniscient", doc=KNOWLEDGE_DOC, choices=KNOWLEDGE)
    threshold: float = param(1e-5, doc="lambda below which the search stops", gt=0)

    def check(self, facts):
        if self.f is not None and self.f >= facts.clients_per_round:
            return [f"fang_krum f = {self.f} must be below clients per round ({facts.clients_per_round})"]
        return []

    def craft(self, updates, own, benign, ctx):
        return fang_krum(reference_rows(updates, own, benign, self.knowledge), tf.shape(updates)[0],
                         tf.reduce_sum(tf.cast(own, tf.int32)), self.f, self.threshold)


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("fang_krum", FangKrum)
