"""Bulyan (El Mhamdi et al. 2018): theta = n - 2f by repeated Krum, then per
coordinate the beta = n - 4f values nearest the median."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.plugins import _tensor
from fedarena.plugins.aggregators.bulyan import Bulyan

from aggregator_helpers import facts_with, ref_bulyan, run, sample_updates

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
        got = _tensor.mean_closest_to_median(tf.constant(columns), beta).numpy()
        for row, value in zip(columns, got):
            distance = np.abs(row - np.median(row))
            radius = np.sort(distance)[beta - 1]
            inside, edge = row[distance < radius], row[distance == radius]
            expected = (inside.sum() + (beta - len(inside)) * edge.mean()) / beta
            assert value == pytest.approx(expected, abs=1e-6), (row, beta)
    # A tie across the median: 0 and 2 are both 1 from the median 1 and one
    # place is left, so each counts for half of it, whatever the row order.
    for row in ([0.0, 1.0, 2.0, 1.0, 9.0], [2.0, 9.0, 1.0, 0.0, 1.0]):
        assert _tensor.mean_closest_to_median(tf.constant([row]), 3).numpy()[0] == pytest.approx((1 + 1 + 1) / 3)
    assert _tensor.mean_closest_to_median(tf.constant([[0.0, 1.0, 2.0, 1.0, 9.0]]), 4).numpy()[0] == pytest.approx(1.0)


def test_bulyan_check_messages():
    assert Bulyan(f=2).check(facts_with(10)) == [
        "bulyan needs clients_per_round >= 4f + 3 (here 10 < 4*2 + 3); lower f or sample more clients"]
    assert Bulyan(f=2).check(facts_with(11)) == []
