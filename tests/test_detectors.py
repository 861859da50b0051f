"""Detectors on hand-made update matrices: FLAME's clustering against
scikit-learn's HDBSCAN, planted sybils and outliers, state across rounds,
rows dropped earlier, and every detector traced with the number of rows
unknown (``[None, d]``), as in the engine's server stage."""

import attrs
import numpy as np
import pytest
import tensorflow as tf
from sklearn.cluster import HDBSCAN

from fedarena.core.plugin.interfaces import Facts, Layer, ServerContext
from fedarena.plugins import detectors as D

FACTS = Facts(num_clients=20, clients_per_round=12, num_classes=3, input_shape=(4,))
# A small MLP's layers: hidden kernel [4, 6], bias [6], output kernel [6, 3], bias [3].
MLP_LAYERS = (
    Layer("dense/kernel:0", (4, 6), 0),
    Layer("dense/bias:0", (6,), 24),
    Layer("dense_1/kernel:0", (6, 3), 30),
    Layer("dense_1/bias:0", (3,), 48),
)
DIM = 51
SOURCE = 1
SOURCE_COLUMNS = np.array([31, 34, 37, 40, 43, 46, 49])  # column 1 of the output kernel, then its bias


# --------------------------------------------------------------------------
# Running a detector as the engine does: in a traced function, K unknown
# --------------------------------------------------------------------------

_traced = {}


def _step(detector, dim, layers, facts):
    key = (detector, dim, layers, facts)
    if key not in _traced:
        initial = detector.initial_state(dim, facts)
        state_spec = {k: tf.TensorSpec(v.shape, tf.as_dtype(v.dtype)) for k, v in initial.items()}

        @tf.function(input_signature=[
            tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.bool), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([], tf.int32), state_spec,
        ])
        def step(updates, keep, ids, round_number, state):
            ctx = ServerContext(
                facts=facts, layers=layers, client_ids=ids, num_examples=tf.ones_like(updates[:, 0]),
                global_weights=tf.zeros([dim]), round=round_number,
                seed=tf.stack([tf.constant(7, tf.int64), -tf.cast(round_number, tf.int64)]),
            )
            out = detector.detect_with_state(updates, keep, ctx, dict(state))
            # The engine's shapes: [K, d] updates, [K] score and keep.
            assert out[0].shape.as_list() == [None, dim]
            assert out[1].shape.as_list() == [None] and out[2].shape.as_list() == [None]
            return out

        _traced[key] = step
    return _traced[key]


def run(detector, updates, keep=None, ids=None, state=None, layers=MLP_LAYERS, facts=FACTS, round_number=1):
    """(updates, score, keep, state) as NumPy."""
    updates = np.asarray(updates, np.float32)
    size, dim = updates.shape
    keep = np.ones(size, bool) if keep is None else np.asarray(keep, bool)
    ids = np.arange(size, dtype=np.int32) if ids is None else np.asarray(ids, np.int32)
    state = detector.initial_state(dim, facts) if state is None else state
    out = _step(detector, dim, layers, facts)(updates, keep, ids, np.int32(round_number), state)
    new_updates, score, kept, new_state = out
    return (new_updates.numpy(), score.numpy(), kept.numpy(), {k: v.numpy() for k, v in new_state.items()})


def layers_for(dim):
    return (Layer("dense/kernel:0", (dim,), 0),)


# --------------------------------------------------------------------------
# Hand-made rounds
# --------------------------------------------------------------------------


def sybil_case(seed=0, benign=8, sybils=3, dim=60):
    """Benign updates sharing a direction plus their own noise (pairwise
    cosine about 0.5), and near-identical sybils pointing elsewhere; the
    sybils are the last rows."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=dim)
    shared /= np.linalg.norm(shared)
    rows = shared + rng.normal(size=(benign, dim)) / np.sqrt(dim)
    rows *= rng.uniform(0.5, 2.0, size=(benign, 1))
    target = rng.normal(size=dim)
    target /= np.linalg.norm(target)
    fakes = target + 1e-3 * rng.normal(size=(sybils, dim))
    return np.concatenate([rows, fakes]).astype(np.float32)


def diverse_sybil_case(seed=0, benign=8, sybils=3, dim=60):
    """Benign updates in unrelated directions and near-identical sybils (last)."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(benign, dim))
    fakes = rng.normal(size=dim) + 1e-3 * rng.normal(size=(sybils, dim))
    return np.concatenate([rows, fakes]).astype(np.float32)


