"""``start from "FILE" [round N]``: a run whose model starts from a results
file's checkpoint or an .npz of weights.  Every problem with the file is a
scenario error with a golden message (found by ``fedarena check``, except
a wrong number of weights, found before round 1); end-to-end runs check
that round 1 starts from exactly the saved model, and what the results
file records about it."""

from __future__ import annotations

import hashlib
import os
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import run_fedarena
from fedarena.core.errors import ScenarioError
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import default_registry
from fedarena.core.results.writer import ResultsWriter, SweepFile
from fedarena.core.scenario.start import load_start
from fedarena.core.scenario.sweep import check

SCENARIO = """\
scenario "start" {{
  seed 3
  rounds {rounds}
{start}  dataset synthetic(samples = 600, features = {features}, classes = {classes})
  split iid over 6 clients
  model mlp(hidden = [{hidden}])
  training {{
    clients_per_round 4
    batch_size 16
    optimizer sgd(learning_rate = 0.2)
    server_learning_rate {server_lr}
  }}
{attack}}}
"""
# mlp(hidden = [8]) on 8 features and 3 classes: 8*8 + 8 + 8*3 + 3 weights.
MODEL_SIZE = 99


def scenario_text(start: str = "", rounds: int = 2, classes: int = 3, hidden: int = 8, server_lr: float = 1.0,
                  attack: str = "", features: int = 8) -> str:
    return SCENARIO.format(start=f"  {start}\n" if start else "", rounds=rounds, classes=classes, hidden=hidden,
                           server_lr=server_lr, attack=attack, features=features)


def checked(folder: Path, text: str):
    return check(parse(text, str(folder / "start.fls")), default_registry(), str(folder / "out.h5"))


def problem(folder: Path, start: str, **kwargs) -> str:
    """The report of a scenario starting ``start``, file names relative to ``folder``."""
    with pytest.raises(ScenarioError) as caught:
        checked(folder, scenario_text(start, **kwargs))
    return str(caught.value).replace(str(folder) + "/", "")


