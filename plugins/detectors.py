"""Built-in detectors: anomaly detection on the round's ``[K, d]`` update
matrix, in TF, before aggregation.

A detector sees the rows still kept (bool ``[K]``); rows dropped earlier
(non-finite, or by an earlier detector) stay dropped and take no part in any
statistic: every detector gathers the kept rows first and scatters its
results back.  Each returns a score per row, recorded in the results file;
rows it did not examine (already dropped) get NaN.  Detectors only score and
keep or drop; none reweights rows (FoolsGold's and CONTRA's weights become
scores, and rows with weight zero are dropped).  FLAME also clips the rows it
accepts and adds noise (see `Flame`).

Every detector takes ``layers``: names (substrings) of the layers whose
columns it looks at; empty means every parameter.

The math of each detector is a pure TF function of tensors below (tested on
its own); the plugin classes are thin adapters.  Everything runs as TF graph
ops with the number of rows unknown when traced: no NumPy, scikit-learn or
``py_function`` inside, no Python loop over rows or coordinates; pairwise
quantities come from one Gram matrix, and ``tf.while_loop`` runs only the
iterative parts (Prim's algorithm, k-means).
"""

from __future__ import annotations

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Detector
from fedarena.core.plugin.params import param

LAYERS_DOC = "names (substrings) of the layers whose parameters the detector looks at; empty: all"

# Iglewicz & Hoaglin (1993): modified z-score 0.6745 (x - median) / MAD.
MAD_SCALE = 0.6745
# Fallback when MAD is zero (more than half the values equal): the mean
# absolute deviation, scaled so that it estimates the standard deviation.
MEAN_AD_SCALE = 1.253314


# --------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------


def kept_rows(updates, keep, columns=None):
    """(indices of the kept rows [n] int32, those rows restricted to ``columns`` [n, c])."""
    import tensorflow as tf

    if columns is not None and len(columns) == 0:
        raise ValueError("the detector's `layers` match no layer of the model")
    rows = tf.cast(tf.where(keep)[:, 0], tf.int32)
    x = updates if columns is None else tf.gather(updates, columns, axis=1)
    return rows, tf.gather(x, rows)


def spread(rows, values, size, fill):
    """Values of the kept rows scattered back into a ``[size]`` vector filled with ``fill``."""
    import tensorflow as tf

    base = tf.fill([size], tf.constant(fill, values.dtype))
    return tf.tensor_scatter_nd_update(base, rows[:, None], values)


