"""P1 (issue #19): fedarena's whole P1 run against a plain TensorFlow loop
and a plain PyTorch loop, each a fresh process, what a user times.

Workload P1: MNIST's t10k files (``../shared/data/mnist-t10k`` beside the
repository, or ``--data``), 8,000 training / 2,000 test images, 20 IID
clients, 10 a round, MLP 784-200-10, SGD 0.05, batch 32, one local epoch,
test evaluation every round, 30 rounds.  fedarena runs it as a scenario
(`scenario_text`: ``dataset mnist(path = ..., holdout = 2000)``) with
``fedarena run --progress lines``; the baselines are ``p1_plain_tf.py``
(Keras model, tf.data batches, FedAvg by hand) and ``p1_plain_torch.py``
(the same in PyTorch), with fedarena's scaling (pixels / 255) and test
slice; ``--standardize`` gives all three ``(x - 0.1307) / 0.3081``.

Each repeat runs the three commands one after the other, in an order that
rotates from repeat to repeat (F T P, P F T, T P F, ...) so that load from
other programs falls on each alike.  Measured, each from outside the
process:

  round      fedarena: the median gap between two consecutive ``round k/30``
             progress lines (k >= 2: training, the server stage -- attack,
             detection, aggregation --, evaluation and the HDF5 write); a
             baseline: the median of its own per-round times (training,
             FedAvg, evaluation) from round 2 on
  whole run  from the spawn of the command to its exit (imports included)
  first      from the spawn to the end of round 1
  peak RSS   of the process tree: the largest sum of VmRSS over the process
             and its descendants, sampled every 0.1 s (fedarena's TFF worker
             included; a lower bound of the true peak); and the sum of each
             process's VmHWM as last read (an upper bound)
  stages     fedarena's own stage times per round (the results file's
             ``/timing``, median from round 2 on), and the rest of the round's
             gap: the HDF5 write, the progress line, Python between stages

Ratios per repeat: fedarena's round / the TF loop's round (target <= 0.4)
and fedarena's whole run / the PyTorch script's (target <= 1); the lines
give their median, min and max over the repeats, with the accuracies after
the last round and the load average.  PyTorch is not a fedarena
dependency: the torch script runs with ``--torch-python`` or
``$FEDARENA_TORCH_PYTHON`` (a venv with ``torch`` and ``numpy``), and is
skipped with a message when neither is given.

    uv run --locked python benchmarks/p1.py [--quick] [--repeats 3] [--torch-python PY] [--standardize]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data" / "mnist-t10k"
CLI = "import sys; from fedarena.core.cli.main import console_main; sys.argv[0] = 'fedarena'; console_main()"
ROUND_TARGET, WHOLE_TARGET = 0.4, 1.0


def scenario_text(data: Path, output: Path, rounds: int = 30, standardize: bool = False) -> str:
    normalize = ', normalize = "standard"' if standardize else ""
    return f"""\
scenario "P1: MNIST t10k, MLP 784-200-10, 20 IID clients (issue #19)" {{
  seed 1
  rounds {rounds}
  dataset mnist(path = "{data}", holdout = 2000{normalize})
  split iid over 20 clients
  model mlp(hidden = [200])
  training {{
    clients_per_round 10
    local_epochs 1
    batch_size 32
    optimizer sgd(learning_rate = 0.05)
  }}
  aggregator fedavg
  evaluate every 1 rounds
  output "{output}"
}}
"""


def load() -> tuple[float, float, float]:
    return os.getloadavg()


# --------------------------------------------------------------------------
# Watching a command: its process tree's memory, its lines as they come.


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for entry in status:
                if entry.startswith(field):
                    return int(entry.split()[1])
    except OSError:
        pass
    return 0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack += children.get(pid, [])
    return found


class TreeMemory:
    """Samples the RSS of a process and its descendants until it exits."""

    def __init__(self, pid: int, every: float = 0.1):
        self.pid, self.every = pid, every
        self.peak_kib = 0
        self.hwm_kib: dict[int, int] = {}  # each process's VmHWM, as last read
        self.most_processes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            pids = _descendants(self.pid)
            self.most_processes = max(self.most_processes, len(pids))
            self.peak_kib = max(self.peak_kib, sum(_status_kib(pid, "VmRSS:") for pid in pids))
            for pid in pids:
                self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), _status_kib(pid, "VmHWM:"))
            self._done.wait(self.every)

    def stop(self) -> dict:
        self._done.set()
        self._thread.join()
        return dict(tree_peak_mib=self.peak_kib / 1024, tree_hwm_sum_mib=sum(self.hwm_kib.values()) / 1024,
                    processes=self.most_processes)


def watched(command: list[str], env: dict, on_line=None) -> dict:
    """Run ``command``; ``on_line(seconds since spawn, line)`` for each
    stderr line.  Returns wall seconds, exit code, stdout, stderr's tail and
    the tree's memory."""
    spawned = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    memory = TreeMemory(child.pid)
    stdout: list[str] = []
    reader = threading.Thread(target=lambda: stdout.extend(child.stdout), daemon=True)
    reader.start()
    tail: list[str] = []
    for entry in child.stderr:
        if on_line is not None:
            on_line(time.perf_counter() - spawned, entry)
        tail = (tail + [entry])[-30:]
    child.wait()
    wall = time.perf_counter() - spawned
    reader.join()
    return dict(wall_s=wall, code=child.returncode, stdout="".join(stdout), stderr_tail="".join(tail),
                **memory.stop())


