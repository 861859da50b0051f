"""Multi-Krum.

Paper: Peva Blanchard, El Mahdi El Mhamdi, Rachid Guerraoui and Julien
Stainer, 2017, "Machine Learning with Adversaries: Byzantine Tolerant
Gradient Descent", NeurIPS.

Definition: rank every update by its Krum score (the sum of squared
distances to its n - f - 2 nearest other updates; see `krum`) and output the
unweighted mean of the m best, m = n - f by default; each chosen row's
share is 1/m.  Needs n > 2f + 2.

Deviations: ``iterative = true`` (a variant seen in practice, not the
paper's one-shot rule) picks one Krum winner at a time and re-scores the
remaining set after each pick while more than 2f + 2 remain; the last
scores rank the rest.  At run time m is clamped to [1, n].  With ``layers``
the distances are measured on those layers' columns only; the chosen
updates are averaged whole.

>>> import numpy as np
>>> rows = np.array([[0., 0.], [1., 0.], [0., 2.], [9., 9.]], np.float32)
>>> aggregate, share = multi_krum(rows, f=0, m=2)
>>> aggregate.numpy().tolist(), share.numpy().tolist()
([0.5, 0.0], [0.5, 0.5, 0.0, 0.0])
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.params import param
from fedarena.plugins import _tensor
from fedarena.plugins import _tf as tf
from fedarena.plugins.aggregators.krum import krum_check


def multi_krum(rows, f, m=None, iterative=False, columns=None):
    """The mean of the ``m`` rows of ``rows`` ``[n, d]`` with the best Krum
    scores (``m`` None: n - f; clamped to [1, n]), distances on ``columns``
    (None: all) -> (aggregate ``[d]``, share ``[n]``: 1/m per chosen row)."""
    rows = tf.convert_to_tensor(rows)
    n = tf.shape(rows)[0]
    m = tf.constant(m) if m is not None else n - f
    m = tf.maximum(tf.minimum(m, n), 1)
    dist = _tensor.pairwise_sq_distances(_tensor.on_columns(rows, columns))
    if iterative:
        chosen = tf.cast(_tensor.repeated_krum(dist, f, m, rescore_above=2 * f + 2), rows.dtype)
    else:
        best = tf.math.top_k(-_tensor.krum_scores(dist, tf.ones([n], tf.bool), f), k=m).indices
        chosen = tf.scatter_nd(best[:, None], tf.ones([m], rows.dtype), [n])
    share = chosen / tf.cast(m, rows.dtype)
    return tf.linalg.matvec(rows, share, transpose_a=True), share


@attrs.frozen
class MultiKrum(Aggregator):
    """Multi-Krum (Blanchard et al. 2017, "Machine Learning with Adversaries:
    Byzantine Tolerant Gradient Descent", NeurIPS): the unweighted mean of
    the m updates with the best Krum scores.

    Default (the paper's): one shot, rank every update by its Krum score
    (n - f - 2 neighbours, squared distances) and average the m best, with
    m = n - f.  ``iterative = true`` (a variant seen in practice) picks one
    Krum winner at a time and re-scores the remaining set after each pick
    while more than 2f + 2 remain; the last scores rank the rest.  Needs
    n > 2f + 2.  At run time m is clamped to [1, n].  With ``layers``, the
    distances are measured on those layers' parameters; the chosen updates
    are averaged whole.
    """

    paper = "Blanchard et al. 2017, NeurIPS"

    f: int = param(doc="Byzantine updates the defender assumes per round", ge=0)
    m: int | None = param(None, doc="updates averaged (default n - f)", ge=1)
    iterative: bool = param(False, doc="re-score the remaining updates after each pick")
    layers: tuple[str, ...] = param((), doc=_tensor.AGGREGATOR_LAYERS_DOC)

    def check(self, facts):
        n = facts.clients_per_round
        problems = krum_check("multi_krum", self.f, n)
        if self.m is not None and self.m > n:
            problems.append(f"multi_krum averages m = {self.m} updates but clients_per_round is {n}; lower m")
        return problems

    def aggregate(self, rows, weights, ctx):
        return multi_krum(rows, self.f, self.m, self.iterative, _tensor.layer_columns(ctx, self.layers))


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("multi_krum", MultiKrum)
