"""Reports that cannot mislead, checked on the data the figures draw.

The results files here are written directly in the layout of
`fedarena.core.results.schema` (a sweep's skeleton by `SweepFile`), with
metric values made from each point's axes, so that any average over an
axis other than the seed shows up as a wrong number."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from fedarena.core.cli import main as cli
from fedarena.core.errors import UsageError
from fedarena.core.results import frames, schema
from fedarena.core.results.reader import load_runs
from fedarena.core.results.report import (
    ATTACK_METRIC_MEANINGS, MAX_LINES, build_report, choose_axes, heatmap_spec, heatmap_table, line_spec,
    load_study, metric_meaning,
)
from fedarena.core.results.writer import SweepFile

REPO = Path(__file__).resolve().parents[2]
AGGREGATORS = ["fedavg", "median", "krum(f = 1)"]
ROUNDS = 3
SLOTS = 4


def accuracy(point: dict, round_: int) -> float:
    """A value that tells every setting apart: any average over a non-seed
    axis gives a number no single setting has."""
    base = 0.5 + 0.1 * AGGREGATORS.index(point["aggregator"]) - 0.05 * int(point.get("attack[label_flip].clients", 0))
    base += 0.01 * int(point.get("training.clients_per_round", 4))
    return base + 0.02 * round_ + 0.003 * int(point.get("seed", 0)) ** 2


def _write_run(group: h5py.Group, point: dict, status: str, rounds: int, detectors: tuple[str, ...]) -> None:
    group.attrs[schema.SCENARIO] = "scenario text"
    group.attrs[schema.TITLE] = "synthetic study"
    group.attrs[schema.SEED] = int(point.get("seed", 1))
    group.attrs[schema.STATUS] = status
    group.attrs[schema.ROUNDS_PLANNED] = ROUNDS
    group.attrs[schema.ROUNDS_DONE] = rounds
    attackers = int(point.get("attack[label_flip].clients", 2))
    plugins = group.create_group(schema.PLUGINS)
    for role, name in [("aggregator", point.get("aggregator", "fedavg")), ("attack:label_flip", "label_flip"),
                       *((f"detector:{i}", d) for i, d in enumerate(detectors))]:
        plugin = plugins.create_group(schema.plugin_group(role))
        plugin.attrs[schema.PLUGIN_ROLE] = role
        plugin.attrs[schema.PLUGIN_NAME] = name.split("(")[0]
        plugin.attrs[schema.PLUGIN_LABEL] = name
    split = group.create_group(schema.SPLIT)
    split.attrs[schema.ATTACK_GROUPS] = ["label_flip"]
    split.create_dataset(schema.ATTACK_GROUP, data=np.array([0] * attackers + [-1] * (8 - attackers)))
    metrics = group.create_group(schema.METRICS)
    metrics[schema.ROUND] = np.arange(1, rounds + 1)
    metrics[schema.TEST_ACCURACY] = [accuracy(point, r) for r in range(1, rounds + 1)]
    metrics[schema.TEST_LOSS] = [2.0 - accuracy(point, r) for r in range(1, rounds + 1)]
    metrics["label_flip_flip_rate"] = [0.1 * attackers + 0.01 * r for r in range(1, rounds + 1)]
    metrics["label_flip_source_recall"] = [0.9 - 0.1 * attackers for _ in range(rounds)]
    metrics[schema.DETECTION_PRECISION] = [np.nan] * rounds
    metrics[schema.DETECTION_RECALL] = [np.nan] * rounds
    clients = group.create_group(schema.CLIENTS)
    ids = np.array([[(r + s) % 8 for s in range(SLOTS)] for r in range(rounds)])
    malicious = ids < attackers
    clients[schema.CLIENT_ID] = ids
    clients[schema.MALICIOUS] = malicious
    clients[schema.ATTACK_GROUP] = np.where(malicious, 0, -1)
    clients[schema.UPDATE_NORM] = 1.0 + ids
    clients[schema.AGGREGATION_WEIGHT] = np.full(ids.shape, 1 / SLOTS)
    clients[schema.NUM_EXAMPLES] = np.full(ids.shape, 50)
    clients[schema.TRAIN_LOSS] = np.full(ids.shape, 0.5)
    clients[schema.FINITE] = np.ones(ids.shape, bool)
    clients[schema.KEPT] = ~malicious if detectors else np.ones(ids.shape, bool)
    clients[schema.DETECTOR_SCORES] = np.stack([ids * (i + 1.0) for i in range(len(detectors))], axis=2) \
        if detectors else np.zeros((rounds, SLOTS, 0))
    detection = group.create_group(schema.DETECTION)
    detection[schema.ROUND] = np.arange(1, rounds + 1)
    for name in (schema.TRUE_POSITIVES, schema.FALSE_POSITIVES, schema.TRUE_NEGATIVES, schema.FALSE_NEGATIVES):
        detection[name] = np.arange(rounds)


def write_sweep(path: Path, axes: dict[str, list], statuses: dict[int, str] | None = None,
                detectors: tuple[str, ...] = ()) -> Path:
    """A sweep over the product of ``axes`` (values as the sweep writes
    them); ``statuses``: points that did not complete (``pending`` ones
    have no group)."""
    statuses = statuses or {}
    points = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    labels = [", ".join(f"{k}={v}" for k, v in p.items()) for p in points]
    sweep = SweepFile(path, force=True)
    sweep.start("scenario text", "synthetic study", labels, points)
    for index, (label, point) in enumerate(zip(labels, points)):
        status = statuses.get(index, schema.COMPLETE)
        if status != schema.PENDING:
            sweep.label(index, label, point)
            with h5py.File(path, "a") as f:
                _write_run(f[schema.point_group(index)], point, status,
                           ROUNDS if status == schema.COMPLETE else 1, detectors)
        sweep.mark(index, status)
    sweep.finish(schema.COMPLETE if not statuses else schema.FAILED)
    return path


def write_run(path: Path, point: dict, detectors: tuple[str, ...] = ()) -> Path:
    with h5py.File(path, "w") as f:
        _write_run(f, point, schema.COMPLETE, ROUNDS, detectors)
    return path


THREE_AXES = {
    "aggregator": AGGREGATORS,
    "attack[label_flip].clients": ["0", "2"],
    "training.clients_per_round": ["4", "8"],
    "rounds": ["3"],
    "seed": ["1", "2", "3"],
}


@pytest.fixture(scope="module")
def three_axes(tmp_path_factory) -> Path:
    """3 x 2 x 2 settings, one more axis with a single value, 3 seeds."""
    return write_sweep(tmp_path_factory.mktemp("sweep") / "three.h5", THREE_AXES)


@pytest.fixture(scope="module")
def built(three_axes, tmp_path_factory):
    """The report of `three_axes`, with its CSV files (drawn once: 36 runs)."""
    return build_report([str(three_axes)], tmp_path_factory.mktemp("report"), with_csv=True)


def expected_final(setting: dict) -> np.ndarray:
    """Final accuracy of the setting's runs, one per seed."""
    return np.array([accuracy({**setting, "seed": seed}, ROUNDS) for seed in THREE_AXES["seed"]])