def fail(what: str, found: dict) -> None:
    raise SystemExit(f"{what} failed (exit code {found['code']}):\n{found['stderr_tail']}")


# --------------------------------------------------------------------------
# The three commands.


def run_fedarena(scratch: Path, args) -> dict:
    output = scratch / f"p1-{time.monotonic_ns()}.h5"
    scenario = scratch / "p1.fls"
    scenario.write_text(scenario_text(args.data, output, args.rounds, args.standardize))
    ends: dict[int, float] = {}

    def on_line(seconds: float, entry: str) -> None:
        if entry.startswith("round ") and "/" in entry:  # "round 3/30  test_accuracy ..."
            ends[int(entry.split()[1].split("/")[0])] = seconds

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    found = watched([sys.executable, "-c", CLI, "run", str(scenario), "--progress", "lines"], env, on_line)
    if found["code"] != 0 or len(ends) != args.rounds:
        fail(f"fedarena run (round lines seen: {sorted(ends)})", found)
    import h5py

    with h5py.File(output, "r") as results:
        accuracy = float(results["metrics/test_accuracy"][-1])
        backend = results.attrs.get("backend", "?")
        # The engine's own stage times (rounds 2 on); the rest of a round's gap is
        # the HDF5 write, the progress line and Python between the stages.
        stages = {name.removesuffix("_seconds"): statistics.median(results["timing"][name][1:])
                  for name in results["timing"] if name.endswith("_seconds")}
    output.unlink()
    gaps = [ends[k] - ends[k - 1] for k in range(2, args.rounds + 1)]
    stages["rest"] = statistics.median(gaps) - sum(stages.values())
    return dict(found, round_s=statistics.median(gaps), first_s=ends[1], accuracy=accuracy, stages_s=stages,
                backend=backend if isinstance(backend, str) else backend.decode())


