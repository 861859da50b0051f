"""What a run shows while it goes (`fedarena.core.execution.progress`):
a bar on a terminal, plain lines in logs, nothing with ``--progress none``;
start-up phases before round 1; sweep points as they start and end."""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import time
from types import SimpleNamespace

import h5py
import pytest

from fedarena.core.cli import main as cli
from fedarena.core.execution.progress import Progress, SweepProgress, duration, resolve_mode

from conftest import run_fedarena, tiny_scenario


class Stream(io.StringIO):
    """A stderr stand-in that says whether it is a terminal and counts flushes."""

    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty
        self.flushes = 0

    def isatty(self) -> bool:
        return self.tty

    def flush(self) -> None:
        self.flushes += 1


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def width(monkeypatch):
    def set_width(columns: int) -> None:
        monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(80, 24): os.terminal_size((columns, 24)))

    set_width(60)
    return set_width


def result(number: int, **metrics) -> SimpleNamespace:
    return SimpleNamespace(round=number, metrics=metrics)


def frames(text: str) -> list[str]:
    """What a terminal shows, frame by frame: each redraw starts with \\r."""
    return [frame.rstrip(" ") for line in text.split("\n") for frame in line.split("\r") if frame.strip()]


def test_auto_is_a_bar_on_a_terminal_and_lines_otherwise():
    assert resolve_mode("auto", Stream(tty=True)) == "bar"
    assert resolve_mode("auto", Stream(tty=False)) == "lines"
    assert resolve_mode("none", Stream(tty=True)) == "none"
    # The older switch keeps its meaning: a bar on a terminal, nothing otherwise.
    assert Progress(3, Stream(tty=False)).mode == "none"
    assert Progress(3, Stream(tty=True)).mode == "bar"
    assert Progress(3, Stream(tty=False), enabled=True).mode == "bar"
    with pytest.raises(ValueError, match="progress mode"):
        resolve_mode("loud", Stream(tty=True))


def test_durations_read_like_a_clock():
    assert [duration(s) for s in (0.04, 14.24, 59.9, 72, 185, 3600 * 2 + 7 * 60 + 20)] == [
        "0.0 s", "14.2 s", "59.9 s", "1m12s", "3m05s", "2h07m"]


def test_the_bar_fits_the_terminal_and_has_an_eta(width):
    stream, clock = Stream(tty=True), Clock()
    progress = Progress(200, mode="auto", stream=stream, clock=clock, tick=None)
    many = {f"test_metric_{i}": 0.5 + i / 100 for i in range(12)}
    for number in range(1, 13):
        clock.now += 30.0 if number == 1 else 1.5  # the first round also builds the graph
        progress.update(result(number, **many))
    shown = frames(stream.getvalue())
    assert len(shown) == 12
    assert all(len(frame) < 60 for frame in shown)  # cut to the width, never wrapped
    assert "\n" not in stream.getvalue()  # redrawn in place
    assert shown[0].startswith("round 1/200 [") and "eta --" in shown[0]  # one round: no honest ETA yet
    # 11 rounds of 1.5 s since the first, 188 to go: the mean of the recent ones.
    # The bar shrinks to leave room for a metric; metrics are shown whole or not at all.
    assert re.fullmatch(r"round 12/200 \[\.{5,}\] 46\.5 s, eta 4m42s  metric_0 0\.5000", shown[-1]), shown[-1]
    width(400)
    progress.update(result(13, test_accuracy=0.25))
    wide = frames(stream.getvalue())[-1]
    assert "metric_11 0.6100" in wide and "accuracy 0.2500" in wide and len(wide) < 400
    assert wide.startswith("round 13/200 [#...................] ")
    progress.close()
    assert stream.getvalue().endswith("\n")  # the last bar stays, the next output goes below it


def test_the_spinner_says_what_happens_during_start_up_then_clears(width):
    stream = Stream(tty=True)
    progress = Progress(5, mode="bar", stream=stream, tick=0.01)
    for phase in ("importing TensorFlow", "loading data", "round 1 (first call builds the graph)"):
        progress.phase(phase)
        time.sleep(0.1)
    assert progress._thread is not None and progress._thread.daemon
    spun = [frame for frame in frames(stream.getvalue()) if "importing TensorFlow" in frame]
    assert len({frame[0] for frame in spun}) > 1  # it turns while the phase lasts
    assert all(len(frame) < 60 for frame in frames(stream.getvalue()))
    progress.close()  # failed before round 1: the spinner's line is cleared
    assert progress._thread is None
    assert stream.getvalue().endswith("\r") and "\n" not in stream.getvalue()
    text = stream.getvalue()
    order = [text.index(p) for p in ("importing TensorFlow", "loading data", "round 1 (first call")]
    assert order == sorted(order)


