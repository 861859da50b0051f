"""The package is one import package, ``fedarena``; the repository's
top-level folders never import on their own."""

import subprocess
import sys


def test_only_fedarena_is_importable(tmp_path):
    code = (
        "import importlib.util as u, fedarena.core, fedarena.plugins, fedarena.grammar\n"
        "print([u.find_spec(n) is None for n in ('core', 'plugins', 'grammar')])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[True, True, True]"


def test_the_grammar_ships_inside_the_package():
    from importlib import resources

    assert resources.files("fedarena.grammar").joinpath("scenario.lark").is_file()


def test_pyproject_lists_every_package_folder():
    # setuptools maps folders to `fedarena.*` by an explicit list: a new
    # package folder missing from it would be left out of a built wheel.
    import tomllib
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    listed = set(tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"fedarena"}
    for folder, name in (("core", "fedarena.core"), ("plugins", "fedarena.plugins"), ("grammar", "fedarena.grammar")):
        for init in (repo / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(repo / folder).parts
            if parts[:1] != ("_package",):
                found.add(".".join([name, *parts]))
    assert listed == found


def test_the_product_never_points_at_design_notes_outside_the_repository():
    # The team's design notes (ARCHITECTURE.md, ALGORITHMS.md, ...) are not
    # shipped; the product's own docs live in docs/.
    import re
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    names = re.compile(r"\b(ARCHITECTURE|ALGORITHMS|LAYOUT|STYLE|LANGUAGE)\.md\b|shared/design")
    files = subprocess.run(["git", "ls-files", "core", "plugins", "grammar", "docs", "scenarios", "benchmarks",
                            "README.md", "pyproject.toml"], cwd=repo, capture_output=True, text=True).stdout.split()
    found = [f"{name}:{number}" for name in files if not name.endswith((".png", ".ipynb"))
             for number, line in enumerate((repo / name).read_text(errors="replace").splitlines(), 1)
             if names.search(line)]
    assert found == []
