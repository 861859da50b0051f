"""The results file under faults (docs/reliability.md): a reader holding it
open, SIGKILL in the middle of a round's write, a full disk, two runs on
one output, ``--force``, and the sweep summary after ``--resume``."""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import h5py
import numpy as np
import pytest

from conftest import REPO, fedarena_command, run_fedarena, tiny_scenario
from fedarena.core.cli import main as cli
from fedarena.core.errors import RunError, UsageError
from fedarena.core.results import reader, writer as writer_module
from fedarena.core.results.writer import ResultsWriter, SweepFile

HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------
# A stand-in for a scenario and its rounds, so the writer runs without TFF.


@attrs.frozen
class FakeScenario:
    source: str = "scenario fake"
    filename: str = "fake.fls"
    title: str = "fake"
    seed: int = 1
    rounds: int = 10**6
    attacks: tuple = ()

    def plugins(self):
        return ()


@attrs.frozen
class FakeRound:
    round: int
    weights: np.ndarray
    state: dict
    clients: dict
    metrics: dict
    seconds: dict
    detection: dict


def fake_round(r: int, size: int = 10) -> FakeRound:
    """Round ``r``: every number in it is ``r``; evaluated on even rounds."""
    return FakeRound(
        round=r,
        weights=np.full(size, r, np.float32),
        state={"aggregator": {"history": np.full(64, r, np.float64)}},
        clients={"id": np.full(4, r, np.int64), "update_norm": np.full(4, r, np.float32)},
        metrics={"test_accuracy": float(r)} if r % 2 == 0 else {},
        seconds={"client": float(r)},
        detection={"true_positives": r},
    )


def start_fake(path, size: int = 10, **kwargs) -> ResultsWriter:
    writer = ResultsWriter(path, **kwargs)
    writer.start(FakeScenario(), None, np.ones((6, 3), np.int64), np.full(6, -1))
    return writer


def check_consistent(path, size: int) -> int:
    """Resume the file as `fedarena run --resume` would and check that its
    checkpoint and every per-round dataset are those of round
    ``rounds_done``; returns it."""
    resumed = ResultsWriter(path, resume=True)
    checkpoint = resumed.resume(FakeScenario())
    resumed.close()
    reader.load_runs(path)  # the file reads whole
    done = checkpoint.rounds_done
    if done:
        assert checkpoint.weights.shape == (size,) and (checkpoint.weights == done).all(), \
            (done, np.unique(checkpoint.weights))
        assert (checkpoint.state["aggregator"]["history"] == done).all()
    assert checkpoint.detection_totals.get("true_positives", 0) == done * (done + 1) // 2
    with reader.open_results(path) as f:
        assert f.attrs["rounds_done"] == done
        if done:
            assert f["model"].attrs["round"] == done
        rounds = np.arange(1, done + 1)
        clients = reader.clients(f)
        for name in ("id", "update_norm"):
            assert clients.get(name, np.zeros((0, 4))).shape == (done, 4), name
            assert (clients.get(name, np.zeros((0, 4))) == rounds[:, None]).all(), name
        for part in (reader.timing(f), reader.detection(f)):
            for name, values in part.items():
                assert values.tolist() == rounds.tolist(), name
        metrics = reader.metrics(f)
        evaluated = [r for r in rounds if r % 2 == 0]
        assert metrics.get("round", np.zeros(0)).tolist() == evaluated
        assert metrics.get("test_accuracy", np.zeros(0)).tolist() == evaluated
    return done


# --------------------------------------------------------------------------
# 1. A reader holding the file open does not stop the run.

HOLD = """\
import sys, time, h5py
while True:
    try:
        f = h5py.File(sys.argv[1], "r")  # h5py's default: HDF5's file lock
        done = int(f.attrs["rounds_done"])
        break
    except (OSError, KeyError):
        time.sleep(0.01)
print(done, flush=True)
sys.stdin.read()  # hold the file open until told
"""


