"""SignGuard (Xu et al. 2022): a norm filter and a sign-statistics cluster,
then the accepted updates clipped to the median norm."""

import numpy as np

from fedarena.plugins.aggregators.signguard import SignGuard

from aggregator_helpers import facts_with, run


def test_signguard_filters_by_norm_and_by_sign_cluster():
    from sklearn.cluster import MeanShift, estimate_bandwidth

    rng = np.random.default_rng(10)
    x = np.abs(rng.normal(size=(10, 40))) * np.where(rng.uniform(size=(10, 40)) < 0.8, 1.0, -1.0)
    x[[2, 5]] = -x[[2, 5]]  # sign flipped: same norms, opposite sign statistics
    x[8] *= 10.0  # norm far above the median
    norms = np.linalg.norm(x, axis=1)
    median = np.median(norms)
    by_norm = (norms / median >= 0.1) & (norms / median <= 3.0)
    features = np.stack([(x > 0).mean(1), (x == 0).mean(1), (x < 0).mean(1)], axis=1)
    labels = MeanShift(bandwidth=estimate_bandwidth(features, quantile=0.3)).fit(features).labels_
    by_sign = labels == np.bincount(labels).argmax()
    chosen = by_norm & by_sign
    assert chosen.tolist() == [True, True, False, True, True, False, True, True, False, True]
    clipped = x * np.minimum(1.0, median / norms)[:, None]
    aggregate, share, _ = run(SignGuard(fraction=1.0), x)
    np.testing.assert_allclose(aggregate, clipped[chosen].mean(0), rtol=1e-5, atol=1e-6)
    assert (share > 0).tolist() == chosen.tolist()


def test_signguard_check_messages():
    assert SignGuard(lower=2.0, upper=1.0).check(facts_with(6)) == ["signguard needs lower < upper (here 2 >= 1)"]


def test_signguard_scales_exactly_with_huge_rows():
    # Rows times a power of two: norms past float32's range are computed
    # finite (at 2^122 the longest norm is past 2^128), and since a power
    # of two scales exactly, the choice and shares are those of the plain
    # rows and the aggregate is exactly scaled.
    rng = np.random.default_rng(10)
    x = (np.abs(rng.normal(size=(10, 40))) * np.where(rng.uniform(size=(10, 40)) < 0.8, 1.0, -1.0)).astype(np.float32)
    x[[2, 5]] = -x[[2, 5]]
    x[8] *= 10.0
    plain, plain_share, _ = run(SignGuard(fraction=1.0), x)
    assert 0 < (plain_share > 0).sum() < 10
    for exponent in (100, 122):
        scale = np.float32(2.0 ** exponent)
        with np.errstate(over="ignore"):
            assert np.isfinite(x * scale).all() and not np.isfinite(np.linalg.norm(x * scale, axis=1)).all()
        aggregate, share, _ = run(SignGuard(fraction=1.0), x * scale)
        np.testing.assert_array_equal(share, plain_share)
        np.testing.assert_array_equal(aggregate, plain * scale)
