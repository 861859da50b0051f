"""Krum (Blanchard et al. 2017): n - f - 2 neighbours, squared distances,
distances that stay accurate in float32, ``layers``, and the check."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.errors import ScenarioError
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import default_registry
from fedarena.core.scenario.sweep import check
from fedarena.plugins import _tensor
from fedarena.plugins.aggregators.krum import Krum, krum
from fedarena.plugins.aggregators.multi_krum import MultiKrum

from aggregator_helpers import D, facts_with, layered_context, ref_krum_scores, ref_multi_krum, run

from conftest import tiny_scenario

# Seven points, f = 1.  Krum's definition (n - f - 2 = 4 nearest, squared
# distances) picks row 1; n - f - 1 neighbours would pick row 2, unsquared
# distances row 3.
KRUM_CASE = np.array([[2.5, 0.6], [0.0, 0.9], [1.4, -1.4], [-0.6, 0.3], [-1.1, -0.3], [2.6, -1.9], [3.9, 3.8]])


def test_krum_uses_n_minus_f_minus_2_neighbours_and_squared_distances():
    assert np.argmin(ref_krum_scores(KRUM_CASE, 1)) == 1
    assert np.argmin(ref_krum_scores(KRUM_CASE, 1, neighbours=5)) == 2
    assert np.argmin(ref_krum_scores(KRUM_CASE, 1, squared=False)) == 3
    aggregate, share, _ = run(Krum(f=1), KRUM_CASE)
    np.testing.assert_allclose(aggregate, KRUM_CASE[1])
    assert share.tolist() == [0, 1, 0, 0, 0, 0, 0]
    # Permuted, and with a huge offset (the Gram matrix is centred first).
    order = [6, 3, 1, 0, 5, 2, 4]
    aggregate, share, _ = run(Krum(f=1), KRUM_CASE[order] + 1000.0)
    np.testing.assert_allclose(aggregate, KRUM_CASE[1] + 1000.0)
    assert share.tolist() == [0, 0, 1, 0, 0, 0, 0]


def test_the_tensor_function_is_the_plugin_on_the_kept_rows():
    aggregate, share = krum(tf.constant(KRUM_CASE, tf.float32), 1)
    np.testing.assert_allclose(aggregate.numpy(), KRUM_CASE[1], rtol=1e-6)
    assert share.numpy().tolist() == [0, 1, 0, 0, 0, 0, 0]


def test_krum_distances_stay_accurate_next_to_huge_attackers():
    # Gaussian attack (sigma = 200, as in the Krum paper) beside honest updates
    # 1e-2 apart, far from the origin: float32 Gram distances must still rank
    # the honest ones as float64 does.
    rng = np.random.default_rng(13)
    x = np.concatenate([1.0 + 1e-2 * rng.normal(size=(9, 1000)), 200.0 * rng.normal(size=(2, 1000))])
    for f in (2, 4):
        assert run(Krum(f=f), x)[1].argmax() == np.argmin(ref_krum_scores(x, f))
        expected, chosen = ref_multi_krum(x, f)
        assert np.flatnonzero(run(MultiKrum(f=f), x)[1]).tolist() == chosen


@pytest.mark.parametrize("attackers", ["huge", "zero"])
def test_pairwise_distances_stay_precise_whatever_the_attackers_send(attackers):
    rng = np.random.default_rng(3)
    honest = (5.0 + 0.01 * rng.normal(size=(15, 4096))).astype(np.float32)  # far from the origin, close together
    bad = 200 * rng.normal(size=(5, 4096)) if attackers == "huge" else np.zeros((5, 4096))
    rows = np.concatenate([honest, bad.astype(np.float32)])
    got = _tensor.pairwise_sq_distances(tf.constant(rows)).numpy()[:15, :15]
    exact = ((honest[:, None, :].astype(np.float64) - honest[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(got, exact, rtol=1e-3, atol=1e-6)


def test_krum_with_layers_picks_by_the_distances_on_those_layers_only():
    rng = np.random.default_rng(8)
    x = np.zeros((7, D))
    # First layer: row 0 sits at the centre of rows 1-5; row 6 is far.
    x[1:6, :3] = rng.normal(size=(5, 3))
    x[1:6, :3] -= x[1:6, :3].mean(axis=0)
    x[6, :3] = 20.0
    # Second layer: row 0 is far; the others spread around 0.
    x[0, 3:] = 10.0
    x[1:, 3:] = rng.normal(size=(6, 3))
    x = x.astype(np.float32)
    f = 1
    on_first = int(np.argmin(ref_krum_scores(x[:, :3], f)))
    on_second = int(np.argmin(ref_krum_scores(x[:, 3:], f)))
    on_all = int(np.argmin(ref_krum_scores(x, f)))
    assert on_first == 0 and on_all != 0 and on_second != 0
    for layers, winner in (((), on_all), (("first",), on_first), (("second",), on_second)):
        aggregate, share, _ = run(Krum(f=f, layers=layers), x, ctx=layered_context(7))
        np.testing.assert_array_equal(aggregate, x[winner])  # the whole update, every layer
        assert share.tolist() == np.eye(7)[winner].tolist(), layers
    # Multi-Krum and Bulyan's selection follow the same distances.
    _, share, _ = run(MultiKrum(f=f, m=1, layers=("first",)), x, ctx=layered_context(7))
    assert int(np.argmax(share)) == 0


def test_krum_check_messages():
    assert Krum(f=2).check(facts_with(5)) == [
        "krum needs clients_per_round > 2f + 2 (here 5 <= 2*2 + 2); lower f or sample more clients"]
    assert Krum(f=2).check(facts_with(7)) == []


def test_the_checker_reports_an_aggregator_rule():
    with pytest.raises(ScenarioError, match=r"krum needs clients_per_round > 2f \+ 2 \(here 4 <= 2\*1 \+ 2\)"):
        check(parse(tiny_scenario(aggregator="krum(f = 1)"), "s.fls"), default_registry())
