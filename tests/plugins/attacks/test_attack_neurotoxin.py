"""Neurotoxin: the mask of the last global update or of the benign mean, state across rounds."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.attacks import neurotoxin as A

from attack_harness import (
    D, FACTS, attack_rows, check_only_own_rows_change, check_registers, check_traces_with_an_unknown_number_of_rows,
    context, images, matrix, numpy_krum, pairwise_sq, perturbation, poisoned, recovered_gamma,
)


def test_neurotoxin_masks_the_top_coordinates_of_the_last_global_update():
    attack = A.Neurotoxin(target=0, ratio=0.1, boost=2.0)
    updates, own, benign = matrix(seed=10)
    state = {k: tf.constant(v) for k, v in attack.initial_state(D, FACTS).items()}
    g1 = np.zeros(D, np.float32)
    out, state = attack.apply(tf.constant(updates), tf.constant(own), tf.constant(benign),
                                                  context(10, global_weights=g1), state)
    np.testing.assert_allclose(np.asarray(out)[own], 2.0 * updates[own])  # first round: nothing known, no mask
    g2 = np.random.default_rng(1).permutation(np.linspace(-1, 1.2, D)).astype(np.float32)
    out, state = attack.apply(tf.constant(updates), tf.constant(own), tf.constant(benign),
                                                  context(10, global_weights=g2, round_number=2), state)
    out = np.asarray(out)
    top = np.argsort(-np.abs(g2 - g1))[:3]
    keep = np.ones(D, bool)
    keep[top] = False
    assert (out[own][:, top] == 0).all()
    np.testing.assert_allclose(out[own][:, keep], 2.0 * updates[own][:, keep])
    np.testing.assert_array_equal(np.asarray(state["previous_global"]), g2)


def test_neurotoxin_omniscient_masks_the_top_coordinates_of_the_benign_mean():
    updates, own, benign = matrix(seed=11)
    out = attack_rows(A.Neurotoxin(target=0, ratio=0.2, knowledge="omniscient"), updates, own, benign)
    top = np.argsort(-np.abs(updates[benign].mean(0)))[:6]
    assert (out[own][:, top] == 0).all()
    assert np.count_nonzero(out[own][0]) == D - 6


def test_neurotoxin_history_traces_with_state_and_unknown_rows():
    attack = A.Neurotoxin(target=0)
    ctx = context(10, global_weights=np.ones(D, np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, D], tf.float32), tf.TensorSpec([None], tf.bool),
                                  tf.TensorSpec([None], tf.bool), tf.TensorSpec([D], tf.float32),
                                  tf.TensorSpec([], tf.int32)])
    def poison(updates, own, benign, previous, has_previous):
        return attack.apply(updates, own, benign, ctx,
                                                {"previous_global": previous, "has_previous": has_previous})

    updates, own, benign = matrix(seed=14)
    out, state = poison(updates, own, benign, np.zeros(D, np.float32), np.int32(1))
    assert np.count_nonzero(np.asarray(out)[own][0]) == D - round(0.05 * D)
    assert int(state["has_previous"]) == 1


VARIANTS = {"neurotoxin": A.Neurotoxin(target=0, knowledge="omniscient")}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_own_rows_change(variant):
    check_only_own_rows_change(VARIANTS[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_traces_with_an_unknown_number_of_rows(variant):
    check_traces_with_an_unknown_number_of_rows(VARIANTS[variant])


def test_registration():
    check_registers(A, "neurotoxin", A.Neurotoxin)
