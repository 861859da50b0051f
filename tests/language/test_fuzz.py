"""Fuzzing the scenario language: parser, checker and formatter together.

Every generated text goes through ``parse`` -> ``check_points`` (the real
checker with the real plugin registry) -> ``format_text``, and must:

- raise nothing but `ScenarioError` (reading bytes from a file may also
  raise `UsageError`, for a file that is not UTF-8): the two errors the
  CLI turns into exit 2 with a message and no traceback;
- report no internal error: each diagnostic names its place, and none is
  the last resort the parser and checker fall back on when something
  unexpected raised (`INTERNAL`);
- when it parses, format to a text that parses to the same scenario (the
  spec objects compared, not the text), and format again to itself;
- parse within a time bound measured in this run (`parse_budget`), so that
  a parse that grows faster than the length of its text fails.

The texts come from a strategy that knows the grammar (`scenario_text`): every
statement, plugin calls with the registry's names and parameters and
unknown ones, values of the right type, the wrong type and out of range,
attack and training blocks, sweeps; then mutations of them (`mutated`).
Shipped scenarios and the malformed goldens are mutated too, and random
bytes and token soup go in as well.

``derandomize=True``: CI runs the same examples every time.
``FEDARENA_FUZZ_EXAMPLES=5000`` searches longer (and then randomly).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedarena.core.cli.main import read_scenario
from fedarena.core.errors import ScenarioError, UsageError
from fedarena.core.language import parser
from fedarena.core.language.fmt import format_text, render_value
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import default_registry
from fedarena.core.scenario.check import TRAINING_SETTINGS
from fedarena.core.scenario.sweep import check_points

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHIPPED = sorted((REPO / "scenarios").rglob("*.fls"))
GOLDENS = sorted((HERE / "malformed").glob("*.fls"))
REGISTRY = default_registry()
FILENAME = "fuzz.fls"

_LONG_SEARCH = "FEDARENA_FUZZ_EXAMPLES" in os.environ


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=int(os.environ.get("FEDARENA_FUZZ_EXAMPLES", examples)), deadline=None,
        derandomize=not _LONG_SEARCH, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# ---------------------------------------------------------------------------
# The parse-time bound, measured in this run.
#
# CPU time (not wall time, which the load of the machine would swamp) per
# byte of parsing the shipped scenarios, median of 5, and per parse of the
# smallest scenario, median of 21.  A text of n bytes may take
#     SLACK * (per_parse + per_byte * n) + FLOOR_S.
# Texts of 100 KB that parse in linear time took up to 4x that estimate
# without SLACK: a dense one (a list of 25,000 numbers) 3.7x, one long syntax
# error recovered token by token 2x, random punctuation 1.6x; long strings
# and comments less.  SLACK = 20 leaves 5x over that for a loaded machine's
# noise (caches and clock shared with other processes), so only a parse that
# grows faster than its text fails: a quadratic step that costs as much as
# the linear work at size m fails once texts are some 5 to 20 times m (the
# mutations below repeat pieces of text up to tens of kilobytes for this).
# FLOOR_S absorbs timer granularity and a stray page fault on tiny texts.
SLACK = 20
FLOOR_S = 0.05


def _median_cpu(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.process_time()
        function()
        times.append(time.process_time() - started)
    return statistics.median(times)


def _measure() -> tuple[float, float]:
    texts = [path.read_text() for path in SHIPPED]
    for text in texts + [path.read_text() for path in GOLDENS]:  # build the parser and its lexers first
        try:
            parse(text)
        except ScenarioError:
            pass
    per_byte = _median_cpu(lambda: [parse(text) for text in texts], 5) / sum(map(len, texts))
    per_parse = _median_cpu(lambda: parse('scenario "x" {}'), 21)
    return per_byte, per_parse


PER_BYTE_S, PER_PARSE_S = _measure()


def parse_budget(size: int) -> float:
    """The most CPU seconds a parse of ``size`` characters may take."""
    return SLACK * (PER_PARSE_S + PER_BYTE_S * size) + FLOOR_S


# ---------------------------------------------------------------------------
# The assertions.

# What the parser and checker say when something unexpected raised inside
# them (a bug, caught so that the user still sees no traceback).
INTERNAL = ("internal error", "cannot read the scenario", "nested too deeply to read",
            "failed while checking the scenario")


def assert_reported_well(error: ScenarioError) -> None:
    """Each problem names its place and none is an internal error."""
    assert error.diagnostics, "a ScenarioError without a problem in it"
    for diagnostic in error.diagnostics:
        assert not any(marker in diagnostic.message for marker in INTERNAL), \
            f"an unexpected exception became a diagnostic:\n{error}"
        assert diagnostic.span is not None, f"a problem without its place:\n{error}"


def _parse_cpu(text: str):
    started = time.process_time()
    try:
        scenario, error = parse(text, FILENAME), None
    except ScenarioError as caught:
        scenario, error = None, caught
    return scenario, error, time.process_time() - started


def timed_parse(text: str):
    """``parse(text)``, or None after a well-reported `ScenarioError`;
    fails on a parse slower than `parse_budget`.  A parse over the bound is
    timed once more: a one-off cost (Lark compiles a lexer state's regular
    expression the first time the state is met) is gone the second time,
    a super-linear parse is not."""
    scenario, error, spent = _parse_cpu(text)
    budget = parse_budget(len(text))
    if spent > budget:
        spent = min(spent, _parse_cpu(text)[2])
    assert spent <= budget, (
        f"parsing {len(text)} characters took {spent:.3f} s of CPU, over the {budget:.3f} s bound "
        f"({PER_BYTE_S * 1e6:.2f} us per byte measured on the shipped scenarios): a super-linear parse?\n"
        f"{text[:2000]!r}")
    if error is not None:
        assert_reported_well(error)
    return scenario


def through_everything(text: str) -> None:
    """Parse, check every point, format; the properties of the module."""
    scenario = timed_parse(text)
    if scenario is None:
        return
    try:
        check_points(scenario, REGISTRY)
    except ScenarioError as error:
        assert_reported_well(error)
    formatted = format_text(text, FILENAME)
    assert parse(formatted, FILENAME) == scenario, f"formatting changed the scenario:\n{text}\n---\n{formatted}"
    assert format_text(formatted, FILENAME) == formatted, f"formatting twice changed the text:\n{formatted}"


# ---------------------------------------------------------------------------
# Scenario texts that follow the grammar, with the registry's names.
#
# Each scenario is drawn either strict (known names, values of the declared
# type inside their bounds: many pass the checker, which then runs every
# plugin's own rules) or loose (unknown and misspelt names and parameters,
# values of any type, bounds crossed: the checker's messages).

KINDS = ("dataset", "split", "model", "optimizer", "attack", "detector", "aggregator", "trigger")
PLUGINS = {kind: {entry.name: entry.params() for entry in REGISTRY.entries(kind)} for kind in KINDS}
ALL_NAMES = sorted({name for names in PLUGINS.values() for name in names})
ALL_PARAMS = sorted({info.name for kind in PLUGINS.values() for params in kind.values() for info in params})
UNKNOWN_NAMES = ("x", "_", "fedavgg", "Krum", "lable_flip", "a1_b2", "seed", "rounds", "clients", "every", "in",
                 "sweep", "n" * 101)
# Strict scenarios draw these where they name a dataset, split or model: data
# that needs no download, and splits and models that take it, so that many
# pass the checker.
STRICT_NAMES = {"dataset": ("synthetic", "digits"), "split": ("iid", "dirichlet", "quantity_skew"),
                "model": ("mlp", "logistic")}
# The grammar's keywords, read from the grammar itself.
KEYWORDS = sorted(t.pattern.value for t in parser.parser().terminals
                  if t.pattern.type == "str" and t.pattern.value.isalpha())
TRAINING_NAMES = sorted(TRAINING_SETTINGS)
CALL_ROOTS = ("dataset", "split", "model", "aggregator")

# Blanks between statements: line breaks, tabs, comments, CRLF.
sep = st.sampled_from(["\n", "\n", "\n  ", " ", "\n\n  # a comment\n  ", "  # trailing\n", "\t", "\r\n"])


def _misspelt(name: str) -> st.SearchStrategy[str]:
    """A name with one character dropped, doubled or swapped: did-you-mean."""
    return st.integers(0, max(0, len(name) - 1)).flatmap(lambda i: st.sampled_from([
        name[:i] + name[i + 1:] or "x", name[:i] + name[i:i + 1] * 2 + name[i + 1:],
        name[:i] + name[i + 1:i + 2] + name[i:i + 1] + name[i + 2:],
    ]))


def plugin_name(kind: str, strict: bool) -> st.SearchStrategy[str]:
    known = sorted(PLUGINS[kind])
    if strict:
        return st.sampled_from(STRICT_NAMES.get(kind, known))
    return st.one_of(
        st.sampled_from(known), st.sampled_from(known),
        st.sampled_from(known).flatmap(_misspelt), st.sampled_from(ALL_NAMES), st.sampled_from(UNKNOWN_NAMES),
    )


numbers = st.one_of(
    st.integers(-3, 3), st.integers(-10**6, 10**6), st.integers(2**31 - 2, 2**31 + 1), st.integers(2**32 - 1, 2**32),
    st.integers(10**30, 10**40),
).map(str)
decimals = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["0.0", "-0.0", "1e-3", "1E3", "1e999", "-1e999", "0.5", "1.0", "2.5e-10"]),
)
percents = st.one_of(st.integers(-5, 150), st.decimals(0, 100, places=2)).map(lambda v: f"{v}%")
strings = st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=12).map(render_value),
    st.sampled_from(['""', '"a\\"b"', '"tab\\there"', '"\\n"', '"omniscient"', '"sample"', '"~/x.h5"']),
)
words = st.sampled_from(["true", "false"])


def _list(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def literal(depth: int = 2) -> st.SearchStrategy[str]:
    """Any value the grammar reads: of any type, so often the wrong one."""
    flat = st.one_of(numbers, decimals, percents, strings, words,
                     st.tuples(st.integers(-2, 20), st.integers(-2, 20)).map(lambda r: f"{r[0]}..{r[1]}"),
                     st.integers(-1, 10).map(lambda k: f"every {k}"))
    if depth <= 0:
        return flat
    return st.one_of(flat, flat, st.lists(literal(depth - 1), max_size=4).map(_list),
                     st.sampled_from(KINDS).flatmap(lambda kind: call(kind, False, depth - 1)))


def _typed(tp, info, strict: bool) -> st.SearchStrategy[str]:
    """A value of a parameter's declared type: inside its bounds (strict),
    or near them and across."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if strict and item is str:  # names of layers: the model's own, unknown here
            return st.just("[]")
        return st.lists(_typed(item, info, strict), min_size=int(strict), max_size=3).map(_list)
    if origin is not None:  # int | None and the like
        return st.one_of(*[_typed(arg, info, strict) for arg in typing.get_args(tp) if arg is not type(None)])
    if tp is bool:
        return words
    if tp is int:
        low = info.ge if info.ge is not None else (info.gt + 1 if info.gt is not None else 0)
        high = info.le if info.le is not None else (info.lt - 1 if info.lt is not None else low + 20)
        low, high = int(low), int(min(high, low + 20))
        return st.integers(low, high).map(str) if strict else st.integers(low - 2, high + 2).map(str)
    if tp is float:
        low = info.ge if info.ge is not None else (info.gt if info.gt is not None else 0.0)
        high = info.le if info.le is not None else (info.lt if info.lt is not None else low + 10.0)
        if strict:
            return st.floats(low, high, exclude_min=info.ge is None, exclude_max=info.le is None).map(repr)
        return st.one_of(st.floats(low - 1, high + 1).map(repr), st.integers(int(low) - 1, int(high) + 1).map(str))
    return strings


