"""Tolpegin et al.'s PCA: the class columns, flipped clients separated, none dropped without flipping."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.plugins.detectors import label_flip_pca as D

from detector_harness import (
    DIM, FACTS, MLP_LAYERS, SOURCE, SOURCE_COLUMNS, auror_case, check_registers,
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision,
    check_runs_on_empty_all_dropped_and_single_row_rounds, diverse_sybil_case, flip_case, layers_for, outlier_case, run,
    sybil_case,
)


def test_class_columns_are_the_source_column_of_the_last_kernel_and_its_bias():
    assert D.class_columns(MLP_LAYERS, 3, SOURCE).tolist() == SOURCE_COLUMNS.tolist()
    # Flattened row-major, as the engine flattens a [6, 3] kernel.
    kernel = np.arange(18).reshape(6, 3)
    assert (D.class_columns(MLP_LAYERS, 3, 2)[:-1] - 30).tolist() == kernel[:, 2].tolist()
    assert D.class_columns(MLP_LAYERS, 3, 0, names=("dense_1/kernel",)).tolist() == list(range(30, 48, 3))
    with pytest.raises(ValueError, match="no 2-D output kernel"):
        D.class_columns(MLP_LAYERS, 5, 0)


@pytest.mark.parametrize("noisy", [False, True])
def test_label_flip_pca_separates_the_flipped_clients(noisy):
    updates = flip_case(seed=2, noisy_other_columns=noisy)
    _, score, kept, _ = run(D.LabelFlipPCA(source=SOURCE), updates)
    assert kept.tolist() == [True] * 10 + [False] * 3
    assert score[10:].min() > score[:10].max()


def test_label_flip_pca_drops_no_one_without_flipping():
    for seed in range(8):
        rng = np.random.default_rng(seed)
        updates = rng.normal(size=(12, DIM)).astype(np.float32)
        assert run(D.LabelFlipPCA(source=SOURCE), updates)[2].all(), seed


def test_label_flip_pca_checks_the_source_class_exists():
    assert D.LabelFlipPCA(source=2).check(FACTS) == []
    assert "does not exist" in D.LabelFlipPCA(source=3).check(FACTS)[0]


def test_rows_dropped_earlier_stay_dropped_and_change_no_decision():
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision(D.LabelFlipPCA(source=SOURCE), lambda: flip_case(seed=4), MLP_LAYERS)


def test_runs_on_empty_all_dropped_and_single_row_rounds():
    check_runs_on_empty_all_dropped_and_single_row_rounds(D.LabelFlipPCA(source=SOURCE), lambda: flip_case(seed=4), MLP_LAYERS)


def test_registration():
    check_registers(D, "label_flip_pca", D.LabelFlipPCA)
