"""Sign flipping: the three update-replacement variants."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.attacks import sign_flip as A

from attack_harness import (
    D, FACTS, attack_rows, check_only_own_rows_change, check_registers, check_traces_with_an_unknown_number_of_rows,
    context, images, matrix, numpy_krum, pairwise_sq, perturbation, poisoned, recovered_gamma,
)


def test_sign_flip_variants():
    updates, own, benign = matrix(other=(9,))
    np.testing.assert_array_equal(attack_rows(A.SignFlip(), updates, own, benign)[own], -updates[own])
    np.testing.assert_allclose(attack_rows(A.SignFlip(variant="scaled", scale=3.0), updates, own, benign)[own],
                               -3.0 * updates[own], rtol=1e-6)
    mean = attack_rows(A.SignFlip(variant="benign_mean"), updates, own, benign)[own]
    np.testing.assert_allclose(mean, np.tile(-updates[benign].mean(0), (2, 1)), rtol=1e-5, atol=1e-6)


VARIANTS = {"sign_flip": A.SignFlip(), "sign_flip_mean": A.SignFlip(variant="benign_mean"), "sign_flip_scaled": A.SignFlip(variant="scaled")}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_own_rows_change(variant):
    check_only_own_rows_change(VARIANTS[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_traces_with_an_unknown_number_of_rows(variant):
    check_traces_with_an_unknown_number_of_rows(VARIANTS[variant])


def test_registration():
    check_registers(A, "sign_flip", A.SignFlip)
