"""A real tiny sweep (aggregator x attackers x seed) run once, its frames
checked against the reader and its report against the file's numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedarena.core.cli import main as cli
from fedarena.core.results import frames
from fedarena.core.results.reader import load_runs
from fedarena.core.results.report import build_report, heatmap_spec, line_spec, load_study

from conftest import tiny_scenario

AXES = ("aggregator", "attack[label_flip].clients", "seed")
SWEEP = """
sweep {
  aggregator in [fedavg, median]
  attack[label_flip].clients in [0, 2]
  seed in [1, 2]
}
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, fedarena_worker):
    """8 points of 2 rounds, run in this process on the session's worker."""
    from fedarena.core.execution.runner import run_sweep
    from fedarena.core.language.parser import parse
    from fedarena.core.plugin.registry import default_registry
    from fedarena.core.scenario.sweep import check_points

    folder = tmp_path_factory.mktemp("sweep")
    out = folder / "sweep.h5"
    path = folder / "sweep.fls"
    path.write_text(tiny_scenario(output=out, rounds=2) + SWEEP)
    registry = default_registry()
    points = check_points(parse(path.read_text(), str(path)), registry)
    outcomes = run_sweep(points, registry, scenario_path=str(path), output=str(out), workers=fedarena_worker)
    assert [o.status for o in outcomes] == ["complete"] * 8
    return out


def test_the_frames_hold_what_the_reader_reads(sweep):
    runs = load_runs(sweep)
    metrics = frames.metrics_frame(sweep)
    assert frames.axis_columns(metrics) == list(AXES)
    names = [m for m in runs[0].metrics if m != "round"]
    assert len(metrics) == 8 * 2 * len(names)
    for index, run in enumerate(runs):
        rows = metrics[metrics["run"] == index]
        assert {a: rows[a].iloc[0] for a in AXES} == {a: (int(v) if a != "aggregator" else v)
                                                      for a, v in run.point.items()}
        for name in names:
            np.testing.assert_array_equal(rows.loc[rows["metric"] == name, "value"], run.metrics[name])
            np.testing.assert_array_equal(rows.loc[rows["metric"] == name, "round"], run.metrics["round"])
    clients = frames.clients_frame(sweep)
    assert len(clients) == 8 * 2 * 4  # 2 rounds of 4 clients
    third = clients[clients["run"] == 3]
    np.testing.assert_array_equal(third["client"], runs[3].clients["id"].ravel())
    np.testing.assert_array_equal(third["malicious"], runs[3].clients["malicious"].ravel().astype(bool))
    np.testing.assert_allclose(third["update_norm"], runs[3].clients["update_norm"].ravel())
    assert not [c for c in clients.columns if c.startswith("score_")]  # no detector
    detection = frames.detection_frame(sweep)
    assert len(detection) == 16
    assert detection["false_negatives"].sum() == sum(int(r.detection["false_negatives"].sum()) for r in runs)
    index = frames.index_frame(sweep)
    assert index["status"].tolist() == ["complete"] * 8 and index["rounds_done"].tolist() == [2] * 8
    assert index["label"].tolist() == [r.label for r in runs]


def test_the_report_of_a_real_sweep_shows_its_seeds_as_mean_and_std(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main(["report", str(sweep), "--out", str(out), "--csv"]) == 0
    written = capsys.readouterr().out.split()
    for name in ("metrics.png", "heatmap_test_accuracy.png", "heatmap_label_flip_flip_rate.png", "summary.md",
                 "final_values.md", "metrics.csv", "metrics_7.csv", "clients_7.png"):
        assert str(out / name) in written
    runs = load_runs(sweep)
    study = load_study([sweep])
    spec = heatmap_spec(study, "test_accuracy")
    assert (spec.row_axis, spec.col_axis, spec.facet_axes, spec.seeds) == (
        "aggregator", "attack[label_flip].clients", [], True)
    (panel,) = spec.panels
    for i, aggregator in enumerate(["fedavg", "median"]):
        for j, clients in enumerate(["0", "2"]):
            finals = [r.final("test_accuracy") for r in runs
                      if r.point["aggregator"] == aggregator and r.point["attack[label_flip].clients"] == clients]
            assert len(finals) == panel.n[i, j] == 2
            assert panel.mean[i, j] == pytest.approx(np.mean(finals))
            assert panel.std[i, j] == pytest.approx(np.std(finals, ddof=1))
            assert panel.text[i][j].endswith("(n=2)") and " ± " in panel.text[i][j]
            assert panel.text[i][j].replace("\n", " ") in (out / "final_values.md").read_text()
    lines = line_spec(study)
    assert lines.seeds and lines.facet_axes == []
    assert [l.label for l in lines.panel("test_accuracy").lines] == [
        f"aggregator={a}, attack[label_flip].clients={c} (n=2)" for a in ("fedavg", "median") for c in (0, 2)]
    assert lines.panel("label_flip_flip_rate").title.endswith("(higher = attack worked)")
    long = pd.read_csv(out / "metrics.csv")
    assert list(long.columns) == [*AXES, "run", "round", "metric", "value"]
    assert len(long) == len(frames.metrics_frame(sweep)) and sorted(long["seed"].unique()) == [1, 2]
    summary = (out / "summary.md").read_text()
    assert summary.count("| complete | 2 |") == 8 and "accuracy_drop" in summary


def test_rows_and_cols_of_a_real_sweep(sweep, tmp_path, capsys):
    built = build_report([str(sweep)], tmp_path, rows="seed", cols="aggregator")
    spec = built.heatmaps["test_accuracy"]
    assert spec.facet_axes == ["attack[label_flip].clients"] and not spec.seeds
    assert all((p.n == 1).all() for p in spec.panels)
    assert cli.main(["report", str(sweep), "--out", str(tmp_path), "--cols", "clients"]) == 2
    assert "axes: aggregator, attack[label_flip].clients, seed" in capsys.readouterr().err


def test_the_report_draws_per_client_plots_of_the_first_runs_only_unless_asked(sweep, tmp_path, capsys):
    assert cli.main(["report", str(sweep), "--out", str(tmp_path / "three"), "--client-plots", "3"]) == 0
    assert sorted(p.name for p in (tmp_path / "three").glob("clients_*.png")) == [
        "clients_0.png", "clients_1.png", "clients_2.png"]
    assert ("Per-client plots: runs 0 to 2 of 8 (`fedarena report --client-plots all` draws every run's)."
            in (tmp_path / "three" / "summary.md").read_text())
    assert cli.main(["report", str(sweep), "--out", str(tmp_path / "all"), "--client-plots", "all"]) == 0
    assert len(list((tmp_path / "all").glob("clients_*.png"))) == 8
    assert "Per-client plots" not in (tmp_path / "all" / "summary.md").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["report", str(sweep), "--client-plots", "many"])
    assert "give a number of runs or 'all', got 'many'" in capsys.readouterr().err