def run_script(python: str, script: str, args) -> dict:
    command = [python, str(HERE / script), "--data", str(args.data), "--rounds", str(args.rounds)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if args.torch_threads and script == "p1_plain_torch.py":
        env.update(OMP_NUM_THREADS=str(args.torch_threads))
    found = watched(command + (["--standardize"] if args.standardize else []), env)
    if found["code"] != 0:
        fail(script, found)
    own = json.loads(found["stdout"].strip().splitlines()[-1])
    return dict(found, round_s=statistics.median(own["round_s"][1:]), first_s=own["first_round_from_start_s"],
                accuracy=own["accuracy"], own=own)


# --------------------------------------------------------------------------


def torch_python(given: str | None) -> str | None:
    """The interpreter for the PyTorch script, or None (with the reason printed)."""
    python = given or os.environ.get("FEDARENA_TORCH_PYTHON")
    if not python:
        print("p1: the PyTorch baseline is skipped: give --torch-python PY or set FEDARENA_TORCH_PYTHON to an "
              "interpreter with torch and numpy (e.g. python3 -m venv /work/torchvenv && "
              "/work/torchvenv/bin/pip install torch numpy)", flush=True)
        return None
    probe = subprocess.run([python, "-c", "import torch, numpy"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"p1: the PyTorch baseline is skipped: {python} cannot import torch and numpy:\n"
              f"{probe.stderr.strip()[-500:]}", flush=True)
        return None
    return python


def main(argv=None) -> list[dict]:
    import common

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat instead of --repeats")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--data", type=Path, default=DATA, help="folder with MNIST's t10k IDX files")
    parser.add_argument("--torch-python", help="interpreter with torch (default: $FEDARENA_TORCH_PYTHON)")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="OMP_NUM_THREADS for the PyTorch script (default: torch's own choice)")
    parser.add_argument("--standardize", action="store_true", help='all three: normalize = "standard"')
    args = parser.parse_args(argv)
    if not (args.data / "t10k-images-idx3-ubyte.gz").is_file():
        raise SystemExit(f"p1: no MNIST t10k files in {args.data}; give --data FOLDER")
    torch = torch_python(args.torch_python)
    commands = {"fedarena": None, "plain_tf": sys.executable, **({"plain_torch": torch} if torch else {})}
    repeats = 1 if args.quick else args.repeats
    print(f"P1 ({args.rounds} rounds{', standardized' if args.standardize else ''}): {repeats} repeat(s) of "
          f"{', '.join(commands)}; {os.cpu_count()} CPUs; load average %.2f %.2f %.2f" % load(), flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in commands}
    loads = [load()[0]]
    with tempfile.TemporaryDirectory(prefix="fedarena-p1-") as folder:
        for repeat in range(repeats):
            names = list(commands)
            shift = repeat % len(names)
            for name in names[-shift:] + names[:-shift] if shift else names:
                if name == "fedarena":
                    found = run_fedarena(Path(folder), args)
                else:
                    found = run_script(commands[name], f"p1_{name}.py", args)
                loads.append(load()[0])
                runs[name].append(found)
                print(f"  {repeat + 1}: {name:<11} round {found['round_s']:.3f} s, whole run {found['wall_s']:.1f} s, "
                      f"round 1 at {found['first_s']:.1f} s, tree peak {found['tree_peak_mib']:.0f} MiB "
                      f"({found['processes']} processes), accuracy {found['accuracy']:.4f}; load {loads[-1]:.2f}",
                      flush=True)
                if "stages_s" in found:
                    print(f"     stages of a round ({found['backend']} backend): " + ", ".join(
                        f"{stage} {seconds:.3f} s" for stage, seconds in found["stages_s"].items()), flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    shared = dict(load_average=dict(min=min(loads), max=max(loads), samples=loads),
                  fedarena_stages_s={stage: statistics.median(r["stages_s"][stage] for r in runs["fedarena"])
                                     for stage in runs["fedarena"][0]["stages_s"]},
                  absolute={name: {key: med(name, key) for key in
                                   ("round_s", "wall_s", "first_s", "tree_peak_mib", "tree_hwm_sum_mib", "accuracy")}
                            for name in runs})
    accuracy = ", ".join(f"{name} {med(name, 'accuracy'):.3f}" for name in runs)
    f, t = runs["fedarena"], runs["plain_tf"]
    results = [common.result(
        "P1", "round / plain-TF loop's round", [a["round_s"] / b["round_s"] for a, b in zip(f, t)], ROUND_TARGET,
        note=(f"fedarena {med('fedarena', 'round_s'):.3f} s, plain TF {med('plain_tf', 'round_s'):.3f} s a round; "
              f"accuracy after {args.rounds} rounds: {accuracy}; load average {min(loads):.1f}-{max(loads):.1f}"),
        **shared)]
    results.append(common.result(
        "P1", "whole run / plain-TF script's", [a["wall_s"] / b["wall_s"] for a, b in zip(f, t)], None,
        note=(f"fedarena {med('fedarena', 'wall_s'):.1f} s (round 1 at {med('fedarena', 'first_s'):.1f} s), plain TF "
              f"{med('plain_tf', 'wall_s'):.1f} s (round 1 at {med('plain_tf', 'first_s'):.1f} s); tree peak RSS "
              f"fedarena {med('fedarena', 'tree_peak_mib'):.0f} MiB, plain TF {med('plain_tf', 'tree_peak_mib'):.0f} MiB")))
    if "plain_torch" in runs:
        p = runs["plain_torch"]
        results.append(common.result(
            "P1", "whole run / plain-PyTorch script's", [a["wall_s"] / b["wall_s"] for a, b in zip(f, p)],
            WHOLE_TARGET,
            note=(f"plain PyTorch {med('plain_torch', 'wall_s'):.1f} s (round 1 at {med('plain_torch', 'first_s'):.1f} "
                  f"s, {med('plain_torch', 'round_s'):.3f} s a round, torch threads "
                  f"{p[0]['own']['threads']}), tree peak {med('plain_torch', 'tree_peak_mib'):.0f} MiB; its whole run "
                  f"/ plain TF's: {statistics.median(a['wall_s'] / b['wall_s'] for a, b in zip(p, t)):.2f}")))
    else:
        results.append(common.result("P1", "whole run / plain-PyTorch script's", [float("nan")], None,
                                     note="skipped: no interpreter with torch (--torch-python)"))
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    import common

    common.emit(main())
