"""Auror: poisoned updates differ from honest ones in a few "indicative"
coordinates, where the updates split into two clusters.

Paper: S. Shen, S. Tople and P. Saxena, 2016, "Auror: Defending Against
Poisoning Attacks in Collaborative Deep Learning Systems", ACSAC.  For the
kept updates u_i:

    indicative j  iff  the optimal 1-D 2-means split of (u_1j .. u_nj) has
                       centroids more than alpha apart
    (A, B) = 2-means of the rows on the indicative coordinates
    drop the smaller cluster  iff  ||centroid_A - centroid_B|| > alpha

Deviations: the 1-D split is exact (the best cut of the sorted values; the
paper runs k-means); nothing is dropped with no indicative feature, equal
cluster sizes or fewer than 3 rows.  The decision is per round, as in the
paper.  Score: the distance to the larger cluster's centroid on the
indicative features.  Once a value reaches 2^50 the rows (and alpha) are
first multiplied by one exact power of two (`scale_of`), so that no square
overflows; nothing changes below that, and scaled values too small for
float32's squares then count as equal.

>>> rows = tf.constant([[0.0, 0.001], [0.001, 0.0], [0.0, -0.001], [0.05, 0.0]])
>>> distance, keep = auror(rows, alpha=0.01)
>>> keep.numpy().tolist()
[True, True, True, False]
"""

from __future__ import annotations

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Detector
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins._tensor import (
    mean_or_zero, minority_of, on_columns, scale_of, sorted_rows, to_float32, two_means,
)
from fedarena.plugins.detectors._common import LAYERS_DOC


def column_two_means_gap(x, max_rows=None):
    """For each column of ``x`` [n, c] (n >= 2), the distance between the two
    centroids of its optimal 1-D 2-means split (exact: the best cut of the
    sorted values, by prefix sums); 0 for fewer than two rows.  ``max_rows``
    (a Python int) bounds ``n`` where its static shape does not say: the
    columns are then sorted by a sorting network (`sorted_rows`)."""
    n = tf.shape(x)[0]
    values = sorted_rows(x - mean_or_zero(x), max_rows)
    prefix = tf.cumsum(values, axis=0)[:-1]  # sum of the first k values, k = 1 .. n-1
    total = tf.reduce_sum(values, axis=0)
    left = tf.cast(tf.range(1, tf.maximum(n, 1)), x.dtype)[:, None]
    right = tf.cast(n, x.dtype) - left
    # Minimising the within-cluster sum of squares = maximising this.
    between = tf.square(prefix) / left + tf.square(total - prefix) / right
    cut = tf.argmax(tf.concat([between, tf.fill([1, tf.shape(x)[1]], -np.inf)], axis=0), axis=0,
                    output_type=tf.int32)
    cut = tf.minimum(cut, tf.maximum(n - 2, 0))
    at = tf.stack([cut, tf.range(tf.shape(x)[1])], axis=1)
    sums = tf.gather_nd(tf.concat([prefix, tf.zeros([1, tf.shape(x)[1]], x.dtype)], axis=0), at)
    count = tf.cast(cut + 1, x.dtype)
    gap = tf.math.divide_no_nan(total - sums, tf.cast(n, x.dtype) - count) - sums / count
    return tf.where(n >= 2, tf.abs(gap), tf.zeros_like(gap))


def auror(x, alpha, max_rows=None):
    """Auror on the kept rows ``x`` [n, c]: -> (distance of each row to the
    larger 2-means cluster's centroid on the indicative features [n], kept
    [n]).  ``max_rows``: see `column_two_means_gap`."""
    # Huge (but finite) values are scaled by an exact power of two, and
    # alpha with them, so that no square overflows; 1.0 at ordinary scales.
    scale = scale_of(x)
    x, alpha = x * scale, alpha * scale
    indicative = column_two_means_gap(x, max_rows) > alpha
    features = x * tf.cast(indicative, x.dtype)[None, :]
    assign, centroids = two_means(features)
    larger = tf.where(tf.reduce_sum(assign) * 2 > tf.size(assign), 1, 0)
    distance = tf.norm(features - centroids[larger], axis=1)
    drop = (minority_of(assign) & (tf.norm(centroids[0] - centroids[1]) > alpha)
            & tf.reduce_any(indicative) & (tf.shape(x)[0] >= 3))
    # The score back in update units (clamped to float32's range).
    return to_float32(tf.cast(distance, tf.float64) / tf.cast(scale, tf.float64)), ~drop


@attrs.frozen
class Auror(Detector):
    """Auror (Shen, Tople & Saxena 2016, "Auror: Defending Against Poisoning
    Attacks in Collaborative Deep Learning Systems", ACSAC).  Indicative
    features: the coordinates (among the columns of ``layers``) whose values
    across the kept updates split into two 1-D clusters with centroids more
    than ``alpha`` apart (exact 1-D 2-means; the paper runs k-means).  The
    kept updates are then clustered by 2-means on the indicative features,
    and the smaller cluster is dropped when its centroid lies more than
    ``alpha`` from the other's; no indicative feature, equal sizes or fewer
    than 3 kept rows: nothing dropped.  ``alpha`` is in update units, as in
    the paper, and must fit the scale of the updates.  The paper decides per
    round as here (no memory across rounds).  Score: the distance to the
    larger cluster's centroid on the indicative features.  Finite for any
    finite updates: past 2^50 the computation runs on rows (and an alpha)
    scaled by one exact power of two; nothing changes below that."""

    paper = "Shen et al. 2016, ACSAC"

    alpha: float = param(0.01, doc="centroid distance (update units) that makes a feature indicative and a split real",
                         gt=0)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def detect(self, rows, ctx):
        return auror(on_columns(rows, ctx.columns(self.layers)), self.alpha, ctx.facts.clients_per_round)


@hookimpl
def fedarena_register_detectors(registry):
    registry.add("auror", Auror)
