"""Min-Max: within the benign diameter with the largest gamma."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.attacks import min_max as A

from attack_harness import (
    D, FACTS, attack_rows, check_only_own_rows_change, check_registers, check_traces_with_an_unknown_number_of_rows,
    context, images, matrix, numpy_krum, pairwise_sq, perturbation, poisoned, recovered_gamma,
)


def min_max_ok(row, ref):
    return pairwise_sq(row[None], ref).max() <= pairwise_sq(ref, ref).max() * (1 + 1e-6)


@pytest.mark.parametrize("kind", ["unit_vec", "std", "sign"])
def test_min_max_row_stays_within_the_benign_diameter_with_the_largest_gamma(kind):
    updates, own, benign = matrix(seed=6, other=(0,), centre=0.5)
    out = attack_rows(A.MinMax(perturbation=kind), updates, own, benign)
    ref = updates[benign].astype(np.float64)
    row = out[own][0].astype(np.float64)
    np.testing.assert_array_equal(out[own][0], out[own][1])
    gamma = recovered_gamma(row, ref, kind)
    assert 0 < gamma < 19.9  # found inside the search range, not at its edge
    assert min_max_ok(row, ref)
    p = perturbation(ref, kind)
    assert not min_max_ok(ref.mean(0) - (gamma + 1e-3) * p, ref)  # a slightly larger gamma breaks the bound


def test_min_max_partial_knowledge_reads_own_rows():
    updates, own, benign = matrix(seed=9, own=(1, 2, 5, 8), centre=0.5)
    out = attack_rows(A.MinMax(knowledge="partial"), updates, own, benign)
    ref = updates[own].astype(np.float64)
    row = out[own][0].astype(np.float64)
    gamma = recovered_gamma(row, ref, "unit_vec")
    assert gamma > 0 and min_max_ok(row, ref)
    assert not min_max_ok(ref.mean(0) - (gamma + 1e-3) * perturbation(ref, "unit_vec"), ref)


VARIANTS = {"min_max": A.MinMax(perturbation="std"), "min_max_partial": A.MinMax(knowledge="partial")}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_own_rows_change(variant):
    check_only_own_rows_change(VARIANTS[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_traces_with_an_unknown_number_of_rows(variant):
    check_traces_with_an_unknown_number_of_rows(VARIANTS[variant])


def test_registration():
    check_registers(A, "min_max", A.MinMax)
