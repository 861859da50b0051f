"""Sweeps: paths into the scenario, the grid's order and labels, checking
every point, and the CLI's count of runs."""

import attrs
import pytest

from fedarena import hookimpl
from fedarena.core.language import spec
from fedarena.core.scenario.sweep import check
from fedarena.core.cli.main import main
from fedarena.core.errors import ScenarioError
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.language.parser import parse
from fedarena.core.plugin.params import param
from fedarena.core.plugin.registry import build_registry, default_registry
from fedarena.core.scenario.sweep import MAX_RUNS, check_points, expand, runs_of

BASE = """\
scenario "base" {
  seed 1
  rounds 3
  dataset synthetic(samples = 600, features = 8, classes = 3)
  split iid over 10 clients
  model mlp(hidden = [8])
  training {
    clients_per_round 5
    optimizer sgd(learning_rate = 0.2)
  }
  attack label_flip(mode = "all_to_one", target = 0) {
    clients 2
  }
  aggregator fedavg
}
"""


def swept(*lines: str, base: str = BASE) -> spec.ScenarioSpec:
    return parse(base + "\nsweep {\n" + "".join(f"  {line}\n" for line in lines) + "}\n", "sweep.fls")


@attrs.frozen
class Trusting(Aggregator):
    """A throwaway aggregator with a parameter and a rule."""

    f: int = param(0, doc="updates it may drop", ge=0)

    def check(self, facts):
        if facts.clients_per_round < 2 * self.f + 1:
            return [f"toy_trusting with f = {self.f} needs at least {2 * self.f + 1} clients per round"]
        return []


class ToyPlugins:
    @staticmethod
    @hookimpl
    def fedarena_register_aggregators(registry):
        registry.add("toy_trusting", Trusting)


@pytest.fixture(scope="module")
def registry():
    return build_registry(extra_plugins=(("sweep-tests", ToyPlugins),))


def test_a_scenario_without_a_sweep_is_one_run():
    scenario = parse(BASE, "one.fls")
    (point,) = expand(scenario)
    assert (point.index, point.label, point.assignments) == (0, "", {})
    assert point.spec is scenario
    assert runs_of(scenario) == 1


def test_the_grid_is_the_product_of_the_lines_in_order():
    points = expand(swept("aggregator in [fedavg, median]", "seed in 1..3"))
    assert [p.label for p in points] == [
        "aggregator=fedavg, seed=1", "aggregator=fedavg, seed=2", "aggregator=fedavg, seed=3",
        "aggregator=median, seed=1", "aggregator=median, seed=2", "aggregator=median, seed=3",
    ]
    assert [p.index for p in points] == list(range(6))
    assert points[4].assignments == {"aggregator": "median", "seed": "2"}


def test_each_point_keeps_the_scenario_text_and_its_own_point():
    scenario = swept("seed in [5, 6]")
    first, second = expand(scenario)
    assert second.spec.source == scenario.source and second.spec.filename == "sweep.fls"
    assert second.spec.sweep is None and second.spec.point == (("seed", "6"),)
    assert second.spec.all("seed")[0].value == 6
    assert first.spec.all("seed")[0].value == 5
    # Only the swept statement differs from the scenario.
    unchanged = [s for s in scenario.statements if s.keyword != "seed"]
    assert [s for s in second.spec.statements if s.keyword != "seed"] == unchanged


def test_labels_write_values_the_way_the_language_reads_them():
    points = expand(swept(
        'output in ["a \\"b\\".h5"]', "attack.clients in [12.5%]", "aggregator in [toy_trusting(f = 2)]",
        "training.optimizer.learning_rate in [1e-05]", "model.hidden in [[4, 4]]", "attack.rounds in [every 2, 1..2]",
    ))
    assert points[0].label == (
        'output="a \\"b\\".h5", attack.clients=12.5%, aggregator=toy_trusting(f = 2), '
        "training.optimizer.learning_rate=1e-05, model.hidden=[4, 4], attack.rounds=every 2"
    )
    assert points[1].assignments["attack.rounds"] == "1..2"


