"""TFF imported without running its differential-privacy stack
(`fedarena.core.execution.backends.tff_import`): deferred modules run on
first use and never before, a full run leaves them unrun, TFF's DP code
still works, and a TFF whose imports changed is an error, not a silent
slowdown."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import h5py
import pytest

from fedarena.core.execution.backends import tff_import
from fedarena.core.execution.backends.tff_import import DeferredModule, deferring

from conftest import REPO, tiny_scenario

FAKES = ("runlog", "fakepkg", "fakepkg.sub", "brokenpkg")


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    """``fakepkg`` (with ``fakepkg.sub``) and ``brokenpkg``, each noting in
    ``runlog.ran`` when its code runs; forgotten again afterwards."""
    (tmp_path / "runlog.py").write_text("ran = []\n")
    (tmp_path / "fakepkg").mkdir()
    (tmp_path / "fakepkg" / "__init__.py").write_text("import runlog\nrunlog.ran.append(__name__)\nVALUE = 42\n")
    (tmp_path / "fakepkg" / "sub.py").write_text(
        "import runlog\nrunlog.ran.append(__name__)\nfrom fakepkg import VALUE as PARENT\n")
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("import runlog\nrunlog.ran.append(__name__)\n1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in FAKES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield importlib.import_module("runlog")
    for name in FAKES:
        sys.modules.pop(name, None)


def test_a_deferred_module_runs_on_its_first_missing_attribute_only(fake_packages):
    with deferring(["fakepkg"]):
        import fakepkg
    assert isinstance(fakepkg, DeferredModule) and fake_packages.ran == []
    # What the import system and tools read is there without running it,
    # and importing it again (TFF does, from several modules) does not run it.
    assert (fakepkg.__name__, fakepkg.__spec__.name) == ("fakepkg", "fakepkg")
    assert fakepkg.__file__.endswith("__init__.py")
    assert importlib.import_module("fakepkg") is fakepkg
    exec("import fakepkg as again", {})
    assert fake_packages.ran == []
    assert fakepkg.VALUE == 42  # runs it, in the same object
    assert fake_packages.ran == ["fakepkg"] and sys.modules["fakepkg"] is fakepkg
    assert type(fakepkg) is types.ModuleType and fakepkg.__loader__.__class__.__name__ == "SourceFileLoader"
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        fakepkg.missing  # noqa: B018  (an ordinary module now)
    assert fake_packages.ran == ["fakepkg"]


def test_importing_a_submodule_runs_the_deferred_package_first(fake_packages):
    with deferring(["fakepkg"]):
        import fakepkg
    assert fake_packages.ran == []
    from fakepkg import sub

    assert fake_packages.ran == ["fakepkg", "fakepkg.sub"] and sub.PARENT == 42


def test_from_import_and_dir_run_it(fake_packages):
    with deferring(["fakepkg"]):
        import fakepkg  # noqa: F401
    from fakepkg import VALUE

    assert VALUE == 42 and fake_packages.ran == ["fakepkg"]
    with deferring(["fakepkg.sub"]):
        import fakepkg.sub
    assert fake_packages.ran == ["fakepkg"]
    assert "PARENT" in dir(fakepkg.sub) and fake_packages.ran == ["fakepkg", "fakepkg.sub"]


def test_a_deferred_module_that_fails_raises_where_it_is_used_and_is_forgotten(fake_packages):
    with deferring(["brokenpkg"]):
        import brokenpkg
    with pytest.raises(ZeroDivisionError):
        brokenpkg.anything  # noqa: B018
    assert "brokenpkg" not in sys.modules  # as after a failed import: the next import tries again
    with pytest.raises(ZeroDivisionError):
        import brokenpkg  # noqa: F811, F401
    assert fake_packages.ran == ["brokenpkg", "brokenpkg"]


def test_a_module_imported_already_or_outside_the_block_is_left_alone(fake_packages):
    import fakepkg

    with deferring(["fakepkg"]):
        import fakepkg.sub  # noqa: F401
    assert type(fakepkg) is types.ModuleType and fake_packages.ran == ["fakepkg", "fakepkg.sub"]


# The check after TFF's import, on a stand-in `tensorflow_federated` (no TensorFlow).
LAYOUT_PROBE = """
import sys
from fedarena.core.execution.backends import tff_import
tff_import.DEFERRED = {deferred!r}
try:
    tff_import.import_tff()
except tff_import.TFFLayoutError as error:
    print("ERROR:", error)
