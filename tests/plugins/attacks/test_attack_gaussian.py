"""Gaussian attack: independent rows of standard deviation sigma, from the round's seed."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.attacks import gaussian as A

from attack_harness import (
    D, FACTS, attack_rows, check_only_own_rows_change, check_registers, check_traces_with_an_unknown_number_of_rows,
    context, images, matrix, numpy_krum, pairwise_sq, perturbation, poisoned, recovered_gamma,
)


def test_gaussian_rows_have_standard_deviation_sigma_and_are_independent():
    updates, own, benign = matrix(d=20000)
    ctx = context(10, 20000)
    out = attack_rows(A.Gaussian(), updates, own, benign, ctx)
    rows = out[own]
    assert abs(rows.std() / 200.0 - 1) < 0.02 and abs(rows.mean()) < 5.0
    assert not np.allclose(rows[0], rows[1])
    np.testing.assert_array_equal(out, attack_rows(A.Gaussian(), updates, own, benign, ctx))  # stateless
    other = attack_rows(A.Gaussian(sigma=2.0), updates, own, benign, ctx)[own]
    assert abs(other.std() / 2.0 - 1) < 0.02


VARIANTS = {"gaussian": A.Gaussian()}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_own_rows_change(variant):
    check_only_own_rows_change(VARIANTS[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_traces_with_an_unknown_number_of_rows(variant):
    check_traces_with_an_unknown_number_of_rows(VARIANTS[variant])


def test_registration():
    check_registers(A, "gaussian", A.Gaussian)
