"""FLTrust (Cao et al. 2021): trust ReLU(cos(g_i, g0)), rows rescaled to
||g0||, the trust-weighted mean."""

import attrs
import numpy as np
import tensorflow as tf

from fedarena.plugins.aggregators.fltrust import FLTrust

from aggregator_helpers import D, layered_context, run


def test_fltrust_trusts_by_cosine_to_the_root_update_and_rescales_to_its_norm(fedarena_server_context):
    updates = np.array([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0]], np.float32)
    ctx = attrs.evolve(fedarena_server_context(updates), root_update=tf.constant([1.0, 1.0]))
    aggregate, share = FLTrust().aggregate(tf.constant(updates), tf.ones([3]), ctx)
    # cos = 1/sqrt2 for the first two, negative (trust 0) for the third; each
    # trusted row is rescaled to ||g0|| = sqrt2, then the trust-weighted mean.
    np.testing.assert_allclose(share.numpy(), [0.5, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(aggregate.numpy(), [np.sqrt(2) / 2, np.sqrt(2) / 2], rtol=1e-5)
    all_against = attrs.evolve(ctx.take(tf.constant([0, 1])), root_update=tf.constant([-1.0, -1.0]))
    aggregate, share = FLTrust().aggregate(tf.constant(updates[:2]), tf.ones([2]), all_against)
    assert np.all(aggregate.numpy() == 0) and np.all(share.numpy() == 0)
    assert FLTrust().check(ctx.facts) == ["fltrust needs a server root dataset: add 'root_samples 100' to the training block"]


def test_fltrust_with_layers_trusts_by_the_cosine_on_those_layers():
    root = np.ones(D, np.float32)
    x = np.array([[1, 1, 1, -5, -5, -5], [2, 2, 2, 2, 2, 2]], np.float32)  # row 0 agrees on the first layer only
    _, share, _ = run(FLTrust(), x, ctx=layered_context(2, root))
    np.testing.assert_allclose(share, [0.0, 1.0], atol=1e-6)
    aggregate, share, _ = run(FLTrust(layers=("first",)), x, ctx=layered_context(2, root))
    np.testing.assert_allclose(share, [0.5, 0.5], atol=1e-6)
    # Each row is still rescaled to the root update's whole norm.
    scaled = x * (np.linalg.norm(root) / np.linalg.norm(x, axis=1))[:, None]
    np.testing.assert_allclose(aggregate, scaled.mean(axis=0), rtol=1e-5)
