"""Coordinate-wise trimmed mean.

Paper: Dong Yin, Yudong Chen, Kannan Ramchandran and Peter Bartlett, 2018,
"Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates",
ICML.

Definition: per coordinate j, sort x_1j .. x_nj, drop the t largest and the
t smallest and average the n - 2t left, with t = ceil(beta n) (the paper's
beta fraction, beta < 1/2).  Unweighted, as published; every row's share
is 1/n.

Deviations: ``k`` trims exactly k values per side instead (what attack
papers use with k = f).  ceil(beta n) is computed in float64 less 1e-9, so
that 0.1 * 10 trims 1, not 2.  At run time the trim is clamped to
(n - 1) // 2 per side when detectors left too few rows.

>>> import numpy as np
>>> rows = np.array([[0., 0.], [1., 0.], [0., 1.], [9., 9.]], np.float32)
>>> aggregate, share = trimmed_mean(rows, k=1)
>>> aggregate.numpy().tolist(), share.numpy().tolist()
([0.5, 0.5], [0.25, 0.25, 0.25, 0.25])
>>> trimmed_mean(rows, beta=0.0)[0].numpy().tolist()
[2.5, 2.5]
"""

from __future__ import annotations

import math

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.params import param
from fedarena.plugins import _tensor
from fedarena.plugins import _tf as tf


def trimmed_mean(rows, beta=0.1, k=None, max_rows=None):
    """Coordinate-wise trimmed mean of ``rows`` ``[n, d]``, trimming
    ceil(beta * n) values per side, or ``k`` when given (clamped to
    (n - 1) // 2) -> (aggregate ``[d]``, share ``[n]``, 1/n each).
    ``max_rows`` (a Python int) bounds ``n`` where its static shape does not
    say: the columns are then sorted by a sorting network of that size
    (`_tensor.sorted_rows`)."""
    rows = tf.convert_to_tensor(rows)
    n = tf.shape(rows)[0]
    if k is not None:
        trim = tf.constant(k)
    else:  # ceil(beta * n) in float64, guarded against 0.1 * 10 = 1.0000001
        trim = tf.cast(tf.math.ceil(beta * tf.cast(n, tf.float64) - 1e-9), tf.int32)
    trim = tf.minimum(trim, (n - 1) // 2)
    middle = _tensor.sorted_rows(rows, max_rows)[trim : n - trim]
    share = tf.fill([n], 1.0 / tf.cast(n, rows.dtype))
    return tf.reduce_mean(middle, axis=0), share


@attrs.frozen
class TrimmedMean(Aggregator):
    """Coordinate-wise trimmed mean (Yin et al. 2018, "Byzantine-Robust
    Distributed Learning: Towards Optimal Statistical Rates", ICML): per
    coordinate, drop the largest and the smallest values and average the rest.

    ``beta`` trims ceil(beta * n) values per side (the paper's beta fraction);
    ``k``, when given, trims exactly k per side instead (what attack papers
    use with k = f).  The mean is unweighted, as in the paper.  Shares are
    1/n for every kept row.  At run time the trim is clamped to (n - 1) // 2
    per side if detectors left too few rows.
    """

    paper = "Yin et al. 2018, ICML"

    beta: float = param(0.1, doc="fraction trimmed per side (ceil(beta * n) values)", ge=0, lt=0.5)
    k: int | None = param(None, doc="trim exactly k values per side instead of using beta", ge=0)

    def trimmed(self, n: int) -> int:
        """Values trimmed per side with ``n`` rows (before clamping)."""
        if self.k is not None:
            return self.k
        return math.ceil(self.beta * n - 1e-9)

    def check(self, facts):
        n = facts.clients_per_round
        if self.k is not None and 2 * self.k >= n:
            return [f"trimmed_mean needs clients_per_round > 2k (here {n} <= 2*{self.k}); "
                    f"lower k or sample more clients"]
        if self.k is None and 2 * self.trimmed(n) >= n:
            return [f"trimmed_mean with beta = {self.beta:g} trims ceil({self.beta:g}*{n}) = {self.trimmed(n)} "
                    f"values per side of clients_per_round {n}, leaving none; lower beta or sample more clients"]
        return []

    def aggregate(self, rows, weights, ctx):
        return trimmed_mean(rows, self.beta, self.k, ctx.facts.clients_per_round)


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("trimmed_mean", TrimmedMean)
