"""Coordinate-wise trimmed mean (Yin et al. 2018): ceil(beta * n), or k, per side."""

from math import ceil

import numpy as np
import pytest

from fedarena.plugins.aggregators.trimmed_mean import TrimmedMean

from aggregator_helpers import facts_with, ref_trimmed_mean, run


def test_trimmed_mean_equals_numpy():
    rng = np.random.default_rng(3)
    for n in (9, 10):
        x = rng.normal(size=(n, 5)).astype(np.float32)
        # beta trims ceil(beta * n) per side: 2 for 0.15 * 10 (floor would trim 1); 1 for 0.1 * 10.
        for beta in (0.1, 0.15, 0.3):
            aggregate, share, _ = run(TrimmedMean(beta=beta), x)
            np.testing.assert_allclose(aggregate, ref_trimmed_mean(x, ceil(beta * n - 1e-9)), rtol=1e-5)
            np.testing.assert_allclose(share, np.full(n, 1 / n), rtol=1e-6)
        np.testing.assert_allclose(run(TrimmedMean(k=3), x)[0], ref_trimmed_mean(x, 3), rtol=1e-5)
    assert not np.allclose(ref_trimmed_mean(x, 2), ref_trimmed_mean(x, 1))
    np.testing.assert_allclose(run(TrimmedMean(beta=0.0), x)[0], x.mean(0), rtol=1e-5)


def test_trimmed_mean_clamps_the_trim_when_few_rows_are_left():
    x = np.array([[0.0], [1.0], [5.0]], np.float32)
    assert run(TrimmedMean(k=4), x)[0].tolist() == [1.0]  # (n - 1) // 2 = 1 per side


def test_trimmed_mean_check_messages():
    assert TrimmedMean(k=3).check(facts_with(6)) == [
        "trimmed_mean needs clients_per_round > 2k (here 6 <= 2*3); lower k or sample more clients"]
    assert TrimmedMean(beta=0.4).check(facts_with(4)) == [
        "trimmed_mean with beta = 0.4 trims ceil(0.4*4) = 2 values per side of clients_per_round 4, "
        "leaving none; lower beta or sample more clients"]
    assert TrimmedMean(beta=0.4).check(facts_with(5)) == []
    with pytest.raises(ValueError, match="'beta' must be < 0.5"):
        TrimmedMean(beta=0.5)
