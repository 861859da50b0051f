"""A Little Is Enough: z against the published vectors, rows from benign or own statistics."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.attacks import alie as A

from attack_harness import (
    D, FACTS, attack_rows, check_only_own_rows_change, check_registers, check_traces_with_an_unknown_number_of_rows,
    context, images, matrix, numpy_krum, pairwise_sq, perturbation, poisoned, recovered_gamma,
)


Z_VECTORS = [(20, 4, 0.385, 0.157), (20, 8, 1.036, 0.674), (50, 12, 0.583, 0.336), (50, 24, 1.751, 1.426),
             (100, 20, 0.496, 0.286)]


@pytest.mark.parametrize("n, m, paper, library", Z_VECTORS)
def test_alie_z_matches_every_vector_of_algorithms_md(n, m, paper, library):
    assert round(A.alie_z(n, m, "paper"), 3) == paper
    assert round(A.alie_z(n, m, "library"), 3) == library


def test_alie_z_refuses_an_undefined_quantile():
    with pytest.raises(ValueError):
        A.alie_z(4, 4)  # s = -1: quantile 5/4
    assert A.ALIE().check(Facts(num_clients=4, clients_per_round=4, num_classes=2, input_shape=(2,),
                                num_attackers=4))
    assert A.ALIE(z=1.0).check(Facts(num_clients=4, clients_per_round=4, num_classes=2, input_shape=(2,),
                                     num_attackers=4)) == []


def test_expected_attackers_scales_by_the_sampled_share_and_is_at_least_one():
    assert A.expected_attackers(Facts(100, 20, 10, (2,), num_attackers=20)) == 4
    assert A.expected_attackers(Facts(100, 10, 10, (2,), num_attackers=5)) == 1  # 0.5 rounds up
    assert A.expected_attackers(Facts(100, 10, 10, (2,), num_attackers=1)) == 1  # 0.1, at least one


@pytest.mark.parametrize("sign", [-1, 1])
def test_alie_rows_are_mean_plus_sign_z_std_of_the_benign_rows(sign):
    updates, own, benign = matrix(other=(9,))
    out = attack_rows(A.ALIE(z=1.5, sign=sign), updates, own, benign)
    ref = updates[benign].astype(np.float64)
    expected = ref.mean(0) + sign * 1.5 * ref.std(0)
    np.testing.assert_allclose(out[own], np.tile(expected, (own.sum(), 1)), rtol=1e-5, atol=1e-5)


def test_alie_default_z_comes_from_clients_per_round_and_expected_attackers():
    facts = Facts(num_clients=100, clients_per_round=20, num_classes=4, input_shape=(2,), num_attackers=20)
    updates, own, benign = matrix(k=20, own=(0, 5, 11, 19))
    out = attack_rows(A.ALIE(), updates, own, benign, context(20, facts=facts))
    ref = updates[benign].astype(np.float64)
    np.testing.assert_allclose(out[own][0], ref.mean(0) - A.alie_z(20, 4) * ref.std(0), rtol=1e-5, atol=1e-5)
    library = attack_rows(A.ALIE(variant="library"), updates, own, benign, context(20, facts=facts))
    np.testing.assert_allclose(library[own][0], ref.mean(0) - 0.157 * ref.std(0), atol=2e-3)


def test_alie_partial_knowledge_reads_the_attackers_own_rows():
    updates, own, benign = matrix(own=(1, 4, 6))
    out = attack_rows(A.ALIE(z=1.0, knowledge="partial"), updates, own, benign)
    ref = updates[own].astype(np.float64)
    np.testing.assert_allclose(out[own][0], ref.mean(0) - ref.std(0), rtol=1e-5, atol=1e-5)


VARIANTS = {"alie": A.ALIE(), "alie_partial": A.ALIE(knowledge="partial")}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_own_rows_change(variant):
    check_only_own_rows_change(VARIANTS[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_traces_with_an_unknown_number_of_rows(variant):
    check_traces_with_an_unknown_number_of_rows(VARIANTS[variant])


def test_registration():
    check_registers(A, "alie", A.ALIE)
