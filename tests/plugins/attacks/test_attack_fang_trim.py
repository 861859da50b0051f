"""Fang et al.'s attack on trimmed mean: samples beyond the benign extremes."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.attacks import fang_trim as A

from attack_harness import (
    D, FACTS, attack_rows, check_only_own_rows_change, check_registers, check_traces_with_an_unknown_number_of_rows,
    context, images, matrix, numpy_krum, pairwise_sq, perturbation, poisoned, recovered_gamma,
)


def trim_interval(ref, b=2.0):
    s = np.sign(ref.sum(0))
    high, low = ref.max(0), ref.min(0)
    lo = np.where(s > 0, np.where(low > 0, low / b, b * low), high)
    hi = np.where(s > 0, low, np.where(high > 0, b * high, high / b))
    return s, lo, hi


def test_fang_trim_samples_beyond_the_benign_extreme_opposite_the_benign_direction():
    updates, own, benign = matrix(seed=4, k=12, own=(2, 6, 9), other=(11,), centre=0.0, noise=0.3)
    # Columns that exercise every branch: all positive, all negative, mixed.
    updates[:, :5] += 1.0
    updates[:, 5:10] -= 1.0
    out = attack_rows(A.FangTrim(), updates, own, benign)
    ref = updates[benign].astype(np.float64)
    s, lo, hi = trim_interval(ref)
    rows = out[own]
    assert (rows >= lo - 1e-6).all() and (rows <= hi + 1e-6).all()
    assert (rows[:, s > 0] <= ref.min(0)[s > 0] + 1e-6).all()  # below the benign minimum where benign goes up
    assert (rows[:, s < 0] >= ref.max(0)[s < 0] - 1e-6).all()  # above the benign maximum where it goes down
    # All benign negative: between the maximum and half of it (Fang's [max/b, max]), still negative.
    high = ref.max(0)[5:10]
    assert (rows[:, 5:10] >= high - 1e-6).all() and (rows[:, 5:10] <= high / 2 + 1e-6).all() and (high < 0).all()
    assert not np.allclose(rows[0], rows[1])  # each attacker samples its own row


def test_fang_trim_partial_knowledge_samples_three_to_four_sigma_opposite():
    updates, own, benign = matrix(seed=5, own=(1, 2, 3, 4), noise=0.5)
    out = attack_rows(A.FangTrim(knowledge="partial"), updates, own, benign)
    ref = updates[own].astype(np.float64)
    mu, sigma = ref.mean(0), ref.std(0)
    up = np.sign(mu) > 0
    rows = out[own]
    assert (rows[:, up] <= (mu - 3 * sigma)[up] + 1e-5).all() and (rows[:, up] >= (mu - 4 * sigma)[up] - 1e-5).all()
    assert (rows[:, ~up] >= (mu + 3 * sigma)[~up] - 1e-5).all()
    assert (rows[:, ~up] <= (mu + 4 * sigma)[~up] + 1e-5).all()


VARIANTS = {"fang_trim": A.FangTrim(), "fang_trim_partial": A.FangTrim(knowledge="partial")}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_own_rows_change(variant):
    check_only_own_rows_change(VARIANTS[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_traces_with_an_unknown_number_of_rows(variant):
    check_traces_with_an_unknown_number_of_rows(VARIANTS[variant])


def test_registration():
    check_registers(A, "fang_trim", A.FangTrim)
