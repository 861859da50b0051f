"""Sweeps run end to end: one file for the whole grid, its report, parallel
jobs, and a failing point that does not stop the others."""

import math
import sys

import h5py
import matplotlib.image
import numpy as np

from conftest import orphan_workers, run_fedarena
from fedarena.core.results import reader, schema
from fedarena.core.results.reader import load_point, load_runs
from fedarena.core.results.report import heatmap_table

SWEEP = """\
scenario "tiny sweep" {{
  seed 1
  rounds 2
  dataset {dataset}
  split iid over 6 clients
  model mlp(hidden = [8])
  training {{
    clients_per_round 4
    batch_size 16
    optimizer sgd(learning_rate = 0.2)
  }}
  attack label_flip(mode = "all_to_one", target = 0) {{
    clients 2
  }}
  aggregator fedavg
  output "{output}"
}}

sweep {{
{axes}
}}
"""
SYNTHETIC = "synthetic(samples = 600, features = 8, classes = 3)"


def test_a_sweep_writes_one_file_and_its_report_matches_it(tmp_path, write_scenario):
    out = tmp_path / "sweep.h5"
    axes = "  aggregator in [fedavg, median]\n  attack[label_flip].clients in [0, 2]"
    path = write_scenario(SWEEP.format(dataset=SYNTHETIC, output=out, axes=axes))
    result = run_fedarena("run", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"sweep of 4 runs, 4 complete now, 0 failed; results written to {out}")
    with h5py.File(out) as f:
        assert f.attrs["kind"] == "sweep" and f.attrs["status"] == "complete" and f.attrs["runs"] == 4
        assert [s.decode() for s in f["index/status"][()]] == ["complete"] * 4
        assert f["index/label"][0].decode() == "aggregator=fedavg, attack[label_flip].clients=0"
        assert f["runs/0003"].attrs["scenario"] == path.read_text()  # every point keeps the scenario text
        assert f["runs/0003/plugins/aggregator"].attrs["name"] == "median"
        assert (f["runs/0001/split/attack_group"][()] >= 0).sum() == 2
        assert (f["runs/0000/split/attack_group"][()] >= 0).sum() == 0
    # The reader sees the same, point by point.
    with reader.open_results(out) as f:
        assert reader.is_sweep(f) and reader.point_statuses(f) == [schema.COMPLETE] * 4
        groups = reader.run_groups(f)
        assert [g.name for g, _ in groups] == ["/" + schema.point_group(i) for i in range(4)]
        assert groups[0][1] == "aggregator=fedavg, attack[label_flip].clients=0"
        assert reader.point(groups[3][0]) == {"aggregator": "median", "attack[label_flip].clients": "2"}
    third = load_point(out, 3)
    assert third.label == groups[3][1] and third.aggregator_label == "median" and third.attack_label.endswith(" x 2")

    report = tmp_path / "report"
    assert run_fedarena("report", out, "--out", report).returncode == 0
    runs = load_runs(out)
    rows, columns, values = heatmap_table(runs, "test_accuracy")
    assert rows == ["fedavg", "median"] and columns[1] == "no attack" and columns[0].endswith(" x 2")
    by_point = {(r.aggregator_label, r.attack_label): r.metrics["test_accuracy"][-1] for r in runs}
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            assert values[i, j] == by_point[(row, column)]
    image = matplotlib.image.imread(report / "heatmap_test_accuracy.png")
    assert image.shape[0] > 200 and image.shape[1] > 400
    # What the attack cost: each attacked point against its clean twin (same aggregator).
    accuracy = {(r.aggregator_label, r.attack_label): r.final("test_accuracy") for r in runs}
    drops = {aggregator: accuracy[(aggregator, "no attack")] - accuracy[(aggregator, attack)]
             for aggregator, attack in accuracy if attack != "no attack"}
    assert sorted(drops) == ["fedavg", "median"]
    summary = (report / "summary.md").read_text().splitlines()
    header = [c.strip() for c in summary[2].split("|")]
    assert header[6:9] == ["test_accuracy", "test_loss", "accuracy_drop"]
    for line in summary[4:]:
        cells = [c.strip() for c in line.split("|")]
        expected = drops.get(cells[4]) if cells[5] != "no attack" else None
        assert cells[8] == (f"{expected:.4f}" if expected is not None else "n/a"), line
    shown = run_fedarena("show", out).stdout
    assert shown.count("accuracy drop against the same run without attackers") == 2
    assert f"without attackers: {drops['median']:.4f}" in shown


