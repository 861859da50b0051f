"""Malformed scenarios: golden messages.

``tests/malformed/NAME.fls`` holds a bad scenario and ``NAME.expected`` the
exact report (``file:line:col: message``, the line, a caret), for syntax
errors, every static check and sweeps.  The checks run against the built-in
plugins plus throwaway ``toy_*`` plugins registered for these tests, so that
the goldens do not depend on plugins other work may add or change.
Robustness against any input (fuzzing) is in ``test_fuzz.py``.

To rewrite the goldens after deliberately changing a message:
``FEDARENA_UPDATE_GOLDENS=1 pytest tests/language/test_malformed.py`` (then review
the diff).
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest

from fedarena import hookimpl
from fedarena.core.errors import ScenarioError
from fedarena.core.plugin.interfaces import Aggregator, Attack, Detector
from fedarena.core.language.parser import parse
from fedarena.core.plugin.params import param
from fedarena.core.plugin.registry import build_registry
from fedarena.core.scenario.sweep import check_points

HERE = Path(__file__).resolve().parent
CASES = sorted((HERE / "malformed").glob("*.fls"))


@attrs.frozen
class ToyKrum(Aggregator):
    """A Krum-like rule: n >= 2f + 3."""

    f: int = param(doc="Byzantine clients tolerated", ge=0)

    def check(self, facts):
        need = 2 * self.f + 3
        if facts.clients_per_round < need:
            return [f"toy_krum with f = {self.f} needs clients_per_round >= 2f + 3 = {need}, "
                    f"got {facts.clients_per_round}"]
        return []


@attrs.frozen
class ToyBucketing(Aggregator):
    """Wraps another aggregator."""

    inner: Aggregator = param(doc="aggregator applied to the buckets", kind="aggregator")
    size: int = param(2, doc="bucket size", ge=1)


@attrs.frozen
class ToyBroken(Aggregator):
    """Its check has a bug."""

    def check(self, facts):
        raise KeyError("clients")


@attrs.frozen
class ToyNoise(Attack):
    """Adds noise."""

    scale: float = param(1.0, doc="noise scale", gt=0)
    mode: str = param("add", doc="how", choices=("add", "replace"))


@attrs.frozen
class ToyFilter(Detector):
    """Drops updates above a threshold."""

    threshold: float = param(0.5, doc="share kept", ge=0, le=1)


class ToyPlugins:
    @staticmethod
    @hookimpl
    def fedarena_register_aggregators(registry):
        registry.add("toy_krum", ToyKrum)
        registry.add("toy_bucketing", ToyBucketing)
        registry.add("toy_broken", ToyBroken)

    @staticmethod
    @hookimpl
    def fedarena_register_attacks(registry):
        registry.add("toy_noise", ToyNoise)

    @staticmethod
    @hookimpl
    def fedarena_register_detectors(registry):
        registry.add("toy_filter", ToyFilter)


@pytest.fixture(scope="module")
def registry():
    return build_registry(extra_plugins=(("malformed-tests", ToyPlugins),))


def report(path: Path, registry) -> str:
    try:
        check_points(parse(path.read_text(), path.name), registry)
    except ScenarioError as error:
        return str(error)
    return "(no error)"


def test_there_are_enough_malformed_cases():
    assert len(CASES) >= 30
    for case in CASES:
        assert case.with_suffix(".expected").is_file() or os.environ.get("FEDARENA_UPDATE_GOLDENS"), case.name


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_malformed_scenario_reports_its_golden_message(case, registry):
    got = report(case, registry)
    golden = case.with_suffix(".expected")
    if os.environ.get("FEDARENA_UPDATE_GOLDENS"):
        golden.write_text(got + "\n")
    assert got + "\n" == golden.read_text()


def test_the_cli_prints_the_golden_report_and_exits_2(capsys):
    from fedarena.core.cli.main import main

    case = HERE / "malformed" / "syntax_several_errors.fls"
    assert main(["check", str(case)]) == 2
    expected = case.with_suffix(".expected").read_text().replace("syntax_several_errors.fls", str(case))
    assert capsys.readouterr().err == expected


# ---------------------------------------------------------------------------
# Odd places.  (Fuzzing over any input is in test_fuzz.py.)


def test_errors_render_without_traceback_for_odd_spans():
    # Diagnostics may point at the end of the file or past a short line.
    with pytest.raises(ScenarioError) as caught:
        parse("", "empty.fls")
    assert str(caught.value) == "empty.fls:1:1: unexpected end of the file; expected 'scenario'\n    \n    ^"
    with pytest.raises(ScenarioError) as caught:
        parse("\n\n   \n", "blank.fls")
    assert str(caught.value).startswith("blank.fls:1:1: unexpected end of the file; expected 'scenario'")
