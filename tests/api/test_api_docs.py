"""docs/api.md: every public name of the API has its section and example,
and the examples run, in order, as the page says."""

import re

import pytest

import fedarena
from fedarena.core import api

from conftest import REPO

PAGE = REPO / "docs" / "api.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_every_public_name_and_method_is_documented_with_an_example():
    text = PAGE.read_text()
    code = "\n".join(blocks())
    for name in api.__all__:
        assert f"`{name}" in text, name
    for name in ("load", "run", "open_results", "apply", "evolve", "sweep", "point", "save", "final", "summary",
                 "plot_metrics", "plot_heatmap", "plot_clients", "report", "show", "metrics", "clients",
                 "detection", "index", "ScenarioError"):
        assert re.search(rf"\.{name}\b", code), f"no example of {name}"
    assert set(api.__all__) <= set(fedarena.__all__) | {"Point", "Plot"}


@pytest.mark.e2e
def test_the_examples_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scenarios").symlink_to(REPO / "scenarios")
    namespace: dict = {}
    for number, block in enumerate(blocks()):
        exec(compile(block, f"docs/api.md block {number + 1}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "<scenario>:1:33: unknown dataset 'digitz'; did you mean 'digits'?" in printed
    assert "<evolve>:2:14: unknown aggregator 'medain'; did you mean 'median'?" in printed
    assert "<evolve>:1:8: the scenario has no attack 'nope'" in printed
    assert namespace["again"].axes == ["aggregator", "attack[label_flip].clients", "seed"]
    assert "<plugin>:1:1: krum needs clients_per_round > 2f + 2 (here 10 <= 2*4 + 2)" in printed
    assert (tmp_path / "results" / "api" / "heatmap.png").is_file()
    assert namespace["varied"].checked.aggregator.beta == 0.2
    assert namespace["third"].checked.seed == 1
