"""Reliability: inputs that `check` used to accept and that then failed
later (huge integers, 32-bit seeds, a sweep over `output`, relative dataset
paths, `~` in the output), unreadable scenario files, failing lifecycle
hooks and bad worker ports.  Each is refused or handled up front with a
message, never a traceback."""

from __future__ import annotations

import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from fedarena import hookimpl
from fedarena.core.cli.main import build_parser, main, read_scenario
from fedarena.core.errors import RunError, ScenarioError, UsageError
from fedarena.core.language.parser import parse
from fedarena.core.plugin.params import INT_MAX
from fedarena.core.plugin.registry import build_registry, default_registry
from fedarena.core.scenario.check import MAX_LOCAL_EPOCHS, SEED_MAX
from fedarena.core.scenario.sweep import check_points

from conftest import tiny_scenario

BASE = """\
scenario "bounds" {{
  seed {seed}
  rounds {rounds}
  dataset synthetic(samples = {samples}, features = 8, classes = 3)
  split iid over {clients} clients
  model mlp(hidden = [8])
  training {{
    clients_per_round {per_round}
    local_epochs {epochs}
    batch_size {batch}
    root_samples {root}
  }}
  attack label_flip(mode = "all_to_one", target = 0) {{
    clients {attackers}
  }}
  evaluate every {every} rounds
}}
"""
OK = dict(seed=1, rounds=3, samples=600, clients=10, per_round=5, epochs=1, batch=16, root=0, attackers=2, every=1)
HUGE = 10**30


@pytest.fixture(scope="module")
def registry():
    return default_registry()


def check_text(text: str, registry, name: str = "bounds.fls", output=None):
    return check_points(parse(text, name), registry, output)[0][1]


def problem(text: str, registry) -> str:
    with pytest.raises(ScenarioError) as caught:
        check_text(text, registry)
    return str(caught.value)


def test_the_base_scenario_is_fine(registry):
    scenario = check_text(BASE.format(**OK), registry)
    assert scenario.rounds == 3 and scenario.training.local_epochs == 1


# 1. Every integer setting is bounded, with the allowed range in the message.
@pytest.mark.parametrize("setting, expected", [
    ("rounds", "'rounds' must be between 1 and 2147483647"),
    ("every", "'evaluate' must be between 1 and 2147483647"),
    ("clients", "the number of clients must be between 1 and 2147483647"),
    ("per_round", "training setting 'clients_per_round' must be between 1 and 2147483647"),
    ("batch", "training setting 'batch_size' must be between 1 and 2147483647"),
    ("root", "training setting 'root_samples' must be between 0 and 2147483647"),
    ("attackers", "attack clients must be between 0 and 2147483647"),
    ("samples", "parameter 'samples' of dataset 'synthetic' must be between 10 and 2147483647"),
])
def test_a_huge_integer_is_refused_at_check_time_with_its_range(registry, setting, expected):
    message = problem(BASE.format(**dict(OK, **{setting: HUGE})), registry)
    assert expected in message and "got 100000000000...000000" in message
    assert "Traceback" not in message


def test_an_int_parameter_without_an_upper_bound_gets_the_32_bit_one(registry):
    # mlp's hidden sizes declare only a lower bound: a list of ints is bounded item by item.
    text = BASE.format(**OK).replace("hidden = [8]", f"hidden = [8, {INT_MAX + 1}]")
    assert f"must be between 1 and {INT_MAX}, got {INT_MAX + 1}" in problem(text, registry)
    text = BASE.format(**OK).replace("hidden = [8]", f"hidden = [8, {INT_MAX}]")
    assert check_text(text, registry).model.hidden == (8, INT_MAX)


