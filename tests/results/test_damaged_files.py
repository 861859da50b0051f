"""A results file cut short or edited by hand, given to ``fedarena show``,
``fedarena report`` and ``fedarena run --resume``: exit 2, a message naming
the file and what is wrong, no traceback; ``--resume`` never continues a
record it cannot trust, and leaves the file as it was."""

from __future__ import annotations

import os
import shutil

import h5py
import pytest

from fedarena import hookimpl
from fedarena.core.cli import main as cli
from fedarena.core.plugin import registry as registry_module

from conftest import tiny_scenario

ROUNDS = 3


class StopAfterTwo:
    """Stops the run after round 2 of 3: an interrupted file to resume."""

    @staticmethod
    @hookimpl
    def fedarena_round_end(run, round, metrics):
        return round < 2


def command(*args) -> int:
    return cli.main([str(arg) for arg in args])


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """(scenario file, a file it wrote that stopped after round 2 of 3)."""
    folder = tmp_path_factory.mktemp("interrupted")
    scenario = folder / "scenario.fls"
    scenario.write_text(tiny_scenario("out.h5", rounds=ROUNDS))
    out = folder / "out.h5"
    registry = registry_module.build_registry(extra_plugins=(("stop", StopAfterTwo),))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry_module, "default_registry", lambda: registry)
        assert command("run", scenario, "-o", out, "--progress", "none", "--backend", "local") == 0
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "interrupted" and f.attrs["rounds_done"] == 2
    return scenario, out


