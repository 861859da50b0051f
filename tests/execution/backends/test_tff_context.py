"""fedarena's one door into TFF's private modules: nothing else in the core
imports ``tensorflow_federated.python``, and a computation called through it
still lets a stop request through."""

import ast
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from fedarena.core.execution import interrupts
from fedarena.core.execution.backends import tff_context as door

CORE = Path(__file__).resolve().parents[3] / "core"
# tff_context.py, and the in-process executor, which implements TFF's executor interface.
ALLOWED = {"execution/backends/tff_context.py", "execution/backends/local.py"}


def private_tff_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [n for n in names if n == "tensorflow_federated.python" or n.startswith("tensorflow_federated.python.")]
    return found


def test_only_tff_context_imports_tffs_private_modules():
    offenders = {
        str(path.relative_to(CORE)): names
        for path in sorted(CORE.rglob("*.py"))
        if str(path.relative_to(CORE)) not in ALLOWED and (names := private_tff_imports(path))
    }
    assert not offenders, f"import TFF's private modules through core/execution/backends/tff_context.py: {offenders}"
    assert private_tff_imports(CORE / "execution/backends/tff_context.py")  # the rule sees an import


def test_the_rule_sees_every_way_to_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from tensorflow_federated.python.core import impl\n"
                   "import tensorflow_federated.python.common_libs\nfrom tensorflow_federated import python\n")
    assert {"tensorflow_federated.python.core", "tensorflow_federated.python.common_libs",
            "tensorflow_federated.python"} <= set(private_tff_imports(bad))


def test_a_call_runs_in_the_callers_context_and_returns_or_raises(tff_context):
    import tensorflow_federated as tff

    double = tff.tensorflow.computation(lambda x: x * 2, tff.TensorType(np.int32))
    assert door.call_interruptibly(double, 21) == 42

    def fails():
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        door.call_interruptibly(fails)


def test_a_stop_request_ends_the_wait_and_the_watch_is_checked():
    class Watch:
        checks = 0

        def check(self):
            Watch.checks += 1
            raise RuntimeError("worker gone")

    with pytest.raises(RuntimeError, match="worker gone"):
        door.call_interruptibly(time.sleep, 5, watch=Watch())
    assert Watch.checks == 1
    with interrupts.handled():
        signal.raise_signal(signal.SIGTERM)  # recorded, not raised: the wait raises it
        started = time.monotonic()
        with pytest.raises(interrupts.Interrupted):
            door.call_interruptibly(time.sleep, 5)
        assert time.monotonic() - started < 4  # well before the 5 s sleep ends: no full wait
