"""Backdoor triggers, a plugin kind of their own (``backdoor(trigger =
pixel(size = 3))``): each built-in trigger's defining property on tiny
hand-made images, with the expected images written out here; the TF
stamping an attacker does equals the NumPy one; their checks; and triggers
named in scenarios, built-in or registered by a third party through
``fedarena_register_triggers``.  The checker's messages for the old string
form are golden tests in ``tests/scenario/test_check.py``."""

import attrs
import numpy as np
import pytest
import tensorflow as tf

from fedarena import hookimpl
from fedarena.core.scenario.sweep import check
from fedarena.core.plugin.interfaces import Facts, Trigger
from fedarena.core.plugin.kinds import KINDS
from fedarena.core.language.parser import parse
from fedarena.core.plugin.params import param
from fedarena.core.plugin.registry import default_registry
from fedarena.plugins import triggers as T
from fedarena.plugins.attacks import backdoor as A

from conftest import tiny_scenario


def facts(shape) -> Facts:
    return Facts(10, 5, 4, tuple(shape))


def hand_images(n=2, shape=(4, 4, 1)) -> np.ndarray:
    """Distinct values in [0, 0.6], none of them a trigger's 1.0."""
    return (np.arange(n * int(np.prod(shape))).reshape((n,) + shape) % 7 / 10).astype(np.float32)


def in_tf(trigger: Trigger, x: np.ndarray, member: int) -> np.ndarray:
    """What attacker ``member`` of a group stamps, inside TF."""
    return np.asarray(trigger.stamp_member(tf.constant(x), tf.constant(member, tf.int32), x.shape[1:]))


# ---------------------------------------------------------------- pixel


@pytest.mark.parametrize("corner, rows, cols", [
    ("top_left", slice(0, 2), slice(0, 2)), ("top_right", slice(0, 2), slice(3, 5)),
    ("bottom_left", slice(2, 4), slice(0, 2)), ("bottom_right", slice(2, 4), slice(3, 5)),
])
def test_pixel_sets_exactly_the_patch_at_its_corner_in_every_channel(corner, rows, cols):
    x = hand_images(shape=(4, 5, 3))
    expected = x.copy()
    expected[:, rows, cols, :] = 0.75
    trigger = T.Pixel(size=2, corner=corner, value=0.75)
    np.testing.assert_array_equal(trigger.stamp(x), expected)
    for member in range(3):  # one part: every attacker stamps the whole patch
        np.testing.assert_array_equal(in_tf(trigger, x, member), expected)


def test_pixel_sees_flat_inputs_as_square_images_when_it_can_otherwise_as_a_strip():
    square = hand_images(shape=(16,))
    expected = square.copy().reshape(2, 4, 4)
    expected[:, 1:, 1:] = 1.0
    np.testing.assert_array_equal(T.Pixel().stamp(square), expected.reshape(2, 16))
    strip = hand_images(shape=(10,))
    expected = strip.copy()
    expected[:, 7:] = 1.0  # the last `size` features
    np.testing.assert_array_equal(T.Pixel().stamp(strip), expected)
    expected = strip.copy()
    expected[:, :3] = 1.0
    np.testing.assert_array_equal(T.Pixel(corner="top_left").stamp(strip), expected)
    grey = hand_images(shape=(4, 4))  # [H, W]: one channel
    expected = grey.copy()
    expected[:, 2:, 2:] = 1.0
    np.testing.assert_array_equal(T.Pixel(size=2).stamp(grey), expected)


# ---------------------------------------------------------------- blend


def test_blend_is_one_minus_alpha_times_x_plus_alpha_times_a_fixed_pattern():
    x = hand_images(n=3, shape=(4, 4, 2))
    trigger = T.Blend(alpha=0.25, value=0.5, pattern_seed=3)
    pattern = trigger.pattern((4, 4, 2))
    assert pattern.shape == (4, 4, 2) and 0 <= pattern.min() and pattern.max() < 0.5 and pattern.std() > 0.05
    np.testing.assert_allclose(trigger.stamp(x), 0.75 * x + 0.25 * pattern[None], rtol=0, atol=1e-7)
    for member in range(3):  # the same pattern for every attacker, at test time too
        np.testing.assert_allclose(in_tf(trigger, x, member), 0.75 * x + 0.25 * pattern[None], atol=1e-7)
    np.testing.assert_array_equal(T.Blend(alpha=0.25, value=0.5, pattern_seed=3).pattern((4, 4, 2)), pattern)
    assert not np.allclose(T.Blend(pattern_seed=4).pattern((4, 4, 2)), T.Blend(pattern_seed=3).pattern((4, 4, 2)))
    np.testing.assert_array_equal(T.Blend(alpha=1.0).stamp(x), np.broadcast_to(T.Blend().pattern((4, 4, 2)), x.shape))


