"""Coordinate-wise median.

Paper: Dong Yin, Yudong Chen, Kannan Ramchandran and Peter Bartlett, 2018,
"Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates",
ICML.

Definition: per coordinate j, aggregate_j = med{x_1j, ..., x_nj}.  With an
even n the median is the mean of the two middle values, as NumPy's (the
paper leaves the even case open).  Unweighted, as published; every row's
share is 1/n.

>>> import numpy as np
>>> aggregate, share = median(np.array([[0., 0.], [1., 0.], [0., 1.], [9., 9.]], np.float32))
>>> aggregate.numpy().tolist(), share.numpy().tolist()
([0.5, 0.5], [0.25, 0.25, 0.25, 0.25])
>>> median(np.array([[0., 5.], [1., 0.], [9., 1.]], np.float32))[0].numpy().tolist()
[1.0, 1.0]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.plugins import _tensor
from fedarena.plugins import _tf as tf


def median(rows, max_rows=None):
    """Coordinate-wise median of ``rows`` ``[n, d]`` -> (aggregate ``[d]``,
    share ``[n]``, 1/n each).  ``max_rows`` (a Python int) bounds ``n``
    where its static shape does not say: the columns are then sorted by a
    sorting network of that size (`_tensor.sorted_rows`)."""
    rows = tf.convert_to_tensor(rows)
    n = tf.shape(rows)[0]
    share = tf.fill([n], 1.0 / tf.cast(n, rows.dtype))
    return _tensor.coordinate_median(rows, max_rows), share


@attrs.frozen
class Median(Aggregator):
    """Coordinate-wise median (Yin et al. 2018, "Byzantine-Robust Distributed
    Learning: Towards Optimal Statistical Rates", ICML).  With an even number
    of rows, the mean of the two middle values, as NumPy's median."""

    paper = "Yin et al. 2018, ICML"

    def aggregate(self, rows, weights, ctx):
        return median(rows, ctx.facts.clients_per_round)


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("median", Median)