def test_the_cli_reports_a_huge_rounds_as_a_diagnostic_exit_2(tmp_path, capsys):
    file = tmp_path / "huge.fls"
    file.write_text(BASE.format(**dict(OK, rounds=HUGE)))
    assert main(["check", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{file}:3:10: 'rounds' must be between 1 and 2147483647") and "^" in err
    assert "Traceback" not in err


# 2. Seeds are 32-bit.
def test_a_seed_of_2_to_the_32_or_more_is_refused_and_the_largest_is_accepted(registry):
    assert SEED_MAX == 2**32 - 1
    message = problem(BASE.format(**dict(OK, seed=1732900000000)), registry)
    assert "'seed' must be between 0 and 4294967295 (a 32-bit seed), got 1732900000000" in message
    assert "must be between" in problem(BASE.format(**dict(OK, seed=2**32)), registry)
    assert check_text(BASE.format(**dict(OK, seed=2**32 - 1)), registry).seed == 2**32 - 1


def test_a_swept_seed_out_of_range_names_its_sweep_point(registry):
    text = BASE.format(**OK) + "\nsweep {\n  seed in [1, 4294967296]\n}\n"
    message = problem(text, registry)
    assert "'seed' must be between 0 and 4294967295" in message and "seed=4294967296" in message


# 3. local_epochs has a documented maximum, with the reason.
def test_local_epochs_is_bounded_with_the_reason(registry):
    message = problem(BASE.format(**dict(OK, epochs=100000000000)), registry)
    assert (f"training setting 'local_epochs' must be between 1 and {MAX_LOCAL_EPOCHS} (each epoch is one step "
            "of the training graph built before round 1), got 100000000000") in message
    assert check_text(BASE.format(**dict(OK, epochs=MAX_LOCAL_EPOCHS)), registry).training.local_epochs == 1000
    docs = (Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text()
    assert f"at most {MAX_LOCAL_EPOCHS}" in docs


# 4. A sweep over `output` is refused.
def test_a_sweep_over_output_is_refused(registry):
    text = BASE.format(**OK) + '\nsweep {\n  output in ["a.h5", "b.h5"]\n}\n'
    message = problem(text, registry)
    assert "'output' cannot be swept over several files: a sweep writes all its points to one file" in message
    assert "name it with an 'output' statement outside the sweep" in message
    one = check_points(parse(BASE.format(**OK) + '\nsweep {\n  output in ["a.h5"]\n}\n', "b.fls"), registry)
    assert [scenario.output for _, scenario in one] == ["a.h5"]


# 5. A dataset's relative path is read from the scenario's folder.
def _idx(array: np.ndarray) -> bytes:
    array = np.asarray(array, np.uint8)
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_a_relative_dataset_path_is_read_from_the_scenario_folder(tmp_path, monkeypatch, registry):
    folder = tmp_path / "project"
    data = folder / "data"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        (data / f"{prefix}-images-idx3-ubyte").write_bytes(_idx(rng.integers(0, 256, (n, 28, 28))))
        (data / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(np.arange(n) % 10))
    file = folder / "scenario.fls"
    file.write_text(BASE.format(**OK).replace("synthetic(samples = 600, features = 8, classes = 3)",
                                              'mnist(path = "data")'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for name in (str(file), "../project/scenario.fls"):
        scenario = check_points(read_scenario(name), registry)[0][1]
        assert Path(scenario.dataset.path) == data
        arrays = scenario.dataset.load(0)
        assert len(arrays.train_y) == 40 and len(arrays.test_y) == 20


def test_an_absolute_or_empty_dataset_path_is_kept(tmp_path, monkeypatch, registry):
    text = BASE.format(**OK).replace("synthetic(samples = 600, features = 8, classes = 3)",
                                     f'mnist(path = "{tmp_path}")')
    assert check_text(text, registry).dataset.path == str(tmp_path)
    # Without a path, mnist must be in the download cache to pass the check.
    monkeypatch.setenv("FEDARENA_DATA", str(tmp_path))
    (tmp_path / "keras" / "datasets").mkdir(parents=True)
    (tmp_path / "keras" / "datasets" / "mnist.npz").write_bytes(b"")
    assert check_text(BASE.format(**OK).replace("synthetic(samples = 600, features = 8, classes = 3)", "mnist"),
                      registry).dataset.path == ""


# 6. `~` in the output is the home folder.
def test_a_tilde_in_the_output_is_expanded(tmp_path, monkeypatch, registry):
    monkeypatch.setenv("HOME", str(tmp_path))
    text = BASE.format(**OK).replace("evaluate every", 'output "~/runs/x.h5"\n  evaluate every')
    assert check_text(text, registry).output == str(tmp_path / "runs" / "x.h5")
    assert check_text(BASE.format(**OK), registry, output="~/y.h5").output == str(tmp_path / "y.h5")


def test_an_output_statement_is_read_from_the_scenario_folder(tmp_path, monkeypatch, registry):
    folder = tmp_path / "study"
    folder.mkdir()
    written = folder / "written.fls"
    written.write_text(BASE.format(**OK).replace("evaluate every", 'output "runs/x.h5"\n  evaluate every'))
    default = folder / "default.fls"
    default.write_text(BASE.format(**OK))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # Written in the scenario: beside it, whichever way the file is named.
    for name in (str(written), "../study/written.fls"):
        assert check_points(read_scenario(name), registry)[0][1].output == str(Path(name).parent / "runs" / "x.h5")
    # The default and -o belong to the command: the working directory.
    assert check_points(read_scenario(str(default)), registry)[0][1].output == "results/default.h5"
    assert check_points(read_scenario(str(written)), registry, "y.h5")[0][1].output == "y.h5"


# 7. An unreadable scenario file is a usage error, exit 2.
def test_a_folder_given_as_the_scenario_is_an_error_not_a_traceback(tmp_path, capsys):
    with pytest.raises(UsageError, match="cannot read it"):
        read_scenario(str(tmp_path))
    assert main(["check", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: cannot read it: Is a directory\n"


def test_a_scenario_without_permission_to_read_is_an_error_exit_2(tmp_path, monkeypatch, capsys):
    file = tmp_path / "locked.fls"
    file.write_text(tiny_scenario())

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    assert main(["check", str(file)]) == 2
    assert capsys.readouterr().err == f"error: {file}: cannot read it: Permission denied\n"
    assert main(["run", str(file)]) == 2
    assert capsys.readouterr().err == f"error: {file}: cannot read it: Permission denied\n"


# 8. Failing lifecycle hooks: run_start fails the run, run_end only warns.
class FakeRun:
    class_histogram, groups, members, start_sha256 = None, (), None, ""

    def __init__(self, scenario, on_phase=None):
        self.scenario, self.closed = scenario, False

    def rounds(self, **kwargs):
        for number in range(1, self.scenario.rounds + 1):
            yield types.SimpleNamespace(round=number, metrics={"test_accuracy": 0.5}, weights=np.zeros(3, np.float32),
                                        clients={"malicious": np.zeros(2, bool), "finite": np.ones(2, bool)})

    def close(self):
        self.closed = True


class FakeWriter:
    path = Path("fake.h5")

    def __init__(self):
        self.status, self.rounds = "none", 0

    def start(self, *args, **kwargs):
        self.status = "running"

    def write_round(self, result):
        self.rounds = result.round

    def finish(self, status, message):
        self.status, self.message = status, message


class FakeProgress:
    hidden = ()

    def phase(self, text):
        pass

    def update(self, result):
        pass

    def close(self):
        pass


class Recorder:
    def __init__(self):
        self.calls = []

    @hookimpl
    def fedarena_run_start(self, run):
        self.calls.append("start")

    @hookimpl
    def fedarena_run_end(self, run, status):
        self.calls.append(("end", status))


class BadStart:
    @hookimpl
    def fedarena_run_start(self, run):
        raise ValueError("no licence")


class BadEnd:
    @hookimpl
    def fedarena_run_end(self, run, status):
        raise OSError("disk gone")


def _execute(monkeypatch, plugins):
    from fedarena.core.execution.runner import execute

    monkeypatch.setitem(sys.modules, "fedarena.core.execution.engine.run", types.SimpleNamespace(Run=FakeRun))
    registry = build_registry(extra_plugins=plugins)
    scenario = check_points(parse(tiny_scenario(rounds=2), "tiny.fls"), registry)[0][1]
    writer = FakeWriter()
    pool = types.SimpleNamespace(addresses=(), given=(), backend="local")
    return writer, lambda: execute(scenario, registry, writer, pool, FakeProgress())


def test_a_failing_run_start_hook_fails_the_run_naming_the_plugin(monkeypatch):
    recorder = Recorder()
    writer, run = _execute(monkeypatch, (("recorder", recorder), ("bad-start", BadStart())))
    with pytest.raises(RunError) as caught:
        run()
    assert str(caught.value) == ("the run failed before its first round: plugin 'bad-start' failed in "
                                 "fedarena_run_start: ValueError: no licence")
    assert caught.value.exit_code == 1 and caught.value.__cause__ is None
    assert writer.status == "failed" and "plugin 'bad-start'" in writer.message and writer.rounds == 0
    assert recorder.calls[-1] == ("end", "failed")


def test_a_failing_run_end_hook_is_a_warning_and_the_run_stays_complete(monkeypatch, capsys):
    recorder = Recorder()
    writer, run = _execute(monkeypatch, (("recorder", recorder), ("bad-end", BadEnd())))
    final = run()
    assert final == {"test_accuracy": 0.5}
    assert writer.status == "complete" and writer.rounds == 2
    assert recorder.calls == ["start", ("end", "complete")]
    err = capsys.readouterr().err
    assert ("fedarena: warning: plugin 'bad-end' failed in fedarena_run_end: OSError: disk gone; "
            "the run's status (complete) stands") in err


# 9. Worker ports are 0..65535.
@pytest.mark.parametrize("port", ["99999", "-1", "65536", "http"])
def test_a_worker_port_out_of_range_is_a_usage_error(port, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["worker", "--port", port])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "--port" in err and ("0..65535" in err or "not a port number" in err)


def test_worker_ports_in_range_are_accepted():
    parser = build_parser()
    for port in ("0", "8000", "65535"):
        assert parser.parse_args(["worker", "--port", port]).port == int(port)


def test_a_huge_wrong_choice_is_not_quoted_whole(registry):
    text = BASE.format(**OK).replace('mode = "all_to_one"', 'mode = "' + "x" * 5000 + '"')
    with pytest.raises(ScenarioError) as caught:
        check_text(text, registry)
    first = str(caught.value).splitlines()[0]
    assert first.endswith("must be one of 'targeted', 'all_to_one', 'random', got '" + "x" * 59 + "... "
                          "(5,002 characters)")
    assert len(first) < 300
