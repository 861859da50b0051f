"""The core's layers: each module imports only its own layer and those
below it, so the folders read bottom-up and no import cycle can form.

Every import counts, the ones inside functions too: a lazy import is still
a dependency.  The layers, bottom first:

  errors < language < plugin < results < scenario < execution < cli < api
(results sits below scenario: the checker reads results files for `start from`,
and the writer is handed scenarios without importing their classes).

``fedarena.core`` itself (the public plugin API) re-exports the plugin
layer only; `fedarena.core.testing` (pytest fixtures for plugin authors)
and the compatibility modules `interfaces`/`params` sit at the top.
"""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core"
LAYERS = ["errors", "language", "plugin", "results", "scenario", "execution", "cli"]
TOP = len(LAYERS)


def layer_of(module: str) -> int | None:
    """The layer of a ``fedarena.core...`` module, or None for others."""
    parts = module.split(".")
    if parts[:2] != ["fedarena", "core"]:
        return None
    if len(parts) == 2:
        return LAYERS.index("plugin")  # the package re-exports the plugin API
    return LAYERS.index(parts[2]) if parts[2] in LAYERS else TOP


def modules():
    for path in sorted(CORE.rglob("*.py")):
        relative = path.relative_to(CORE).with_suffix("")
        if relative.parts[0] == "_package":
            continue
        parts = [p for p in relative.parts if p != "__init__"]
        yield ".".join(["fedarena", "core", *parts]), path


def imports_of(path: Path, module: str) -> set[str]:
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


@pytest.mark.parametrize("module,path", list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_a_core_module_imports_only_its_own_layer_and_those_below(module, path):
    own = layer_of(module)
    upward = sorted(
        name for name in imports_of(path, module)
        if (other := layer_of(name)) is not None and other > own and name != "fedarena.core"
    )
    assert not upward, f"{module} (layer {LAYERS[own] if own < TOP else 'top'}) imports from above: {upward}"


def test_the_layer_rule_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from fedarena.core.execution import runner\n")
    assert "fedarena.core.execution.runner" in imports_of(bad, "fedarena.core.language.bad")
    assert layer_of("fedarena.core.execution.runner") > layer_of("fedarena.core.language.bad")
