"""Min-Sum: within the benign score bound with the largest gamma."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.attacks import min_sum as A

from attack_harness import (
    D, FACTS, attack_rows, check_only_own_rows_change, check_registers, check_traces_with_an_unknown_number_of_rows,
    context, images, matrix, numpy_krum, pairwise_sq, perturbation, poisoned, recovered_gamma,
)


def min_sum_ok(row, ref, threshold="max"):
    scores = pairwise_sq(ref, ref).sum(1)
    bound = scores.max() if threshold == "max" else scores.min()
    return pairwise_sq(row[None], ref).sum() <= bound * (1 + 1e-6)


@pytest.mark.parametrize("kind", ["unit_vec", "std", "sign"])
@pytest.mark.parametrize("threshold", ["max", "min"])
def test_min_sum_row_keeps_its_score_within_the_benign_bound_with_the_largest_gamma(kind, threshold):
    updates, own, benign = matrix(seed=7, other=(0,), centre=0.5)
    out = attack_rows(A.MinSum(perturbation=kind, threshold=threshold), updates, own, benign)
    ref = updates[benign].astype(np.float64)
    row = out[own][0].astype(np.float64)
    gamma = recovered_gamma(row, ref, kind)
    assert 0 < gamma < 19.9
    assert min_sum_ok(row, ref, threshold)
    assert not min_sum_ok(ref.mean(0) - (gamma + 1e-3) * perturbation(ref, kind), ref, threshold)


def test_min_sum_with_the_minimum_score_is_stealthier_than_with_the_maximum():
    updates, own, benign = matrix(seed=8)
    ref = updates[benign].astype(np.float64)
    loose = recovered_gamma(attack_rows(A.MinSum(), updates, own, benign)[own][0], ref, "unit_vec")
    tight = recovered_gamma(attack_rows(A.MinSum(threshold="min"), updates, own, benign)[own][0], ref, "unit_vec")
    assert 0 < tight < loose


VARIANTS = {"min_sum": A.MinSum(perturbation="sign")}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_own_rows_change(variant):
    check_only_own_rows_change(VARIANTS[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_traces_with_an_unknown_number_of_rows(variant):
    check_traces_with_an_unknown_number_of_rows(VARIANTS[variant])


def test_registration():
    check_registers(A, "min_sum", A.MinSum)
