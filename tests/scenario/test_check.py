"""Resolving names through the plugin registry, and static checks with
golden messages."""

import attrs
import pytest

from fedarena.core.scenario.sweep import check
from fedarena.core.errors import ScenarioError
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import build_registry, default_registry
from fedarena.plugins import models, optimizers, splits
from fedarena.plugins.datasets import digits as datasets
from fedarena.plugins.aggregators import fedavg, median
from fedarena.plugins.attacks import label_flip

from conftest import REPO, tiny_scenario


def checked(text, output=None):
    return check(parse(text, "s.fls"), default_registry(), output)


def test_quickstart_resolves_every_builtin_through_the_registry():
    scenario = checked((REPO / "scenarios" / "quickstart.fls").read_text())
    assert isinstance(scenario.dataset, datasets.Digits)
    assert isinstance(scenario.split, splits.IID)
    assert scenario.model == models.MLP(hidden=(64,))
    assert scenario.training.optimizer == optimizers.SGD(learning_rate=0.1)
    assert scenario.training.clients_per_round == 5 and scenario.num_clients == 20
    (group,) = scenario.attacks
    assert group.attack == label_flip.LabelFlip(source=7, target=1) and group.num_clients == 4
    assert isinstance(scenario.aggregator, fedavg.FedAvg)
    registry = default_registry()
    for _, plugin in scenario.plugins():
        assert registry.provider_of(plugin).distribution == "fedarena"


def test_builtins_register_through_the_same_hooks_as_third_parties():
    from fedarena import hookimpl
    from fedarena.core.plugin.interfaces import Aggregator

    @attrs.frozen
    class Mine(Aggregator):
        """A third-party aggregator."""

    class ThirdParty:
        @hookimpl
        def fedarena_register_aggregators(registry):
            registry.add("mine", Mine)

    registry = build_registry(extra_plugins=(("third-party", ThirdParty),))
    hooked = {impl.plugin_name for impl in registry.hook.fedarena_register_aggregators.get_hookimpls()}
    assert {"fedarena.plugins.aggregators.fedavg", "third-party"} <= hooked
    assert registry.get("aggregator", "mine").cls is Mine
    assert registry.get("aggregator", "fedavg").provider.distribution == "fedarena"


def test_two_plugins_claiming_one_name_is_an_error_naming_both():
    from fedarena import hookimpl
    from fedarena.core.plugin.registry import PluginConflict

    class Clash:
        @hookimpl
        def fedarena_register_aggregators(registry):
            registry.add("fedavg", median.Median)

    with pytest.raises(PluginConflict, match=r"aggregator name 'fedavg': fedarena .* and clash"):
        build_registry(extra_plugins=(("clash", Clash),))


def test_defaults_fill_in_what_the_scenario_leaves_out():
    scenario = checked(
        'scenario "d" {\n rounds 2\n dataset digits\n split iid over 4 clients\n model logistic\n}', None
    )
    assert scenario.training.clients_per_round == 4
    assert scenario.training.local_epochs == 1 and scenario.training.batch_size == 32
    assert isinstance(scenario.aggregator, fedavg.FedAvg)
    assert scenario.seed == 0 and scenario.evaluate_every == 1
    assert scenario.output == "results/s.h5"


BASE = tiny_scenario().splitlines()


def with_line(index, replacement):
    lines = list(BASE)
    lines[index] = replacement
    return "\n".join(lines)


