"""SignGuard.

Paper: Jian Xu, Shao-Lun Huang, Linqi Song and Tian Lan, 2022,
"Byzantine-robust Federated Learning through Collaborative Malicious
Gradient Filtering", ICDCS.

Definition: with M the median update norm,

1. norm filter: keep the updates with lower <= ||g_i|| / M <= upper;
2. sign clustering: on a random ``fraction`` of the coordinates, each
   update's features are the fractions of its positive, zero and negative
   entries; mean-shift clustering (bandwidth estimated from the data) keeps
   the largest cluster;
3. the updates passing both filters are clipped to norm M and averaged
   (unweighted); a row's share is its coefficient, 1/|chosen| times its
   clip factor.

Deviations: the mean-shift step is a TF re-implementation of a flat-kernel
mean-shift whose cluster assignment is simplified (see
`mean_shift_largest_cluster`); the plain SignGuard features (no similarity
feature of the SignGuard-Sim/-Dist variants); the coordinates are drawn
from the round seed folded with this rule's salt.  If no update passes
both filters the aggregate is zero.  With ``layers`` the norm filter and
the sign statistics look at those layers' columns only (the fraction is of
their coordinates); the clipping of step 3 uses whole norms and their
median.  Norms are computed finite for any finite rows (`row_norms32`:
float64, then scaled by one power of two only if one would reach 2^126),
which changes no ratio, so no result at ordinary scales.

The row with the other signs and the row ten times the median norm are
left out; the others are clipped to the median norm (here 2):

>>> import numpy as np
>>> rows = np.array([[1., 1., 1., 1.], [1., 1., 1., 1.], [1., 1., 1., 1.],
...                  [-1., -1., -1., -1.], [20., 20., 20., 20.]], np.float32)
>>> aggregate, share = signguard(rows, seed=np.array([1, 2], np.int64), fraction=1.0)
>>> aggregate.numpy().tolist(), np.flatnonzero(share).tolist()
([1.0, 1.0, 1.0, 1.0], [0, 1, 2])
"""

from __future__ import annotations

import math

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.params import param
from fedarena.plugins import _tensor
from fedarena.plugins import _tf as tf

SALT_SIGNGUARD = 103


def mean_shift_largest_cluster(points, quantile, max_iter=300):
    """Members of the largest mean-shift cluster of ``points`` ``[n, p]``.

    Flat kernel; the bandwidth is estimated as scikit-learn's
    ``estimate_bandwidth(quantile)`` does (mean distance of each point to
    its int(quantile * n)-th nearest point, itself included; at least the
    nearest other point).  Every point is a seed and is shifted to the mean
    of the points within the bandwidth until the largest shift is below
    1e-3 bandwidth.  Simplification of scikit-learn's MeanShift: instead of
    de-duplicating the modes and labelling each point by its nearest mode,
    the mode with the most points within the bandwidth wins, and the cluster
    is the points whose own mode lies within one bandwidth of it.
    """
    n = tf.shape(points)[0]

    def distances(a, b):
        return tf.norm(a[:, None, :] - b[None, :, :], axis=2)

    pair = distances(points, points)
    neighbour = tf.minimum(tf.maximum(tf.cast(quantile * tf.cast(n, tf.float32), tf.int32), 2), n)
    bandwidth = tf.reduce_mean(tf.sort(pair, axis=1)[:, neighbour - 1])
    bandwidth = tf.maximum(bandwidth, 1e-6)

    def body(i, centres, shift):
        within = tf.cast(distances(centres, points) <= bandwidth, points.dtype)
        counts = tf.reduce_sum(within, axis=1, keepdims=True)
        moved = tf.where(counts > 0, tf.math.divide_no_nan(tf.matmul(within, points), counts), centres)
        return i + 1, moved, tf.reduce_max(tf.norm(moved - centres, axis=1))

    _, modes, _ = tf.while_loop(
        lambda i, _, shift: (i < max_iter) & (shift >= 1e-3 * bandwidth),
        body, (tf.constant(0), points, tf.constant(math.inf, points.dtype)),
    )
    population = tf.reduce_sum(tf.cast(distances(modes, points) <= bandwidth, tf.int32), axis=1)
    best = modes[tf.argmax(population, output_type=tf.int32)]
    return tf.norm(modes - best[None, :], axis=1) <= bandwidth


