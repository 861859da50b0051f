"""Bucketing (Karimireddy et al. 2022): random buckets of s updates, the
inner rule on the bucket means, the inner rule's state carried."""

import numpy as np
import tensorflow as tf

from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import default_registry
from fedarena.core.scenario.sweep import check
from fedarena.plugins.aggregators.afa import AFA
from fedarena.plugins.aggregators.bucketing import Bucketing, bucketing
from fedarena.plugins.aggregators.centered_clipping import CenteredClipping
from fedarena.plugins.aggregators.krum import Krum
from fedarena.plugins.aggregators.median import Median, median

from aggregator_helpers import D, FACTS, context, facts_with, run, sample_updates

from conftest import tiny_scenario


def test_bucketing_averages_random_buckets_of_s_and_applies_the_inner_rule():
    x = sample_updates(11, k=9)
    seen = set()
    for seed in range(4):
        aggregate, share, _ = run(Bucketing(inner=Krum(f=0), s=2), x, ctx=context(9, seed=(seed, -1)))
        bucket = np.flatnonzero(share)
        # Krum picks one bucket mean: two updates with share 1/2 (or the last, single one).
        assert (len(bucket), share[bucket].tolist()) in ((2, [0.5, 0.5]), (1, [1.0]))
        np.testing.assert_allclose(aggregate, x[bucket].mean(0), rtol=1e-5, atol=1e-6)
        seen.add(tuple(bucket))
    assert len(seen) > 1  # the permutation depends on the round seed
    # Inner median over ceil(9/3) = 3 bucket means: each update is in one bucket.
    aggregate, share, _ = run(Bucketing(inner=Median(), s=3), x)
    np.testing.assert_allclose(share, np.full(9, 1 / 9), rtol=1e-6)
    # s = 1 is the inner rule itself; inner state is carried.
    np.testing.assert_allclose(run(Bucketing(inner=Median(), s=1), x)[0], np.median(x, axis=0), rtol=1e-6)
    wrapped = Bucketing(inner=CenteredClipping(tau=0.5), s=3)
    assert set(wrapped.initial_state(D, FACTS)) == {"previous"}
    _, _, state = run(wrapped, x)
    assert np.abs(state["previous"]).sum() > 0


def test_the_inner_rule_sees_one_row_per_bucket_with_its_size_ids_and_examples():
    seen = {}

    def inner(means, sizes, bucket, count):
        seen.update(means=means.numpy(), sizes=sizes.numpy(), bucket=bucket.numpy(), count=int(count))
        return median(means)

    x = sample_updates(5, k=5)
    aggregate, share = bucketing(tf.constant(x), 2, tf.constant([4, 2], tf.int64), inner)
    assert seen["count"] == 3 and sorted(seen["sizes"].tolist()) == [1.0, 2.0, 2.0]
    for b in range(3):
        np.testing.assert_allclose(seen["means"][b], x[seen["bucket"] == b].mean(0), rtol=1e-6)
    np.testing.assert_allclose(aggregate.numpy(), np.median(seen["means"], axis=0), rtol=1e-6)
    np.testing.assert_allclose(share.numpy(), 1 / 3 / seen["sizes"][seen["bucket"]], rtol=1e-6)


def test_bucketing_check_messages():
    assert Bucketing(inner=Krum(f=2), s=2).check(facts_with(11)) == [
        "bucketing(s = 2) leaves ceil(11/2) = 6 bucket means for its inner rule: "
        "krum needs clients_per_round > 2f + 2 (here 6 <= 2*2 + 2); lower f or sample more clients"]
    assert Bucketing(inner=Krum(f=2), s=2).check(facts_with(13)) == []
    assert Bucketing(inner=AFA()).check(facts_with(10)) == [
        "bucketing cannot wrap afa: AFA keeps a reputation per client, and bucket means are not clients"]


def test_the_checker_accepts_a_nested_aggregator():
    scenario = check(parse(tiny_scenario(aggregator="bucketing(s = 1, inner = krum(f = 0))"), "s.fls"),
                     default_registry())
    assert scenario.aggregator == Bucketing(inner=Krum(f=0), s=1)
