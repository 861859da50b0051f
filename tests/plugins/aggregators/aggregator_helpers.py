"""Shared by the aggregator tests (imported as ``from aggregator_helpers
import ...``; pytest puts this folder on ``sys.path``): hand-made update
matrices, a server context, running a rule the way the server stage does
(`aggregate_kept`: the kept rows only, shares scattered back), and
straightforward NumPy references written with loops."""

import numpy as np
import tensorflow as tf

from fedarena.core.execution.engine.run import aggregate_kept
from fedarena.core.plugin.interfaces import Facts, Layer, ServerContext

FACTS = Facts(num_clients=20, clients_per_round=12, num_classes=3, input_shape=(2,))
K, D = 12, 6


def context(k, facts=FACTS, seed=(3, -1), ids=None):
    ids = tf.range(k, dtype=tf.int32) if ids is None else tf.constant(ids, tf.int32)
    return ServerContext(
        facts=facts, layers=(), client_ids=ids, num_examples=tf.ones([k]), global_weights=tf.zeros([D]),
        round=tf.constant(1, tf.int32), seed=tf.constant(seed, tf.int64),
    )


def state_of(aggregator, dim=D, facts=FACTS):
    return {key: tf.constant(value) for key, value in aggregator.initial_state(dim, facts).items()}


def run(aggregator, updates, weights=None, ctx=None, state=None):
    """The rule as the server stage runs it: rows of weight 0 dropped
    first, shares scattered back -> (aggregate, share ``[K]``, state) as
    NumPy."""
    updates = np.asarray(updates, np.float32)
    weights = np.ones(len(updates), np.float32) if weights is None else np.asarray(weights, np.float32)
    ctx = context(len(updates)) if ctx is None else ctx
    state = state_of(aggregator, updates.shape[1]) if state is None else state
    aggregate, share, new = aggregate_kept(aggregator, tf.constant(updates), tf.constant(weights), ctx, state)
    return aggregate.numpy(), share.numpy(), {key: value.numpy() for key, value in new.items()}


def sample_updates(seed=0, k=K, d=D):
    rng = np.random.default_rng(seed)
    updates = rng.normal(size=(k, d)) + 0.5
    updates[1] *= 6.0  # an outlier by norm
    updates[4] = -updates[4]  # and one by direction
    return updates.astype(np.float32)


def facts_with(n):
    return Facts(num_clients=30, clients_per_round=n, num_classes=3, input_shape=(2,))


TWO_LAYERS = (Layer("first/kernel:0", (3,), 0), Layer("second/kernel:0", (3,), 3))


def layered_context(k, root=None):
    import attrs

    root_update = None if root is None else tf.constant(root, tf.float32)
    return attrs.evolve(context(k), layers=TWO_LAYERS, root_update=root_update)


# ---------------------------------------------------------------- references

def sq_dists(x):
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def ref_krum_scores(x, f, remaining=None, neighbours=None, squared=True):
    n = len(x)
    remaining = np.ones(n, bool) if remaining is None else remaining
    dist = sq_dists(x) if squared else np.sqrt(sq_dists(x))
    n_r = remaining.sum()
    k = min(max(n_r - f - 2, 1), n_r - 1) if neighbours is None else neighbours
    scores = np.full(n, np.inf)
    for i in np.flatnonzero(remaining):
        scores[i] = sum(sorted(dist[i, j] for j in np.flatnonzero(remaining) if j != i)[:k])
    return scores


def ref_repeated_krum(x, f, picks, rescore_above=None):
    remaining, chosen, scores = np.ones(len(x), bool), [], ref_krum_scores(x, f)
    for _ in range(picks):
        if rescore_above is None or remaining.sum() > rescore_above:
            scores = ref_krum_scores(x, f, remaining)
        scores = np.where(remaining, scores, np.inf)
        winner = int(np.argmin(scores))
        chosen.append(winner)
        remaining[winner] = False
    return sorted(chosen)


def ref_multi_krum(x, f, m=None, iterative=False):
    m = len(x) - f if m is None else m
    if iterative:
        chosen = ref_repeated_krum(x, f, m, rescore_above=2 * f + 2)
    else:
        chosen = sorted(np.argsort(ref_krum_scores(x, f), kind="stable")[:m])
    return x[chosen].mean(0), chosen


def ref_bulyan(x, f, beta=None):
    theta = len(x) - 2 * f
    beta = theta - 2 * f if beta is None else beta
    chosen = ref_repeated_krum(x, f, theta)
    selected = x[chosen]
    centre = np.median(selected, axis=0)
    out = np.empty(x.shape[1])
    for j in range(x.shape[1]):
        closest = np.argsort(np.abs(selected[:, j] - centre[j]), kind="stable")[:beta]
        out[j] = selected[closest, j].mean()
    return out, chosen


def ref_trimmed_mean(x, per_side):
    ordered = np.sort(x, axis=0)
    return ordered[per_side : len(x) - per_side].mean(0)


def ref_weiszfeld(x, w, iterations, nu):
    alpha = w / w.sum()
    v = alpha @ x
    for _ in range(iterations):
        beta = alpha / np.maximum(nu, np.linalg.norm(x - v, axis=1))
        v = beta @ x / beta.sum()
    return v


def ref_centered_clipping(x, v, tau, iterations):
    for _ in range(iterations):
        v = v + np.mean([(xi - v) * min(1.0, tau / np.linalg.norm(xi - v)) for xi in x], axis=0)
    return v


def ref_afa(x, w, ids, alpha, beta, xi=2.0, delta_xi=0.25, threshold=0.95, two_sided=False):
    from scipy import stats

    a, b = alpha[ids], beta[ids]
    good = (w > 0) & ~(stats.beta.cdf(0.5, a, b) > threshold)
    taking_part, reputation = good.copy(), a / (a + b)
    while True:
        coeff = np.where(good, reputation * w, 0.0)
        aggregate = coeff @ x / coeff.sum()
        cosine = x @ aggregate / (np.linalg.norm(x, axis=1) * np.linalg.norm(aggregate))
        values = cosine[good]
        mean, median, std = values.mean(), np.median(values), values.std()
        if two_sided:  # not the paper's rule; for contrast only
            bad = good & ((cosine < median - xi * std) | (cosine > median + xi * std))
        else:  # the paper's: only the side the mean leans away from the median to
            bad = good & ((cosine < median - xi * std) if mean < median else (cosine > median + xi * std))
        good, xi = good & ~bad, xi + delta_xi
        if not bad.any():
            break
    alpha, beta = alpha.copy(), beta.copy()
    alpha[ids[good]] += 1
    beta[ids[taking_part & ~good]] += 1
    a, b = alpha[ids], beta[ids]
    coeff = np.where(good, a / (a + b) * w, 0.0)
    coeff /= coeff.sum()
    return coeff @ x, coeff, alpha, beta