def write_results(path: Path, weights: list[np.ndarray], hidden: int = 8, classes: int = 3,
                  features: int = 8, save_every: int = 0) -> None:
    """A genuine results file, written by the writer without running
    anything: ``weights[i]`` is the model after round i + 1 (with
    ``save_every``, the scenario says ``save model every K rounds``)."""
    registry = default_registry()
    save = f"save model every {save_every} rounds" if save_every else ""
    text = scenario_text(save, rounds=max(len(weights), 1), hidden=hidden, classes=classes, features=features)
    scenario = checked(path.parent, text)
    writer = ResultsWriter(path, force=True)
    writer.start(scenario, registry, np.ones((6, classes), np.int64), np.full(6, -1, np.int32),
                 model_io=((features,), classes))
    for number, flat in enumerate(weights, 1):
        writer.write_round(types.SimpleNamespace(
            round=number, weights=np.asarray(flat, np.float32), state={}, clients={"id": np.arange(4)},
            metrics={}, seconds={}, detection={}))
    writer.finish("complete")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """The scenario's folder; the working directory is elsewhere, so that a
    relative path is seen to be read from the scenario's folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return tmp_path


# ---------------------------------------------------------------------------
# What is accepted, and what is recorded for the run.


def test_a_results_file_gives_its_latest_model_read_from_the_scenarios_folder(folder):
    write_results(folder / "pre.h5", [np.zeros(MODEL_SIZE), np.ones(MODEL_SIZE)])
    for start in ('start from "pre.h5"', 'start from "pre.h5" round 2'):
        source = checked(folder, scenario_text(start)).start
        assert (source.path, source.location, source.kind, source.round) == (
            "pre.h5", str(folder / "pre.h5"), "results", 2)
    scenario = checked(folder, scenario_text('start from "pre.h5"'))
    weights, digest = load_start(scenario, MODEL_SIZE)
    assert weights.dtype == np.float32 and weights.tolist() == [1.0] * MODEL_SIZE
    assert digest == hashlib.sha256((folder / "pre.h5").read_bytes()).hexdigest()


def test_an_npz_gives_its_one_array(folder):
    flat = np.linspace(-1, 1, MODEL_SIZE)
    np.savez(folder / "w.npz", anything=flat)
    scenario = checked(folder, scenario_text('start from "w.npz"'))
    assert (scenario.start.kind, scenario.start.round) == ("npz", None)
    weights, _ = load_start(scenario, MODEL_SIZE)
    np.testing.assert_array_equal(weights, flat.astype(np.float32))


def test_without_start_from_there_is_no_start():
    assert check(parse(scenario_text(), "s.fls"), default_registry(), "out.h5").start is None


# ---------------------------------------------------------------------------
# Golden errors: the file, the round, the model.


def test_a_missing_file(folder):
    assert problem(folder, 'start from "nowhere.h5"') == (
        'start.fls:4:14: start from "nowhere.h5": no such file (a relative path is read from the scenario\'s '
        'folder)\n'
        '      start from "nowhere.h5"\n'
        '                 ^'
    )


def test_a_folder(folder):
    (folder / "runs").mkdir()
    assert problem(folder, 'start from "runs"').splitlines()[0] == (
        'start.fls:4:14: start from "runs": is a folder; give the path of a results file or an .npz')


def test_a_file_of_another_kind(folder):
    (folder / "notes.txt").write_text("not weights")
    assert problem(folder, 'start from "notes.txt"').splitlines()[0] == (
        'start.fls:4:14: start from "notes.txt": not a fedarena results file (HDF5) nor an .npz of weights')


def test_an_hdf5_file_that_is_not_a_results_file(folder):
    with h5py.File(folder / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    assert problem(folder, 'start from "other.h5"').splitlines()[0] == (
        'start.fls:4:14: start from "other.h5": an HDF5 file, but not a fedarena results file (it has no '
        "'scenario' attribute)")


def test_a_sweep_file(folder):
    sweep = SweepFile(folder / "sweep.h5")
    sweep.start("text", "title", ["a", "b"], [{}, {}])
    sweep.finish("complete")
    assert problem(folder, 'start from "sweep.h5"').splitlines()[0] == (
        'start.fls:4:14: start from "sweep.h5": a sweep\'s results file (2 runs); start from the results file of '
        'a single run')


def test_a_results_file_without_a_round(folder):
    write_results(folder / "empty.h5", [])
    assert problem(folder, 'start from "empty.h5"').splitlines()[0] == (
        'start.fls:4:14: start from "empty.h5": holds no model yet (0 rounds done); start from a file whose run '
        'completed a round')


def test_a_round_the_file_does_not_hold_points_at_the_round(folder):
    write_results(folder / "pre.h5", [np.zeros(MODEL_SIZE), np.ones(MODEL_SIZE)])
    assert problem(folder, 'start from "pre.h5" round 1') == (
        'start.fls:4:29: start from "pre.h5": round 1: the file holds the model after round 2 only; start from '
        "one of those, or run the earlier scenario with 'save model every K rounds' to keep more\n"
        '      start from "pre.h5" round 1\n'
        '                                ^'
    )
    assert problem(folder, 'start from "pre.h5" round 0').splitlines()[0] == (
        'start.fls:4:29: start from "pre.h5": round must be >= 1, got 0')


def test_models_saved_every_k_rounds_can_be_started_from_by_round(folder):
    models = [np.full(MODEL_SIZE, value, np.float32) for value in (0.0, 1.0, 2.0, 3.0, 4.0)]
    write_results(folder / "pre.h5", models, save_every=2)
    with h5py.File(folder / "pre.h5", "r") as f:
        assert f["model/saved/round"][()].tolist() == [2, 4] and f["model"].attrs["save_every"] == 2
    for number, expected in ((2, 1.0), (4, 3.0), (5, 4.0)):
        scenario = checked(folder, scenario_text(f'start from "pre.h5" round {number}'))
        assert scenario.start.round == number
        weights, _ = load_start(scenario, MODEL_SIZE)
        np.testing.assert_array_equal(weights, models[number - 1])
        assert weights[0] == expected
    assert problem(folder, 'start from "pre.h5" round 3').splitlines()[0] == (
        'start.fls:4:29: start from "pre.h5": round 3: the file holds the model after rounds 2, 4, 5 only; '
        "start from one of those, or run the earlier scenario with 'save model every K rounds' to keep more")


def test_save_model_every_is_checked_against_the_rounds(folder):
    assert problem(folder, "save model every 3 rounds", rounds=2).splitlines()[0] == (
        "start.fls:4:20: 'save' must be between 1 and 2 (the rounds of the run: a model is kept after every "
        "K-th round), got 3")
    assert problem(folder, "save model every 0 rounds").splitlines()[0] == (
        "start.fls:4:20: 'save' must be >= 1, got 0")


def test_a_results_file_of_another_model(folder):
    write_results(folder / "wide.h5", [np.zeros(10)], hidden=16)
    assert problem(folder, 'start from "wide.h5"').splitlines()[0] == (
        'start.fls:4:14: start from "wide.h5": its model is mlp(hidden = (16,)) on inputs 8 with 3 classes; this '
        "scenario's is mlp(hidden = (8,)) on inputs 8 with 3 classes; start from a file of the same model, on "
        "data of the same shape and classes")
    write_results(folder / "four.h5", [np.zeros(10)], classes=4)
    assert problem(folder, 'start from "four.h5"').splitlines()[0] == (
        'start.fls:4:14: start from "four.h5": its model is mlp(hidden = (8,)) on inputs 8 with 4 classes; this '
        "scenario's is mlp(hidden = (8,)) on inputs 8 with 3 classes; start from a file of the same model, on "
        "data of the same shape and classes")


def test_a_results_file_of_inputs_of_another_shape(folder):
    write_results(folder / "wide.h5", [np.zeros(10)], features=12)
    assert problem(folder, 'start from "wide.h5"').splitlines()[0] == (
        'start.fls:4:14: start from "wide.h5": its model is mlp(hidden = (8,)) on inputs 12 with 3 classes; this '
        "scenario's is mlp(hidden = (8,)) on inputs 8 with 3 classes; start from a file of the same model, on "
        "data of the same shape and classes")
    with h5py.File(folder / "wide.h5", "r") as f:
        assert f["model"].attrs["input_shape"].tolist() == [12] and f["model"].attrs["num_classes"] == 3


def test_a_results_file_whose_model_diverged(folder):
    write_results(folder / "nan.h5", [np.full(MODEL_SIZE, np.nan)])
    assert problem(folder, 'start from "nan.h5"').splitlines()[0] == (
        'start.fls:4:14: start from "nan.h5": its model after round 1 holds NaN or infinite values')


@pytest.mark.parametrize("arrays, message", [
    ({"a": np.zeros(3), "b": np.zeros(3)},
     "an .npz to start from holds exactly one array (the flat weights); this one holds 2: a, b"),
    ({"w": np.zeros((3, 3))}, "the array 'w' must be a 1-D float vector (the flat model weights), got shape (3, 3) "
                              "of float64"),
    ({"w": np.arange(3)}, "the array 'w' must be a 1-D float vector (the flat model weights), got shape (3,) of "
                          "int64"),
    ({"w": np.array([0.0, np.inf])}, "its weights hold NaN or infinite values"),
    ({"w": np.array([{"a": 1}], dtype=object)}, "cannot be read as an .npz (Object arrays cannot be loaded when "
                                                "allow_pickle=False)"),
])
def test_an_npz_that_is_not_one_vector_of_weights(folder, arrays, message):
    np.savez(folder / "w.npz", **arrays)
    assert problem(folder, 'start from "w.npz"').splitlines()[0] == f'start.fls:4:14: start from "w.npz": {message}'


def test_round_with_an_npz_points_at_the_round(folder):
    np.savez(folder / "w.npz", w=np.zeros(3))
    assert problem(folder, 'start from "w.npz" round 2').splitlines()[0] == (
        'start.fls:4:28: start from "w.npz": round applies to a results file; an .npz holds one model: leave '
        'round out')


def test_start_from_is_given_once_and_needs_a_path(folder):
    np.savez(folder / "w.npz", w=np.zeros(3))
    text = scenario_text('start from "w.npz"').replace("  dataset", '  start from "w.npz"\n  dataset')
    with pytest.raises(ScenarioError) as caught:
        checked(folder, text)
    assert str(caught.value).replace(str(folder) + "/", "").splitlines()[0] == (
        "start.fls:5:3: 'start' is given twice (first on line 4)")
    assert problem(folder, 'start from ""').splitlines()[0] == (
        "start.fls:4:14: 'start from' needs the path of a results file or an .npz, got an empty string")


def test_weights_of_another_size_are_refused_at_the_statement(folder):
    np.savez(folder / "w.npz", w=np.zeros(MODEL_SIZE + 1))
    scenario = checked(folder, scenario_text('start from "w.npz"'))
    with pytest.raises(ScenarioError) as caught:
        load_start(scenario, MODEL_SIZE)
    assert str(caught.value).replace(str(folder) + "/", "") == (
        'start.fls:4:14: start from "w.npz": it holds 100 weights, but this scenario\'s model has 99; start '
        'from weights of the same model\n'
        '      start from "w.npz"\n'
        '                 ^'
    )


# ---------------------------------------------------------------------------
# End to end: round 1 starts from the saved model.  With a server learning
# rate of 0 the global model after round 1 is the one round 1 started from,
# bit for bit; a run that ignored `start from` would hold its own random
# initial weights there instead.


def run(folder: Path, text: str, name: str, plugins=()):
    from fedarena.core.testing import run_text

    return run_text(text, folder, plugins=plugins, name=name)


@pytest.fixture(scope="module")
def pretrained(tff_context, tmp_path_factory):
    """A 2-round run's results file and its final model."""
    folder = tmp_path_factory.mktemp("pretrained")
    record = run(folder, scenario_text(rounds=2), "pre.fls")
    assert record.attrs["status"] == "complete"
    with h5py.File(folder / "pre.h5", "r") as f:
        return folder / "pre.h5", f["model/weights"][()]


