"""Norm outliers: the planted long update, the modified z-score and the median of the kit, ``layers``."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Layer
from fedarena.plugins import _tensor

from fedarena.plugins.detectors import norm_outlier as D

from detector_harness import (
    DIM, FACTS, MLP_LAYERS, SOURCE, SOURCE_COLUMNS, auror_case, check_registers,
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision,
    check_runs_on_empty_all_dropped_and_single_row_rounds, diverse_sybil_case, flip_case, layers_for, outlier_case, run,
    sybil_case,
)


def test_norm_outlier_flags_the_planted_long_update_only():
    benign, long, away = outlier_case()
    updates = np.concatenate([benign, [long], [away]])
    _, score, kept, _ = run(D.NormOutlier(), updates, layers=layers_for(30))
    assert kept.tolist() == [True] * 12 + [False, True]
    assert score[12] > 3.5 and (np.abs(score[:12]) <= 3.5).all()


def test_robust_z_is_iglewicz_hoaglins_modified_z_score():
    values = np.array([1.0, 2.0, 2.5, 3.0, 40.0], np.float32)
    deviation = np.abs(values - 2.5)
    expected = 0.6745 * (values - 2.5) / np.median(deviation)
    np.testing.assert_allclose(_tensor.robust_z(tf.constant(values)).numpy(), expected, rtol=1e-6)
    # More than half equal (MAD 0): the mean absolute deviation stands in.
    values = np.array([1.0, 1.0, 1.0, 1.0, 5.0], np.float32)
    np.testing.assert_allclose(_tensor.robust_z(tf.constant(values)).numpy(), [0, 0, 0, 0, 4 / (1.253314 * 0.8)],
                               rtol=1e-6)
    assert _tensor.robust_z(tf.constant([2.0, 2.0])).numpy().tolist() == [0.0, 0.0]


def test_median_matches_numpy_along_either_axis_and_is_zero_when_empty():
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    np.testing.assert_allclose(_tensor.median(x, axis=0).numpy(), np.median(x, axis=0), rtol=1e-6)
    np.testing.assert_allclose(_tensor.median(x[:5], axis=0).numpy(), np.median(x[:5], axis=0), rtol=1e-6)
    np.testing.assert_allclose(_tensor.median(x[0]).numpy(), np.median(x[0]), rtol=1e-6)
    assert _tensor.median(tf.zeros([0])).numpy() == 0.0


def test_layers_restrict_the_columns_a_detector_looks_at():
    benign, long, _ = outlier_case()
    updates = np.concatenate([benign, [long]])
    wide = np.concatenate([np.zeros_like(updates), updates], axis=1)  # the signal sits in the second layer
    layers = (Layer("first/kernel:0", (30,), 0), Layer("second/kernel:0", (30,), 30))
    assert run(D.NormOutlier(layers=("second",)), wide, layers=layers)[2].tolist() == [True] * 12 + [False]
    assert run(D.NormOutlier(layers=("first",)), wide, layers=layers)[2].all()
    with pytest.raises(ValueError, match="match no layer"):
        run(D.NormOutlier(layers=("third",)), wide, layers=layers)


def test_rows_dropped_earlier_stay_dropped_and_change_no_decision():
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision(D.NormOutlier(), lambda: np.concatenate([outlier_case()[0], [outlier_case()[1]]]), layers_for(30))


def test_runs_on_empty_all_dropped_and_single_row_rounds():
    check_runs_on_empty_all_dropped_and_single_row_rounds(D.NormOutlier(), lambda: np.concatenate([outlier_case()[0], [outlier_case()[1]]]), layers_for(30))


def test_registration():
    check_registers(D, "norm_outlier", D.NormOutlier)