@pytest.mark.parametrize(
    "line, read",
    [
        ("seed in [9]", lambda s: s.all("seed")[0].value),
        ("rounds in [7]", lambda s: s.all("rounds")[0].value),
        ("evaluate in [2]", lambda s: s.all("evaluate")[0].value),
        ('output in ["x.h5"]', lambda s: s.all("output")[0].value),
        ("aggregator in [median]", lambda s: s.all("aggregator")[0].value),
        ("dataset.samples in [700]", lambda s: s.all("dataset")[0].value.kwargs()["samples"]),
        ("dataset in [digits]", lambda s: s.all("dataset")[0].value),
        ("split.clients in [8]", lambda s: s.all("split")[0].value[1]),
        ("model.hidden in [[3, 2]]", lambda s: s.all("model")[0].value.kwargs()["hidden"]),
        ("training.clients_per_round in [4]", lambda s: s.all("training")[0].value[0].value),
        ("training.batch_size in [8]", lambda s: s.all("training")[0].value[2].value),
        ("training.optimizer in [adam]", lambda s: s.all("training")[0].value[1].value),
        ("training.optimizer.learning_rate in [0.5]",
         lambda s: s.all("training")[0].value[1].value.kwargs()["learning_rate"]),
        ("attack[label_flip].clients in [30%]", lambda s: s.all("attack")[0].value.settings[0].value),
        ("attack[label_flip].target in [2]", lambda s: s.all("attack")[0].value.call.kwargs()["target"]),
        ("attack.poison_ratio in [0.5]", lambda s: s.all("attack")[0].value.call.kwargs()["poison_ratio"]),
        ("attack.rounds in [2..3]", lambda s: s.all("attack")[0].value.settings[1].value),
        ("attack[label_flip] in [label_flip(mode = \"random\")]", lambda s: s.all("attack")[0].value.call),
    ],
)
def test_every_kind_of_path_puts_its_value_in_place(line, read):
    (point,) = expand(swept(line))
    value = swept(line).sweep.axes[0].values[0]
    assert read(point.spec) == value


def test_a_plugin_line_and_its_parameter_line_combine_whatever_their_order(registry):
    points = check_points(swept("aggregator.f in [1, 2]", "aggregator in [toy_trusting]"), registry)
    assert [type(s.aggregator).__name__ for _, s in points] == ["Trusting"] * 2
    assert [s.aggregator.f for _, s in points] == [1, 2]


def test_nested_plugin_parameters_are_reached_through_the_call():
    base = BASE.replace("aggregator fedavg", "aggregator wrap(inner = toy_trusting(f = 1), size = 2)")
    (point,) = expand(swept("aggregator.inner.f in [3]", base=base))
    call = point.spec.all("aggregator")[0].value
    assert call == spec.Call("wrap", (spec.Arg("inner", spec.Call("toy_trusting", (spec.Arg("f", 3),))),
                                      spec.Arg("size", 2)))


def test_detectors_are_addressed_by_name_in_order():
    base = BASE.replace("  aggregator fedavg", "  detector norm(bound = 1.0)\n  detector cosine\n  aggregator fedavg")
    (point,) = expand(swept("detector[norm].bound in [2.0]", "detector[cosine] in [cosine(k = 3)]", base=base))
    assert [s.value for s in point.spec.all("detector")] == [
        spec.Call("norm", (spec.Arg("bound", 2.0),)), spec.Call("cosine", (spec.Arg("k", 3),))]
    with pytest.raises(ScenarioError, match="the scenario has no detector 'cosin'; did you mean 'cosine'"):
        expand(swept("detector[cosin].k in [1]", base=base))


def test_statements_left_out_are_added():
    base = BASE.replace("  seed 1\n", "").replace("  aggregator fedavg\n", "")
    base = base.replace("  training {\n    clients_per_round 5\n    optimizer sgd(learning_rate = 0.2)\n  }\n", "")
    (point,) = expand(swept("seed in [4]", "aggregator in [median]", "training.optimizer.momentum in [0.5]",
                            base=base))
    assert point.spec.all("seed")[0].value == 4
    assert point.spec.all("aggregator")[0].value == spec.Call("median")
    (setting,) = point.spec.all("training")[0].value
    assert setting == spec.Setting("optimizer", spec.Call("sgd", (spec.Arg("momentum", 0.5),)))


def test_repeated_attacks_are_addressed_by_numbered_names():
    base = BASE.replace("  aggregator fedavg", "  attack label_flip(target = 1) {\n    clients 1\n  }\n  aggregator fedavg")
    (point,) = expand(swept("attack[label_flip_2].clients in [3]", base=base))
    first, second = point.spec.all("attack")
    assert first.value.settings[0].value == 2 and second.value.settings[0].value == 3
    with pytest.raises(ScenarioError, match=r"has 2 attacks; name one: attack\[label_flip_1\], attack\[label_flip_2\]"):
        expand(swept("attack.clients in [3]", base=base))


def test_check_points_checks_every_point_and_carries_the_point(registry):
    runs = check_points(
        swept("training.clients_per_round in [3, 10]", "aggregator in [fedavg, toy_trusting(f = 1)]"), registry)
    assert [(s.training.clients_per_round, type(s.aggregator).__name__) for _, s in runs] == [
        (3, "FedAvg"), (3, "Trusting"), (10, "FedAvg"), (10, "Trusting")]
    point, scenario = runs[3]
    assert scenario.sweep_point == (("training.clients_per_round", "10"), ("aggregator", "toy_trusting(f = 1)"))
    assert scenario.source == point.spec.source


