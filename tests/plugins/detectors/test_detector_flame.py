"""FLAME: its clustering against scikit-learn's HDBSCAN, planted sybils, clipping and noise, rows dropped earlier."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.cluster import HDBSCAN

from fedarena.plugins.detectors import flame as D

from detector_harness import (
    DIM, FACTS, MLP_LAYERS, SOURCE, SOURCE_COLUMNS, auror_case, check_registers,
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision,
    check_runs_on_empty_all_dropped_and_single_row_rounds, diverse_sybil_case, flip_case, layers_for, outlier_case, run,
    sybil_case,
)


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


@pytest.mark.parametrize("seed", range(3))
def test_flame_drops_planted_sybils_and_keeps_the_benign(seed):
    updates = sybil_case(seed)
    _, _, kept, _ = run(D.Flame(), updates, layers=layers_for(60))
    assert not kept[8:].any()
    # HDBSCAN (min_samples 1, single cluster) labels as members only the
    # points inside the first component of n // 2 + 1 points to form, so
    # FLAME keeps at least that many benign rows, often not all of them.
    assert kept[:8].sum() >= 11 // 2 + 1


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


def test_flame_scales_exactly_with_huge_rows():
    # Rows times a power of two (at 2^110 squares overflow float32, at 2^120
    # the longest norm is past 2^128): the clipping and the noise scale
    # exactly, the decisions and scores do not change.
    updates = sybil_case(seed=3)
    updates[8:] *= 5
    flame = D.Flame(noise_lambda=0.01)
    plain, plain_score, plain_kept, _ = run(flame, updates, layers=layers_for(60))
    assert 0 < plain_kept.sum() < len(updates) and (plain != updates).any()
    for exponent in (110, 120):
        scale = np.float32(2.0 ** exponent)
        out, score, kept, _ = run(flame, updates * scale, layers=layers_for(60))
        with np.errstate(over="ignore"):
            assert not np.isfinite(np.linalg.norm(updates * scale, axis=1)).all()
        np.testing.assert_array_equal(kept, plain_kept)
        np.testing.assert_array_equal(score, plain_score)
        np.testing.assert_array_equal(out, plain * scale)


def test_rows_dropped_earlier_stay_dropped_and_change_no_decision():
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision(D.Flame(), lambda: sybil_case(seed=4), layers_for(60))


def test_runs_on_empty_all_dropped_and_single_row_rounds():
    check_runs_on_empty_all_dropped_and_single_row_rounds(D.Flame(), lambda: sybil_case(seed=4), layers_for(60))


def test_registration():
    check_registers(D, "flame", D.Flame)