def test_parallel_jobs_finish_the_others_when_one_point_fails(tmp_path, write_scenario):
    out = tmp_path / "sweep.h5"
    # An existing folder without the IDX files passes the check and fails when point 1 loads its data.
    (tmp_path / "empty-folder").mkdir()
    axes = f'  dataset in [{SYNTHETIC}, mnist(path = "{tmp_path}/empty-folder"), synthetic(samples = 300)]'
    path = write_scenario(SWEEP.format(dataset=SYNTHETIC, output=out, axes=axes))
    result = run_fedarena("run", path, "--jobs", "2")
    assert result.returncode == 1
    assert "error: point 1 (dataset=mnist(" in result.stderr and "empty-folder" in result.stderr
    assert "sweep of 3 runs, 2 complete now, 1 failed" in result.stdout
    assert orphan_workers() == []  # every job stopped its own worker
    with h5py.File(out) as f:
        assert [s.decode() for s in f["index/status"][()]] == ["complete", "failed", "complete"]
        assert f.attrs["status"] == "failed"
        for index in (0, 2):
            run = f[f"runs/{index:04d}"]
            assert run.attrs["status"] == "complete" and len(run["metrics/round"]) == 2
    accuracy = [r.final("test_accuracy") for r in load_runs(out)]
    assert not math.isnan(accuracy[0]) and not math.isnan(accuracy[-1])
    assert np.isfinite(accuracy[0])


FAKE_CHILD = """\
import os, sys
# A --jobs child that warns, fails point 0 cleanly and dies on point 1.
print("fedarena: warning: the local TFF worker is reachable", file=sys.stderr, flush=True)
print("some other chatter", file=sys.stderr, flush=True)
for line in sys.stdin:
    index = int(line.split("\\t")[0])
    if index == 0:
        print("failed\\tpoint 0 went wrong", flush=True)
    else:
        print(f"dying on point {index}", file=sys.stderr, flush=True)
        os._exit(9)
"""


def test_a_child_that_dies_is_replaced_and_its_point_tried_once_more(tmp_path, write_scenario, monkeypatch, capsys):
    from fedarena.core.execution import runner
    from fedarena.core.language.parser import parse
    from fedarena.core.plugin.registry import default_registry
    from fedarena.core.scenario.sweep import check_points

    out = tmp_path / "sweep.h5"
    path = write_scenario(SWEEP.format(dataset=SYNTHETIC, output=out, axes="  seed in [1, 2]"))
    registry = default_registry()
    points = check_points(parse(path.read_text(), str(path)), registry)
    fake = tmp_path / "child.py"
    fake.write_text(FAKE_CHILD)
    spawned = []

    def command(scenario_path, workers, backend):
        spawned.append(scenario_path)
        return [sys.executable, str(fake)]

    monkeypatch.setattr(runner._PointServer, "command", staticmethod(command))
    outcomes = runner.run_sweep(points, registry, scenario_path=str(path), output=str(out), jobs=2)
    by_index = {o.index: o for o in outcomes}
    assert sorted(by_index) == [0, 1] and len(outcomes) == 2
    assert by_index[0].status == "failed" and by_index[0].message == "point 0 went wrong"
    assert by_index[1].status == "failed" and by_index[1].message == "dying on point 1"
    # Two children at first; point 1 killed one, was given to a replacement, and killed it too.
    assert len(spawned) == 3
    # The children's warnings reach the terminal, once; the rest stays in their logs.
    assert capsys.readouterr().err == "fedarena: warning: the local TFF worker is reachable\n"
    with h5py.File(out) as f:
        assert [s.decode() for s in f["index/status"][()]] == ["failed", "failed"]
        assert f.attrs["status"] == "failed"