# --- what each metric means ---------------------------------------------------------


def test_each_metric_is_titled_with_its_meaning_and_direction():
    groups = {"backdoor": "backdoor", "edge_case": "edge_case", "label_flip": "label_flip", "backdoor_2": "backdoor"}
    headings = {metric: metric_meaning(metric, groups).heading for metric in (
        "test_accuracy", "test_loss", "detection_precision", "detection_recall", "backdoor_attack_success_rate",
        "edge_case_attack_success_rate", "label_flip_source_recall", "label_flip_flip_rate",
        "backdoor_2_attack_success_rate")}
    assert headings == {
        "test_accuracy": "Clean test accuracy (higher = better model)",
        "test_loss": "Clean test loss (lower = better model)",
        "detection_precision": "Detection precision (higher = better detection)",
        "detection_recall": "Detection recall (higher = better detection)",
        "backdoor_attack_success_rate": "Backdoor attack success rate (higher = attack worked)",
        "edge_case_attack_success_rate": "Edge-case attack success rate (higher = attack worked)",
        "label_flip_source_recall": "Recall of the source class (lower = attack worked)",
        "label_flip_flip_rate": "Label flip rate: test samples classified as the target (higher = attack worked)",
        "backdoor_2_attack_success_rate": "Backdoor attack success rate [backdoor_2] (higher = attack worked)",
    }
    # Without the file's groups, an attack metric is known by its ending.
    assert metric_meaning("scaling_backdoor_asr").direction == "higher = attack worked"
    assert metric_meaning("my_attack_source_recall").direction == "lower = attack worked"
    # A metric fedarena does not know: its name, and no claim about which way is good.
    for unknown in ("test_f1", "my_attack_weirdness"):
        meaning = metric_meaning(unknown, {"my_attack": "my_attack"})
        assert meaning.heading == unknown and meaning.direction is None


