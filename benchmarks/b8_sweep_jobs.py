"""B8: a 12-point sweep with ``fedarena run --jobs 2`` against ``--jobs 1``.

Only where ``fedarena run --help`` offers ``--jobs``; otherwise B8 reports
that it was skipped.  The sweep: a small synthetic scenario (10 clients, 64
features, MLP 64-32-4) over ``seed in 1..12``, once with short points (3
rounds, 100 samples a client) and once with longer ones (20 rounds, 400
samples a client; not with ``--quick``): the children's start-up is a fixed
cost that longer points repay.  Each
configuration is one ``fedarena run`` command timed from start to exit.
With ``--jobs 1`` the points run one after another in
one process on one TFF worker; with ``--jobs 2`` two long-lived child
processes, each with its own worker, take the next waiting point as they
free up.  One point run alone in its own process (``--point 0``) is timed
too: the start-up that each child pays once.  No target was given (the
ratio below 1 means ``--jobs 2`` is faster).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

SWEEP = """\
scenario "B8 sweep" {{
  rounds {rounds}
  dataset synthetic(samples = {samples}, features = 64, classes = 4)
  split iid over 10 clients
  model mlp(hidden = [32])
  training {{
    clients_per_round 10
    batch_size 32
    optimizer sgd(learning_rate = 0.1)
  }}
  aggregator fedavg
}}

sweep {{
  seed in 1..12
}}
"""


def fedarena(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "fedarena.core.cli.main", *args], env=env, capture_output=True, text=True,
                          **kwargs)


def has_jobs() -> bool:
    return "--jobs" in fedarena("run", "--help", timeout=120).stdout


def sweep_times(directory: Path, rounds: int, samples: int) -> dict[int, float]:
    """Wall time of the 12-point sweep with --jobs 1 and --jobs 2."""
    scenario = directory / f"sweep{rounds}.fls"
    scenario.write_text(SWEEP.format(rounds=rounds, samples=samples))
    times = {}
    for jobs in (1, 2):
        started = time.perf_counter()
        done = fedarena("run", str(scenario), "--jobs", str(jobs), "--force", "--progress", "none",
                        "-o", str(directory / f"sweep{rounds}-{jobs}.h5"), timeout=900)
        times[jobs] = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"fedarena run --jobs {jobs} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return times


def main(quick: bool = False) -> list[dict]:
    if not has_jobs():
        return [common.result("B8", "sweep --jobs 2/--jobs 1", [float("nan")], None,
                              note="SKIPPED: this fedarena has no 'run --jobs'")]
    results = []
    with tempfile.TemporaryDirectory(prefix="fedarena-b8-") as directory:
        directory = Path(directory)
        # What each --jobs child pays once: a single point run alone in its own process.
        (directory / "one.fls").write_text(SWEEP.format(rounds=3, samples=1250))
        started = time.perf_counter()
        done = fedarena("run", str(directory / "one.fls"), "--point", "0", "--force", "--progress", "none",
                        "-o", str(directory / "point.h5"), timeout=600)
        one_point = time.perf_counter() - started if done.returncode == 0 else float("nan")
        for rounds, samples in ((3, 1250),) if quick else ((3, 1250), (20, 5000)):
            times = sweep_times(directory, rounds, samples)
            results.append(common.result(
                "B8", f"sweep --jobs 2/--jobs 1, {rounds} rounds", [times[2] / times[1]], None,
                jobs1_s=times[1], jobs2_s=times[2], one_point_process_s=one_point,
                note=f"12 points of {rounds} rounds on {samples} samples: --jobs 1 {times[1]:.1f} s, --jobs 2 {times[2]:.1f} s "
                     f"(speedup {times[1] / times[2]:.2f}x); one 3-round point alone in its own process "
                     f"(a child's start-up plus one point) {one_point:.1f} s"))
    return results


if __name__ == "__main__":
    common.emit(main(common.quick_flag()))
