"""Multi-Krum (Blanchard et al. 2017): the mean of the m best Krum scores,
one shot (the paper's) or iterative."""

import numpy as np

from fedarena.plugins.aggregators.krum import Krum
from fedarena.plugins.aggregators.multi_krum import MultiKrum

from aggregator_helpers import facts_with, ref_multi_krum, run

# Nine points, f = 2, m = n - f = 7: one-shot and iterative Multi-Krum
# average different sets.
MULTI_KRUM_CASE = np.array([[-1.0, -3.3], [0.3, 0.2], [-2.5, -1.4], [-0.1, -1.9], [-0.2, 0.2], [0.1, -1.0],
                            [1.2, 1.8], [0.6, -1.6], [1.5, -1.0]])


def test_multi_krum_averages_the_m_best():
    x = MULTI_KRUM_CASE
    one_shot, chosen = ref_multi_krum(x, 2)
    iterative, chosen_iterative = ref_multi_krum(x, 2, iterative=True)
    assert chosen != chosen_iterative and len(chosen) == len(chosen_iterative) == 7
    for aggregator, expected, rows in ((MultiKrum(f=2), one_shot, chosen),
                                       (MultiKrum(f=2, iterative=True), iterative, chosen_iterative)):
        aggregate, share, _ = run(aggregator, x)
        np.testing.assert_allclose(aggregate, expected, rtol=1e-5)
        np.testing.assert_allclose(share, np.isin(np.arange(9), rows) / 7, rtol=1e-6)
    for m in (1, 3):
        expected, rows = ref_multi_krum(x, 2, m=m)
        aggregate, share, _ = run(MultiKrum(f=2, m=m), x)
        np.testing.assert_allclose(aggregate, expected, rtol=1e-5)
        assert np.flatnonzero(share).tolist() == rows
    np.testing.assert_allclose(run(MultiKrum(f=2, m=1), x)[0], run(Krum(f=2), x)[0])


def test_multi_krum_check_messages():
    assert MultiKrum(f=1, m=9).check(facts_with(5)) == [
        "multi_krum averages m = 9 updates but clients_per_round is 5; lower m"]
    assert MultiKrum(f=2).check(facts_with(6)) == [
        "multi_krum needs clients_per_round > 2f + 2 (here 6 <= 2*2 + 2); lower f or sample more clients"]