def value_for(info, strict: bool, depth: int) -> st.SearchStrategy[str]:
    """A value for a declared parameter: what it takes, or (loose) sometimes not."""
    if info.kind is not None:
        right = call(info.kind, strict, depth - 1) if depth > 0 or strict else literal(0)
    elif info.choices is not None:
        right = st.sampled_from([render_value(c) for c in info.choices] + ([] if strict else ['"nope"']))
    else:
        right = _typed(info.type, info, strict)
    return right if strict else st.one_of(right, right, right, literal(min(depth, 1)))


def call(kind: str, strict: bool, depth: int = 2) -> st.SearchStrategy[str]:
    """``name`` or ``name(p = v, ...)`` for a plugin of ``kind``: its own
    parameters (required ones always when strict), and when loose some
    left out, unknown, misspelt or given twice."""

    @st.composite
    def build(draw) -> str:
        name = draw(plugin_name(kind, strict))
        args = []
        for info in PLUGINS[kind].get(name, []):
            if (strict and info.required) or draw(st.integers(0, 2)) == 0:
                args.append(f"{info.name} = {draw(value_for(info, strict, depth))}")
        if not strict and draw(st.booleans()):
            for _ in range(draw(st.integers(1, 2))):
                wrong = draw(st.one_of(st.sampled_from(ALL_PARAMS), st.sampled_from(ALL_PARAMS).flatmap(_misspelt),
                                       st.sampled_from(UNKNOWN_NAMES)))
                args.append(f"{wrong} = {draw(literal(min(depth, 1)))}")
        args = draw(st.permutations(args))
        if not args and draw(st.booleans()):
            return name
        space = draw(st.sampled_from(["", " ", "\n    "]))
        comma = draw(st.sampled_from([",", ", ", " ,\n  "]))
        trailing = draw(st.sampled_from(["", ",", ""])) if args else ""
        return f"{name}({space}{comma.join(args)}{trailing})"

    return build()


