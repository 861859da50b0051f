"""Conformance of the attack library on small hand-made inputs: each attack
against the definition ALGORITHMS.md states, checked with independent NumPy
code (a small Krum, distances, trimmed intervals) rather than with the
attack's own helpers."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts, Layer, ServerContext
from fedarena.plugins import attacks as A, triggers as T

D = 30
FACTS = Facts(num_clients=50, clients_per_round=10, num_classes=4, input_shape=(8, 8, 1), num_attackers=10)


def context(k: int, d: int = D, facts: Facts = FACTS, seed=(7, -1), global_weights=None, round_number=1):
    return ServerContext(
        facts=facts, layers=(Layer("dense/kernel:0", (d,), 0),), client_ids=tf.range(k, dtype=tf.int32),
        num_examples=tf.ones([k]), global_weights=tf.zeros([d]) if global_weights is None else tf.constant(
            global_weights, tf.float32), round=tf.constant(round_number, tf.int32),
        seed=tf.constant(seed, tf.int64),
    )


def matrix(seed=0, k=10, d=D, own=(3, 7), other=(), centre=0.1, noise=1.0):
    """``k`` rows scattered around ``centre``; ``own`` rows are this attack's,
    ``other`` rows belong to another attack group (neither own nor benign)."""
    rng = np.random.default_rng(seed)
    updates = (centre + noise * rng.normal(size=(k, d))).astype(np.float32)
    own_mask = np.isin(np.arange(k), own)
    benign = ~own_mask & ~np.isin(np.arange(k), other)
    return updates, own_mask, benign


def attack_rows(attack, updates, own, benign, ctx=None):
    ctx = ctx or context(len(updates), updates.shape[1])
    return np.asarray(attack.poison_updates(tf.constant(updates), tf.constant(own), tf.constant(benign), ctx))


def pairwise_sq(a, b):
    return ((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1)


def numpy_krum(rows, f):
    """Krum (Blanchard 2017): argmin of the summed squared distances to the
    n - f - 2 nearest other rows."""
    n = len(rows)
    dist = pairwise_sq(rows, rows)
    np.fill_diagonal(dist, np.inf)
    return int(np.argmin(np.sort(dist, axis=1)[:, : n - f - 2].sum(axis=1)))


# ---------------------------------------------------------------- ALIE


Z_VECTORS = [(20, 4, 0.385, 0.157), (20, 8, 1.036, 0.674), (50, 12, 0.583, 0.336), (50, 24, 1.751, 1.426),
             (100, 20, 0.496, 0.286)]


@pytest.mark.parametrize("n, m, paper, library", Z_VECTORS)
def test_alie_z_matches_every_vector_of_algorithms_md(n, m, paper, library):
    assert round(A.alie_z(n, m, "paper"), 3) == paper
    assert round(A.alie_z(n, m, "library"), 3) == library


def test_alie_z_refuses_an_undefined_quantile():
    with pytest.raises(ValueError):
        A.alie_z(4, 4)  # s = -1: quantile 5/4
    assert A.ALIE().check(Facts(num_clients=4, clients_per_round=4, num_classes=2, input_shape=(2,),
                                num_attackers=4))
    assert A.ALIE(z=1.0).check(Facts(num_clients=4, clients_per_round=4, num_classes=2, input_shape=(2,),
                                     num_attackers=4)) == []


def test_expected_attackers_scales_by_the_sampled_share_and_is_at_least_one():
    assert A.expected_attackers(Facts(100, 20, 10, (2,), num_attackers=20)) == 4
    assert A.expected_attackers(Facts(100, 10, 10, (2,), num_attackers=5)) == 1  # 0.5 rounds up
    assert A.expected_attackers(Facts(100, 10, 10, (2,), num_attackers=1)) == 1  # 0.1, at least one


@pytest.mark.parametrize("sign", [-1, 1])
def test_alie_rows_are_mean_plus_sign_z_std_of_the_benign_rows(sign):
    updates, own, benign = matrix(other=(9,))
    out = attack_rows(A.ALIE(z=1.5, sign=sign), updates, own, benign)
    ref = updates[benign].astype(np.float64)
    expected = ref.mean(0) + sign * 1.5 * ref.std(0)
    np.testing.assert_allclose(out[own], np.tile(expected, (own.sum(), 1)), rtol=1e-5, atol=1e-5)


def test_alie_default_z_comes_from_clients_per_round_and_expected_attackers():
    facts = Facts(num_clients=100, clients_per_round=20, num_classes=4, input_shape=(2,), num_attackers=20)
    updates, own, benign = matrix(k=20, own=(0, 5, 11, 19))
    out = attack_rows(A.ALIE(), updates, own, benign, context(20, facts=facts))
    ref = updates[benign].astype(np.float64)
    np.testing.assert_allclose(out[own][0], ref.mean(0) - A.alie_z(20, 4) * ref.std(0), rtol=1e-5, atol=1e-5)
    library = attack_rows(A.ALIE(variant="library"), updates, own, benign, context(20, facts=facts))
    np.testing.assert_allclose(library[own][0], ref.mean(0) - 0.157 * ref.std(0), atol=2e-3)


def test_alie_partial_knowledge_reads_the_attackers_own_rows():
    updates, own, benign = matrix(own=(1, 4, 6))
    out = attack_rows(A.ALIE(z=1.0, knowledge="partial"), updates, own, benign)
    ref = updates[own].astype(np.float64)
    np.testing.assert_allclose(out[own][0], ref.mean(0) - ref.std(0), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- IPM, sign flip, Gaussian, scaling


def test_ipm_row_is_minus_epsilon_times_the_benign_mean():
    updates, own, benign = matrix(other=(9,))
    out = attack_rows(A.IPM(epsilon=0.5), updates, own, benign)
    np.testing.assert_allclose(out[own], np.tile(-0.5 * updates[benign].mean(0), (2, 1)), rtol=1e-5, atol=1e-6)
    partial = attack_rows(A.IPM(epsilon=2.0, knowledge="partial"), updates, own, benign)
    np.testing.assert_allclose(partial[own][1], -2.0 * updates[own].mean(0), rtol=1e-5, atol=1e-6)


def test_sign_flip_variants():
    updates, own, benign = matrix(other=(9,))
    np.testing.assert_array_equal(attack_rows(A.SignFlip(), updates, own, benign)[own], -updates[own])
    np.testing.assert_allclose(attack_rows(A.SignFlip(variant="scaled", scale=3.0), updates, own, benign)[own],
                               -3.0 * updates[own], rtol=1e-6)
    mean = attack_rows(A.SignFlip(variant="benign_mean"), updates, own, benign)[own]
    np.testing.assert_allclose(mean, np.tile(-updates[benign].mean(0), (2, 1)), rtol=1e-5, atol=1e-6)


def test_gaussian_rows_have_standard_deviation_sigma_and_are_independent():
    updates, own, benign = matrix(d=20000)
    ctx = context(10, 20000)
    out = attack_rows(A.Gaussian(), updates, own, benign, ctx)
    rows = out[own]
    assert abs(rows.std() / 200.0 - 1) < 0.02 and abs(rows.mean()) < 5.0
    assert not np.allclose(rows[0], rows[1])
    np.testing.assert_array_equal(out, attack_rows(A.Gaussian(), updates, own, benign, ctx))  # stateless
    other = attack_rows(A.Gaussian(sigma=2.0), updates, own, benign, ctx)[own]
    assert abs(other.std() / 2.0 - 1) < 0.02


@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_model_replacement_makes_the_fedavg_aggregate_the_attackers_model(eta):
    n, d = 5, 12
    facts = Facts(num_clients=20, clients_per_round=n, num_classes=3, input_shape=(2,), server_learning_rate=eta)
    rng = np.random.default_rng(3)
    global_model = rng.normal(size=d).astype(np.float32)
    target_model = rng.normal(size=d).astype(np.float32)
    benign = rng.normal(size=(n - 1, d))
    benign -= benign.mean(0)  # benign updates that cancel (a converged model, as the paper assumes)
    updates = np.vstack([benign[:2], target_model - global_model, benign[2:]]).astype(np.float32)
    own = np.arange(n) == 2
    out = attack_rows(A.Scaling(), updates, own, ~own, context(n, d, facts))
    np.testing.assert_allclose(global_model + eta * out.mean(0), target_model, atol=1e-4)
    # Two attackers sharing gamma replace the model once; without sharing they overshoot.
    pair = np.vstack([target_model - global_model] * 2 + [benign[:3] - benign[:3].mean(0)]).astype(np.float32)
    own2 = np.arange(n) < 2
    shared = attack_rows(A.Scaling(share=True), pair, own2, ~own2, context(n, d, facts))
    np.testing.assert_allclose(global_model + eta * shared.mean(0), target_model, atol=1e-4)
    doubled = attack_rows(A.Scaling(), pair, own2, ~own2, context(n, d, facts))
    np.testing.assert_allclose(global_model + eta * doubled.mean(0), 2 * target_model - global_model, atol=1e-4)
    np.testing.assert_allclose(attack_rows(A.Scaling(gamma=3), updates, own, ~own)[own], 3 * updates[own])


# ---------------------------------------------------------------- Fang


@pytest.mark.parametrize("seed", [0, 1, 4])
def test_fang_krum_crafted_row_is_krums_choice_and_points_against_the_benign_mean(seed):
    updates, own, benign = matrix(seed=seed)
    out = attack_rows(A.FangKrum(), updates, own, benign)
    crafted = out[own]
    np.testing.assert_array_equal(crafted[0], crafted[1])  # copies
    benign_sum = updates[benign].sum(0)
    lam = np.abs(crafted[0]).max()
    np.testing.assert_allclose(crafted[0], -lam * np.sign(benign_sum), rtol=1e-6)
    assert crafted[0] @ updates[benign].mean(0) < 0
    m, n = own.sum(), len(updates)
    assert numpy_krum(out, f=m) in np.flatnonzero(own)
    # The search started from Fang's bound and halved; twice the final lambda was refused.
    ref = updates[benign].astype(np.float64)
    dist = np.sqrt(pairwise_sq(ref, ref))
    np.fill_diagonal(dist, np.inf)
    start = (np.sort(dist, 1)[:, : n - m - 2].sum(1).min() / (n - 2 * m - 1)
             + np.linalg.norm(ref, axis=1).max()) / np.sqrt(D)
    halvings = np.log2(start / lam)
    assert halvings == pytest.approx(round(halvings), abs=1e-4) and round(halvings) >= 1
    doubled = out.copy()
    doubled[own] = 2 * crafted
    assert numpy_krum(doubled, f=m) not in np.flatnonzero(own)


def test_fang_krum_partial_knowledge_uses_the_attackers_pre_attack_direction():
    updates, own, benign = matrix(seed=2, own=(0, 3, 5, 8), centre=0.0)
    updates[own] += 0.5  # the attackers' own data pushes up: their direction differs from the benign one
    out = attack_rows(A.FangKrum(knowledge="partial"), updates, own, benign)
    lam = np.abs(out[own][0]).max()
    np.testing.assert_allclose(out[own], np.tile(-lam * np.sign(updates[own].sum(0)), (4, 1)), rtol=1e-6)
    assert lam > 0


def trim_interval(ref, b=2.0):
    s = np.sign(ref.sum(0))
    high, low = ref.max(0), ref.min(0)
    lo = np.where(s > 0, np.where(low > 0, low / b, b * low), high)
    hi = np.where(s > 0, low, np.where(high > 0, b * high, high / b))
    return s, lo, hi


def test_fang_trim_samples_beyond_the_benign_extreme_opposite_the_benign_direction():
    updates, own, benign = matrix(seed=4, k=12, own=(2, 6, 9), other=(11,), centre=0.0, noise=0.3)
    # Columns that exercise every branch: all positive, all negative, mixed.
    updates[:, :5] += 1.0
    updates[:, 5:10] -= 1.0
    out = attack_rows(A.FangTrim(), updates, own, benign)
    ref = updates[benign].astype(np.float64)
    s, lo, hi = trim_interval(ref)
    rows = out[own]
    assert (rows >= lo - 1e-6).all() and (rows <= hi + 1e-6).all()
    assert (rows[:, s > 0] <= ref.min(0)[s > 0] + 1e-6).all()  # below the benign minimum where benign goes up
    assert (rows[:, s < 0] >= ref.max(0)[s < 0] - 1e-6).all()  # above the benign maximum where it goes down
    # All benign negative: between the maximum and half of it (Fang's [max/b, max]), still negative.
    high = ref.max(0)[5:10]
    assert (rows[:, 5:10] >= high - 1e-6).all() and (rows[:, 5:10] <= high / 2 + 1e-6).all() and (high < 0).all()
    assert not np.allclose(rows[0], rows[1])  # each attacker samples its own row


def test_fang_trim_partial_knowledge_samples_three_to_four_sigma_opposite():
    updates, own, benign = matrix(seed=5, own=(1, 2, 3, 4), noise=0.5)
    out = attack_rows(A.FangTrim(knowledge="partial"), updates, own, benign)
    ref = updates[own].astype(np.float64)
    mu, sigma = ref.mean(0), ref.std(0)
    up = np.sign(mu) > 0
    rows = out[own]
    assert (rows[:, up] <= (mu - 3 * sigma)[up] + 1e-5).all() and (rows[:, up] >= (mu - 4 * sigma)[up] - 1e-5).all()
    assert (rows[:, ~up] >= (mu + 3 * sigma)[~up] - 1e-5).all()
    assert (rows[:, ~up] <= (mu + 4 * sigma)[~up] + 1e-5).all()


# ---------------------------------------------------------------- Min-Max, Min-Sum


def perturbation(ref, kind):
    mean = ref.mean(0)
    return {"unit_vec": mean / np.linalg.norm(mean), "std": ref.std(0), "sign": np.sign(mean)}[kind]


def recovered_gamma(row, ref, kind):
    p = perturbation(ref, kind)
    gamma = (ref.mean(0) - row) @ p / (p @ p)
    np.testing.assert_allclose(row, ref.mean(0) - gamma * p, atol=1e-5)
    return gamma


def min_max_ok(row, ref):
    return pairwise_sq(row[None], ref).max() <= pairwise_sq(ref, ref).max() * (1 + 1e-6)


def min_sum_ok(row, ref, threshold="max"):
    scores = pairwise_sq(ref, ref).sum(1)
    bound = scores.max() if threshold == "max" else scores.min()
    return pairwise_sq(row[None], ref).sum() <= bound * (1 + 1e-6)


@pytest.mark.parametrize("kind", ["unit_vec", "std", "sign"])
def test_min_max_row_stays_within_the_benign_diameter_with_the_largest_gamma(kind):
    updates, own, benign = matrix(seed=6, other=(0,), centre=0.5)
    out = attack_rows(A.MinMax(perturbation=kind), updates, own, benign)
    ref = updates[benign].astype(np.float64)
    row = out[own][0].astype(np.float64)
    np.testing.assert_array_equal(out[own][0], out[own][1])
    gamma = recovered_gamma(row, ref, kind)
    assert 0 < gamma < 19.9  # found inside the search range, not at its edge
    assert min_max_ok(row, ref)
    p = perturbation(ref, kind)
    assert not min_max_ok(ref.mean(0) - (gamma + 1e-3) * p, ref)  # a slightly larger gamma breaks the bound


@pytest.mark.parametrize("kind", ["unit_vec", "std", "sign"])
@pytest.mark.parametrize("threshold", ["max", "min"])
def test_min_sum_row_keeps_its_score_within_the_benign_bound_with_the_largest_gamma(kind, threshold):
    updates, own, benign = matrix(seed=7, other=(0,), centre=0.5)
    out = attack_rows(A.MinSum(perturbation=kind, threshold=threshold), updates, own, benign)
    ref = updates[benign].astype(np.float64)
    row = out[own][0].astype(np.float64)
    gamma = recovered_gamma(row, ref, kind)
    assert 0 < gamma < 19.9
    assert min_sum_ok(row, ref, threshold)
    assert not min_sum_ok(ref.mean(0) - (gamma + 1e-3) * perturbation(ref, kind), ref, threshold)


def test_min_sum_with_the_minimum_score_is_stealthier_than_with_the_maximum():
    updates, own, benign = matrix(seed=8)
    ref = updates[benign].astype(np.float64)
    loose = recovered_gamma(attack_rows(A.MinSum(), updates, own, benign)[own][0], ref, "unit_vec")
    tight = recovered_gamma(attack_rows(A.MinSum(threshold="min"), updates, own, benign)[own][0], ref, "unit_vec")
    assert 0 < tight < loose


def test_min_max_partial_knowledge_reads_own_rows():
    updates, own, benign = matrix(seed=9, own=(1, 2, 5, 8), centre=0.5)
    out = attack_rows(A.MinMax(knowledge="partial"), updates, own, benign)
    ref = updates[own].astype(np.float64)
    row = out[own][0].astype(np.float64)
    gamma = recovered_gamma(row, ref, "unit_vec")
    assert gamma > 0 and min_max_ok(row, ref)
    assert not min_max_ok(ref.mean(0) - (gamma + 1e-3) * perturbation(ref, "unit_vec"), ref)


# ---------------------------------------------------------------- Neurotoxin


def test_neurotoxin_masks_the_top_coordinates_of_the_last_global_update():
    attack = A.Neurotoxin(target=0, ratio=0.1, boost=2.0)
    updates, own, benign = matrix(seed=10)
    state = {k: tf.constant(v) for k, v in attack.initial_state(D, FACTS).items()}
    g1 = np.zeros(D, np.float32)
    out, state = attack.poison_updates_with_state(tf.constant(updates), tf.constant(own), tf.constant(benign),
                                                  context(10, global_weights=g1), state)
    np.testing.assert_allclose(np.asarray(out)[own], 2.0 * updates[own])  # first round: nothing known, no mask
    g2 = np.random.default_rng(1).permutation(np.linspace(-1, 1.2, D)).astype(np.float32)
    out, state = attack.poison_updates_with_state(tf.constant(updates), tf.constant(own), tf.constant(benign),
                                                  context(10, global_weights=g2, round_number=2), state)
    out = np.asarray(out)
    top = np.argsort(-np.abs(g2 - g1))[:3]
    keep = np.ones(D, bool)
    keep[top] = False
    assert (out[own][:, top] == 0).all()
    np.testing.assert_allclose(out[own][:, keep], 2.0 * updates[own][:, keep])
    np.testing.assert_array_equal(np.asarray(state["previous_global"]), g2)


def test_neurotoxin_omniscient_masks_the_top_coordinates_of_the_benign_mean():
    updates, own, benign = matrix(seed=11)
    out = attack_rows(A.Neurotoxin(target=0, ratio=0.2, knowledge="omniscient"), updates, own, benign)
    top = np.argsort(-np.abs(updates[benign].mean(0)))[:6]
    assert (out[own][:, top] == 0).all()
    assert np.count_nonzero(out[own][0]) == D - 6


# ---------------------------------------------------------------- every model-poisoning attack


UPDATE_ATTACKS = {
    "sign_flip": A.SignFlip(), "sign_flip_mean": A.SignFlip(variant="benign_mean"),
    "sign_flip_scaled": A.SignFlip(variant="scaled"), "gaussian": A.Gaussian(), "scaling": A.Scaling(),
    "alie": A.ALIE(), "alie_partial": A.ALIE(knowledge="partial"), "ipm": A.IPM(),
    "fang_krum": A.FangKrum(), "fang_krum_partial": A.FangKrum(knowledge="partial", f=1),
    "fang_trim": A.FangTrim(), "fang_trim_partial": A.FangTrim(knowledge="partial"),
    "min_max": A.MinMax(perturbation="std"), "min_sum": A.MinSum(perturbation="sign"),
    "min_max_partial": A.MinMax(knowledge="partial"),
    "backdoor_boost": A.Backdoor(target=0, boost=5.0), "neurotoxin": A.Neurotoxin(target=0, knowledge="omniscient"),
    "edge_case_boost": A.EdgeCase(path="unread.npz", target=0, boost=3.0),
    "edge_case_bound": A.EdgeCase(path="unread.npz", target=0, norm_bound=0.5),
}


@pytest.mark.parametrize("name", sorted(UPDATE_ATTACKS))
def test_only_own_rows_change(name):
    attack = UPDATE_ATTACKS[name]
    assert attack.poisons_updates
    updates, own, benign = matrix(seed=12, other=(9,))
    out = attack_rows(attack, updates, own, benign)
    np.testing.assert_array_equal(out[~own], updates[~own])
    assert not np.allclose(out[own], updates[own])
    none = np.zeros(10, bool)
    np.testing.assert_array_equal(attack_rows(attack, updates, none, ~none), updates)  # group absent this round


@pytest.mark.parametrize("name", sorted(UPDATE_ATTACKS))
def test_attacks_trace_with_an_unknown_number_of_rows(name):
    attack = UPDATE_ATTACKS[name]
    spec = [tf.TensorSpec([None, D], tf.float32), tf.TensorSpec([None], tf.bool), tf.TensorSpec([None], tf.bool)]
    ctx = context(10)  # attacks read only facts and seed from it

    @tf.function(input_signature=spec)
    def poison(updates, own, benign):
        assert updates.shape[0] is None
        return attack.poison_updates(updates, own, benign, ctx)

    for k, own_rows in ((10, (3, 7)), (7, (0, 1, 6))):
        updates, own, benign = matrix(seed=13, k=k, own=own_rows)
        graph = np.asarray(poison(tf.constant(updates), tf.constant(own), tf.constant(benign)))
        np.testing.assert_allclose(graph, attack_rows(attack, updates, own, benign, ctx), rtol=1e-5, atol=1e-5)
    assert poison.experimental_get_tracing_count() == 1  # one graph for every K


def test_neurotoxin_history_traces_with_state_and_unknown_rows():
    attack = A.Neurotoxin(target=0)
    ctx = context(10, global_weights=np.ones(D, np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, D], tf.float32), tf.TensorSpec([None], tf.bool),
                                  tf.TensorSpec([None], tf.bool), tf.TensorSpec([D], tf.float32),
                                  tf.TensorSpec([], tf.int32)])
    def poison(updates, own, benign, previous, has_previous):
        return attack.poison_updates_with_state(updates, own, benign, ctx,
                                                {"previous_global": previous, "has_previous": has_previous})

    updates, own, benign = matrix(seed=14)
    out, state = poison(updates, own, benign, np.zeros(D, np.float32), np.int32(1))
    assert np.count_nonzero(np.asarray(out)[own][0]) == D - round(0.05 * D)
    assert int(state["has_previous"]) == 1


# ---------------------------------------------------------------- backdoor


def poisoned(attack, x, y, member=0, input_shape=None, seed=(1, 2)):
    facts = Facts(10, 5, 4, tuple(input_shape or x.shape[1:]))
    px, py = attack.poison_data(tf.constant(x), tf.constant(y), tf.constant(seed, tf.int64), facts,
                                tf.constant(member, tf.int32))
    return np.asarray(px), np.asarray(py)


def images(n=50, shape=(8, 8, 1), seed=0):
    rng = np.random.default_rng(seed)
    return (0.5 * rng.random((n,) + shape)).astype(np.float32), rng.integers(0, 4, n).astype(np.int32)


@pytest.mark.parametrize("ratio, count", [(0.3, 15), (1.0, 50), (0.01, 0)])
def test_backdoor_stamps_its_default_pixel_trigger_on_the_poison_ratio_share(ratio, count):
    x, y = images()
    px, py = poisoned(A.Backdoor(target=2, poison_ratio=ratio), x, y)
    changed = (px != x).reshape(50, -1).any(axis=1)
    assert changed.sum() == count
    assert (px[changed][:, 5:, 5:, :] == 1.0).all()  # 3 x 3 at the bottom right, at the maximum value
    outside = np.ones((8, 8, 1), bool)
    outside[5:, 5:] = False
    np.testing.assert_array_equal(px[:, outside], x[:, outside])
    assert (py[changed] == 2).all()
    np.testing.assert_array_equal(py[~changed], y[~changed])
    np.testing.assert_array_equal(px[~changed], x[~changed])


def test_attack_success_rate_counts_only_non_target_samples():
    attack = A.Backdoor(target=1)
    x, _ = images(n=8)
    y = np.array([1, 1, 1, 0, 0, 2, 3, 3], np.int32)
    marker = np.array([0, 0, 0, 1, 1, 1, 0, 1], bool)  # the model follows the trigger only on these
    x[:, 0, 0, 0] = np.where(marker, 0.4, 0.1)

    def predict(inputs):
        triggered = (inputs[:, 5:, 5:, :] == 1.0).all(axis=(1, 2, 3))
        to_target = triggered & (inputs[:, 0, 0, 0] > 0.3)
        return np.eye(4)[np.where(to_target, 1, 0)]

    found = attack.test_metrics(predict, x, y, FACTS)
    assert found == {"attack_success_rate": pytest.approx(4 / 5)}  # 5 non-target samples, 4 follow
    assert attack.test_metrics(predict, x[y == 1], y[y == 1], FACTS)["attack_success_rate"] != 0.0


def test_backdoor_stamps_the_part_of_its_trigger_that_the_member_picks():
    x, y = images()
    attack = A.Backdoor(target=1, poison_ratio=1.0, trigger=T.DBA(size=4, parts=2))
    for member in range(4):
        px, py = poisoned(attack, x, y, member=member)
        np.testing.assert_array_equal(px, attack.trigger.stamp(x, part=member))
        assert (py == 1).all()


def test_backdoor_checks_the_scenario_and_its_trigger():
    assert A.Backdoor(target=3).check(FACTS) == []
    assert "not a class" in A.Backdoor(target=4).check(FACTS)[0]
    assert A.Backdoor(target=0, trigger=T.Pixel(size=9)).check(FACTS) == [
        "backdoor trigger: pixel patch size 9 does not fit inputs of 8 x 8 pixels"]
    assert A.Backdoor(target=0, trigger=T.DBA(size=2, parts=5)).check(FACTS) == [
        "backdoor trigger: dba cannot split a patch of 4 pixels into 5 parts"]
    assert A.Neurotoxin(target=0, trigger=T.Pixel(size=9)).check(FACTS)[0].startswith("neurotoxin trigger: ")
    assert A.Backdoor(target=0, trigger=T.Blend()).check(FACTS) == []
    strip = Facts(10, 5, 4, (10,))
    assert A.Backdoor(target=0).check(strip) == [] and A.Backdoor(target=0, trigger=T.Pixel(size=11)).check(strip)


def test_backdoor_boost_scales_own_rows_only_when_asked():
    assert not A.Backdoor(target=0).poisons_updates and A.Backdoor(target=0).poisons_data
    updates, own, benign = matrix()
    out = attack_rows(A.Backdoor(target=0, boost=4.0), updates, own, benign)
    np.testing.assert_allclose(out[own], 4.0 * updates[own])


# ---------------------------------------------------------------- label flip, registration


def test_label_flip_metrics_source_recall_and_flip_rate():
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.array([2, 2, 2, 2, 0, 0, 1, 1, 3, 3], np.int32)
    predictions = np.array([2, 1, 1, 0, 1, 1, 1, 1, 1, 3])

    def predict(inputs):
        return np.eye(4)[predictions[inputs[:, 0].astype(int)]]

    found = A.LabelFlip(source=2, target=1).test_metrics(predict, x, y, FACTS)
    assert found == {"source_recall": pytest.approx(0.25), "flip_rate": pytest.approx(0.5)}
    all_to_one = A.LabelFlip(mode="all_to_one", target=1).test_metrics(predict, x, y, FACTS)
    assert all_to_one == {"flip_rate": pytest.approx(5 / 8)}
    assert A.LabelFlip(mode="random").test_metrics(predict, x, y, FACTS) == {}


def test_every_attack_is_registered():
    from fedarena.core.plugin.registry import default_registry

    names = set(default_registry().names("attack"))
    assert {"label_flip", "backdoor", "neurotoxin", "edge_case", "sign_flip", "gaussian", "scaling", "alie", "ipm",
            "fang_krum", "fang_trim", "min_max", "min_sum"} <= names


# ---------------------------------------------------------------- inside the TFF round


def test_update_attacks_act_in_the_tff_server_stage_on_malicious_rows_only(tff_context):
    from conftest import tiny_scenario
    from fedarena.core.scenario.sweep import check
    from fedarena.core.execution.engine.run import Run
    from fedarena.core.language.parser import parse
    from fedarena.core.plugin.registry import default_registry

    def first_round(attack):
        text = tiny_scenario(rounds=1, attack=f"  attack {attack} {{\n    clients 2\n  }}\n")
        return next(Run(check(parse(text, "t.fls"), default_registry())).rounds()).clients

    one = first_round('sign_flip(variant = "scaled", scale = 1.0)')
    three = first_round('sign_flip(variant = "scaled", scale = 3.0)')
    bad = one["malicious"]
    assert bad.any() and (three["malicious"] == bad).all()
    np.testing.assert_allclose(three["update_norm"][bad], 3 * one["update_norm"][bad], rtol=1e-5)
    np.testing.assert_array_equal(three["update_norm"][~bad], one["update_norm"][~bad])
    fang = first_round("fang_krum")
    np.testing.assert_array_equal(fang["update_norm"][~bad], one["update_norm"][~bad])
    toxin = first_round('neurotoxin(target = 0, knowledge = "omniscient", ratio = 0.5)')
    assert toxin["malicious"][bad].all() and np.isfinite(toxin["update_norm"]).all()
