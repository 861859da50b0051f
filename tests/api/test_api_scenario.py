"""`fedarena.load`, `Scenario.evolve`, `Scenario.sweep`: scenarios from
Python, checked as the command checks them, edited through the sweep paths
and written back as canonical ``.fls`` text.  Nothing here runs a round."""

import attrs
import pytest

import fedarena
from fedarena.core.cli import main as cli
from fedarena.core.errors import ScenarioError, UsageError
from fedarena.core.language.fmt import format_text
from fedarena.core.language.parser import parse

from conftest import REPO, tiny_scenario

QUICKSTART = REPO / "scenarios" / "quickstart.fls"


def settings(checked):
    """A checked core scenario, less where its text came from."""
    return attrs.evolve(checked, source="", filename="", sweep_point=())


def cli_message(capsys, *args) -> str:
    capsys.readouterr()
    assert cli.main(list(args)) == 2
    return capsys.readouterr().err.rstrip("\n")


# ---------------------------------------------------------------- load


def test_the_root_package_reexports_the_api():
    for name in ("load", "run", "open_results", "apply", "Scenario", "Results", "Applied", "ScenarioError"):
        assert name in fedarena.__all__ and name in dir(fedarena)
    assert fedarena.load is __import__("fedarena.core.api", fromlist=["load"]).load
    assert fedarena.ScenarioError is ScenarioError


def test_load_reads_a_file_as_the_command_does():
    scenario = fedarena.load(QUICKSTART)
    assert scenario.text == QUICKSTART.read_text()  # the file as it is, comments included
    assert scenario.filename == str(QUICKSTART) and not scenario.is_sweep and len(scenario) == 1
    checked = scenario.checked
    assert (checked.rounds, checked.num_clients, checked.attacks[0].num_clients) == (20, 20, 4)
    assert checked.output == "results/quickstart.h5" == scenario.output
    assert "20 rounds, 20 clients, 4 attackers, aggregator fedavg" in repr(scenario)
    assert fedarena.load(str(QUICKSTART)).text == scenario.text
    assert fedarena.load(scenario) is scenario


def test_load_reads_text():
    scenario = fedarena.load(tiny_scenario("out.h5", rounds=2))
    assert scenario.filename == "<scenario>" and scenario.checked.rounds == 2
    assert scenario.text == tiny_scenario("out.h5", rounds=2)


BAD = """\
scenario "bad" {
  rounds 0
  dataset digitz
  split iid over 4 clients
  model mlp(hidden = [8])
  aggregator krum(f = -1)
}
"""


@pytest.mark.parametrize("text", [BAD, 'scenario "x" {\n  rounds 2\n  dataset digits(\n}\n',
                                  tiny_scenario() + "sweep {\n  aggregator.g in [1, 2]\n}\n"])
def test_load_raises_the_commands_error_with_its_message(tmp_path, capsys, text):
    path = tmp_path / "bad.fls"
    path.write_text(text)
    with pytest.raises(ScenarioError) as raised:
        fedarena.load(path)
    assert str(raised.value) == cli_message(capsys, "check", str(path)) == cli_message(capsys, "run", str(path))
    assert "^" in str(raised.value) and str(raised.value).startswith(f"{path}:")


def test_load_usage_errors_are_the_commands(tmp_path, capsys):
    missing = tmp_path / "missing.fls"
    with pytest.raises(UsageError) as raised:
        fedarena.load(missing)
    assert f"error: {raised.value}" == cli_message(capsys, "run", str(missing))
    binary = tmp_path / "binary.fls"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(UsageError) as raised:
        fedarena.load(binary)
    assert f"error: {raised.value}" == cli_message(capsys, "run", str(binary))


