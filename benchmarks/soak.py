"""Soak: a long run's memory, and a large sweep's file and report.

Two checks of issue #18 (a benchmark, not a test: they take minutes):

long   ``fedarena run`` of a 2,000-round scenario on tiny data (digits,
       logistic model, 10 clients, 5 a round).  The resident memory of the
       run's whole process tree is sampled each time ``rounds_done`` passes
       a multiple of 100 (read live from the results file, as
       docs/results.md says).  Target: no growth beyond 10% from the sample
       at round 200 (after warm-up: tracing, first evaluation) to the last.
sweep  ``fedarena run`` of a 1,000-point sweep (``seed in 1..1000``, one
       round each), then the file opened with h5py and by ``fedarena show``,
       and ``fedarena report`` on it timed.  Target: report under 60 s.

    uv run --locked python benchmarks/soak.py [--rounds 2000] [--points 1000] [--only long|sweep]

Prints one line per sample and a final ``VERDICT:`` line per check.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

TINY = """\
scenario "soak" {{
  seed 1
  rounds {rounds}
  dataset digits
  split iid over 10 clients
  model logistic
  training {{
    clients_per_round 5
    local_epochs 1
    batch_size 32
    optimizer sgd(learning_rate = 0.05)
  }}
  aggregator fedavg
  evaluate every {evaluate} rounds
  output "{output}"
}}
{sweep}"""


def fedarena() -> list[str]:
    """The ``fedarena`` command of this interpreter's environment."""
    beside = Path(sys.executable).with_name("fedarena")
    return [str(beside)] if beside.exists() else [shutil.which("fedarena") or "fedarena"]


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MB (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def rounds_done(path: Path) -> int:
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f.attrs.get("rounds_done", 0))
    except (OSError, KeyError):
        return 0


def soak_long(folder: Path, rounds: int) -> bool:
    output = folder / "long.h5"
    scenario = folder / "long.fls"
    scenario.write_text(TINY.format(rounds=rounds, evaluate=100, output=output.name, sweep=""))
    started = time.perf_counter()
    process = subprocess.Popen([*fedarena(), "run", str(scenario)], cwd=folder,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: dict[int, float] = {}
    next_mark = 100
    while process.poll() is None:
        done = rounds_done(output)
        rss = tree_rss_mb(process.pid)
        if done >= next_mark and process.poll() is None and rss > 0:
            mark = (done // 100) * 100
            samples[mark] = rss
            print(f"long: round {done:5d}  tree RSS {samples[mark]:7.1f} MB  ({time.perf_counter() - started:6.1f} s)",
                  flush=True)
            next_mark = mark + 100
        time.sleep(0.2)
    stderr = process.stderr.read()
    if process.returncode != 0:
        print(f"long: the run failed (exit {process.returncode}):\n{stderr}")
        return False
    elapsed = time.perf_counter() - started
    reference = samples.get(200) or samples[min(samples)]
    peak = max(value for mark, value in samples.items() if mark >= 200)
    last = samples[max(samples)]
    growth = last / reference - 1
    peak_growth = peak / reference - 1
    met = peak_growth <= 0.10
    print(f"VERDICT: long {rounds} rounds in {elapsed:.0f} s ({elapsed / rounds * 1000:.1f} ms a round); "
          f"{len(samples)} samples; tree RSS at round 200 {reference:.1f} MB, last {last:.1f} MB ({growth:+.1%}), "
          f"peak after 200 {peak:.1f} MB ({peak_growth:+.1%}); target <= +10%: {'met' if met else 'NOT met'}")
    return met


def soak_sweep(folder: Path, points: int) -> bool:
    output = folder / "sweep.h5"
    scenario = folder / "sweep.fls"
    scenario.write_text(TINY.format(rounds=1, evaluate=1, output=output.name,
                                    sweep=f"sweep {{ seed in 1..{points} }}\n"))
    started = time.perf_counter()
    done = subprocess.run([*fedarena(), "run", str(scenario)], cwd=folder, capture_output=True, text=True)
    ran = time.perf_counter() - started
    if done.returncode != 0:
        print(f"sweep: the run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return False
    print(f"sweep: {points} points ran in {ran:.0f} s ({ran / points:.2f} s a point); "
          f"file {output.stat().st_size / 1e6:.1f} MB", flush=True)
    with h5py.File(output, "r") as f:
        runs = len(f["runs"])
    shown = subprocess.run([*fedarena(), "show", str(output)], cwd=folder, capture_output=True, text=True)
    started = time.perf_counter()
    reported = subprocess.run([*fedarena(), "report", str(output), "--out", str(folder / "report")], cwd=folder,
                              capture_output=True, text=True)
    report_s = time.perf_counter() - started
    met = shown.returncode == 0 and reported.returncode == 0 and report_s < 60
    print(f"VERDICT: sweep of {points} points: h5py opens it ({runs} runs under /runs); "
          f"show exit {shown.returncode}; report exit {reported.returncode} in {report_s:.1f} s "
          f"(whole command, start-up included); target report < 60 s: {'met' if met else 'NOT met'}")
    if reported.returncode != 0:
        print(reported.stderr[-3000:])
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--only", choices=["long", "sweep"])
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="fedarena-soak-") as temporary:
        folder = Path(temporary)
        results = []
        if args.only in (None, "long"):
            results.append(soak_long(folder, args.rounds))
        if args.only in (None, "sweep"):
            results.append(soak_sweep(folder, args.points))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
