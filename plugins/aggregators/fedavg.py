"""Federated averaging.

Paper: H. Brendan McMahan, Eider Moore, Daniel Ramage, Seth Hampson and
Blaise Agüera y Arcas, 2017, "Communication-Efficient Learning of Deep
Networks from Decentralized Data", AISTATS.

Definition: with n_k the example count of client k,

    aggregate = sum_k (n_k / sum_j n_j) x_k

and each row's share is n_k / sum_j n_j.  No deviation from the paper (the
server learning rate is applied by the server stage, not here).

>>> import numpy as np
>>> rows = np.array([[0., 0.], [1., 0.], [0., 1.], [9., 9.]], np.float32)
>>> aggregate, share = fedavg(rows, np.array([1., 1., 1., 1.], np.float32))
>>> aggregate.numpy().tolist(), share.numpy().tolist()
([2.5, 2.5], [0.25, 0.25, 0.25, 0.25])
>>> fedavg(rows, np.array([2., 1., 1., 0.], np.float32))[0].numpy().tolist()
[0.25, 0.25]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.plugins import _tf as tf


def fedavg(rows, weights):
    """The mean of ``rows`` ``[n, d]`` weighted by ``weights`` ``[n]`` ->
    (aggregate ``[d]``, share ``[n]``)."""
    share = tf.math.divide_no_nan(weights, tf.reduce_sum(weights))
    return tf.linalg.matvec(rows, share, transpose_a=True), share


@attrs.frozen
class FedAvg(Aggregator):
    """Federated averaging (McMahan et al. 2017): the mean of the updates
    weighted by each client's number of training examples."""

    paper = "McMahan et al. 2017, AISTATS"

    def aggregate(self, rows, weights, ctx):
        return fedavg(rows, weights)


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("fedavg", FedAvg)
