"""AFA (Munoz-Gonzalez et al. 2019): cosine outliers flagged on the side the
mean leans to, Beta reputations per client, blocking."""

import numpy as np
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.aggregators.afa import AFA

from aggregator_helpers import context, layered_context, ref_afa, run, state_of


def test_afa_flags_an_outlier_and_blocks_it_once_its_reputation_is_low():
    from scipy import stats

    rng = np.random.default_rng(12)
    aggregator = AFA()
    facts = Facts(num_clients=14, clients_per_round=10, num_classes=3, input_shape=(2,))
    state = state_of(aggregator, 20, facts)
    alpha, beta = state["alpha"].numpy(), state["beta"].numpy()
    assert alpha.shape == beta.shape == (14,) and (alpha == 3).all() and (beta == 3).all()
    attacker, direction = 11, rng.normal(size=20)
    reputations = []
    for round_number in range(1, 9):
        ids = np.sort(np.append(rng.choice([i for i in range(14) if i != attacker], 9, replace=False), attacker))
        x = direction + 0.3 * rng.normal(size=(10, 20))
        slot = int(np.flatnonzero(ids == attacker)[0])
        x[slot] = -3.0 * direction if round_number < 8 else direction  # behaves once blocked
        w = rng.integers(5, 50, size=10).astype(np.float64)
        aggregate, share, new = run(aggregator, x, w, context(10, facts, ids=ids), state)
        expected, coeff, alpha, beta = ref_afa(x, w, ids, alpha, beta)
        np.testing.assert_allclose(aggregate, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(share, coeff, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(new["alpha"], alpha)
        np.testing.assert_allclose(new["beta"], beta)
        assert share[slot] == 0
        reputations.append(alpha[attacker] / (alpha[attacker] + beta[attacker]))
        state = {key: tf.constant(value) for key, value in new.items()}
    # Flagged in each of the first 6 rounds: Beta(3, 9) puts P(theta < 0.5) = 0.967 > 0.95.
    assert beta[attacker] == 3 + 6 and alpha[attacker] == 3
    assert stats.beta.cdf(0.5, 3, 8) < 0.95 < stats.beta.cdf(0.5, 3, 9)
    assert all(later < earlier for earlier, later in zip(reputations[:6], reputations[1:6]))
    assert reputations[6] == reputations[7]  # blocked: no longer updated, even when behaving


# Eight updates whose cosines to the mean lean high (mean > median): the
# paper flags only above median + xi * std, so the low row 1 stays; a
# two-sided rule would drop it.
AFA_CASE = np.array([[1.5, 0.9, -0.1], [0.9, -0.3, 1.3], [1.0, 0.0, 0.1], [2.9, -0.7, 1.1], [1.5, 0.7, 1.0],
                     [3.7, 1.8, -1.0], [3.4, -1.5, -0.5], [2.3, -1.3, 0.1]])


def test_afa_flags_only_on_the_side_the_mean_leans_to():
    w, ids, prior = np.ones(8), np.arange(8), np.full(8, 3.0)
    expected, coeff, _, beta = ref_afa(AFA_CASE, w, ids, prior, prior)
    assert (coeff > 0).all() and (beta == 3).all()
    assert ref_afa(AFA_CASE, w, ids, prior, prior, two_sided=True)[1][1] == 0
    facts = Facts(num_clients=8, clients_per_round=8, num_classes=3, input_shape=(2,))
    aggregate, share, state = run(AFA(), AFA_CASE, w, context(8, facts), state_of(AFA(), 3, facts))
    np.testing.assert_allclose(share, coeff, rtol=1e-5)
    np.testing.assert_allclose(aggregate, expected, rtol=1e-5)
    assert (state["alpha"] == 4).all() and (state["beta"] == 3).all()


def test_with_every_client_blocked_the_aggregate_is_zero_and_the_state_kept():
    facts = Facts(num_clients=4, clients_per_round=4, num_classes=3, input_shape=(2,))
    state = {"alpha": tf.fill([4], 1.0), "beta": tf.fill([4], 30.0)}  # P(theta < 0.5) ~ 1
    aggregate, share, new = run(AFA(), AFA_CASE[:4], ctx=context(4, facts), state=state)
    assert not aggregate.any() and not share.any()
    assert (new["alpha"] == 1).all() and (new["beta"] == 30).all()


def test_afa_with_layers_flags_by_the_cosine_on_those_layers():
    rng = np.random.default_rng(2)
    x = 1.0 + 0.1 * rng.normal(size=(10, 6))
    x[9, 3:] = -8.0  # against the others on the second layer only
    x = x.astype(np.float32)
    _, share, _ = run(AFA(), x, ctx=layered_context(10))
    assert share[9] == 0 and (share[:9] > 0).all()
    # The aggregate's columns of a layer are the mean of the rows' columns:
    # AFA on the first layer flags as AFA on the first layer's columns alone.
    _, share, state = run(AFA(layers=("first",)), x, ctx=layered_context(10))
    _, alone, alone_state = run(AFA(), x[:, :3], ctx=layered_context(10))
    assert share[9] > 0
    np.testing.assert_allclose(share > 0, alone > 0)
    np.testing.assert_allclose(state["beta"], alone_state["beta"])
