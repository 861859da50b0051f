"""Parsing .fls text into spec objects, and syntax errors with positions."""

from pathlib import Path

import pytest

from fedarena.core import spec
from fedarena.core.errors import ScenarioError
from fedarena.core.language import parse

REPO = Path(__file__).resolve().parent.parent


def test_quickstart_parses_into_statements_with_spans():
    text = (REPO / "scenarios" / "quickstart.fls").read_text()
    scenario = parse(text, "quickstart.fls")
    by_keyword = {s.keyword: s for s in scenario.statements}
    assert scenario.title.startswith("Quickstart")
    assert by_keyword["rounds"].value == 20
    assert by_keyword["dataset"].value == spec.Call("digits")
    call, clients = by_keyword["split"].value
    assert (call.name, clients) == ("iid", 20)
    attack = by_keyword["attack"].value
    assert attack.call.kwargs() == {"source": 7, "target": 1}
    assert attack.settings[0] == spec.Setting("clients", 4)
    # Spans point at the source text.
    line = text.splitlines()[by_keyword["aggregator"].span.line - 1]
    assert line.strip() == "aggregator fedavg"


def test_literals_of_every_kind():
    scenario = parse(
        'scenario "x" {\n'
        "  model m(a = 1, b = -2.5, c = 1e-3, d = \"s\", e = true, f = false, g = [1, 2], h = p(q = 3))\n"
        "  attack a { clients 20%\n rounds 5..50 }\n"
        "  attack b { clients 3\n rounds every 4 }\n"
        "}"
    )
    model = scenario.all("model")[0].value.kwargs()
    assert model == {"a": 1, "b": -2.5, "c": 1e-3, "d": "s", "e": True, "f": False, "g": (1, 2),
                     "h": spec.Call("p", (spec.Arg("q", 3),))}
    first, second = (s.value for s in scenario.all("attack"))
    assert first.settings == (spec.Setting("clients", spec.Percent(20.0)), spec.Setting("rounds", spec.Range(5, 50)))
    assert second.settings[1].value == spec.Every(4)
    assert 8 in spec.Every(4) and 9 not in spec.Every(4) and 50 in spec.Range(5, 50)


def test_comments_are_ignored():
    a = parse('scenario "x" {\n  seed 3  # the seed\n}\n')
    b = parse('# leading\nscenario "x" {\n  seed 3\n}')
    assert a.statements == b.statements


@pytest.mark.parametrize(
    "text, golden",
    [
        ('scenario "x" {\n  seed 7\n  rounds\n}', "bad.fls:4:1: unexpected '}'; expected an integer\n    }\n    ^"),
        ('scenario "x" {\n  seed 7 $\n}', "bad.fls:2:10: unexpected character '$'\n      seed 7 $\n             ^"),
        ('scenario "x" { aggregator krum(f = ) }',
         "bad.fls:1:36: unexpected ')'; expected '[', 'every', 'false', 'true', a name, a number, "
         "a percentage, a string, ...\n    scenario \"x\" { aggregator krum(f = ) }\n"
         "                                       ^"),
        ('scenario "x" {\n  seed 7\n',
         "bad.fls:2:9: unexpected the end of the file; expected 'aggregator', 'attack', 'dataset', "
         "'detector', 'evaluate', 'model', 'output', 'rounds', ...\n      seed 7\n            ^"),
    ],
)
def test_syntax_errors_name_the_place(text, golden):
    with pytest.raises(ScenarioError) as caught:
        parse(text, "bad.fls")
    assert str(caught.value) == golden
