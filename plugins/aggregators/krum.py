"""Krum.

Paper: Peva Blanchard, El Mahdi El Mhamdi, Rachid Guerraoui and Julien
Stainer, 2017, "Machine Learning with Adversaries: Byzantine Tolerant
Gradient Descent", NeurIPS.

Definition: for n updates of which at most f are Byzantine (n > 2f + 2),

    score(i) = sum over the n - f - 2 nearest other updates j of ||x_i - x_j||^2

(squared distances, summed; not the n - f - 1 neighbours, unsquared
distances or mean some codebases use), and the output is the update with
the least score, whose share is 1.  Example counts are not used.

Deviations: if detectors leave too few rows at run time, the neighbour
count is clamped to [1, n - 1]; ties go to the first row.  With ``layers``
the distances are measured on those layers' columns only; the chosen update
is applied whole.

>>> import numpy as np
>>> rows = np.array([[0., 0.], [1., 0.], [0., 2.], [9., 9.]], np.float32)
>>> aggregate, share = krum(rows, f=0)
>>> aggregate.numpy().tolist(), share.numpy().tolist()
([0.0, 0.0], [1.0, 0.0, 0.0, 0.0])
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.params import param
from fedarena.plugins import _tensor
from fedarena.plugins import _tf as tf


def krum(rows, f, columns=None):
    """Krum on ``rows`` ``[n, d]`` assuming ``f`` Byzantine rows, distances
    on ``columns`` (None: all) -> (the chosen row ``[d]``, one-hot share
    ``[n]``)."""
    rows = tf.convert_to_tensor(rows)
    n = tf.shape(rows)[0]
    dist = _tensor.pairwise_sq_distances(_tensor.on_columns(rows, columns))
    scores = _tensor.krum_scores(dist, tf.ones([n], tf.bool), f)
    winner = tf.argmin(scores, output_type=tf.int32)
    return rows[winner], tf.one_hot(winner, n, dtype=rows.dtype)


def krum_check(name: str, f: int, n: int) -> list[str]:
    """The message of Krum's n > 2f + 2 rule (also Multi-Krum's)."""
    if n <= 2 * f + 2:
        return [f"{name} needs clients_per_round > 2f + 2 (here {n} <= 2*{f} + 2); lower f or sample more clients"]
    return []


@attrs.frozen
class Krum(Aggregator):
    """Krum (Blanchard et al. 2017, "Machine Learning with Adversaries:
    Byzantine Tolerant Gradient Descent", NeurIPS).

    score(i) = sum of the SQUARED L2 distances from update i to its
    n - f - 2 nearest other updates; the output is the update with the least
    score (its share is 1).  Needs n > 2f + 2.  Example counts are not used.
    If detectors leave too few rows at run time, the neighbour count is
    clamped to [1, n - 1].  Ties go to the first row.  With ``layers``, the
    distances are measured on those layers' parameters; the chosen update
    is applied whole.
    """

    paper = "Blanchard et al. 2017, NeurIPS"

    f: int = param(doc="Byzantine updates the defender assumes per round", ge=0)
    layers: tuple[str, ...] = param((), doc=_tensor.AGGREGATOR_LAYERS_DOC)

    def check(self, facts):
        return krum_check("krum", self.f, facts.clients_per_round)

    def aggregate(self, rows, weights, ctx):
        return krum(rows, self.f, _tensor.layer_columns(ctx, self.layers))


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("krum", Krum)