def test_load_text_errors_point_into_the_text():
    with pytest.raises(ScenarioError) as raised:
        fedarena.load('scenario "x" { rounds 2 dataset digitz split iid over 4 clients model mlp }')
    assert str(raised.value) == (
        "<scenario>:1:33: unknown dataset 'digitz'; did you mean 'digits'?\n"
        '    scenario "x" { rounds 2 dataset digitz split iid over 4 clients model mlp }\n'
        "                                    ^")


# ---------------------------------------------------------------- evolve


def test_evolve_edits_the_tree_and_writes_canonical_text(tmp_path):
    scenario = fedarena.load(QUICKSTART)
    evolved = scenario.evolve(rounds=5, aggregator="median", **{"attack.clients": 3})
    assert scenario.checked.rounds == 20  # the original is unchanged
    checked = evolved.checked
    assert (checked.rounds, checked.attacks[0].num_clients, type(checked.aggregator).__name__) == (5, 3, "Median")
    assert format_text(evolved.text) == evolved.text  # the formatter's layout
    assert "  rounds 5\n" in evolved.text and "  aggregator median\n" in evolved.text
    assert "    clients 3\n" in evolved.text and "#" not in evolved.text  # comments are not part of the tree
    # Everything else is as it was.
    same = attrs.evolve(settings(checked), rounds=20, aggregator=scenario.checked.aggregator,
                        attacks=scenario.checked.attacks)
    assert same == settings(scenario.checked)
    # The text is the scenario: saved under the file's name (which names the
    # default output, results/quickstart.h5) and read back, it checks the same.
    assert settings(fedarena.load(evolved.save(tmp_path / "quickstart.fls")).checked) == settings(checked)
    assert evolved.filename == scenario.filename  # messages and relative paths still name the file


# Paths of every kind, set by evolve and by a one-value sweep line: the same scenario.
PATHS = [
    ("seed", 7), ("rounds", 4), ("evaluate", 2), ("output", "results/other run.h5"),
    ("aggregator", "krum(f = 0)"), ("aggregator", ("trimmed_mean", {"beta": 0.2})),
    ("dataset.samples", 300), ("split", "dirichlet(alpha = 0.5)"), ("split.clients", 8),
    ("model.hidden", [16, 8]), ("training.local_epochs", 2), ("training.optimizer.learning_rate", 0.05),
    ("training.optimizer", "sgd(learning_rate = 0.3)"), ("training.protocol", "fedsgd"),
    ("attack.clients", 1), ("attack[label_flip].clients", "50%"), ("attack.rounds", "2..3"),
    ("attack.rounds", "every 2"), ("attack[label_flip].target", 2), ("attack", 'label_flip(mode = "all_to_one", target = 1)'),
]


@pytest.mark.parametrize("path,value", PATHS, ids=[f"{p}={v}" for p, v in PATHS])
def test_evolve_sets_what_a_sweep_line_sets(path, value):
    from fedarena.core.api import _value_text

    base = tiny_scenario(rounds=3)
    evolved = fedarena.load(base).evolve({path: value})
    swept = fedarena.load(base + f"sweep {{\n  {path} in [{_value_text(value, path.split('.')[0])}]\n}}\n")
    assert len(swept.points) == 1
    assert settings(evolved.checked) == settings(swept.points[0].checked)
    assert parse(evolved.text).sweep is None


def test_evolve_values_from_python():
    scenario = fedarena.load(tiny_scenario())
    assert scenario.evolve(model="mlp(hidden = [4, 4])").checked.model == \
        scenario.evolve({"model.hidden": (4, 4)}).checked.model
    assert scenario.evolve({"training.server_learning_rate": 0.5}).checked.training.server_learning_rate == 0.5
    # A string that is not one value of the language stays a string.
    changed = scenario.evolve(output="results/a b.h5", **{"attack.mode": "all_to_one"})
    assert changed.output == "results/a b.h5" and changed.checked.attacks[0].attack.mode == "all_to_one"
    assert scenario.evolve() is scenario


def message(error) -> str:
    return str(error.value)


