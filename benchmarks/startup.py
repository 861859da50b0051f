"""Start-up (issue #19): the wall time from the command to the end of the
quickstart's first round, split into phases.

Each repeat runs ``fedarena run scenarios/quickstart.fls --progress lines
-o TMP/quickstart.h5`` in a fresh process (the venv's ``fedarena`` script,
without ``uv run``, whose own start is reported once on its own), times
each line of its progress output as it arrives, and stops the run
(SIGTERM) once round 1 is reported.  The phases are the gaps between those
lines:

  start-up      interpreter, fedarena's modules, plugins, the scenario's check
                (up to ``starting: importing TensorFlow``)
  import tf     ``import tensorflow``
  import tff    ``import tensorflow_federated``, and TensorFlow's device
                discovery (up to the ``fedarena: backend ...`` line)
  backend       the in-process executor's set-up
  data          ``loading data``
  model         ``building the model``
  tracing       ``tracing the TFF computations``
  round 1       the first call: the local backend builds its TF functions,
                the round, its evaluation, the HDF5 write

Two variants run interleaved (A B B A ...) so that the machine's load falls
on both alike: ``deferred`` (today's code: TFF's differential-privacy stack
left unrun, `fedarena.core.execution.backends.tff_import`) and ``eager``
(``FEDARENA_DEFER_TFF_DP=0``: TFF imported as it is).  ``--cold`` runs every
process without Python's bytecode cache (a fresh ``PYTHONPYCACHEPREFIX``
that nothing is written to), as a fresh ``uv`` install or a read-only venv
would.  ``--importtime`` adds ``--repeats`` ``python -X importtime`` runs per
variant: the median own import time by top-level package, and the modules
that an eager run imports and no deferred one does (what deferring saves).  ``--tty`` adds one run
on a pseudo-terminal (``--progress auto``, so the spinner): when its first
frame came, the longest pause between two frames, the phases it named.

The load average is printed before and after: on a shared machine the
absolute seconds move with it.

    uv run --locked python benchmarks/startup.py [--repeats 3] [--cold] [--importtime] [--tty] [--only deferred]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCENARIO = REPO / "scenarios" / "quickstart.fls"
VARIANTS = {"deferred": {}, "eager": {"FEDARENA_DEFER_TFF_DP": "0"}}
# (phase, the progress line that ends it), in order.
MARKS = [
    ("start-up", "starting: importing TensorFlow"),
    ("import tf", "starting: importing TensorFlow Federated"),
    ("import tff", "fedarena: backend"),
    ("backend", "starting: loading data"),
    ("data", "starting: building the model"),
    ("model", "starting: tracing the TFF computations"),
    ("tracing", "starting: round 1 "),
    ("round 1", "round 1/"),
]
CLI = "import sys; from fedarena.core.cli.main import console_main; sys.argv[0] = 'fedarena'; console_main()"


def load() -> str:
    return "load average %.2f %.2f %.2f (1, 5, 15 min)" % os.getloadavg()


def environment(variant: str, cold: bool, scratch: Path) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **VARIANTS[variant])
    if cold:
        prefix = Path(tempfile.mkdtemp(prefix="pycache-", dir=scratch))
        env.update(PYTHONPYCACHEPREFIX=str(prefix), PYTHONDONTWRITEBYTECODE="1")
    return env


def run_once(variant: str, cold: bool, scratch: Path, importtime: bool = False) -> tuple[dict, list[str]]:
    """One command, stopped after round 1: ``({phase: seconds, "total": s}, stderr lines)``."""
    output = scratch / f"quickstart-{time.monotonic_ns()}.h5"
    python = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", CLI]
    command = [*python, "run", str(SCENARIO), "--progress", "lines", "-o", str(output)]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, env=environment(variant, cold, scratch), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    seen: dict[str, float] = {}
    lines = []
    try:
        for line in child.stderr:
            now = time.perf_counter() - started
            lines.append(line.rstrip("\n"))
            for _, mark in MARKS:
                if mark not in seen and line.startswith(mark):
                    seen[mark] = now
            if "round 1/" in seen:
                child.send_signal(signal.SIGTERM)
                break
    finally:
        try:
            rest, _ = child.communicate(timeout=120)
            lines += (rest or "").splitlines()
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
        output.unlink(missing_ok=True)
    if "round 1/" not in seen:
        tail = "\n".join([line for line in lines if not line.startswith("import time:")][-20:])
        raise SystemExit(f"the run did not report round 1 (exit code {child.returncode}):\n{tail}")
    phases, before = {}, 0.0
    for phase, mark in MARKS:
        if mark in seen:  # a phase whose line is missing counts in the next one
            phases[phase] = seen[mark] - before
            before = seen[mark]
    phases["total"] = seen["round 1/"]
    return phases, lines


def on_a_terminal(scratch: Path) -> dict:
    """What a terminal shows before round 1 (``--progress auto`` on a pty):
    seconds to the first frame, the longest pause between two frames, and
    each phase's text with when it first appeared."""
    import fcntl
    import pty
    import struct
    import termios

    output = scratch / "tty.h5"
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CLI, "run", str(SCENARIO), "-o", str(output)], cwd=REPO,
                             env=environment("deferred", False, scratch), stdin=secondary, stdout=secondary,
                             stderr=secondary, close_fds=True)
    os.close(secondary)
    writes, text = [], ""
    try:
        while "round 1/" not in text:
            try:
                chunk = os.read(primary, 4096).decode(errors="replace")
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            writes.append(time.perf_counter() - started)
            text += chunk
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=120)
        os.close(primary)
        output.unlink(missing_ok=True)
    phases = {}
    for frame in re.split(r"[\r\n]", text):
        found = re.match(r"[|/\\-] (.+?)  \d", frame)
        if found and found[1] not in phases:
            phases[found[1]] = frame
    gaps = [b - a for a, b in zip(writes, writes[1:])]
    return dict(first=writes[0] if writes else None, longest_pause=max(gaps, default=None), frames=len(writes),
                phases=list(phases))


