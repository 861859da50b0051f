"""Bad inputs and faults as a user meets them through ``fedarena``: the exit
code, the exact message, no traceback, and nothing already written lost
(the rows of docs/reliability.md that these tests prove)."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import signal
import struct
import subprocess
from importlib import metadata

import attrs
import numpy as np
import pytest

from fedarena import hookimpl
from fedarena.core.cli import main as cli
from fedarena.core.plugin import registry as registry_module
from fedarena.core.plugin.interfaces import Aggregator

from conftest import (
    RESUME_FIELDS, RESUME_ROUNDS, fedarena_command, orphan_workers, read, run_fedarena, tiny_scenario, wait_for_rounds,
    worker_children,
)


def command(*args) -> int:
    """``fedarena ARGS`` in this process; its exit code."""
    return cli.main([str(arg) for arg in args])


def run_here(path, *options) -> int:
    """``fedarena run PATH`` in this process, on the in-process backend."""
    return command("run", path, "--progress", "none", "--backend", "local", *options)


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error: ")]


def use_plugins(monkeypatch, *plugins) -> None:
    """The commands see the built-in plugins plus ``plugins`` (name, object)."""
    registry = registry_module.build_registry(extra_plugins=plugins)
    monkeypatch.setattr(registry_module, "default_registry", lambda: registry)


# --------------------------------------------------------------------------
# Impossible combinations: refused by `check` and by `run`, before any work.

ATTACK = '  attack {call} {{\n    clients {clients}\n  }}\n'


@pytest.mark.parametrize("options, golden", [
    (dict(attack=ATTACK.format(call='label_flip(mode = "all_to_one", target = 0)', clients=7)),
     "13:3: the attack blocks take 7 clients, but the split has only 6\n"
     '      attack label_flip(mode = "all_to_one", target = 0) {\n      ^'),
    (dict(aggregator="krum(f = 1)"),
     "16:14: krum needs clients_per_round > 2f + 2 (here 4 <= 2*1 + 2); lower f or sample more clients\n"
     "      aggregator krum(f = 1)\n                 ^"),
    (dict(aggregator="multi_krum(f = 1)"),
     "16:14: multi_krum needs clients_per_round > 2f + 2 (here 4 <= 2*1 + 2); lower f or sample more clients\n"
     "      aggregator multi_krum(f = 1)\n                 ^"),
    (dict(aggregator="bulyan(f = 1)"),
     "16:14: bulyan needs clients_per_round >= 4f + 3 (here 4 < 4*1 + 3); lower f or sample more clients\n"
     "      aggregator bulyan(f = 1)\n                 ^"),
    (dict(attack=ATTACK.format(call="backdoor(target = 3)", clients=2)),
     "13:10: backdoor target 3 is not a class of this dataset (classes 0..2)\n"
     "      attack backdoor(target = 3) {\n             ^"),
], ids=["more_attackers_than_clients", "krum_f_too_large", "multi_krum_f_too_large", "bulyan_f_too_large",
        "backdoor_target_not_a_class"])
def test_an_impossible_combination_is_refused_by_check_and_run_before_any_work(
    tmp_path, write_scenario, capsys, options, golden
):
    out = tmp_path / "out.h5"
    path = write_scenario(tiny_scenario(out, **options))
    assert command("check", path) == 2
    assert capsys.readouterr().err == f"{path}:{golden}\n"
    assert run_here(path) == 2
    assert capsys.readouterr().err == f"{path}:{golden}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenario.fls"]


# --------------------------------------------------------------------------
# The output path.


@pytest.mark.parametrize("output, golden", [
    ("{tmp}", "error: {tmp} is a directory; give a file name for the results"),
    ("{tmp}/scenario.fls/out.h5",
     "error: cannot write the results file {tmp}/scenario.fls/out.h5: {tmp}/scenario.fls is a file, not a folder; "
     "choose another output"),
    ("{tmp}/scenario.fls/deeper/out.h5",
     "error: cannot write the results file {tmp}/scenario.fls/deeper/out.h5: {tmp}/scenario.fls is a file, not a "
     "folder; choose another output"),
    # sysfs refuses new files to every user, root included: a folder nobody may write in.
    ("/sys/fedarena-test.h5",
     "error: cannot write the results file /sys/fedarena-test.h5: Permission denied (/sys/fedarena-test.h5.lock); "
     "choose another output"),
], ids=["a_directory", "a_file_as_its_folder", "a_file_above_its_folder", "a_folder_without_write_permission"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, write_scenario, capsys, output,
                                                                       golden):
    path = write_scenario(tiny_scenario(output.format(tmp=tmp_path)))
    before = path.read_bytes()
    assert run_here(path) == 2
    assert error_lines(capsys.readouterr().err) == [golden.format(tmp=tmp_path)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenario.fls"] and path.read_bytes() == before


def test_an_output_in_folders_that_do_not_exist_yet_creates_them(tmp_path, write_scenario, capsys):
    out = tmp_path / "new" / "deeper" / "out.h5"
    path = write_scenario(tiny_scenario(out, rounds=1))
    assert run_here(path) == 0
    assert read(out)[0]["status"] == "complete"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.h5"]  # its claim (out.h5.lock) is gone


# --------------------------------------------------------------------------
# A dataset file missing or corrupt.


def write_idx(file, array) -> None:
    """An IDX file of unsigned bytes, gzipped (the MNIST format)."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    file.write_bytes(gzip.compress(header + array.tobytes()))


