"""Backdoor: the trigger on the poison-ratio share, the member's part, checks, boosting, its metric."""

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.attacks import backdoor as A
from fedarena.plugins import triggers as T
from fedarena.plugins.attacks.neurotoxin import Neurotoxin

from attack_harness import (
    D, FACTS, attack_rows, check_only_own_rows_change, check_registers, check_traces_with_an_unknown_number_of_rows,
    context, images, matrix, numpy_krum, pairwise_sq, perturbation, poisoned, recovered_gamma,
)


@pytest.mark.parametrize("ratio, count", [(0.3, 15), (1.0, 50), (0.01, 0)])
def test_backdoor_stamps_its_default_pixel_trigger_on_the_poison_ratio_share(ratio, count):
    x, y = images()
    px, py = poisoned(A.Backdoor(target=2, poison_ratio=ratio), x, y)
    changed = (px != x).reshape(50, -1).any(axis=1)
    assert changed.sum() == count
    assert (px[changed][:, 5:, 5:, :] == 1.0).all()  # 3 x 3 at the bottom right, at the maximum value
    outside = np.ones((8, 8, 1), bool)
    outside[5:, 5:] = False
    np.testing.assert_array_equal(px[:, outside], x[:, outside])
    assert (py[changed] == 2).all()
    np.testing.assert_array_equal(py[~changed], y[~changed])
    np.testing.assert_array_equal(px[~changed], x[~changed])


def test_attack_success_rate_counts_only_non_target_samples():
    attack = A.Backdoor(target=1)
    x, _ = images(n=8)
    y = np.array([1, 1, 1, 0, 0, 2, 3, 3], np.int32)
    marker = np.array([0, 0, 0, 1, 1, 1, 0, 1], bool)  # the model follows the trigger only on these
    x[:, 0, 0, 0] = np.where(marker, 0.4, 0.1)

    def predict(inputs):
        triggered = (inputs[:, 5:, 5:, :] == 1.0).all(axis=(1, 2, 3))
        to_target = triggered & (inputs[:, 0, 0, 0] > 0.3)
        return np.eye(4)[np.where(to_target, 1, 0)]

    found = attack.test_metrics(predict, x, y, FACTS)
    assert found == {"attack_success_rate": pytest.approx(4 / 5)}  # 5 non-target samples, 4 follow
    assert attack.test_metrics(predict, x[y == 1], y[y == 1], FACTS)["attack_success_rate"] != 0.0


def test_backdoor_stamps_the_part_of_its_trigger_that_the_member_picks():
    x, y = images()
    attack = A.Backdoor(target=1, poison_ratio=1.0, trigger=T.DBA(size=4, parts=2))
    for member in range(4):
        px, py = poisoned(attack, x, y, member=member)
        np.testing.assert_array_equal(px, attack.trigger.stamp(x, part=member))
        assert (py == 1).all()


def test_backdoor_checks_the_scenario_and_its_trigger():
    assert A.Backdoor(target=3).check(FACTS) == []
    assert "not a class" in A.Backdoor(target=4).check(FACTS)[0]
    assert A.Backdoor(target=0, trigger=T.Pixel(size=9)).check(FACTS) == [
        "backdoor trigger: pixel patch size 9 does not fit inputs of 8 x 8 pixels"]
    assert A.Backdoor(target=0, trigger=T.DBA(size=2, parts=5)).check(FACTS) == [
        "backdoor trigger: dba cannot split a patch of 4 pixels into 5 parts"]
    assert Neurotoxin(target=0, trigger=T.Pixel(size=9)).check(FACTS)[0].startswith("neurotoxin trigger: ")
    assert A.Backdoor(target=0, trigger=T.Blend()).check(FACTS) == []
    strip = Facts(10, 5, 4, (10,))
    assert A.Backdoor(target=0).check(strip) == [] and A.Backdoor(target=0, trigger=T.Pixel(size=11)).check(strip)


def test_backdoor_boost_scales_own_rows_only_when_asked():
    assert not A.Backdoor(target=0).poisons_updates and A.Backdoor(target=0).poisons_data
    updates, own, benign = matrix()
    out = attack_rows(A.Backdoor(target=0, boost=4.0), updates, own, benign)
    np.testing.assert_allclose(out[own], 4.0 * updates[own])


VARIANTS = {"backdoor_boost": A.Backdoor(target=0, boost=5.0)}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_own_rows_change(variant):
    check_only_own_rows_change(VARIANTS[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_traces_with_an_unknown_number_of_rows(variant):
    check_traces_with_an_unknown_number_of_rows(VARIANTS[variant])


def test_registration():
    check_registers(A, "backdoor", A.Backdoor)
