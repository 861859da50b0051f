"""The examples in the docstrings of the built-in detectors and attacks
run: each module's doctest (a few hand-made rows through its pure function,
TF eager)."""

import doctest
import importlib
import pkgutil

import pytest

import fedarena.plugins.attacks
import fedarena.plugins.detectors


def _modules():
    found = []
    for package in (fedarena.plugins.detectors, fedarena.plugins.attacks):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            found.append(info.name)
    return sorted(found)


def test_every_algorithm_module_has_a_doctest():
    public = [name for name in _modules() if not name.rsplit(".", 1)[1].startswith("_")]
    assert len(public) == 8 + 13
    for name in public:
        module = importlib.import_module(name)
        assert ">>> " in (module.__doc__ or ""), name


@pytest.mark.parametrize("name", _modules())
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, name


def test_importing_the_algorithm_modules_does_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys, importlib, pkgutil\n"
            "for pkg in ('fedarena.plugins.detectors', 'fedarena.plugins.attacks'):\n"
            "    p = importlib.import_module(pkg)\n"
            "    for info in pkgutil.iter_modules(p.__path__, pkg + '.'):\n"
            "        importlib.import_module(info.name)\n"
            "import fedarena.plugins.triggers, fedarena.plugins.edge_cases\n"
            "print('tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