def test_blend_takes_inputs_of_any_shape():
    assert T.Blend().check(facts((2, 3, 4, 5))) == []
    assert T.Pixel().check(facts((2, 3, 4, 5))) == [
        "pixel: a trigger needs inputs of rank 1 to 3, got shape (2, 3, 4, 5)"]


# ---------------------------------------------------------------- dba


def test_dba_parts_are_disjoint_and_their_union_is_the_full_patch():
    trigger = T.DBA(size=4, parts=4)
    parts = trigger.weights((6, 6, 1))
    assert parts.shape == (4, 6, 6, 1) and set(np.unique(parts)) == {0.0, 1.0}
    assert parts.sum(axis=0).max() == 1  # disjoint
    full = np.zeros((6, 6, 1), np.float32)
    full[2:, 2:] = 1.0
    np.testing.assert_array_equal(parts.sum(axis=0), full)  # their union is the global trigger
    np.testing.assert_array_equal(parts.sum(axis=0), T.Pixel(size=4).weights((6, 6, 1))[0])
    for k in range(4):  # row-major runs of 4 pixels: the patch's rows
        bar = np.zeros((6, 6, 1), np.float32)
        bar[2 + k, 2:] = 1.0
        np.testing.assert_array_equal(parts[k], bar)
    uneven = T.DBA(size=3, parts=4).weights((8, 8, 1))
    assert uneven.sum(axis=0).max() == 1 and uneven.sum() == 9
    assert sorted(int(p.sum()) for p in uneven) == [2, 2, 2, 3]


def test_dba_attacker_i_stamps_part_i_mod_parts_and_the_test_stamps_the_whole():
    trigger = T.DBA(size=2, parts=3, value=1.0)
    x = hand_images(shape=(3, 3, 1))
    # The 2 x 2 patch at the bottom right, row-major, in 3 runs: [(1,1), (1,2)], [(2,1)], [(2,2)].
    runs = [[(1, 1), (1, 2)], [(2, 1)], [(2, 2)]]
    for member in range(7):
        expected = x.copy()
        for r, c in runs[member % 3]:
            expected[:, r, c, :] = 1.0
        np.testing.assert_array_equal(in_tf(trigger, x, member), expected)
        np.testing.assert_array_equal(trigger.stamp(x, part=member), expected)
    expected = x.copy()
    expected[:, 1:, 1:, :] = 1.0
    np.testing.assert_array_equal(trigger.stamp(x), expected)


def test_trigger_checks():
    assert T.Pixel(size=8).check(facts((8, 8, 1))) == []
    assert T.Pixel(size=9).check(facts((8, 8, 1))) == ["pixel patch size 9 does not fit inputs of 8 x 8 pixels"]
    assert T.DBA(size=9).check(facts((8, 8, 1))) == ["dba patch size 9 does not fit inputs of 8 x 8 pixels"]
    assert T.DBA(size=2, parts=4).check(facts((8, 8, 1))) == []
    assert T.DBA(size=2, parts=5).check(facts((8, 8, 1))) == ["dba cannot split a patch of 4 pixels into 5 parts"]
    assert T.Pixel(size=3).check(facts((10,))) == [] and T.Pixel(size=11).check(facts((10,)))
    with pytest.raises(ValueError):
        T.Blend(alpha=0.0)


# ---------------------------------------------------------------- a plugin kind


