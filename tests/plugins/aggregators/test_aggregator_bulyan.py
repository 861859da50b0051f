"""Bulyan (El Mhamdi et al. 2018): theta = n - 2f by repeated Krum, then per
coordinate the beta = n - 4f values nearest the median."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.plugins import _tensor
from fedarena.plugins.aggregators.bulyan import Bulyan

from aggregator_helpers import context, facts_with, ref_bulyan, run, sample_updates

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
    rng = np.random.default_rng(11)
    for count, beta in [(7, 3), (8, 4), (9, 9), (6, 1)]:
        # Values on a coarse grid: repeated values and ties in distance are common.
        columns = rng.integers(-4, 5, size=(200, count)).astype(np.float32)
        for got in (_tensor.mean_closest_to_median(tf.constant(columns.T), beta).numpy(),
                    _tensor.mean_closest_to_median_by_selection(tf.constant(columns), beta).numpy()):
            for row, value in zip(columns, got):
                distance = np.abs(row - np.median(row))
                radius = np.sort(distance)[beta - 1]
                inside, edge = row[distance < radius], row[distance == radius]
                expected = (inside.sum() + (beta - len(inside)) * edge.mean()) / beta
                assert value == pytest.approx(expected, abs=1e-6), (row, beta)
    # A tie across the median: 0 and 2 are both 1 from the median 1 and one
    # place is left, so each counts for half of it, whatever the row order.
    for row in ([0.0, 1.0, 2.0, 1.0, 9.0], [2.0, 9.0, 1.0, 0.0, 1.0]):
        assert _tensor.mean_closest_to_median(tf.constant(row)[:, None], 3).numpy()[0] == pytest.approx((1 + 1 + 1) / 3)
    assert _tensor.mean_closest_to_median(tf.constant([0.0, 1.0, 2.0, 1.0, 9.0])[:, None], 4).numpy()[0] == \
        pytest.approx(1.0)


@pytest.mark.parametrize("size", list(range(1, 15)))
def test_batcher_network_sorts_every_zero_one_input(size):
    # The 0-1 principle (Knuth, TAOCP 5.3.4): a comparator network that sorts
    # every sequence of zeros and ones sorts every sequence.
    values = ((np.arange(2 ** size)[:, None] >> np.arange(size)) & 1).astype(np.int8)
    for a, b in _tensor.batcher_comparators(size):
        assert a < b < size
        values[:, a], values[:, b] = np.minimum(values[:, a], values[:, b]), np.maximum(values[:, a], values[:, b])
    assert (np.diff(values, axis=1) >= 0).all()


@pytest.mark.parametrize("size", [20, 33, 64, 80, 100, 128])
def test_sorted_columns_sorts_like_numpy_padding_with_inf(size):
    rng = np.random.default_rng(size)
    rows = rng.integers(-5, 6, size=(size, 64)).astype(np.float32)
    rows[:, :32] = rng.normal(size=(size, 32))
    np.testing.assert_array_equal(_tensor.sorted_columns(tf.constant(rows), size).numpy(), np.sort(rows, axis=0))
    padded = tf.function(lambda r: _tensor.sorted_columns(r, size + 3), input_signature=[tf.TensorSpec([None, 64])])
    expected = np.concatenate([np.sort(rows, axis=0), np.full((3, 64), np.inf, np.float32)])
    np.testing.assert_array_equal(padded(tf.constant(rows)).numpy(), expected)


def test_sorting_and_selection_give_the_same_coordinate_step_bit_for_bit():
    # Small integers: many repeated values and ties in distance on both sides
    # of the median, odd and even counts, every beta; sums of small integers
    # are exact, so any difference in which values count would show.
    rng = np.random.default_rng(5)
    by_sorting = tf.function(lambda rows, beta, bound: _tensor.mean_closest_to_median(rows, beta, bound),
                             reduce_retracing=True)
    for count in range(1, 18):
        for beta in range(1, count + 1):
            rows = rng.integers(-3, 4, size=(count, 120)).astype(np.float32)
            rows[:, :20] *= 0.5  # halves: more ties in distance across the median
            expected = _tensor.mean_closest_to_median_by_selection(tf.constant(rows.T), beta).numpy()
            # Eager, rows of static count: the sorting network of that size.
            np.testing.assert_array_equal(_tensor.mean_closest_to_median(tf.constant(rows), beta).numpy(), expected)
            # In a graph, rows of unknown count under a larger bound (padded
            # with +inf), and over a smaller one (the selection instead).
            unknown = tf.TensorSpec([None, 120])
            for bound in (count + 5, max(count - 1, 1)):
                got = by_sorting.get_concrete_function(unknown, tf.TensorSpec([], tf.int32), bound)
                np.testing.assert_array_equal(got(tf.constant(rows), tf.constant(beta)).numpy(), expected)


def test_bulyan_with_rows_dropped_in_a_graph_sorts_under_the_round_bound():
    # As the server stage runs it: the kept rows' count is known only when the
    # graph runs; the sorting network is sized for clients_per_round.
    from fedarena.core.execution.engine.computations import aggregate_kept

    x = sample_updates(8, k=12, d=40)
    weights = np.ones(12, np.float32)
    weights[[3, 7]] = 0.0  # two rows dropped by a detector: n = 10, theta = 8 of at most 10
    rule = Bulyan(f=1)
    ctx = context(12)
    graph = tf.function(lambda rows, w: aggregate_kept(rule, rows, w, ctx, {})[:2],
                        input_signature=[tf.TensorSpec([12, 40]), tf.TensorSpec([12])])
    aggregate, share = (t.numpy() for t in graph(tf.constant(x), tf.constant(weights)))
    kept = np.flatnonzero(weights)
    expected, chosen = ref_bulyan(x[kept], 1)
    np.testing.assert_allclose(aggregate, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(share[kept], np.isin(np.arange(10), chosen) / 8)
    assert share[3] == share[7] == 0.0


def test_bulyan_check_messages():
    assert Bulyan(f=2).check(facts_with(10)) == [
        "bulyan needs clients_per_round >= 4f + 3 (here 10 < 4*2 + 3); lower f or sample more clients"]
    assert Bulyan(f=2).check(facts_with(11)) == []
