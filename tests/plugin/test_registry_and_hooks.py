"""The plugin system: lifecycle hooks, contained failures, parameter
declarations, and the documentation of every hook."""

import re
from importlib import metadata
from pathlib import Path

import attrs
import pytest

from fedarena import hookimpl
from fedarena.core.plugin import hookspecs
from fedarena.core.plugin import registry as registry_module
from fedarena.core.plugin.interfaces import Attack
from fedarena.core.plugin.params import declared_params, param
from fedarena.core.plugin.registry import build_registry

from conftest import REPO, tiny_scenario

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("fedarena_"))


class Recorder:
    """Records every lifecycle call; stops the run after ``stop_after`` rounds."""

    def __init__(self, stop_after=None):
        self.calls, self.stop_after = [], stop_after

    @hookimpl
    def fedarena_run_start(self, run):
        self.calls.append(("start", run.scenario.title, Path(run.output).name))

    @hookimpl
    def fedarena_round_end(self, run, round, metrics):
        self.calls.append(("round", round, sorted(metrics)))
        if self.stop_after is not None and round >= self.stop_after:
            return False

    @hookimpl
    def fedarena_run_end(self, run, status):
        self.calls.append(("end", status))


def test_lifecycle_hooks_see_the_run_from_start_to_end(fedarena_run):
    recorder = Recorder()
    record = fedarena_run(tiny_scenario(rounds=2), plugins=(recorder,))
    assert record.status == "complete"
    assert [call[:2] for call in recorder.calls] == [("start", "tiny"), ("round", 1), ("round", 2), ("end", "complete")]
    assert recorder.calls[0][2] == "scenario.h5"
    for _, _, metrics in recorder.calls[1:3]:
        assert {"test_accuracy", "test_loss", "label_flip_flip_rate"} <= set(metrics)


def test_a_lifecycle_hook_can_stop_the_run(fedarena_run):
    recorder = Recorder(stop_after=2)
    record = fedarena_run(tiny_scenario(rounds=5), plugins=(recorder,))
    assert record.status == "interrupted" and record.attrs["rounds_done"] == 2
    assert record.attrs["error"] == "stopped by a plugin after round 2"
    assert recorder.calls[-1] == ("end", "interrupted")