@pytest.mark.parametrize(
    "text, golden",
    [
        (with_line(15, "  aggregator fedvg"),
         "s.fls:16:14: unknown aggregator 'fedvg'; did you mean 'fedavg'?\n      aggregator fedvg\n"
         "                 ^"),
        (with_line(3, "  dataset synthetic(sample = 600)"),
         "s.fls:4:21: dataset 'synthetic' has no parameter 'sample'; did you mean 'samples'?\n"
         "      dataset synthetic(sample = 600)\n                        ^"),
        (with_line(3, '  dataset synthetic(samples = "many")'),
         "s.fls:4:31: parameter 'samples' of dataset 'synthetic' must be an int, got string \"many\"\n"
         '      dataset synthetic(samples = "many")\n                                  ^'),
        (with_line(3, "  dataset synthetic(samples = 5)"),
         "s.fls:4:31: parameter 'samples' of dataset 'synthetic' must be >= 10, got 5\n"
         "      dataset synthetic(samples = 5)\n                                  ^"),
        (with_line(7, "    clients_per_round 9"),
         "s.fls:8:23: clients_per_round is 9, but the split has only 6 clients\n"
         "        clients_per_round 9\n                          ^"),
        (with_line(8, "    local_epoch 1"),
         "s.fls:9:5: unknown training setting 'local_epoch'; did you mean 'local_epochs'?\n"
         "        local_epoch 1\n        ^"),
        (with_line(13, "    clients 7"),
         "s.fls:13:3: the attack blocks take 7 clients, but the split has only 6\n"
         '      attack label_flip(mode = "all_to_one", target = 0) {\n      ^'),
        (with_line(12, '  attack label_flip(mode = "all_to_one", target = 3) {'),
         "s.fls:13:10: label_flip target 3 is not a class of this dataset (classes 0..2)\n"
         '      attack label_flip(mode = "all_to_one", target = 3) {\n             ^'),
        (with_line(12, '  attack label_flip(mode = "targeted", target = 1) {'),
         "s.fls:13:10: label_flip mode 'targeted' needs 'source'\n"
         '      attack label_flip(mode = "targeted", target = 1) {\n             ^'),
        (with_line(1, "  seed 1\n  seed 2"),
         "s.fls:3:3: 'seed' is given twice (first on line 2)\n      seed 2\n      ^"),
        # Triggers are plugins: the old string form names its fix.
        (with_line(12, '  attack backdoor(target = 0, trigger = "pixel") {'),
         "s.fls:13:41: parameter 'trigger' of attack 'backdoor' must be a trigger, got string \"pixel\"; "
         "write trigger = pixel(...), a plugin call without quotes\n"
         '      attack backdoor(target = 0, trigger = "pixel") {\n                                            ^'),
        (with_line(12, '  attack backdoor(target = 0, size = 2) {'),
         "s.fls:13:31: attack 'backdoor' has no parameter 'size'; 'size' is a parameter of the trigger: "
         "write trigger = pixel(size = 2)\n"
         "      attack backdoor(target = 0, size = 2) {\n                                  ^"),
        (with_line(12, '  attack backdoor(target = 0, trigger = blend, parts = 4) {'),
         "s.fls:13:48: attack 'backdoor' has no parameter 'parts'; 'parts' is a parameter of the trigger: "
         "write trigger = dba(parts = 4)\n"
         "      attack backdoor(target = 0, trigger = blend, parts = 4) {\n"
         "                                                   ^"),
        (with_line(12, '  attack backdoor(target = 0, trigger = pixel(size = 9)) {'),
         "s.fls:13:10: backdoor trigger: pixel patch size 9 does not fit inputs of 1 x 8 pixels\n"
         "      attack backdoor(target = 0, trigger = pixel(size = 9)) {\n             ^"),
    ],
)
def test_check_errors_are_golden(text, golden):
    with pytest.raises(ScenarioError) as caught:
        checked(text)
    assert str(caught.value) == golden


def test_the_old_string_trigger_is_refused_with_its_fix_and_exit_code_2(write_scenario, capsys):
    from fedarena.core.cli.main import main

    old = '  attack backdoor(target = 0, trigger = "dba", size = 2, parts = 2) {'
    path = write_scenario(with_line(12, old))
    assert main(["check", str(path)]) == 2
    assert capsys.readouterr().err.splitlines()[::3] == [
        f"{path}:13:41: parameter 'trigger' of attack 'backdoor' must be a trigger, got string \"dba\"; "
        "write trigger = dba(...), a plugin call without quotes",
        f"{path}:13:48: attack 'backdoor' has no parameter 'size'; 'size' is a parameter of the trigger: "
        "write trigger = dba(size = 2)",
        f"{path}:13:58: attack 'backdoor' has no parameter 'parts'; 'parts' is a parameter of the trigger: "
        "write trigger = dba(parts = 2)",
    ]
    fixed = write_scenario(with_line(12, "  attack backdoor(target = 0, trigger = dba(size = 2, parts = 2)) {"))
    assert main(["check", str(fixed)]) == 0


def test_several_problems_are_reported_at_once_in_file_order():
    text = with_line(15, "  aggregator fedavgg").replace("mlp(hidden = [8])", "mlp(hiden = [8])")
    with pytest.raises(ScenarioError) as caught:
        checked(text)
    messages = [d.message for d in caught.value.diagnostics]
    assert messages == [
        "model 'mlp' has no parameter 'hiden'; did you mean 'hidden'?",
        "unknown aggregator 'fedavgg'; did you mean 'fedavg'?",
    ]
