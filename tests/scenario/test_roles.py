"""Plugin roles: one name for a plugin's part of a round, its TF name scope,
its state key and the way back from text (`fedarena.core.scenario.roles`)."""

import pytest

from fedarena.core.execution.failures import PluginFailure, failing_role
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import default_registry
from fedarena.core.scenario.roles import SCOPE_PREFIX, Role, scenario_roles
from fedarena.core.scenario.sweep import check

from conftest import tiny_scenario


@pytest.mark.parametrize("role, key", [
    (Role("attack", 0), "attack_0"), (Role("attack", 12), "attack_12"), (Role("detector", 1), "detector_1"),
    (Role("aggregator"), "aggregator"),
])
def test_a_role_has_one_key_for_its_scope_state_and_text(role, key):
    assert role.key == role.state_key == str(role) == key
    assert role.scope == SCOPE_PREFIX + key == "fedarena_plugin_" + key
    assert Role.parse(key) == role
    assert Role.from_scope(f"Node: '{role.scope}/cond/Sqrt' had NaN values") == role


def test_attacks_have_a_group_and_names_are_for_messages_only():
    assert Role("attack", 2, "flippers").group == 2
    assert Role("attack", 2, "flippers") == Role.parse("attack_2")
    with pytest.raises(AttributeError):
        Role("detector", 0).group
    with pytest.raises(ValueError):
        Role("server")


@pytest.mark.parametrize("text", ["attack", "attack_x", "detector_1_2", "aggregator_0", " aggregator", "server"])
def test_parse_refuses_what_is_not_a_role(text):
    with pytest.raises(ValueError):
        Role.parse(text)


def test_an_error_names_its_role_through_its_scope_or_its_wrapper():
    assert failing_role(RuntimeError("in fedarena_plugin_detector_3/while/body")) == Role("detector", 3)
    assert failing_role(RuntimeError("nothing here")) is None
    wrapped = PluginFailure(Role("aggregator"), object(), ValueError("bad"))
    assert failing_role(wrapped) is wrapped.role and str(wrapped) == "ValueError: bad"


def test_a_checked_scenario_lists_its_roles_in_round_order():
    text = tiny_scenario().replace("  aggregator fedavg", "  detector foolsgold\n  aggregator median")
    scenario = check(parse(text, "t.fls"), default_registry())
    roles = scenario_roles(scenario)
    assert [role.key for role, _ in roles] == ["attack_0", "detector_0", "aggregator"]
    assert roles[0][0].name == scenario.attacks[0].name
    for role, plugin in roles:
        assert role.plugin_in(scenario) is plugin