def _block(items: st.SearchStrategy[list[str]]) -> st.SearchStrategy[str]:
    """``{ item item }`` with the same blanks between every item."""
    return st.tuples(items, sep).map(lambda t: "{" + t[1] + t[1].join(t[0]) + t[1] + "}")


def training_block(strict: bool) -> st.SearchStrategy[str]:
    valid = {
        "clients_per_round": st.integers(1, 4).map(str), "local_epochs": st.integers(1, 3).map(str),
        "batch_size": st.integers(1, 64).map(str), "optimizer": call("optimizer", True),
        "server_learning_rate": st.sampled_from(["1.0", "0.5", "1"]),
        "server_momentum": st.sampled_from(["0.0", "0.9"]), "protocol": st.sampled_from(['"fedavg"', "fedsgd"]),
        "root_samples": st.integers(0, 10).map(str),
    }
    if strict:
        chosen = st.lists(st.sampled_from(sorted(valid)), unique=True, max_size=4)
        return _block(chosen.flatmap(lambda names: st.tuples(*[valid[n].map(lambda v, n=n: f"{n} {v}")
                                                               for n in names]).map(list))).map("training ".__add__)
    loose = {
        "clients_per_round": st.integers(-1, 30).map(str), "local_epochs": st.integers(0, 1002).map(str),
        "batch_size": st.integers(0, 64).map(str), "optimizer": call("optimizer", False),
        "server_learning_rate": decimals, "server_momentum": st.sampled_from(["0.0", "0.9", "1.0", "-0.1"]),
        "protocol": st.sampled_from(['"fedavg"', '"fedsgd"', "fedsgd", '"fedprox"']),
        "root_samples": st.integers(-1, 100).map(str),
    }
    items = st.lists(st.one_of(
        *[value.map(lambda v, name=name: f"{name} {v}") for name, value in loose.items()],
        st.tuples(st.sampled_from(TRAINING_NAMES).flatmap(_misspelt), literal(1)).map(" ".join),
        literal(1).map(lambda v: f"clients_per_round {v}"),
    ), max_size=6)
    return _block(items).map("training ".__add__)


