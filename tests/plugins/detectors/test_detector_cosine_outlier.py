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
