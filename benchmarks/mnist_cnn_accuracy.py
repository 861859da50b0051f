"""Issue 5's learning check, too slow for the test suite: FedAvg with the
MNIST CNN (McMahan et al. 2017) on the real MNIST test set split 8,000 /
2,000, 20 IID clients, 10 per round, must pass 0.9 test accuracy within 20
rounds.  Runs scenarios/mnist_cnn.fls with its dataset pointed at
../shared/data/mnist-t10k (beside the repository; the shipped scenario
reads MNIST from the standard cache instead) and reads the result back
from HDF5.

    uv run --locked python benchmarks/mnist_cnn_accuracy.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "mnist-t10k"
TARGET = 0.9


def main() -> int:
    if not DATA.is_dir():
        print("mnist-t10k data not found beside the repository; skipped")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "mnist_cnn.h5"
        text = (REPO / "scenarios" / "mnist_cnn.fls").read_text()
        assert "dataset mnist\n" in text, "scenarios/mnist_cnn.fls no longer reads 'dataset mnist'"
        scenario = Path(folder) / "mnist_cnn.fls"
        scenario.write_text(text.replace("dataset mnist\n", f'dataset mnist(path = "{DATA}", holdout = 2000)\n'))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fedarena.core.cli.main", "run", str(scenario), "-o", str(out),
                        "--progress", "none"], cwd=REPO, check=True)
        seconds = time.perf_counter() - started
        with h5py.File(out) as f:
            rounds, accuracy = f["metrics/round"][()], f["metrics/test_accuracy"][()]
    first = next((int(r) for r, a in zip(rounds, accuracy) if a > TARGET), None)
    print(f"MNIST CNN  accuracy by round: " + ", ".join(f"{int(r)}: {a:.3f}" for r, a in zip(rounds, accuracy)))
    print(f"MNIST CNN  final {accuracy[-1]:.3f}  first round above {TARGET}: {first}  ({seconds:.0f} s)  "
          f"target > {TARGET} within 20 rounds  {'MET' if first is not None and first <= 20 else 'NOT MET'}")
    return 0 if first is not None else 1


if __name__ == "__main__":
    sys.exit(main())
