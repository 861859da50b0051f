"""A third-party plugin package, installed from examples/, proven end to
end: listed with its distribution, used by a scenario, recorded in the
results file, tested with fedarena's own pytest fixtures, and blockable."""

import json
import os
import shutil
import subprocess
import sys

import h5py
import pytest

from conftest import REPO, fedarena_command, tiny_scenario

EXAMPLE = REPO / "examples" / "fedarena-example-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example installed into a folder of its own, put on PYTHONPATH."""
    target = tmp_path_factory.mktemp("site")
    uv = shutil.which("uv")
    assert uv, "uv installs the project (README), so it is on PATH"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--no-deps", "--python", sys.executable, "--target", str(target), str(EXAMPLE)],
        check=True, capture_output=True, text=True,
    )
    return dict(os.environ, PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="3")


def fedarena(env, *args, **kwargs):
    return subprocess.run(fedarena_command(*args), env=env, capture_output=True, text=True, timeout=300, **kwargs)


def test_plugins_lists_both_with_their_distribution(installed):
    listed = json.loads(fedarena(installed, "plugins", "--json").stdout)
    by_name = {(p["kind"], p["name"]): p for p in listed}
    for key in (("attack", "shift"), ("aggregator", "clipped_mean")):
        assert by_name[key]["distribution"] == "fedarena-example-plugin"
        assert by_name[key]["version"] == "0.1.0"
    (bound,) = by_name[("aggregator", "clipped_mean")]["parameters"]
    assert bound == {"name": "bound", "type": "float", "required": False, "default": 1.0, "range": "> 0",
                     "doc": "largest L2 norm an update keeps"}
    assert by_name[("aggregator", "fedavg")]["distribution"] == "fedarena"


def test_a_scenario_uses_them_and_records_their_provenance(installed, tmp_path):
    out = tmp_path / "out.h5"
    text = tiny_scenario(out, rounds=2, aggregator="clipped_mean(bound = 0.5)", attack="  attack shift(amount = 3.0) {\n    clients 2\n  }\n")
    (tmp_path / "s.fls").write_text(text)
    result = fedarena(installed, "run", tmp_path / "s.fls")
    assert result.returncode == 0, result.stderr
    with h5py.File(out) as f:
        assert f.attrs["status"] == "complete"
        for group in ("plugins/aggregator", "plugins/attack_shift"):
            assert f[group].attrs["distribution"] == "fedarena-example-plugin"
            assert f[group].attrs["version"] == "0.1.0"
        # The attack shifted its rows: their norms dwarf the honest ones.
        norms, malicious = f["clients/update_norm"][()], f["clients/malicious"][()]
        assert norms[malicious].min() > 10 * norms[~malicious].max()


def test_the_example_passes_its_own_tests_with_fedarenas_fixtures(installed):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        env=installed, capture_output=True, text=True, timeout=300, cwd=EXAMPLE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


@pytest.mark.parametrize("variable, value", [("FEDARENA_PLUGINS_BLOCK", "example"), ("FEDARENA_PLUGINS_ONLY", "other")])
def test_environment_controls_keep_a_plugin_out(installed, variable, value):
    listed = json.loads(fedarena(dict(installed, **{variable: value}), "plugins", "--json").stdout)
    names = {p["name"] for p in listed}
    assert "shift" not in names and "clipped_mean" not in names
    assert "fedavg" in names