@pytest.mark.parametrize("changes,expected", [
    ({"aggregator": "medain"},
     "<evolve>:1:14: unknown aggregator 'medain'; did you mean 'median'?\n"
     "    aggregator = medain\n"
     "                 ^"),
    ({"attack[nope].clients": 3},
     "<evolve>:1:8: the scenario has no attack 'nope'; the scenario's attacks: label_flip\n"
     "    attack[nope].clients = 3\n"
     "           ^"),
    ({"training.local_epoch": 2},
     "<evolve>:1:10: unknown training setting 'local_epoch'; did you mean 'local_epochs'?\n"
     "    training.local_epoch = 2\n"
     "             ^"),
    ({"rounds": 0}, "<evolve>:1:10: 'rounds' must be >= 1, got 0\n    rounds = 0\n             ^"),
    ({"aggregator.f": 2},
     "<evolve>:1:12: aggregator 'fedavg' has no parameter 'f'; it takes no parameters\n"
     "    aggregator.f = 2\n"
     "               ^"),
    ({"seeds": 2},
     "<evolve>:1:1: unknown path 'seeds'; did you mean 'seed'?\n    seeds = 2\n    ^"),
    ({"9lives": 1},
     "<evolve>:1:1: '9lives' is not a path (such as aggregator, aggregator.f, attack[label_flip].clients, "
     "training.local_epochs)\n    9lives = 1\n    ^"),
    ({"aggregator": 3},
     "<evolve>:1:14: setting the aggregator itself needs aggregator names or calls, got integer 3\n"
     "    aggregator = 3\n"
     "                 ^"),
    ({"model.hidden": {"a": 1}},
     "<evolve>:1:1: 'model.hidden': a scenario cannot hold dict values ({'a': 1})\n"
     "    model.hidden = \n"
     "    ^"),
])
def test_evolve_errors_point_at_the_path_or_value_given(changes, expected):
    with pytest.raises(ScenarioError) as raised:
        fedarena.load(tiny_scenario()).evolve(changes)
    assert message(raised) == expected


def test_evolve_problems_found_elsewhere_point_into_the_evolved_text():
    with pytest.raises(ScenarioError) as raised:
        fedarena.load(tiny_scenario()).evolve({"attack.clients": 9})
    assert message(raised).startswith("<scenario> (evolved):")
    assert "the attack blocks take 9 clients, but the split has only 6" in message(raised)


def test_several_errors_are_reported_together():
    with pytest.raises(ScenarioError) as raised:
        fedarena.load(tiny_scenario()).evolve(rounds=0, aggregator="medain")
    assert [d.span.line for d in raised.value.diagnostics] == [1, 2]
    assert raised.value.source == "rounds = 0\naggregator = medain"


# ---------------------------------------------------------------- sweep


def test_sweep_makes_a_grid_that_knows_its_points():
    base = fedarena.load(tiny_scenario(rounds=2))
    grid = base.sweep(aggregator=["fedavg", "median"], seed=range(1, 4))
    assert grid.is_sweep and len(grid) == 6
    assert grid.axes == {"aggregator": ["fedavg", "median"], "seed": ["1", "2", "3"]}
    assert [p.label for p in grid.points][:2] == ["aggregator=fedavg, seed=1", "aggregator=fedavg, seed=2"]
    assert grid.points[4].checked.seed == 2 and type(grid.points[4].checked.aggregator).__name__ == "Median"
    assert "a sweep of 6 runs (aggregator x2, seed x3)" in repr(grid)
    assert grid.text.endswith("sweep {\n  aggregator in [fedavg, median]\n  seed in [1, 2, 3]\n}\n")
    # The same grid from text.
    again = fedarena.load(grid.text)
    assert [settings(p.checked) for p in again.points] == [settings(p.checked) for p in grid.points]
    # One point alone, as a scenario of its own.
    point = grid.point(4)
    assert not point.is_sweep and settings(point.checked) == settings(grid.points[4].checked)
    with pytest.raises(UsageError, match="is a sweep of 6 runs"):
        grid.checked