def test_a_reader_holding_the_file_open_does_not_stop_the_run(tmp_path, write_scenario):
    out = tmp_path / "out.h5"
    rounds = 60
    path = write_scenario(tiny_scenario(out, rounds=rounds))
    env = {k: v for k, v in os.environ.items() if k != "HDF5_USE_FILE_LOCKING"}
    run = subprocess.Popen(fedarena_command("run", path, "--progress", "none"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=dict(env, TF_CPP_MIN_LOG_LEVEL="3"))
    deadline = time.monotonic() + 240
    while not out.exists():
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
        time.sleep(0.05)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        seen = int(holder.stdout.readline())
        code = run.wait(300)
        stderr = run.stderr.read()
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert seen < rounds  # the run went on writing while the file was held
    with reader.open_results(out) as f:
        assert f.attrs["status"] == "complete" and f.attrs["rounds_done"] == rounds


def test_the_writer_opens_past_a_reader_that_holds_the_lock(tmp_path):
    out = tmp_path / "out.h5"
    writer = start_fake(out)
    writer.write_round(fake_round(1))
    env = {k: v for k, v in os.environ.items() if k != "HDF5_USE_FILE_LOCKING"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "1"
        for r in range(2, 5):
            writer.write_round(fake_round(r))
        writer.finish("complete")
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert check_consistent_complete(out) == 4


def check_consistent_complete(path) -> int:
    with reader.open_results(path) as f:
        assert f.attrs["status"] == "complete"
        assert "checkpoint/next" not in f  # only what resuming needs stays
        return int(f.attrs["rounds_done"])


# --------------------------------------------------------------------------
# 2. SIGKILL at any point of a round's write leaves a consistent file.

BIG = 1_500_000  # parameters, as in the model that showed the bug

CHILD = """\
import sys
sys.path[:0] = [{tests!r}, {here!r}]
from test_writer_faults import FakeScenario, ResultsWriter, fake_round, start_fake
path, size = sys.argv[1], int(sys.argv[2])
try:
    writer = ResultsWriter(path, resume=True)
    first = writer.resume(FakeScenario()).rounds_done + 1
except Exception:  # no file yet
    writer.close()
    writer, first = start_fake(path, size), 1
print("go", flush=True)
for r in range(first, 10**6):
    writer.write_round(fake_round(r, size))
"""


def test_sigkill_at_any_point_of_a_round_leaves_a_consistent_checkpoint(tmp_path):
    out = tmp_path / "out.h5"
    child = CHILD.format(tests=str(HERE.parent), here=str(HERE))
    rng = random.Random(0)
    done, kills = 0, 0
    started = time.monotonic()
    while kills < 25 or done < 10:
        process = subprocess.Popen([sys.executable, "-c", child, str(out), str(BIG)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert process.stdout.readline() == "go\n", process.stderr.read()
        time.sleep(rng.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        kills += 1
        now = check_consistent(out, BIG)
        assert now >= done  # nothing committed is ever lost
        done = now
        assert time.monotonic() - started < 240
    assert done >= 10


def test_a_round_cut_short_after_it_was_staged_is_finished_on_resume(tmp_path):
    """The commit's second half (copying the staged round into place) is
    finished by `recover`: here the copy is stopped half-way on purpose."""
    out = tmp_path / "out.h5"
    writer = start_fake(out)
    for r in (1, 2):
        writer.write_round(fake_round(r))
    writer.close()
    with h5py.File(out, "a") as f:  # round 3 staged and marked, then the copy stops after the rows
        staged = f["checkpoint/next"]
        writer_module._stage(staged, writer_module._round_records(fake_round(3)), fake_round(3))
        staged.attrs.modify("round", 3)
        for name, dataset in staged["clients"].items():
            writer_module._put_row(f["clients"], name, dataset[()], 2)
        f["model/weights"][:5] = 3  # half the model
    assert check_consistent(out, 10) == 3


# --------------------------------------------------------------------------
# 3. A write failure stops the run at once, keeping every completed round.


def fill_the_disk_from_round(monkeypatch, first: int) -> None:
    """From round ``first`` on, the results file cannot grow: the process's
    file-size limit (RLIMIT_FSIZE) is its size while the round is written,
    so the kernel refuses any write past it (EFBIG), as a full disk would
    (ENOSPC)."""
    write_round = ResultsWriter.write_round
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def failing_write_round(self, result):
        if result.round < first:
            return write_round(self, result)
        ignored = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of ending the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(self.location), hard))
        try:
            return write_round(self, result)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, ignored)

    monkeypatch.setattr(ResultsWriter, "write_round", failing_write_round)


FULL = "File too large"


@pytest.mark.e2e  # runs scenarios in this process (cli.main)
def test_a_full_disk_stops_the_run_at_once_and_keeps_the_completed_rounds(
    tmp_path, write_scenario, monkeypatch, capsys
):
    out = tmp_path / "out.h5"
    path = write_scenario(tiny_scenario(out, rounds=6))
    with monkeypatch.context() as patch:
        fill_the_disk_from_round(patch, 4)
        assert cli.main(["run", str(path), "--progress", "none", "--backend", "local"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert line.startswith(f"error: cannot write the results file {out}: ")
    assert FULL in line and line.endswith("; every completed round up to 3 is kept")
    with reader.open_results(out) as f:  # readable, with rounds 1-3, and still resumable
        assert f.attrs["status"] == "running" and f.attrs["rounds_done"] == 3
        assert reader.clients(f)["id"].shape[0] == 3 and reader.timing(f)["round"].tolist() == [1, 2, 3]
    assert not Path(f"{out}.lock").exists()
    assert cli.main(["run", str(path), "--progress", "none", "--backend", "local", "--resume"]) == 0
    with reader.open_results(out) as f:
        assert f.attrs["status"] == "complete" and f.attrs["rounds_done"] == 6
        assert reader.metrics(f)["round"].tolist() == [1, 2, 3, 4, 5, 6]

    # With --force over an existing file, a failure before the first round is written leaves the old file.
    before = out.read_bytes()
    with monkeypatch.context() as patch:
        fill_the_disk_from_round(patch, 1)
        assert cli.main(["run", str(path), "--progress", "none", "--backend", "local", "--force"]) == 1
    err = capsys.readouterr().err
    assert f"error: cannot write the results file {out}: " in err and f"; {out} is left as it was" in err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5", "scenario.fls"]


def test_a_write_failure_is_a_run_error_and_the_file_is_not_touched_again(tmp_path, monkeypatch):
    out = tmp_path / "out.h5"
    writer = start_fake(out)
    writer.write_round(fake_round(1))
    fill_the_disk_from_round(monkeypatch, 2)
    with pytest.raises(RunError, match=rf"{FULL}; every completed round up to 1 is kept$"):
        writer.write_round(fake_round(2))
    monkeypatch.undo()
    with pytest.raises(RunError, match="an earlier write failed"):
        writer.write_round(fake_round(3))
    writer.finish("failed", "round 2: disk full")
    assert check_consistent(out, 10) == 1


# --------------------------------------------------------------------------
# 4. One run per output; --force replaces the old file atomically.

CLAIM = """\
import sys
sys.path[:0] = [{tests!r}, {here!r}]
from fedarena.core.results.writer import ResultsWriter
writer = ResultsWriter(sys.argv[1])
print("claimed", flush=True)
sys.stdin.read()
writer.close()
"""


def test_a_second_run_on_the_same_output_is_refused_naming_the_first(tmp_path, write_scenario):
    out = tmp_path / "out.h5"
    path = write_scenario(tiny_scenario(out, rounds=1))
    first = subprocess.Popen([sys.executable, "-c", CLAIM.format(tests=str(HERE.parent), here=str(HERE)), str(out)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "claimed\n"
        for flags in ((), ("--force",)):
            second = run_fedarena("run", path, *flags)
            assert second.returncode == 2
            assert second.stderr.strip() == (f"error: {out} is being written by another fedarena run "
                                             f"(pid {first.pid}); wait for it to end, or choose another output")
        assert not out.exists()
    finally:
        first.stdin.close()
        first.wait(30)
    assert not Path(f"{out}.lock").exists()


def test_the_claim_is_exclusive_released_at_the_end_and_taken_over_from_a_dead_run(tmp_path):
    out = tmp_path / "out.h5"
    writer = start_fake(out)
    with pytest.raises(UsageError, match=rf"being written by another fedarena run \(pid {os.getpid()}\)"):
        ResultsWriter(out, resume=True)
    writer.write_round(fake_round(1))
    writer.finish("interrupted")
    assert not Path(f"{out}.lock").exists()
    Path(f"{out}.lock").write_text("999999999\n")  # left by a run that was killed
    resumed = ResultsWriter(out, resume=True)
    assert resumed.resume(FakeScenario()).rounds_done == 1
    resumed.finish("interrupted")
    with pytest.raises(UsageError, match="already exists; pass --force"):
        ResultsWriter(out)


def test_force_replaces_the_old_file_only_once_the_new_run_has_a_round(tmp_path):
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    writer = start_fake(out, force=True)
    assert out.read_bytes() == b"precious"  # the new run writes beside it ...
    writer.write_round(fake_round(1))  # ... and replaces it with its first round
    assert not Path(f"{out}.new").exists()
    writer.write_round(fake_round(2))
    writer.finish("complete")
    assert check_consistent_complete(out) == 2
    before = out.read_bytes()
    failing = start_fake(out, force=True)  # a new run that fails before its first round
    failing.finish("failed", "preparing the run failed")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]

    sweep_out = tmp_path / "sweep.h5"
    sweep_out.write_bytes(b"precious sweep")
    sweep = SweepFile(sweep_out, force=True)
    sweep.start("sweep text", "title", ["a", "b"], [{}, {}])
    sweep.mark(0, "running")
    assert sweep_out.read_bytes() == b"precious sweep"
    sweep.mark(0, "complete")  # the first point has ended: the new sweep replaces the old file
    sweep.finish("complete")
    with reader.open_results(sweep_out) as f:
        assert reader.point_statuses(f) == ["complete", "pending"]


# --------------------------------------------------------------------------
# 5. The sweep summary counts the whole file.


@pytest.mark.e2e  # runs scenarios in this process (cli.main)
def test_the_sweep_summary_after_resume_counts_the_whole_file(tmp_path, write_scenario, capsys):
    out = tmp_path / "sweep.h5"
    path = write_scenario(tiny_scenario(out, rounds=2) + "\nsweep {\n  seed in [1, 2, 3]\n}\n")
    command = ["run", str(path), "--progress", "none", "--backend", "local"]
    assert cli.main(command) == 0
    assert capsys.readouterr().out.strip().endswith(f"sweep of 3 runs, 3 complete now, 0 failed; results written "
                                                    f"to {out}")
    with h5py.File(out, "a") as f:  # as if point 1 had failed
        f["index/status"][1] = "failed"
        f.attrs["status"] = "failed"
    assert cli.main([*command, "--resume"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"sweep of 3 runs, 3 complete now, 0 failed; results written "
                                                    f"to {out}")
