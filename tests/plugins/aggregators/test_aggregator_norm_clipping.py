"""Norm clipping and weak DP (Sun et al. 2019): each update clipped to M,
the example-weighted mean, seeded Gaussian noise."""

import numpy as np

from fedarena.plugins.aggregators.norm_clipping import NormClipping

from aggregator_helpers import D, context, run


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