def attack_block(strict: bool) -> st.SearchStrategy[str]:
    if strict:
        items = st.tuples(
            st.integers(0, 2).map(lambda n: f"clients {n}"),
            st.sampled_from(["", "rounds 1..2", "rounds every 2", "present every round", "present every 2 rounds"]),
        ).map(lambda t: [item for item in t if item])
    else:
        items = st.lists(st.one_of(
            st.one_of(st.integers(-1, 12).map(str), percents, literal(0)).map(lambda v: f"clients {v}"),
            st.one_of(st.tuples(st.integers(0, 12), st.integers(0, 12)).map(lambda r: f"{r[0]}..{r[1]}"),
                      st.integers(0, 5).map(lambda k: f"every {k}"), literal(0)).map(lambda v: f"rounds {v}"),
            st.sampled_from(["present every round", "present every 2 rounds", "present every 0 rounds"]),
            st.tuples(st.sampled_from(["client", "round", "target", "clients"]), literal(0)).map(" ".join),
        ), max_size=3)
    body = _block(items).map(" ".__add__)
    return st.tuples(call("attack", strict), body if strict else st.one_of(st.just(""), body)).map(
        lambda t: f"attack {t[0]}{t[1]}")


def statements(strict: bool) -> st.SearchStrategy[list[str]]:
    """The statements of one scenario in any order: the required ones
    (strict: always), optional ones sometimes, a single one sometimes twice
    (loose)."""
    required = [
        (st.integers(1, 5) if strict else st.one_of(st.integers(0, 30), st.integers(-1, 2**31))).map(
            lambda n: f"rounds {n}"),
        call("dataset", strict).map(lambda c: f"dataset {c}"),
        st.tuples(call("split", strict), st.integers(8, 20) if strict else st.integers(0, 40)).map(
            lambda t: f"split {t[0]} over {t[1]} clients"),
        call("model", strict).map(lambda c: f"model {c}"),
    ]
    optional = [
        (st.integers(0, 10) if strict else st.one_of(st.integers(0, 10), st.integers(2**32 - 1, 2**32))).map(
            lambda n: f"seed {n}"),
        training_block(strict), attack_block(strict), attack_block(strict),
        call("detector", strict).map(lambda c: f"detector {c}"),
        call("aggregator", strict, 3).map(lambda c: f"aggregator {c}"),
        st.integers(1 if strict else 0, 5).map(lambda k: f"evaluate every {k} rounds"),
        (st.just('"out.h5"') if strict else strings).map(lambda s: f"output {s}"),
    ]
    if not strict:  # the file it names does not exist: never passes the checker
        optional.append(st.sampled_from(['start from "missing.h5"', 'start from "missing.npz" round 2']))

    @st.composite
    def build(draw) -> list[str]:
        chosen = [draw(s) for s in required if strict or draw(st.integers(0, 9))]
        chosen += [draw(s) for s in optional if draw(st.integers(0, 2)) == 0]
        if not strict and chosen and draw(st.integers(0, 9)) == 0:
            chosen.append(draw(st.sampled_from(chosen)))  # given twice
        return draw(st.permutations(chosen))

    return build()


