"""Scaling: model replacement under FedAvg, shared gamma."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.attacks import scaling as A

from attack_harness import (
    D, FACTS, attack_rows, check_only_own_rows_change, check_registers, check_traces_with_an_unknown_number_of_rows,
    context, images, matrix, numpy_krum, pairwise_sq, perturbation, poisoned, recovered_gamma,
)


@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_model_replacement_makes_the_fedavg_aggregate_the_attackers_model(eta):
    n, d = 5, 12
    facts = Facts(num_clients=20, clients_per_round=n, num_classes=3, input_shape=(2,), server_learning_rate=eta)
    rng = np.random.default_rng(3)
    global_model = rng.normal(size=d).astype(np.float32)
    target_model = rng.normal(size=d).astype(np.float32)
    benign = rng.normal(size=(n - 1, d))
    benign -= benign.mean(0)  # benign updates that cancel (a converged model, as the paper assumes)
    updates = np.vstack([benign[:2], target_model - global_model, benign[2:]]).astype(np.float32)
    own = np.arange(n) == 2
    out = attack_rows(A.Scaling(), updates, own, ~own, context(n, d, facts))
    np.testing.assert_allclose(global_model + eta * out.mean(0), target_model, atol=1e-4)
    # Two attackers sharing gamma replace the model once; without sharing they overshoot.
    pair = np.vstack([target_model - global_model] * 2 + [benign[:3] - benign[:3].mean(0)]).astype(np.float32)
    own2 = np.arange(n) < 2
    shared = attack_rows(A.Scaling(share=True), pair, own2, ~own2, context(n, d, facts))
    np.testing.assert_allclose(global_model + eta * shared.mean(0), target_model, atol=1e-4)
    doubled = attack_rows(A.Scaling(), pair, own2, ~own2, context(n, d, facts))
    np.testing.assert_allclose(global_model + eta * doubled.mean(0), 2 * target_model - global_model, atol=1e-4)
    np.testing.assert_allclose(attack_rows(A.Scaling(gamma=3), updates, own, ~own)[own], 3 * updates[own])


VARIANTS = {"scaling": A.Scaling()}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_own_rows_change(variant):
    check_only_own_rows_change(VARIANTS[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_traces_with_an_unknown_number_of_rows(variant):
    check_traces_with_an_unknown_number_of_rows(VARIANTS[variant])


def test_registration():
    check_registers(A, "scaling", A.Scaling)