def test_a_problem_at_some_points_names_them(registry):
    with pytest.raises(ScenarioError) as caught:
        check_points(swept("training.clients_per_round in [2, 4, 5]", "aggregator.f in [0, 2]",
                           "aggregator in [toy_trusting]"), registry)
    assert str(caught.value) == (
        "sweep.fls:20:18: toy_trusting with f = 2 needs at least 5 clients per round "
        "(at 2 of 6 sweep points, first training.clients_per_round=2, aggregator.f=2, aggregator=toy_trusting)\n"
        "      aggregator in [toy_trusting]\n"
        "                     ^"
    )


def test_a_problem_at_every_point_is_reported_once(registry):
    with pytest.raises(ScenarioError) as caught:
        check_points(swept("seed in 1..5", "dataset.sample in [100]"), registry)
    assert str(caught.value) == (
        "sweep.fls:19:11: dataset 'synthetic' has no parameter 'sample'; did you mean 'samples'?\n"
        "      dataset.sample in [100]\n"
        "              ^"
    )


def test_a_swept_value_out_of_range_points_at_the_value(registry):
    with pytest.raises(ScenarioError) as caught:
        check_points(swept("rounds in [3, 0]"), registry)
    assert str(caught.value) == (
        "sweep.fls:18:17: 'rounds' must be >= 1, got 0 (at the sweep point rounds=0)\n"
        "      rounds in [3, 0]\n"
        "                    ^"
    )


def test_sweeps_are_limited(registry):
    lines = [f"{path} in 1..20" for path in ("seed", "rounds", "evaluate", "split.clients")]
    scenario = swept(*lines)
    assert runs_of(scenario) == 160_000 > MAX_RUNS
    with pytest.raises(ScenarioError, match="the sweep expands to 160000 runs; at most 10000 are allowed"):
        expand(scenario)


def test_check_of_a_sweep_returns_the_single_point_or_refuses_a_grid():
    scenario = check(swept("seed in [4]"), default_registry())
    assert scenario.seed == 4 and scenario.sweep_point == (("seed", "4"),)
    with pytest.raises(ScenarioError, match="this scenario is a sweep of 2 runs"):
        check(swept("seed in [4, 5]"), default_registry())


def test_the_cli_says_how_many_runs_a_sweep_is(tmp_path, capsys):
    path = tmp_path / "grid.fls"
    path.write_text(BASE + "\nsweep {\n  aggregator in [fedavg, median]\n  attack.clients in [0%, 10%, 20%]\n"
                           "  seed in 1..5\n}\n")
    plain = tmp_path / "plain.fls"
    plain.write_text(BASE)
    assert main(["check", str(path), str(plain)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{path}: ok (a sweep of 30 runs: aggregator x2, attack.clients x3, seed x5)",
        f"{plain}: ok (3 rounds, 10 clients, 2 attackers)",
    ]


def test_the_cli_reports_a_bad_sweep_with_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.fls"
    path.write_text(BASE + "\nsweep {\n  attack[label_flp].clients in [1]\n}\n")
    assert main(["check", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"{path}:18:10: the scenario has no attack 'label_flp'; did you mean 'label_flip'?\n"
        "      attack[label_flp].clients in [1]\n"
        "             ^\n"
    )


@pytest.mark.parametrize(
    "line, message",
    [
        ('seed in ["x"]', "'seed' must be an integer, got string \"x\""),
        ("output in [3]", "'output' must be the path of the results file, got integer 3"),
        ("split.clients in [2.5]", "the number of clients must be an integer, got number 2.5"),
        ("attack.clients in [true]", "attack clients must be a count (0 or more), a percentage, a list of client ids "
                                     "or owners(label = L, count = N), got boolean true"),
        ("attack.rounds in [3]", "attack rounds must be a range 'a..b' with 1 <= a <= b, or 'every k' with k >= 1, "
                                 "got integer 3"),
        ("training.optimizer in [sgd(learning_rate = -1)]",
         "parameter 'learning_rate' of optimizer 'sgd' must be > 0, got -1"),
    ],
)
def test_swept_values_of_the_wrong_kind_are_reported_at_the_value(registry, line, message):
    with pytest.raises(ScenarioError) as caught:
        check_points(swept(line), registry)
    (only,) = caught.value.diagnostics
    assert only.message == message
    assert only.span.line == 18  # the sweep line
