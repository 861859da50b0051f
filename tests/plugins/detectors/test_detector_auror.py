"""Auror: the planted group, the exact 1-D split."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.plugins.detectors import auror as D

from detector_harness import (
    DIM, FACTS, MLP_LAYERS, SOURCE, SOURCE_COLUMNS, auror_case, check_registers,
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision,
    check_runs_on_empty_all_dropped_and_single_row_rounds, diverse_sybil_case, flip_case, layers_for, outlier_case, run,
    sybil_case,
)


def test_auror_drops_the_planted_group():
    updates = auror_case()
    _, score, kept, _ = run(D.Auror(alpha=0.01), updates, layers=layers_for(40))
    assert kept.tolist() == [True] * 10 + [False] * 3
    assert score[10:].min() > score[:10].max()
    # Benign only: no indicative feature, nothing dropped.
    assert run(D.Auror(alpha=0.01), updates[:10], layers=layers_for(40))[2].all()


def test_column_two_means_gap_is_the_exact_best_split():
    x = np.random.default_rng(1).normal(size=(9, 6)).astype(np.float32)
    expected = []
    for column in x.T:
        values = np.sort(column)
        costs = [((values[:k] - values[:k].mean()) ** 2).sum() + ((values[k:] - values[k:].mean()) ** 2).sum()
                 for k in range(1, len(values))]
        k = int(np.argmin(costs)) + 1
        expected.append(values[k:].mean() - values[:k].mean())
    np.testing.assert_allclose(D.column_two_means_gap(tf.constant(x)).numpy(), expected, rtol=1e-5)


def test_auror_scales_exactly_with_huge_rows_and_alpha():
    # Rows and alpha times a power of two (2^120: squares overflow float32):
    # the same rows are dropped and the scores, in update units, scale exactly.
    updates = auror_case()
    plain_score, plain_keep = (t.numpy() for t in D.auror(tf.constant(updates), 0.01))
    assert plain_keep.tolist() == [True] * 10 + [False] * 3
    scale = 2.0 ** 120
    score, keep = (t.numpy() for t in D.auror(tf.constant(updates * np.float32(scale)), 0.01 * scale))
    assert np.isfinite(score).all()
    np.testing.assert_array_equal(keep, plain_keep)
    np.testing.assert_array_equal(score, plain_score * np.float32(scale))


def test_rows_dropped_earlier_stay_dropped_and_change_no_decision():
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision(D.Auror(), lambda: auror_case(seed=4), layers_for(40))


def test_runs_on_empty_all_dropped_and_single_row_rounds():
    check_runs_on_empty_all_dropped_and_single_row_rounds(D.Auror(), lambda: auror_case(seed=4), layers_for(40))


def test_registration():
    check_registers(D, "auror", D.Auror)


def test_the_split_sorts_by_the_network_under_clients_per_round_bit_for_bit_as_tf_sort():
    # Rows of a count known only in the graph: bounded by clients_per_round,
    # the columns are sorted by the sorting network; unbounded, by tf.sort.
    rows = tf.constant(auror_case()[:11])
    unknown = [tf.TensorSpec([None, rows.shape[1]])]
    network = tf.function(lambda r: D.column_two_means_gap(r, FACTS.clients_per_round), input_signature=unknown)
    by_sort = tf.function(lambda r: D.column_two_means_gap(r), input_signature=unknown)
    graph = network.get_concrete_function().graph.as_graph_def()
    assert "Minimum" in {node.op for f in graph.library.function for node in f.node_def}
    np.testing.assert_array_equal(network(rows).numpy().view(np.uint32), by_sort(rows).numpy().view(np.uint32))
    _, keep = D.auror(rows, 0.01, FACTS.clients_per_round)
    assert keep.numpy().tolist() == [True] * 10 + [False]
