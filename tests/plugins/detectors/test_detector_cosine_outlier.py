"""Cosine outliers: the planted update pointing away."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.plugins.detectors import cosine_outlier as D

from detector_harness import (
    DIM, FACTS, MLP_LAYERS, SOURCE, SOURCE_COLUMNS, auror_case, check_registers,
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision,
    check_runs_on_empty_all_dropped_and_single_row_rounds, diverse_sybil_case, flip_case, layers_for, outlier_case, run,
    sybil_case,
)


def test_cosine_outlier_flags_the_planted_update_pointing_away_only():
    benign, long, away = outlier_case(seed=1)
    updates = np.concatenate([benign, [long], [away]])
    _, score, kept, _ = run(D.CosineOutlier(), updates, layers=layers_for(30))
    assert kept.tolist() == [True] * 13 + [False]
    assert score[13] < -3.5


def test_rows_dropped_earlier_stay_dropped_and_change_no_decision():
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision(D.CosineOutlier(), lambda: np.concatenate([outlier_case()[0], [outlier_case()[2]]]), layers_for(30))


def test_runs_on_empty_all_dropped_and_single_row_rounds():
    check_runs_on_empty_all_dropped_and_single_row_rounds(D.CosineOutlier(), lambda: np.concatenate([outlier_case()[0], [outlier_case()[2]]]), layers_for(30))


def test_registration():
    check_registers(D, "cosine_outlier", D.CosineOutlier)


def test_the_median_sorts_by_the_network_under_clients_per_round_bit_for_bit_as_tf_sort():
    # Rows of a count known only in the graph: bounded by clients_per_round,
    # the median's sort is the sorting network; unbounded, tf.sort.
    benign, long, away = outlier_case(seed=2)
    rows = tf.constant(np.concatenate([benign[:9], [long], [away]]))
    unknown = [tf.TensorSpec([None, rows.shape[1]])]
    network = tf.function(lambda r: D.cosine_outliers(r, 3.5, FACTS.clients_per_round), input_signature=unknown)
    by_sort = tf.function(lambda r: D.cosine_outliers(r, 3.5), input_signature=unknown)
    graph = network.get_concrete_function().graph.as_graph_def()
    assert "Minimum" in {node.op for f in graph.library.function for node in f.node_def}
    (z, keep), (z_sort, keep_sort) = network(rows), by_sort(rows)
    np.testing.assert_array_equal(z.numpy().view(np.uint32), z_sort.numpy().view(np.uint32))
    assert keep.numpy().tolist() == keep_sort.numpy().tolist() == [True] * 10 + [False]
