"""Shared fixtures: tiny scenarios, a TFF context owned by the test session,
and helpers to run the ``fedarena`` command as a user would."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Python's bytecode cache, written as a default Python writes it: where the
# environment forbids it (PYTHONDONTWRITEBYTECODE, set in some CI images)
# every `fedarena` process a test starts would compile TensorFlow's 13,000
# modules from source again, 2-3x its start-up.  This process and its
# children write the cache once instead.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

REPO = Path(__file__).resolve().parent.parent

TINY = """\
scenario "tiny" {{
  seed {seed}
  rounds {rounds}
  dataset synthetic(samples = 600, features = 8, classes = 3)
  split iid over 6 clients
  model mlp(hidden = [8])
  training {{
    clients_per_round 4
    local_epochs 1
    batch_size 16
    optimizer sgd(learning_rate = 0.2)
  }}
{attack}  aggregator {aggregator}
  output "{output}"
}}
"""


LABEL_FLIP = """\
  attack label_flip(mode = "all_to_one", target = 0) {
    clients 2
  }
"""


def tiny_scenario(
    output: str | os.PathLike = "out.h5", rounds: int = 3, seed: int = 1, aggregator: str = "fedavg",
    attack: str = LABEL_FLIP,
) -> str:
    """A scenario small enough for a test: 6 clients, 4 per round, 2 attackers."""
    return TINY.format(output=output, rounds=rounds, seed=seed, aggregator=aggregator, attack=attack)


@pytest.fixture
def write_scenario(tmp_path):
    def write(text: str, name: str = "scenario.fls") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def edge_case_digits() -> Path:
    """The edge-case set ``scenarios/attacks/edge_case.fls`` reads, made from
    the digits dataset as that file says (it is not committed: git ignores
    it); written whole or not at all, and only when missing."""
    from fedarena.plugins.edge_cases import digits_edge_set, write_edge_set

    path = REPO / "scenarios" / "attacks" / "edge_case_digits.npz"
    if not path.is_file():
        write_edge_set(path, digits_edge_set())
    return path


@pytest.fixture(scope="session")
def tff_context(fedarena_worker):
    """TFF's execution context over the session's one worker, installed for
    the in-process tests of this session."""
    from fedarena.core.execution.backends.worker import tff_workers

    with tff_workers(fedarena_worker) as pool:
        yield pool


# End-to-end tests run scenarios on TFF (in-process or through the command);
# `pytest -m "not e2e"` is the fast inner loop.  A test is end to end when it
# uses one of these fixtures or calls one of these functions.
E2E_FIXTURES = {"fedarena_run", "tff_context", "fedarena_worker", "installed", "uninterrupted_run"}
E2E_CALLS = ("run_fedarena(", "fedarena_command(", "run_scenario(", "run_sweep(", "run_text(", "serve_points(",
             "subprocess.Popen(", "start_long_run(", "start_worker(", "start_fedarena_worker(", "tff_workers(",
             "LocalWorker(", 'main(["run"', 'cli(["run"', 'cli.main(["run"', "fedarena.run(", ".run(output",
             "pip_install(", "install_example(")


def _is_end_to_end(item) -> bool:
    if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function else ""
    except (OSError, TypeError):
        return False
    return any(call in source for call in E2E_CALLS)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("e2e") is None and _is_end_to_end(item):
            item.add_marker(pytest.mark.e2e)


def fedarena_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedarena.core.cli.main", *map(str, args)]


def run_fedarena(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        fedarena_command(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def worker_children(pid: int | None) -> list[int]:
    """Pids of live TFF worker_binary processes whose parent is ``pid``
    (any parent when ``pid`` is None)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if (pid is None or ppid == pid) and b"worker_binary" in cmdline and "State:\tZ" not in status:
            found.append(int(entry.name))
    return found


def orphan_workers() -> list[int]:
    """TFF workers whose parent is gone (re-parented to init): leaked ones."""
    return worker_children(1)


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def read(path):
    """A results file read with plain h5py (an independent check of the
    format): (root attributes, every dataset by path)."""
    import h5py

    with h5py.File(path, "r") as f:
        attrs_ = dict(f.attrs)
        data = {}
        f.visititems(lambda name, obj: data.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return attrs_, data


# Rounds of the interrupted-and-resumed runs: enough that the run is still
# going when the test interrupts it a few rounds in.
RESUME_ROUNDS = 60
RESUME_FIELDS = ("metrics/round", "metrics/test_accuracy", "metrics/test_loss", "clients/id", "clients/update_norm",
                 "model/weights", "detection/false_negatives")


@pytest.fixture(scope="session")
def uninterrupted_run(tmp_path_factory):
    """``uninterrupted_run(backend)``: (root attributes, datasets) of
    `tiny_scenario` run whole for `RESUME_ROUNDS` rounds by the command on
    ``backend``, once per session: the reference every interrupt-and-resume
    test compares with."""
    runs = {}

    def get(backend: str):
        if backend not in runs:
            directory = tmp_path_factory.mktemp(f"uninterrupted-{backend}")
            out = directory / "whole.h5"
            path = directory / "whole.fls"
            path.write_text(tiny_scenario(out, rounds=RESUME_ROUNDS))
            result = run_fedarena("run", path, "--backend", backend, "--progress", "none")
            assert result.returncode == 0, result.stderr
            runs[backend] = read(out)
        return runs[backend]

    return get


def wait_for_rounds(process, out, rounds=2, timeout=120):
    """Wait until the running ``process`` has written ``rounds`` rounds to ``out``."""
    import time

    import h5py

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            with h5py.File(out, "r", locking=False) as f:
                if f.attrs["rounds_done"] >= rounds:
                    return
        except (OSError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError("the run never got going")
