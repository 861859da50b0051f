"""Every shipped scenario, as a clean clone has it, on a machine that has
fetched nothing and has no network: ``fedarena check`` passes it, or it
says at its top what it needs (``fedarena data fetch NAME``, or the command
that makes a file it reads) and ``check`` fails with exactly that, at the
place, and nothing else.

The scenarios are the files git would ship (tracked, or new and not
ignored), copied without anything generated beside them; ``HOME`` is an
empty folder and ``FEDARENA_DATA`` unset, so no dataset cache is found.  A
scenario added later is covered without a change here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shipped_files() -> list[str]:
    """Paths (relative to the repository) of the files under scenarios/ that a clone would have."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "scenarios"],
                                cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return sorted({name for name in listed.decode().split("\0") if name and (REPO / name).is_file()})


FILES = shipped_files()
SCENARIOS = [name for name in FILES if name.endswith(".fls")]
FETCH = re.compile(r"^dataset '(\w+)' is not on this machine and has no path: run 'fedarena data fetch (\w+)' on a "
                   r"machine with network \(it writes .+\), or give path = .+$")
MAKES = re.compile(r"(python -m [\w.]+)")
DIAGNOSTIC = re.compile(r"^(?P<file>\S+\.fls):(?P<line>\d+):(?P<column>\d+): (?P<message>.*)$")


def header(text: str) -> str:
    """The comment lines a scenario file opens with."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def complaints(text: str, messages: list[str]) -> list[str]:
    """What is wrong with a scenario that fails check with ``messages`` (empty: it passed, or it says what it needs
    and fails with exactly that)."""
    said = header(text)
    wrong = []
    for message in messages:
        fetch = FETCH.match(message)
        if fetch and fetch.group(1) == fetch.group(2):
            if f"fedarena data fetch {fetch.group(1)}" not in said:
                wrong.append(f"check says to run 'fedarena data fetch {fetch.group(1)}', but the file's opening "
                             "comment does not")
            continue
        makes = MAKES.search(message)
        if makes and makes.group(1) in said:
            continue
        wrong.append(f"fails check on a clean clone: {message}")
    return wrong


@pytest.fixture(scope="module")
def clean_check(tmp_path_factory):
    """`fedarena check` on every shipped scenario in a clean clone's copy, with an empty home:
    (stdout, {scenario: [messages]})."""
    if not SCENARIOS:
        pytest.skip("no git checkout to list the shipped scenarios from")
    root = tmp_path_factory.mktemp("clone")
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    home = root / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("FEDARENA_DATA", "KERAS_HOME")}
    env.update(HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "fedarena.core.cli.main", "check", *SCENARIOS], cwd=root,
                            env=env, capture_output=True, text=True, timeout=600)
    messages: dict[str, list[str]] = {}
    for line in result.stderr.splitlines():
        found = DIAGNOSTIC.match(line)
        if found:
            messages.setdefault(found["file"], []).append(found["message"])
    assert result.returncode == (2 if messages else 0), result.stderr
    return result.stdout, messages


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_shipped_scenario_checks_offline_or_says_what_it_needs(name, clean_check):
    stdout, messages = clean_check
    if name not in messages:
        assert f"{name}: ok (" in stdout
        return
    assert complaints((REPO / name).read_text(encoding="utf-8"), messages[name]) == []


def test_the_mnist_cnn_scenario_needs_mnist_and_says_so(clean_check):
    _, messages = clean_check
    assert messages["scenarios/mnist_cnn.fls"] == [
        "dataset 'mnist' is not on this machine and has no path: run 'fedarena data fetch mnist' on a machine with "
        "network (it writes mnist.npz, 11 MB, to ~/.keras/datasets), or give path = \"FOLDER\" holding the IDX files "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz (or a Keras-layout mnist.npz)"
    ]
    assert "fedarena data fetch mnist" in header((REPO / "scenarios" / "mnist_cnn.fls").read_text())
    assert "../" not in (REPO / "scenarios" / "mnist_cnn.fls").read_text()  # nothing outside the repository


def test_a_scenario_that_does_not_say_what_it_needs_is_caught():
    fetch = ("dataset 'cifar10' is not on this machine and has no path: run 'fedarena data fetch cifar10' on a "
             "machine with network (it writes cifar-10-batches-py.tar.gz, 170 MB, to ~/.keras/datasets), or give "
             "path = \"FOLDER\" holding ...")
    silent = "# ResNet-18 on CIFAR-10.\nscenario \"x\" {\n}\n"
    telling = "# Needs `fedarena data fetch cifar10` first.\nscenario \"x\" {\n}\n"
    assert complaints(telling, [fetch]) == []
    assert complaints(silent, [fetch]) == [
        "check says to run 'fedarena data fetch cifar10', but the file's opening comment does not"]
    other = "unknown aggregator 'fedvg'; did you mean 'fedavg'?"
    assert complaints(telling, [fetch, other]) == [f"fails check on a clean clone: {other}"]
    missing_file = ("edge_case: the edge-case file /x/e.npz does not exist; give path = an .npz file with arrays "
                    "x_train and x_test (for the digits dataset, python -m fedarena.plugins.edge_cases /x/e.npz "
                    "writes one)")
    assert complaints("# Make it first:\n#   python -m fedarena.plugins.edge_cases e.npz\n", [missing_file]) == []
    assert complaints(silent, [missing_file]) == [f"fails check on a clean clone: {missing_file}"]