def path() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["seed", "rounds", "evaluate", "output", "aggregator", "dataset", "model", "split",
                         "split.clients", "attack", "detector", "nowhere"]),
        st.sampled_from(TRAINING_NAMES).map(lambda s: f"training.{s}"),
        st.sampled_from(["training.optimizer.learning_rate", "training.optimizer.momentum"]),
        st.tuples(st.sampled_from(CALL_ROOTS), st.sampled_from(ALL_PARAMS)).map(".".join),
        st.tuples(st.sampled_from(["attack", "detector"]), st.sampled_from(ALL_NAMES),
                  st.sampled_from(["clients", "rounds"] + ALL_PARAMS)).map(lambda t: f"{t[0]}[{t[1]}].{t[2]}"),
    )


def sweep(strict: bool) -> st.SearchStrategy[str]:
    """A small grid (at most 3 x 3 x 3 points), so checking stays quick."""
    if strict:
        axis = st.sampled_from(["seed in 1..3", "rounds in [1, 2]", "aggregator in [fedavg, median]",
                                "training.batch_size in [8, 16]", "split.clients in [10, 12]"])
        axes = st.lists(axis, unique=True, max_size=3)
    else:
        values = st.one_of(
            st.lists(st.one_of(literal(1), call("aggregator", False, 1)), max_size=3).map(_list),
            st.tuples(st.integers(0, 5), st.integers(0, 3)).map(lambda t: f"{t[0]}..{t[0] + t[1] - 1}"),
        )
        axes = st.lists(st.tuples(path(), values).map(lambda t: f"{t[0]} in {t[1]}"), max_size=3)
    return _block(axes).map("sweep ".__add__)


