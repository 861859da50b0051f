"""`fedarena.run` and `fedarena.open_results`: text -> scenario -> evolve
-> run -> DataFrames with one column per sweep axis.  The runs are tiny
(`tiny_scenario`: 6 clients, 1-2 rounds)."""

import inspect
import os

import pandas as pd
import pytest

import fedarena
from fedarena.core.errors import RunError, UsageError
from fedarena.core.execution import runner

from conftest import tiny_scenario


@pytest.mark.e2e
def test_text_to_scenario_to_run_to_frames(tmp_path):
    scenario = fedarena.load(tiny_scenario(tmp_path / "unused.h5", rounds=3)).evolve(rounds=2, aggregator="median")
    results = fedarena.run(scenario, output=tmp_path / "median.h5", progress="none")
    assert isinstance(results, fedarena.Results) and results.path == tmp_path / "median.h5"
    assert not (tmp_path / "unused.h5").exists()
    assert results.status == "complete" and not results.is_sweep and results.axes == []
    assert results.attrs["scenario"] == scenario.text  # the file records the evolved text
    metrics = results.metrics
    assert list(metrics.columns) == ["run", "round", "metric", "value"]
    accuracy = metrics[metrics["metric"] == "test_accuracy"]
    assert accuracy["round"].tolist() == [1, 2]
    assert results.final() == pytest.approx(accuracy["value"].iloc[-1])
    clients = results.clients
    assert len(clients) == 2 * 4 and clients["malicious"].dtype == bool
    assert results.detection["round"].tolist() == [1, 2]
    assert results.index[["run", "status", "rounds_done"]].values.tolist() == [[0, "complete", 2]]
    assert "1 complete" in repr(results)
    assert fedarena.open_results(results.path).final("test_loss") == results.final("test_loss")
    with pytest.raises(KeyError, match="no metric 'nope'"):
        results.final("nope")
    # The results file is never overwritten without force, as in the command.
    with pytest.raises(UsageError, match="already exists; pass --force"):
        fedarena.run(scenario, output=results.path)


@pytest.mark.e2e
def test_a_sweep_from_evolve_runs_into_one_file_with_axis_columns(tmp_path):
    grid = fedarena.load(tiny_scenario(tmp_path / "grid.h5", rounds=1)).sweep(
        aggregator=["fedavg", "median"], **{"attack[label_flip].clients": [0, 2]})
    results = grid.run(progress="none")
    assert results.path == tmp_path / "grid.h5" and results.is_sweep
    assert results.axes == ["aggregator", "attack[label_flip].clients"]
    metrics = results.metrics
    assert list(metrics.columns[:3]) == ["aggregator", "attack[label_flip].clients", "run"]
    assert metrics["attack[label_flip].clients"].dtype == "int64"
    final = results.final()
    assert isinstance(final, pd.DataFrame) and len(final) == 4
    assert final[["aggregator", "attack[label_flip].clients"]].values.tolist() == [
        ["fedavg", 0], ["fedavg", 2], ["median", 0], ["median", 2]]
    assert (results.index["status"] == "complete").all()
    summary = results.summary(by="aggregator")
    assert summary["count"].tolist() == [2, 2]
    plot = results.plot_heatmap(rows="aggregator", cols="attack[label_flip].clients", path=tmp_path / "h.png")
    assert plot.path.read_bytes()[:4] == b"\x89PNG" and plot._repr_png_()[:4] == b"\x89PNG"
    assert results.plot_metrics().path.is_file() and results.plot_clients(1).path.is_file()
    written = results.report(tmp_path / "report")
    assert tmp_path / "report" / "summary.md" in written


@pytest.mark.e2e
def test_jobs_run_an_evolved_sweep_from_a_file_of_its_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = fedarena.load(tiny_scenario("jobs.h5", rounds=1)).sweep(seed=[1, 2])
    results = fedarena.run(grid, jobs=2, progress="none")
    assert results.path.resolve() == (tmp_path / "jobs.h5").resolve()
    assert (results.index["status"] == "complete").all() and len(results.index) == 2
    assert not list(tmp_path.glob(".fedarena-*.fls"))  # the children's copy of the text is gone


def test_run_refuses_what_the_command_refuses(tmp_path):
    scenario = fedarena.load(tiny_scenario(tmp_path / "x.h5"))
    with pytest.raises(UsageError, match="choose one"):
        fedarena.run(scenario, force=True, resume=True)
    with pytest.raises(UsageError, match="--jobs must be at least 1"):
        fedarena.run(scenario, jobs=0)
    with pytest.raises(UsageError, match="progress must be"):
        fedarena.run(scenario, progress="loud")
    if "backend" in inspect.signature(runner.run_scenario).parameters:
        with pytest.raises(UsageError, match="must be one of auto, local, worker"):
            fedarena.run(scenario, backend="gpu")
    assert not (tmp_path / "x.h5").exists()


def test_open_results_refuses_what_is_not_a_results_file(tmp_path):
    with pytest.raises(UsageError, match="no such results file"):
        fedarena.open_results(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(UsageError, match="not a readable HDF5 results file"):
        fedarena.open_results(tmp_path / "junk.h5")


def test_a_failed_sweep_point_is_a_run_error(tmp_path, monkeypatch):
    """The points that failed are named; the others are in the file."""
    from fedarena.core.execution.runner import PointOutcome

    def fake_sweep(points, registry, **options):
        return [PointOutcome(0, points[0][0].label, "complete", {}),
                PointOutcome(1, points[1][0].label, "failed", {}, "the aggregator 'x' failed: boom")]

    monkeypatch.setattr(runner, "run_sweep", fake_sweep)
    grid = fedarena.load(tiny_scenario(tmp_path / "g.h5", rounds=1)).sweep(seed=[1, 2])
    with pytest.raises(RunError) as raised:
        fedarena.run(grid)
    assert str(raised.value) == (f"1 of 2 sweep points failed (the others are in {tmp_path / 'g.h5'}):\n"
                                 "point 1 (seed=2) failed: the aggregator 'x' failed: boom")
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") is not None
