"""Built-in aggregators.  Each works on the whole ``[K, d]`` update matrix
in TF; rows with weight zero (dropped by a detector) take no part.

Conventions shared by every rule here (see /work/shared/design/ALGORITHMS.md):

- The rows with weight > 0 are gathered first; ``n`` is their number, known
  only when the graph runs.  With no row left, the aggregate is zero and
  every share is zero.
- Example counts enter a rule only where its paper weights by them
  (FedAvg, the geometric median's alpha_i, norm clipping's mean, AFA's
  p_k n_k); the other robust rules are unweighted, as published.
- All pairwise distances come from one Gram matrix of the kept rows, centred
  on their coordinate-wise median first (distances do not change; the
  float32 cancellation in ||a||^2 + ||b||^2 - 2 a.b does), clipped at zero.
  There are no Python loops over rows or coordinates; ``tf.while_loop``
  runs only the iterative parts of an algorithm.
- Randomised rules (DnC, SignGuard, bucketing, norm clipping's noise) draw
  from the round's stateless seed folded with a salt of their own, so a
  run is reproducible and they never share random numbers.
- ``check`` tests a rule against ``clients_per_round``.  Detectors may drop
  rows later, so at run time each size that depends on ``n`` is clamped to
  what the rows left allow (documented per rule) instead of failing a run.
- ``share`` is each row's coefficient in the aggregate when the aggregate is
  a combination of rows, ``1/n`` per used row for coordinate-wise rules.
- ``layers`` (names, or substrings of names, of model layers; empty: all):
  the rules that choose or weight rows by distances or similarities compute
  those on the columns of the named layers only, e.g. to leave batch-norm
  statistics out; the aggregate still covers every parameter.  Krum and
  Multi-Krum: the pairwise distances; Bulyan: the distances of its Krum
  selection (its coordinate-wise step is unchanged); DnC: the coordinates
  it subsamples; SignGuard: the norm filter and the sign statistics (the
  clipping of the accepted updates uses whole norms); AFA: the cosine
  similarities to the aggregate; FLTrust: the cosine trust (the rescaling
  to the root update's norm uses whole norms).  There is no ``layers`` for
  the coordinate-wise rules (FedAvg, median, trimmed mean), which never
  compare rows, nor for the rules whose norms scale whole updates (norm
  clipping, centered clipping, the geometric median's Weiszfeld weights):
  a norm measured on some layers would leave the others unbounded.
  Bucketing passes the model's layers to its inner rule, which takes its
  own ``layers``.
"""

from __future__ import annotations

import math

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator, Facts, ServerContext
from fedarena.core.plugin.params import param

# Salts folded into the round seed, so that two plugins (or a wrapper and
# the rule it wraps) never draw the same random numbers.
_SALT_NOISE, _SALT_DNC, _SALT_SIGNGUARD, _SALT_BUCKETS, _SALT_INNER = 101, 102, 103, 104, 105

LAYERS_DOC = ("names (substrings) of the layers whose parameters the rule's distances or similarities use; "
              "empty: all (the aggregate always covers every parameter)")


# --------------------------------------------------------------------------
# Matrix helpers (in TF).
# --------------------------------------------------------------------------

def _kept(updates, weights):
    """Indices (int64 ``[n]``), rows ``[n, d]``, weights ``[n]`` and ``n`` of
    the rows with positive weight."""
    import tensorflow as tf

    index = tf.where(weights > 0)[:, 0]
    return index, tf.gather(updates, index), tf.gather(weights, index), tf.shape(index, out_type=tf.int32)[0]


def _on_layers(x, ctx: ServerContext, layers: tuple[str, ...]):
    """``x`` (rows ``[n, d]`` or a vector ``[d]``) restricted to the columns
    of the named layers, or ``x`` itself when ``layers`` is empty: what a
    rule's distances and similarities look at."""
    import tensorflow as tf

    columns = ctx.columns(layers)
    if columns is None:
        return x
    if len(columns) == 0:
        raise ValueError(f"the aggregator's `layers` {list(layers)} match no layer of the model "
                         f"({', '.join(layer.name for layer in ctx.layers)})")
    return tf.gather(x, columns, axis=-1)


def _spread(index, values, weights):
    """Values of the kept rows -> a ``[K]`` vector, zero for the other rows."""
    import tensorflow as tf

    return tf.scatter_nd(index[:, None], values, tf.shape(weights, out_type=tf.int64))


def _guarded(updates, weights, compute, state=None):
    """Run ``compute()`` only when some row is kept; otherwise a zero
    aggregate, zero shares (and the state unchanged)."""
    import tensorflow as tf

    def empty():
        zeros = (tf.zeros(tf.shape(updates)[1:], updates.dtype), tf.zeros_like(weights))
        return zeros if state is None else zeros + (state,)

    out = tf.cond(tf.reduce_any(weights > 0), compute, empty)
    out[0].set_shape(updates.shape[1:])
    out[1].set_shape(weights.shape)
    return out


