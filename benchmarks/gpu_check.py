"""One command for a machine with a GPU: do fedarena's rounds train there?

    uv sync --extra gpu && uv run --locked python benchmarks/gpu_check.py [--rounds N]

1. Lists the GPUs TensorFlow sees (and stops with fedarena's own message if
   the machine has an NVIDIA GPU that TensorFlow cannot use).
2. Runs the quickstart and a CIFAR-10-shaped CNN scenario (random images of
   CIFAR's shape, ``cnn(hidden = 64)``, 10 clients, 5 per round) under
   ``--backend local`` and ``--backend worker``, and prints per-round times
   and the time to the first round for each.
3. Finds the device of the client step: one round of the CNN scenario in
   this process under the local backend, with the GPU's peak memory read
   before and after (training on the GPU allocates there; on the CPU it
   does not).
4. Compares the final metrics of the two backends.
5. Prints one verdict line, starting ``VERDICT:``.

Runs on a CPU-only machine too (then the verdict says there was no GPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from backends import CNN, REPO, run_once, write_cifar_like  # noqa: E402


def client_step_device(scenario_path: Path) -> str:
    """Where the local backend's client training runs, judged by the GPU
    memory one round allocates."""
    import tensorflow as tf

    from fedarena.core.execution.backends.local import local_backend
    from fedarena.core.execution.engine.run import Run
    from fedarena.core.language.parser import parse
    from fedarena.core.plugin.registry import default_registry
    from fedarena.core.scenario.sweep import check

    gpus = tf.config.list_logical_devices("GPU")
    scenario = check(parse(scenario_path.read_text(), str(scenario_path)), default_registry(), "/dev/null")
    with local_backend():
        run = Run(scenario)
        try:
            before = tf.config.experimental.get_memory_info(gpus[0].name)["peak"] if gpus else 0
            next(run.rounds())
            after = tf.config.experimental.get_memory_info(gpus[0].name)["peak"] if gpus else 0
        finally:
            run.close()
    if gpus and after > before:
        return f"{gpus[0].name} (peak GPU memory {before / 2**20:.0f} -> {after / 2**20:.0f} MiB during the round)"
    return "CPU" + (f" (no GPU memory allocated on {gpus[0].name} during the round)" if gpus else "")


def final_metrics(path: Path) -> dict[str, float]:
    import h5py

    with h5py.File(path, "r") as f:
        return {name: float(values[-1]) for name, values in f["metrics"].items() if name != "round"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the CNN scenario (default 5)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from fedarena.core.errors import RunError
    from fedarena.core.execution.backends.choice import visible_gpus
    from fedarena.core.execution.backends.local import device_summary

    print(f"TensorFlow {tf.__version__}; {os.cpu_count()} CPU cores")
    try:
        gpus = visible_gpus()
    except RunError as error:
        print(f"VERDICT: FAIL: {error}")
        return 1
    print(f"GPUs TensorFlow sees: {', '.join(gpus) or 'none'}; the local backend computes on: {device_summary()}")

    with tempfile.TemporaryDirectory(prefix="fedarena-gpu-check-") as scratch:
        folder = Path(scratch)
        cnn = folder / "cnn.fls"
        cnn.write_text(CNN.format(rounds=args.rounds, path=write_cifar_like(folder / "cifar")))
        workloads = {"quickstart": REPO / "scenarios" / "quickstart.fls", "cnn": cnn}
        timings, agreement = {}, {}
        for name, path in workloads.items():
            runs = {backend: run_once(path, backend, folder) for backend in ("local", "worker")}
            local_metrics = final_metrics(folder / "out-local.h5")
            worker_metrics = final_metrics(folder / "out-worker.h5")
            agreement[name] = max((abs(local_metrics[k] - worker_metrics[k]) for k in local_metrics
                                   if local_metrics[k] == local_metrics[k]), default=0.0)
            timings[name] = runs
            print(f"[{name}] per round: local {runs['local']['round']:.3f} s, worker {runs['worker']['round']:.3f} s "
                  f"(worker/local {runs['worker']['round'] / runs['local']['round']:.1f}x) | first round after "
                  f"the command: local {runs['local']['first']:.1f} s, worker {runs['worker']['first']:.1f} s | "
                  f"largest final-metric difference {agreement[name]:.2g}", flush=True)
        device = client_step_device(cnn)
        print(f"client step of the local backend runs on: {device}")

    speedup = timings["cnn"]["worker"]["round"] / timings["cnn"]["local"]["round"]
    agree = max(agreement.values()) < 1e-3
    if not gpus:
        verdict = "no GPU visible: nothing to check here (run this on a machine with a GPU and the gpu extra)"
    elif device.startswith("CPU"):
        verdict = f"FAIL: TensorFlow sees {gpus[0]}, but the local backend's client step ran on the CPU"
    elif not agree:
        verdict = f"FAIL: rounds train on {gpus[0]}, but the backends' final metrics differ by {max(agreement.values()):.2g}"
    else:
        verdict = (f"PASS: rounds train on {device.split(' ')[0]}; the CNN round is {speedup:.1f}x faster than TFF's "
                   f"CPU worker; final metrics agree within {max(agreement.values()):.1g}")
    print(f"VERDICT: {verdict}")
    return 0 if verdict.startswith(("PASS", "no GPU")) else 1


if __name__ == "__main__":
    sys.exit(main())
