"""Geometric median (RFA, Pillutla et al. 2022): smoothed Weiszfeld from the
weighted mean, converging to the weighted geometric median."""

import numpy as np

from fedarena.plugins.aggregators.geometric_median import GeometricMedian

from aggregator_helpers import ref_weiszfeld, run


def test_geometric_median_follows_weiszfeld_and_reaches_the_minimiser():
    from scipy.optimize import minimize

    rng = np.random.default_rng(6)
    x = rng.normal(size=(6, 3))
    x[0] += 20.0
    w = np.array([1.0, 2.0, 1.0, 3.0, 1.0, 2.0])
    aggregate, share, _ = run(GeometricMedian(), x, w)
    np.testing.assert_allclose(aggregate, ref_weiszfeld(x, w, 3, 1e-6), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(share.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(share @ x, aggregate, rtol=1e-4, atol=1e-5)

    def objective(v):
        return (w * np.linalg.norm(x - v, axis=1)).sum()

    best = minimize(objective, (w / w.sum()) @ x, method="Nelder-Mead",
                    options=dict(xatol=1e-9, fatol=1e-12, maxiter=20000)).x
    long_run, _, _ = run(GeometricMedian(iterations=300, nu=1e-9), x, w)
    np.testing.assert_allclose(long_run, best, atol=2e-3)
    assert np.linalg.norm(x.mean(0) - best) > 1.0  # the mean is far off
