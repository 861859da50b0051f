"""Split plugins: each one's defining property, exact partitions, non-empty
clients, and determinism under the rng it is given."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from fedarena.core.errors import RunError
from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.datasets._writers import WriterLabels
from fedarena.plugins.splits import (
    IID, Dirichlet, Fang, Natural, QuantitySkew, Shards, apportion, cut, fill_empty,
)

C = 10


def make_labels(n=6000, seed=0):
    """Unequal classes (class c has weight c + 5), shuffled."""
    rng = np.random.default_rng(seed)
    return rng.choice(C, n, p=(np.arange(C) + 5) / (np.arange(C) + 5).sum()).astype(np.int32)


LABELS = make_labels()

SPLITS = [IID(), Dirichlet(alpha=0.1), Dirichlet(alpha=10.0), Shards(per_client=2), Fang(q=0.5), Fang(q=1.0),
          QuantitySkew(alpha=0.3)]


def histograms(labels, parts):
    return np.stack([np.bincount(labels[p], minlength=C) for p in parts]).astype(float)


def shares(labels, parts):
    h = histograms(labels, parts)
    return h / h.sum(axis=1, keepdims=True)


def mean_total_variation(labels, parts):
    """Mean over clients of the distance between a client's and the global label distribution."""
    overall = np.bincount(labels, minlength=C) / len(labels)
    return float(np.mean(0.5 * np.abs(shares(labels, parts) - overall).sum(axis=1)))


def mean_entropy(labels, parts):
    p = shares(labels, parts)
    return float(np.mean(-(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)).sum(axis=1)))


def assert_exact_partition(parts, n, num_clients):
    assert len(parts) == num_clients
    assert all(p.dtype.kind == "i" and p.ndim == 1 for p in parts)
    assert all(np.all(np.diff(p) > 0) for p in parts)  # sorted, no repeats
    joined = np.concatenate(parts)
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))


@pytest.mark.parametrize("split", SPLITS, ids=repr)
@pytest.mark.parametrize("num_clients", [10, 37])
def test_every_split_partitions_exactly_and_leaves_no_client_empty(split, num_clients):
    parts = split.partition(LABELS, num_clients, np.random.default_rng([5, 0]))
    assert_exact_partition(parts, len(LABELS), num_clients)
    assert min(len(p) for p in parts) >= 1


@pytest.mark.parametrize("split", SPLITS, ids=repr)
def test_every_split_is_deterministic_in_its_rng(split):
    one = split.partition(LABELS, 20, np.random.default_rng([3, 0]))
    two = split.partition(LABELS, 20, np.random.default_rng([3, 0]))
    other = split.partition(LABELS, 20, np.random.default_rng([4, 0]))
    assert all(np.array_equal(a, b) for a, b in zip(one, two))
    assert not all(np.array_equal(a, b) for a, b in zip(one, other))


def test_iid_is_class_balanced_and_equal_sized():
    parts = IID().partition(LABELS, 20, np.random.default_rng(0))
    assert {len(p) for p in parts} == {300}
    assert mean_total_variation(LABELS, parts) < 0.1


def test_dirichlet_skew_falls_as_alpha_grows():
    entropies, top_shares = [], []
    for alpha in (0.1, 1.0, 100.0):
        runs = [Dirichlet(alpha=alpha).partition(LABELS, 20, np.random.default_rng([seed, 0])) for seed in range(3)]
        entropies.append(np.mean([mean_entropy(LABELS, parts) for parts in runs]))
        top_shares.append(np.mean([shares(LABELS, parts).max(axis=1).mean() for parts in runs]))
    assert entropies[0] < entropies[1] < entropies[2]
    assert top_shares[0] > top_shares[1] > top_shares[2]
    assert entropies[2] > 0.95 * np.log(C)  # alpha = 100 is close to IID
    assert top_shares[0] > 0.5  # alpha = 0.1: most of a client is one class


def test_dirichlet_deals_each_class_across_clients():
    # With alpha tiny, each class lands (almost) entirely on one client.
    parts = Dirichlet(alpha=0.001).partition(LABELS, 50, np.random.default_rng(1))
    assert_exact_partition(parts, len(LABELS), 50)
    h = histograms(LABELS, parts)
    top = h.max(axis=0) / h.sum(axis=0)  # share of each class held by its largest holder
    assert top.mean() > 0.9 and top.min() > 0.8
    spread = Dirichlet(alpha=1.0).partition(LABELS, 50, np.random.default_rng(1))
    assert (histograms(LABELS, spread).max(axis=0) / h.sum(axis=0)).mean() < 0.3
    assert min(len(p) for p in parts) == 1  # the empty clients got one sample each