def mnist_folder(folder):
    """A small MNIST-format folder: 60 training and 20 test images."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


def mnist_scenario(out, folder) -> str:
    return tiny_scenario(out, rounds=1).replace(
        "dataset synthetic(samples = 600, features = 8, classes = 3)", f'dataset mnist(path = "{folder}")')


def test_a_dataset_path_that_does_not_exist_is_refused_at_check_time(tmp_path, write_scenario, capsys):
    missing = tmp_path / "mnist"
    path = write_scenario(mnist_scenario(tmp_path / "out.h5", missing))
    assert command("check", path) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"{path}:4:11: dataset 'mnist': path {missing} does not exist; give path = ")
    assert run_here(path) == 2
    assert capsys.readouterr().err.splitlines()[0] == first
    assert not (tmp_path / "out.h5").exists()


def damage_truncated_gzip(folder):
    file = folder / "train-images-idx3-ubyte.gz"
    file.write_bytes(file.read_bytes()[:100])
    return (f"error: cannot read {file}: "
            "Compressed file ended before the end-of-stream marker was reached")


def damage_garbage(folder):
    file = folder / "train-labels-idx1-ubyte.gz"
    file.write_bytes(gzip.compress(b"\x7fELF this is not an IDX file"))
    return (f"error: {file}: not an IDX file (its magic number should start with "
            "two zero bytes)")


def damage_checksum(folder):
    names = sorted(p.name for p in folder.iterdir())
    sums = "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in names)
    (folder / "SHA256SUMS").write_text(sums)
    file = folder / "t10k-labels-idx1-ubyte.gz"
    listed = hashlib.sha256(file.read_bytes()).hexdigest()
    write_idx(file, np.arange(20) % 9)  # a valid file, but not the one listed
    found = hashlib.sha256(file.read_bytes()).hexdigest()
    return (f"error: {file}: SHA-256 is {found}, but {folder / 'SHA256SUMS'} lists "
            f"{listed}; the file is corrupt or not the one expected")


@pytest.mark.parametrize("damage", [damage_truncated_gzip, damage_garbage, damage_checksum],
                         ids=["truncated_gzip", "garbage_idx", "sha256sums_mismatch"])
def test_a_corrupt_dataset_file_fails_the_run_naming_it_and_writes_nothing(tmp_path, write_scenario, capsys,
                                                                            damage):
    folder = mnist_folder(tmp_path / "mnist")
    out = tmp_path / "out.h5"
    path = write_scenario(mnist_scenario(out, folder))
    golden = damage(folder)
    assert run_here(path) == 1
    assert error_lines(capsys.readouterr().err) == [golden]
    assert not out.exists() and not (tmp_path / "out.h5.lock").exists()
    # Over an existing results file with --force: the old file is left as it was.
    out.write_bytes(b"earlier results")
    assert run_here(path, "--force") == 1
    assert error_lines(capsys.readouterr().err) == [golden]
    assert out.read_bytes() == b"earlier results"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist", "out.h5", "scenario.fls"]


# --------------------------------------------------------------------------
# A plugin that raises: at load, at check, in the graph.


def test_a_plugin_that_raises_at_import_is_a_warning_and_the_others_work(tmp_path, write_scenario, monkeypatch,
                                                                          capsys):
    (tmp_path / "fedarena_raising_plugin.py").write_text('raise RuntimeError("no licence server")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = metadata.EntryPoint(name="raising", value="fedarena_raising_plugin:plugin", group="fedarena")
    real = metadata.entry_points
    monkeypatch.setattr(metadata, "entry_points",
                        lambda group: [broken, *real(group=group)] if group == "fedarena" else real(group=group))
    monkeypatch.setattr(registry_module, "default_registry", registry_module.build_registry)
    warning = ("warning: plugin 'raising' (fedarena_raising_plugin:plugin) failed to load: RuntimeError: "
               "no licence server")
    path = write_scenario(tiny_scenario(tmp_path / "out.h5"))
    assert command("check", path) == 0
    captured = capsys.readouterr()
    assert captured.err == warning + "\n" and captured.out == f"{path}: ok (3 rounds, 6 clients, 2 attackers)\n"
    assert command("plugins", "aggregator") == 0
    captured = capsys.readouterr()
    assert captured.err == warning + "\n" and "krum" in captured.out
    # A scenario naming a plugin it would have provided: unknown, exit 2.
    uses_it = write_scenario(tiny_scenario(tmp_path / "out.h5", aggregator="licensed"), "uses_it.fls")
    assert command("check", uses_it) == 2
    first, second = capsys.readouterr().err.splitlines()[:2]
    assert first == warning and second.startswith(f"{uses_it}:16:14: unknown aggregator 'licensed'; known: afa, ")


@attrs.frozen
class CheckRaises(Aggregator):
    """Its check has a bug."""

    def check(self, facts):
        return [facts.no_such_fact]


@attrs.frozen
class TraceRaises(Aggregator):
    """Fails in Python while TensorFlow traces it (a bug, not a bad value)."""

    def aggregate(self, updates, weights, ctx):
        raise ValueError("shapes (4, 3) and (5,) do not match")


class RaisingPlugins:
    @staticmethod
    @hookimpl
    def fedarena_register_aggregators(registry):
        registry.add("check_raises", CheckRaises)
        registry.add("trace_raises", TraceRaises)


def test_a_plugin_whose_check_raises_is_a_scenario_error_naming_it(tmp_path, write_scenario, monkeypatch, capsys):
    use_plugins(monkeypatch, ("raising", RaisingPlugins))
    path = write_scenario(tiny_scenario(tmp_path / "out.h5", aggregator="check_raises"))
    golden = (f"{path}:16:14: aggregator 'check_raises' failed while checking the scenario: AttributeError: "
              "'Facts' object has no attribute 'no_such_fact'\n      aggregator check_raises\n                 ^\n")
    assert command("check", path) == 2
    assert capsys.readouterr().err == golden
    assert run_here(path) == 2
    assert capsys.readouterr().err == golden
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenario.fls"]


def test_a_plugin_raising_while_its_graph_is_traced_fails_the_run_naming_it(tmp_path, write_scenario, monkeypatch,
                                                                              capsys):
    use_plugins(monkeypatch, ("raising", RaisingPlugins))
    out = tmp_path / "out.h5"
    path = write_scenario(tiny_scenario(out, aggregator="trace_raises"))
    assert run_here(path) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line == ("error: preparing the run failed: aggregator 'trace_raises' failed: ValueError: "
                    "shapes (4, 3) and (5,) do not match")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenario.fls"]  # the graph is built before the file


# --------------------------------------------------------------------------
# Ctrl-C and SIGTERM mid-round, then --resume: the uninterrupted run's results.


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl_c", "sigterm"])
def test_resume_after_a_signal_gives_the_uninterrupted_run(tmp_path, write_scenario, signum, code, uninterrupted_run):
    out = tmp_path / "out.h5"
    path = write_scenario(tiny_scenario(out, rounds=RESUME_ROUNDS))
    process = subprocess.Popen(fedarena_command("run", path, "--backend", "local", "--progress", "none"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    wait_for_rounds(process, out, rounds=3)
    process.send_signal(signum)
    assert process.wait(60) == code
    err = process.stderr.read()
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (f"stopped by {signal.Signals(signum).name}; the results file keeps every "
                                    "completed round")
    root = read(out)[0]
    assert root["status"] == "interrupted" and 3 <= root["rounds_done"] < RESUME_ROUNDS

    resumed = run_fedarena("run", path, "--resume", "--backend", "local")
    assert resumed.returncode == 0, resumed.stderr
    (a_root, a), (b_root, b) = uninterrupted_run("local"), read(out)
    assert b_root["status"] == "complete" and b_root["rounds_done"] == RESUME_ROUNDS
    for name in RESUME_FIELDS:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# --------------------------------------------------------------------------
# The run's own TFF worker dies.


def test_the_runs_own_worker_dying_fails_the_run_and_keeps_the_rounds(tmp_path, write_scenario):
    out = tmp_path / "out.h5"
    path = write_scenario(tiny_scenario(out, rounds=100000))
    process = subprocess.Popen(fedarena_command("run", path, "--backend", "worker", "--progress", "none"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        wait_for_rounds(process, out, rounds=2)
        (worker,) = worker_children(process.pid)
        os.kill(worker, signal.SIGKILL)
        assert process.wait(120) == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    (line,) = error_lines(process.stderr.read())
    assert re.fullmatch(r"error: the TFF worker at (unix:/\S+/worker\.sock|127\.0\.0\.1:\d+) exited with code -9",
                        line), line
    root, data = read(out)
    assert root["status"] == "failed" and root["rounds_done"] >= 2
    assert data["clients/id"].shape[0] == root["rounds_done"]
    assert orphan_workers() == []