print("UNRUN:", tff_import.deferred_unrun())
"""


@pytest.fixture
def fake_tff(tmp_path):
    (tmp_path / "tensorflow_federated").mkdir()
    (tmp_path / "tensorflow_federated" / "__init__.py").write_text(
        "__version__ = '0.99.0'\nimport kept_as_reference\nimport touched_at_import\ntouched_at_import.VALUE\n")
    for name in ("kept_as_reference", "touched_at_import"):
        (tmp_path / f"{name}.py").write_text("VALUE = 1\n")

    def probe(deferred, **env) -> str:
        done = subprocess.run([sys.executable, "-c", LAYOUT_PROBE.format(deferred=deferred)], capture_output=True,
                              text=True, cwd=REPO, timeout=120,
                              env={**__import__("os").environ, "PYTHONPATH": str(tmp_path), **env})
        assert done.returncode == 0, done.stderr
        return done.stdout

    return probe


def test_a_changed_tff_layout_is_an_error_naming_what_changed(fake_tff):
    out = fake_tff(("kept_as_reference", "touched_at_import", "never_imported"))
    assert out.splitlines()[0] == (
        "ERROR: tensorflow_federated 0.99.0 no longer imports as fedarena.core.execution.backends.tff_import expects "
        "(written for 0.87.0): 'touched_at_import' (run while importing), 'never_imported' (not imported); update "
        "its DEFERRED list, or set FEDARENA_DEFER_TFF_DP=0")
    assert fake_tff(("kept_as_reference",)) == "UNRUN: ['kept_as_reference']\n"


def test_the_variable_turns_deferring_off(fake_tff):
    assert fake_tff(("kept_as_reference",), FEDARENA_DEFER_TFF_DP="0") == "UNRUN: []\n"


def test_the_real_deferred_list_is_the_dp_stack():
    assert tff_import.DEFERRED == ("tensorflow_probability", "dp_accounting.pld")


# The real TFF, in fresh processes (this one may have imported TFF already).
RUN_PROBE = """
import json, sys
from fedarena.core.cli.main import main
from fedarena.core.execution.backends.tff_import import deferred_unrun
code = main(["run", {path!r}, "--progress", "none"])
print("PROBE:", json.dumps(dict(code=code, unrun=deferred_unrun(), scipy_signal="scipy.signal" in sys.modules)))
"""


def probe(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("PROBE: "))
    return json.loads(line.removeprefix("PROBE: "))


@pytest.mark.e2e
def test_a_full_run_leaves_tffs_dp_stack_unrun(tmp_path, write_scenario):
    out = tmp_path / "out.h5"
    found = probe(RUN_PROBE.format(path=str(write_scenario(tiny_scenario(out, rounds=2)))))
    assert found == dict(code=0, unrun=["tensorflow_probability", "dp_accounting.pld"], scipy_signal=False)
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and len(f["metrics/test_accuracy"]) == 2


DP_PROBE = """
import json
import numpy as np
import tensorflow as tf
from fedarena.core.execution.backends.tff_import import deferred_unrun, import_tff
tff = import_tff()
before = deferred_unrun()
# TFF's DP mean (no noise: the plain mean of the clipped values) ...
factory = tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
    noise_multiplier=0.0, clients_per_round=2, clip=100.0)
process = factory.create(tff.TensorType(np.float32, [3]))
from fedarena.core.execution.backends.local import local_backend
with local_backend():  # not TFF's default context, which starts a worker process and leaves it behind
    mean = process.next(process.initialize(), [np.array([1, 2, 3], np.float32), np.array([3, 4, 5], np.float32)]).result
# ... the discrete Gaussian sampler of its distributed DP (tensorflow_probability) ...
from tensorflow_privacy.privacy.dp_query import discrete_gaussian_utils
samples = discrete_gaussian_utils.sample_discrete_gaussian(tf.constant(3, tf.int32), [2000], tf.int32).numpy()
# ... and dp_accounting's PLD accountant (dp_accounting.pld), against its RDP one.
import dp_accounting
event = dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(2.0), 10)
pld = dp_accounting.pld.PLDAccountant().compose(event).get_epsilon(1e-5)
rdp = dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(1e-5)
print("PROBE:", json.dumps(dict(before=before, after=deferred_unrun(), mean=np.asarray(mean).tolist(),
                                integral=bool(np.all(samples == np.round(samples))), std=float(samples.std()),
                                pld=pld, rdp=rdp)))
"""


@pytest.mark.e2e
def test_tffs_dp_code_still_works_and_runs_the_deferred_modules():
    found = probe(DP_PROBE)
    assert found["before"] == ["tensorflow_probability", "dp_accounting.pld"] and found["after"] == []
    assert found["mean"] == [2.0, 3.0, 4.0]
    assert found["integral"] and 2.7 < found["std"] < 3.3  # a discrete Gaussian of scale 3
    assert 0 < found["pld"] <= found["rdp"]  # PLD accounting is the tighter of the two
