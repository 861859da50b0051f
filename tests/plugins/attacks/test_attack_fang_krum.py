"""Fang et al.'s attack on Krum, checked with a NumPy Krum."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.attacks import fang_krum as A

from attack_harness import (
    D, FACTS, attack_rows, check_only_own_rows_change, check_registers, check_traces_with_an_unknown_number_of_rows,
    context, images, matrix, numpy_krum, pairwise_sq, perturbation, poisoned, recovered_gamma,
)


@pytest.mark.parametrize("seed", [0, 1, 4])
def test_fang_krum_crafted_row_is_krums_choice_and_points_against_the_benign_mean(seed):
    updates, own, benign = matrix(seed=seed)
    out = attack_rows(A.FangKrum(), updates, own, benign)
    crafted = out[own]
    np.testing.assert_array_equal(crafted[0], crafted[1])  # copies
    benign_sum = updates[benign].sum(0)
    lam = np.abs(crafted[0]).max()
    np.testing.assert_allclose(crafted[0], -lam * np.sign(benign_sum), rtol=1e-6)
    assert crafted[0] @ updates[benign].mean(0) < 0
    m, n = own.sum(), len(updates)
    assert numpy_krum(out, f=m) in np.flatnonzero(own)
    # The search started from Fang's bound and halved; twice the final lambda was refused.
    ref = updates[benign].astype(np.float64)
    dist = np.sqrt(pairwise_sq(ref, ref))
    np.fill_diagonal(dist, np.inf)
    start = (np.sort(dist, 1)[:, : n - m - 2].sum(1).min() / (n - 2 * m - 1)
             + np.linalg.norm(ref, axis=1).max()) / np.sqrt(D)
    halvings = np.log2(start / lam)
    assert halvings == pytest.approx(round(halvings), abs=1e-4) and round(halvings) >= 1
    doubled = out.copy()
    doubled[own] = 2 * crafted
    assert numpy_krum(doubled, f=m) not in np.flatnonzero(own)


def test_fang_krum_partial_knowledge_uses_the_attackers_pre_attack_direction():
    updates, own, benign = matrix(seed=2, own=(0, 3, 5, 8), centre=0.0)
    updates[own] += 0.5  # the attackers' own data pushes up: their direction differs from the benign one
    out = attack_rows(A.FangKrum(knowledge="partial"), updates, own, benign)
    lam = np.abs(out[own][0]).max()
    np.testing.assert_allclose(out[own], np.tile(-lam * np.sign(updates[own].sum(0)), (4, 1)), rtol=1e-6)
    assert lam > 0


VARIANTS = {"fang_krum": A.FangKrum(), "fang_krum_partial": A.FangKrum(knowledge="partial", f=1)}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_own_rows_change(variant):
    check_only_own_rows_change(VARIANTS[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_traces_with_an_unknown_number_of_rows(variant):
    check_traces_with_an_unknown_number_of_rows(VARIANTS[variant])


def test_registration():
    check_registers(A, "fang_krum", A.FangKrum)