def cut_in_half(path):
    size = os.path.getsize(path)
    os.truncate(path, size // 2)
    return f"the file is cut short: {size // 2} of its {size} bytes"


def edit(name, value):
    def damage(path):
        with h5py.File(path, "a") as f:
            f.attrs[name] = value
        return None

    return damage


def delete(name):
    def damage(path):
        with h5py.File(path, "a") as f:
            if name in f.attrs:
                del f.attrs[name]
            else:
                del f[name]
        return None

    return damage


RUNS_DAMAGED = "the file is damaged or was edited"

# (damage, what is wrong) for damage that show, report and --resume all refuse.
REFUSED_BY_ALL = {
    "rounds_done_text": (edit("rounds_done", "abc"), "attribute 'rounds_done' is 'abc', not a number of rounds "
                                                     "from 0 to 3"),
    "rounds_done_negative": (edit("rounds_done", -5), "attribute 'rounds_done' is -5, not a number of rounds "
                                                      "from 0 to 3"),
    "rounds_done_past_the_plan": (edit("rounds_done", 99), "attribute 'rounds_done' is 99, not a number of "
                                                           "rounds from 0 to 3"),
    "rounds_done_past_the_rows": (edit("rounds_done", 3), "'clients/aggregation_weight' has 2 rows, but 3 "
                                                          "rounds are done"),
    "rounds_planned_text": (edit("rounds_planned", "many"), "attribute 'rounds_planned' is 'many', not a number "
                                                            "of rounds"),
    "status_nonsense": (edit("status", "banana"), "attribute 'status' is 'banana', not one of running, complete, "
                                                  "interrupted, failed"),
    "status_deleted": (delete("status"), "attribute 'status' is missing"),
    "metric_deleted": (delete("metrics/test_accuracy"), "'metrics/test_accuracy' is missing"),
    "client_rows_deleted": (delete("clients/id"), "'clients/id' is missing"),
}


@pytest.fixture
def damaged(interrupted, tmp_path):
    """A copy of the interrupted file to damage: (scenario, path)."""
    scenario, out = interrupted
    copy = tmp_path / "damaged.h5"
    shutil.copyfile(out, copy)
    return scenario, copy


def refused(capsys, code: int) -> str:
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("case", sorted(REFUSED_BY_ALL))
def test_a_hand_edited_file_is_refused_by_show_report_and_resume(damaged, tmp_path, capsys, case):
    scenario, path = damaged
    damage, problem = REFUSED_BY_ALL[case]
    damage(path)
    before = path.read_bytes()
    golden = f"error: {path}: {problem}; {RUNS_DAMAGED}\n"
    assert refused(capsys, command("show", path)) == golden
    assert refused(capsys, command("report", path, "--out", tmp_path / "report")) == golden
    assert not (tmp_path / "report").exists()
    resume = command("run", scenario, "-o", path, "--resume", "--progress", "none", "--backend", "local")
    assert refused(capsys, resume) == (f"error: {path} cannot be resumed: {problem}; {RUNS_DAMAGED}: start anew "
                                       "with --force, or choose another output\n")
    assert path.read_bytes() == before  # never continued, never touched
    assert not path.with_name(path.name + ".lock").exists()


def test_a_file_cut_in_half_is_refused_by_show_report_and_resume(damaged, tmp_path, capsys):
    scenario, path = damaged
    size = os.path.getsize(path)
    problem = cut_in_half(path)
    hdf5 = (f"Unable to synchronously open file (truncated file: eof = {size // 2}, sblock->base_addr = 0, "
            f"stored_eof = {size})")
    golden = f"error: {path}: {problem} ({hdf5})\n"
    assert refused(capsys, command("show", path)) == golden
    assert refused(capsys, command("report", path, "--out", tmp_path / "report")) == golden
    resume = command("run", scenario, "-o", path, "--resume", "--progress", "none", "--backend", "local")
    assert refused(capsys, resume) == f"error: {path} cannot be opened to resume: {problem} ({hdf5})\n"
    assert os.path.getsize(path) == size // 2


@pytest.mark.parametrize("name", ["model/weights", "checkpoint/state"])
def test_a_file_without_its_checkpoint_is_shown_but_never_resumed(damaged, tmp_path, capsys, name):
    scenario, path = damaged
    delete(name)(path)
    before = path.read_bytes()
    assert command("show", path) == 0
    assert capsys.readouterr().out.splitlines()[1] == "damaged: interrupted, 2/3 rounds"
    resume = command("run", scenario, "-o", path, "--resume", "--progress", "none", "--backend", "local")
    assert refused(capsys, resume) == (f"error: {path} cannot be resumed: '{name}' is missing; {RUNS_DAMAGED}: "
                                       "start anew with --force, or choose another output\n")
    assert path.read_bytes() == before


def test_the_undamaged_file_is_shown_and_resumed(damaged, capsys):
    """The same steps on the file as written succeed: the refusals above
    come from the damage."""
    scenario, path = damaged
    assert command("show", path) == 0
    assert capsys.readouterr().out.splitlines()[1] == "damaged: interrupted, 2/3 rounds"
    assert command("run", scenario, "-o", path, "--resume", "--progress", "none", "--backend", "local") == 0
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["rounds_done"] == ROUNDS
        assert f["metrics/round"][()].tolist() == [1, 2, 3]


def test_a_damaged_point_of_a_sweep_is_named_by_its_group(tmp_path, capsys):
    from fedarena.core.results.writer import SweepFile

    path = tmp_path / "sweep.h5"
    sweep = SweepFile(path)
    sweep.start("scenario text", "a sweep", ["seed=1", "seed=2"], [{"seed": "1"}, {"seed": "2"}])
    sweep.finish("failed")
    with h5py.File(path, "a") as f:  # point 0 never started (no group); point 1 claims 7 of 3 rounds
        point = f.create_group("runs/0001")
        point.attrs.update(scenario="scenario text", status="complete", rounds_planned=3, rounds_done=7)
    golden = (f"error: {path}, run runs/0001: attribute 'rounds_done' is 7, not a number of rounds from 0 to 3; "
              f"{RUNS_DAMAGED}\n")
    assert refused(capsys, command("show", path)) == golden
    assert refused(capsys, command("report", path, "--out", tmp_path / "report")) == golden
