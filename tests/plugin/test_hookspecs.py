"""The hooks as documented: every hookspec has a docstring in pytest's
form naming each of its parameters, and docs/plugins.md lists every hook
with exactly its argument list."""

import inspect
import re

import pytest

from fedarena.core.plugin import hookspecs
from fedarena.core.plugin.kinds import KINDS

from conftest import REPO

HOOKS = {name: getattr(hookspecs, name) for name in dir(hookspecs) if name.startswith("fedarena_")}
DOCUMENTED = dict(re.findall(r"`(fedarena_\w+)\(([^)]*)\)`", (REPO / "docs" / "plugins.md").read_text()))


def test_every_kind_has_a_registration_hook():
    assert {kind.hook for kind in KINDS.values()} <= set(HOOKS)
    registration = {name for name in HOOKS if name.startswith("fedarena_register_")}
    assert registration == {kind.hook for kind in KINDS.values()}


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_a_hook_is_listed_in_the_docs_with_its_arguments(name):
    assert name in DOCUMENTED, f"docs/plugins.md does not list `{name}(...)`"
    documented = [arg.strip() for arg in DOCUMENTED[name].split(",") if arg.strip()]
    assert documented == list(inspect.signature(HOOKS[name]).parameters), (
        f"docs/plugins.md lists {name}({DOCUMENTED[name]}), the hookspec takes "
        f"{list(inspect.signature(HOOKS[name]).parameters)}")


def test_the_docs_list_no_hook_that_does_not_exist():
    assert set(DOCUMENTED) <= set(HOOKS) | {"fedarena_registry", "fedarena_server_context", "fedarena_run"}


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_a_hookspec_is_typed_and_documents_each_parameter(name):
    function = HOOKS[name]
    signature = inspect.signature(function)
    doc = inspect.getdoc(function) or ""
    assert doc.split("\n\n")[0].rstrip().endswith("."), f"{name}: the docstring opens with a summary sentence"
    assert "Called" in doc, f"{name}: the docstring says when it is called"
    for parameter in signature.parameters.values():
        assert parameter.annotation is not inspect.Parameter.empty, f"{name}: '{parameter.name}' has no type"
        assert f":param {parameter.name}:" in doc, f"{name}: '{parameter.name}' is not documented"
    assert signature.return_annotation is not inspect.Signature.empty, f"{name}: no return type"
