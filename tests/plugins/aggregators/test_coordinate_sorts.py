"""The per-coordinate sort of coordinate-wise median and trimmed mean
(`_tensor.sorted_rows`): the sorting network up to `SORTING_NETWORK_MAX`
rows gives, bit for bit, what `tf.sort(rows, axis=0)` gave before, with a
static row count, with an unknown one under a bound (padded with +inf) and
over it (`tf.sort` itself).  The median is NumPy's bit for bit; before, an
odd count with a middle value past 1.7e38 gave inf."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.plugins import _tensor
from fedarena.plugins.aggregators.median import Median, median
from fedarena.plugins.aggregators.trimmed_mean import TrimmedMean, trimmed_mean

from aggregator_helpers import context, facts_with

D = 48


def bits(x):
    """The float32 bit patterns of ``x``: equal only if bit for bit equal."""
    return np.asarray(x, np.float32).view(np.uint32)


def hand_made(count, seed):
    """``[count, D]`` float32 rows, no -0.0: small integers (many ties, exact
    sums), normal values (rounded sums), +-inf, and extremes from 1e37 to
    3e38 (sums of a few overflow to +-inf) in column blocks."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(-3, 4, size=(count, D)).astype(np.float32)
    rows[:, 8:24] = rng.normal(size=(count, 16))
    rows[:, 24:32] = rng.choice(np.array([-np.inf, -1.0, 2.0, np.inf], np.float32), size=(count, 8))
    rows[:, 32:40] = rng.choice(np.array([-3e37, 1e37, 2e37, 3e38], np.float32), size=(count, 8))
    rows[:, 40:] = 1e37 * rng.normal(size=(count, 8))
    return rows + np.float32(0.0)  # -0.0 + 0.0 is +0.0: signed zeros have a test of their own


