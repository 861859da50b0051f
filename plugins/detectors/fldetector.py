"""FLDetector: a benign client's update is consistent with its previous
one, so the server predicts each client's update from its last one and
flags the clients whose predictions keep missing.

Paper: Z. Zhang, X. Cao, J. Jia and N. Z. Gong, 2022, "FLDetector:
Defending Federated Learning Against Model Poisoning Attacks via Detecting
Malicious Clients", KDD.  In round t, with w^t the global model, u_i^t
client i's update and B the L-BFGS Hessian approximation from the last N
pairs (w^{k-1} - w^{k-2}, a^{k-1} - a^{k-2}) of global steps and global
updates:

    u_hat_i^t = u_i^{t-1} + B (w^t - w^{t-1}),   d_i^t = ||u_hat_i^t - u_i^t||
    s_i = mean of the normalised d_i over the last N rounds
    if the gap statistic finds more than one cluster among the s_i:
        drop the cluster of 2-means with the larger mean

Deviations (listed in full in `FLDetector`): updates are model deltas, not
gradients; the global update is recovered from the global models;
distances are divided by their mean rather than their sum; partial
participation is handled per client; the gap statistic averages log W;
1-D k-means is exact; the decision is made again each round (no permanent
ban).

The gap statistic on scores that form two groups, and on scores that form
one:

>>> seed = tf.constant([1, 2], tf.int64)
>>> fldetector_flags(tf.constant([1.0, 1.1, 0.9, 4.0, 4.2]), seed, 10).numpy().tolist()
[False, False, False, True, True]
>>> fldetector_flags(tf.constant([1.0, 1.1, 0.9, 1.05, 0.95]), seed, 10).numpy().tolist()
[False, False, False, False, False]
"""

from __future__ import annotations

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Detector
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins._tensor import on_columns, salted_seed
from fedarena.plugins.detectors._common import LAYERS_DOC

# Salt folded into the round seed for the gap statistic's reference samples ("FLDT").
FLDETECTOR_SALT = 0x464C4454


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

    paper = "Zhang et al. 2022, KDD"

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

    def apply(self, rows, ctx, state):
        window = self.window
        columns = ctx.columns(self.layers)
        on_columns(rows, columns)  # raises when the layers match nothing

        def restrict(t):
            return on_columns(t, columns)

        clients = ctx.client_ids
        now = state["rounds"] + 1
        weights = tf.cast(ctx.global_weights, tf.float32)

        # 1. The step into this round, the global update that made it, and the newest curvature pair.
        step = tf.where(now >= 2, weights - state["weights"], tf.zeros_like(weights))
        global_update = tf.math.divide_no_nan(step, tf.constant(ctx.facts.server_learning_rate, tf.float32))
        s, y = state["step"], global_update - state["global_update"]
        s_c, y_c = restrict(s), restrict(y)
        usable = (now >= 3) & (tf.reduce_sum(s_c * s_c) > 0) & tf.not_equal(tf.reduce_sum(s_c * y_c), 0.0)
        weight_diffs = tf.where(usable, tf.concat([state["weight_diffs"][1:], s[None]], axis=0), state["weight_diffs"])
        update_diffs = tf.where(usable, tf.concat([state["update_diffs"][1:], y[None]], axis=0), state["update_diffs"])
        pairs = tf.where(usable, tf.minimum(state["pairs"] + 1, window), state["pairs"])
        predicting = pairs > 0
        v = restrict(step)
        product = tf.cond(
            predicting,
            lambda: lbfgs_hvp(restrict(weight_diffs[window - pairs:]), restrict(update_diffs[window - pairs:]), v),
            lambda: tf.zeros_like(v))

        # 2. Predictions for the clients whose update came in the previous round.
        measured = predicting & tf.equal(tf.gather(state["previous_round"], clients), now - 1)
        predicted = restrict(tf.gather(state["previous"], clients)) + product[None, :]
        distance = tf.norm(predicted - restrict(rows), axis=1)
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
        seed = salted_seed(ctx.seed, FLDETECTOR_SALT)
        flagged = tf.cond(recorded >= window, lambda: fldetector_flags(candidate_scores, seed, self.references),
                          lambda: tf.zeros(tf.shape(candidates), tf.bool))
        malicious = tf.scatter_nd(candidates[:, None], tf.cast(flagged, tf.int32), tf.shape(clients)) > 0

        arrived = tf.fill(tf.shape(clients), now)
        new_state = dict(
            rounds=now, weights=weights, step=step, global_update=global_update,
            weight_diffs=weight_diffs, update_diffs=update_diffs, pairs=pairs,
            previous=tf.tensor_scatter_nd_update(state["previous"], clients[:, None], rows),
            previous_round=tf.tensor_scatter_nd_update(state["previous_round"], clients[:, None], arrived),
            distances=distances, recorded=recorded,
        )
        return rows, score, tf.logical_not(malicious), new_state


@hookimpl
def fedarena_register_detectors(registry):
    registry.add("fldetector", FLDetector)