def median(values, axis=0):
    """Median along ``axis`` (the mean of the two middle values for an even
    count, as NumPy); zero for an empty input."""
    import tensorflow as tf

    values = tf.convert_to_tensor(values)
    count = tf.shape(values)[axis]
    # A zero appended along the axis makes the gather below valid for count 0.
    pad_shape = tf.tensor_scatter_nd_update(tf.shape(values), [[axis]], [1])
    ordered = tf.concat([tf.sort(values, axis=axis), tf.zeros(pad_shape, values.dtype)], axis=axis)
    middle = tf.gather(ordered, tf.stack([tf.maximum(count - 1, 0) // 2, count // 2]), axis=axis)
    return tf.reduce_mean(middle, axis=axis)


def mean_or_zero(values, axis=0):
    """Mean along ``axis``; zero for an empty input."""
    import tensorflow as tf

    count = tf.maximum(tf.shape(values)[axis], 1)
    return tf.reduce_sum(values, axis=axis) / tf.cast(count, values.dtype)


def robust_z(values):
    """Modified z-scores (Iglewicz & Hoaglin 1993): 0.6745 (x - median) / MAD.
    Where the MAD is zero, (x - median) / (1.253314 * mean absolute deviation)
    instead; zero where every value is equal."""
    import tensorflow as tf

    centre = median(values)
    deviation = tf.abs(values - centre)
    mad = median(deviation)
    mean_ad = mean_or_zero(deviation)
    return tf.where(
        mad > 0,
        MAD_SCALE * tf.math.divide_no_nan(values - centre, mad),
        tf.math.divide_no_nan(values - centre, MEAN_AD_SCALE * mean_ad),
    )


def cosine_matrix(x):
    """Pairwise cosine similarities of the rows of ``x`` ([n, n], from one Gram
    matrix of the unit rows); a zero row has similarity 0 with every row."""
    import tensorflow as tf

    unit = tf.math.divide_no_nan(x, tf.norm(x, axis=1, keepdims=True))
    return tf.clip_by_value(tf.matmul(unit, unit, transpose_b=True), -1.0, 1.0)


def without_diagonal(matrix, value):
    """``matrix`` with its diagonal set to ``value``."""
    import tensorflow as tf

    eye = tf.eye(tf.shape(matrix)[0], dtype=tf.bool)
    return tf.where(eye, tf.constant(value, matrix.dtype), matrix)


def cosine_distances(x):
    """FLAME's distances: 1 - cosine similarity of the rows, float64, exactly
    symmetric, zero on the diagonal and never negative."""
    import tensorflow as tf

    cos = tf.cast(cosine_matrix(x), tf.float64)
    distance = tf.maximum(1.0 - 0.5 * (cos + tf.transpose(cos)), 0.0)
    return without_diagonal(distance, 0.0)


def two_means(points, max_iter=100):
    """Lloyd's 2-means on ``points`` [n, p] -> (cluster of each point [n] int32
    in {0, 1}, centroids [2, p]).  Deterministic start: the point farthest
    from the mean, then the point farthest from that one.  Fewer than two
    points: all in cluster 0."""
    import tensorflow as tf

    n = tf.shape(points)[0]

    def cluster():
        mean = tf.reduce_mean(points, axis=0)
        first = tf.argmax(tf.reduce_sum(tf.square(points - mean), axis=1), output_type=tf.int32)
        second = tf.argmax(tf.reduce_sum(tf.square(points - points[first]), axis=1), output_type=tf.int32)
        centroids = tf.gather(points, tf.stack([first, second]))

        def body(step, assign, centroids, changed):
            distance = tf.reduce_sum(tf.square(points[:, None, :] - centroids[None, :, :]), axis=2)
            new = tf.argmin(distance, axis=1, output_type=tf.int32)
            onehot = tf.one_hot(new, 2, dtype=points.dtype)
            counts = tf.reduce_sum(onehot, axis=0)
            sums = tf.matmul(onehot, points, transpose_a=True)
            centroids = tf.where(counts[:, None] > 0, tf.math.divide_no_nan(sums, counts[:, None]), centroids)
            return step + 1, new, centroids, tf.reduce_any(tf.not_equal(new, assign))

        _, assign, centroids, _ = tf.while_loop(
            lambda step, assign, centroids, changed: (step < max_iter) & changed,
            body, (0, tf.fill([n], -1), centroids, True))
        return assign, centroids

    def single():
        centre = mean_or_zero(points)
        return tf.zeros([n], tf.int32), tf.stack([centre, centre])

    return tf.cond(n >= 2, cluster, single)


def minority_of(assign):
    """The smaller cluster of a 2-means result (bool per point); none on a tie."""
    import tensorflow as tf

    ones = tf.reduce_sum(assign)
    zeros = tf.size(assign) - ones
    # tf.equal, not ==: in TFF's graph mode `tensor == 1` is a plain False.
    return tf.where(ones < zeros, tf.equal(assign, 1),
                    tf.where(zeros < ones, tf.equal(assign, 0), tf.zeros_like(assign, tf.bool)))


# --------------------------------------------------------------------------
# FLAME's HDBSCAN, for the single-cluster case
# --------------------------------------------------------------------------


def prim_path(distance):
    """Prim's algorithm from point 0 on a dense [n, n] distance matrix (n >= 1):
    (the points in the order Prim adds them [n], the weight of the edge that
    added each one after the first [n - 1])."""
    import tensorflow as tf

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
    import tensorflow as tf

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
    import tensorflow as tf

    return tf.cast(tf.floor(fraction * tf.cast(n, tf.float64)), tf.int32) + 1


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
    are scaled down to S.

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

    noise_lambda: float = param(0.001, doc="noise standard deviation as a multiple of the median norm", ge=0)
    min_cluster_fraction: float = param(0.5, doc="min cluster size = floor(fraction * n) + 1", ge=0.5, lt=1)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def detect_with_state(self, updates, keep, ctx, state):
        import tensorflow as tf

        size, dim = tf.shape(updates)[0], tf.shape(updates)[1]
        rows, x = kept_rows(updates, keep, ctx.columns(self.layers))
        members, outside = hdbscan_single_cluster(cosine_distances(x),
                                                  flame_min_cluster_size(tf.size(rows), self.min_cluster_fraction))
        accepted = spread(rows, members, size, False)
        # Clip to the median norm of every kept update (the paper's S_t).
        norms = tf.norm(tf.gather(updates, rows), axis=1)
        bound = median(norms)
        factor = spread(rows, tf.where(norms > bound, tf.math.divide_no_nan(bound, norms), 1.0), size, 1.0)
        changed = updates * factor[:, None]
        if self.noise_lambda > 0:
            seed = tf.random.experimental.stateless_fold_in(ctx.seed, 0x464C414D)  # "FLAM"
            changed += tf.random.stateless_normal([dim], seed, stddev=self.noise_lambda * bound)[None, :]
        updates = tf.where(accepted[:, None], changed, updates)
        score = spread(rows, tf.cast(outside, tf.float32), size, np.nan)
        return updates, score, keep & accepted, state


# --------------------------------------------------------------------------
# FoolsGold
# --------------------------------------------------------------------------


def foolsgold_weights(histories, kappa=1.0, confidence=0.99):
    """FoolsGold's weight of each client from its history [n, c] (Fung et
    al. 2020, Algorithm 1, as the authors' code computes it)."""
    import tensorflow as tf

    # Self-similarity zeroed, as in the authors' code (cs - I): the largest
    # similarity is therefore never below 0.
    cs = without_diagonal(cosine_matrix(histories), 0.0)
    top = tf.reduce_max(tf.concat([cs, tf.zeros([tf.shape(cs)[0], 1])], axis=1), axis=1)
    # Pardoning: similarity to a client with a larger maximum shrinks by the ratio.
    ratio = tf.math.divide_no_nan(top[:, None], top[None, :])
    cs = tf.where(top[:, None] < top[None, :], cs * ratio, cs)
    weight = tf.clip_by_value(1.0 - tf.reduce_max(tf.concat([cs, tf.zeros([tf.shape(cs)[0], 1])], axis=1), axis=1),
                              0.0, 1.0)
    weight = tf.math.divide_no_nan(weight, tf.reduce_max(tf.concat([weight, [0.0]], axis=0)))
    weight = tf.where(weight >= 1.0, tf.constant(confidence, weight.dtype), weight)
    logit = kappa * (tf.math.log(weight) - tf.math.log1p(-weight) + 0.5)  # -inf for weight 0
    return tf.clip_by_value(logit, 0.0, 1.0)


@attrs.frozen
class FoolsGold(Detector):
    """FoolsGold (Fung, Yoon & Beschastnikh 2020, "The Limitations of
    Federated Learning in Sybil Settings", RAID): sybils pushing one goal
    send similar updates over time, so each client's weight falls with its
    largest cosine similarity to another client's history.

    History: the sum of every update the client sent while kept (state
    ``history`` [num_clients, d], indexed by client id; rows dropped before
    this detector add nothing).  With ``clip_norm`` > 0 each update is
    clipped to that L2 norm before it is added (the design notes mention
    norm-clipped histories; the authors' code adds raw updates, the default).
    Similarities are computed among the histories of this round's kept
    clients (the authors' simulation has every client in every round), on the
    columns of ``layers``.  The paper's optional weighting of indicative
    output-layer features is not implemented (``layers`` can restrict the
    comparison to the output layer instead).

    Weights, as the authors' code: cs = cosine of histories with the diagonal
    set to 0; v_i = max_j cs_ij; pardoning cs_ij *= v_i / v_j where v_j > v_i;
    a_i = clip(1 - max_j cs_ij, 0, 1); a /= max a; a == 1 becomes
    ``confidence`` (0.99 in the authors' code, so that the logit is finite);
    a_i = clip(kappa * (ln(a_i / (1 - a_i)) + 0.5), 0, 1).

    Deviation: detectors do not reweight, so the weight is the score and
    rows whose weight is 0 are dropped; the aggregator weights the rest as
    it always does.
    """

    kappa: float = param(1.0, doc="confidence parameter of the logit (the paper's kappa)", gt=0)
    confidence: float = param(0.99, doc="value the largest rescaled weight takes before the logit", gt=0, lt=1)
    clip_norm: float = param(0.0, doc="L2 norm each update is clipped to before it joins the history; 0: none", ge=0)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def initial_state(self, dim, facts):
        return {"history": np.zeros([facts.num_clients, dim], np.float32)}

    def detect_with_state(self, updates, keep, ctx, state):
        import tensorflow as tf

        size = tf.shape(updates)[0]
        rows, x = kept_rows(updates, keep)
        if self.clip_norm > 0:
            x = tf.clip_by_norm(x, self.clip_norm, axes=[1])
        clients = tf.gather(ctx.client_ids, rows)
        history = tf.tensor_scatter_nd_add(state["history"], clients[:, None], x)
        mine = tf.gather(history, clients)
        columns = ctx.columns(self.layers)
        if columns is not None:
            mine = tf.gather(mine, columns, axis=1)
        weight = foolsgold_weights(mine, self.kappa, self.confidence)
        keep = keep & spread(rows, weight > 0, size, False)
        return updates, spread(rows, weight, size, np.nan), keep, dict(state, history=history)


# --------------------------------------------------------------------------
# CONTRA
# --------------------------------------------------------------------------


def top_k_mean_similarity(x, k):
    """Mean of each row's k largest cosine similarities to the other rows
    (k capped at n - 1; 0 for a row with no other row)."""
    import tensorflow as tf

    cs = without_diagonal(cosine_matrix(x), -np.inf)
    count = tf.minimum(k, tf.shape(cs)[0] - 1)
    top = tf.math.top_k(cs, k=tf.maximum(count, 0)).values
    return tf.math.divide_no_nan(tf.reduce_sum(top, axis=1), tf.cast(count, cs.dtype))


@attrs.frozen
class Contra(Detector):
    """CONTRA (Awan, Luo & Li 2021, "CONTRA: Defending against Poisoning
    Attacks in Federated Learning", ESORICS): colluding poisoners send
    similar updates, so a client whose mean top-k cosine similarity to the
    other clients of the round exceeds ``threshold`` loses ``delta``
    reputation, any other gains ``delta``; clients of low reputation are
    dropped.

    The official code and reimplementations disagree; the choices here:
    similarities are between this round's kept updates (not histories), on
    the columns of ``layers``, plain cosine (not its absolute value); k is
    capped at the number of other kept rows; a similarity above the
    threshold LOWERS the reputation (as the paper argues; at least one
    public reimplementation raises it); reputation (state ``reputation``
    [num_clients]) starts at 1 and stays in [0, 1], so a long honest past
    does not shield a client that turns; a row is dropped when its client's
    reputation, updated this round, is below ``min_reputation`` (with a 1e-6
    tolerance for float rounding: from 1, delta 0.1 and 1/2, the sixth net
    step down drops).  CONTRA's
    FoolsGold-style learning-rate weights and its reputation-driven client
    selection are not applied (detectors neither reweight nor sample; chain
    ``foolsgold`` for the weights).  Score: the updated reputation.
    """

    k: int = param(2, doc="number of most similar other clients averaged (the expected number of colluders)", ge=1)
    delta: float = param(0.1, doc="reputation lost or gained per round", gt=0, le=1)
    threshold: float = param(0.5, doc="mean top-k cosine similarity above which reputation drops", ge=-1, le=1)
    min_reputation: float = param(0.5, doc="rows whose client's reputation is below this are dropped", ge=0, le=1)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def initial_state(self, dim, facts):
        return {"reputation": np.ones([facts.num_clients], np.float32)}

    def detect_with_state(self, updates, keep, ctx, state):
        import tensorflow as tf

        size = tf.shape(updates)[0]
        rows, x = kept_rows(updates, keep, ctx.columns(self.layers))
        clients = tf.gather(ctx.client_ids, rows)
        similar = top_k_mean_similarity(x, self.k)
        step = tf.where(similar > self.threshold, -self.delta, self.delta)
        reputation = tf.clip_by_value(tf.gather(state["reputation"], clients) + step, 0.0, 1.0)
        table = tf.tensor_scatter_nd_update(state["reputation"], clients[:, None], reputation)
        # The tolerance absorbs float32 rounding of repeated +/- delta steps.
        keep = keep & spread(rows, reputation >= self.min_reputation - 1e-6, size, False)
        return updates, spread(rows, reputation, size, np.nan), keep, dict(state, reputation=table)


# --------------------------------------------------------------------------
# Robust z-score outliers
# --------------------------------------------------------------------------


@attrs.frozen
class NormOutlier(Detector):
    """Drop updates whose L2 norm is an outlier among the kept updates: the
    modified z-score 0.6745 (x - median) / MAD (Iglewicz & Hoaglin 1993,
    "How to Detect and Handle Outliers", who suggest 3.5) beyond
    ``threshold`` in absolute value.  When more than half the norms are equal
    (MAD 0), the mean absolute deviation times 1.253314 replaces MAD / 0.6745.
    Score: the z-score."""

    threshold: float = param(3.5, doc="largest |modified z-score| kept", gt=0)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def detect(self, updates, keep, ctx):
        import tensorflow as tf

        size = tf.shape(updates)[0]
        rows, x = kept_rows(updates, keep, ctx.columns(self.layers))
        z = robust_z(tf.norm(x, axis=1))
        return spread(rows, z, size, np.nan), keep & spread(rows, tf.abs(z) <= self.threshold, size, False)


@attrs.frozen
class CosineOutlier(Detector):
    """Drop updates whose cosine similarity to the coordinate-wise median of
    the kept updates is an outlier: modified z-score (as `NormOutlier`)
    beyond ``threshold`` in absolute value (Iglewicz & Hoaglin 1993).  Both
    sides count, as for norms.  Score: the z-score."""

    threshold: float = param(3.5, doc="largest |modified z-score| kept", gt=0)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def detect(self, updates, keep, ctx):
        import tensorflow as tf

        size = tf.shape(updates)[0]
        rows, x = kept_rows(updates, keep, ctx.columns(self.layers))
        centre = median(x, axis=0)
        unit = tf.math.divide_no_nan(x, tf.norm(x, axis=1, keepdims=True))
        cosine = tf.linalg.matvec(unit, tf.math.divide_no_nan(centre, tf.norm(centre)))
        z = robust_z(cosine)
        return spread(rows, z, size, np.nan), keep & spread(rows, tf.abs(z) <= self.threshold, size, False)


# --------------------------------------------------------------------------
# Tolpegin et al.: PCA of the source class's output-layer parameters
# --------------------------------------------------------------------------


def class_columns(layers, num_classes, source, names=()):
    """Columns of the output layer's parameters for class ``source``: column
    ``source`` of the last 2-D kernel of shape [hidden, classes] among the
    layers matching ``names`` (all if empty), flattened row-major as the
    engine does, and entry ``source`` of the bias right after it, if the
    next layer has shape [classes] and matches ``names`` too."""
    layers = sorted(layers, key=lambda l: l.offset)
    matching = [i for i, l in enumerate(layers) if not names or any(name in l.name for name in names)]
    kernels = [i for i in matching if len(layers[i].shape) == 2 and layers[i].shape[1] == num_classes]
    if not kernels:
        raise ValueError(f"no 2-D output kernel with {num_classes} columns among the layers "
                         f"{[l.name for l in layers]}" + (f" matching {list(names)}" if names else ""))
    index = kernels[-1]
    kernel = layers[index]
    columns = [kernel.offset + np.arange(kernel.shape[0]) * num_classes + source]
    if index + 1 in matching and tuple(layers[index + 1].shape) == (num_classes,):
        columns.append(np.array([layers[index + 1].offset + source]))
    return np.concatenate(columns).astype(np.int64)


def pca_projection(x, components=2, standardize=True):
    """The rows of ``x`` [n, c] projected on their first principal components
    ([n, components], zero-padded when fewer exist), via SVD of the centred
    (and, with ``standardize``, unit-variance) columns."""
    import tensorflow as tf

    centred = x - mean_or_zero(x)
    if standardize:
        deviation = tf.sqrt(mean_or_zero(tf.square(centred)))
        centred = tf.math.divide_no_nan(centred, deviation)
    s, u, _ = tf.linalg.svd(centred, full_matrices=False)
    projected = (u * s[None, :])[:, :components]
    return tf.pad(projected, [[0, 0], [0, components - tf.shape(projected)[1]]])


def separated_minority(points, separation):
    """2-means on ``points``; (the smaller cluster if the centroids lie more
    than ``separation`` times the pooled within-cluster RMS distance apart,
    else nothing [n] bool, each point's distance to the larger cluster's
    centroid in units of that RMS [n])."""
    import tensorflow as tf

    assign, centroids = two_means(points)
    own = tf.gather(centroids, assign)
    spread_rms = tf.sqrt(mean_or_zero(tf.reduce_sum(tf.square(points - own), axis=1)))
    gap = tf.norm(centroids[0] - centroids[1])
    minority = minority_of(assign)
    larger = tf.where(tf.reduce_sum(assign) * 2 > tf.size(assign), 1, 0)
    distance = tf.math.divide_no_nan(tf.norm(points - centroids[larger], axis=1), spread_rms)
    separated = (gap > separation * spread_rms) & (gap > 0)
    return minority & separated, distance


@attrs.frozen
class LabelFlipPCA(Detector):
    """Tolpegin et al. 2020 ("Data Poisoning Attacks Against Federated
    Learning Systems", ESORICS): label flipping from class ``source`` shows in
    the output-layer parameters of that class.  Each kept update's slice for
    class ``source`` (column ``source`` of the last [hidden, classes] kernel
    and that class's bias entry, see `class_columns`; ``layers`` restricts
    where that kernel is looked for) is standardized per column (as the
    authors' code does before PCA), projected on 2 principal components (SVD
    in TF) and split by 2-means.

    The paper separates the clusters by eye; the rule here: the smaller
    cluster is dropped when the centroids lie more than ``separation`` times
    the pooled within-cluster RMS distance apart (a 2-means split of one
    Gaussian blob gives about 2.7); nothing is dropped on equal sizes or
    with fewer than 3 kept rows.  Score: the distance to the larger
    cluster's centroid, in units of that RMS."""

    source: int = param(doc="the class whose output-layer parameters are examined", ge=0)
    separation: float = param(4.0, doc="centroid gap, in within-cluster RMS distances, needed to drop", gt=0)
    standardize: bool = param(True, doc="scale each column to unit variance before PCA")
    layers: tuple[str, ...] = param((), doc="names (substrings) of the layers searched for the output layer; "
                                                "empty: all")

    def check(self, facts):
        if self.source >= facts.num_classes:
            return [f"source class {self.source} does not exist: the dataset has {facts.num_classes} classes"]
        return []

    def detect(self, updates, keep, ctx):
        import tensorflow as tf

        size = tf.shape(updates)[0]
        columns = class_columns(ctx.layers, ctx.facts.num_classes, self.source, self.layers)
        rows, x = kept_rows(updates, keep, columns)
        n = tf.size(rows)
        minority, distance = tf.cond(
            n >= 3,
            lambda: separated_minority(pca_projection(x, 2, self.standardize), self.separation),
            lambda: (tf.zeros([n], tf.bool), tf.zeros([n], x.dtype)))
        return spread(rows, distance, size, np.nan), keep & spread(rows, ~minority, size, False)


# --------------------------------------------------------------------------
# Auror
# --------------------------------------------------------------------------


def column_two_means_gap(x):
    """For each column of ``x`` [n, c] (n >= 2), the distance between the two
    centroids of its optimal 1-D 2-means split (exact: the best cut of the
    sorted values, by prefix sums); 0 for fewer than two rows."""
    import tensorflow as tf

    n = tf.shape(x)[0]
    values = tf.sort(x - mean_or_zero(x), axis=0)
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
    larger cluster's centroid on the indicative features."""

    alpha: float = param(0.01, doc="centroid distance (update units) that makes a feature indicative and a split real",
                         gt=0)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def detect(self, updates, keep, ctx):
        import tensorflow as tf

        size = tf.shape(updates)[0]
        rows, x = kept_rows(updates, keep, ctx.columns(self.layers))
        indicative = column_two_means_gap(x) > self.alpha
        features = x * tf.cast(indicative, x.dtype)[None, :]
        assign, centroids = two_means(features)
        larger = tf.where(tf.reduce_sum(assign) * 2 > tf.size(assign), 1, 0)
        distance = tf.norm(features - centroids[larger], axis=1)
        drop = (minority_of(assign) & (tf.norm(centroids[0] - centroids[1]) > self.alpha)
                & tf.reduce_any(indicative) & (tf.size(rows) >= 3))
        return spread(rows, distance, size, np.nan), keep & spread(rows, ~drop, size, False)


# --------------------------------------------------------------------------
# FLDetector
# --------------------------------------------------------------------------

# Salt folded into the round seed for the gap statistic's reference samples ("FLDT").
_SALT_FLDETECTOR = 0x464C4454


def lbfgs_hvp(s, y, v):
    """The L-BFGS Hessian-vector product B v from the curvature pairs
    (s_j, y_j), the rows of ``s`` and ``y`` ([m, c], oldest first, m >= 1),
    for ``v`` [c] (FLDetector's Algorithm 1): the compact representation of
    m BFGS updates of B_0 = sigma I (Byrd, Nocedal & Schnabel 1994,
    "Representations of quasi-Newton matrices and their use in limited
    memory methods", Math. Programming, Theorem 2.3),

        B v = sigma v - [sigma S, Y] M^+ [sigma S^T v; Y^T v],
        M = [[sigma S^T S, L], [L^T, -D]],   sigma = y_m.s_m / s_m.s_m,

    where S^T Y = L + D + U (L strictly lower triangular, D diagonal).

    Computed in float64 from one Gram matrix of [S; Y]; M is inverted by
    pseudo-inverse, so nearly parallel steps (usual along a training
    trajectory) make a poor estimate rather than a failed round.  B is
    exactly the matrix that m recursive BFGS updates of B_0 give: it meets
    the newest secant equation B s_m = y_m; when y_j = A s_j for a symmetric
    A and the steps are A-conjugate (conjugate-gradient or exact line-search
    steps on a quadratic), B v = A v for every v in the span of the steps
    (in general, the older pairs are only approximated).  B(S, c Y) =
    c B(S, Y) for any c != 0: pairs of model deltas give minus the
    gradient-space product, and distances between predictions do not
    change."""
    import tensorflow as tf

    s64, y64, v64 = (tf.cast(t, tf.float64) for t in (s, y, v))
    m = tf.shape(s64)[0]
    stacked = tf.concat([s64, y64], axis=0)  # [2m, c]
    gram = tf.matmul(stacked, stacked, transpose_b=True)
    ss, sy = gram[:m, :m], gram[:m, m:]  # sy[i, j] = s_i . y_j
    diagonal = tf.linalg.diag_part(sy)
    lower = tf.linalg.band_part(sy, -1, 0) - tf.linalg.diag(diagonal)
    sigma = tf.math.divide_no_nan(diagonal[-1], ss[-1, -1])
    middle = tf.concat([tf.concat([sigma * ss, lower], axis=1),
                        tf.concat([tf.transpose(lower), -tf.linalg.diag(diagonal)], axis=1)], axis=0)
    projected = tf.linalg.matvec(stacked, v64)  # [S v; Y v]
    scale = tf.concat([tf.fill([m], sigma), tf.ones([m], tf.float64)], axis=0)  # [sigma S; Y]
    solved = tf.linalg.matvec(tf.linalg.pinv(middle), scale * projected)
    product = sigma * v64 - tf.linalg.matvec(stacked, scale * solved, transpose_a=True)
    return tf.cast(product, v.dtype)


def within_cluster_sums(values):
    """(W_1, W_2) of the 1-D points in the last axis of ``values`` [..., n],
    n >= 2: the sum of squared distances to the mean, and that of the
    optimal 2-means split (exact: the best cut of the sorted values)."""
    import tensorflow as tf

    x = tf.sort(values, axis=-1)
    x = x - tf.reduce_mean(x, axis=-1, keepdims=True)
    n = tf.shape(x)[-1]
    total = tf.reduce_sum(x, axis=-1, keepdims=True)
    w1 = tf.reduce_sum(tf.square(x), axis=-1)
    prefix = tf.cumsum(x, axis=-1)[..., :-1]  # sums of the k smallest, k = 1 .. n-1
    left = tf.cast(tf.range(1, n), x.dtype)
    between = tf.square(prefix) / left + tf.square(total - prefix) / (tf.cast(n, x.dtype) - left)
    return w1, tf.maximum(w1 - tf.reduce_max(between, axis=-1), 0.0)


def gap_finds_clusters(scores, seed, references):
    """The gap statistic (Tibshirani, Walther & Hastie 2001, "Estimating the
    number of clusters in a data set via the gap statistic", JRSS B), as
    FLDetector uses it: do the 1-D ``scores`` [n] form more than one
    cluster?  The scores are scaled to [0, 1] (min-max, as the authors'
    code does) and compared with ``references`` sets of n points uniform
    on [0, 1], drawn from the stateless ``seed``.  With W_k the
    within-cluster sum of squares of the optimal k-means (exact in 1-D):
    Gap(k) = mean_b log W_k(ref_b) - log W_k(scores) and s_k = sqrt(1 + 1/B)
    * std_b log W_k(ref_b); the estimated number of clusters is the smallest
    k with Gap(k) >= Gap(k + 1) - s_{k+1}, so it exceeds one exactly when
    Gap(1) < Gap(2) - s_2 (only k = 1 and 2 matter).  False for fewer than
    3 scores or when all are equal.  In float64."""
    import tensorflow as tf

    x = tf.cast(scores, tf.float64)
    n = tf.size(x)
    low = tf.reduce_min(tf.concat([x, [np.inf]], axis=0))
    high = tf.reduce_max(tf.concat([x, [-np.inf]], axis=0))

    def decide():
        scaled = (x - low) / (high - low)
        reference = tf.random.stateless_uniform([references, n], seed, dtype=tf.float64)
        w1, w2 = within_cluster_sums(tf.concat([scaled[None, :], reference], axis=0))
        tiny = np.finfo(np.float64).tiny  # two exact clusters: W_2 = 0, an infinite gap
        log1, log2 = tf.math.log(tf.maximum(w1, tiny)), tf.math.log(tf.maximum(w2, tiny))
        gap1 = tf.reduce_mean(log1[1:]) - log1[0]
        gap2 = tf.reduce_mean(log2[1:]) - log2[0]
        spread2 = np.sqrt(1.0 + 1.0 / references) * tf.math.reduce_std(log2[1:])
        return gap1 < gap2 - spread2

    return tf.cond((n >= 3) & (high > low), decide, lambda: tf.constant(False))


def upper_cluster(scores):
    """The points of the cluster with the larger mean in the optimal 2-means
    split of the 1-D ``scores`` [n], n >= 2 (exact: the best cut of the
    sorted values; a point belongs to the upper cluster when it lies above
    the midpoint of the two centroids)."""
    import tensorflow as tf

    x = tf.cast(scores, tf.float64)
    ordered = tf.sort(x)
    n = tf.size(x)
    prefix = tf.cumsum(ordered)[:-1]
    total = tf.reduce_sum(ordered)
    left = tf.cast(tf.range(1, n), tf.float64)
    right = tf.cast(n, tf.float64) - left
    centred = prefix - left * total / tf.cast(n, tf.float64)  # between-cluster term, shift-free
    cut = tf.argmax(tf.square(centred) * (1.0 / left + 1.0 / right), output_type=tf.int32)
    low_mean = prefix[cut] / left[cut]
    high_mean = (total - prefix[cut]) / right[cut]
    return x > 0.5 * (low_mean + high_mean)


def fldetector_flags(scores, seed, references):
    """FLDetector's decision on suspicious scores [n]: when the gap
    statistic finds more than one cluster, the higher cluster of 2-means;
    otherwise nobody (bool [n])."""
    import tensorflow as tf

    return tf.cond(gap_finds_clusters(scores, seed, references), lambda: upper_cluster(scores),
                   lambda: tf.zeros(tf.shape(scores), tf.bool))


@attrs.frozen
class FLDetector(Detector):
    """FLDetector (Zhang, Cao, Jia & Gong 2022, "FLDetector: Defending
    Federated Learning Against Model Poisoning Attacks via Detecting
    Malicious Clients", KDD): a benign client's update is consistent with
    its previous one, so the server predicts each client's update from its
    last one and flags clients whose predictions keep missing.

    Each round t (the detector's own count; the global model w^t is
    ``ctx.global_weights``):

    1. Curvature pairs.  The global update of round t-1 (the aggregate a^{t-1})
       is recovered from the global models as (w^t - w^{t-1}) / server
       learning rate.  The pair (w^{t-1} - w^{t-2}, a^{t-1} - a^{t-2}) joins a
       window of the last ``window`` (N) pairs; pairs whose step is zero or
       orthogonal to its update change are skipped (they would make L-BFGS
       singular).  The first pair comes in the third round.
    2. Prediction.  With the L-BFGS product B v of the window's pairs (the
       paper's Algorithm 1, `lbfgs_hvp`) and v = w^t - w^{t-1}, client i's
       predicted update is u_hat_i = u_i^{t-1} + B v, and its distance is
       d_i = ||u_hat_i - u_i^t||.
    3. Suspicious scores.  Distances are normalised (see below) and kept for
       the last N rounds with a prediction (state ``distances`` [N,
       num_clients], NaN where a client has none); a client's score s_i is
       the mean of its distances in that window.
    4. Decision.  Once N rounds of distances are recorded, the gap statistic
       (``references`` = B uniform reference sets, from the round seed; see
       `gap_finds_clusters`) decides whether the scores of this round's kept
       clients form more than one cluster; if so, 2-means splits them and the
       cluster with the larger mean score is dropped.  Earlier rounds (the
       first N + 1: distances start in round 3) keep every client.

    ``layers`` restricts everything to the columns of the named layers: the
    curvature pairs, v, the predictions and the distances (so L-BFGS
    approximates that block of the Hessian, the cross terms with other layers
    folded into it); leaving out, say, batch-norm statistics keeps
    parameters that do not follow the gradient out of the curvature pairs.
    State (per client id, [num_clients, d]): each client's last update, so
    memory grows as FoolsGold's.

    Deviations from the paper, and why:

    - Updates are model deltas (client model minus global model), not
      gradients.  The pairs pair global-model steps with changes of the
      global update, so B maps a step to the change of an update; since
      B(S, c Y) = c B(S, Y), under ``protocol fedsgd`` (one gradient, sent
      as minus the gradient) the distances are the paper's exactly.  Under
      FedAvg with several local steps an update is only roughly a gradient.
    - The detector does not see the aggregate, so a^{t-1} is recovered from
      the global models.  This is exact without server momentum; with
      ``server_momentum`` it gives the server's velocity instead.
    - Distances are divided by their mean over the clients measured in the
      round rather than by their sum: n times the paper's value under full
      participation (the gap statistic and 2-means do not change under
      scaling, so decisions are the same), and rounds with different numbers
      of measured clients stay comparable under partial participation.
    - Partial participation (the paper has every client in every round):
      only a client whose update reached this detector in the previous round
      (kept until here) gets a prediction; a client's score is the mean of
      the distances it has in the window (however few); a client without any
      is left out of the gap statistic and of 2-means and is kept.  Its score
      is then 0 (no evidence).  Clients dropped by an earlier detector leave
      no update for the next round's prediction.
    - The gap statistic takes the mean of log W (Tibshirani et al.; the
      authors' code takes the log of the mean); k-means is solved exactly
      in 1-D instead of by k-means++ (only k = 1 and 2 decide).
    - In the paper, once attackers are found the flagged clients are
      removed from training; here the decision is made again every round
      and drops that round's flagged rows (no permanent ban: a client
      flagged once is judged again next round), and the windows keep
      moving.  The gap statistic has false positives of its own (a few
      percent of the rounds on honest scores in our tests), which a
      per-round decision repeats.

    Score: s_i (0 for a client without a distance in the window yet).
    """

    window: int = param(10, doc="N: rounds of curvature pairs and of distances kept (the paper's window)", ge=1)
    references: int = param(10, doc="B: uniform reference sets of the gap statistic", ge=2)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def check(self, facts):
        if facts.clients_per_round < 3:
            return [f"fldetector needs at least 3 clients per round to split their scores "
                    f"(here clients_per_round is {facts.clients_per_round})"]
        return []

    def initial_state(self, dim, facts):
        window, clients = self.window, facts.num_clients
        return {
            "rounds": np.zeros([], np.int32),  # rounds this detector has seen
            "weights": np.zeros([dim], np.float32),  # w^{t-1}
            "step": np.zeros([dim], np.float32),  # w^{t-1} - w^{t-2}
            "global_update": np.zeros([dim], np.float32),  # a^{t-2}
            "weight_diffs": np.zeros([window, dim], np.float32),  # curvature pairs, newest last
            "update_diffs": np.zeros([window, dim], np.float32),
            "pairs": np.zeros([], np.int32),
            "previous": np.zeros([clients, dim], np.float32),  # each client's last update
            "previous_round": np.full([clients], -1, np.int32),  # and the round it came in
            "distances": np.full([window, clients], np.nan, np.float32),  # newest last
            "recorded": np.zeros([], np.int32),
        }

    def detect_with_state(self, updates, keep, ctx, state):
        import tensorflow as tf

        window = self.window
        columns = ctx.columns(self.layers)
        if columns is not None and len(columns) == 0:
            raise ValueError("the detector's `layers` match no layer of the model")

        def on_columns(t):
            return t if columns is None else tf.gather(t, columns, axis=-1)

        size = tf.shape(updates)[0]
        rows, x = kept_rows(updates, keep)
        clients = tf.gather(ctx.client_ids, rows)
        now = state["rounds"] + 1
        weights = tf.cast(ctx.global_weights, tf.float32)

        # 1. The step into this round, the global update that made it, and the newest curvature pair.
        step = tf.where(now >= 2, weights - state["weights"], tf.zeros_like(weights))
        global_update = tf.math.divide_no_nan(step, tf.constant(ctx.facts.server_learning_rate, tf.float32))
        s, y = state["step"], global_update - state["global_update"]
        s_c, y_c = on_columns(s), on_columns(y)
        usable = (now >= 3) & (tf.reduce_sum(s_c * s_c) > 0) & tf.not_equal(tf.reduce_sum(s_c * y_c), 0.0)
        weight_diffs = tf.where(usable, tf.concat([state["weight_diffs"][1:], s[None]], axis=0), state["weight_diffs"])
        update_diffs = tf.where(usable, tf.concat([state["update_diffs"][1:], y[None]], axis=0), state["update_diffs"])
        pairs = tf.where(usable, tf.minimum(state["pairs"] + 1, window), state["pairs"])
        predicting = pairs > 0
        v = on_columns(step)
        product = tf.cond(
            predicting,
            lambda: lbfgs_hvp(on_columns(weight_diffs[window - pairs:]), on_columns(update_diffs[window - pairs:]), v),
            lambda: tf.zeros_like(v))

        # 2. Predictions for the clients whose update came in the previous round.
        measured = predicting & tf.equal(tf.gather(state["previous_round"], clients), now - 1)
        predicted = on_columns(tf.gather(state["previous"], clients)) + product[None, :]
        distance = tf.norm(predicted - on_columns(x), axis=1)
        mean = tf.math.divide_no_nan(tf.reduce_sum(tf.where(measured, distance, 0.0)),
                                     tf.reduce_sum(tf.cast(measured, tf.float32)))
        normalised = tf.where(measured, tf.math.divide_no_nan(distance, mean), np.nan)

        # 3. The window of distances; each client's mean over it.
        latest = tf.tensor_scatter_nd_update(tf.fill(tf.shape(state["previous_round"]), np.nan), clients[:, None],
                                             normalised)
        distances = tf.where(predicting, tf.concat([state["distances"][1:], latest[None]], axis=0), state["distances"])
        recorded = tf.where(predicting, tf.minimum(state["recorded"] + 1, window), state["recorded"])
        mine = tf.gather(distances, clients, axis=1)  # [window, n]
        present = tf.math.is_finite(mine)
        counts = tf.reduce_sum(tf.cast(present, tf.float32), axis=0)
        score = tf.math.divide_no_nan(tf.reduce_sum(tf.where(present, mine, 0.0), axis=0), counts)

        # 4. Gap statistic and 2-means on the clients with a score, once the window is full.
        candidates = tf.cast(tf.where(counts > 0)[:, 0], tf.int32)
        candidate_scores = tf.gather(score, candidates)
        seed = tf.random.experimental.stateless_fold_in(tf.cast(ctx.seed, tf.int64), _SALT_FLDETECTOR)
        flagged = tf.cond(recorded >= window, lambda: fldetector_flags(candidate_scores, seed, self.references),
                          lambda: tf.zeros(tf.shape(candidates), tf.bool))
        malicious = tf.scatter_nd(candidates[:, None], tf.cast(flagged, tf.int32), tf.shape(rows)) > 0
        keep = keep & spread(rows, tf.logical_not(malicious), size, False)

        arrived = tf.fill(tf.shape(clients), now)
        new_state = dict(
            rounds=now, weights=weights, step=step, global_update=global_update,
            weight_diffs=weight_diffs, update_diffs=update_diffs, pairs=pairs,
            previous=tf.tensor_scatter_nd_update(state["previous"], clients[:, None], x),
            previous_round=tf.tensor_scatter_nd_update(state["previous_round"], clients[:, None], arrived),
            distances=distances, recorded=recorded,
        )
        return updates, spread(rows, score, size, np.nan), keep, new_state


@hookimpl
def fedarena_register_detectors(registry):
    registry.add("flame", Flame)
    registry.add("foolsgold", FoolsGold)
    registry.add("contra", Contra)
    registry.add("norm_outlier", NormOutlier)
    registry.add("cosine_outlier", CosineOutlier)
    registry.add("label_flip_pca", LabelFlipPCA)
    registry.add("auror", Auror)
    registry.add("fldetector", FLDetector)