def test_other_output_on_stderr_clears_the_bar_first(width, monkeypatch):
    stream = Stream(tty=True)
    monkeypatch.setattr(sys, "stderr", stream)
    progress = Progress(5, mode="bar", tick=None)
    progress.phase("starting the TFF worker")
    assert sys.stderr is not stream  # guarded while the line is shown
    print("fedarena: backend worker: somewhere", file=sys.stderr)
    progress.update(result(1, test_accuracy=0.5))
    progress.close()
    assert sys.stderr is stream
    lines = stream.getvalue().split("\n")
    # The message is alone on its line: the spinner was wiped (spaces) before it.
    assert lines[0].split("\r")[-1] == "fedarena: backend worker: somewhere"
    assert lines[0].split("\r")[-2].strip() == ""
    assert frames(lines[1])[-1].startswith("round 1/5")


def test_lines_print_one_flushed_line_per_round_with_eta(width):
    stream, clock = Stream(tty=False), Clock()
    progress = Progress(4, mode="auto", stream=stream, clock=clock)
    progress.phase("importing TensorFlow")
    progress.phase("round 1 (first call builds the graph)")
    flushes = stream.flushes
    for number in range(1, 5):
        clock.now += 10.0 if number == 1 else 2.0
        progress.update(result(number, **({"test_accuracy": 0.9132, "detection_recall": 0.0} if number % 2 == 0
                                          else {})))
        assert stream.flushes > flushes
        flushes = stream.flushes
    progress.hidden = ("detection_",)
    progress.close()
    assert stream.getvalue().splitlines() == [
        "starting: importing TensorFlow",
        "starting: round 1 (first call builds the graph)",
        "round 1/4  elapsed 10.0 s  eta --",
        "round 2/4  test_accuracy 0.9132  detection_recall 0.0000  elapsed 12.0 s  eta 4.0 s",
        "round 3/4  test_accuracy 0.9132  detection_recall 0.0000  elapsed 14.0 s  eta 2.0 s",
        "round 4/4  test_accuracy 0.9132  detection_recall 0.0000  elapsed 16.0 s  eta 0.0 s",
    ]
    assert "\r" not in stream.getvalue()


def test_lines_of_a_long_run_come_every_n_rounds_first_and_last_always():
    stream = Stream(tty=False)
    progress = Progress(1000, mode="lines", stream=stream)
    for number in range(1, 1001):
        progress.update(result(number, test_accuracy=number / 1000))
    progress.close()
    rounds = [int(re.match(r"round (\d+)/1000", line)[1]) for line in stream.getvalue().splitlines()]
    assert rounds[0] == 1 and rounds[-1] == 1000 and len(rounds) <= 101
    assert rounds[1:] == list(range(10, 1001, 10))


def test_lines_of_a_run_that_stopped_early_end_with_its_last_round():
    stream = Stream(tty=False)
    progress = Progress(1000, mode="lines", stream=stream, every=10)
    for number in range(1, 16):
        progress.update(result(number))
    progress.close()
    progress.close()
    assert [line.split("  ")[0] for line in stream.getvalue().splitlines()] == [
        "round 1/1000", "round 10/1000", "round 15/1000"]


def test_none_prints_nothing(width):
    stream = Stream(tty=True)
    progress = Progress(3, mode="none", stream=stream)
    progress.phase("importing TensorFlow")
    progress.update(result(1, test_accuracy=0.5))
    progress.close()
    assert stream.getvalue() == "" and progress.phases == ["importing TensorFlow"]


def outcome(index, status="complete", message="", **final):
    return SimpleNamespace(index=index, status=status, message=message, final=final)


