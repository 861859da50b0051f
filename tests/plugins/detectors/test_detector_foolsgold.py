"""FoolsGold: planted sybils, the authors' formula, history across rounds."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.plugins.detectors import foolsgold as D

from detector_harness import (
    DIM, FACTS, MLP_LAYERS, SOURCE, SOURCE_COLUMNS, auror_case, check_registers,
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision,
    check_runs_on_empty_all_dropped_and_single_row_rounds, diverse_sybil_case, flip_case, layers_for, outlier_case, run,
    sybil_case,
)


@pytest.mark.parametrize("case", [sybil_case, diverse_sybil_case])
def test_foolsgold_drops_planted_sybils_and_keeps_the_benign(case):
    updates = case(seed=1)
    _, score, kept, state = run(D.FoolsGold(), updates, layers=layers_for(60))
    assert kept.tolist() == [True] * 8 + [False] * 3
    assert (score[:8] > 0.5).all() and (score[8:] == 0).all()
    np.testing.assert_allclose(state["history"][:11], updates)
    assert (state["history"][11:] == 0).all()


def test_foolsgold_weights_follow_the_authors_formula():
    rng = np.random.default_rng(5)
    grads = rng.normal(size=(7, 12))
    grads[5] = grads[4] + 0.3 * rng.normal(size=12)
    grads[6] = grads[4] + 1.5 * rng.normal(size=12)  # close to a sybil: pardoning matters
    kappa = 0.1  # keeps the logits below 1, so the comparison sees every step (the 0.99 cap too)
    # The authors' NumPy steps, written out.
    unit = grads / np.linalg.norm(grads, axis=1, keepdims=True)
    cs = unit @ unit.T - np.eye(7)
    top = cs.max(axis=1)
    for i in range(7):
        for j in range(7):
            if i != j and top[i] < top[j]:
                cs[i, j] *= top[i] / top[j]
    weight = np.clip(1 - cs.max(axis=1), 0, 1)
    weight /= weight.max()
    weight[weight == 1] = 0.99
    with np.errstate(divide="ignore"):
        weight = np.clip(kappa * (np.log(weight / (1 - weight)) + 0.5), 0, 1)
    assert len(np.unique(weight)) >= 5
    np.testing.assert_allclose(D.foolsgold_weights(tf.constant(grads, tf.float32), kappa).numpy(), weight, atol=1e-5)


def test_foolsgold_history_carries_over_rounds_through_the_state():
    rng = np.random.default_rng(2)
    detector = D.FoolsGold()
    # Round 1: clients 3 and 4 send the same large update; both are dropped.
    first = rng.normal(size=(6, 60)).astype(np.float32)
    first[4] = first[3]
    first[3:5] *= 10
    _, _, kept, state = run(detector, first, ids=[0, 1, 2, 3, 4, 5], layers=layers_for(60))
    assert kept.tolist() == [True, True, True, False, False, True]
    # Round 2: they send unrelated small updates, among other clients.
    second = rng.normal(size=(5, 60)).astype(np.float32)
    ids = [4, 7, 3, 9, 0]
    _, _, with_history, new_state = run(detector, second, ids=ids, state=state, round_number=2,
                                        layers=layers_for(60))
    _, _, fresh, _ = run(detector, second, ids=ids, round_number=2, layers=layers_for(60))
    assert fresh.all(), "alone, round 2 is innocent"
    assert with_history.tolist() == [False, True, False, True, True], "their history still gives them away"
    np.testing.assert_allclose(new_state["history"][3], first[3] + second[2], rtol=1e-6)
    np.testing.assert_allclose(new_state["history"][7], second[1])
    np.testing.assert_allclose(new_state["history"][1], state["history"][1])


def test_rows_dropped_earlier_stay_dropped_and_change_no_decision():
    check_rows_dropped_earlier_stay_dropped_and_change_no_decision(D.FoolsGold(), lambda: diverse_sybil_case(seed=4), layers_for(60))


def test_runs_on_empty_all_dropped_and_single_row_rounds():
    check_runs_on_empty_all_dropped_and_single_row_rounds(D.FoolsGold(), lambda: diverse_sybil_case(seed=4), layers_for(60))


def test_registration():
    check_registers(D, "foolsgold", D.FoolsGold)