@st.composite
def scenario_text(draw) -> str:
    strict = draw(st.booleans())
    body = draw(statements(strict))
    join = draw(sep)
    text = f"scenario {draw(strings)} {{{join}" + join.join(body) + f"{join}}}\n"
    if draw(st.integers(0, 3)) == 0:
        text += draw(st.sampled_from(["", "\n", "# between\n"])) + draw(sweep(strict)) + "\n"
    if draw(st.integers(0, 5)) == 0:
        text = "# heading\n\n" + text + "# footer\n"
    return text


PIECES = [
    "{", "}", "(", ")", "[", "]", ",", "=", "..", ".", "%", '"', "#", "\n", " ", "-", "1", "0", "1.5", "1e999",
    "\x00", "\t", "\r", "\u2028", "\x0b", "é", "\\", '"\\q"', "[[[", ")))", "5..2", "20%",
    *KEYWORDS, "fedavg", "label_flip", "x",
]


@st.composite
def mutated(draw, texts: st.SearchStrategy[str]) -> str:
    """A text with a few edits: pieces inserted, spans deleted, replaced or
    repeated (up to tens of kilobytes, for the time bound)."""
    text = draw(texts)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "repeat"]))
        if action == "insert":
            text = text[:at] + draw(st.sampled_from(PIECES)) + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 30)):]
        elif action == "replace":
            text = text[:at] + draw(st.text(max_size=5)) + text[at + draw(st.integers(1, 5)):]
        elif action == "duplicate":
            end = min(len(text), at + draw(st.integers(1, 60)))
            text = text[:end] + text[at:end] + text[end:]
        else:
            end = min(len(text), at + draw(st.integers(1, 40)))
            text = text[:end] + text[at:end] * draw(st.integers(10, 1500)) + text[end:]
    return text


# ---------------------------------------------------------------------------
# The fuzz tests.


@fuzz_settings(120)
@given(st.one_of(scenario_text(), mutated(scenario_text())))
def test_generated_scenarios_go_through_parse_check_and_fmt(text):
    through_everything(text)


CORPUS = [path.read_text() for path in SHIPPED + GOLDENS]


@fuzz_settings(80)
@given(mutated(st.sampled_from(CORPUS)))
def test_mutated_shipped_and_malformed_files_go_through_parse_check_and_fmt(text):
    through_everything(text)


