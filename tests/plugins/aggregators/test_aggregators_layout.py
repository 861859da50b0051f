"""The layout of the aggregators: one module per rule, each registering
exactly the rule(s) it defines, and a new rule is new files only."""

import importlib
import inspect
import json
import pkgutil
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fedarena.plugins
import fedarena.plugins.aggregators as package
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.registry import builtin_modules, default_registry

from conftest import tiny_scenario

MODULES = sorted(info.name for info in pkgutil.iter_modules(package.__path__))


class Recorder:
    """Stands in for the registrar a registration hook receives."""

    def __init__(self):
        self.added = {}

    def add(self, name, cls):
        self.added[name] = cls


def test_there_is_one_module_per_rule():
    assert MODULES == ["afa", "bucketing", "bulyan", "centered_clipping", "dnc", "fedavg", "fltrust",
                       "geometric_median", "krum", "median", "multi_krum", "norm_clipping", "signguard",
                       "trimmed_mean"]
    assert {f"{package.__name__}.{name}" for name in MODULES} <= set(builtin_modules())


@pytest.mark.parametrize("name", MODULES)
def test_each_module_registers_exactly_the_rules_it_defines(name):
    module = importlib.import_module(f"{package.__name__}.{name}")
    defined = {cls for cls in vars(module).values()
               if inspect.isclass(cls) and issubclass(cls, Aggregator) and cls.__module__ == module.__name__}
    recorder = Recorder()
    module.fedarena_register_aggregators(registry=recorder)
    assert set(recorder.added.values()) == defined and len(defined) >= 1
    assert name in recorder.added  # the module is named after the rule it registers
    registry = default_registry()
    for rule, cls in recorder.added.items():
        assert registry.get("aggregator", rule).cls is cls
    hooked = {impl.plugin_name for impl in registry.hook.fedarena_register_aggregators.get_hookimpls()}
    assert module.__name__ in hooked
    others = [hook for hook in dir(module) if hook.startswith("fedarena_") and hook != "fedarena_register_aggregators"]
    assert others == []


THROWAWAY = '''
"""Throwaway: the mean of the rows, scaled (a test's rule).

>>> import numpy as np
>>> throwaway(np.array([[0., 2.], [2., 0.]], np.float32), 0.5)[0].numpy().tolist()
[0.5, 0.5]
"""

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf


def throwaway(rows, scale):
    n = tf.shape(rows)[0]
    share = tf.fill([n], scale / tf.cast(n, tf.float32))
    return tf.linalg.matvec(rows, share, transpose_a=True), share


@attrs.frozen
class Throwaway(Aggregator):
    """The mean of the updates, times ``scale``."""

    scale: float = param(1.0, doc="factor on the mean", gt=0)

    def check(self, facts):
        return [] if self.scale <= 1 else ["throwaway needs scale <= 1"]

    def aggregate(self, rows, weights, ctx):
        return throwaway(rows, self.scale)


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("throwaway", Throwaway)
'''

# Run in a fresh interpreter whose `fedarena.plugins` is the copy.
PROBE = '''
import json, sys
import numpy as np
import fedarena.plugins
fedarena.plugins.__path__[:] = [sys.argv[1]]
from fedarena.core.execution.engine.run import aggregate_kept
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import build_registry
from fedarena.core.scenario.sweep import check
from fedarena.core.testing import make_server_context
registry = build_registry()
entry = registry.get("aggregator", "throwaway")
scenario = check(parse(sys.argv[2], "s.fls"), registry)
rows = np.array([[0.0, 2.0], [2.0, 0.0], [9.0, 9.0]], np.float32)
aggregate, share, _ = aggregate_kept(scenario.aggregator, rows, np.array([1.0, 1.0, 0.0], np.float32),
                                     make_server_context(rows), {})
print(json.dumps({"module": entry.cls.__module__, "label": registry.label(scenario.aggregator),
                  "aggregate": aggregate.numpy().tolist(), "share": share.numpy().tolist(),
                  "load_errors": registry.load_errors}))
'''


def _tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts}


@pytest.mark.e2e
def test_adding_an_aggregator_is_new_files_and_no_edited_ones(tmp_path):
    installed = Path(fedarena.plugins.__path__[0])
    copy = tmp_path / "plugins"
    shutil.copytree(installed, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "aggregators" / "throwaway.py").write_text(textwrap.dedent(THROWAWAY))
    before, after = _tree(installed), _tree(copy)
    assert set(after) - set(before) == {"aggregators/throwaway.py"}
    assert all(after[name] == content for name, content in before.items())  # nothing edited

    scenario = tiny_scenario(aggregator="throwaway(scale = 0.5)")
    done = subprocess.run([sys.executable, "-c", PROBE, str(copy), scenario], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["module"] == "fedarena.plugins.aggregators.throwaway"
    assert found["label"] == "throwaway(scale = 0.5)" and found["load_errors"] == []
    assert found["aggregate"] == [0.5, 0.5] and found["share"] == [0.25, 0.25, 0.0]
    # The checker runs the new rule's check too.
    bad = subprocess.run([sys.executable, "-c", PROBE, str(copy), tiny_scenario(aggregator="throwaway(scale = 2)")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "throwaway needs scale <= 1" in bad.stderr
