"""docs/plugin-reference.md is generated from the plugins' declarations
(`fedarena.core.plugin.docs`); the committed file must be the generator's
output, so the reference never drifts from the code."""

import re

import attrs
import pytest

from fedarena import hookimpl
from fedarena.core.plugin import docs as plugin_docs
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.params import param
from fedarena.core.plugin.kinds import KINDS
from fedarena.core.plugin.registry import build_registry

COMMITTED = plugin_docs.repository_root() / plugin_docs.DOC_PATH


@pytest.fixture(scope="module")
def rendered():
    return plugin_docs.render()


def test_the_committed_reference_is_the_generators_output(rendered):
    assert COMMITTED.is_file(), f"{COMMITTED} is missing; run {plugin_docs.COMMAND}"
    assert COMMITTED.read_text(encoding="utf-8") == rendered, (
        f"{plugin_docs.DOC_PATH} is out of date with the plugins' declarations; run {plugin_docs.COMMAND}"
    )


def _sections(text: str) -> dict[str, str]:
    """Each plugin's section (from its '### `name`' heading to the next heading), by kind and name."""
    sections, kind = {}, None
    for block in re.split(r"(?m)^(?=##+ )", text):
        heading = block.splitlines()[0] if block else ""
        if heading.startswith("## "):
            kind = heading[3:].strip()
        elif heading.startswith("### "):
            sections[(kind, heading[4:].strip().strip("`"))] = block
    return sections


def test_every_builtin_plugin_and_parameter_is_documented(rendered):
    registry = build_registry()
    sections = _sections(rendered)
    builtin = [e for e in registry.entries() if e.cls.__module__.startswith("fedarena.plugins.")]
    assert builtin
    for entry in builtin:
        title = KINDS[entry.kind].title
        section = sections.get((title, entry.name))
        assert section is not None, f"no section for {entry.kind} '{entry.name}'"
        assert " ".join(entry.doc.split()) in " ".join(section.split())  # the summary `fedarena plugins` shows
        for info in entry.params():
            row = next((line for line in section.splitlines() if line.startswith(f"| `{info.name}` |")), None)
            assert row is not None, f"{entry.name}: parameter '{info.name}' missing"
            cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
            assert cells[1] == info.type_name()
            assert (cells[2] == "required") == info.required
            assert cells[3] == info.range_text()
            assert cells[4] == " ".join(info.doc.split())
    assert len(sections) == len(builtin)


def test_defaults_are_written_as_a_scenario_writes_them(rendered):
    sections = _sections(rendered)
    krum = sections[("Aggregators", "krum")]
    assert "| `f` | int | required | >= 0 |" in krum and "Usage: `krum(f = ...)`" in krum
    mlp = sections[("Models", "mlp")]
    assert "| `hidden` | list of int | `[200]` | >= 1 |" in mlp
    alie = sections[("Attacks", "alie")]
    assert '| `variant` | str | `"paper"` |' in alie and "| `z` | float | None" not in alie
    assert "| `iterative` | bool | `false` |" in sections[("Aggregators", "multi_krum")]
    assert "No parameters." in sections[("Aggregators", "median")]


@attrs.frozen
class ThirdParty(Aggregator):
    """A plugin installed beside fedarena."""

    bound: float = param(1.0, doc="a bound", gt=0)


class ThirdPartyPlugins:
    @staticmethod
    @hookimpl
    def fedarena_register_aggregators(registry):
        registry.add("third_party_mean", ThirdParty)


def test_only_fedarena_s_own_plugins_are_listed(rendered):
    registry = build_registry(extra_plugins=(("third", ThirdPartyPlugins),))
    assert registry.get("aggregator", "third_party_mean") is not None
    assert plugin_docs.render(registry) == rendered
    assert "third_party_mean" not in rendered


def test_the_command_writes_and_checks_the_file(tmp_path, rendered, capsys):
    out = tmp_path / "reference.md"
    assert plugin_docs.main([str(out), "--check"]) == 1  # missing
    assert plugin_docs.main([str(out)]) == 0
    assert out.read_text(encoding="utf-8") == rendered
    assert plugin_docs.main([str(out), "--check"]) == 0
    out.write_text(rendered.replace("Krum", "Krun", 1), encoding="utf-8")
    assert plugin_docs.main([str(out), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
