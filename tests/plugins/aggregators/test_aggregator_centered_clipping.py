"""Centered clipping (Karimireddy et al. 2021): clipped steps from the
previous round's aggregate, carried as state."""

import numpy as np
import tensorflow as tf

from fedarena.plugins.aggregators.centered_clipping import CenteredClipping

from aggregator_helpers import D, ref_centered_clipping, run, state_of


def test_centered_clipping_starts_from_the_previous_aggregate():
    rng = np.random.default_rng(7)
    aggregator = CenteredClipping(tau=0.5, iterations=2)
    state = state_of(aggregator)
    np.testing.assert_array_equal(state["previous"].numpy(), np.zeros(D))
    v = np.zeros(D)
    for _ in range(3):
        x = rng.normal(size=(5, D)) + 1.0
        aggregate, share, new = run(aggregator, x, state=state)
        expected = ref_centered_clipping(x, v, 0.5, 2)
        np.testing.assert_allclose(aggregate, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(new["previous"], aggregate)
        # Shares: aggregate = (1 - sum(share)) * previous + sum share_i x_i.
        np.testing.assert_allclose((1 - share.sum()) * v + share @ x, aggregate, rtol=1e-5, atol=1e-6)
        fresh, _, _ = run(aggregator, x)
        if v.any():
            assert np.abs(fresh - aggregate).max() > 1e-2  # the carried state matters
        v, state = expected, {"previous": tf.constant(new["previous"])}
