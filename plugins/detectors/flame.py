"""FLAME: cluster the updates by cosine distance, keep the majority's
cluster, clip to the median norm and add noise.

Paper: T. D. Nguyen, P. Rieger, H. Chen, H. Yalame, H. Moellering, H.
Fereidooni, S. Marchal, M. Miettinen, A. Mirhoseini, S. Zeitouni, F.
Koushanfar, A.-R. Sadeghi and T. Schneider, 2022, "FLAME: Taming Backdoors
in Federated Learning", USENIX Security.  For the n kept updates u_i:

    c_ij = 1 - cos(u_i, u_j)
    accepted = the cluster HDBSCAN(min_cluster_size = n/2 + 1) finds on c
    S = median_i ||u_i||,   u_i <- u_i * min(1, S / ||u_i||)  (accepted rows)
    noise ~ N(0, (lambda S)^2 I)

Deviations (see `Flame` for the details): HDBSCAN is computed in TF for the
single-cluster case that min_cluster_size > n / 2 allows
(`hdbscan_single_cluster`, equal to scikit-learn's on the same matrix);
the clustering reads only the columns of ``layers``, the clipping bound the
whole update; the noise is one vector per round added to every accepted
row rather than to the aggregate (the same for any aggregator that commutes
with a common shift).  Norms are finite for any finite rows (`row_norms32`),
which changes nothing at ordinary scales; a median norm past float32's range
gives noise of standard deviation lambda times float32's largest value.

Three similar rows and one pointing the other way; the long one is clipped
to the median norm (noise off):

>>> rows = tf.constant([[1.0, 0.0], [2.0, 0.2], [0.9, -0.1], [-1.0, 0.0]])
>>> out, score, members = flame(rows, rows, noise_lambda=0.0, min_cluster_fraction=0.5, seed=[1, 2])
>>> members.numpy().tolist()
[True, True, True, False]
>>> out.numpy().astype(float).round(3).tolist()
[[1.0, 0.0], [0.995, 0.1], [0.9, -0.1], [-1.0, 0.0]]
"""

from __future__ import annotations

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Detector
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins._tensor import (
    clip_factors, cosine_matrix, median, on_columns, row_norms32, salted_seed, without_diagonal,
)
from fedarena.plugins.detectors._common import LAYERS_DOC

# Salt folded into the round seed for the noise ("FLAM").
FLAME_SALT = 0x464C414D
# The noise's scale when the median norm is past float32's range.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def cosine_distances(x):
    """FLAME's distances: 1 - cosine similarity of the rows, float64, exactly
    symmetric, zero on the diagonal and never negative."""
    cos = tf.cast(cosine_matrix(x), tf.float64)
    distance = tf.maximum(1.0 - 0.5 * (cos + tf.transpose(cos)), 0.0)
    return without_diagonal(distance, 0.0)



def prim_path(distance):
    """Prim's algorithm from point 0 on a dense [n, n] distance matrix (n >= 1):
    (the points in the order Prim adds them [n], the weight of the edge that
    added each one after the first [n - 1])."""
    n = tf.shape(distance)[0]
    inf = tf.constant(np.inf, distance.dtype)

    def body(step, current, in_tree, nearest, order, weights):
        nearest = tf.minimum(nearest, distance[current])
        candidates = tf.where(in_tree, inf, nearest)
        new = tf.argmin(candidates, output_type=tf.int32)
        in_tree = tf.tensor_scatter_nd_update(in_tree, [[new]], [True])
        order = tf.tensor_scatter_nd_update(order, [[step + 1]], [new])
        weights = tf.tensor_scatter_nd_update(weights, [[step]], [candidates[new]])
        return step + 1, new, in_tree, nearest, order, weights

    start = (0, 0, tf.one_hot(0, n, on_value=True, off_value=False), tf.fill([n], inf),
             tf.zeros([n], tf.int32), tf.zeros([tf.maximum(n - 1, 0)], distance.dtype))
    _, _, _, _, order, weights = tf.while_loop(lambda step, *_: step < n - 1, body, start)
    return order, weights


