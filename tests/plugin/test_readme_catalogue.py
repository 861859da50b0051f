"""README.md's "What is inside" catalogue is generated from the registry
(`fedarena.core.plugin.docs.render_catalogue`): the committed section must be
the generator's output, list every built-in attack, trigger, aggregator,
detector, dataset, split and model with the paper it follows, and link each
to a heading that exists in docs/plugin-reference.md."""

import re

import pytest

from fedarena.core.plugin import docs as plugin_docs
from fedarena.core.plugin.kinds import KINDS
from fedarena.core.plugin.registry import build_registry

ROOT = plugin_docs.repository_root()
README = ROOT / plugin_docs.README_PATH
REFERENCE = ROOT / plugin_docs.DOC_PATH
LINK = re.compile(r"\]\(([^)\s]*)\)")


@pytest.fixture(scope="module")
def registry():
    return build_registry()


@pytest.fixture(scope="module")
def catalogue(registry):
    return plugin_docs.render_catalogue(registry)


@pytest.fixture(scope="module")
def readme():
    return README.read_text(encoding="utf-8")


def _builtin(registry, kind):
    return [e for e in registry.entries(kind) if e.cls.__module__.startswith("fedarena.plugins.")]


def _rows(catalogue):
    """The catalogue's table rows by (kind title, name): [name, what it does, paper] cells."""
    rows, title = {}, None
    for line in catalogue.splitlines():
        if line.startswith("### "):
            title = line[4:]
        elif line.startswith("| [`"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            name = re.match(r"\[`([^`]+)`\]", cells[0]).group(1)
            rows[(title, name)] = cells
    return rows


def test_the_readme_catalogue_is_the_generators_output(readme, catalogue):
    assert plugin_docs.readme_catalogue(readme) == catalogue, (
        f"README.md's catalogue is out of date with the plugins; run {plugin_docs.COMMAND}"
    )
    assert catalogue.startswith(plugin_docs.CATALOGUE_START + "\n")
    assert catalogue.endswith(plugin_docs.CATALOGUE_END + "\n")
    assert "## What is inside\n" in readme.split(plugin_docs.CATALOGUE_START)[0]


def test_every_builtin_is_listed_with_its_summary_and_paper(registry, catalogue):
    rows = _rows(catalogue)
    listed = 0
    for kind in plugin_docs.CATALOGUE_KINDS:
        entries = _builtin(registry, kind)
        assert entries, f"no built-in {kind}"
        for entry in entries:
            paper = vars(entry.cls).get("paper", "")  # its own, not inherited from the class it extends
            assert isinstance(paper, str) and paper.strip(), f"{kind} '{entry.name}' has no paper"
            row = rows.get((KINDS[kind].title, entry.name))
            assert row is not None, f"{kind} '{entry.name}' missing from the catalogue"
            summary = plugin_docs.first_sentence(entry.doc)
            assert summary and entry.doc.startswith(summary)  # what `fedarena plugins` shows begins with it
            assert row[1:] == [summary, paper]
            listed += 1
    assert len(rows) == listed  # nothing else, no third-party plugin


def test_optimizers_and_metrics_are_named_after_the_tables(registry, catalogue):
    line = next(line for line in catalogue.splitlines() if line.startswith("The reference also documents"))
    assert catalogue.index(line) > catalogue.rindex("\n| [`")  # after the last table
    for kind in ("optimizer", "metric"):
        entries = _builtin(registry, kind)
        assert entries
        for entry in entries:
            assert f"`{entry.name}`" in line


def test_the_links_lead_to_headings_of_the_reference(catalogue):
    reference = REFERENCE.read_text(encoding="utf-8")
    headings = {anchor: (level, text) for level, text, anchor in plugin_docs.heading_anchors(reference)}
    rows = _rows(catalogue)
    assert rows
    for (title, name), cells in rows.items():
        target = LINK.search(cells[0]).group(1)
        path, _, anchor = target.partition("#")
        assert path == plugin_docs.DOC_PATH.as_posix()
        assert headings.get(anchor) == (3, f"`{name}`"), f"{target} is not the heading of '{name}'"
    for target in LINK.findall(catalogue):
        path, _, anchor = target.partition("#")
        assert (ROOT / path).is_file(), target
        assert not anchor or anchor in headings, target


def test_anchors_are_made_as_github_makes_them():
    text = "\n".join([
        "# Plugin reference", "## Backends: where rounds compute", "### `multi_krum`", "### `multi_krum`",
        "```", "## Not a heading", "```", "## Datasets ##", "### Fang et al.'s [attack](x.md) on Krum",
    ])
    assert [anchor for _, _, anchor in plugin_docs.heading_anchors(text)] == [
        "plugin-reference", "backends-where-rounds-compute", "multi_krum", "multi_krum-1", "datasets",
        "fang-et-als-attack-on-krum",
    ]


def test_internal_links_of_the_readme_resolve(readme):
    anchors = {anchor for _, _, anchor in plugin_docs.heading_anchors(readme)}
    for target in LINK.findall(readme):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        assert not path.startswith("../"), f"README.md points outside the repository: {target}"
        if not path:
            assert anchor in anchors, f"README.md links to #{anchor}, which is no heading of it"
        else:
            assert (ROOT / path).exists(), target
    assert "../shared" not in readme


def test_the_readme_keeps_its_two_set_up_commands(readme):
    set_up = readme.split("## Set up and run\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"(?ms)^```\n(.*?)^```", set_up)
    assert blocks == [
        "pip install uv && uv run --locked fedarena run scenarios/quickstart.fls\n",
        "pip install uv && uv run --locked pytest\n",
    ]
    titles = [line for line in readme.splitlines() if line.startswith("## ")]
    assert titles.index("## What is inside") == titles.index("## What comes out") + 1
    assert titles.index("## Worker processes") > titles.index("## What is inside")


@pytest.mark.parametrize("text, sentence", [
    ("Krum (Blanchard et al. 2017, NeurIPS). More.", "Krum (Blanchard et al. 2017, NeurIPS)."),
    ("Label skew (Hsu et al. 2019). Small alpha: few classes.", "Label skew (Hsu et al. 2019)."),
    ("Tolpegin et al. 2020 (ESORICS): flips show. Each update.", "Tolpegin et al. 2020 (ESORICS): flips show."),
    ("Sends -eps times the mean, i.e. Negated. Next.", "Sends -eps times the mean, i.e. Negated."),
    ("A value of 1.0 for images. Then", "A value of 1.0 for images."),
    ("No period at the end", "No period at the end"),
    ("Over\n  two lines. Second.", "Over two lines."),
])
def test_first_sentence(text, sentence):
    assert plugin_docs.first_sentence(text) == sentence


def test_the_command_writes_and_checks_the_readme(tmp_path, catalogue, capsys):
    reference, readme = tmp_path / "reference.md", tmp_path / "README.md"
    hand = "# x\n\n## What is inside\n\nby hand\n\n{}\n\n## After\n\nkept\n"
    readme.write_text(hand.format(plugin_docs.CATALOGUE_START + "\n" + plugin_docs.CATALOGUE_END), encoding="utf-8")
    assert plugin_docs.main([str(reference), "--readme", str(readme), "--check"]) == 1
    assert plugin_docs.main([str(reference), "--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == hand.format(catalogue.rstrip("\n"))
    assert plugin_docs.main([str(reference), "--readme", str(readme), "--check"]) == 0
    capsys.readouterr()
    readme.write_text("# no markers\n", encoding="utf-8")
    assert plugin_docs.main([str(reference), "--readme", str(readme)]) == 1
    assert "catalogue" in capsys.readouterr().err
    assert readme.read_text(encoding="utf-8") == "# no markers\n"