def signguard(rows, seed, lower=0.1, upper=3.0, fraction=0.1, quantile=0.3, columns=None):
    """SignGuard on ``rows`` ``[n, d]``; the sign statistics on a
    ``fraction`` of the coordinates drawn from ``seed`` (int64 ``[2]``), the
    filters on ``columns`` (None: all) -> (aggregate ``[d]``, share
    ``[n]``)."""
    rows = tf.convert_to_tensor(rows)
    # Norms scaled by a common power of two (1.0 unless one would reach
    # 2^126): only their ratios to the median are used, which it leaves exact.
    norms, _ = _tensor.row_norms32(rows)
    median = _tensor.median(norms)
    view = _tensor.on_columns(rows, columns)
    view_norms = norms if columns is None else _tensor.row_norms32(view)[0]
    ratio = tf.math.divide_no_nan(view_norms, _tensor.median(view_norms))
    by_norm = (ratio >= lower) & (ratio <= upper)
    d = tf.shape(view)[1]
    count = tf.maximum(tf.cast(tf.math.ceil(fraction * tf.cast(d, tf.float64)), tf.int32), 1)
    sub = tf.gather(view, _tensor.random_columns(seed, d, tf.minimum(count, d)), axis=1)
    features = tf.stack([tf.reduce_mean(tf.cast(test, rows.dtype), axis=1)
                         for test in (sub > 0, tf.equal(sub, 0), sub < 0)], axis=1)
    by_sign = mean_shift_largest_cluster(features, quantile)
    chosen = tf.cast(by_norm & by_sign, rows.dtype)
    share = tf.math.divide_no_nan(chosen, tf.reduce_sum(chosen)) * _tensor.clip_factors(norms, median)
    return tf.linalg.matvec(rows, share, transpose_a=True), share


@attrs.frozen
class SignGuard(Aggregator):
    """SignGuard (Xu et al. 2022, "Byzantine-robust Federated Learning through
    Collaborative Malicious Gradient Filtering", ICDCS).

    1. Norm filter: with M the median update norm, keep the updates with
       lower <= ||g_i|| / M <= upper.
    2. Sign clustering: on a random ``fraction`` of the coordinates (drawn
       from the round seed), each update's features are the fractions of
       its positive, zero and negative entries; mean-shift clustering
       (bandwidth estimated from the data) keeps the largest cluster.
    3. The updates passing both filters are clipped to norm M and averaged
       (unweighted); shares are their coefficients.

    Simplifications: the mean-shift step is a TF re-implementation of a flat
    kernel mean-shift whose cluster assignment is simplified (see
    `mean_shift_largest_cluster`); the plain SignGuard features (no
    similarity feature of the SignGuard-Sim/-Dist variants).  If no update
    passes both filters the aggregate is zero.  With ``layers``, the norm
    filter and the sign statistics look at those layers' parameters only
    (the fraction is of their coordinates); the clipping of step 3 uses
    the whole updates' norms and their median.  Norms stay finite for any
    finite update (float64, scaled by a common power of two past 2^126;
    the ratios are unchanged).
    """

    paper = "Xu et al. 2022, ICDCS"

    lower: float = param(0.1, doc="lowest accepted norm, as a multiple of the median norm", ge=0)
    upper: float = param(3.0, doc="highest accepted norm, as a multiple of the median norm", gt=0)
    fraction: float = param(0.1, doc="fraction of coordinates sampled for the sign statistics", gt=0, le=1)
    quantile: float = param(0.3, doc="quantile used to estimate the mean-shift bandwidth", gt=0, le=1)
    layers: tuple[str, ...] = param((), doc=_tensor.AGGREGATOR_LAYERS_DOC)

    def check(self, facts):
        if self.lower >= self.upper:
            return [f"signguard needs lower < upper (here {self.lower:g} >= {self.upper:g})"]
        return []

    def aggregate(self, rows, weights, ctx):
        return signguard(rows, _tensor.salted_seed(ctx.seed, SALT_SIGNGUARD), self.lower, self.upper,
                         self.fraction, self.quantile, _tensor.layer_columns(ctx, self.layers))


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("signguard", SignGuard)
