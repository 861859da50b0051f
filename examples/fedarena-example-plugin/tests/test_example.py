"""The example plugin tested with fedarena's pytest fixtures."""

import numpy as np
import tensorflow as tf

import fedarena_example
from fedarena_example import ClippedMean, Shift


def test_shift_moves_only_the_attackers_rows(fedarena_server_context):
    updates = np.zeros((3, 2), np.float32)
    ctx = fedarena_server_context(updates)
    own = tf.constant([False, True, False])
    out = Shift(amount=2.0).poison_updates(tf.constant(updates), own, ~own, ctx).numpy()
    assert out.tolist() == [[0, 0], [2, 2], [0, 0]]


def test_clipped_mean_bounds_each_update(fedarena_server_context):
    updates = np.array([[3.0, 4.0], [0.3, 0.4]], np.float32)
    aggregate, _ = ClippedMean(bound=1.0).aggregate(tf.constant(updates), tf.ones([2]), fedarena_server_context(updates))
    np.testing.assert_allclose(aggregate.numpy(), [0.45, 0.6], rtol=1e-6)


def test_registered_under_its_names(fedarena_registry):
    registry = fedarena_registry(fedarena_example)
    assert registry.get("attack", "shift").cls is Shift
    assert registry.get("aggregator", "clipped_mean").cls is ClippedMean