@fuzz_settings(60)
@given(st.lists(st.sampled_from(PIECES), max_size=60).map("".join))
def test_token_soup_inside_a_scenario_gives_only_scenario_errors(text):
    through_everything('scenario "soup" {\n' + text + "\n}\n")


def _read_bytes(data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / FILENAME
        path.write_bytes(data)
        return read_scenario(str(path))


@fuzz_settings(60)
@given(st.one_of(st.binary(max_size=400), st.sampled_from(CORPUS).map(str.encode).flatmap(
    lambda data: st.integers(0, len(data)).map(lambda at: data[:at] + b"\xff\xfe\x00" + data[at:]))))
def test_random_bytes_give_only_scenario_or_usage_errors(data):
    try:
        _read_bytes(data)
    except ScenarioError as error:
        assert_reported_well(error)
    except UsageError as error:
        assert "not a UTF-8 text file" in str(error), str(error)


# ---------------------------------------------------------------------------
# The assertions can fail: each check above is shown to catch what it is for.


def test_the_generator_makes_scenarios_that_check():
    # Most generated texts parse, and some pass the checker: the fuzzing
    # reaches the checker and the formatter, not only the parser's errors.
    parsed, checked = 0, 0

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(scenario_text())
    def count(text):
        nonlocal parsed, checked
        scenario = timed_parse(text)
        if scenario is None:
            return
        parsed += 1
        try:
            check_points(scenario, REGISTRY)
            checked += 1
        except ScenarioError:
            pass

    count()
    assert parsed >= 30, parsed
    assert checked >= 1, checked


def test_an_unexpected_exception_fails_the_fuzz_assertion(monkeypatch):
    # The parser's last resort turns a bug into a diagnostic; the fuzz
    # assertion must see it.
    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(parser.ToSpec, "transform", broken)
    with pytest.raises(AssertionError, match="an unexpected exception became a diagnostic"):
        timed_parse('scenario "x" {\n  seed 1\n}\n')


CHECKS = """\
scenario "passes the checker" {
  seed 1
  rounds 2
  dataset synthetic(samples = 200, features = 4, classes = 2)
  split iid over 10 clients
  model mlp(hidden = [8])
  aggregator fedavg
}
"""


def test_a_plugin_check_that_raises_fails_the_fuzz_assertion(monkeypatch):
    through_everything(CHECKS)  # passes as it is
    entry = REGISTRY.get("aggregator", "fedavg")

    def broken(self, facts):
        raise KeyError("clients")

    monkeypatch.setattr(entry.cls, "check", broken)
    with pytest.raises(AssertionError, match="an unexpected exception became a diagnostic"):
        through_everything(CHECKS)


def test_a_slow_parse_fails_the_time_bound(monkeypatch):
    # A parse that spends its budget twice over (a stand-in for a
    # quadratic step) fails the bound.
    real = parser.parse_tree

    def slow(text, filename="<scenario>"):
        started = time.process_time()
        while time.process_time() - started < 2 * parse_budget(len(text)):
            pass
        return real(text, filename)

    monkeypatch.setattr(parser, "parse_tree", slow)
    with pytest.raises(AssertionError, match="a super-linear parse"):
        timed_parse('scenario "x" {\n  seed 1\n}\n')


def test_formatting_that_changes_the_scenario_fails_the_fuzz_assertion(monkeypatch):
    through_everything(CHECKS)  # passes as it is
    real = format_text
    monkeypatch.setattr(sys.modules[__name__], "format_text",
                        lambda text, filename: real(text, filename).replace("seed 1", "seed 2"))
    with pytest.raises(AssertionError, match="formatting changed the scenario"):
        through_everything(CHECKS)


def test_the_time_bound_was_measured():
    # Parsing costs something per byte, and the bound grows with the text.
    assert 0 < PER_BYTE_S < 1e-3 and 0 < PER_PARSE_S < 0.1
    assert parse_budget(1_000_000) > parse_budget(1_000) > FLOOR_S
