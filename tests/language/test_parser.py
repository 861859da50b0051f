"""Parsing .fls text into spec objects, and syntax errors with positions."""

from pathlib import Path

import pytest

from fedarena.core.language import spec
from fedarena.core.errors import ScenarioError
from fedarena.core.language.parser import parse

REPO = Path(__file__).resolve().parents[2]


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
         "bad.fls:1:36: unexpected ')'; expected a value\n    scenario \"x\" { aggregator krum(f = ) }\n"
         "                                       ^"),
        ('scenario "x" {\n  seed 7\n',
         "bad.fls:2:9: unexpected end of the file; expected a statement or '}'\n      seed 7\n            ^"),
    ],
)
def test_syntax_errors_name_the_place(text, golden):
    with pytest.raises(ScenarioError) as caught:
        parse(text, "bad.fls")
    assert str(caught.value) == golden


def test_several_syntax_errors_are_reported_at_once():
    text = (
        'scenario "x" {\n'
        "  seed 1.5\n"
        "  rounds 10\n"
        "  dataset digits(test_fraction = )\n"
        "  split iid over 10 client\n"
        "  model mlp(hidden = [8 16])\n"
        "  training {\n"
        "    batch_size 16 32\n"
        "  }\n"
        "  aggregater fedavg\n"
        "}\n"
    )
    with pytest.raises(ScenarioError) as caught:
        parse(text, "many.fls")
    assert [(d.span.line, d.span.column, d.message) for d in caught.value.diagnostics] == [
        (2, 8, "unexpected '1.5'; expected an integer"),
        (4, 34, "unexpected ')'; expected a value"),
        (5, 21, "unexpected 'client'; did you mean 'clients'?"),
        (6, 25, "unexpected '16'; expected ',', '..' or ']'"),
        (8, 19, "unexpected '32'; expected a setting, '..' or '}'"),
        (10, 3, "unknown statement 'aggregater'; did you mean 'aggregator'?"),
    ]


def test_an_error_does_not_cascade_into_the_lines_after_it():
    text = 'scenario "x" {\n  model mlp(hidden = [8,\n    16 16]\n  )\n  rounds 3\n  rounds 4 4\n}\n'
    with pytest.raises(ScenarioError) as caught:
        parse(text, "c.fls")
    assert [(d.span.line, d.message) for d in caught.value.diagnostics] == [
        (3, "unexpected '16'; expected ',', '..' or ']'"),
        (6, "unexpected '4'; expected a statement or '}'"),
    ]


def test_a_missing_closing_brace_is_reported_at_the_end_of_the_file():
    with pytest.raises(ScenarioError) as caught:
        parse('scenario "x" {\n  training {\n    batch_size 3\n  rounds 2\n\n\n', "e.fls")
    (only,) = caught.value.diagnostics
    assert (only.span.line, only.span.column) == (4, 11)
    assert only.message == "unexpected end of the file; expected a setting, '..' or '}'"


@pytest.mark.parametrize(
    "text, golden",
    [
        ('scenario "x" { output "a\\qb" }',
         "l.fls:1:23: unknown escape '\\q' in a string; known: \\\" \\\\ \\n \\t \\r"),
        ('scenario "x" { model m(a = 1e999) }', "l.fls:1:28: the number '1e999' is too large"),
        ('scenario "x" { output "abc }', "l.fls:1:23: this string has no closing '\"' on its line"),
        ('scenario "x" { seed 20% }', "l.fls:1:21: unexpected '20%'; expected an integer"),
        ('scenario "x" { } x', "l.fls:1:18: unexpected 'x'; expected 'sweep' or the end of the file"),
        ('scenari "x" { }', "l.fls:1:1: unexpected 'scenari'; did you mean 'scenario'?"),
        ('scenario "x" { }\nsweep { seed = [1] }', "l.fls:2:14: unexpected '='; expected '.', '[' or 'in'"),
        ('scenario "x" { seed 1\x0c }', "l.fls:1:22: unexpected character '\\x0c': lines end with '\\n' only"),
    ],
)
def test_literal_and_token_errors(text, golden):
    with pytest.raises(ScenarioError) as caught:
        parse(text, "l.fls")
    assert str(caught.value).splitlines()[0] == golden


@pytest.mark.parametrize("opening, closing", [("[", "]"), ("f(x = ", ")")])
def test_nesting_ten_thousand_deep_is_a_clean_error(opening, closing):
    text = 'scenario "x" {\n  model m(a = ' + opening * 10_000 + "1" + closing * 10_000 + ")\n}\n"
    with pytest.raises(ScenarioError) as caught:
        parse(text, "deep.fls")
    (only,) = caught.value.diagnostics
    assert only.message == "lists and calls are nested more than 100 deep here"
    assert only.span.line == 2


def test_nesting_up_to_the_limit_parses_and_compares():
    depth = 99  # plus the call's own parentheses: 100
    text = 'scenario "x" {\n  model m(a = ' + "[" * depth + "1" + "]" * depth + ")\n}\n"
    value = parse(text).all("model")[0].value.args[0].value
    for _ in range(depth - 1):
        (value,) = value
    assert value == (1,)
    assert parse(text) == parse(text.replace("\n  ", " "))


