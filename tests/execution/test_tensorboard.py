"""``fedarena run FILE --tensorboard DIR``: every round written to
TensorBoard event files, read back here and compared with the results file."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import pytest

from fedarena.core.cli import main as cli
from fedarena.core.execution.observers import Observer, Observers, point_folder, safe_name

from conftest import run_fedarena, tiny_scenario

def detected(output) -> str:
    """The tiny scenario with a detector and a robust aggregator."""
    detector = "  detector norm_outlier\n  aggregator median"
    return tiny_scenario(output, rounds=3).replace("  aggregator fedavg", detector)


def events(directory: Path) -> dict[str, dict]:
    """tag -> {"plugin": scalars|histograms, "steps": {step: value}} from every event file."""
    import tensorflow as tf

    found: dict[str, dict] = defaultdict(lambda: {"plugin": None, "steps": {}})
    files = sorted(directory.glob("events.out.tfevents.*"))
    assert files, f"no event file in {directory}"
    for file in files:
        for event in tf.compat.v1.train.summary_iterator(str(file)):
            for value in event.summary.value:
                entry = found[value.tag]
                entry["plugin"] = value.metadata.plugin_data.plugin_name or entry["plugin"]
                entry["steps"][event.step] = tf.make_ndarray(value.tensor)
    return dict(found)


def test_folder_names_of_sweep_points_are_safe_and_ordered(tmp_path):
    assert safe_name("aggregator=krum(f = 10), seed=2") == "aggregator=krum_f=10_seed=2"
    assert point_folder(tmp_path, 3, "attack[label_flip].clients=20%") == tmp_path / "003_attack_label_flip_.clients=20"
    assert point_folder(tmp_path, 0, "") == tmp_path / "000"
    assert len(point_folder(tmp_path, 1, "x" * 500).name) <= 104


def test_a_failing_observer_is_named_once_and_left_out(capsys):
    seen = []

    class Broken(Observer):
        def round(self, result):
            raise OSError("disk full")

        def close(self, status):
            seen.append(("broken closed", status))

    class Fine(Observer):
        def round(self, result):
            seen.append(result)

        def close(self, status):
            seen.append(("fine closed", status))

    watchers = Observers([Broken(), Fine()])
    watchers.round(1)
    watchers.round(2)
    watchers.close("complete")
    assert seen == [("broken closed", "failed"), 1, 2, ("fine closed", "complete")]
    assert capsys.readouterr().err.splitlines() == [
        "fedarena: warning: the Broken observer failed and is left out of the rest of the run: OSError: disk full"]


@pytest.mark.e2e
def test_a_run_writes_its_rounds_to_tensorboard_as_in_the_results_file(tmp_path, write_scenario, capsys):
    out, board = tmp_path / "out.h5", tmp_path / "board"
    path = write_scenario(detected(out))
    assert cli.main(["run", str(path), "--tensorboard", str(board), "--progress", "none"]) == 0
    assert capsys.readouterr().err.startswith("fedarena: backend")  # --progress none: nothing else before
    found = events(board)
    with h5py.File(out, "r") as f:
        rounds = f["metrics/round"][()].tolist()
        metrics = {name: f[f"metrics/{name}"][()] for name in f["metrics"] if name != "round"}
        norms, malicious = f["clients/update_norm"][()], f["clients/malicious"][()].astype(bool)
        kept, shares = f["clients/kept"][()].astype(bool), f["clients/aggregation_weight"][()]
    assert rounds == [1, 2, 3] and metrics
    for name, values in metrics.items():
        entry = found[f"metrics/{name}"]
        assert entry["plugin"] == "scalars" and sorted(entry["steps"]) == rounds
        np.testing.assert_allclose([entry["steps"][r] for r in rounds], values, rtol=1e-6, equal_nan=True)
    for number in rounds:
        row = number - 1
        assert found["clients/update_norm_benign_mean"]["steps"][number] == pytest.approx(
            norms[row][~malicious[row]].mean(), rel=1e-6)
        assert found["clients/update_norm_malicious_mean"]["steps"][number] == pytest.approx(
            norms[row][malicious[row]].mean(), rel=1e-6)
        assert found["clients/kept"]["steps"][number] == kept[row].sum()
        assert found["clients/dropped"]["steps"][number] == (~kept[row]).sum()
        # A histogram is [buckets, 3]: left edge, right edge, count: it counts every client.
        for tag in ("clients/update_norm", "clients/aggregation_weight", "detectors/0_norm_outlier/score"):
            assert found[tag]["plugin"] == "histograms", tag
            assert found[tag]["steps"][number][:, 2].sum() == pytest.approx(len(norms[row])), tag
        low, high = found["clients/update_norm"]["steps"][number][[0, -1], [0, 1]]
        assert low == pytest.approx(norms[row].min(), rel=1e-5) and high == pytest.approx(norms[row].max(), rel=1e-5)
    assert shares.shape == norms.shape
    assert {"seconds/client", "detection/true_positives"} <= set(found)


@pytest.mark.e2e
def test_a_sweep_on_two_jobs_writes_one_folder_per_point_and_says_so_in_lines(tmp_path, write_scenario):
    """Each --jobs child writes its points' files; the parent prints a
    line as each point starts and ends (no terminal: lines)."""
    out, board = tmp_path / "sweep.h5", tmp_path / "board"
    text = tiny_scenario(out, rounds=2) + "\nsweep {\n  seed in [1, 2]\n}\n"
    path = write_scenario(text)
    result = run_fedarena("run", path, "--jobs", "2", "--tensorboard", board)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("starting: starting 2 processes for the points")
    assert {"[1/2] seed=1: started", "[2/2] seed=2: started"} <= set(lines)
    ended = [line for line in lines if ": complete  test_accuracy " in line]
    assert len(ended) == 2 and all("(elapsed " in line and ", eta " in line for line in ended)
    assert sorted(p.name for p in board.iterdir()) == ["000_seed=1", "001_seed=2"]
    with h5py.File(out, "r") as f:
        for index, folder in enumerate(sorted(board.iterdir())):
            accuracy = f[f"runs/{index:04d}/metrics/test_accuracy"][()]
            steps = events(folder)["metrics/test_accuracy"]["steps"]
            np.testing.assert_allclose([steps[1], steps[2]], accuracy, rtol=1e-6)


class Exploding:
    """An aggregator that averages, but fails inside the TFF computation in round 2."""

    @staticmethod
    def plugin():
        import attrs
        import tensorflow as tf

        from fedarena import hookimpl
        from fedarena.core.plugin.interfaces import Aggregator

        @attrs.frozen
        class Exploding(Aggregator):
            def aggregate(self, updates, weights, ctx):
                with tf.control_dependencies([tf.debugging.assert_less(ctx.round, 2, message="boom")]):
                    share = weights / tf.reduce_sum(weights)
                    return tf.linalg.matvec(updates, share, transpose_a=True), share

        class Plugin:
            @staticmethod
            @hookimpl
            def fedarena_register_aggregators(registry):
                registry.add("exploding", Exploding)

        return Plugin


@pytest.mark.e2e
def test_a_failing_run_closes_its_observers_with_the_rounds_it_did(tmp_path):
    from fedarena.core.errors import RunError
    from fedarena.core.execution.observers import TensorBoard
    from fedarena.core.execution.progress import Progress
    from fedarena.core.execution.runner import run_scenario
    from fedarena.core.language.parser import parse
    from fedarena.core.plugin.registry import build_registry
    from fedarena.core.scenario.sweep import check

    class Recording(Observer):
        def __init__(self):
            self.calls = []

        def start(self, scenario, registry, info):
            self.calls.append(("start", info.output))

        def round(self, result):
            self.calls.append(("round", result.round))

        def close(self, status):
            self.calls.append(("close", status))

    registry = build_registry(extra_plugins=(("exploding", Exploding.plugin()),))
    out, board = tmp_path / "out.h5", tmp_path / "board"
    scenario = check(parse(tiny_scenario(out, aggregator="exploding"), "t.fls"), registry)
    recording, tensorboard = Recording(), TensorBoard(board)
    with pytest.raises(RunError, match="boom"):
        run_scenario(scenario, registry, progress=Progress(3, mode="none"), backend="local",
                     observers=[recording, tensorboard])
    assert recording.calls == [("start", str(out)), ("round", 1), ("close", "failed")]
    assert tensorboard._writer is None  # closed
    assert sorted(events(board)["metrics/test_accuracy"]["steps"]) == [1]