def test_sweep_lines_say_when_each_point_starts_and_ends_with_the_sweeps_eta():
    stream, clock = Stream(tty=False), Clock()
    labels = ["aggregator=fedavg, seed=1", "aggregator=krum, seed=2", "aggregator=median, seed=3"]
    sweep = SweepProgress(labels, stream, mode="auto", clock=clock)
    sweep.phase("starting 2 processes for the points")
    clock.now += 20.0  # start-up: not counted as a point's time in the ETA
    sweep.started_point(0)
    sweep.started_point(1)
    clock.now += 72.0
    sweep.ended(outcome(1, test_loss=0.3, test_accuracy=0.91))
    sweep.started_point(2)
    clock.now += 30.0
    sweep.ended(outcome(0, "failed", "the aggregator 'krum' failed: boom"))
    point = sweep.point(2, rounds=3)  # a point in this process shows no round lines: its sweep reports it
    point.phase("loading data")
    point.update(result(1, test_accuracy=0.5))
    point.close()
    sweep.ended(outcome(2, test_loss=0.2))
    sweep.close()
    assert stream.getvalue().splitlines() == [
        "starting: starting 2 processes for the points",
        "[1/3] aggregator=fedavg, seed=1: started",
        "[2/3] aggregator=krum, seed=2: started",
        "[2/3] aggregator=krum, seed=2: complete  test_accuracy 0.9100  (elapsed 1m32s, eta 2m24s)",
        "[3/3] aggregator=median, seed=3: started",
        "[1/3] aggregator=fedavg, seed=1: failed: the aggregator 'krum' failed: boom  (elapsed 2m02s, eta 30.0 s)",
        "[3/3] aggregator=median, seed=3: complete  test_loss 0.2000  (elapsed 2m02s, eta 0.0 s)",
    ]


def test_a_sweep_on_a_terminal_shows_its_points_bars_and_keeps_their_ends(width):
    stream = Stream(tty=True)
    sweep = SweepProgress(["seed=1", "seed=2"], stream, mode="auto", tick=None)
    sweep.started_point(0)
    point = sweep.point(0, rounds=2)
    point.phase("loading data")
    point.update(result(1, test_accuracy=0.5))
    assert frames(stream.getvalue())[-1].startswith("[1/2] seed=1  round 1/2")
    point.close()
    sweep.ended(outcome(0, test_accuracy=0.5))
    sweep.close()
    ends = [line.split("\r")[-1] for line in stream.getvalue().split("\n") if line.split("\r")[-1].strip()]
    assert len(ends) == 1 and ends[0].startswith("[1/2] seed=1: complete  test_accuracy 0.5000  (elapsed ")
    # The transient lines fit; the permanent ones are printed whole (a terminal may wrap them).
    assert all(len(frame) < 60 for frame in frames(stream.getvalue()) if frame not in ends)


# --- the command, end to end --------------------------------------------------


@pytest.mark.e2e
def test_a_run_in_lines_mode_prints_its_start_up_and_every_round(tmp_path, write_scenario, capsys):
    out = tmp_path / "out.h5"
    path = write_scenario(tiny_scenario(out, rounds=3))
    assert cli.main(["run", str(path), "--progress", "lines"]) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    starting = [line.removeprefix("starting: ") for line in err if line.startswith("starting: ")]
    # TensorFlow's import is announced unless an earlier test of this process did it already.
    expected = ["loading data", "building the model", "tracing the TFF computations",
                "round 1 (first call builds the graph)"]
    assert starting[-4:] == expected and set(starting[:-4]) <= {"importing TensorFlow",
                                                                 "importing TensorFlow Federated"}
    rounds = [line for line in err if line.startswith("round ")]
    with h5py.File(out, "r") as f:
        accuracy = f["metrics/test_accuracy"][()]
    assert len(rounds) == 3
    for number, line in enumerate(rounds, 1):
        assert re.fullmatch(rf"round {number}/3  test_accuracy {accuracy[number - 1]:.4f}  test_loss \S+  "
                            rf"label_flip_flip_rate \S+  elapsed \S+ s  eta (--|\S+ s)", line), line
    assert "detection_" not in captured.err  # no detector: those only count non-finite updates
    assert err.index("starting: loading data") > next(i for i, line in enumerate(err) if "backend" in line)
    assert "\r" not in captured.err
    assert captured.out.startswith("tiny: 3 rounds complete; test_accuracy")


@pytest.mark.e2e
def test_a_fresh_command_announces_tensorflow_before_importing_it(tmp_path, write_scenario):
    """The first line comes before the slow import (no terminal: lines)."""
    path = write_scenario(tiny_scenario(tmp_path / "out.h5", rounds=1))
    result = run_fedarena("run", path)
    assert result.returncode == 0, result.stderr
    err = result.stderr.splitlines()
    assert err[:2] == ["starting: importing TensorFlow", "starting: importing TensorFlow Federated"]
    assert [line for line in err if line.startswith("round ")] == [
        line for line in err if re.fullmatch(r"round 1/1  test_accuracy .*  eta 0\.0 s", line)]