def test_every_metric_a_built_in_attack_reports_has_a_direction():
    """The metric names come from the attacks' own ``test_metrics``: an
    attack that adds a metric must say here which way it points."""
    reported = {}
    for module in sorted((REPO / "plugins" / "attacks").glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "test_metrics":
                keys = {k.value for d in ast.walk(node) if isinstance(d, ast.Dict) for k in d.keys
                        if isinstance(k, ast.Constant)}
                reported[module.stem] = keys
    assert reported == {"backdoor": {"attack_success_rate"}, "edge_case": {"attack_success_rate"},
                        "label_flip": {"source_recall", "flip_rate"}}
    for plugin, names in reported.items():
        for name in names:
            meaning = metric_meaning(f"{plugin}_{name}", {plugin: plugin})
            assert meaning.direction in ("higher = attack worked", "lower = attack worked"), (plugin, name)
            assert (plugin, name) in ATTACK_METRIC_MEANINGS or (None, name) in ATTACK_METRIC_MEANINGS


def test_source_recall_is_not_drawn_as_attack_success(built):
    """It rises when the attack fails: its own panel says so."""
    titles = {p.metric: p.title for p in built.lines.panels}
    assert titles["label_flip_source_recall"] == "Recall of the source class (lower = attack worked)"
    assert titles["test_accuracy"] == "Clean test accuracy (higher = better model)"
    drawn = [p["title"] for p in built.drawn["metrics"].panels]
    assert not any("Attack success" in t for t in drawn)
    assert sum(t.startswith("Recall of the source class (lower = attack worked)") for t in drawn) == 3  # per facet
    heatmap = built.drawn["heatmap_label_flip_source_recall"]
    assert heatmap.suptitle.startswith("Recall of the source class (lower = attack worked), final round")
    # No detector in these runs: the (undefined) detection metrics are not drawn.
    assert set(built.heatmaps) == {"test_accuracy", "label_flip_flip_rate", "label_flip_source_recall"}


# --- heatmaps: nothing but seeds averaged ------------------------------------------------


def test_three_axes_are_rows_columns_and_facets_and_a_single_value_is_named(three_axes, built):
    study = load_study([three_axes])
    assert study.axes == list(THREE_AXES) and study.fixed == {"rounds": 3} and study.seeded
    assert choose_axes(study) == ("aggregator", "attack[label_flip].clients", ["training.clients_per_round"])
    spec = heatmap_spec(study, "test_accuracy")
    assert spec.rows == AGGREGATORS and spec.cols == [0, 2]
    assert [p.facet for p in spec.panels] == [{"training.clients_per_round": 4}, {"training.clients_per_round": 8}]
    for panel in spec.panels:
        for i, aggregator in enumerate(spec.rows):
            for j, clients in enumerate(spec.cols):
                values = expected_final({"aggregator": aggregator, "attack[label_flip].clients": clients,
                                         "training.clients_per_round": panel.facet["training.clients_per_round"]})
                assert panel.n[i, j] == 3
                assert panel.mean[i, j] == pytest.approx(values.mean())
                assert panel.std[i, j] == pytest.approx(values.std(ddof=1))
                assert panel.text[i][j] == f"{values.mean():.3f} ± {values.std(ddof=1):.3f}\n(n=3)"
    # What is drawn is what was computed; the figure names the fixed axis and the aggregation.
    drawn = built.drawn["heatmap_test_accuracy"]
    assert [p["title"] for p in drawn.panels] == ["training.clients_per_round=4", "training.clients_per_round=8"]
    for panel, shown in zip(spec.panels, drawn.panels):
        np.testing.assert_allclose(shown["image"], panel.mean)
        assert shown["texts"] == [t for row in panel.text for t in row]
        assert (shown["ylabel"], shown["xlabel"]) == ("aggregator", "attack[label_flip].clients")
    assert "fixed: rounds=3" in drawn.suptitle
    assert "mean ± sample std over seeds (seed in 1, 2, 3), n = runs in the cell" in drawn.suptitle
    assert drawn.suptitle.startswith("Clean test accuracy (higher = better model), final round")


def test_no_cell_mixes_settings_that_differ_in_more_than_the_seed(three_axes):
    study = load_study([three_axes])
    for rows, cols in itertools.permutations(study.axes, 2):
        spec = heatmap_spec(study, "test_accuracy", rows, cols)
        shown = {rows, cols, *spec.facet_axes}
        # Every axis with several values is shown, or it is the seed, aggregated with its n.
        assert set(study.varying) <= shown
        if "seed" not in shown:
            assert spec.seeds and all((p.n == 3).all() for p in spec.panels)
        else:
            assert not spec.seeds and all((p.n == 1).all() for p in spec.panels)
            assert not any("±" in t for p in spec.panels for row in p.text for t in row)
    # The old aggregator x attack table refuses to average what differs in more than the seed.
    with pytest.raises(ValueError, match="differ in more than the seed"):
        heatmap_table(load_runs(three_axes), "test_accuracy")


def test_rows_and_cols_choose_the_axes(three_axes, tmp_path):
    study = load_study([three_axes])
    spec = heatmap_spec(study, "test_accuracy", rows="training.clients_per_round", cols="aggregator")
    assert (spec.row_axis, spec.col_axis, spec.facet_axes) == (
        "training.clients_per_round", "aggregator", ["attack[label_flip].clients"])
    assert spec.rows == [4, 8] and spec.cols == AGGREGATORS
    panel = spec.panels[1]  # attack clients = 2
    setting = {"training.clients_per_round": 8, "aggregator": "median", "attack[label_flip].clients": 2}
    assert panel.mean[1, 1] == pytest.approx(expected_final(setting).mean())
    # Only one given: the other is the default among the rest.
    assert choose_axes(study, cols="aggregator")[:2] == ("attack[label_flip].clients", "aggregator")
    # The seed may be shown too: then nothing is aggregated.
    assert heatmap_spec(study, "test_accuracy", rows="seed", cols="aggregator").facet_axes == [
        "attack[label_flip].clients", "training.clients_per_round"]
    # Through the command (a smaller sweep: drawing 36 runs' client plots takes a while).
    small = write_sweep(tmp_path / "small.h5", {**{a: v[:2] for a, v in THREE_AXES.items() if a != "seed"}})
    out = tmp_path / "report"
    assert cli.main(["report", str(small), "--out", str(out), "--rows", "training.clients_per_round",
                     "--cols", "aggregator"]) == 0
    text = (out / "final_values.md").read_text()
    assert "| training.clients_per_round \\ aggregator | fedavg | median |" in text
    assert "### attack[label_flip].clients=2" in text


def test_a_bad_axis_is_a_usage_error_naming_the_axes(three_axes, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main(["report", str(three_axes), "--out", str(out), "--rows", "aggregatr"]) == 2
    error = capsys.readouterr().err
    assert "--rows 'aggregatr' is not an axis of these results" in error
    assert "axes: aggregator, attack[label_flip].clients, training.clients_per_round, rounds, seed" in error
    assert not out.exists()  # refused before anything was written
    assert cli.main(["report", str(three_axes), "--out", str(out), "--rows", "seed", "--cols", "seed"]) == 2
    assert "both 'seed'" in capsys.readouterr().err
    single = write_run(tmp_path / "single.h5", {"aggregator": "fedavg"})
    assert cli.main(["report", str(single), "--out", str(out), "--cols", "aggregator"]) == 2
    assert "no sweep axes" in capsys.readouterr().err
    with pytest.raises(UsageError):
        choose_axes(load_study([three_axes]), rows="dataset")
    # A file given twice would count each of its runs twice in every mean.
    assert cli.main(["report", str(single), str(single), "--out", str(out)]) == 2
    assert "given more than once" in capsys.readouterr().err


def test_runs_that_did_not_complete_are_left_out_and_counted(tmp_path):
    axes = {"aggregator": AGGREGATORS[:2], "seed": ["1", "2", "3"]}
    path = write_sweep(tmp_path / "partial.h5", axes, statuses={1: schema.FAILED, 5: schema.PENDING})
    spec = heatmap_spec(load_study([path]), "test_accuracy")
    assert (spec.row_axis, spec.col_axis, spec.facet_axes) == ("aggregator", None, [])
    (panel,) = spec.panels
    assert panel.n[:, 0].tolist() == [2, 2]
    fedavg = [accuracy({"aggregator": "fedavg", "seed": s}, ROUNDS) for s in (1, 3)]
    assert panel.mean[0, 0] == pytest.approx(np.mean(fedavg))
    assert panel.text[0][0].endswith("(n=2)")
    assert "2 runs left out, not complete (1 failed, 1 pending)" in spec.notes


# --- lines per round: bands over seeds, facets past ten lines -------------------------------


def test_seeds_are_a_band_around_their_mean(three_axes, built):
    study = load_study([three_axes])
    spec = line_spec(study)
    panel = spec.panel("test_accuracy", aggregator="median")
    line = next(l for l in panel.lines if l.setting == {"attack[label_flip].clients": 2,
                                                        "training.clients_per_round": 8})
    per_seed = np.array([[accuracy({"aggregator": "median", "attack[label_flip].clients": 2,
                                    "training.clients_per_round": 8, "seed": s}, r) for r in (1, 2, 3)]
                         for s in (1, 2, 3)])
    np.testing.assert_array_equal(line.rounds, [1, 2, 3])
    np.testing.assert_allclose(line.mean, per_seed.mean(axis=0))
    np.testing.assert_allclose(line.std, per_seed.std(axis=0, ddof=1))
    assert line.n.tolist() == [3, 3, 3]
    assert line.label == "attack[label_flip].clients=2, training.clients_per_round=8 (n=3)"
    # Drawn: the mean as the line, mean ± std as the band's outline.
    drawn = built.drawn["metrics"]
    shown = drawn.panels[spec.panels.index(panel)]
    index = panel.lines.index(line)
    np.testing.assert_allclose(shown["lines"][index][1], line.mean)
    band = shown["bands"][index]
    assert band[:, 1].min() == pytest.approx((line.mean - line.std).min())
    assert band[:, 1].max() == pytest.approx((line.mean + line.std).max())
    assert "band: ± 1 sample std" in drawn.suptitle and "fixed: rounds=3" in drawn.suptitle


def test_past_ten_lines_the_panels_are_split_by_an_axis(three_axes, built, tmp_path):
    spec = line_spec(load_study([three_axes]))  # 12 settings
    assert spec.facet_axes == ["aggregator"]  # 4 lines a panel; splitting by another axis leaves 6
    assert len(spec.panels) == len(spec.metrics) * 3
    for panel in spec.panels:
        assert len(panel.lines) == 4 <= MAX_LINES
        assert all("aggregator" not in line.label for line in panel.lines)
    drawn = built.drawn["metrics"]
    assert [p["title"].splitlines()[-1] for p in drawn.panels[:3]] == [f"aggregator={a}" for a in AGGREGATORS]
    assert all(len(p["legend"]) == 4 for p in drawn.panels)
    # Ten lines or fewer: one panel per metric, every line in it, no seeds, no band.
    small = write_sweep(tmp_path / "small.h5",
                        {"aggregator": AGGREGATORS[:2], "attack[label_flip].clients": ["0", "2"]})
    spec = line_spec(load_study([small]))
    assert spec.facet_axes == [] and len(spec.panels) == len(spec.metrics) and not spec.seeds
    assert [l.label for l in spec.panel("test_accuracy").lines] == [
        "aggregator=fedavg, attack[label_flip].clients=0", "aggregator=fedavg, attack[label_flip].clients=2",
        "aggregator=median, attack[label_flip].clients=0", "aggregator=median, attack[label_flip].clients=2"]
    assert all(np.isnan(l.std).all() for l in spec.panel("test_accuracy").lines)
    drawn = build_report([str(small)], tmp_path / "small").drawn["metrics"]
    assert drawn.panels[0]["bands"] == []


# --- the long CSV, and the frames under it -----------------------------------------------------


def test_the_long_csv_keeps_every_seed_round_and_metric(built):
    out = built.written[0].parent
    assert out / "metrics.csv" in built.written
    long = pd.read_csv(out / "metrics.csv")
    assert list(long.columns) == [*THREE_AXES, "run", "round", "metric", "value"]
    points = 3 * 2 * 2 * 3
    assert len(long) == points * ROUNDS * 6  # 6 metrics in each run
    assert sorted(long["seed"].unique()) == [1, 2, 3] and long["run"].nunique() == points
    row = long[(long["aggregator"] == "krum(f = 1)") & (long["attack[label_flip].clients"] == 2)
               & (long["training.clients_per_round"] == 4) & (long["seed"] == 2) & (long["round"] == 3)
               & (long["metric"] == "test_accuracy")]
    assert row["value"].tolist() == [pytest.approx(accuracy(
        {"aggregator": "krum(f = 1)", "attack[label_flip].clients": 2, "training.clients_per_round": 4, "seed": 2}, 3))]
    for i in range(points):  # the per-run files, as before
        assert (out / f"metrics_{i}.csv").read_text().startswith("round,")


def test_frames_of_a_sweep_with_a_pending_point_and_detectors(tmp_path):
    path = write_sweep(tmp_path / "sweep.h5", {"aggregator": AGGREGATORS[:2], "seed": ["1", "2"]},
                       statuses={3: schema.PENDING}, detectors=("flame", "flame"))
    index = frames.index_frame(path)
    assert list(index.columns) == ["aggregator", "seed", "run", "status", "rounds_done", "label"]
    assert index["status"].tolist() == ["complete"] * 3 + ["pending"]
    assert index["rounds_done"].tolist() == [ROUNDS] * 3 + [0]
    assert index["seed"].dtype == np.int64 and index["label"][1] == "aggregator=fedavg, seed=2"
    metrics = frames.metrics_frame(path)
    assert frames.axis_columns(metrics) == ["aggregator", "seed"]
    assert list(metrics.columns) == ["aggregator", "seed", "run", "round", "metric", "value"]
    assert len(metrics) == 3 * ROUNDS * 6 and set(metrics["run"]) == {0, 1, 2}
    assert metrics["metric"][:6].tolist() == ["test_accuracy", "test_loss", "label_flip_flip_rate",
                                              "label_flip_source_recall", "detection_precision", "detection_recall"]
    clients = frames.clients_frame(path)
    assert list(clients.columns) == [
        "aggregator", "seed", "run", "round", "slot", "client", "malicious", "attack_group", "finite", "kept",
        "aggregation_weight", "update_norm", "num_examples", "train_loss", "score_flame_1", "score_flame_2"]
    assert len(clients) == 3 * ROUNDS * SLOTS
    assert set(clients.loc[clients["malicious"], "attack_group"]) == {"label_flip"}
    assert clients.loc[~clients["malicious"], "attack_group"].isna().all()
    np.testing.assert_allclose(clients["score_flame_2"], 2 * clients["client"])
    detection = frames.detection_frame(path)
    assert list(detection.columns) == ["aggregator", "seed", "run", "round", "true_positives", "false_positives",
                                       "true_negatives", "false_negatives"]
    assert len(detection) == 3 * ROUNDS
    # With detectors, the detection metrics are reported (here NaN: undefined).
    assert load_study([path]).report_metrics()[-2:] == ["detection_precision", "detection_recall"]
    # A single run: no axis columns, run 0.
    single = write_run(tmp_path / "single.h5", {"aggregator": "median"})
    assert list(frames.index_frame(single).columns) == ["run", "status", "rounds_done", "label"]
    assert frames.index_frame(single)["label"].tolist() == ["single"]
    assert list(frames.metrics_frame(single).columns) == ["run", "round", "metric", "value"]
    assert set(frames.clients_frame(single)["run"]) == {0}