def _coordinate_median(rows):
    """Per coordinate median of ``[n, d]`` rows (mean of the two middle values
    when ``n`` is even, as NumPy)."""
    import tensorflow as tf

    ordered = tf.sort(rows, axis=0)
    count = tf.shape(rows)[0]
    return tf.reduce_mean(tf.gather(ordered, [(count - 1) // 2, count // 2]), axis=0)


def _median(values):
    """Median of a vector (NumPy's convention)."""
    return _coordinate_median(values[:, None])[0]


def _mean_closest_to_median(columns, beta):
    """Per row of ``columns`` ``[d, t]``: the mean of the ``beta`` values
    closest to the row's median (NumPy's median convention).

    Order statistics come from TF's ``NthElement`` (a selection, not a sort:
    2.5x faster than the sort plus ``top_k`` at 1e6 x 80, benchmark B7).  The
    values strictly inside the beta-th distance all count; the values at
    exactly that distance share the places left."""
    import tensorflow as tf

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
    radius = tf.raw_ops.NthElement(input=distance, n=beta - 1)[:, None]
    inside = distance < radius
    edge = tf.equal(distance, radius)
    places_left = tf.cast(beta, columns.dtype) - tf.reduce_sum(tf.cast(inside, columns.dtype), axis=1)
    edge_mean = (tf.reduce_sum(tf.where(edge, columns, 0.0), axis=1)
                 / tf.reduce_sum(tf.cast(edge, columns.dtype), axis=1))
    total = tf.reduce_sum(tf.where(inside, columns, 0.0), axis=1) + places_left * edge_mean
    return total / tf.cast(beta, columns.dtype)


def _pairwise_sq_distances(rows):
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
    100 x 1e6, benchmark B7)."""
    import tensorflow as tf

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


def _krum_scores(dist, remaining, f):
    """Krum scores of the ``remaining`` rows (inf for the others): the sum of
    squared distances to the ``n_r - f - 2`` nearest other remaining rows
    (Blanchard et al. 2017), with ``n_r`` the number remaining.  When too
    few rows remain for that, the neighbour count is clamped to
    ``[1, n_r - 1]``."""
    import tensorflow as tf

    n = tf.shape(dist)[0]
    n_r = tf.reduce_sum(tf.cast(remaining, tf.int32))
    k = tf.maximum(tf.minimum(tf.maximum(n_r - f - 2, 1), n_r - 1), 0)
    others = remaining[None, :] & tf.logical_not(tf.eye(n, dtype=tf.bool))
    nearest = tf.sort(tf.where(others, dist, math.inf), axis=1)[:, :k]
    return tf.where(remaining, tf.reduce_sum(nearest, axis=1), math.inf)


def _repeated_krum(dist, f, picks, rescore_above=None):
    """Pick ``picks`` rows one at a time, each the Krum winner among the rows
    not yet picked.  Scores are recomputed on the remaining set before each
    pick while more than ``rescore_above`` rows remain (always when None);
    after that the last scores rank the rest.  -> bool mask of the picks."""
    import tensorflow as tf

    n = tf.shape(dist)[0]
    remaining = tf.ones([n], tf.bool)

    def body(i, remaining, scores):
        if rescore_above is None:
            scores = _krum_scores(dist, remaining, f)
        else:
            count = tf.reduce_sum(tf.cast(remaining, tf.int32))
            scores = tf.cond(count > rescore_above, lambda: _krum_scores(dist, remaining, f),
                             lambda: tf.where(remaining, scores, math.inf))
        winner = tf.argmin(scores, output_type=tf.int32)
        return i + 1, remaining & tf.logical_not(tf.one_hot(winner, n, on_value=True, off_value=False)), scores

    _, remaining, _ = tf.while_loop(
        lambda i, *_: i < picks, body, (tf.constant(0), remaining, _krum_scores(dist, remaining, f))
    )
    return tf.logical_not(remaining)


def _seed(ctx: ServerContext, salt: int):
    import tensorflow as tf

    return tf.random.experimental.stateless_fold_in(tf.cast(ctx.seed, tf.int64), salt)


def _random_columns(seed, d, count):
    """``count`` distinct column indices out of ``d``, drawn from ``seed``."""
    import tensorflow as tf

    return tf.argsort(tf.random.stateless_uniform([d], seed))[:count]


def _clip_factors(norms, bound):
    """min(1, bound / norm), 1 for zero norms."""
    import tensorflow as tf

    return tf.minimum(1.0, tf.math.divide_no_nan(bound, norms) + tf.cast(norms <= 0, norms.dtype))


def _with_clients_per_round(facts: Facts, clients_per_round: int) -> Facts:
    return attrs.evolve(facts, clients_per_round=clients_per_round)


# --------------------------------------------------------------------------
# Averaging, coordinate-wise rules.
# --------------------------------------------------------------------------

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

        def compute():
            index, rows, _, n = _kept(updates, weights)
            share = _spread(index, tf.fill([n], 1.0 / tf.cast(n, updates.dtype)), weights)
            return _coordinate_median(rows), share

        return _guarded(updates, weights, compute)


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

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        def compute():
            index, rows, _, n = _kept(updates, weights)
            if self.k is not None:
                trim = tf.constant(self.k)
            else:  # ceil(beta * n) in float64, guarded against 0.1 * 10 = 1.0000001
                trim = tf.cast(tf.math.ceil(self.beta * tf.cast(n, tf.float64) - 1e-9), tf.int32)
            trim = tf.minimum(trim, (n - 1) // 2)
            middle = tf.sort(rows, axis=0)[trim : n - trim]
            share = _spread(index, tf.fill([n], 1.0 / tf.cast(n, updates.dtype)), weights)
            return tf.reduce_mean(middle, axis=0), share

        return _guarded(updates, weights, compute)


# --------------------------------------------------------------------------
# Krum family.
# --------------------------------------------------------------------------

def _krum_check(name: str, f: int, n: int) -> list[str]:
    if n <= 2 * f + 2:
        return [f"{name} needs clients_per_round > 2f + 2 (here {n} <= 2*{f} + 2); lower f or sample more clients"]
    return []


@attrs.frozen
class Krum(Aggregator):
    """Krum (Blanchard et al. 2017, "Machine Learning with Adversaries:
    Byzantine Tolerant Gradient Descent", NeurIPS).

    score(i) = sum of the SQUARED L2 distances from update i to its
    n - f - 2 nearest other updates; the output is the update with the least
    score (its share is 1).  Needs n > 2f + 2.  Example counts are not used.
    If detectors leave too few rows at run time, the neighbour count is
    clamped to [1, n - 1].  Ties go to the first row.  With ``layers``, the
    distances are measured on those layers' parameters; the chosen update
    is applied whole.
    """

    f: int = param(doc="Byzantine updates the defender assumes per round", ge=0)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def check(self, facts):
        return _krum_check("krum", self.f, facts.clients_per_round)

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        def compute():
            index, rows, _, n = _kept(updates, weights)
            scores = _krum_scores(_pairwise_sq_distances(_on_layers(rows, ctx, self.layers)), tf.ones([n], tf.bool),
                                  self.f)
            winner = tf.argmin(scores, output_type=tf.int32)
            return rows[winner], _spread(index, tf.one_hot(winner, n, dtype=updates.dtype), weights)

        return _guarded(updates, weights, compute)


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

    f: int = param(doc="Byzantine updates the defender assumes per round", ge=0)
    m: int | None = param(None, doc="updates averaged (default n - f)", ge=1)
    iterative: bool = param(False, doc="re-score the remaining updates after each pick")
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def check(self, facts):
        n = facts.clients_per_round
        problems = _krum_check("multi_krum", self.f, n)
        if self.m is not None and self.m > n:
            problems.append(f"multi_krum averages m = {self.m} updates but clients_per_round is {n}; lower m")
        return problems

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        def compute():
            index, rows, _, n = _kept(updates, weights)
            m = tf.constant(self.m) if self.m is not None else n - self.f
            m = tf.maximum(tf.minimum(m, n), 1)
            dist = _pairwise_sq_distances(_on_layers(rows, ctx, self.layers))
            if self.iterative:
                chosen = tf.cast(_repeated_krum(dist, self.f, m, rescore_above=2 * self.f + 2), updates.dtype)
            else:
                best = tf.math.top_k(-_krum_scores(dist, tf.ones([n], tf.bool), self.f), k=m).indices
                chosen = tf.scatter_nd(best[:, None], tf.ones([m], updates.dtype), [n])
            share = chosen / tf.cast(m, updates.dtype)
            return tf.linalg.matvec(rows, share, transpose_a=True), _spread(index, share, weights)

        return _guarded(updates, weights, compute)


@attrs.frozen
class Bulyan(Aggregator):
    """Bulyan (El Mhamdi et al. 2018, "The Hidden Vulnerability of Distributed
    Learning in Byzantium", ICML), over Krum.

    1. Select theta = n - 2f updates by repeated Krum: each pick is the Krum
       winner of the updates not yet picked (scored on that remaining set,
       n_r - f - 2 neighbours, squared distances), then removed.
    2. Per coordinate, average the beta = theta - 2f = n - 4f selected values
       closest to the coordinate median of the selected set.

    Needs n >= 4f + 3.  Shares: 1/theta for each selected update (its weight
    per coordinate varies).  For the last picks, where fewer than f + 3
    updates remain, Krum's neighbour count is clamped to at least 1; at run
    time theta and beta are clamped to at least 1 if detectors left too few
    rows.  Example counts are not used.  With ``layers``, the Krum distances
    of step 1 are measured on those layers' parameters; step 2 covers every
    coordinate.  Where the beta-th closest value is tied with another at the
    same distance on the other side of the median (the paper leaves this
    open), the tied values share the last places equally, so the result does
    not depend on the order of the rows.
    """

    f: int = param(doc="Byzantine updates the defender assumes per round", ge=0)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def check(self, facts):
        n = facts.clients_per_round
        if n < 4 * self.f + 3:
            return [f"bulyan needs clients_per_round >= 4f + 3 (here {n} < 4*{self.f} + 3); "
                    f"lower f or sample more clients"]
        return []

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        def compute():
            index, rows, _, n = _kept(updates, weights)
            theta = tf.maximum(n - 2 * self.f, 1)
            beta = tf.maximum(theta - 2 * self.f, 1)
            chosen = _repeated_krum(_pairwise_sq_distances(_on_layers(rows, ctx, self.layers)), self.f, theta)
            selected = tf.boolean_mask(rows, chosen)  # [theta, d]
            aggregate = _mean_closest_to_median(tf.transpose(selected), beta)
            share = tf.cast(chosen, updates.dtype) / tf.cast(theta, updates.dtype)
            return aggregate, _spread(index, share, weights)

        return _guarded(updates, weights, compute)


# --------------------------------------------------------------------------
# Geometric median, clipping.
# --------------------------------------------------------------------------

@attrs.frozen
class GeometricMedian(Aggregator):
    """Geometric median by the smoothed Weiszfeld algorithm of RFA (Pillutla,
    Kakade and Harchaoui 2022, "Robust Aggregation for Federated Learning",
    IEEE TSP).

    alpha_i = example counts normalised; v starts at the weighted MEAN; each
    of the R iterations sets beta_i = alpha_i / max(nu, ||v - w_i||) and
    v = sum beta_i w_i / sum beta_i.  Shares are the normalised beta_i of the
    last iteration.  Deviation: always R iterations (the paper's relative
    objective-improvement stop is not used).
    """

    iterations: int = param(3, doc="Weiszfeld iterations R", ge=1)
    nu: float = param(1e-6, doc="smoothing: distances below nu count as nu", gt=0)

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        def compute():
            index, rows, w, n = _kept(updates, weights)
            alpha = w / tf.reduce_sum(w)

            def body(i, v, share):
                beta = alpha / tf.maximum(self.nu, tf.norm(rows - v[None, :], axis=1))
                share = beta / tf.reduce_sum(beta)
                return i + 1, tf.linalg.matvec(rows, share, transpose_a=True), share

            start = tf.linalg.matvec(rows, alpha, transpose_a=True)
            _, v, share = tf.while_loop(lambda i, *_: i < self.iterations, body, (tf.constant(0), start, alpha))
            return v, _spread(index, share, weights)

        return _guarded(updates, weights, compute)


@attrs.frozen
class CenteredClipping(Aggregator):
    """Centered clipping (Karimireddy, He and Jaggi 2021, "Learning from
    History for Byzantine Robust Optimization", ICML).

    v starts at the previous round's aggregate (state ``previous``, zero
    before the first round); each of the L iterations does
    v += (1/n) sum_i (x_i - v) min(1, tau / ||x_i - v||).  The mean is
    unweighted, as in the paper.  tau is in the units of the updates (model
    deltas here, not the paper's worker momenta): pick it near the norm of
    a typical benign update's distance to the aggregate; too small and
    the aggregate barely moves, too large and nothing is clipped.  Share of
    row i: its coefficient in v = a v_prev + sum_i s_i x_i.
    """

    tau: float = param(1.0, doc="clipping radius around the centre, in update units", gt=0)
    iterations: int = param(1, doc="clipping iterations L", ge=1)

    def initial_state(self, dim, facts):
        import numpy as np

        return {"previous": np.zeros([dim], np.float32)}

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        state = {"previous": tf.zeros(tf.shape(updates)[1:], updates.dtype)}
        aggregate, share, _ = self.aggregate_with_state(updates, weights, ctx, state)
        return aggregate, share

    def aggregate_with_state(self, updates, weights, ctx, state):
        import tensorflow as tf

        previous = tf.convert_to_tensor(state["previous"], updates.dtype)

        def compute():
            index, rows, _, n = _kept(updates, weights)
            count = tf.cast(n, updates.dtype)

            def body(i, v, share):
                diff = rows - v[None, :]
                clip = _clip_factors(tf.norm(diff, axis=1), self.tau)
                v = v + tf.linalg.matvec(diff, clip, transpose_a=True) / count
                share = (1.0 - tf.reduce_sum(clip) / count) * share + clip / count
                return i + 1, v, share

            _, v, share = tf.while_loop(
                lambda i, *_: i < self.iterations, body, (tf.constant(0), previous, tf.zeros([n], updates.dtype))
            )
            return v, _spread(index, share, weights), {"previous": v}

        aggregate, share, new = _guarded(updates, weights, compute, {"previous": previous})
        new["previous"].set_shape(previous.shape)
        return aggregate, share, new


@attrs.frozen
class NormClipping(Aggregator):
    """Norm clipping with optional weak differential privacy (Sun et al. 2019,
    "Can You Really Backdoor Federated Learning?", arXiv:1911.07963).

    Each update is scaled to norm at most ``bound`` (x * min(1, M / ||x||)),
    the clipped updates are averaged weighted by example counts (FedAvg),
    and Gaussian noise of std ``noise`` per coordinate is added to the
    aggregate, drawn with a stateless RNG from the round seed.  Shares:
    each row's coefficient (example share times its clip factor).
    """

    bound: float = param(1.0, doc="norm bound M on each update, in update units", gt=0)
    noise: float = param(0.0, doc="std of the Gaussian noise added to the aggregate (weak DP)", ge=0)

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        clip = _clip_factors(tf.norm(updates, axis=1), self.bound)
        share = tf.math.divide_no_nan(weights, tf.reduce_sum(weights)) * clip
        aggregate = tf.linalg.matvec(updates, share, transpose_a=True)
        if self.noise > 0:  # only when some row is kept: no rows, zero aggregate
            noise = tf.random.stateless_normal(tf.shape(updates)[1:], _seed(ctx, _SALT_NOISE), dtype=updates.dtype)
            aggregate += self.noise * tf.cast(tf.reduce_any(weights > 0), updates.dtype) * noise
        return aggregate, share


# --------------------------------------------------------------------------
# Filtering rules.
# --------------------------------------------------------------------------

@attrs.frozen
class DnC(Aggregator):
    """Divide-and-Conquer (Shejwalkar and Houmansadr 2021, "Manipulating the
    Byzantine: Optimizing Model Poisoning Attacks and Defenses for Federated
    Learning", NDSS), Algorithm 2.

    ``niters`` times: draw ``subsample`` coordinates at random (all of them
    when d is smaller) from the round seed, centre the sub-vectors on their
    mean, score each update by its squared projection on the top right
    singular vector, keep the n - floor(c * f) lowest scores.  The output is
    the unweighted mean of the updates kept in every iteration (share
    1/|kept| each).  The top singular direction comes from the eigen-
    decomposition of the centred rows' n x n Gram matrix (score_i =
    lambda_max * u_i^2, the same number as the SVD's).  If the iterations
    keep no common update the aggregate is zero; at run time at least one
    update is kept per iteration.  With ``layers``, the coordinates are
    drawn from those layers' parameters only; the mean covers every one.
    """

    f: int = param(doc="Byzantine updates the defender assumes per round", ge=0)
    subsample: int = param(10000, doc="coordinates drawn per iteration (b)", ge=1)
    niters: int = param(1, doc="iterations; the updates kept in all of them are averaged", ge=1)
    c: float = param(1.0, doc="filtering fraction: floor(c * f) updates are dropped per iteration", gt=0)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def dropped(self) -> int:
        return math.floor(self.c * self.f + 1e-9)

    def check(self, facts):
        n = facts.clients_per_round
        if self.dropped() >= n:
            return [f"dnc drops floor(c*f) = {self.dropped()} updates per iteration but clients_per_round is {n}; "
                    f"lower c or f, or sample more clients"]
        return []

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        def compute():
            index, rows, _, n = _kept(updates, weights)
            view = _on_layers(rows, ctx, self.layers)
            d = tf.shape(view)[1]
            keep = tf.maximum(n - self.dropped(), 1)
            seed = _seed(ctx, _SALT_DNC)

            def body(i, good):
                columns = _random_columns(tf.random.experimental.stateless_fold_in(seed, i), d,
                                          tf.minimum(self.subsample, d))
                sub = tf.gather(view, columns, axis=1)
                centred = sub - tf.reduce_mean(sub, axis=0, keepdims=True)
                values, vectors = tf.linalg.eigh(tf.matmul(centred, centred, transpose_b=True))
                scores = values[-1] * tf.square(vectors[:, -1])
                lowest = tf.math.top_k(-scores, k=keep).indices
                return i + 1, good & (tf.scatter_nd(lowest[:, None], tf.ones([keep]), [n]) > 0)

            _, good = tf.while_loop(lambda i, _: i < self.niters, body, (tf.constant(0), tf.ones([n], tf.bool)))
            chosen = tf.cast(good, updates.dtype)
            share = tf.math.divide_no_nan(chosen, tf.reduce_sum(chosen))
            return tf.linalg.matvec(rows, share, transpose_a=True), _spread(index, share, weights)

        return _guarded(updates, weights, compute)


def _mean_shift_largest_cluster(points, quantile, max_iter=300):
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
    import tensorflow as tf

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
    `_mean_shift_largest_cluster`); the plain SignGuard features (no
    similarity feature of the SignGuard-Sim/-Dist variants).  If no update
    passes both filters the aggregate is zero.  With ``layers``, the norm
    filter and the sign statistics look at those layers' parameters only
    (the fraction is of their coordinates); the clipping of step 3 uses
    the whole updates' norms and their median.
    """

    lower: float = param(0.1, doc="lowest accepted norm, as a multiple of the median norm", ge=0)
    upper: float = param(3.0, doc="highest accepted norm, as a multiple of the median norm", gt=0)
    fraction: float = param(0.1, doc="fraction of coordinates sampled for the sign statistics", gt=0, le=1)
    quantile: float = param(0.3, doc="quantile used to estimate the mean-shift bandwidth", gt=0, le=1)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def check(self, facts):
        if self.lower >= self.upper:
            return [f"signguard needs lower < upper (here {self.lower:g} >= {self.upper:g})"]
        return []

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        def compute():
            index, rows, _, n = _kept(updates, weights)
            norms = tf.norm(rows, axis=1)
            median = _median(norms)
            view = _on_layers(rows, ctx, self.layers)
            view_norms = norms if view is rows else tf.norm(view, axis=1)
            ratio = tf.math.divide_no_nan(view_norms, _median(view_norms))
            by_norm = (ratio >= self.lower) & (ratio <= self.upper)
            d = tf.shape(view)[1]
            count = tf.maximum(tf.cast(tf.math.ceil(self.fraction * tf.cast(d, tf.float64)), tf.int32), 1)
            sub = tf.gather(view, _random_columns(_seed(ctx, _SALT_SIGNGUARD), d, tf.minimum(count, d)), axis=1)
            features = tf.stack([tf.reduce_mean(tf.cast(test, updates.dtype), axis=1)
                                 for test in (sub > 0, tf.equal(sub, 0), sub < 0)], axis=1)
            by_sign = _mean_shift_largest_cluster(features, self.quantile)
            chosen = tf.cast(by_norm & by_sign, updates.dtype)
            share = tf.math.divide_no_nan(chosen, tf.reduce_sum(chosen)) * _clip_factors(norms, median)
            return tf.linalg.matvec(rows, share, transpose_a=True), _spread(index, share, weights)

        return _guarded(updates, weights, compute)


@attrs.frozen
class Bucketing(Aggregator):
    """Bucketing (Karimireddy, He and Jaggi 2022, "Byzantine-Robust Learning on
    Heterogeneous Datasets via Bucketing", ICLR).

    The kept updates are shuffled by a random permutation drawn from the
    round seed, split into ceil(n/s) buckets of s consecutive updates (the
    last may be smaller), each bucket is averaged (unweighted), and the
    ``inner`` aggregator combines the bucket means.  The inner rule sees one
    row per bucket with weight = its number of updates, the first member's
    client id, the summed example counts, and a seed of its own; its
    ``check`` runs with clients_per_round = ceil(n/s).  A row's share is its
    bucket's share divided by the bucket size.  A stateful inner rule keeps
    its state; AFA (per-client reputation) cannot be wrapped.
    """

    inner: Aggregator = param(doc="aggregator applied to the bucket means", kind="aggregator")
    s: int = param(2, doc="updates per bucket", ge=1)

    def buckets(self, n: int) -> int:
        return -(-n // self.s)

    def _inner_facts(self, facts: Facts) -> Facts:
        return _with_clients_per_round(facts, self.buckets(facts.clients_per_round))

    def check(self, facts):
        if isinstance(self.inner, AFA):
            return ["bucketing cannot wrap afa: AFA keeps a reputation per client, and bucket means are not clients"]
        n = facts.clients_per_round
        prefix = (f"bucketing(s = {self.s}) leaves ceil({n}/{self.s}) = {self.buckets(n)} "
                  "bucket means for its inner rule: ")
        return [prefix + message for message in self.inner.check(self._inner_facts(facts))]

    def initial_state(self, dim, facts):
        return self.inner.initial_state(dim, self._inner_facts(facts))

    def aggregate(self, updates, weights, ctx):
        aggregate, share, _ = self.aggregate_with_state(updates, weights, ctx, {})
        return aggregate, share

    def aggregate_with_state(self, updates, weights, ctx, state):
        import tensorflow as tf

        index, rows, w, n = _kept(updates, weights)
        order = tf.argsort(tf.random.stateless_uniform([n], _seed(ctx, _SALT_BUCKETS)))
        bucket = tf.scatter_nd(order[:, None], tf.range(n) // self.s, [n])  # bucket of each kept row
        count = (n + self.s - 1) // self.s
        means = tf.math.unsorted_segment_mean(rows, bucket, count)
        sizes = tf.math.unsorted_segment_sum(tf.ones([n], updates.dtype), bucket, count)
        inner_ctx = ServerContext(
            facts=self._inner_facts(ctx.facts), layers=ctx.layers,
            client_ids=tf.math.unsorted_segment_min(tf.gather(ctx.client_ids, index), bucket, count),
            num_examples=tf.math.unsorted_segment_sum(w, bucket, count),
            global_weights=ctx.global_weights, round=ctx.round, seed=_seed(ctx, _SALT_INNER),
        )
        if state:
            aggregate, inner_share, state = self.inner.aggregate_with_state(means, sizes, inner_ctx, state)
        else:
            aggregate, inner_share = self.inner.aggregate(means, sizes, inner_ctx)
        share = tf.gather(inner_share, bucket) / tf.gather(sizes, bucket)
        aggregate.set_shape(updates.shape[1:])
        return aggregate, _spread(index, share, weights), state


# --------------------------------------------------------------------------
# Adaptive federated averaging.
# --------------------------------------------------------------------------

@attrs.frozen
class AFA(Aggregator):
    """Adaptive Federated Averaging (Munoz-Gonzalez, Co and Lupu 2019,
    "Byzantine-Robust Federated Machine Learning through Adaptive Model
    Averaging", arXiv:1909.05125); the "adaptive averaging" Jere et al. 2020
    cite.

    Clients not blocked take part.  Repeat until a pass flags nobody: the
    aggregate of the good updates, weighted by p_k n_k (p_k the client's
    reputation alpha/(alpha + beta) at the start of the round, n_k its
    example count); cosine similarity s_k of each good update to it; with
    mean, median and (population) std of the good s_k, flag s_k < median -
    xi * std if mean < median, else s_k > median + xi * std; xi grows by
    delta_xi each pass.  Then alpha += 1 for good clients, beta += 1 for
    flagged ones; the output is the p_k n_k weighted mean of the good
    updates with the updated reputations.  A client is blocked from the
    next round on when P(theta < 0.5) > threshold under Beta(alpha, beta)
    (the regularised incomplete beta function).  State: ``alpha`` and
    ``beta`` per client id, ``[num_clients]``, starting at ``prior`` (our
    reading of the paper's alpha0 = beta0 = 3; a parameter here).  Shares:
    the final coefficients (0 for flagged and blocked clients).  With
    ``layers``, the cosine similarities are measured on those layers'
    parameters; the aggregates cover every parameter.
    """

    xi: float = param(2.0, doc="initial slack: flagged beyond median +/- xi * std", gt=0)
    delta_xi: float = param(0.25, doc="slack added after each pass", ge=0)
    threshold: float = param(0.95, doc="block a client when P(theta < 0.5) exceeds this", gt=0, lt=1)
    prior: float = param(3.0, doc="alpha and beta of each client's Beta prior", gt=0)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def initial_state(self, dim, facts):
        import numpy as np

        full = np.full([facts.num_clients], self.prior, np.float32)
        return {"alpha": full, "beta": full.copy()}

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        full = tf.fill([ctx.facts.num_clients], tf.constant(self.prior, updates.dtype))
        aggregate, share, _ = self.aggregate_with_state(updates, weights, ctx, {"alpha": full, "beta": full})
        return aggregate, share

    def aggregate_with_state(self, updates, weights, ctx, state):
        import tensorflow as tf

        alpha_all = tf.convert_to_tensor(state["alpha"], updates.dtype)
        beta_all = tf.convert_to_tensor(state["beta"], updates.dtype)
        ids = tf.cast(ctx.client_ids, tf.int32)
        alpha, beta = tf.gather(alpha_all, ids), tf.gather(beta_all, ids)
        blocked = tf.math.betainc(alpha, beta, tf.fill(tf.shape(alpha), tf.constant(0.5, alpha.dtype))) > self.threshold
        taking_part = (weights > 0) & tf.logical_not(blocked)
        part_weights = tf.where(taking_part, weights, 0.0)
        view = _on_layers(updates, ctx, self.layers)
        norms = tf.norm(view, axis=1)

        def weighted_mean(good, reputation):
            coeff = tf.where(good, reputation * weights, 0.0)
            coeff = tf.math.divide_no_nan(coeff, tf.reduce_sum(coeff))
            return tf.linalg.matvec(updates, coeff, transpose_a=True), coeff

        def compute():
            reputation = alpha / (alpha + beta)

            def body(passes, good, xi, flagged_any):
                aggregate, _ = weighted_mean(good, reputation)
                centre = _on_layers(aggregate, ctx, self.layers)
                cosine = tf.math.divide_no_nan(tf.linalg.matvec(view, centre), norms * tf.norm(centre))
                values = tf.boolean_mask(cosine, good)
                mean, median = tf.reduce_mean(values), _median(values)
                std = tf.math.reduce_std(values)
                bad = good & tf.where(mean < median, cosine < median - xi * std, cosine > median + xi * std)
                return passes + 1, good & tf.logical_not(bad), xi + self.delta_xi, tf.reduce_any(bad)

            _, good, _, _ = tf.while_loop(
                lambda passes, good, xi, flagged_any: flagged_any & (passes <= tf.size(good)),
                body, (tf.constant(0), taking_part, tf.constant(self.xi, updates.dtype), tf.constant(True)),
            )
            bad = taking_part & tf.logical_not(good)
            new_alpha = alpha + tf.cast(good, alpha.dtype)
            new_beta = beta + tf.cast(bad, beta.dtype)
            aggregate, share = weighted_mean(good, new_alpha / (new_alpha + new_beta))
            rows = ids[:, None]
            new_state = {
                "alpha": tf.tensor_scatter_nd_add(alpha_all, rows, tf.cast(good, alpha.dtype)),
                "beta": tf.tensor_scatter_nd_add(beta_all, rows, tf.cast(bad, beta.dtype)),
            }
            return aggregate, share, new_state

        aggregate, share, new = _guarded(updates, part_weights, compute, {"alpha": alpha_all, "beta": beta_all})
        for key in new:
            new[key].set_shape(alpha_all.shape)
        return aggregate, share, new


@attrs.frozen
class FLTrust(Aggregator):
    """FLTrust (Cao, Fang, Liu and Gong 2021, "FLTrust: Byzantine-robust
    Federated Learning via Trust Bootstrapping", NDSS).

    The server trains on its own small clean root dataset (training setting
    ``root_samples``, about 100 in the paper) from the global model, giving
    g0.  Each update gets trust ReLU(cos(g_i, g0)), is rescaled to the norm
    of g0, and the aggregate is the trust-weighted mean.  All trust zero
    gives a zero update (no division by zero).  Deviations: the server's
    update is computed with the clients' protocol and optimizer (the paper
    trains the root model like the clients, which is the same thing); the
    shares reported per row are the normalised trust scores.  With
    ``layers``, the cosine (the trust) is measured on those layers'
    parameters; the rescaling to the norm of g0 uses whole norms.
    """

    needs_root_update = True

    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def check(self, facts):
        if facts.root_samples <= 0:
            return ["fltrust needs a server root dataset: add 'root_samples 100' to the training block"]
        return []

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        def compute():
            index, rows, _, _ = _kept(updates, weights)
            root = ctx.root_update
            root_norm = tf.norm(root)
            norms = tf.norm(rows, axis=1)
            view, root_view = _on_layers(rows, ctx, self.layers), _on_layers(root, ctx, self.layers)
            cosine = tf.math.divide_no_nan(tf.linalg.matvec(view, root_view),
                                           tf.norm(view, axis=1) * tf.norm(root_view))
            trust = tf.nn.relu(cosine)
            share = tf.math.divide_no_nan(trust, tf.reduce_sum(trust))
            scaled = rows * tf.math.divide_no_nan(root_norm, norms)[:, None]
            return tf.linalg.matvec(scaled, share, transpose_a=True), _spread(index, share, weights)

        return _guarded(updates, weights, compute)


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("fedavg", FedAvg)
    registry.add("median", Median)
    registry.add("trimmed_mean", TrimmedMean)
    registry.add("krum", Krum)
    registry.add("multi_krum", MultiKrum)
    registry.add("bulyan", Bulyan)
    registry.add("geometric_median", GeometricMedian)
    registry.add("centered_clipping", CenteredClipping)
    registry.add("norm_clipping", NormClipping)
    registry.add("dnc", DnC)
    registry.add("signguard", SignGuard)
    registry.add("bucketing", Bucketing)
    registry.add("afa", AFA)
    registry.add("fltrust", FLTrust)