def flip_case(seed=0, benign=10, flipped=3, noisy_other_columns=False):
    """Updates of the 51-parameter MLP; flipped clients (the last rows) push
    the source class's output parameters the other way."""
    rng = np.random.default_rng(seed)
    rows = 0.1 * rng.normal(size=(benign + flipped, DIM))
    push = rng.uniform(0.5, 1.0, size=len(SOURCE_COLUMNS))
    rows[:benign, SOURCE_COLUMNS] += push
    rows[benign:, SOURCE_COLUMNS] -= push
    if noisy_other_columns:  # big, unrelated differences elsewhere must not matter
        other = np.setdiff1d(np.arange(DIM), SOURCE_COLUMNS)
        rows[:3, other] += 5.0 * rng.normal(size=(3, len(other)))
    return rows.astype(np.float32)


def outlier_case(seed=0, rows=12, dim=30):
    """Benign updates around one direction with norms near 1; the last row is
    the planted outlier (returned separately: long, or pointing elsewhere)."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    benign = direction + 0.3 * rng.normal(size=(rows, dim)) / np.sqrt(dim)
    benign *= rng.uniform(0.9, 1.1, size=(rows, 1)) / np.linalg.norm(benign, axis=1, keepdims=True)
    long = 10.0 * benign[0]
    away = -direction + 0.3 * rng.normal(size=dim) / np.sqrt(dim)
    return benign.astype(np.float32), long.astype(np.float32), away.astype(np.float32)


def auror_case(seed=0, benign=10, attackers=3, dim=40):
    rng = np.random.default_rng(seed)
    rows = 0.002 * rng.normal(size=(benign + attackers, dim))
    rows[benign:, :5] += 0.05
    return rows.astype(np.float32)


# --------------------------------------------------------------------------
# FLAME's HDBSCAN against scikit-learn
# --------------------------------------------------------------------------


@tf.function(input_signature=[tf.TensorSpec([None, None], tf.float64), tf.TensorSpec([], tf.int32)])
def tf_hdbscan(distance, min_cluster_size):
    return D.hdbscan_single_cluster(distance, min_cluster_size)


def sklearn_members(distance, min_cluster_size):
    labels = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=1, allow_single_cluster=True,
                     metric="precomputed").fit(distance.copy()).labels_
    assert labels.max() <= 0, "more than one cluster: the case is outside FLAME's 2m > n"
    return labels == 0


def structured_distances(rng, n, kind):
    """Clusters plus outliers in 6 dimensions, as Euclidean or cosine
    distances; 'tied' and 'duplicates' round them to create many equal
    distances and exact zeros."""
    centres = rng.normal(size=(int(rng.integers(1, 4)), 6)) * 3
    points = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, 6)) * rng.uniform(0.1, 1.0)
    outliers = rng.random(n) < 0.25
    points[outliers] = 10 * rng.normal(size=(outliers.sum(), 6))
    if kind == "cosine":
        unit = points / np.linalg.norm(points, axis=1, keepdims=True)
        distance = np.maximum(1 - unit @ unit.T, 0)
        distance = (distance + distance.T) / 2
    else:
        distance = np.linalg.norm(points[:, None] - points[None], axis=2)
        if kind == "tied":
            distance = np.round(distance)
        elif kind == "duplicates":
            distance = np.round(distance * 2) / 2
            distance[distance < 1] = 0
    np.fill_diagonal(distance, 0)
    return distance


def test_flame_members_equal_sklearn_hdbscan_on_random_and_structured_cases():
    checked, partial, tied = 0, 0, 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        for kind in ("euclidean", "cosine", "tied", "duplicates"):
            n = int(rng.integers(5, 41))
            distance = structured_distances(rng, n, kind)
            for fraction in (0.5, 0.6, 0.75):
                m = int(np.floor(fraction * n)) + 1
                expected = sklearn_members(distance, m)
                members, outside = tf_hdbscan(distance, m)
                assert members.numpy().tolist() == expected.tolist(), (seed, kind, n, m)
                assert (outside.numpy()[expected] == 0).all() and (outside.numpy()[~expected] > 0).all() or kind in (
                    "tied", "duplicates")
                checked += 1
                partial += 0 < expected.sum() < n
                tied += len(np.unique(distance)) < n * (n - 1) / 2 + 1
    # The cases must exercise real decisions, with and without ties.
    assert checked == 360 and partial > 200 and tied > 100


def test_flame_members_equal_sklearn_on_small_and_degenerate_matrices():
    for n in range(2, 8):
        for distance in (np.zeros([n, n]), 1.0 - np.eye(n), np.abs(np.arange(n)[:, None] - np.arange(n)[None]) * 1.0):
            m = n // 2 + 1
            expected = sklearn_members(distance, m)
            assert tf_hdbscan(distance, m)[0].numpy().tolist() == expected.tolist(), (n, distance)
    members, outside = tf_hdbscan(np.zeros([1, 1]), 1)
    assert members.numpy().tolist() == [True] and outside.numpy().tolist() == [0.0]
    members, _ = tf_hdbscan(np.zeros([0, 0]), 1)
    assert members.shape == (0,)


def test_flame_score_is_the_minimax_distance_to_the_members():
    rng = np.random.default_rng(3)
    for _ in range(5):
        distance = structured_distances(rng, 25, "euclidean")
        members, outside = (t.numpy() for t in tf_hdbscan(distance, 13))
        minimax = distance.copy()
        for k in range(len(minimax)):  # Floyd-Warshall for bottleneck paths
            minimax = np.minimum(minimax, np.maximum(minimax[:, k:k + 1], minimax[k:k + 1, :]))
        np.testing.assert_allclose(outside, minimax[:, members].min(axis=1))


def test_flame_detector_keeps_exactly_sklearns_cluster_of_the_kept_rows():
    for seed in range(6):
        rng = np.random.default_rng(seed)
        updates = np.concatenate([sybil_case(seed, benign=9, sybils=4), rng.normal(size=(3, 60))]).astype(np.float32)
        keep = rng.random(len(updates)) > 0.2
        flame = D.Flame(noise_lambda=0.0)
        _, score, kept, _ = run(flame, updates, keep, layers=layers_for(60))
        distance = D.cosine_distances(tf.constant(updates[keep])).numpy()
        expected = np.zeros(len(updates), bool)
        expected[np.flatnonzero(keep)] = sklearn_members(distance, keep.sum() // 2 + 1)
        assert kept.tolist() == expected.tolist()
        assert np.isnan(score[~keep]).all() and (score[kept] == 0).all() and (score[keep & ~kept] > 0).all()


# --------------------------------------------------------------------------
# FLAME, FoolsGold, CONTRA on sybils
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_flame_drops_planted_sybils_and_keeps_the_benign(seed):
    updates = sybil_case(seed)
    _, _, kept, _ = run(D.Flame(), updates, layers=layers_for(60))
    assert not kept[8:].any()
    # HDBSCAN (min_samples 1, single cluster) labels as members only the
    # points inside the first component of n // 2 + 1 points to form, so
    # FLAME keeps at least that many benign rows, often not all of them.
    assert kept[:8].sum() >= 11 // 2 + 1


@pytest.mark.parametrize("case", [sybil_case, diverse_sybil_case])
def test_foolsgold_drops_planted_sybils_and_keeps_the_benign(case):
    updates = case(seed=1)
    _, score, kept, state = run(D.FoolsGold(), updates, layers=layers_for(60))
    assert kept.tolist() == [True] * 8 + [False] * 3
    assert (score[:8] > 0.5).all() and (score[8:] == 0).all()
    np.testing.assert_allclose(state["history"][:11], updates)
    assert (state["history"][11:] == 0).all()


def test_foolsgold_weights_follow_the_authors_formula():
    rng = np.random.default_rng(5)
    grads = rng.normal(size=(7, 12))
    grads[5] = grads[4] + 0.3 * rng.normal(size=12)
    grads[6] = grads[4] + 1.5 * rng.normal(size=12)  # close to a sybil: pardoning matters
    kappa = 0.1  # keeps the logits below 1, so the comparison sees every step (the 0.99 cap too)
    # The authors' NumPy steps, written out.
    unit = grads / np.linalg.norm(grads, axis=1, keepdims=True)
    cs = unit @ unit.T - np.eye(7)
    top = cs.max(axis=1)
    for i in range(7):
        for j in range(7):
            if i != j and top[i] < top[j]:
                cs[i, j] *= top[i] / top[j]
    weight = np.clip(1 - cs.max(axis=1), 0, 1)
    weight /= weight.max()
    weight[weight == 1] = 0.99
    with np.errstate(divide="ignore"):
        weight = np.clip(kappa * (np.log(weight / (1 - weight)) + 0.5), 0, 1)
    assert len(np.unique(weight)) >= 5
    np.testing.assert_allclose(D.foolsgold_weights(tf.constant(grads, tf.float32), kappa).numpy(), weight, atol=1e-5)


def test_foolsgold_history_carries_over_rounds_through_the_state():
    rng = np.random.default_rng(2)
    detector = D.FoolsGold()
    # Round 1: clients 3 and 4 send the same large update; both are dropped.
    first = rng.normal(size=(6, 60)).astype(np.float32)
    first[4] = first[3]
    first[3:5] *= 10
    _, _, kept, state = run(detector, first, ids=[0, 1, 2, 3, 4, 5], layers=layers_for(60))
    assert kept.tolist() == [True, True, True, False, False, True]
    # Round 2: they send unrelated small updates, among other clients.
    second = rng.normal(size=(5, 60)).astype(np.float32)
    ids = [4, 7, 3, 9, 0]
    _, _, with_history, new_state = run(detector, second, ids=ids, state=state, round_number=2,
                                        layers=layers_for(60))
    _, _, fresh, _ = run(detector, second, ids=ids, round_number=2, layers=layers_for(60))
    assert fresh.all(), "alone, round 2 is innocent"
    assert with_history.tolist() == [False, True, False, True, True], "their history still gives them away"
    np.testing.assert_allclose(new_state["history"][3], first[3] + second[2], rtol=1e-6)
    np.testing.assert_allclose(new_state["history"][7], second[1])
    np.testing.assert_allclose(new_state["history"][1], state["history"][1])


def test_contra_reputation_falls_round_after_round_for_colluders_until_dropped():
    detector = D.Contra(k=2, delta=0.1, threshold=0.5, min_reputation=0.5)
    state = detector.initial_state(60, FACTS)
    rng = np.random.default_rng(4)
    history = []
    for round_number in range(1, 9):
        updates = diverse_sybil_case(seed=round_number)  # colluders: rows 8-10
        ids = np.array([0, 1, 2, 3, 4, 5, 6, 7, 17, 18, 19])
        order = rng.permutation(len(ids))
        _, score, kept, state = run(detector, updates[order], ids=ids[order], state=state,
                                    round_number=round_number, layers=layers_for(60))
        back = np.argsort(order)
        score, kept = score[back], kept[back]
        history.append(state["reputation"][[0, 17]].copy())
        assert (score[:8] == 1.0).all() and kept[:8].all()
        np.testing.assert_allclose(score[8:], max(0.0, 1 - 0.1 * round_number), atol=1e-5)
        # Dropped once the reputation falls below 1/2: from round 6 on.
        assert kept[8:].tolist() == [round_number < 6] * 3, round_number
    assert [h[1] for h in history] == sorted((h[1] for h in history), reverse=True)
    assert state["reputation"][8:17].tolist() == [1.0] * 9, "clients that never took part keep their reputation"


def test_contra_top_k_mean_similarity():
    x = tf.constant([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    np.testing.assert_allclose(D.top_k_mean_similarity(x, 2).numpy(), [0.5, 0.5, 0.0, -0.5], atol=1e-6)
    np.testing.assert_allclose(D.top_k_mean_similarity(x, 9).numpy(), [0.0, 0.0, 0.0, -2 / 3], atol=1e-6)
    assert D.top_k_mean_similarity(x[:1], 2).numpy().tolist() == [0.0]


# --------------------------------------------------------------------------
# FLAME's clipping and noise
# --------------------------------------------------------------------------


def test_flame_clips_accepted_rows_to_the_median_norm_of_all_kept_rows():
    updates = sybil_case(seed=3)
    updates[8:] *= 50  # long sybils raise the median only a little; they are dropped anyway
    keep = np.ones(11, bool)
    keep[0] = False
    out, _, kept, _ = run(D.Flame(noise_lambda=0.0), updates, keep, layers=layers_for(60))
    norms = np.linalg.norm(updates, axis=1)
    bound = np.median(norms[keep])
    assert kept[1:8].all() and not kept[8:].any() and not kept[0]
    out_norms = np.linalg.norm(out, axis=1)
    assert (out_norms[kept] <= bound * (1 + 1e-5)).all()
    long = kept & (norms > bound)
    assert long.any()
    np.testing.assert_allclose(out_norms[long], bound, rtol=1e-5)
    short = kept & (norms <= bound)
    np.testing.assert_array_equal(out[short], updates[short])
    np.testing.assert_array_equal(out[~kept], updates[~kept])


def test_flame_adds_one_noise_vector_of_std_lambda_times_the_median_norm():
    rng = np.random.default_rng(8)
    dim = 4000
    shared = rng.normal(size=dim)
    updates = (shared + rng.normal(size=(9, dim))).astype(np.float32)
    clean, _, kept, _ = run(D.Flame(noise_lambda=0.0), updates, layers=layers_for(dim))
    noisy, _, kept_noisy, _ = run(D.Flame(noise_lambda=0.01), updates, layers=layers_for(dim))
    again, _, _, _ = run(D.Flame(noise_lambda=0.01), updates, layers=layers_for(dim))
    assert kept.tolist() == kept_noisy.tolist() and kept.sum() >= 9 // 2 + 1
    np.testing.assert_array_equal(noisy[~kept], updates[~kept])
    noise = (noisy - clean)[kept]
    np.testing.assert_allclose(noise, np.broadcast_to(noise[0], noise.shape), atol=1e-4)
    bound = np.median(np.linalg.norm(updates, axis=1))
    assert abs(noise[0].std() / (0.01 * bound) - 1) < 0.05
    np.testing.assert_array_equal(noisy, again)  # the round's seed decides the noise
    other_round = run(D.Flame(noise_lambda=0.01), updates, layers=layers_for(dim), round_number=2)[0]
    assert not np.allclose(other_round[kept], noisy[kept])


# --------------------------------------------------------------------------
# Robust z-score outliers
# --------------------------------------------------------------------------


def test_norm_outlier_flags_the_planted_long_update_only():
    benign, long, away = outlier_case()
    updates = np.concatenate([benign, [long], [away]])
    _, score, kept, _ = run(D.NormOutlier(), updates, layers=layers_for(30))
    assert kept.tolist() == [True] * 12 + [False, True]
    assert score[12] > 3.5 and (np.abs(score[:12]) <= 3.5).all()


def test_cosine_outlier_flags_the_planted_update_pointing_away_only():
    benign, long, away = outlier_case(seed=1)
    updates = np.concatenate([benign, [long], [away]])
    _, score, kept, _ = run(D.CosineOutlier(), updates, layers=layers_for(30))
    assert kept.tolist() == [True] * 13 + [False]
    assert score[13] < -3.5


def test_robust_z_is_iglewicz_hoaglins_modified_z_score():
    values = np.array([1.0, 2.0, 2.5, 3.0, 40.0], np.float32)
    deviation = np.abs(values - 2.5)
    expected = 0.6745 * (values - 2.5) / np.median(deviation)
    np.testing.assert_allclose(D.robust_z(tf.constant(values)).numpy(), expected, rtol=1e-6)
    # More than half equal (MAD 0): the mean absolute deviation stands in.
    values = np.array([1.0, 1.0, 1.0, 1.0, 5.0], np.float32)
    np.testing.assert_allclose(D.robust_z(tf.constant(values)).numpy(), [0, 0, 0, 0, 4 / (1.253314 * 0.8)],
                               rtol=1e-6)
    assert D.robust_z(tf.constant([2.0, 2.0])).numpy().tolist() == [0.0, 0.0]


def test_median_matches_numpy_along_either_axis_and_is_zero_when_empty():
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    np.testing.assert_allclose(D.median(x, axis=0).numpy(), np.median(x, axis=0), rtol=1e-6)
    np.testing.assert_allclose(D.median(x[:5], axis=0).numpy(), np.median(x[:5], axis=0), rtol=1e-6)
    np.testing.assert_allclose(D.median(x[0]).numpy(), np.median(x[0]), rtol=1e-6)
    assert D.median(tf.zeros([0])).numpy() == 0.0


# --------------------------------------------------------------------------
# Tolpegin's PCA, Auror
# --------------------------------------------------------------------------


def test_class_columns_are_the_source_column_of_the_last_kernel_and_its_bias():
    assert D.class_columns(MLP_LAYERS, 3, SOURCE).tolist() == SOURCE_COLUMNS.tolist()
    # Flattened row-major, as the engine flattens a [6, 3] kernel.
    kernel = np.arange(18).reshape(6, 3)
    assert (D.class_columns(MLP_LAYERS, 3, 2)[:-1] - 30).tolist() == kernel[:, 2].tolist()
    assert D.class_columns(MLP_LAYERS, 3, 0, names=("dense_1/kernel",)).tolist() == list(range(30, 48, 3))
    with pytest.raises(ValueError, match="no 2-D output kernel"):
        D.class_columns(MLP_LAYERS, 5, 0)


@pytest.mark.parametrize("noisy", [False, True])
def test_label_flip_pca_separates_the_flipped_clients(noisy):
    updates = flip_case(seed=2, noisy_other_columns=noisy)
    _, score, kept, _ = run(D.LabelFlipPCA(source=SOURCE), updates)
    assert kept.tolist() == [True] * 10 + [False] * 3
    assert score[10:].min() > score[:10].max()


def test_label_flip_pca_drops_no_one_without_flipping():
    for seed in range(8):
        rng = np.random.default_rng(seed)
        updates = rng.normal(size=(12, DIM)).astype(np.float32)
        assert run(D.LabelFlipPCA(source=SOURCE), updates)[2].all(), seed


def test_label_flip_pca_checks_the_source_class_exists():
    assert D.LabelFlipPCA(source=2).check(FACTS) == []
    assert "does not exist" in D.LabelFlipPCA(source=3).check(FACTS)[0]


def test_auror_drops_the_planted_group():
    updates = auror_case()
    _, score, kept, _ = run(D.Auror(alpha=0.01), updates, layers=layers_for(40))
    assert kept.tolist() == [True] * 10 + [False] * 3
    assert score[10:].min() > score[:10].max()
    # Benign only: no indicative feature, nothing dropped.
    assert run(D.Auror(alpha=0.01), updates[:10], layers=layers_for(40))[2].all()


def test_column_two_means_gap_is_the_exact_best_split():
    x = np.random.default_rng(1).normal(size=(9, 6)).astype(np.float32)
    expected = []
    for column in x.T:
        values = np.sort(column)
        costs = [((values[:k] - values[:k].mean()) ** 2).sum() + ((values[k:] - values[k:].mean()) ** 2).sum()
                 for k in range(1, len(values))]
        k = int(np.argmin(costs)) + 1
        expected.append(values[k:].mean() - values[:k].mean())
    np.testing.assert_allclose(D.column_two_means_gap(tf.constant(x)).numpy(), expected, rtol=1e-5)


# --------------------------------------------------------------------------
# Every detector: dropped rows, unknown K, degenerate rounds, registration
# --------------------------------------------------------------------------

# Each detector with a round in which it drops something.
CASES = {
    "flame": (D.Flame(), lambda: sybil_case(seed=4), layers_for(60)),
    "foolsgold": (D.FoolsGold(), lambda: diverse_sybil_case(seed=4), layers_for(60)),
    "contra": (D.Contra(min_reputation=0.95), lambda: diverse_sybil_case(seed=4), layers_for(60)),
    "norm_outlier": (D.NormOutlier(), lambda: np.concatenate([outlier_case()[0], [outlier_case()[1]]]),
                     layers_for(30)),
    "cosine_outlier": (D.CosineOutlier(), lambda: np.concatenate([outlier_case()[0], [outlier_case()[2]]]),
                       layers_for(30)),
    "label_flip_pca": (D.LabelFlipPCA(source=SOURCE), lambda: flip_case(seed=4), MLP_LAYERS),
    "auror": (D.Auror(), lambda: auror_case(seed=4), layers_for(40)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rows_dropped_earlier_stay_dropped_and_change_no_decision(name):
    detector, make, layers = CASES[name]
    updates = make()
    size, dim = updates.shape
    base_updates, base_score, base_kept, base_state = run(detector, updates, layers=layers)
    assert 0 < base_kept.sum() < size, "the case must make the detector drop something"
    # Three junk rows (huge, two identical) marked as dropped, among the real ones.
    rng = np.random.default_rng(9)
    junk = 1e3 * rng.normal(size=(3, dim)).astype(np.float32)
    junk[1] = junk[0]
    at = [0, size // 2, size]
    mixed = np.insert(updates, at, junk, axis=0)
    keep = np.insert(np.ones(size, bool), at, False)
    ids = np.insert(np.arange(size), at, [15, 16, 17])
    real = keep.copy()
    out_updates, score, kept, state = run(detector, mixed, keep, ids, layers=layers)
    assert not kept[~real].any()
    assert np.isnan(score[~real]).all()
    np.testing.assert_array_equal(out_updates[~real], junk)
    assert kept[real].tolist() == base_kept.tolist()
    np.testing.assert_allclose(score[real], base_score, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_updates[real], base_updates, rtol=1e-5, atol=1e-6)
    initial = detector.initial_state(dim, FACTS)
    for key, value in state.items():
        np.testing.assert_array_equal(value[15:18], initial[key][15:18])
        np.testing.assert_allclose(value, base_state[key], rtol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_detector_runs_on_empty_all_dropped_and_single_row_rounds(name):
    detector, make, layers = CASES[name]
    dim = make().shape[1]
    out, score, kept, _ = run(detector, np.zeros([0, dim]), layers=layers)
    assert out.shape == (0, dim) and score.shape == (0,) and kept.shape == (0,)
    rows = make()[:4]
    out, score, kept, _ = run(detector, rows, keep=np.zeros(4, bool), layers=layers)
    assert not kept.any() and np.isnan(score).all()
    np.testing.assert_array_equal(out, rows)
    out, score, kept, _ = run(detector, rows[:1], layers=layers)
    assert kept.tolist() == [True] and np.isfinite(score).all()


def test_layers_restrict_the_columns_a_detector_looks_at():
    benign, long, _ = outlier_case()
    updates = np.concatenate([benign, [long]])
    wide = np.concatenate([np.zeros_like(updates), updates], axis=1)  # the signal sits in the second layer
    layers = (Layer("first/kernel:0", (30,), 0), Layer("second/kernel:0", (30,), 30))
    assert run(D.NormOutlier(layers=("second",)), wide, layers=layers)[2].tolist() == [True] * 12 + [False]
    assert run(D.NormOutlier(layers=("first",)), wide, layers=layers)[2].all()
    with pytest.raises(ValueError, match="match no layer"):
        run(D.NormOutlier(layers=("third",)), wide, layers=layers)


def test_registration_and_parameter_ranges():
    added = {}

    class Recorder:
        def add(self, name, cls):
            added[name] = cls

    D.fedarena_register_detectors(registry=Recorder())
    assert sorted(added) == ["auror", "contra", "cosine_outlier", "flame", "fldetector", "foolsgold",
                             "label_flip_pca", "norm_outlier"]
    assert all(attrs.has(cls) and issubclass(cls, D.Detector) for cls in added.values())
    assert D.Flame().noise_lambda == 0.001 and D.Flame().min_cluster_fraction == 0.5
    with pytest.raises(ValueError, match="min_cluster_fraction"):
        D.Flame(min_cluster_fraction=0.4)
    with pytest.raises(ValueError, match="confidence"):
        D.FoolsGold(confidence=1.0)
    assert D.NormOutlier().threshold == 3.5 and D.CosineOutlier().threshold == 3.5
    assert D.Flame(layers=["dense_1"]).layers == ("dense_1",)