def hdbscan_single_cluster(distance, min_cluster_size):
    """The points that scikit-learn's ``HDBSCAN(min_cluster_size=m,
    min_samples=1, allow_single_cluster=True, metric="precomputed")`` labels
    as cluster members, for ``2 m > n`` (so that there is at most one
    cluster), in TF.

    ``distance`` is a symmetric [n, n] float64 matrix, zero on the diagonal,
    non-negative.  Returns (members bool [n], outside [n]): ``outside`` is
    the single-linkage (minimax) distance from each point to the member set,
    zero for members.

    Why this is HDBSCAN's answer.  With min_samples = 1 every core distance
    is 0 (each point is its own nearest neighbour), so mutual reachability is
    the distance itself and the hierarchy is single linkage.  Condensing with
    2 m > n never finds two children of size >= m, so the condensed tree has
    one cluster, the root; points fall out of it where a split leaves them in
    a part smaller than m.  With allow_single_cluster the root is selected,
    and a point is labelled a member when the lambda at which it fell out
    equals the largest such lambda.  The largest is reached at the last split
    on the chain of parts of size >= m: the first merge (in increasing
    distance) that forms a component of size >= m.  So the members are the
    component of size >= m of the graph whose edges are the distances <= h,
    for the smallest h at which such a component exists.  This set does not
    depend on the order in which tied edges merge (scikit-learn sorts them
    with an unstable sort).

    How it is computed.  Prim's algorithm gives an order of the points and
    the weight w_i with which each joined; for every threshold t the
    components of the graph "distance <= t" are runs of consecutive points in
    that order with all joining weights <= t (a component, once entered, is
    exhausted before Prim leaves it, since edges leaving it are > t).  So h is
    the smallest, over windows of m consecutive points, of the largest weight
    inside the window, and the members are the run around the best window.

    Exactness: members equal scikit-learn's on the same float64 matrix,
    ties included, except where two different distances d1 != d2 give the
    same lambda 1/d1 == 1/d2 in floating point (values one ulp apart).
    """
    n = tf.shape(distance)[0]

    def cluster():
        order, weights = prim_path(distance)
        span = min_cluster_size - 1  # edges inside a window of m points
        starts = tf.range(n - min_cluster_size + 1)[:, None]
        edges = tf.range(n - 1)[None, :]
        inside = (edges >= starts) & (edges < starts + span)
        widest = tf.reduce_max(tf.where(inside, weights[None, :], tf.constant(-np.inf, tf.float64)), axis=1)
        best = tf.argmin(widest, output_type=tf.int32)
        height = widest[best]
        # Runs of the path joined by edges <= height; the members' run holds the best window.
        run = tf.concat([[0], tf.cumsum(tf.cast(weights > height, tf.int32))], axis=0)
        in_cluster = tf.equal(run, run[best])
        positions = tf.range(n)
        first = tf.reduce_min(tf.where(in_cluster, positions, n))
        last = tf.reduce_max(tf.where(in_cluster, positions, -1))
        # Minimax distance to the run: the largest edge between a position and the run.
        where = tf.range(n)[:, None]
        between = ((edges >= where) & (edges < first)) | ((edges >= last) & (edges < where))
        outside = tf.maximum(tf.reduce_max(tf.where(between, weights[None, :], tf.constant(0.0, tf.float64)),
                                           axis=1), 0.0)
        position = tf.scatter_nd(order[:, None], tf.range(n), [n])  # of each point in the path
        return tf.gather(in_cluster, position), tf.gather(outside, position)

    def empty():
        return tf.zeros([0], tf.bool), tf.zeros([0], tf.float64)

    return tf.cond(n > 0, cluster, empty)


def flame_min_cluster_size(n, fraction):
    """floor(fraction * n) + 1 (n // 2 + 1 for fraction 1/2), as int32."""
    return tf.cast(tf.floor(fraction * tf.cast(n, tf.float64)), tf.int32) + 1


