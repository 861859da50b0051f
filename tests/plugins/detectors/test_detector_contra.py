"""CONTRA: reputation across rounds, top-k similarity."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.plugins.detectors import contra as D

from detector_harness import (
    DIM, FACTS, MLP_LAYERS, SOURCE, SOURCE_COLUMNS, auror_case, check_registers,
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision,
    check_runs_on_empty_all_dropped_and_single_row_rounds, diverse_sybil_case, flip_case, layers_for, outlier_case, run,
    sybil_case,
)


def test_contra_reputation_falls_round_after_round_for_colluders_until_dropped():
    detector = D.Contra(k=2, delta=0.1, threshold=0.5, min_reputation=0.5)
    state = detector.initial_state(60, FACTS)
    rng = np.random.default_rng(4)
    history = []
    for round_number in range(1, 9):
        updates = diverse_sybil_case(seed=round_number)  # colluders: rows 8-10
        ids = np.array([0, 1, 2, 3, 4, 5, 6, 7, 17, 18, 19])
        order = rng.permutation(len(ids))
        _, score, kept, state = run(detector, updates[order], ids=ids[order], state=state,
                                    round_number=round_number, layers=layers_for(60))
        back = np.argsort(order)
        score, kept = score[back], kept[back]
        history.append(state["reputation"][[0, 17]].copy())
        assert (score[:8] == 1.0).all() and kept[:8].all()
        np.testing.assert_allclose(score[8:], max(0.0, 1 - 0.1 * round_number), atol=1e-5)
        # Dropped once the reputation falls below 1/2: from round 6 on.
        assert kept[8:].tolist() == [round_number < 6] * 3, round_number
    assert [h[1] for h in history] == sorted((h[1] for h in history), reverse=True)
    assert state["reputation"][8:17].tolist() == [1.0] * 9, "clients that never took part keep their reputation"


def test_contra_top_k_mean_similarity():
    x = tf.constant([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    np.testing.assert_allclose(D.top_k_mean_similarity(x, 2).numpy(), [0.5, 0.5, 0.0, -0.5], atol=1e-6)
    np.testing.assert_allclose(D.top_k_mean_similarity(x, 9).numpy(), [0.0, 0.0, 0.0, -2 / 3], atol=1e-6)
    assert D.top_k_mean_similarity(x[:1], 2).numpy().tolist() == [0.0]


def test_rows_dropped_earlier_stay_dropped_and_change_no_decision():
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision(D.Contra(min_reputation=0.95), lambda: diverse_sybil_case(seed=4), layers_for(60))


def test_runs_on_empty_all_dropped_and_single_row_rounds():
    check_runs_on_empty_all_dropped_and_single_row_rounds(D.Contra(min_reputation=0.95), lambda: diverse_sybil_case(seed=4), layers_for(60))


def test_registration():
    check_registers(D, "contra", D.Contra)
