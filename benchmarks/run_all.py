"""Run every fedarena benchmark and print, for each, its ratio against its
baseline (median, min, max over repeats) and whether the target is met.

    uv run --locked python benchmarks/run_all.py            # full (~15 min on 2 cores)
    uv run --locked python benchmarks/run_all.py --quick    # fewer repeats
    uv run --locked python benchmarks/run_all.py --only B1,B7 --json results.json
    uv run --locked python benchmarks/run_all.py --whatif   # also the engine what-if diagnostics

Each benchmark runs in a fresh Python process (its own TensorFlow, TFF
worker and memory high-water mark); baselines are measured in the same
process as what they are compared with, interleaved with it, so that load
from other programs falls on both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

BENCHMARKS = [
    ("B1", "b1_round_vs_plain_tf"),
    ("B2", "b2_round_vs_naive_tff"),
    ("B3", "b3_defended_round"),
    ("B4", "b4_first_round_memory"),
    ("B5", "b5_client_population"),
    ("B6", "b6_flops"),
    ("B7", "b7_defense_speed"),
    ("B8", "b8_sweep_jobs"),
]
WHATIF = ("D", "whatif")
TIMEOUT_S = 1200


def machine() -> str:
    """CPU model, cores, memory, accelerator and versions (never the host name)."""
    model, cpus = platform.processor() or "?", os.cpu_count()
    try:
        for entry in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if entry.startswith("Model name:"):
                model = entry.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    memory = next((int(e.split()[1]) / 2**20 for e in Path("/proc/meminfo").read_text().splitlines()
                   if e.startswith("MemTotal:")), float("nan"))
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("tensorflow", "tensorflow-federated", "numpy"))
    return (f"{model}, {cpus} cores, {memory:.1f} GiB RAM, no GPU used (CPU only); Python {platform.python_version()}, "
            f"{versions}")


def run_one(label: str, module: str, quick: bool) -> list[dict]:
    """Run one benchmark module in a fresh process, streaming its lines."""
    command = [sys.executable, str(HERE / f"{module}.py")] + (["--quick"] if quick else [])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    results: list[dict] = []
    stderr_tail: list[str] = []
    import threading

    def drain():
        for entry in process.stderr:
            stderr_tail.append(entry)
            del stderr_tail[:-60]

    threading.Thread(target=drain, daemon=True).start()
    try:
        for entry in process.stdout:
            if entry.startswith("RESULTS-JSON "):
                results = json.loads(entry.removeprefix("RESULTS-JSON "))
            else:
                print(entry, end="", flush=True)
        process.wait(TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    elapsed = time.perf_counter() - started
    if process.returncode != 0 or not results:
        print(f"{label:<4}FAILED (exit {process.returncode}) after {elapsed:.0f} s:\n" + "".join(stderr_tail[-25:]),
              flush=True)
        return [dict(name=label, what="FAILED", target=None, met=False, unit="", median=float("nan"),
                     min=float("nan"), max=float("nan"), n=0, details=dict(note=f"exit {process.returncode}"))]
    print(f"      ({label} took {elapsed:.0f} s)", flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a few minutes)")
    parser.add_argument("--only", help="comma-separated benchmark labels, e.g. B1,B3")
    parser.add_argument("--whatif", action="store_true", help="also run the what-if diagnostics (D1-D3)")
    parser.add_argument("--json", help="write every result (with details) to this JSON file")
    args = parser.parse_args(argv)

    chosen = BENCHMARKS + ([WHATIF] if args.whatif else [])
    if args.only:
        wanted = {w.strip().upper() for w in args.only.split(",")}
        chosen = [(label, module) for label, module in BENCHMARKS + [WHATIF] if label in wanted]
    print(f"machine: {machine()}")
    print(f"mode: {'quick' if args.quick else 'full'}; started {time.strftime('%Y-%m-%d %H:%M:%S')}\n", flush=True)
    started = time.perf_counter()
    everything: list[dict] = []
    for label, module in chosen:
        everything += run_one(label, module, args.quick)
    total = time.perf_counter() - started

    print(f"\nSummary ({'quick' if args.quick else 'full'} run, {total / 60:.1f} min):")
    for r in everything:
        if r["target"] is not None or r["what"] == "FAILED":
            print(common.line(r))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(machine=machine(), quick=args.quick, seconds=total,
                                                   results=everything), indent=1))
    return 0 if all(r["what"] != "FAILED" for r in everything) else 1


if __name__ == "__main__":
    sys.exit(main())
