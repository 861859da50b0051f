"""Built-in aggregators.  Each works on the whole ``[K, d]`` update matrix
in TF; rows with weight zero (dropped by a detector) take no part."""

from __future__ import annotations

import attrs

from fedarena.core.hookspecs import hookimpl
from fedarena.core.interfaces import Aggregator


@attrs.frozen
class FedAvg(Aggregator):
    """Federated averaging (McMahan et al. 2017): the mean of the updates
    weighted by each client's number of training examples."""

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        share = tf.math.divide_no_nan(weights, tf.reduce_sum(weights))
        return tf.linalg.matvec(updates, share, transpose_a=True), share


@attrs.frozen
class Median(Aggregator):
    """Coordinate-wise median (Yin et al. 2018, "Byzantine-Robust Distributed
    Learning: Towards Optimal Statistical Rates", ICML).  With an even number
    of rows, the mean of the two middle values, as NumPy's median."""

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        kept = weights > 0
        rows = tf.sort(tf.boolean_mask(updates, kept), axis=0)
        count = tf.shape(rows)[0]
        middle = tf.gather(rows, [(count - 1) // 2, count // 2])
        share = tf.where(kept, 1.0 / tf.cast(count, updates.dtype), 0.0)
        return tf.reduce_mean(middle, axis=0), share


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("fedavg", FedAvg)
    registry.add("median", Median)