@pytest.mark.parametrize("per_client", [1, 2, 3])
@pytest.mark.parametrize("num_clients", [10, 30, 100])
def test_shards_clients_hold_at_most_per_client_labels(per_client, num_clients):
    parts = Shards(per_client=per_client).partition(LABELS, num_clients, np.random.default_rng(2))
    assert_exact_partition(parts, len(LABELS), num_clients)
    held = (histograms(LABELS, parts) > 0).sum(axis=1)
    assert held.max() <= per_client and held.min() >= 1


def test_shards_of_mcmahan_mnist_shape():
    labels = np.repeat(np.arange(C), 6000).astype(np.int32)  # 60,000 balanced: 200 shards of exactly 300
    parts = Shards(per_client=2).partition(labels, 100, np.random.default_rng(0))
    assert {len(p) for p in parts} == {600}
    held = (histograms(labels, parts) > 0).sum(axis=1)
    assert held.max() == 2 and np.mean(held == 2) > 0.7
    # Unequal classes: shards are cut per class, still of about equal size.
    sizes = np.array([len(p) for p in Shards(per_client=2).partition(LABELS, 100, np.random.default_rng(0))])
    assert sizes.max() <= 1.1 * sizes.min()


def test_shards_need_a_shard_per_class():
    facts = Facts(num_clients=4, clients_per_round=2, num_classes=10, input_shape=(4,))
    assert "fewer than the 10 classes" in Shards(per_client=2).check(facts)[0]
    assert Shards(per_client=3).check(facts) == []
    with pytest.raises(RunError, match="classes"):
        Shards(per_client=2).partition(LABELS, 4, np.random.default_rng(0))


def test_fang_q_one_puts_each_label_in_its_own_group():
    parts = Fang(q=1.0).partition(LABELS, 40, np.random.default_rng(0))
    held = histograms(LABELS, parts) > 0
    assert np.all(held.sum(axis=1) == 1)  # every client holds one label: its group's
    assert np.all(held.sum(axis=0) == 4)  # each label is spread over its group of 40 / 10 clients


def test_fang_q_one_over_classes_is_close_to_iid():
    rng = lambda: np.random.default_rng(7)
    iid = mean_total_variation(LABELS, IID().partition(LABELS, 20, rng()))
    uniform = mean_total_variation(LABELS, Fang(q=1 / C).partition(LABELS, 20, rng()))
    skews = [mean_total_variation(LABELS, Fang(q=q).partition(LABELS, 20, rng())) for q in (0.3, 0.6, 0.9)]
    assert uniform < 0.1 and uniform < 2 * iid + 0.02
    assert uniform < skews[0] < skews[1] < skews[2]


def test_fang_share_of_own_label_matches_q():
    # Client groups are unknown from outside, but with q = 0.8 and 10 groups
    # each client's top label should make up about 0.8 of its samples.
    labels = np.repeat(np.arange(C), 2000).astype(np.int32)
    parts = Fang(q=0.8).partition(labels, 10, np.random.default_rng(0))
    top = shares(labels, parts).max(axis=1)
    assert np.all(np.abs(top - 0.8) < 0.03)


def test_fang_needs_a_client_per_class():
    facts = Facts(num_clients=5, clients_per_round=2, num_classes=10, input_shape=(4,))
    assert Fang().check(facts) and not Fang().check(Facts(10, 2, 10, (4,)))
    with pytest.raises(RunError):
        Fang().partition(LABELS, 5, np.random.default_rng(0))


def test_quantity_skew_sizes_are_unequal_but_labels_iid():
    skewed = QuantitySkew(alpha=0.3).partition(LABELS, 20, np.random.default_rng(0))
    even = QuantitySkew(alpha=1000.0).partition(LABELS, 20, np.random.default_rng(0))
    sizes = np.array([len(p) for p in skewed])
    assert sizes.max() > 5 * np.median(sizes) or sizes.max() > 10 * sizes.min()
    assert np.std(sizes) / np.mean(sizes) > 0.8
    even_sizes = np.array([len(p) for p in even])
    assert np.std(even_sizes) / np.mean(even_sizes) < 0.1
    big = [p for p in skewed if len(p) >= 600]
    assert big and mean_total_variation(LABELS, big) < 0.1


