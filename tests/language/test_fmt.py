"""``fedarena fmt``: the canonical layout, comments kept, idempotence, and
the property that formatting never changes what a file means."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedarena.core.cli.main import main
from fedarena.core.errors import ScenarioError
from fedarena.core.language.fmt import format_text, render_value
from fedarena.core.language.parser import parse

REPO = Path(__file__).resolve().parents[2]

MESSY = """\
# head

scenario   "x"{seed 1 rounds 2  # trailing
  # about the data
dataset digits    model mlp( hidden=[ 8,16, ],  # inside a call
 )
split iid over 3 clients
training{clients_per_round 2 optimizer sgd(learning_rate=0.1)}
training { }
attack label_flip(target=1){clients 20%  # a percentage
rounds 1..3
# dangling

}
attack x
aggregator fedavg() detector foo
evaluate every 2 rounds output "a\\"b"
}   # end
# between
sweep{aggregator in[fedavg,median,]
seed in 1..3 attack[label_flip].clients in [1,2]}
# footer

# footer 2
"""

CANONICAL = """\
# head

scenario "x" {
  seed 1
  rounds 2  # trailing

  # about the data
  dataset digits
  # inside a call
  model mlp(hidden = [8, 16])
  split iid over 3 clients

  training {
    clients_per_round 2
    optimizer sgd(learning_rate = 0.1)
  }

  training {}

  attack label_flip(target = 1) {
    clients 20%  # a percentage
    rounds 1..3
    # dangling

  }

  attack x

  aggregator fedavg()
  detector foo

  evaluate every 2 rounds
  output "a\\"b"
}  # end

# between
sweep {
  aggregator in [fedavg, median]
  seed in 1..3
  attack[label_flip].clients in [1, 2]
}
# footer

