"""`fedarena report` and `fedarena show` on real results files, and a real
run's file read back through the reader against the schema."""

import math

import matplotlib.image
import numpy as np
import pytest

from fedarena.core.cli import main as cli
from fedarena.core.results import reader, schema
from fedarena.core.results.reader import load_runs
from fedarena.core.results.report import heatmap_table, show

from conftest import tiny_scenario


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, fedarena_worker):
    from fedarena.core.testing import run_text

    folder = tmp_path_factory.mktemp("runs")
    return [
        run_text(tiny_scenario(rounds=3, aggregator=aggregator), folder, name=f"{aggregator}.fls",
                 workers=fedarena_worker)
        for aggregator in ("fedavg", "median")
    ]


def test_report_writes_decodable_plots_and_a_heatmap_equal_to_the_files(two_runs, tmp_path, capsys):
    paths = [str(r.path) for r in two_runs]
    assert cli.main(["report", *paths, "--out", str(tmp_path), "--csv"]) == 0
    written = capsys.readouterr().out.split()
    for name in ("metrics.png", "clients_0.png", "clients_1.png", "heatmap_test_accuracy.png", "summary.md",
                 "metrics.csv", "metrics_0.csv", "metrics_1.csv"):
        assert str(tmp_path / name) in written
    for png in tmp_path.glob("*.png"):
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    runs = [run for path in paths for run in load_runs(path)]
    rows, columns, values = heatmap_table(runs, "test_accuracy")
    assert rows == ["fedavg", "median"]
    assert columns == [two_runs[0].data["plugins/attack_label_flip"]["label"] + " x 2"]
    assert columns[0].startswith("label_flip(") and "target = 0" in columns[0]
    expected = [r.data["metrics/test_accuracy"][-1] for r in two_runs]
    np.testing.assert_allclose(values[:, 0], expected)
    summary = (tmp_path / "summary.md").read_text()
    assert summary.count("| complete | 3 |") == 2
    assert f"{expected[0]:.4f}" in summary
    header, *lines = (tmp_path / "metrics_0.csv").read_text().splitlines()
    assert header.startswith("round,") and len(lines) == 3
    # Several files: each is a value of the axis `file`, the heatmap's rows.
    long = (tmp_path / "metrics.csv").read_text().splitlines()
    assert long[0] == "file,run,round,metric,value"
    assert len(long) - 1 == 2 * 3 * 5  # 2 runs, 3 rounds, 5 metrics
    assert long[1].startswith("fedavg,0,1,test_accuracy,")
    final = (tmp_path / "final_values.md").read_text()
    assert f"| fedavg | {expected[0]:.3f} |" in final and f"| median | {expected[1]:.3f} |" in final


def test_show_summarises_status_metrics_and_detection(two_runs):
    text = show(two_runs[0].path)
    assert "complete, 3/3 rounds" in text
    accuracy = two_runs[0].data["metrics/test_accuracy"][-1]
    assert f"test_accuracy {accuracy:.4f}" in text
    malicious = int(two_runs[0].data["clients/malicious"].sum())
    assert f"dropped 0 of {malicious} malicious updates and 0 benign ones" in text


def test_show_and_report_refuse_what_is_not_a_results_file(tmp_path, capsys):
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"not hdf5")
    assert cli.main(["show", str(bogus)]) == 2
    assert "not a readable HDF5 results file" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "missing.h5")]) == 2


def test_a_run_file_holds_exactly_what_the_schema_describes(two_runs, fedarena_worker):
    names = lambda fields: {f.name for f in fields}  # noqa: E731
    with reader.open_results(two_runs[0].path) as f:
        assert not reader.is_sweep(f)
        ((group, label),) = reader.run_groups(f)
        assert label is None and group == f
        assert set(schema.RUN_GROUPS) <= set(f) and set(f) <= set(schema.RUN_GROUPS)
        attributes = set(reader.run_attributes(f))
        assert attributes <= names(schema.RUN_ATTRIBUTES)
        assert names(schema.RUN_ATTRIBUTES) - attributes == {schema.RESUMED_AT, schema.ERROR}
        assert f.attrs[schema.STATUS] == schema.COMPLETE and f.attrs[schema.WORKERS] == ",".join(fedarena_worker)
        assert set(reader.clients(f)) == names(schema.CLIENT_FIELDS)
        assert set(reader.timing(f)) == names(schema.TIMING_FIELDS)
        assert set(reader.detection(f)) == names(schema.DETECTION_FIELDS)
        metrics = set(reader.metrics(f))
        assert names(schema.METRIC_FIELDS) <= metrics
        assert metrics - names(schema.METRIC_FIELDS) == {"label_flip_flip_rate"}  # <attack group>_<metric>
        assert set(f[schema.SPLIT]) == names(schema.SPLIT_FIELDS)
        assert reader.attack_groups(f) == ("label_flip",)
        assert (reader.assignment(f) >= 0).sum() == 2
        plugins = reader.plugins(f)
        assert {schema.AGGREGATOR_GROUP, "dataset", schema.ATTACK_PREFIX + "label_flip"} <= set(plugins)
        for role_group, plugin_attrs in plugins.items():
            attack = role_group.startswith(schema.ATTACK_PREFIX)
            assert set(plugin_attrs) == names(schema.PLUGIN_ATTRIBUTES) | (
                names(schema.ATTACK_ATTRIBUTES) if attack else set())
            assert schema.plugin_group(plugin_attrs[schema.PLUGIN_ROLE]) == role_group
        assert set(f[schema.VERSIONS].attrs) == set(schema.VERSIONED_DISTRIBUTIONS)
        assert f[schema.MODEL].attrs[schema.MODEL_ROUND] == 3
        checkpoint = reader.checkpoint(f)
        assert checkpoint.rounds_done == 3 and checkpoint.weights.ndim == 1 and checkpoint.state == {}
        assert checkpoint.detection_totals == {k: int(reader.detection(f)[k].sum()) for k in
                                               names(schema.DETECTION_FIELDS) - {schema.ROUND}}
        assert reader.point(f) == {}