def test_natural_split_follows_writers():
    writers = np.repeat(np.arange(12), np.arange(1, 13))  # writer w has w + 1 samples
    labels = WriterLabels(np.zeros(len(writers)), writers)
    one_each = Natural().partition(labels, 12, np.random.default_rng(0))
    assert_exact_partition(one_each, len(writers), 12)
    assert sorted(len(p) for p in one_each) == list(range(1, 13))
    assert all(len(set(writers[p])) == 1 for p in one_each)
    merged = Natural().partition(labels, 5, np.random.default_rng(0))
    assert_exact_partition(merged, len(writers), 5)
    owner = {w: i for i, p in enumerate(merged) for w in set(writers[p])}
    assert len(owner) == 12 and sorted(len(set(writers[p])) for p in merged) == [2, 2, 2, 3, 3]
    sampled = Natural(mode="sample").partition(labels, 4, np.random.default_rng(0))
    assert len(sampled) == 4 and all(len(set(writers[p])) == 1 for p in sampled)
    assert len({int(writers[p[0]]) for p in sampled}) == 4
    again = Natural(mode="sample").partition(labels, 4, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(sampled, again))


def test_natural_split_errors():
    with pytest.raises(RunError, match="writers"):
        Natural().partition(LABELS, 4, np.random.default_rng(0))
    labels = WriterLabels([0, 1, 2], [0, 0, 1])
    with pytest.raises(RunError, match="only 2 writers"):
        Natural().partition(labels, 3, np.random.default_rng(0))


NATURAL_WITHOUT_WRITERS = (
    "natural: the dataset's samples have no writers to make clients of (emnist and shakespeare have them, and npz "
    "with a writers_train array); use such a dataset, or another split, e.g. "
    "'split dirichlet(alpha = 0.5) over 6 clients'"
)


def test_natural_split_without_writers_is_a_check_time_error():
    facts = Facts(num_clients=6, clients_per_round=2, num_classes=10, input_shape=(4,))
    assert Natural().check(facts) == [NATURAL_WITHOUT_WRITERS]
    assert Natural(mode="sample").check(attrs.evolve(facts, has_writers=True)) == []


def test_natural_split_on_a_dataset_without_writers_fails_check_at_the_split(tmp_path):
    from fedarena.core.errors import ScenarioError
    from fedarena.core.language.parser import parse
    from fedarena.core.plugin.registry import default_registry
    from fedarena.core.scenario.sweep import check

    text = """scenario "s" {
  rounds 1
  dataset digits
  split natural over 6 clients
  model mlp
}"""
    with pytest.raises(ScenarioError) as caught:
        check(parse(text, "s.fls"), default_registry())
    assert str(caught.value) == f"s.fls:4:9: {NATURAL_WITHOUT_WRITERS}\n      split natural over 6 clients\n            ^"
    np.savez(tmp_path / "own.npz", x_train=np.zeros((12, 3)), y_train=np.arange(12) % 2, x_test=np.zeros((2, 3)),
             y_test=np.array([0, 1]), writers_train=np.repeat(["ann", "bob", "cy"], 4))
    with_writers = text.replace("dataset digits", f'dataset npz(path = "{tmp_path / "own.npz"}")')
    with_writers = with_writers.replace("over 6 clients", "over 3 clients")
    assert check(parse(with_writers, "s.fls"), default_registry()).dataset.info().has_writers


def test_fewer_samples_than_clients_fills_what_it_can():
    labels = np.array([0, 1, 2, 0, 1], np.int32)
    for split in (Dirichlet(alpha=0.5), QuantitySkew(alpha=0.5), Fang(q=0.5)):
        parts = split.partition(labels, 8, np.random.default_rng(0))
        assert_exact_partition(parts, 5, 8)
        assert sorted(len(p) for p in parts) == [0, 0, 0, 1, 1, 1, 1, 1]


def test_helpers():
    rng = np.random.default_rng(0)
    filled = fill_empty([np.arange(5), np.array([], int), np.array([7]), np.array([], int)], rng)
    assert [len(p) for p in filled] == [3, 1, 1, 1]
    assert np.array_equal(np.sort(np.concatenate(filled)), np.array([0, 1, 2, 3, 4, 7]))
    counts = apportion(20, np.array([100, 1, 50, 3]))
    assert counts.sum() == 20 and counts.min() >= 1 and counts[1] == 1 and counts[0] > counts[2]
    assert [len(p) for p in cut(np.arange(10), np.array([0.5, 0.0, 0.5]))] == [5, 0, 5]