def flame(rows, features, noise_lambda, min_cluster_fraction, seed):
    """FLAME on the kept rows [n, d] (``features`` [n, c]: the columns the
    clustering reads): -> (rows, the accepted ones clipped to the median norm
    and shifted by one noise vector drawn from ``seed``; the minimax cosine
    distance of each row to the accepted cluster [n] float32, 0 for accepted
    rows; accepted bool [n])."""
    members, outside = hdbscan_single_cluster(cosine_distances(features),
                                              flame_min_cluster_size(tf.shape(rows)[0], min_cluster_fraction))
    # Clip to the median norm of every kept update (the paper's S_t).  The
    # norms (and so the bound) are scaled by `factor`, a power of two that is
    # 1.0 unless a norm would reach 2^126: the clip factors do not change.
    norms, factor = row_norms32(rows)
    bound = median(norms)
    changed = rows * clip_factors(norms, bound)[:, None]
    if noise_lambda > 0:
        stddev = noise_lambda * tf.minimum(bound / factor, FLOAT32_MAX)
        changed += tf.random.stateless_normal([tf.shape(rows)[1]], seed, stddev=stddev)[None, :]
    return tf.where(members[:, None], changed, rows), tf.cast(outside, tf.float32), members


@attrs.frozen
class Flame(Detector):
    """FLAME (Nguyen et al. 2022, "FLAME: Taming Backdoors in Federated
    Learning", USENIX Security): cluster the kept updates by cosine distance
    with HDBSCAN and keep the cluster of the majority; clip the accepted
    updates to the median update norm S; add Gaussian noise of standard
    deviation ``noise_lambda * S``.

    Clustering: HDBSCAN with min_cluster_size floor(n * min_cluster_fraction)
    + 1 (n // 2 + 1 by default, the paper's n/2 + 1), min_samples = 1 and
    allow_single_cluster = True, the setting of the authors' reference code;
    implemented in TF for this single-cluster case (see
    `hdbscan_single_cluster`) and tested against scikit-learn's
    ``HDBSCAN(metric="precomputed")``.  Only the kept rows, and only the
    columns of ``layers``, take part.  Rows outside the cluster are dropped.
    Note that with these settings HDBSCAN labels as members only the points
    of the first component of min_cluster_size points to form (in order of
    increasing distance): typically just over half the rows are accepted,
    even when every row is benign; that is the reference's behaviour.
    (Fractions below 1/2, where HDBSCAN can find several clusters, are not
    supported.)  A widely copied public reimplementation passes the rows of
    the cosine-distance matrix to HDBSCAN as feature vectors (Euclidean
    distances between them); this one uses the cosine distances themselves,
    as the paper describes.

    Clipping: S is the median L2 norm of all kept updates (whole model,
    whatever ``layers`` says; an update is the model minus the global model,
    so its norm is the paper's distance e_i); accepted updates longer than S
    are scaled down to S.  Norms are computed finite for any finite update
    (float64, then scaled by a common power of two past 2^126, which leaves
    the clip factors exact); nothing changes at ordinary scales.

    Noise (deviation from the letter of the paper, same effect): the paper
    adds N(0, (lambda S)^2) to the aggregated model.  A detector cannot touch
    the aggregate, so one noise vector, drawn once per round from the
    round's seed, is added to every accepted row.  Any aggregator that
    commutes with a common shift (weighted mean, FedAvg, coordinate median,
    trimmed mean, Krum's pick) then returns exactly the clean aggregate plus
    that vector: the paper's noise.  The server step multiplies it by the
    server learning rate (1 by default).  Detectors after FLAME see the
    shifted rows.

    Score: the single-linkage (minimax) cosine distance from the row to the
    accepted cluster, 0 for accepted rows.
    """

    paper = "Nguyen et al. 2022, USENIX Security"

    noise_lambda: float = param(0.001, doc="noise standard deviation as a multiple of the median norm", ge=0)
    min_cluster_fraction: float = param(0.5, doc="min cluster size = floor(fraction * n) + 1", ge=0.5, lt=1)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def apply(self, rows, ctx, state):
        features = on_columns(rows, ctx.columns(self.layers))
        out, score, members = flame(rows, features, self.noise_lambda, self.min_cluster_fraction,
                                    salted_seed(ctx.seed, FLAME_SALT))
        return out, score, members, state


@hookimpl
def fedarena_register_detectors(registry):
    registry.add("flame", Flame)