ATTACK = """\
  attack label_flip(mode = "random") {
    clients [1, 4]
  }
"""


def test_round_one_starts_from_the_results_files_model(pretrained, tmp_path):
    path, saved = pretrained
    for start in (f'start from "{path}"', f'start from "{path}" round 2'):
        run(tmp_path, scenario_text(start, rounds=1, server_lr=0.0, attack=ATTACK), "attacked.fls")
        with h5py.File(tmp_path / "attacked.h5", "r") as f:
            np.testing.assert_array_equal(f["model/weights"][()], saved)
            source = dict(f["start"].attrs)
        assert source == {"path": str(path), "absolute_path": str(path), "kind": "results", "round": 2,
                          "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    # Without it, the same run holds other weights after round 1: the check above can fail.
    run(tmp_path, scenario_text(rounds=1, server_lr=0.0, attack=ATTACK), "fresh.fls")
    with h5py.File(tmp_path / "fresh.h5", "r") as f:
        assert not np.array_equal(f["model/weights"][()], saved) and "start" not in f


def test_round_one_starts_from_an_npz(pretrained, tmp_path):
    _, saved = pretrained
    np.savez(tmp_path / "weights.npz", weights=saved)
    run(tmp_path, scenario_text('start from "weights.npz"', rounds=1, server_lr=0.0), "from_npz.fls")
    with h5py.File(tmp_path / "from_npz.h5", "r") as f:
        np.testing.assert_array_equal(f["model/weights"][()], saved)
        assert (f["start"].attrs["path"], f["start"].attrs["kind"], f["start"].attrs["round"]) == (
            "weights.npz", "npz", 0)
        assert f["start"].attrs["absolute_path"] == str(tmp_path / "weights.npz")


def test_weights_of_another_size_stop_the_run_before_its_file_is_written(tmp_path):
    np.savez(tmp_path / "short.npz", w=np.zeros(MODEL_SIZE - 1, np.float32))
    scenario = tmp_path / "short.fls"
    scenario.write_text(scenario_text('start from "short.npz"'))
    done = run_fedarena("run", scenario, "-o", tmp_path / "out.h5", "--progress", "none")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.endswith(
        f'{scenario}:4:14: start from "short.npz": it holds 98 weights, but this scenario\'s model has 99; start '
        'from weights of the same model\n'
        '      start from "short.npz"\n'
        '                 ^\n'
    )
    assert not (tmp_path / "out.h5").exists()


def test_a_run_that_started_from_a_file_resumes_from_its_own_checkpoint(pretrained, tmp_path):
    from fedarena import hookimpl
    from fedarena.core.execution.runner import Progress, run_scenario
    from fedarena.core.testing import make_registry

    path, _ = pretrained
    text = scenario_text(f'start from "{path}"', rounds=3, attack=ATTACK)
    whole = run(tmp_path, text, "whole.fls")

    class StopAfterRoundOne:
        @staticmethod
        @hookimpl
        def fedarena_round_end(run, round, metrics):
            return False if round == 1 else None

    scenario_path = tmp_path / "cut.fls"
    scenario_path.write_text(text)
    for plugins, resume in (((StopAfterRoundOne,), False), ((), True)):
        registry = make_registry(*plugins)
        scenario = check(parse(text, str(scenario_path)), registry, str(tmp_path / "cut.h5"))
        run_scenario(scenario, registry, force=not resume, resume=resume,
                     progress=Progress(scenario.rounds, enabled=False))
        if not resume:
            with h5py.File(tmp_path / "cut.h5", "r") as f:
                assert (f.attrs["status"], f.attrs["rounds_done"]) == ("interrupted", 1)
    with h5py.File(tmp_path / "cut.h5", "r") as f, h5py.File(tmp_path / "whole.h5", "r") as g:
        assert f.attrs["status"] == "complete"
        np.testing.assert_array_equal(f["model/weights"][()], g["model/weights"][()])
        assert dict(f["start"].attrs) == dict(g["start"].attrs)
    assert whole.attrs["status"] == "complete"
    assert os.path.exists(path)


def test_a_run_saves_every_k_rounds_and_a_later_run_starts_from_a_saved_round(tff_context, tmp_path):
    run(tmp_path, scenario_text("save model every 2 rounds", rounds=4), "saving.fls")
    with h5py.File(tmp_path / "saving.h5", "r") as f:
        assert f["model/saved/round"][()].tolist() == [2, 4]
        saved = f["model/saved/weights"][()]
        np.testing.assert_array_equal(saved[1], f["model/weights"][()])
    assert not np.array_equal(saved[0], saved[1])
    run(tmp_path, scenario_text('start from "saving.h5" round 2', rounds=1, server_lr=0.0), "from_two.fls")
    with h5py.File(tmp_path / "from_two.h5", "r") as f:
        np.testing.assert_array_equal(f["model/weights"][()], saved[0])
        assert f["start"].attrs["round"] == 2 and "saved" not in f["model"]


def test_a_file_changed_after_the_check_is_refused_at_the_statement(folder):
    models = [np.full(MODEL_SIZE, value, np.float32) for value in (0.0, 1.0, 2.0)]
    write_results(folder / "pre.h5", models, save_every=1)
    scenario = checked(folder, scenario_text('start from "pre.h5" round 2'))
    write_results(folder / "pre.h5", models[:1])  # rewritten between `check` and the run
    with pytest.raises(ScenarioError) as caught:
        load_start(scenario, MODEL_SIZE)
    assert str(caught.value).splitlines()[0].endswith(
        'start from "pre.h5": the file no longer holds the model after round 2')
