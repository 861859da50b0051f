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
