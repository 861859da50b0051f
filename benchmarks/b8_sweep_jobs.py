"""B8: a 12-point sweep with ``fedarena run --jobs 2`` against ``--jobs 1``.

Only where ``fedarena run --help`` offers ``--jobs``; otherwise B8 reports
that it was skipped.  The sweep: a small synthetic scenario (10 clients x 100
samples of 64 features, MLP 64-32-4, 3 rounds) over ``seed in 1..12``.  Each
configuration is one ``fedarena run`` command timed from start to exit,
the two alternating.  With ``--jobs 1`` the points run one after another in
one process on one TFF worker; with ``--jobs 2`` two points run at a time,
each in its own process with its own worker.  One point run alone in its
own process (``--point 0``) is timed too: what each child costs.  No target
was given (the ratio below 1 means ``--jobs 2`` is faster).
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
scenario "B8 sweep" {
  rounds 3
  dataset synthetic(samples = 1250, features = 64, classes = 4)
  split iid over 10 clients
  model mlp(hidden = [32])
  training {
    clients_per_round 10
    batch_size 32
    optimizer sgd(learning_rate = 0.1)
  }
  aggregator fedavg
}

sweep {
  seed in 1..12
}
"""


def fedarena(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "fedarena.core.cli", *args], env=env, capture_output=True, text=True,
                          **kwargs)


def has_jobs() -> bool:
    return "--jobs" in fedarena("run", "--help", timeout=120).stdout


def main(quick: bool = False) -> list[dict]:
    if not has_jobs():
        return [common.result("B8", "sweep --jobs 2/--jobs 1", [float("nan")], None,
                              note="SKIPPED: this fedarena has no 'run --jobs'")]
    repeats = 1  # each command takes minutes: one timing of each per run
    with tempfile.TemporaryDirectory(prefix="fedarena-b8-") as directory:
        scenario = Path(directory) / "sweep.fls"
        scenario.write_text(SWEEP)
        times: dict[int, list[float]] = {1: [], 2: []}
        for i in range(repeats):
            for jobs in ((1, 2) if i % 2 == 0 else (2, 1)):
                output = Path(directory) / f"sweep-{jobs}.h5"
                started = time.perf_counter()
                done = fedarena("run", str(scenario), "--jobs", str(jobs), "--force", "--progress", "none",
                                "-o", str(output), timeout=900)
                times[jobs].append(time.perf_counter() - started)
                if done.returncode != 0:
                    raise RuntimeError(f"fedarena run --jobs {jobs} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        # What one --jobs child costs: a single point run alone, as the children are.
        started = time.perf_counter()
        done = fedarena("run", str(scenario), "--point", "0", "--force", "--progress", "none",
                        "-o", str(Path(directory) / "point.h5"), timeout=600)
        one_point = time.perf_counter() - started if done.returncode == 0 else float("nan")
    ratios = [b / a for a, b in zip(times[1], times[2])]
    return [common.result("B8", "sweep --jobs 2/--jobs 1", ratios, None, jobs1_s=common.summary(times[1]),
                          jobs2_s=common.summary(times[2]),
                          one_point_process_s=one_point,
                          note=f"12 points: --jobs 1 {common.fmt_seconds(times[1])}, --jobs 2 {common.fmt_seconds(times[2])}; "
                               f"one point alone in its own process (as each --jobs child runs) {one_point:.1f} s")]


if __name__ == "__main__":
    common.emit(main(common.quick_flag()))