def test_triggers_are_a_kind_registered_through_their_hook():
    registry = default_registry()
    assert KINDS["trigger"].base is Trigger
    assert registry.names("trigger") == ["blend", "dba", "pixel"]
    for name, cls in (("pixel", T.Pixel), ("blend", T.Blend), ("dba", T.DBA)):
        entry = registry.get("trigger", name)
        assert entry.cls is cls and entry.provider.distribution == "fedarena"
    hooked = {impl.plugin_name for impl in registry.hook.fedarena_register_triggers.get_hookimpls()}
    assert "fedarena.plugins.triggers" in hooked


def scenario_with(attack: str, sweep: str = ""):
    text = tiny_scenario(attack=f"  attack {attack} {{\n    clients 2\n  }}\n") + sweep
    return parse(text, "t.fls")


@pytest.mark.parametrize("written, expected", [
    ("backdoor(target = 0, trigger = pixel(size = 3))", T.Pixel(size=3)),
    ("backdoor(target = 0, trigger = pixel)", T.Pixel()),  # a bare name is a call without parameters
    ("backdoor(target = 0, trigger = blend(alpha = 0.5))", T.Blend(alpha=0.5)),
    ("backdoor(target = 0, trigger = dba(size = 2, parts = 2))", T.DBA(size=2, parts=2)),
    ("backdoor(target = 0)", T.Pixel()),
    ("neurotoxin(target = 0, trigger = blend)", T.Blend()),
])
def test_a_scenario_names_its_trigger_as_a_nested_call(written, expected):
    (group,) = check(scenario_with(written), default_registry()).attacks
    assert group.attack.trigger == expected


def test_a_sweep_varies_a_trigger_parameter():
    from fedarena.core.scenario.sweep import check_points

    runs = check_points(scenario_with("backdoor(target = 0, trigger = pixel(size = 2))",
                                      "sweep {\n  attack.trigger.size in [1, 3]\n}\n"), default_registry())
    assert [scenario.attacks[0].attack.trigger for _, scenario in runs] == [T.Pixel(size=1), T.Pixel(size=3)]
    assert [point.label for point, _ in runs] == ["attack.trigger.size=1", "attack.trigger.size=3"]


@attrs.frozen
class FirstFeature(Trigger):
    """Sets the first feature of every input to ``value``."""

    value: float = param(2.0, doc="value of the first feature")

    def weights(self, input_shape):
        w = np.zeros((1,) + tuple(input_shape), np.float32)
        w.reshape(1, -1)[0, 0] = 1.0
        return w

    def pattern(self, input_shape):
        return np.full(tuple(input_shape), self.value, np.float32)


class ThirdPartyTriggers:
    @staticmethod
    @hookimpl
    def fedarena_register_triggers(registry):
        registry.add("first_feature", FirstFeature)


def test_built_in_and_third_party_triggers_run_in_a_scenario(fedarena_run, fedarena_registry):
    registry = fedarena_registry(ThirdPartyTriggers)
    assert registry.get("trigger", "first_feature").provider.distribution == "ThirdPartyTriggers"
    attacks = ("  attack backdoor(target = 0, trigger = pixel(size = 3), poison_ratio = 0.5) {\n    clients 1\n  }\n"
               "  attack backdoor(target = 1, trigger = first_feature(value = 3.0)) {\n    clients 1\n  }\n")
    record = fedarena_run(tiny_scenario(rounds=2, attack=attacks), plugins=(ThirdPartyTriggers,))
    assert record.status == "complete", record.attrs.get("error")
    for group in ("backdoor_1", "backdoor_2"):
        rates = record.data[f"metrics/{group}_attack_success_rate"]
        assert len(rates) == 2 and ((0 <= rates) & (rates <= 1)).all()
    assert record.data["plugins/attack_backdoor_1"]["label"] == "backdoor(target = 0, poison_ratio = 0.5)"
    assert record.data["plugins/attack_backdoor_2"]["label"] == \
        "backdoor(target = 1, trigger = first_feature(value = 3.0))"


def test_backdoor_reads_only_its_trigger():
    """The attack keeps no trigger parameters of its own."""
    names = [info.name for info in default_registry().get("attack", "backdoor").params()]
    assert names == ["target", "trigger", "poison_ratio", "boost"]
    assert isinstance(A.Backdoor(target=0).trigger, T.Pixel)
