"""Robust aggregators on hand-made matrices, against straightforward NumPy
references written here (loops and all), and their defining properties:
permutation invariance, rows of weight 0 ignored, unknown K in a graph,
state across rounds, and the messages of ``check``."""

from math import ceil, floor

import attrs
import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.scenario.sweep import check
from fedarena.core.errors import ScenarioError
from fedarena.core.plugin.interfaces import Facts, Layer, ServerContext
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import default_registry
from fedarena.plugins.aggregators import (
    AFA, Bucketing, Bulyan, CenteredClipping, DnC, FedAvg, GeometricMedian, Krum, Median, MultiKrum,
    NormClipping, SignGuard, TrimmedMean,
)

from conftest import tiny_scenario

FACTS = Facts(num_clients=20, clients_per_round=12, num_classes=3, input_shape=(2,))
K, D = 12, 6

ALL = {
    "fedavg": FedAvg(),
    "median": Median(),
    "trimmed_mean": TrimmedMean(beta=0.2),
    "trimmed_mean_k": TrimmedMean(k=2),
    "krum": Krum(f=2),
    "multi_krum": MultiKrum(f=2),
    "multi_krum_iterative": MultiKrum(f=2, iterative=True),
    "bulyan": Bulyan(f=2),
    "geometric_median": GeometricMedian(),
    "centered_clipping": CenteredClipping(tau=1.0, iterations=2),
    "norm_clipping": NormClipping(bound=1.0, noise=0.01),
    "dnc": DnC(f=2, subsample=4, niters=2),
    "signguard": SignGuard(fraction=0.5),
    "bucketing": Bucketing(inner=Krum(f=1), s=2),
    "afa": AFA(),
}


def context(k, facts=FACTS, seed=(3, -1), ids=None):
    ids = tf.range(k, dtype=tf.int32) if ids is None else tf.constant(ids, tf.int32)
    return ServerContext(
        facts=facts, layers=(), client_ids=ids, num_examples=tf.ones([k]), global_weights=tf.zeros([D]),
        round=tf.constant(1, tf.int32), seed=tf.constant(seed, tf.int64),
    )


def state_of(aggregator, dim=D, facts=FACTS):
    return {key: tf.constant(value) for key, value in aggregator.initial_state(dim, facts).items()}


def run(aggregator, updates, weights=None, ctx=None, state=None):
    """-> (aggregate, share, state) as NumPy."""
    updates = np.asarray(updates, np.float32)
    weights = np.ones(len(updates), np.float32) if weights is None else np.asarray(weights, np.float32)
    ctx = context(len(updates)) if ctx is None else ctx
    state = state_of(aggregator, updates.shape[1]) if state is None else state
    aggregate, share, new = aggregator.aggregate_with_state(tf.constant(updates), tf.constant(weights), ctx, state)
    return aggregate.numpy(), share.numpy(), {key: value.numpy() for key, value in new.items()}


def sample_updates(seed=0, k=K, d=D):
    rng = np.random.default_rng(seed)
    updates = rng.normal(size=(k, d)) + 0.5
    updates[1] *= 6.0  # an outlier by norm
    updates[4] = -updates[4]  # and one by direction
    return updates.astype(np.float32)


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


# ------------------------------------------------------------- properties

def test_every_aggregator_is_registered():
    names = set(default_registry().names("aggregator"))
    assert {"fedavg", "median", "trimmed_mean", "krum", "multi_krum", "bulyan", "geometric_median",
            "centered_clipping", "norm_clipping", "dnc", "signguard", "bucketing", "afa"} <= names


PERMUTATION = dict(ALL)
# A fixed seed shuffles rows into buckets by position, so bucketing is only
# permutation invariant with one update per bucket.
PERMUTATION["bucketing"] = Bucketing(inner=Median(), s=1)


