"""fedarena: poisoning attacks and defenses for federated learning, declared
as scenarios and run on TensorFlow Federated.

The package is assembled from the repository's folders: ``fedarena.core``
(``core/``), ``fedarena.plugins`` (``plugins/``, the built-in plugins) and
``fedarena.grammar`` (``grammar/``).

The Python API (`fedarena.core.api`, docs/api.md) is re-exported here:
``load``, ``run``, ``open_results``, ``apply`` and the objects they return,
``Scenario``, ``Results``, ``Applied``, with the errors they raise.  It is
imported on first use, so ``import fedarena`` stays light for plugins.
"""

from importlib.metadata import PackageNotFoundError, version

from fedarena.core.plugin.hookspecs import hookimpl

try:
    __version__ = version("fedarena")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

# name -> the module that defines it, imported when the name is first used.
_API = {
    "load": "fedarena.core.api", "run": "fedarena.core.api", "open_results": "fedarena.core.api",
    "apply": "fedarena.core.api", "Scenario": "fedarena.core.api", "Results": "fedarena.core.api",
    "Applied": "fedarena.core.api", "ScenarioError": "fedarena.core.errors", "UsageError": "fedarena.core.errors",
    "RunError": "fedarena.core.errors",
}

__all__ = ["__version__", "hookimpl", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fedarena' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