def test_the_command_says_when_a_hook_stopped_the_run_early(tmp_path, monkeypatch, capsys):
    from fedarena.core.cli.main import main

    recorder = Recorder(stop_after=1)
    monkeypatch.setattr(registry_module, "default_registry",
                        lambda: build_registry(extra_plugins=(("recorder", recorder),)))
    scenario = tmp_path / "tiny.fls"
    scenario.write_text(tiny_scenario(output=tmp_path / "tiny.h5", rounds=3))
    assert main(["run", str(scenario), "--progress", "none"]) == 0
    summary = [line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny:")]
    assert len(summary) == 1 and summary[0].startswith("tiny: interrupted after 1 of 3 rounds; test_accuracy ")


def test_a_plugin_that_fails_to_import_is_named_and_the_others_load(monkeypatch):
    broken = metadata.EntryPoint(name="broken", value="fedarena_no_such_module:plugin", group="fedarena")
    real = metadata.entry_points
    monkeypatch.setattr(metadata, "entry_points",
                        lambda group: [broken, *real(group=group)] if group == "fedarena" else real(group=group))
    registry = build_registry()
    assert len(registry.load_errors) == 1
    assert registry.load_errors[0].startswith("plugin 'broken' (fedarena_no_such_module:plugin) failed to load: "
                                              "ModuleNotFoundError: No module named 'fedarena_no_such_module'")
    assert registry.get("aggregator", "fedavg") is not None


def test_a_misspelt_hook_is_caught_at_load():
    class Misspelt:
        @hookimpl
        def fedarena_register_aggregator(registry):  # missing the final s
            pass

    with pytest.raises(registry_module.PluginConflict, match="fedarena_register_aggregator"):
        build_registry(extra_plugins=(("misspelt", Misspelt),))


def test_a_registration_of_the_wrong_kind_is_reported_not_fatal():
    @attrs.frozen
    class NotAnAggregator(Attack):
        """An attack."""

    class Wrong:
        @hookimpl
        def fedarena_register_aggregators(registry):
            registry.add("wrong", NotAnAggregator)

    registry = build_registry(extra_plugins=(("wrong", Wrong),))
    assert registry.get("aggregator", "wrong") is None
    assert any("must be an attrs class subclassing Aggregator" in e for e in registry.load_errors)


def test_parameter_declarations_carry_type_default_range_and_doc():
    @attrs.frozen
    class Tuned(Attack):
        """Declares every kind of bound."""

        strength: float = param(0.5, doc="how hard", gt=0, le=1)
        mode: str = param("a", doc="which way", choices=("a", "b"))
        size: int = param(doc="required size", ge=1)

    strength, mode, size = declared_params(Tuned)
    assert (strength.type_name(), strength.default, strength.range_text(), strength.doc) == ("float", 0.5, "> 0, <= 1", "how hard")
    assert mode.range_text() == "one of 'a', 'b'"
    assert size.required and size.as_dict()["default"] is None
    with pytest.raises(ValueError, match="'strength' must be <= 1, got 2"):
        Tuned(strength=2.0, size=1)


class OneOfEachKind:
    """A third-party plugin registering one plugin of every kind."""

    @hookimpl
    def fedarena_register_datasets(registry):
        registry.add("toy_data", ToyData)

    @hookimpl
    def fedarena_register_splits(registry):
        registry.add("halves", Halves)

    @hookimpl
    def fedarena_register_models(registry):
        registry.add("toy_model", ToyModel)

    @hookimpl
    def fedarena_register_optimizers(registry):
        registry.add("toy_sgd", ToySGD)

    @hookimpl
    def fedarena_register_attacks(registry):
        registry.add("toy_attack", ToyAttack)

    @hookimpl
    def fedarena_register_triggers(registry):
        registry.add("toy_trigger", ToyTrigger)

    @hookimpl
    def fedarena_register_detectors(registry):
        registry.add("toy_detector", ToyDetector)

    @hookimpl
    def fedarena_register_aggregators(registry):
        registry.add("toy_mean", ToyMean)

    @hookimpl
    def fedarena_register_metrics(registry):
        registry.add("toy_metric", ToyMetric)


from fedarena.plugins import models as _models  # noqa: E402
from fedarena.plugins.datasets import synthetic as _datasets  # noqa: E402
from fedarena.plugins.aggregators import fedavg as _fedavg  # noqa: E402
from fedarena.plugins import optimizers as _optimizers, metrics as _metrics, triggers as _triggers  # noqa: E402
from fedarena.core.plugin.interfaces import Detector, Split  # noqa: E402


@attrs.frozen
class ToyData(_datasets.Synthetic):
    """Synthetic data under another name."""


@attrs.frozen
class Halves(Split):
    """Clients 0..n/2-1 get even samples, the others odd ones, each dealt round-robin."""

    def partition(self, labels, num_clients, rng):
        import numpy as np

        return [np.arange(len(labels))[i::num_clients] for i in range(num_clients)]


@attrs.frozen
class ToyModel(_models.Logistic):
    """Logistic regression under another name."""


@attrs.frozen
class ToySGD(_optimizers.SGD):
    """SGD under another name."""


@attrs.frozen
class ToyAttack(Attack):
    """Replaces its rows with a huge constant."""

    poisons_updates = True

    def poison_updates(self, updates, own, benign, ctx):
        import tensorflow as tf

        return tf.where(own[:, None], tf.fill(tf.shape(updates), 1e3), updates)


@attrs.frozen
class ToyTrigger(_triggers.Pixel):
    """The pixel trigger under another name."""


@attrs.frozen
class ToyDetector(Detector):
    """Drops every row with a norm above 100; the score is the norm."""

    def detect(self, rows, ctx):
        import tensorflow as tf

        norms = tf.norm(rows, axis=1)
        return norms, norms <= 100.0


@attrs.frozen
class ToyMean(_fedavg.FedAvg):
    """FedAvg under another name."""


@attrs.frozen
class ToyMetric(_metrics.Accuracy):
    """Accuracy under another name."""


def test_a_plugin_can_register_every_kind_and_a_scenario_runs_on_them(fedarena_run, fedarena_registry):
    registry = fedarena_registry(OneOfEachKind)
    for kind, name in [("dataset", "toy_data"), ("split", "halves"), ("model", "toy_model"), ("optimizer", "toy_sgd"),
                       ("attack", "toy_attack"), ("trigger", "toy_trigger"), ("detector", "toy_detector"),
                       ("aggregator", "toy_mean"), ("metric", "toy_metric")]:
        assert registry.get(kind, name).provider.distribution == "OneOfEachKind"
    text = (
        tiny_scenario(rounds=2, aggregator="toy_mean", attack="  attack toy_attack {\n    clients 2\n  }\n  detector toy_detector\n")
        .replace("synthetic(", "toy_data(").replace("split iid", "split halves")
        .replace("mlp(hidden = [8])", "toy_model").replace("sgd(", "toy_sgd(")
    )
    record = fedarena_run(text, plugins=(OneOfEachKind,))
    assert record.status == "complete"
    malicious, kept = record.data["clients/malicious"], record.data["clients/kept"]
    assert malicious.any() and (kept == ~malicious).all()  # the detector dropped exactly the attackers
    assert (record.data["clients/aggregation_weight"][malicious] == 0).all()
    scores = record.data["clients/detector_scores"][..., 0]
    assert scores[malicious].min() > 100 > scores[~malicious].max()
    assert record.data["plugins/detector_0"]["distribution"] == "OneOfEachKind"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_implemented_by_a_test(hook):
    implemented = any(re.search(rf"def {hook}\(", p.read_text()) for p in (REPO / "tests").rglob("test_*.py"))
    assert implemented, f"no test implements {hook}"


def test_plugins_lists_a_nested_default_as_a_scenario_writes_it(capsys):
    import json

    from fedarena.core.cli.main import main

    assert main(["plugins", "attack"]) == 0
    listing = capsys.readouterr().out
    assert "trigger: trigger (default pixel)  the trigger stamped on poisoned samples" in listing
    assert main(["plugins", "attack", "--json"]) == 0
    backdoor = next(e for e in json.loads(capsys.readouterr().out) if e["name"] == "backdoor")
    assert next(p for p in backdoor["parameters"] if p["name"] == "trigger")["default"] == "pixel"
