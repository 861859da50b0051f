"""Inner product manipulation: minus epsilon times the reference mean."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.attacks import ipm as A

from attack_harness import (
    D, FACTS, attack_rows, check_only_own_rows_change, check_registers, check_traces_with_an_unknown_number_of_rows,
    context, images, matrix, numpy_krum, pairwise_sq, perturbation, poisoned, recovered_gamma,
)


def test_ipm_row_is_minus_epsilon_times_the_benign_mean():
    updates, own, benign = matrix(other=(9,))
    out = attack_rows(A.IPM(epsilon=0.5), updates, own, benign)
    np.testing.assert_allclose(out[own], np.tile(-0.5 * updates[benign].mean(0), (2, 1)), rtol=1e-5, atol=1e-6)
    partial = attack_rows(A.IPM(epsilon=2.0, knowledge="partial"), updates, own, benign)
    np.testing.assert_allclose(partial[own][1], -2.0 * updates[own].mean(0), rtol=1e-5, atol=1e-6)


VARIANTS = {"ipm": A.IPM()}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_own_rows_change(variant):
    check_only_own_rows_change(VARIANTS[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_traces_with_an_unknown_number_of_rows(variant):
    check_traces_with_an_unknown_number_of_rows(VARIANTS[variant])


def test_registration():
    check_registers(A, "ipm", A.IPM)