# footer 2
"""


def test_a_messy_file_gets_the_canonical_layout():
    assert format_text(MESSY) == CANONICAL
    assert parse(CANONICAL) == parse(MESSY)


def test_formatting_is_idempotent():
    assert format_text(CANONICAL) == CANONICAL


def test_every_scenario_file_keeps_its_meaning_and_formats_stably():
    for path in sorted((REPO / "scenarios").rglob("*.fls")):
        text = path.read_text()
        once = format_text(text, str(path))
        assert parse(once) == parse(text), path
        assert format_text(once) == once, path


def test_the_quickstart_is_already_canonical():
    text = (REPO / "scenarios" / "quickstart.fls").read_text()
    assert format_text(text) == text


def test_comments_in_an_empty_block_keep_the_block_open():
    text = 'scenario "x" {\n  training {\n    # nothing yet\n  }\n\n  attack a {}\n}\n'
    assert format_text(text) == text


def test_crlf_and_tabs_become_the_canonical_layout():
    text = 'scenario "x" {\r\n\tseed 1\t# tab\r\n\trounds 2\r\n}\r\n'
    assert format_text(text) == 'scenario "x" {\n  seed 1  # tab\n  rounds 2\n}\n'


def test_a_file_that_does_not_parse_is_not_formatted():
    with pytest.raises(ScenarioError):
        format_text('scenario "x" { seed }')


@pytest.mark.parametrize(
    "value, text",
    [
        (1.0, "1.0"), (1e-05, "1e-05"), (-2.5e16, "-2.5e+16"), (True, "true"), ('a"b\\c\n', '"a\\"b\\\\c\\n"'),
        ((1, (2,), ()), "[1, [2], []]"),
    ],
)
def test_values_render_as_the_language_reads_them(value, text):
    assert render_value(value) == text
    assert parse(f'scenario "x" {{ model m(v = {text}) }}').all("model")[0].value.args[0].value == value


def test_percentages_render_without_exponents():
    from fedarena.core.language.spec import Percent

    assert render_value(Percent(20.0)) == "20%"
    assert render_value(Percent(1e-05)) == "0.00001%"
    assert render_value(Percent(12.5)) == "12.5%"


# ---------------------------------------------------------------------------
# The command.


def test_fmt_rewrites_files_and_check_reports_them(tmp_path, capsys):
    messy, clean = tmp_path / "messy.fls", tmp_path / "clean.fls"
    messy.write_text(MESSY)
    clean.write_text(CANONICAL)
    assert main(["fmt", "--check", str(messy), str(clean)]) == 1
    assert capsys.readouterr().out == f"would reformat {messy}\n"
    assert messy.read_text() == MESSY  # --check changes nothing
    assert main(["fmt", str(messy), str(clean)]) == 0
    assert capsys.readouterr().out == f"reformatted {messy}\n"
    assert messy.read_text() == CANONICAL
    assert main(["fmt", "--check", str(messy), str(clean)]) == 0
    assert capsys.readouterr().out == ""


def test_fmt_reports_bad_files_with_exit_2_and_leaves_them_alone(tmp_path, capsys):
    bad, missing, binary = tmp_path / "bad.fls", tmp_path / "missing.fls", tmp_path / "binary.fls"
    bad.write_text('scenario "x" {\n  seed\n}\n')
    binary.write_bytes(b"\xff\xfe")
    assert main(["fmt", str(bad), str(missing), str(binary)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"{bad}:3:1: unexpected '}}'; expected an integer\n    }}\n    ^\n"
        f"error: {missing}: no such scenario file\n"
        f"error: {binary}: not a UTF-8 text file (invalid start byte at byte 0)\n"
    )
    assert bad.read_text() == 'scenario "x" {\n  seed\n}\n'


# ---------------------------------------------------------------------------
# Property: parse(fmt(s)) == parse(s), and fmt(fmt(s)) == fmt(s), for
# generated scenarios written in random layouts.

KEYWORDS = ["seed", "rounds", "dataset", "split", "over", "clients", "model", "training", "attack", "detector",
            "aggregator", "evaluate", "every", "output", "true", "false", "sweep", "in", "scenario"]
names = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(lambda n: n not in KEYWORDS)
ints = st.integers(-10**12, 10**12).map(str)
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r"-?[0-9]{1,3}(\.[0-9]{1,3}([eE][-+]?[0-9]{1,2})?|[eE][-+]?[0-9]{1,2})", fullmatch=True),
)
percents = st.from_regex(r"-?[0-9]{1,3}(\.[0-9]{1,3})?%", fullmatch=True)
string_chars = st.characters(min_codepoint=0x20, blacklist_characters='"\\\x7f\x85\u2028\u2029',
                             blacklist_categories=("Cs",))
strings = st.lists(st.one_of(string_chars, st.sampled_from(["\\n", "\\t", "\\r", '\\"', "\\\\"])), max_size=8).map(
    lambda parts: '"' + "".join(parts) + '"')
literals = st.one_of(ints, floats, percents, strings, st.sampled_from(["true", "false"]),
                     st.tuples(ints, ints).map(lambda r: [r[0], "..", r[1]]),
                     ints.map(lambda k: ["every", k]))


def _flatten(item):
    if isinstance(item, str):
        return [item]
    return [token for part in item for token in _flatten(part)]


def _call(args):
    @st.composite
    def build(draw):
        name = draw(names)
        chosen = draw(st.lists(st.tuples(names, args), max_size=3))
        if not chosen and draw(st.booleans()):
            return [name]
        tokens = [name, "("]
        for i, (arg, value) in enumerate(chosen):
            tokens += ([","] if i else []) + [arg, "="] + _flatten(value)
        if chosen and draw(st.booleans()):
            tokens.append(",")
        return tokens + [")"]

    return build()


def _list(items):
    return st.lists(items, max_size=3).map(
        lambda values: ["["] + [t for i, v in enumerate(values) for t in ([","] if i else []) + _flatten(v)] + ["]"])


values = st.recursive(literals, lambda inner: st.one_of(_list(inner), _call(inner)), max_leaves=8)
calls = _call(values)
settings_ = st.lists(st.tuples(st.one_of(names, st.sampled_from(["rounds", "clients"])), values), max_size=3).map(
    lambda pairs: [t for name, value in pairs for t in [name] + _flatten(value)])


@st.composite
def statements(draw):
    kind = draw(st.sampled_from(["seed", "rounds", "dataset", "split", "model", "training", "attack", "attack_bare",
                                 "detector", "aggregator", "evaluate", "output"]))
    if kind in ("seed", "rounds"):
        return [kind, draw(ints)]
    if kind in ("dataset", "model", "detector", "aggregator"):
        return [kind] + draw(calls)
    if kind == "split":
        return ["split"] + draw(calls) + ["over", draw(ints), "clients"]
    if kind == "training":
        return ["training", "{"] + draw(settings_) + ["}"]
    if kind == "attack":
        return ["attack"] + draw(calls) + ["{"] + draw(settings_) + ["}"]
    if kind == "attack_bare":
        return ["attack"] + draw(calls)
    if kind == "evaluate":
        return ["evaluate", "every", draw(ints), "rounds"]
    return ["output", draw(strings)]


@st.composite
def sweeps(draw):
    tokens = ["sweep", "{"]
    for _ in range(draw(st.integers(0, 3))):
        tokens.append(draw(st.one_of(names, st.sampled_from(KEYWORDS))))
        for _ in range(draw(st.integers(0, 2))):
            tokens += draw(st.sampled_from([[".", draw(names)], ["[", draw(names), "]"]]))
        tokens.append("in")
        if draw(st.booleans()):
            tokens += [str(draw(st.integers(-30, 30))), "..", str(draw(st.integers(-30, 30)))]
        else:
            tokens += _flatten(draw(_list(values)))
    return tokens + ["}"]


@st.composite
def scenario_tokens(draw):
    tokens = ["scenario", draw(strings), "{"]
    for statement in draw(st.lists(statements(), max_size=6)):
        tokens += statement
    tokens.append("}")
    if draw(st.booleans()):
        tokens += draw(sweeps())
    return tokens


GLUE = set("()[]{},=")
comment_text = st.text(st.characters(min_codepoint=0x20, blacklist_characters="\x7f\x85\u2028\u2029",
                                     blacklist_categories=("Cs",)), max_size=10)


@st.composite
def layouts(draw):
    """Scenario text with random whitespace and comments between tokens."""
    tokens = draw(scenario_tokens())
    separators = st.one_of(
        st.sampled_from([" ", "  ", "\n", "\n\n", "\t", " \n    "]),
        comment_text.map(lambda c: f"  #{c}\n"),
        comment_text.map(lambda c: f"\n#{c}\n\n"),
    )
    out = [draw(st.sampled_from(["", "# top\n", "\n"]))]
    for i, token in enumerate(tokens):
        if i:
            glue = tokens[i - 1] in GLUE or token in GLUE
            out.append(draw(st.one_of(st.just(""), separators)) if glue else draw(separators))
        out.append(token)
    out.append(draw(st.one_of(st.just("\n"), separators.map(lambda s: s + "\n"))))
    return "".join(out)


# FEDARENA_FUZZ_EXAMPLES=5000 for a longer search.
PROPERTY = settings(max_examples=int(os.environ.get("FEDARENA_FUZZ_EXAMPLES", "200")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(layouts())
def test_formatting_keeps_the_meaning_and_is_idempotent(text):
    original = parse(text)
    formatted = format_text(text)
    assert parse(formatted) == original
    assert format_text(formatted) == formatted
    # The canonical layout itself: indentation by two spaces, no trailing blanks.
    for line in formatted.splitlines():
        assert line == line.rstrip()
        assert re.match(r"^( {2})*\S", line) or line == ""


@PROPERTY
@given(layouts())
def test_comments_survive_formatting(text):
    from fedarena.core.language.parser import parse_with_comments

    before = [c.rstrip() for c in parse_with_comments(text)[2]]
    after = [c.rstrip() for c in parse_with_comments(format_text(text))[2]]
    assert after == before