def test_sweep_lines_replace_or_add():
    grid = fedarena.load(tiny_scenario()).sweep(aggregator=["fedavg", "median"])
    grid = grid.sweep({"aggregator": ["median", "trimmed_mean(k = 1)"], "attack[label_flip].clients": [0, 2]}, seed="1..2")
    assert grid.axes == {"aggregator": ["median", "trimmed_mean(k = 1)"], "attack[label_flip].clients": ["0", "2"],
                         "seed": ["1", "2"]}
    assert len(grid) == 8


def test_evolve_on_a_sweep_changes_every_point_but_not_a_swept_path():
    grid = fedarena.load(tiny_scenario(rounds=3)).sweep(seed=[1, 2])
    shorter = grid.evolve(rounds=1)
    assert [p.checked.rounds for p in shorter.points] == [1, 1] and [p.checked.seed for p in shorter.points] == [1, 2]
    with pytest.raises(ScenarioError) as raised:
        grid.evolve(seed=5)
    assert message(raised).startswith("<evolve>:1:1: 'seed' is set by the scenario's sweep (line ")
    assert "change that line with .sweep(...)" in message(raised)


def test_sweep_errors_point_at_the_line_given():
    with pytest.raises(ScenarioError) as raised:
        fedarena.load(tiny_scenario()).sweep(aggregator=["fedavg", "medain"])
    assert message(raised) == ("<sweep>:1:24: unknown aggregator 'medain'; did you mean 'median'? "
                               "(at the sweep point aggregator=medain)\n"
                               "    aggregator in [fedavg, medain]\n"
                               "                           ^")


def test_save_writes_the_text(tmp_path):
    evolved = fedarena.load(QUICKSTART).evolve(rounds=3)
    path = evolved.save(tmp_path / "sub" / "short.fls")
    assert path.read_text() == evolved.text
    # The same scenario, but for the default output, which the file's name gives.
    reloaded = fedarena.load(path).checked
    assert (evolved.checked.output, reloaded.output) == ("results/quickstart.h5", "results/short.h5")
    assert settings(attrs.evolve(reloaded, output=evolved.checked.output)) == settings(evolved.checked)
    assert str(evolved) == evolved.text


def test_evolve_writes_start_from_placement_and_presence_back_as_the_language(tmp_path):
    import numpy as np

    start = tmp_path / "start.npz"
    np.savez(start, weights=np.zeros(650, np.float32))  # 64 x 10 + 10: logistic on digits
    text = f"""scenario "placed" {{
  rounds 2
  start from "{start}"
  dataset digits
  split dirichlet(alpha = 0.5) over 6 clients
  model logistic
  training {{ clients_per_round 4 }}
  attack label_flip(source = 7, target = 1) {{ clients [0, 1] present every 2 rounds }}
  attack gaussian {{ clients owners(label = 3, count = 1) present every round }}
  aggregator fedavg
}}"""
    evolved = fedarena.load(text).evolve(seed=2)
    assert f'start from "{start}"' in evolved.text
    assert "clients [0, 1]\n    present every 2 rounds" in evolved.text
    assert "clients owners(label = 3, count = 1)\n    present every round" in evolved.text
    assert parse(evolved.text, "x.fls").all("start")[0].value == parse(text, "x.fls").all("start")[0].value


def test_an_output_given_from_python_is_the_working_directorys(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    evolved = fedarena.load(QUICKSTART).evolve(output="results/elsewhere/x.h5")
    # The text names it from the scenario's folder, where output statements are read from.
    assert '  output "../results/elsewhere/x.h5"\n' in evolved.text
    assert evolved.checked.output == str(REPO / "results" / "elsewhere" / "x.h5")
    monkeypatch.chdir(tmp_path)
    assert fedarena.load(QUICKSTART).evolve(output="x.h5").checked.output == str(tmp_path / "x.h5")
