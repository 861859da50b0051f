"""Coordinate-wise median (Yin et al. 2018): NumPy's median, per coordinate."""

import numpy as np
import tensorflow as tf

from fedarena.plugins.aggregators.median import Median

from aggregator_helpers import FACTS, context, run


def test_median_equals_numpy():
    rng = np.random.default_rng(3)
    for n in (9, 10):
        x = rng.normal(size=(n, 5)).astype(np.float32)
        np.testing.assert_allclose(run(Median(), x)[0], np.median(x, axis=0), rtol=1e-6)


def test_median_on_the_kept_rows_and_through_the_server_stage():
    updates = np.array([[1.0], [2.0], [100.0], [3.0]], np.float32)
    aggregate, share = Median().aggregate(tf.constant(updates[[0, 1, 3]]), tf.ones([3]), context(3))
    assert aggregate.numpy().tolist() == [2.0] and np.allclose(share.numpy(), 1 / 3)
    aggregate, share, _ = run(Median(), updates, [1.0, 1.0, 0.0, 1.0])  # row 2 dropped first
    assert aggregate.tolist() == [2.0]
    assert share[2] == 0 and Median().check(FACTS) == []