def _big_scenario(size: int) -> str:
    block = (
        "\n  attack label_flip(source = 7, target = 1, mode = \"targeted\", poison_ratio = 0.5) {  # a comment\n"
        "    clients 4\n    rounds 5..50\n  }\n"
        '  detector foo(a = [1, 2, 3], b = bar(c = 0.5, d = "x"))\n'
    )
    head = 'scenario "big" {\n  rounds 50\n  dataset digits\n  split iid over 100 clients\n  model mlp\n'
    return head + block * ((size - len(head)) // len(block)) + "}\n"


def test_a_one_megabyte_scenario_parses():
    # How fast is measured in benchmarks/parse_speed.py, not here: a loaded
    # machine would fail a timing assertion.
    text = _big_scenario(1_000_000)
    assert len(text) > 990_000
    scenario = parse(text, "big.fls")
    assert len(scenario.all("attack")) > 5_000


def test_keywords_are_names_where_a_name_is_expected():
    scenario = parse('scenario "x" {\n  dataset rounds\n  model seed(every = 1)\n  training { rounds 3 }\n}')
    assert scenario.all("dataset")[0].value == spec.Call("rounds")
    assert scenario.all("model")[0].value == spec.Call("seed", (spec.Arg("every", 1),))
    assert scenario.all("training")[0].value == (spec.Setting("rounds", 3),)


def test_strings_take_escapes():
    scenario = parse('scenario "a \\"b\\" \\\\ \\n\\t\\r" { output "x" }')
    assert scenario.title == 'a "b" \\ \n\t\r'


def test_spans_point_at_names_and_values_but_do_not_count_in_equality():
    text = 'scenario "x" {\n  model m(alpha = [1, 2])\n  training {\n    batch_size 3\n  }\n}\n'
    scenario = parse(text)
    arg = scenario.all("model")[0].value.args[0]
    assert (arg.span.line, arg.span.column, arg.value_span.column) == (2, 11, 19)
    setting = scenario.all("training")[0].value[0]
    assert (setting.span.column, setting.value_span.column) == (5, 16)
    assert parse(text) == parse(text.replace("\n", "\n\n  "))


def test_a_sweep_parses_into_axes_with_paths_and_values():
    scenario = parse(
        'scenario "x" { }\n'
        "sweep {\n"
        "  aggregator in [fedavg(), median, krum(f = 10)]\n"
        "  attack[fang_krum].clients in [0%, 10%]\n"
        "  training.optimizer.learning_rate in [0.1, 1e-2,]\n"
        "  seed in 1..3\n"
        "}\n"
    )
    axes = scenario.sweep.axes
    assert [a.path for a in axes] == [
        "aggregator", "attack[fang_krum].clients", "training.optimizer.learning_rate", "seed"]
    assert axes[0].values == (spec.Call("fedavg"), spec.Call("median"), spec.Call("krum", (spec.Arg("f", 10),)))
    assert axes[1].values == (spec.Percent(0.0), spec.Percent(10.0))
    assert axes[2].values == (0.1, 0.01)
    assert axes[3].values == (1, 2, 3)
    assert [s.column for s in axes[0].value_spans] == [18, 28, 36]
    assert axes[1].steps == (spec.PathStep("fang_krum", selector=True), spec.PathStep("clients"))


def test_comments_are_collected_by_the_lexer():
    from fedarena.core.language.parser import parse_with_comments

    _, _, comments = parse_with_comments('# a\nscenario "x # not a comment" {\n  seed 1  # b\n}\n# c')
    assert [(c.line, str(c)) for c in comments] == [(1, "# a"), (3, "# b"), (5, "# c")]


# ---------------------------------------------------------------------------
# docs/language.md and scenarios/: every example parses, every scenario checks.

DOC = REPO / "docs" / "language.md"


def _doc_examples() -> list[tuple[int, str]]:
    lines = DOC.read_text().splitlines()
    examples, start = [], None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == "```fls":
            start = number
        elif start is not None and line.strip() == "```":
            examples.append((start, "\n".join(lines[start:number - 1]) + "\n"))
            start = None
    return examples


def test_the_reference_has_examples():
    assert len(_doc_examples()) >= 9


@pytest.mark.parametrize("start, text", _doc_examples(), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_every_example_in_the_reference_parses(start, text):
    scenario = parse(text, f"docs/language.md:{start}")
    assert scenario.title


def test_reading_stops_after_fifty_syntax_errors():
    from fedarena.core.language.parser import MAX_ERRORS

    with pytest.raises(ScenarioError) as caught:
        parse('scenario "x" {\n' + "  seed x\n" * 10_000 + "}\n", "many.fls")
    diagnostics = caught.value.diagnostics
    assert len(diagnostics) == MAX_ERRORS + 1 == 51
    assert diagnostics[-1].message == "more than 50 syntax errors; the rest of the file was not read"
    assert diagnostics[-1].span.line == 52