def own_import_times(lines: list[str]) -> dict[str, float]:
    """From ``-X importtime`` lines: each module's own import time, seconds."""
    own = {}
    for line in lines:
        found = re.match(r"import time:\s+(\d+) \|\s+\d+ \| *(\S+)", line)
        if found:
            own.setdefault(found[2], int(found[1]) / 1e6)
    return own


def by_package(own: dict[str, float], modules=None) -> dict[str, float]:
    totals: dict[str, float] = collections.Counter()
    for name, seconds in own.items():
        if modules is None or name in modules:
            totals[name.split(".")[0]] += seconds
    return dict(totals)


def median_by_package(runs: list[dict[str, float]], modules=None) -> dict[str, float]:
    packages = {package for own in runs for package in by_package(own, modules)}
    return {package: statistics.median(by_package(own, modules).get(package, 0.0) for own in runs)
            for package in packages}


def report_imports(runs: dict[str, list[dict[str, float]]]) -> None:
    """Median own import time by top-level package per variant, and what
    deferring leaves out: the modules an eager run imports and no deferred
    run does."""
    for variant, owns in runs.items():
        packages = median_by_package(owns)
        top = sorted(packages.items(), key=lambda item: -item[1])[:12]
        print(f"\n{variant}: own import time by top-level package, median of {len(owns)} -X importtime runs "
              f"(s; all packages {sum(packages.values()):.2f}):")
        print("  " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in top))
    if {"deferred", "eager"} <= set(runs):
        left_out = set.union(*(set(own) for own in runs["eager"])) - set.union(*(set(own) for own in runs["deferred"]))
        packages = median_by_package(runs["eager"], left_out)
        print(f"modules an eager run imports and a deferred one does not: {len(left_out)}, "
              f"{sum(packages.values()):.2f} s of own import time (median), by package: "
              + ", ".join(f"{name} {seconds:.2f}" for name, seconds in sorted(packages.items(), key=lambda i: -i[1])
                          if seconds >= 0.005))


def uv_overhead(repeats: int) -> float:
    """Seconds ``uv run --locked python -c pass`` takes beyond ``python -c pass``."""
    def timed(command):
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        return time.perf_counter() - started

    uv = [timed(["uv", "run", "--locked", "python", "-c", "pass"]) for _ in range(repeats)]
    bare = [timed([sys.executable, "-c", "pass"]) for _ in range(repeats)]
    return statistics.median(uv) - statistics.median(bare)


def table(results: dict[str, list[dict]]) -> str:
    variants = list(results)
    phases = [phase for phase, _ in MARKS] + ["total"]
    head = "| phase | " + " | ".join(f"{v}: median (min-max), s" for v in variants) + " |"
    rows = [head, "|---" * (len(variants) + 1) + "|"]
    for phase in phases:
        cells = []
        for variant in variants:
            values = [r[phase] for r in results[variant] if phase in r]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})" if values else "-")
        rows.append(f"| {phase} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="no bytecode cache (a fresh install)")
    parser.add_argument("--importtime", action="store_true", help="add -X importtime runs: import time by package")
    parser.add_argument("--only", choices=list(VARIANTS), help="one variant only")
    parser.add_argument("--tty", action="store_true", help="also: what a terminal shows before round 1")
    args = parser.parse_args()
    variants = [args.only] if args.only else list(VARIANTS)
    print(f"start-up of `fedarena run {SCENARIO.relative_to(REPO)}` to round 1, "
          f"{'without' if args.cold else 'with'} bytecode cache; {os.cpu_count()} CPUs; {load()}", flush=True)
    results: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="fedarena-startup-") as folder:
        scratch = Path(folder)
        for repeat in range(args.repeats):
            order = variants if repeat % 2 == 0 else variants[::-1]
            for variant in order:
                phases, _ = run_once(variant, args.cold, scratch)
                results[variant].append(phases)
                print(f"  {variant:8s} repeat {repeat + 1}: {phases['total']:.2f} s to round 1  ({load()})",
                      flush=True)
        print(table(results))
        if args.importtime:
            imports: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
            for repeat in range(args.repeats):
                for variant in (variants if repeat % 2 == 0 else variants[::-1]):
                    imports[variant].append(own_import_times(run_once(variant, args.cold, scratch, True)[1]))
            report_imports(imports)
        if args.tty:
            shown = on_a_terminal(scratch)
            print(f"\non a terminal: first frame after {shown['first']:.2f} s, longest pause between two frames "
                  f"{shown['longest_pause']:.2f} s ({shown['frames']} writes to round 1); phases shown: "
                  f"{shown['phases']}")
    print(f"\n`uv run --locked` adds {uv_overhead(3):.2f} s before the command starts; {load()}")


if __name__ == "__main__":
    main()
