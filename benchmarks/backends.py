"""`fedarena run` under ``--backend local`` against ``--backend worker``, as
a user runs it: one command per backend and workload, on this machine.

Workloads:

  quickstart  scenarios/quickstart.fls (digits, MLP [64], 20 rounds)
  mlp         benchmark B1's: 20 clients x 600 synthetic samples of 784
              features, all 20 per round, MLP 784-200-10, batch 32, one epoch
  cnn         a small CIFAR CNN: CIFAR-shaped random images (written here as
              CIFAR-10 python batches, 2,000 train / 400 test) over 10
              clients, 5 per round, ``cnn(hidden = 64)``, batch 32

For each, the command is run once per backend, alternating (local, worker,
worker, local, ... over ``--repeats`` pairs) and timed from the command's
start to the first round done (the first progress line) and to its end; the
per-round time is the median of the rounds after the first, read from the
results file's ``timing`` group (client, attack, detection, aggregation
seconds; evaluation excluded, it runs in this process under both).

    uv run --locked python benchmarks/backends.py [--repeats N] [--only quickstart,mlp,cnn]
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

MLP = """\
scenario "B1 workload" {{
  seed 1
  rounds {rounds}
  dataset synthetic(samples = 15000, features = 784, classes = 10, test_fraction = 0.2)
  split iid over 20 clients
  model mlp(hidden = [200])
  training {{ clients_per_round 20  local_epochs 1  batch_size 32  optimizer sgd(learning_rate = 0.05) }}
  aggregator fedavg
  evaluate every {rounds} rounds
  output "out.h5"
}}
"""

CNN = """\
scenario "small CIFAR CNN" {{
  seed 1
  rounds {rounds}
  dataset cifar10(path = "{path}")
  split iid over 10 clients
  model cnn(hidden = 64)
  training {{ clients_per_round 5  local_epochs 1  batch_size 32  optimizer sgd(learning_rate = 0.05) }}
  aggregator fedavg
  evaluate every {rounds} rounds
  output "out.h5"
}}
"""


def write_cifar_like(folder: Path, train: int = 2000, test: int = 400) -> Path:
    """Random images in CIFAR-10's python-batch format."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per_batch = train // 5
    for name, count in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]:
        batch = {b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, count).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


def run_once(scenario: Path, backend: str, folder: Path) -> dict:
    """One `fedarena run`: seconds to the first round done and to the end,
    and the per-round seconds the results file recorded."""
    import h5py

    output = folder / f"out-{backend}.h5"
    command = [sys.executable, "-m", "fedarena.core.cli.main", "run", str(scenario), "-o", str(output), "--force",
               "--backend", backend, "--progress", "bar"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    started = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, cwd=folder)
    first = None
    buffer = b""
    while True:
        chunk = process.stderr.read1(4096)
        if not chunk:
            break
        buffer += chunk
        if first is None and b"] round 1/" in buffer:
            first = time.perf_counter() - started
    process.wait()
    total = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{buffer.decode(errors='replace')[-2000:]}")
    with h5py.File(output, "r") as f:
        parts = [f[f"timing/{name}_seconds"][()] for name in ("client", "attack", "detection", "aggregation")]
    per_round = np.sum(parts, axis=0)
    return {"first": first, "total": total, "round": float(np.median(per_round[1:]))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="pairs of runs per workload")
    parser.add_argument("--only", default="quickstart,mlp,cnn")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fedarena-backends-") as scratch:
        folder = Path(scratch)
        workloads = {
            "quickstart": REPO / "scenarios" / "quickstart.fls",
            "mlp": folder / "mlp.fls",
            "cnn": folder / "cnn.fls",
        }
        workloads["mlp"].write_text(MLP.format(rounds=6))
        workloads["cnn"].write_text(CNN.format(rounds=6, path=write_cifar_like(folder / "cifar")))
        print(f"{os.cpu_count()} CPU cores; each number the median of {args.repeats} runs per backend")
        for name in args.only.split(","):
            results: dict[str, list[dict]] = {"local": [], "worker": []}
            for pair in range(args.repeats):
                order = ("local", "worker") if pair % 2 == 0 else ("worker", "local")
                for backend in order:
                    results[backend].append(run_once(workloads[name], backend, folder))
            med = {b: {k: statistics.median(r[k] for r in runs) for k in ("first", "total", "round")}
                   for b, runs in results.items()}
            local, worker = med["local"], med["worker"]
            print(f"[{name}] per round: local {local['round']:.3f} s, worker {worker['round']:.3f} s "
                  f"(local/worker {local['round'] / worker['round']:.2f}) | command to first round: "
                  f"local {local['first']:.1f} s, worker {worker['first']:.1f} s | whole command: "
                  f"local {local['total']:.1f} s, worker {worker['total']:.1f} s "
                  f"(local/worker {local['total'] / worker['total']:.2f})", flush=True)


if __name__ == "__main__":
    main()
