"""The shared tensor kit of the built-in plugins: small TF functions that
several aggregators, detectors or attacks use, written once.  Each takes and
returns tensors and knows nothing of plugins.
"""

from __future__ import annotations

import math

from fedarena.plugins import _tf as tf


# --------------------------------------------------------------------------
# Detectors and attacks: robust statistics, similarities, clustering, seeds
# --------------------------------------------------------------------------

# Iglewicz & Hoaglin (1993): modified z-score 0.6745 (x - median) / MAD.
MAD_SCALE = 0.6745
# Fallback when MAD is zero (more than half the values equal): the mean
# absolute deviation, scaled so that it estimates the standard deviation.
MEAN_AD_SCALE = 1.253314


def median(values, axis=0):
    """Median along ``axis`` (the mean of the two middle values for an even
    count, as NumPy); zero for an empty input."""
    values = tf.convert_to_tensor(values)
    count = tf.shape(values)[axis]
    # A zero appended along the axis makes the gather below valid for count 0.
    pad_shape = tf.tensor_scatter_nd_update(tf.shape(values), [[axis]], [1])
    ordered = tf.concat([tf.sort(values, axis=axis), tf.zeros(pad_shape, values.dtype)], axis=axis)
    middle = tf.gather(ordered, tf.stack([tf.maximum(count - 1, 0) // 2, count // 2]), axis=axis)
    return tf.reduce_mean(middle, axis=axis)


def mean_or_zero(values, axis=0):
    """Mean along ``axis``; zero for an empty input."""
    count = tf.maximum(tf.shape(values)[axis], 1)
    return tf.reduce_sum(values, axis=axis) / tf.cast(count, values.dtype)


def column_mean(rows):
    """Column mean of ``[r, d]`` rows; zeros when there are none."""
    count = tf.cast(tf.shape(rows)[0], rows.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(rows, axis=0), count)


def column_std(rows):
    """Column population standard deviation (ddof = 0) of ``[r, d]`` rows;
    zeros when there are none."""
    centred = rows - column_mean(rows)[None, :]
    count = tf.cast(tf.shape(rows)[0], rows.dtype)
    return tf.sqrt(tf.math.divide_no_nan(tf.reduce_sum(centred * centred, axis=0), count))


def robust_z(values):
    """Modified z-scores (Iglewicz & Hoaglin 1993): 0.6745 (x - median) / MAD.
    Where the MAD is zero, (x - median) / (1.253314 * mean absolute deviation)
    instead; zero where every value is equal."""
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
    x = x * row_scales(x)[:, None]  # exact; 1.0 unless a huge row's norm would overflow
    unit = tf.math.divide_no_nan(x, tf.norm(x, axis=1, keepdims=True))
    return tf.clip_by_value(tf.matmul(unit, unit, transpose_b=True), -1.0, 1.0)


def without_diagonal(matrix, value):
    """``matrix`` with its diagonal set to ``value``."""
    eye = tf.eye(tf.shape(matrix)[0], dtype=tf.bool)
    return tf.where(eye, tf.constant(value, matrix.dtype), matrix)


def squared_distances(a, b):
    """Squared L2 distances between the rows of ``a`` [p, d] and ``b`` [q, d]
    -> [p, q] (Gram form, clamped at 0)."""
    aa = tf.reduce_sum(a * a, axis=1)
    bb = tf.reduce_sum(b * b, axis=1)
    return tf.maximum(aa[:, None] + bb[None, :] - 2.0 * tf.matmul(a, b, transpose_b=True), 0.0)


def self_squared_distances(rows):
    """Pairwise squared distances of one set of rows, with an exact zero diagonal."""
    dist = squared_distances(rows, rows)
    return tf.linalg.set_diag(dist, tf.zeros([tf.shape(rows)[0]], rows.dtype))


def sum_smallest_off_diagonal(dist, k):
    """Per row of a square matrix, the sum of its ``k`` smallest entries off
    the diagonal (``k`` clamped to 0 .. n - 1)."""
    n = tf.shape(dist)[0]
    k = tf.clip_by_value(k, 0, tf.maximum(n - 1, 0))
    inf = tf.constant(float("inf"), dist.dtype)
    ordered = tf.sort(tf.where(tf.eye(n, dtype=tf.bool), inf, dist), axis=1)
    return tf.reduce_sum(tf.where((tf.range(n) < k)[None, :], ordered, tf.zeros_like(ordered)), axis=1)


def two_means(points, max_iter=100):
    """Lloyd's 2-means on ``points`` [n, p] -> (cluster of each point [n] int32
    in {0, 1}, centroids [2, p]).  Deterministic start: the point farthest
    from the mean, then the point farthest from that one.  Fewer than two
    points: all in cluster 0."""
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
    ones = tf.reduce_sum(assign)
    zeros = tf.size(assign) - ones
    # tf.equal, not ==: in TFF's graph mode `tensor == 1` is a plain False.
    return tf.where(ones < zeros, tf.equal(assign, 1),
                    tf.where(zeros < ones, tf.equal(assign, 0), tf.zeros_like(assign, tf.bool)))


def on_columns(x, columns):
    """``x`` [..., d] restricted to ``columns`` (indices into the last axis, as
    `ServerContext.columns` gives for a plugin's ``layers``; None: all).
    Raises `ValueError` when ``columns`` is empty (the layers match nothing)."""
    if columns is None:
        return x
    if len(columns) == 0:
        raise ValueError("the detector's `layers` match no layer of the model")
    return tf.gather(x, columns, axis=-1)


def clip_factors(norms, bound):
    """The factor that scales each row of norm ``norms`` [n] down to at most
    ``bound``: ``bound / norm`` above the bound, 1 otherwise."""
    return tf.where(norms > bound, tf.math.divide_no_nan(bound, norms), 1.0)


def salted_seed(seed, salt: int):
    """A stateless seed (int64 [2]) of its own for one use of the round's
    ``seed``: ``salt`` folded into it."""
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), salt)


# --------------------------------------------------------------------------
# Aggregators: order statistics, Krum distances, layer columns, random columns
# --------------------------------------------------------------------------

AGGREGATOR_LAYERS_DOC = (
    "names (substrings) of the layers whose parameters the rule's distances or similarities use; "
    "empty: all (the aggregate always covers every parameter)")


# Per-coordinate order statistics of up to this many values come from a
# sorting network (Batcher's for 128 values: 1,471 compare-exchanges, about
# 3,000 graph ops, which cost seconds of tracing once); more values go to
# `tf.sort` or TF's `NthElement` selection.
SORTING_NETWORK_MAX = 128


def batcher_comparators(size):
    """The compare-exchanges ``(i, j)``, ``i < j``, of Batcher's odd-even
    merge sort for ``size`` values (Batcher 1968, "Sorting networks and their
    applications"), in order: the network for the next power of two, less
    every comparator that touches a position >= ``size`` (positions padded
    with +inf never move, so those comparators do nothing)."""
    width = 1
    while width < size:
        width *= 2
    pairs = []
    merged = 1  # the network merges sorted runs of `merged` values into runs of 2 * merged
    while merged < width:
        gap = merged
        while gap >= 1:
            for start in range(gap % merged, width - gap, 2 * gap):
                for i in range(min(gap, width - start - gap)):
                    a, b = start + i, start + i + gap
                    if a // (2 * merged) == b // (2 * merged) and b < size:
                        pairs.append((a, b))
            gap //= 2
        merged *= 2
    return pairs


def sorted_columns(rows, size):
    """Each column of ``rows`` ``[t, d]`` sorted ascending, ``t <= size``
    (``size`` a Python int): ``[size, d]``, the last ``size - t`` rows +inf.

    A sorting network of elementwise minima and maxima over whole rows:
    no transpose, every op vectorised along ``d`` and branch-free, where a
    per-coordinate sort or selection (`tf.sort`, `NthElement`) runs a
    branchy loop over each column's few values."""
    if rows.shape[0] != size:
        padding = tf.fill([size - tf.shape(rows)[0], tf.shape(rows)[1]], tf.constant(math.inf, rows.dtype))
        rows = tf.reshape(tf.concat([rows, padding], 0), [size, -1])
    wires = tf.unstack(rows, num=size)
    for a, b in batcher_comparators(size):
        wires[a], wires[b] = tf.minimum(wires[a], wires[b]), tf.maximum(wires[a], wires[b])
    return tf.stack(wires)


def sorted_rows(rows, max_count=None):
    """``rows`` ``[t, d]`` with each column sorted ascending: the values of
    ``tf.sort(rows, axis=0)``, ``[t, d]``.

    ``max_count`` (a Python int), or ``t`` where it is static, bounds ``t``:
    up to `SORTING_NETWORK_MAX` the columns come from `sorted_columns`
    (padded with +inf to the bound when ``t`` is known only at run time;
    4-8x faster than `tf.sort` from 64 x 65,536 to 100 x 1e6, see
    docs/performance.md); otherwise, or when ``t`` exceeds the bound at run
    time, from `tf.sort`.  The two give the same values bit for bit, except
    where a column holds both -0.0 and +0.0 (equal values): those may come
    out in another order or with another sign."""
    rows = tf.convert_to_tensor(rows)
    return _by_network(rows, max_count, lambda size: sorted_columns(rows, size)[: tf.shape(rows)[0]],
                       lambda: tf.sort(rows, axis=0))


def _by_network(rows, max_count, by_network, otherwise):
    """``by_network(size)`` where the count of ``rows`` is known to be at
    most ``size`` <= `SORTING_NETWORK_MAX` (its static count, or
    ``max_count`` checked when the graph runs), else ``otherwise()``."""
    size = rows.shape[0] if rows.shape[0] is not None else max_count
    if size is None or size == 0 or size > SORTING_NETWORK_MAX:
        return otherwise()
    if rows.shape[0] == size:
        return by_network(size)
    return tf.cond(tf.shape(rows)[0] <= size, lambda: by_network(size), otherwise)


def coordinate_median(rows, max_count=None):
    """Per column median of ``[n, d]`` rows, ``n >= 1`` (the mean of the two
    middle values when ``n`` is even, as NumPy): one sort (`sorted_rows`,
    which ``max_count`` is for), no padding (see `median` for inputs that
    may be empty)."""
    ordered = sorted_rows(rows, max_count)
    count = tf.shape(ordered)[0]
    two_middle = tf.reduce_mean(tf.gather(ordered, [(count - 1) // 2, count // 2]), axis=0)
    # An odd count: the middle value itself (its mean with itself overflows past 1.7e38).
    return tf.where(tf.equal(count % 2, 1), ordered[count // 2], two_middle)


def mean_closest_to_median(rows, beta, max_count=None):
    """Per column of ``rows`` ``[t, d]``: the mean of the ``beta`` values
    closest to the column's median (NumPy's median convention), ``1 <= beta
    <= t``.  The values strictly inside the beta-th distance all count; the
    values at exactly that distance share the places left, so the result
    does not depend on the order of the rows.

    ``max_count`` (a Python int), or ``t`` where it is static, bounds ``t``:
    up to `SORTING_NETWORK_MAX` the columns are sorted by `sorted_columns`
    (2.5-3.2x faster than two `NthElement` selections at 60 x 65,536 and
    80 x 1e6, docs/performance.md); otherwise, or when ``t`` exceeds the
    bound at run time, `mean_closest_to_median_by_selection` computes the
    same values."""
    rows = tf.convert_to_tensor(rows)
    count = tf.shape(rows)[0]

    def by_sorting(size):
        ordered = sorted_columns(rows, size)[:count]
        lower, upper = ordered[(count - 1) // 2], ordered[count // 2]
        median = tf.where(tf.equal(count % 2, 1), upper, 0.5 * (lower + upper))
        # Distances to the median fall, then rise, along a sorted column, so
        # the beta closest values are a run of beta neighbours: the beta-th
        # distance is the smallest, over the count - beta + 1 runs, of the
        # larger distance of a run's two ends.
        first_ends = ordered[: count - beta + 1]
        last_ends = ordered[beta - 1 :]
        radius = tf.reduce_min(tf.maximum(tf.abs(first_ends - median), tf.abs(last_ends - median)), axis=0)
        return _mean_within(ordered, tf.abs(ordered - median), radius, beta, axis=0)

    return _by_network(rows, max_count, by_sorting,
                       lambda: mean_closest_to_median_by_selection(tf.transpose(rows), beta))


def mean_closest_to_median_by_selection(columns, beta):
    """`mean_closest_to_median` for each row of ``columns`` ``[d, t]`` (the
    values of a coordinate along the last axis), any ``t``.

    Order statistics come from TF's ``NthElement`` (a selection, not a sort:
    2.5x faster than the sort plus ``top_k`` at 1e6 x 80, benchmark B7)."""
    count = tf.shape(columns)[1]
    half = count // 2
    upper = tf.raw_ops.NthElement(input=columns, n=half)
    # For an even count the median also needs the value just below `upper`:
    # the largest one under it, or `upper` itself when it is repeated there.
    below = columns < upper[:, None]
    lower = tf.where(tf.reduce_sum(tf.cast(below, tf.int32), axis=1) < half, upper,
                     tf.reduce_max(tf.where(below, columns, -math.inf), axis=1))
    median = tf.where(tf.equal(count % 2, 1), upper, 0.5 * (lower + upper))
    distance = tf.abs(columns - median[:, None])
    radius = tf.raw_ops.NthElement(input=distance, n=beta - 1)
    return _mean_within(columns, distance, radius[:, None], beta, axis=1)


def _mean_within(values, distance, radius, beta, axis):
    """The mean of the ``beta`` values nearest the median along ``axis``,
    from their ``distance`` to it and the beta-th distance ``radius``: every
    value strictly inside it, and the values at exactly that distance
    sharing the places left."""
    inside = distance < radius
    edge = tf.equal(distance, radius)
    places_left = tf.cast(beta, values.dtype) - tf.reduce_sum(tf.cast(inside, values.dtype), axis=axis)
    edge_mean = (tf.reduce_sum(tf.where(edge, values, 0.0), axis=axis)
                 / tf.reduce_sum(tf.cast(edge, values.dtype), axis=axis))
    total = tf.reduce_sum(tf.where(inside, values, 0.0), axis=axis) + places_left * edge_mean
    return total / tf.cast(beta, values.dtype)


def pairwise_sq_distances(rows):
    """All squared L2 distances between rows, ``[n, n]``, from one Gram matrix;
    symmetric, zero diagonal, clipped at 0.

    The rows are centred first: distances do not change, but the float32
    cancellation in ||a||^2 + ||b||^2 - 2 a.b then scales with the honest
    spread, not with the rows' offset from the origin or with an attacker's
    magnitude.  The centre is a medoid: the row whose n/2 nearest rows are
    closest, judged on every 16th coordinate (a rough Gram of 1/16 the
    cost).  With an honest majority it is an honest row, whatever the
    attackers send (huge rows, or zero rows); a coordinate-wise median would
    do as well but costs a sort of the whole matrix (ten times the Gram at
    100 x 1e6 with `tf.sort`, benchmark B7; the sorting network of
    `sorted_rows` sorts it 3-4x faster, still several Grams)."""
    # Huge (but finite) rows are first scaled by an exact power of two
    # (`scale_of`; 1.0 at ordinary scales), so no square overflows: the
    # distances are then in scaled units and rank the same.
    rows = rows * scale_of(rows)
    sample = rows[:, ::16]
    sample_sq = tf.reduce_sum(tf.square(sample), axis=1)
    rough = tf.maximum(sample_sq[:, None] + sample_sq[None, :] - 2.0 * tf.matmul(sample, sample, transpose_b=True), 0.0)
    half = tf.maximum(tf.shape(rows)[0] // 2, 1)
    closeness = -tf.reduce_sum(tf.math.top_k(-rough, k=half).values, axis=1)  # sum of the n/2 smallest
    centred = rows - rows[tf.argmin(closeness)][None, :]
    sq = tf.reduce_sum(tf.square(centred), axis=1)
    gram = tf.matmul(centred, centred, transpose_b=True)
    dist = tf.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
    dist = 0.5 * (dist + tf.transpose(dist))
    return tf.linalg.set_diag(dist, tf.zeros_like(sq))


def krum_scores(dist, remaining, f):
    """Krum scores of the ``remaining`` rows (inf for the others): the sum of
    squared distances to the ``n_r - f - 2`` nearest other remaining rows
    (Blanchard et al. 2017), with ``n_r`` the number remaining.  When too
    few rows remain for that, the neighbour count is clamped to
    ``[1, n_r - 1]``.  ``dist``: `pairwise_sq_distances`."""
    n = tf.shape(dist)[0]
    n_r = tf.reduce_sum(tf.cast(remaining, tf.int32))
    k = tf.maximum(tf.minimum(tf.maximum(n_r - f - 2, 1), n_r - 1), 0)
    others = remaining[None, :] & tf.logical_not(tf.eye(n, dtype=tf.bool))
    nearest = tf.sort(tf.where(others, dist, math.inf), axis=1)[:, :k]
    return tf.where(remaining, tf.reduce_sum(nearest, axis=1), math.inf)


def repeated_krum(dist, f, picks, rescore_above=None):
    """Pick ``picks`` rows one at a time, each the Krum winner among the rows
    not yet picked.  Scores are recomputed on the remaining set before each
    pick while more than ``rescore_above`` rows remain (always when None);
    after that the last scores rank the rest.  -> bool mask of the picks."""
    n = tf.shape(dist)[0]
    remaining = tf.ones([n], tf.bool)

    def body(i, remaining, scores):
        if rescore_above is None:
            scores = krum_scores(dist, remaining, f)
        else:
            count = tf.reduce_sum(tf.cast(remaining, tf.int32))
            scores = tf.cond(count > rescore_above, lambda: krum_scores(dist, remaining, f),
                             lambda: tf.where(remaining, scores, math.inf))
        winner = tf.argmin(scores, output_type=tf.int32)
        return i + 1, remaining & tf.logical_not(tf.one_hot(winner, n, on_value=True, off_value=False)), scores

    _, remaining, _ = tf.while_loop(
        lambda i, *_: i < picks, body, (tf.constant(0), remaining, krum_scores(dist, remaining, f))
    )
    return tf.logical_not(remaining)


def layer_columns(ctx, layers: tuple[str, ...]):
    """The update columns of the named layers (``ctx.columns``), for
    `on_columns`; None when ``layers`` is empty (every column).  Raises
    `ValueError` naming the model's layers when the names match none."""
    if not layers:
        return None
    columns = ctx.columns(layers)
    if len(columns) == 0:
        raise ValueError(f"the aggregator's `layers` {list(layers)} match no layer of the model "
                         f"({', '.join(layer.name for layer in ctx.layers)})")
    return columns


def random_columns(seed, d, count):
    """``count`` distinct column indices out of ``d``, drawn from ``seed``."""
    return tf.argsort(tf.random.stateless_uniform([d], seed))[:count]


# --------------------------------------------------------------------------
# Extreme but finite values: exact power-of-two scaling before squaring
# --------------------------------------------------------------------------

# A value of magnitude 2^SCALE_FROM_EXPONENT (about 1.1e15) or more is scaled
# (by an exact power of two) before it is squared, so that sums of squares
# over up to 2^45 coordinates stay inside float32's range; below it the
# factor is exactly 1.0 and every result is bit-for-bit what it was unscaled.
SCALE_FROM_EXPONENT = 50
# The magnitude a scaled peak is brought to: 2^40 (squares about 1e24).
SCALE_TO_EXPONENT = 40


def power_of_two_scale(peak):
    """The exact power-of-two factor (float32, same shape as ``peak``) that
    brings a magnitude ``peak`` >= 2^50 down to [2^40, 2^41); exactly 1.0
    below 2^50 (and for NaN).  Multiplying by it is exact in floating point,
    so it changes no ranking, ratio or cosine."""
    peak = tf.cast(peak, tf.float32)
    exponent = tf.bitwise.bitwise_and(tf.bitwise.right_shift(tf.bitcast(tf.abs(peak), tf.int32), 23), 255) - 127
    # 2^(40 - exponent): biased exponent 127 + 40 - exponent, in [39, 117] for exponent in [50, 128].
    biased = tf.clip_by_value(127 + SCALE_TO_EXPONENT - exponent, 1, 254)
    factor = tf.bitcast(tf.bitwise.left_shift(biased, 23), tf.float32)
    return tf.where(exponent >= SCALE_FROM_EXPONENT, factor, tf.ones_like(peak))


def scale_of(x):
    """One power-of-two factor for the whole of ``x`` (see `power_of_two_scale`),
    in ``x``'s dtype: 1.0 unless its largest |value| is 2^50 or more."""
    x = tf.convert_to_tensor(x)
    return tf.cast(power_of_two_scale(tf.reduce_max(tf.abs(x))), x.dtype)


def row_scales(x):
    """One power-of-two factor per row of ``x`` [n, d] -> [n] (see
    `power_of_two_scale`), in ``x``'s dtype."""
    x = tf.convert_to_tensor(x)
    return tf.cast(power_of_two_scale(tf.reduce_max(tf.abs(x), axis=1)), x.dtype)


def row_norms64(x):
    """The L2 norm of each row of ``x`` [n, d] in float64 -> [n], finite for
    any finite float32 rows: each row is scaled by its own power of two
    before squaring and the norm unscaled in float64.  Where no row needs
    scaling it is exactly ``tf.norm(x, axis=1)`` cast to float64 (and
    float64 division or square root of such values, cast back to float32,
    rounds as the float32 operation would)."""
    x = tf.convert_to_tensor(x)
    scales = row_scales(x)
    scaled_norms = tf.norm(x * scales[:, None], axis=1)
    return tf.cast(scaled_norms, tf.float64) / tf.cast(scales, tf.float64)


def to_float32(values):
    """float64 ``values`` as float32, clamped to float32's finite range."""
    top = 3.4028234663852886e38
    return tf.cast(tf.clip_by_value(values, -top, top), tf.float32)


def row_clip_factors(rows, bound):
    """`clip_factors` of the rows' norms against ``bound`` (float32, a scalar
    or [n]), with the norms computed by `row_norms64`: finite for any finite
    rows, and bit-for-bit `clip_factors(tf.norm(rows, axis=1), bound)` where
    no row needs scaling -> float32 [n]."""
    bound = tf.cast(tf.cast(bound, tf.float32), tf.float64)
    return tf.cast(clip_factors(row_norms64(rows), bound), tf.float32)


# A float64 norm of 2^NORM_FIT_EXPONENT or more is brought, with all the
# others, below it: the sum of two such norms (a median) then still fits
# float32 (largest finite 2^128 (1 - 2^-24)).
NORM_FIT_EXPONENT = 126


def row_norms32(x):
    """The L2 norm of each row of ``x`` [n, d] in float32, all multiplied by
    one power of two so that the largest is below 2^126 -> (norms float32
    [n], that factor float32 scalar).  Finite for any finite rows (see
    `row_norms64`).  The factor is exactly 1.0, and the norms bit-for-bit
    ``tf.norm(x, axis=1)``, unless a norm would reach 2^126; a common power
    of two changes no ratio between norms, no comparison and no clip factor,
    so scale-free uses (a norm over the median norm) need not undo it."""
    norms = row_norms64(x)
    peak = tf.maximum(tf.reduce_max(norms), 0.0)  # 0 for no rows
    exponent = tf.bitwise.bitwise_and(tf.bitwise.right_shift(tf.bitcast(peak, tf.int64), 52), 2047) - 1023
    # 2^(125 - exponent): biased exponent 1023 + 125 - exponent (>= 2^-26: rows are float32).
    factor = tf.bitcast(tf.bitwise.left_shift(1023 + NORM_FIT_EXPONENT - 1 - exponent, 52), tf.float64)
    factor = tf.where((exponent >= NORM_FIT_EXPONENT) & tf.math.is_finite(peak), factor, tf.ones_like(peak))
    return tf.cast(norms * factor, tf.float32), tf.cast(factor, tf.float32)
