"""FedAvg: the example-weighted mean."""

import numpy as np
import tensorflow as tf

from fedarena.plugins.aggregators.fedavg import FedAvg, fedavg

from aggregator_helpers import run, sample_updates


def test_fedavg_weights_by_examples():
    aggregate, share = fedavg(tf.constant([[1.0, 0.0], [0.0, 1.0]]), tf.constant([1.0, 3.0]))
    np.testing.assert_allclose(aggregate.numpy(), [0.25, 0.75])
    np.testing.assert_allclose(share.numpy(), [0.25, 0.75])


def test_fedavg_is_the_weighted_mean_of_the_kept_rows():
    x = sample_updates(3, k=6)
    w = np.array([1.0, 5.0, 0.0, 2.0, 2.0, 3.0])
    aggregate, share, _ = run(FedAvg(), x, w)
    np.testing.assert_allclose(aggregate, w @ x / w.sum(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(share, w / w.sum(), rtol=1e-6)
