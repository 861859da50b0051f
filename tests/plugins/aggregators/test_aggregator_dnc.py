"""DnC (Shejwalkar and Houmansadr 2021): drop the highest squared
projections on the top singular direction of the centred updates."""

from math import floor

import numpy as np

from fedarena.plugins.aggregators.dnc import DnC

from aggregator_helpers import facts_with, run


def test_dnc_drops_the_highest_projection_scores():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(10, 8))
    x[:, 0] += 10.0  # the benign cloud sits far from the origin
    x[[3, 7], :2] += [-3.0, 6.0]  # two colluders off it, in one direction
    f, c = 2, 1.0

    def kept_by_top_direction(centred):
        scores = (centred @ np.linalg.svd(centred)[2][0]) ** 2
        return np.sort(np.argsort(scores)[: 10 - floor(c * f)])

    kept = kept_by_top_direction(x - x.mean(0))
    assert 3 not in kept and 7 not in kept
    assert {3, 7} <= set(kept_by_top_direction(x))  # without centring they would pass
    aggregate, share, _ = run(DnC(f=f, c=c, subsample=100), x)  # all 8 coordinates
    np.testing.assert_allclose(aggregate, x[kept].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(share, np.isin(np.arange(10), kept) / len(kept), rtol=1e-6)
    # Random coordinates, several iterations: still drops colluders that differ in
    # every coordinate; at most n - floor(c f) are kept.
    x = rng.normal(size=(10, 8))
    x[[3, 7]] += 6.0
    aggregate, share, _ = run(DnC(f=f, c=1.5, subsample=4, niters=3), x)
    assert share[3] == share[7] == 0 and 0 < np.count_nonzero(share) <= 10 - 3


def test_dnc_check_messages():
    assert DnC(f=3, c=2.0).check(facts_with(6)) == [
        "dnc drops floor(c*f) = 6 updates per iteration but clients_per_round is 6; "
        "lower c or f, or sample more clients"]