@pytest.mark.parametrize("name", sorted(PERMUTATION))
def test_permuting_the_rows_permutes_only_the_shares(name):
    aggregator = PERMUTATION[name]
    updates = sample_updates()
    weights = np.arange(1, K + 1, dtype=np.float32)
    weights[7] = 0
    order = np.random.default_rng(5).permutation(K)
    ids = np.arange(K)
    aggregate, share, state = run(aggregator, updates, weights, context(K, ids=ids))
    aggregate2, share2, state2 = run(aggregator, updates[order], weights[order], context(K, ids=ids[order]))
    np.testing.assert_allclose(aggregate2, aggregate, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(share2, share[order], rtol=1e-4, atol=1e-6)
    for key in state:
        np.testing.assert_allclose(state2[key], state[key], rtol=1e-4, atol=1e-5)
    assert share[7] == 0


@pytest.mark.parametrize("name", sorted(ALL))
def test_rows_of_weight_zero_take_no_part(name):
    aggregator = ALL[name]
    clean = sample_updates(1, k=11)
    aggregate, share, state = run(aggregator, clean)
    junk = np.full((3, D), 1e4, np.float32) * np.array([[1], [-1], [3]], np.float32)
    updates = np.concatenate([junk[:1], clean[:5], junk[1:], clean[5:]])
    weights = np.concatenate([[0], np.ones(5), [0, 0], np.ones(6)]).astype(np.float32)
    ids = np.concatenate([[15], np.arange(5), [16, 17], np.arange(5, 11)])
    aggregate2, share2, state2 = run(aggregator, updates, weights, context(14, ids=ids))
    np.testing.assert_allclose(aggregate2, aggregate, rtol=1e-5, atol=1e-6)
    assert share2[[0, 6, 7]].tolist() == [0, 0, 0]
    np.testing.assert_allclose(np.delete(share2, [0, 6, 7]), share, rtol=1e-5, atol=1e-7)
    for key in state:
        np.testing.assert_allclose(state2[key], state[key])


@pytest.mark.parametrize("name", sorted(ALL))
def test_no_row_left_gives_a_zero_aggregate(name):
    aggregate, share, state = run(ALL[name], sample_updates(), np.zeros(K))
    assert not aggregate.any() and not share.any()
    for key, value in state_of(ALL[name]).items():
        np.testing.assert_array_equal(state[key], value.numpy())


@pytest.mark.parametrize("name", sorted(ALL))
def test_works_in_a_graph_with_unknown_number_of_rows(name):
    aggregator = ALL[name]
    state = state_of(aggregator)

    @tf.function(input_signature=[tf.TensorSpec([None, D], tf.float32), tf.TensorSpec([None], tf.float32)])
    def graph(updates, weights):
        return aggregator.aggregate_with_state(updates, weights, context(tf.shape(updates)[0]), state)

    for k in (K, 9):
        updates, weights = sample_updates(2, k=k), np.ones(k, np.float32)
        weights[3] = 0
        aggregate, share, new = graph(tf.constant(updates), tf.constant(weights))
        assert aggregate.shape == [D] and share.shape == [k]
        expected = run(aggregator, updates, weights, context(k), state)
        np.testing.assert_allclose(aggregate.numpy(), expected[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(share.numpy(), expected[1], rtol=1e-5, atol=1e-7)
        assert {key: value.shape for key, value in new.items()} == {key: value.shape for key, value in state.items()}
    assert graph.experimental_get_tracing_count() == 1  # one trace serves every K


# ------------------------------------------------------- coordinate-wise

def test_median_and_trimmed_mean_equal_numpy():
    rng = np.random.default_rng(3)
    for n in (9, 10):
        x = rng.normal(size=(n, 5)).astype(np.float32)
        np.testing.assert_allclose(run(Median(), x)[0], np.median(x, axis=0), rtol=1e-6)
        # beta trims ceil(beta * n) per side: 2 for 0.15 * 10 (floor would trim 1); 1 for 0.1 * 10.
        for beta in (0.1, 0.15, 0.3):
            aggregate, share, _ = run(TrimmedMean(beta=beta), x)
            np.testing.assert_allclose(aggregate, ref_trimmed_mean(x, ceil(beta * n - 1e-9)), rtol=1e-5)
            np.testing.assert_allclose(share, np.full(n, 1 / n), rtol=1e-6)
        np.testing.assert_allclose(run(TrimmedMean(k=3), x)[0], ref_trimmed_mean(x, 3), rtol=1e-5)
    assert not np.allclose(ref_trimmed_mean(x, 2), ref_trimmed_mean(x, 1))
    np.testing.assert_allclose(run(TrimmedMean(beta=0.0), x)[0], x.mean(0), rtol=1e-5)


# ---------------------------------------------------------- Krum family

# Seven points, f = 1.  Krum's definition (n - f - 2 = 4 nearest, squared
# distances) picks row 1; n - f - 1 neighbours would pick row 2, unsquared
# distances row 3.
KRUM_CASE = np.array([[2.5, 0.6], [0.0, 0.9], [1.4, -1.4], [-0.6, 0.3], [-1.1, -0.3], [2.6, -1.9], [3.9, 3.8]])


def test_krum_uses_n_minus_f_minus_2_neighbours_and_squared_distances():
    assert np.argmin(ref_krum_scores(KRUM_CASE, 1)) == 1
    assert np.argmin(ref_krum_scores(KRUM_CASE, 1, neighbours=5)) == 2
    assert np.argmin(ref_krum_scores(KRUM_CASE, 1, squared=False)) == 3
    aggregate, share, _ = run(Krum(f=1), KRUM_CASE)
    np.testing.assert_allclose(aggregate, KRUM_CASE[1])
    assert share.tolist() == [0, 1, 0, 0, 0, 0, 0]
    # Permuted, and with a huge offset (the Gram matrix is centred first).
    order = [6, 3, 1, 0, 5, 2, 4]
    aggregate, share, _ = run(Krum(f=1), KRUM_CASE[order] + 1000.0)
    np.testing.assert_allclose(aggregate, KRUM_CASE[1] + 1000.0)
    assert share.tolist() == [0, 0, 1, 0, 0, 0, 0]


def test_krum_distances_stay_accurate_next_to_huge_attackers():
    # Gaussian attack (sigma = 200, as in the Krum paper) beside honest updates
    # 1e-2 apart, far from the origin: float32 Gram distances must still rank
    # the honest ones as float64 does.
    rng = np.random.default_rng(13)
    x = np.concatenate([1.0 + 1e-2 * rng.normal(size=(9, 1000)), 200.0 * rng.normal(size=(2, 1000))])
    for f in (2, 4):
        assert run(Krum(f=f), x)[1].argmax() == np.argmin(ref_krum_scores(x, f))
        expected, chosen = ref_multi_krum(x, f)
        assert np.flatnonzero(run(MultiKrum(f=f), x)[1]).tolist() == chosen


# Nine points, f = 2, m = n - f = 7: one-shot and iterative Multi-Krum
# average different sets.
MULTI_KRUM_CASE = np.array([[-1.0, -3.3], [0.3, 0.2], [-2.5, -1.4], [-0.1, -1.9], [-0.2, 0.2], [0.1, -1.0],
                            [1.2, 1.8], [0.6, -1.6], [1.5, -1.0]])


def test_multi_krum_averages_the_m_best():
    x = MULTI_KRUM_CASE
    one_shot, chosen = ref_multi_krum(x, 2)
    iterative, chosen_iterative = ref_multi_krum(x, 2, iterative=True)
    assert chosen != chosen_iterative and len(chosen) == len(chosen_iterative) == 7
    for aggregator, expected, rows in ((MultiKrum(f=2), one_shot, chosen),
                                       (MultiKrum(f=2, iterative=True), iterative, chosen_iterative)):
        aggregate, share, _ = run(aggregator, x)
        np.testing.assert_allclose(aggregate, expected, rtol=1e-5)
        np.testing.assert_allclose(share, np.isin(np.arange(9), rows) / 7, rtol=1e-6)
    for m in (1, 3):
        expected, rows = ref_multi_krum(x, 2, m=m)
        aggregate, share, _ = run(MultiKrum(f=2, m=m), x)
        np.testing.assert_allclose(aggregate, expected, rtol=1e-5)
        assert np.flatnonzero(share).tolist() == rows
    np.testing.assert_allclose(run(MultiKrum(f=2, m=1), x)[0], run(Krum(f=2), x)[0])


# Seven points, f = 1: theta = 5 selected by repeated Krum, then per
# coordinate the beta = 3 values closest to the median are averaged.
BULYAN_CASE = np.array([[1.8, -2.1, 1.8], [0.0, -2.5, -0.6], [0.1, 0.5, -2.0], [-2.2, 0.4, -0.9],
                        [0.5, 1.5, -3.3], [0.5, 2.4, -0.6], [-1.6, 1.5, 0.5]])


def test_bulyan_selects_theta_by_repeated_krum_and_averages_beta_around_the_median():
    x = BULYAN_CASE
    expected, chosen = ref_bulyan(x, 1)
    assert len(chosen) == 5
    whole, _ = ref_bulyan(x, 1, beta=5)  # the known wrong variant: the mean of the selection
    assert np.abs(expected - whole).min() > 0.05
    assert np.abs(expected - ref_bulyan(x, 1, beta=4)[0]).min() > 0.05
    aggregate, share, _ = run(Bulyan(f=1), x)
    np.testing.assert_allclose(aggregate, expected, rtol=1e-5)
    np.testing.assert_allclose(share, np.isin(np.arange(7), chosen) / 5)
    # Larger: n = 11, f = 2 (theta 7, beta 3), with two far, scattered outliers never selected.
    x = sample_updates(4, k=11)
    x[2] += 40.0
    x[8] -= 40.0
    expected, chosen = ref_bulyan(x, 2)
    aggregate, share, _ = run(Bulyan(f=2), x)
    np.testing.assert_allclose(aggregate, expected, rtol=1e-5)
    assert np.flatnonzero(share).tolist() == chosen and 2 not in chosen and 8 not in chosen


def test_bulyans_coordinate_step_averages_the_beta_values_nearest_the_median():
    from fedarena.plugins.aggregators import _mean_closest_to_median

    rng = np.random.default_rng(11)
    for count, beta in [(7, 3), (8, 4), (9, 9), (6, 1)]:
        # Values on a coarse grid: repeated values and ties in distance are common.
        columns = rng.integers(-4, 5, size=(200, count)).astype(np.float32)
        got = _mean_closest_to_median(tf.constant(columns), beta).numpy()
        for row, value in zip(columns, got):
            distance = np.abs(row - np.median(row))
            radius = np.sort(distance)[beta - 1]
            inside, edge = row[distance < radius], row[distance == radius]
            expected = (inside.sum() + (beta - len(inside)) * edge.mean()) / beta
            assert value == pytest.approx(expected, abs=1e-6), (row, beta)
    # A tie across the median: 0 and 2 are both 1 from the median 1 and one
    # place is left, so each counts for half of it, whatever the row order.
    for row in ([0.0, 1.0, 2.0, 1.0, 9.0], [2.0, 9.0, 1.0, 0.0, 1.0]):
        assert _mean_closest_to_median(tf.constant([row]), 3).numpy()[0] == pytest.approx((1 + 1 + 1) / 3)
    assert _mean_closest_to_median(tf.constant([[0.0, 1.0, 2.0, 1.0, 9.0]]), 4).numpy()[0] == pytest.approx(1.0)


# ------------------------------------------------ geometric median, clipping

def test_geometric_median_follows_weiszfeld_and_reaches_the_minimiser():
    from scipy.optimize import minimize

    rng = np.random.default_rng(6)
    x = rng.normal(size=(6, 3))
    x[0] += 20.0
    w = np.array([1.0, 2.0, 1.0, 3.0, 1.0, 2.0])
    aggregate, share, _ = run(GeometricMedian(), x, w)
    np.testing.assert_allclose(aggregate, ref_weiszfeld(x, w, 3, 1e-6), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(share.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(share @ x, aggregate, rtol=1e-4, atol=1e-5)

    def objective(v):
        return (w * np.linalg.norm(x - v, axis=1)).sum()

    best = minimize(objective, (w / w.sum()) @ x, method="Nelder-Mead",
                    options=dict(xatol=1e-9, fatol=1e-12, maxiter=20000)).x
    long_run, _, _ = run(GeometricMedian(iterations=300, nu=1e-9), x, w)
    np.testing.assert_allclose(long_run, best, atol=2e-3)
    assert np.linalg.norm(x.mean(0) - best) > 1.0  # the mean is far off


def test_centered_clipping_starts_from_the_previous_aggregate():
    rng = np.random.default_rng(7)
    aggregator = CenteredClipping(tau=0.5, iterations=2)
    state = state_of(aggregator)
    np.testing.assert_array_equal(state["previous"].numpy(), np.zeros(D))
    v = np.zeros(D)
    for _ in range(3):
        x = rng.normal(size=(5, D)) + 1.0
        aggregate, share, new = run(aggregator, x, state=state)
        expected = ref_centered_clipping(x, v, 0.5, 2)
        np.testing.assert_allclose(aggregate, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(new["previous"], aggregate)
        # Shares: aggregate = (1 - sum(share)) * previous + sum share_i x_i.
        np.testing.assert_allclose((1 - share.sum()) * v + share @ x, aggregate, rtol=1e-5, atol=1e-6)
        fresh, _, _ = run(aggregator, x)
        if v.any():
            assert np.abs(fresh - aggregate).max() > 1e-2  # the carried state matters
        v, state = expected, {"previous": tf.constant(new["previous"])}


def test_norm_clipping_clips_each_update_and_adds_seeded_noise():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(5, D)) * np.array([[0.1], [1.0], [3.0], [10.0], [0.5]])
    w = np.array([1.0, 2.0, 3.0, 1.0, 1.0])
    clipped = x * np.minimum(1.0, 1.5 / np.linalg.norm(x, axis=1))[:, None]
    aggregate, share, _ = run(NormClipping(bound=1.5), x, w)
    np.testing.assert_allclose(aggregate, w @ clipped / w.sum(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(share @ x, aggregate, rtol=1e-5, atol=1e-6)

    big = np.zeros((3, 20000), np.float32)
    noisy = NormClipping(bound=1.5, noise=0.2)
    first = run(noisy, big, ctx=context(3, seed=(1, -1)))[0]
    assert abs(first.std() - 0.2) < 0.01
    np.testing.assert_array_equal(run(noisy, big, ctx=context(3, seed=(1, -1)))[0], first)
    assert not np.allclose(run(noisy, big, ctx=context(3, seed=(1, -2)))[0], first)


# ------------------------------------------------------------- filtering

def test_dnc_drops_the_highest_projection_scores():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(10, 8))
    x[:, 0] += 10.0  # the benign cloud sits far from the origin
    x[[3, 7], :2] += [-3.0, 6.0]  # two colluders off it, in one direction
    f, c = 2, 1.0

    def kept_by_top_direction(centred):
        scores = (centred @ np.linalg.svd(centred)[2][0]) ** 2
        return np.sort(np.argsort(scores)[: 10 - floor(c * f)])

    kept = kept_by_top_direction(x - x.mean(0))
    assert 3 not in kept and 7 not in kept
    assert {3, 7} <= set(kept_by_top_direction(x))  # without centring they would pass
    aggregate, share, _ = run(DnC(f=f, c=c, subsample=100), x)  # all 8 coordinates
    np.testing.assert_allclose(aggregate, x[kept].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(share, np.isin(np.arange(10), kept) / len(kept), rtol=1e-6)
    # Random coordinates, several iterations: still drops colluders that differ in
    # every coordinate; at most n - floor(c f) are kept.
    x = rng.normal(size=(10, 8))
    x[[3, 7]] += 6.0
    aggregate, share, _ = run(DnC(f=f, c=1.5, subsample=4, niters=3), x)
    assert share[3] == share[7] == 0 and 0 < np.count_nonzero(share) <= 10 - 3


def test_signguard_filters_by_norm_and_by_sign_cluster():
    from sklearn.cluster import MeanShift, estimate_bandwidth

    rng = np.random.default_rng(10)
    x = np.abs(rng.normal(size=(10, 40))) * np.where(rng.uniform(size=(10, 40)) < 0.8, 1.0, -1.0)
    x[[2, 5]] = -x[[2, 5]]  # sign flipped: same norms, opposite sign statistics
    x[8] *= 10.0  # norm far above the median
    norms = np.linalg.norm(x, axis=1)
    median = np.median(norms)
    by_norm = (norms / median >= 0.1) & (norms / median <= 3.0)
    features = np.stack([(x > 0).mean(1), (x == 0).mean(1), (x < 0).mean(1)], axis=1)
    labels = MeanShift(bandwidth=estimate_bandwidth(features, quantile=0.3)).fit(features).labels_
    by_sign = labels == np.bincount(labels).argmax()
    chosen = by_norm & by_sign
    assert chosen.tolist() == [True, True, False, True, True, False, True, True, False, True]
    clipped = x * np.minimum(1.0, median / norms)[:, None]
    aggregate, share, _ = run(SignGuard(fraction=1.0), x)
    np.testing.assert_allclose(aggregate, clipped[chosen].mean(0), rtol=1e-5, atol=1e-6)
    assert (share > 0).tolist() == chosen.tolist()


def test_bucketing_averages_random_buckets_of_s_and_applies_the_inner_rule():
    x = sample_updates(11, k=9)
    seen = set()
    for seed in range(4):
        aggregate, share, _ = run(Bucketing(inner=Krum(f=0), s=2), x, ctx=context(9, seed=(seed, -1)))
        bucket = np.flatnonzero(share)
        # Krum picks one bucket mean: two updates with share 1/2 (or the last, single one).
        assert (len(bucket), share[bucket].tolist()) in ((2, [0.5, 0.5]), (1, [1.0]))
        np.testing.assert_allclose(aggregate, x[bucket].mean(0), rtol=1e-5, atol=1e-6)
        seen.add(tuple(bucket))
    assert len(seen) > 1  # the permutation depends on the round seed
    # Inner median over ceil(9/3) = 3 bucket means: each update is in one bucket.
    aggregate, share, _ = run(Bucketing(inner=Median(), s=3), x)
    np.testing.assert_allclose(share, np.full(9, 1 / 9), rtol=1e-6)
    # s = 1 is the inner rule itself; inner state is carried.
    np.testing.assert_allclose(run(Bucketing(inner=Median(), s=1), x)[0], np.median(x, axis=0), rtol=1e-6)
    wrapped = Bucketing(inner=CenteredClipping(tau=0.5), s=3)
    assert set(wrapped.initial_state(D, FACTS)) == {"previous"}
    _, _, state = run(wrapped, x)
    assert np.abs(state["previous"]).sum() > 0


def test_afa_flags_an_outlier_and_blocks_it_once_its_reputation_is_low():
    from scipy import stats

    rng = np.random.default_rng(12)
    aggregator = AFA()
    facts = Facts(num_clients=14, clients_per_round=10, num_classes=3, input_shape=(2,))
    state = state_of(aggregator, 20, facts)
    alpha, beta = state["alpha"].numpy(), state["beta"].numpy()
    assert alpha.shape == beta.shape == (14,) and (alpha == 3).all() and (beta == 3).all()
    attacker, direction = 11, rng.normal(size=20)
    reputations = []
    for round_number in range(1, 9):
        ids = np.sort(np.append(rng.choice([i for i in range(14) if i != attacker], 9, replace=False), attacker))
        x = direction + 0.3 * rng.normal(size=(10, 20))
        slot = int(np.flatnonzero(ids == attacker)[0])
        x[slot] = -3.0 * direction if round_number < 8 else direction  # behaves once blocked
        w = rng.integers(5, 50, size=10).astype(np.float64)
        aggregate, share, new = run(aggregator, x, w, context(10, facts, ids=ids), state)
        expected, coeff, alpha, beta = ref_afa(x, w, ids, alpha, beta)
        np.testing.assert_allclose(aggregate, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(share, coeff, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(new["alpha"], alpha)
        np.testing.assert_allclose(new["beta"], beta)
        assert share[slot] == 0
        reputations.append(alpha[attacker] / (alpha[attacker] + beta[attacker]))
        state = {key: tf.constant(value) for key, value in new.items()}
    # Flagged in each of the first 6 rounds: Beta(3, 9) puts P(theta < 0.5) = 0.967 > 0.95.
    assert beta[attacker] == 3 + 6 and alpha[attacker] == 3
    assert stats.beta.cdf(0.5, 3, 8) < 0.95 < stats.beta.cdf(0.5, 3, 9)
    assert all(later < earlier for earlier, later in zip(reputations[:6], reputations[1:6]))
    assert reputations[6] == reputations[7]  # blocked: no longer updated, even when behaving


# Eight updates whose cosines to the mean lean high (mean > median): the
# paper flags only above median + xi * std, so the low row 1 stays; a
# two-sided rule would drop it.
AFA_CASE = np.array([[1.5, 0.9, -0.1], [0.9, -0.3, 1.3], [1.0, 0.0, 0.1], [2.9, -0.7, 1.1], [1.5, 0.7, 1.0],
                     [3.7, 1.8, -1.0], [3.4, -1.5, -0.5], [2.3, -1.3, 0.1]])


def test_afa_flags_only_on_the_side_the_mean_leans_to():
    w, ids, prior = np.ones(8), np.arange(8), np.full(8, 3.0)
    expected, coeff, _, beta = ref_afa(AFA_CASE, w, ids, prior, prior)
    assert (coeff > 0).all() and (beta == 3).all()
    assert ref_afa(AFA_CASE, w, ids, prior, prior, two_sided=True)[1][1] == 0
    facts = Facts(num_clients=8, clients_per_round=8, num_classes=3, input_shape=(2,))
    aggregate, share, state = run(AFA(), AFA_CASE, w, context(8, facts), state_of(AFA(), 3, facts))
    np.testing.assert_allclose(share, coeff, rtol=1e-5)
    np.testing.assert_allclose(aggregate, expected, rtol=1e-5)
    assert (state["alpha"] == 4).all() and (state["beta"] == 3).all()


# ------------------------------------------------------------------ checks

def facts_with(n):
    return Facts(num_clients=30, clients_per_round=n, num_classes=3, input_shape=(2,))


def test_check_messages():
    assert Krum(f=2).check(facts_with(5)) == [
        "krum needs clients_per_round > 2f + 2 (here 5 <= 2*2 + 2); lower f or sample more clients"]
    assert Krum(f=2).check(facts_with(7)) == []
    assert MultiKrum(f=1, m=9).check(facts_with(5)) == [
        "multi_krum averages m = 9 updates but clients_per_round is 5; lower m"]
    assert MultiKrum(f=2).check(facts_with(6)) == [
        "multi_krum needs clients_per_round > 2f + 2 (here 6 <= 2*2 + 2); lower f or sample more clients"]
    assert Bulyan(f=2).check(facts_with(10)) == [
        "bulyan needs clients_per_round >= 4f + 3 (here 10 < 4*2 + 3); lower f or sample more clients"]
    assert Bulyan(f=2).check(facts_with(11)) == []
    assert TrimmedMean(k=3).check(facts_with(6)) == [
        "trimmed_mean needs clients_per_round > 2k (here 6 <= 2*3); lower k or sample more clients"]
    assert TrimmedMean(beta=0.4).check(facts_with(4)) == [
        "trimmed_mean with beta = 0.4 trims ceil(0.4*4) = 2 values per side of clients_per_round 4, "
        "leaving none; lower beta or sample more clients"]
    assert TrimmedMean(beta=0.4).check(facts_with(5)) == []
    with pytest.raises(ValueError, match="'beta' must be < 0.5"):
        TrimmedMean(beta=0.5)
    assert DnC(f=3, c=2.0).check(facts_with(6)) == [
        "dnc drops floor(c*f) = 6 updates per iteration but clients_per_round is 6; "
        "lower c or f, or sample more clients"]
    assert SignGuard(lower=2.0, upper=1.0).check(facts_with(6)) == ["signguard needs lower < upper (here 2 >= 1)"]
    assert Bucketing(inner=Krum(f=2), s=2).check(facts_with(11)) == [
        "bucketing(s = 2) leaves ceil(11/2) = 6 bucket means for its inner rule: "
        "krum needs clients_per_round > 2f + 2 (here 6 <= 2*2 + 2); lower f or sample more clients"]
    assert Bucketing(inner=Krum(f=2), s=2).check(facts_with(13)) == []
    assert Bucketing(inner=AFA()).check(facts_with(10)) == [
        "bucketing cannot wrap afa: AFA keeps a reputation per client, and bucket means are not clients"]


def test_the_checker_reports_an_aggregator_rule_and_accepts_a_nested_one():
    with pytest.raises(ScenarioError, match=r"krum needs clients_per_round > 2f \+ 2 \(here 4 <= 2\*1 \+ 2\)"):
        check(parse(tiny_scenario(aggregator="krum(f = 1)"), "s.fls"), default_registry())
    scenario = check(parse(tiny_scenario(aggregator="bucketing(s = 1, inner = krum(f = 0))"), "s.fls"),
                     default_registry())
    assert scenario.aggregator == Bucketing(inner=Krum(f=0), s=1)


def test_fltrust_trusts_by_cosine_to_the_root_update_and_rescales_to_its_norm(fedarena_server_context):
    from fedarena.plugins.aggregators import FLTrust

    updates = np.array([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0]], np.float32)
    ctx = attrs.evolve(fedarena_server_context(updates), root_update=tf.constant([1.0, 1.0]))
    aggregate, share = FLTrust().aggregate(tf.constant(updates), tf.ones([3]), ctx)
    # cos = 1/sqrt2 for the first two, negative (trust 0) for the third; each
    # trusted row is rescaled to ||g0|| = sqrt2, then the trust-weighted mean.
    np.testing.assert_allclose(share.numpy(), [0.5, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(aggregate.numpy(), [np.sqrt(2) / 2, np.sqrt(2) / 2], rtol=1e-5)
    all_against = attrs.evolve(ctx, root_update=tf.constant([-1.0, -1.0]))
    aggregate, share = FLTrust().aggregate(tf.constant(updates[:2]), tf.ones([2]), all_against)
    assert np.all(aggregate.numpy() == 0) and np.all(share.numpy() == 0)
    assert FLTrust().check(ctx.facts) == ["fltrust needs a server root dataset: add 'root_samples 100' to the training block"]


@pytest.mark.parametrize("attackers", ["huge", "zero"])
def test_pairwise_distances_stay_precise_whatever_the_attackers_send(attackers):
    from fedarena.plugins.aggregators import _pairwise_sq_distances

    rng = np.random.default_rng(3)
    honest = (5.0 + 0.01 * rng.normal(size=(15, 4096))).astype(np.float32)  # far from the origin, close together
    bad = 200 * rng.normal(size=(5, 4096)) if attackers == "huge" else np.zeros((5, 4096))
    rows = np.concatenate([honest, bad.astype(np.float32)])
    got = _pairwise_sq_distances(tf.constant(rows)).numpy()[:15, :15]
    exact = ((honest[:, None, :].astype(np.float64) - honest[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(got, exact, rtol=1e-3, atol=1e-6)


# ------------------------------------------------------------------ layers

TWO_LAYERS = (Layer("first/kernel:0", (3,), 0), Layer("second/kernel:0", (3,), 3))
WITH_LAYERS = sorted(name for name, aggregator in ALL.items() if hasattr(aggregator, "layers"))


def layered_context(k, root=None):
    root_update = None if root is None else tf.constant(root, tf.float32)
    return attrs.evolve(context(k), layers=TWO_LAYERS, root_update=root_update)


def test_the_rules_that_compare_rows_take_layers():
    from fedarena.plugins.aggregators import FLTrust

    assert WITH_LAYERS == ["afa", "bulyan", "dnc", "krum", "multi_krum", "multi_krum_iterative", "signguard"]
    assert FLTrust().layers == ()
    for name in ("fedavg", "median", "trimmed_mean", "geometric_median", "centered_clipping", "norm_clipping",
                 "bucketing"):
        assert not hasattr(ALL[name], "layers"), name


@pytest.mark.parametrize("name", WITH_LAYERS + ["fltrust"])
def test_layers_naming_every_layer_change_nothing(name):
    from fedarena.plugins.aggregators import FLTrust

    aggregator = FLTrust() if name == "fltrust" else ALL[name]
    root = np.linspace(-1, 2, D)
    updates = sample_updates(4)
    expected = run(aggregator, updates, ctx=layered_context(K, root))
    got = run(attrs.evolve(aggregator, layers=("first", "second")), updates, ctx=layered_context(K, root))
    for a, b in zip(got[:2], expected[:2]):
        np.testing.assert_array_equal(a, b)
    for key in expected[2]:
        np.testing.assert_array_equal(got[2][key], expected[2][key])
    with pytest.raises(ValueError, match="match no layer"):
        run(attrs.evolve(aggregator, layers=("third",)), updates, ctx=layered_context(K, root))


def test_krum_with_layers_picks_by_the_distances_on_those_layers_only():
    rng = np.random.default_rng(8)
    x = np.zeros((7, D))
    # First layer: row 0 sits at the centre of rows 1-5; row 6 is far.
    x[1:6, :3] = rng.normal(size=(5, 3))
    x[1:6, :3] -= x[1:6, :3].mean(axis=0)
    x[6, :3] = 20.0
    # Second layer: row 0 is far; the others spread around 0.
    x[0, 3:] = 10.0
    x[1:, 3:] = rng.normal(size=(6, 3))
    x = x.astype(np.float32)
    f = 1
    on_first = int(np.argmin(ref_krum_scores(x[:, :3], f)))
    on_second = int(np.argmin(ref_krum_scores(x[:, 3:], f)))
    on_all = int(np.argmin(ref_krum_scores(x, f)))
    assert on_first == 0 and on_all != 0 and on_second != 0
    for layers, winner in (((), on_all), (("first",), on_first), (("second",), on_second)):
        aggregate, share, _ = run(Krum(f=f, layers=layers), x, ctx=layered_context(7))
        np.testing.assert_array_equal(aggregate, x[winner])  # the whole update, every layer
        assert share.tolist() == np.eye(7)[winner].tolist(), layers
    # Multi-Krum and Bulyan's selection follow the same distances.
    _, share, _ = run(MultiKrum(f=f, m=1, layers=("first",)), x, ctx=layered_context(7))
    assert int(np.argmax(share)) == 0


def test_fltrust_with_layers_trusts_by_the_cosine_on_those_layers():
    from fedarena.plugins.aggregators import FLTrust

    root = np.ones(D, np.float32)
    x = np.array([[1, 1, 1, -5, -5, -5], [2, 2, 2, 2, 2, 2]], np.float32)  # row 0 agrees on the first layer only
    _, share, _ = run(FLTrust(), x, ctx=layered_context(2, root))
    np.testing.assert_allclose(share, [0.0, 1.0], atol=1e-6)
    aggregate, share, _ = run(FLTrust(layers=("first",)), x, ctx=layered_context(2, root))
    np.testing.assert_allclose(share, [0.5, 0.5], atol=1e-6)
    # Each row is still rescaled to the root update's whole norm.
    scaled = x * (np.linalg.norm(root) / np.linalg.norm(x, axis=1))[:, None]
    np.testing.assert_allclose(aggregate, scaled.mean(axis=0), rtol=1e-5)


def test_afa_with_layers_flags_by_the_cosine_on_those_layers():
    rng = np.random.default_rng(2)
    x = 1.0 + 0.1 * rng.normal(size=(10, D))
    x[9, 3:] = -8.0  # against the others on the second layer only
    x = x.astype(np.float32)
    _, share, _ = run(AFA(), x, ctx=layered_context(10))
    assert share[9] == 0 and (share[:9] > 0).all()
    # The aggregate's columns of a layer are the mean of the rows' columns:
    # AFA on the first layer flags as AFA on the first layer's columns alone.
    _, share, state = run(AFA(layers=("first",)), x, ctx=layered_context(10))
    _, alone, alone_state = run(AFA(), x[:, :3], ctx=layered_context(10))
    assert share[9] > 0
    np.testing.assert_allclose(share > 0, alone > 0)
    np.testing.assert_allclose(state["beta"], alone_state["beta"])
