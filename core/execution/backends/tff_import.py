"""Importing TensorFlow Federated without running its differential-privacy stack.

``import tensorflow_federated`` imports ``tff.aggregators``, whose DP
factories import tensorflow_privacy (which imports tensorflow_probability)
and dp_accounting, whose ``pld`` package imports scipy.signal: most of the
time TFF's own import takes (docs/performance.md, "Start-up (issue #19)"),
for code that fedarena never calls.  tensorflow_privacy itself must run (TFF
evaluates ``tfp.DPQuery`` and ``dp_accounting.DpEvent`` in signatures at
import), but the heaviest parts below it are only referred to at import:
`import_tff` imports the modules in `DEFERRED` *deferred*: the module object
is created (with its ``__spec__``, ``__file__``) but its code runs only when
an attribute it does not have yet is first looked up (a DP aggregator's
sampler, an accountant), in that same object; importing one of its
submodules runs it first, as usual.  ``importlib.util.LazyLoader`` is not
enough: it runs a module on any attribute access, and the import system
reads ``__spec__`` each time the module is imported again.

It fails loudly: if, after TFF's import, a deferred module was not imported
or has already run, TFF's layout is no longer the one this file was written
for (tensorflow-federated 0.87.0) and `import_tff` raises `TFFLayoutError`.
``FEDARENA_DEFER_TFF_DP=0`` imports TFF as it is (the "before" of
``benchmarks/startup.py``).  tests/execution/test_tff_import.py proves that
a full run leaves the modules unrun and that TFF's DP aggregators still work.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import threading
import types

# Packages TFF imports at start-up but fedarena never calls.
DEFERRED = ("tensorflow_probability", "dp_accounting.pld")
VARIABLE = "FEDARENA_DEFER_TFF_DP"

_lock = threading.RLock()


class TFFLayoutError(RuntimeError):
    """TFF's import no longer matches what `import_tff` defers."""


class DeferredModule(types.ModuleType):
    """A module whose code has not run yet: the first look-up of an
    attribute it lacks runs it, in this same object, then answers."""

    def __getattr__(self, name):
        run_deferred(self)
        return getattr(self, name)

    def __dir__(self):
        run_deferred(self)
        return dir(self)


def run_deferred(module: types.ModuleType) -> None:
    """Run a deferred module's code now (once; a no-op for any other module)."""
    with _lock:
        if type(module) is not DeferredModule:  # ran already, in another thread
            return
        spec = module.__spec__
        loader = spec.loader.loader
        module.__class__ = types.ModuleType  # from here on, a missing attribute is an AttributeError
        spec.loader = module.__loader__ = loader
        if spec.submodule_search_locations is not None:
            module.__path__ = spec.submodule_search_locations
        try:
            loader.exec_module(module)
        except BaseException:
            sys.modules.pop(spec.name, None)  # as a failed import leaves it: the next import tries again
            raise


class _DeferringLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return None  # an ordinary module object

    def exec_module(self, module):
        # Without ``__path__``, importing one of its submodules looks it up
        # and so runs the package first, as an ordinary import would.
        module.__dict__.pop("__path__", None)
        module.__class__ = DeferredModule


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Finds each of ``names`` once, with the finders after it, and defers it."""

    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        self.names.discard(fullname)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec  # not Python source (a namespace package, an extension): imported as usual
        spec.loader = _DeferringLoader(spec.loader)
        return spec


def deferring_enabled() -> bool:
    return os.environ.get(VARIABLE, "").strip() != "0"


@contextlib.contextmanager
def deferring(names):
    """Within the block, the first import of each module in ``names`` (not
    imported yet) leaves it unrun (`DeferredModule`)."""
    finder = _DeferringFinder(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def import_tff():
    """``import tensorflow_federated``, with the modules of `DEFERRED` that
    this process has not imported yet left unrun; returns the module."""
    if "tensorflow_federated" in sys.modules or not deferring_enabled():
        import tensorflow_federated

        return tensorflow_federated
    names = [name for name in DEFERRED if name not in sys.modules]
    with deferring(names):
        import tensorflow_federated
    problems = []
    for name in names:
        module = sys.modules.get(name)
        if not isinstance(module, DeferredModule):
            problems.append(f"'{name}' ({'not imported' if module is None else 'run while importing'})")
    if problems:
        raise TFFLayoutError(
            f"tensorflow_federated {tensorflow_federated.__version__} no longer imports as {__name__} expects "
            f"(written for 0.87.0): {', '.join(problems)}; update its DEFERRED list, or set {VARIABLE}=0")
    return tensorflow_federated


def deferred_unrun() -> list[str]:
    """The deferred modules whose code has not run (yet)."""
    return [name for name in DEFERRED if isinstance(sys.modules.get(name), DeferredModule)]