def before_median(rows):
    """`coordinate_median` as it was: `tf.sort`, then the two middle rows."""
    count = tf.shape(rows)[0]
    return tf.reduce_mean(tf.gather(tf.sort(rows, axis=0), [(count - 1) // 2, count // 2]), axis=0).numpy()


def before_trimmed_mean(rows, k):
    """`trimmed_mean` as it was: `tf.sort`, the trim clamped to (n - 1) // 2."""
    count = rows.shape[0]
    trim = min(k, (count - 1) // 2)
    return tf.reduce_mean(tf.sort(rows, axis=0)[trim : count - trim], axis=0).numpy()


UNKNOWN = tf.TensorSpec([None, D])
COUNTS = [1, 2, 3, 4, 5, 8, 11, 16, 17, 20, 33, 64, 80, 127, 128]
# Counts also run in a graph, rows of unknown count (a network per bound: seconds of tracing).
IN_GRAPH = {1, 2, 3, 8, 17, 80}


def op_types(function):
    """The op types of ``function``'s graph for rows of unknown count, the
    branches of its conds included."""
    graph = tf.function(function, input_signature=[UNKNOWN]).get_concrete_function().graph.as_graph_def()
    return {node.op for node in graph.node} | {node.op for f in graph.library.function for node in f.node_def}


@pytest.mark.parametrize("count", COUNTS)
def test_sorted_rows_gives_tf_sorts_values_static_and_under_a_bound(count):
    rows = tf.constant(hand_made(count, count))
    expected = bits(tf.sort(rows, axis=0))
    np.testing.assert_array_equal(bits(_tensor.sorted_rows(rows)), expected)
    np.testing.assert_array_equal(bits(np.sort(rows.numpy(), axis=0)), expected)
    for bound in (count, count + 3) if count in IN_GRAPH else ():
        in_graph = tf.function(lambda r: _tensor.sorted_rows(r, bound), input_signature=[UNKNOWN])
        np.testing.assert_array_equal(bits(in_graph(rows)), expected)


def test_sorted_rows_takes_tf_sort_over_the_bound_and_past_the_network():
    # An unknown count over its bound at run time, no bound, and more rows
    # than the network takes: tf.sort; the graph holds no network then.
    rows = tf.constant(hand_made(9, 1))
    over = tf.function(lambda r: _tensor.sorted_rows(r, 5), input_signature=[UNKNOWN])
    np.testing.assert_array_equal(bits(over(rows)), bits(tf.sort(rows, axis=0)))
    for bound in (None, _tensor.SORTING_NETWORK_MAX + 1):
        ops = op_types(lambda r: _tensor.sorted_rows(r, bound))
        assert "Minimum" not in ops and "TopKV2" in ops
    big = tf.constant(hand_made(_tensor.SORTING_NETWORK_MAX + 1, 2))
    np.testing.assert_array_equal(bits(_tensor.sorted_rows(big)), bits(tf.sort(big, axis=0)))
    assert "Minimum" in op_types(lambda r: _tensor.sorted_rows(r, 9))
    # Up to the largest bound the network takes: padded, every count below it sorts.
    top = _tensor.SORTING_NETWORK_MAX
    in_graph = tf.function(lambda r: _tensor.sorted_rows(r, top), input_signature=[UNKNOWN])
    for count in (1, 2, 61, top):
        rows = tf.constant(hand_made(count, 3))
        np.testing.assert_array_equal(bits(in_graph(rows)), bits(tf.sort(rows, axis=0)))


@pytest.mark.parametrize("count", COUNTS)
def test_coordinate_median_is_bit_for_bit_numpys_and_the_tf_sort_one(count):
    x = hand_made(count, 100 + count)
    rows = tf.constant(x)
    with np.errstate(invalid="ignore", over="ignore"):  # -inf + inf, 3e38 + 3e38: as in float32
        expected = np.median(x, axis=0)
    np.testing.assert_array_equal(bits(_tensor.coordinate_median(rows)), bits(expected))
    # As before, but for an odd count with a middle value past 1.7e38, which
    # the mean of the middle value with itself turned into inf.
    before = before_median(rows)
    overflowed = (count % 2 == 1) & np.isinf(before) & np.isfinite(expected)
    np.testing.assert_array_equal(bits(before[~overflowed]), bits(expected[~overflowed]))
    assert (np.abs(expected[overflowed]) == np.float32(3e38)).all()
    for bound in (count + 5, max(count - 1, 1)) if count in IN_GRAPH else ():
        in_graph = tf.function(lambda r: median(r, bound)[0], input_signature=[UNKNOWN])
        np.testing.assert_array_equal(bits(in_graph(rows)), bits(expected))


@pytest.mark.parametrize("count", COUNTS)
def test_trimmed_mean_is_bit_for_bit_the_tf_sort_one(count):
    x = hand_made(count, 200 + count)
    rows = tf.constant(x)
    trims = sorted({0, 1, (count - 1) // 2})
    for k in trims:
        expected = before_trimmed_mean(rows, k)
        np.testing.assert_array_equal(bits(trimmed_mean(rows, k=k)[0]), bits(expected))
        # In a graph for the deepest trim only: each bound traces a network again.
        for bound in (count + 5, max(count - 1, 1)) if count in IN_GRAPH and k == trims[-1] else ():
            in_graph = tf.function(lambda r: trimmed_mean(r, k=k, max_rows=bound)[0], input_signature=[UNKNOWN])
            np.testing.assert_array_equal(bits(in_graph(rows)), bits(expected))
        # NumPy sums in another order; on the small integers (exact sums) it agrees bit for bit.
        trim = min(k, (count - 1) // 2)
        numpy = np.sort(x[:, :8], axis=0)[trim : count - trim].mean(axis=0)
        np.testing.assert_array_equal(bits(numpy), bits(expected[:8]))


def test_the_plugins_sort_under_clients_per_round_in_the_server_stage():
    # The server stage hands the kept rows, a count known only in the graph;
    # the plugins bound it by clients_per_round (here 12, 7 rows kept).
    x = hand_made(7, 7)
    ctx = context(7, facts=facts_with(12))
    for rule, expected in [(Median(), np.median(x, axis=0)),
                           (TrimmedMean(k=2), before_trimmed_mean(tf.constant(x), 2))]:
        def aggregate(r):
            return rule.aggregate(r, tf.ones([tf.shape(r)[0]]), ctx)[0]

        assert "Minimum" in op_types(aggregate), rule
        got = tf.function(aggregate, input_signature=[UNKNOWN])(tf.constant(x))
        np.testing.assert_array_equal(bits(got), bits(expected))


def test_signed_zeros_keep_their_value_but_not_always_their_sign():
    # -0.0 == +0.0: tf.sort keeps their row order, the network's minimum and
    # maximum may return either; only the sign of a zero result can differ.
    zeros = np.array([[0.0, -0.0, -0.0], [-0.0, 0.0, -0.0], [-0.0, -0.0, 0.0]], np.float32)
    rows = tf.constant(np.concatenate([zeros, zeros + np.float32([[1.0], [2.0], [3.0]])], axis=1))
    np.testing.assert_array_equal(_tensor.sorted_rows(rows).numpy(), tf.sort(rows, axis=0).numpy())
    for got, expected in [(_tensor.coordinate_median(rows), before_median(rows)),
                          (trimmed_mean(rows, k=0)[0], before_trimmed_mean(rows, 0))]:
        np.testing.assert_array_equal(got.numpy(), expected)
        np.testing.assert_array_equal(bits(got)[3:], bits(expected)[3:])
