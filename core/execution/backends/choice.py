"""Which backend a run's TFF computations execute on, and saying so.

- ``local``: fedarena's in-process executor (`backends/local.py`): client
  training, the server stage and evaluation run on TensorFlow's own runtime
  in this process, on its GPU where TensorFlow sees one.
- ``worker``: TFF's C++ ``worker_binary`` (`backends/worker.py`), started
  and stopped by fedarena.  The build on PyPI has no CUDA: rounds run on the
  CPU even on a GPU machine.
- ``auto`` (the default): ``local`` where a GPU is visible; on the CPU,
  `CPU_DEFAULT`, the one the benchmarks (``benchmarks/local_vs_worker.py``,
  ``docs/performance.md``) found faster from command to last round.

``--workers HOST:PORT,...`` sends the clients' work to running ``fedarena
worker`` processes instead (each started with its own ``--backend``); the
run's own process then only coordinates and evaluates.

The choice comes from ``--backend`` or the environment variable
``FEDARENA_BACKEND``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from fedarena.core.errors import RunError, UsageError

BACKENDS = ("auto", "local", "worker")
BACKEND_VARIABLE = "FEDARENA_BACKEND"
# Measured on 2 CPU cores (docs/performance.md, "Backends"): the in-process
# executor's rounds take 0.46-0.96x the worker's, commands take as long.
CPU_DEFAULT = "local"


def requested_backend(flag: str | None = None) -> str:
    """The backend asked for: the flag, else ``FEDARENA_BACKEND``, else auto."""
    value = flag or os.environ.get(BACKEND_VARIABLE, "").strip() or "auto"
    if value not in BACKENDS:
        source = "--backend" if flag else BACKEND_VARIABLE
        raise UsageError(f"{source} must be one of {', '.join(BACKENDS)}, not '{value}'")
    return value


def check_combination(requested: str, workers: list[str] | None) -> None:
    """A backend named beside ``--workers`` is a usage error (before any work)."""
    if workers and requested != "auto":
        raise UsageError(
            f"--backend {requested} chooses where a run without --workers computes; with --workers, each "
            f"worker computes where its own `fedarena worker --backend ...` says")


def resolve(requested: str, workers: list[str] | None = None) -> str:
    """``local``, ``worker`` or ``remote`` (``--workers`` given)."""
    check_combination(requested, workers)
    if workers:
        return "remote"
    if requested != "auto":
        return requested
    return "local" if visible_gpus() else CPU_DEFAULT


def visible_gpus() -> list[str]:
    """The GPUs TensorFlow can use in this process; an error naming the fix
    when the machine has an NVIDIA GPU that TensorFlow cannot use."""
    import tensorflow as tf

    gpus = [gpu.name for gpu in tf.config.list_physical_devices("GPU")]
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
    if not gpus and not hidden and nvidia_gpus_present():
        raise RunError(
            "this machine has an NVIDIA GPU, but TensorFlow cannot use it: the `gpu` extra is not installed or "
            "CUDA failed to load (see TensorFlow's messages above); install it with `uv sync --extra gpu`, or "
            "set CUDA_VISIBLE_DEVICES=-1 to compute on the CPU")
    return gpus


def nvidia_gpus_present() -> bool:
    """Whether the NVIDIA driver reports a GPU on this machine."""
    listed = Path("/proc/driver/nvidia/gpus")
    return (listed.is_dir() and any(listed.iterdir())) or Path("/dev/nvidia0").exists()


def where_it_computes(kind: str, workers: list[str] | None = None) -> str:
    """The one line a run prints at its start: where client training, the
    server stage and evaluation run."""
    gpus = visible_gpus()
    here = f"on {', '.join(gpus)}" if gpus else "on the CPU"
    if kind == "local":
        return f"fedarena: backend local: client training, the server stage and evaluation run in this process {here}"
    if kind == "remote":
        return (f"fedarena: client training and the server stage run on the workers at {', '.join(workers or [])}; "
                f"evaluation runs in this process {here}")
    if gpus and worker_has_cuda():
        return f"fedarena: backend worker: client training, the server stage and evaluation run {here}"
    if gpus:
        return (f"fedarena: backend worker: TFF's worker is built without CUDA, so client training and the server "
                f"stage run on the CPU; evaluation runs {here} (--backend local trains on the GPU)")
    return "fedarena: backend worker: client training, the server stage and evaluation run on the CPU"


def worker_has_cuda() -> bool:
    """Whether TFF's worker binary can load CUDA (a CUDA build names the
    CUDA runtime library it opens).  The build tensorflow-federated 0.87
    ships on PyPI does not (its binary says "TensorFlow was not compiled with
    CUDA or ROCm support"; TFF issue #4600)."""
    import mmap

    from fedarena.core.execution.backends.worker import worker_binary_path

    with open(worker_binary_path(), "rb") as binary, mmap.mmap(binary.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(b"libcudart.so") >= 0


class InProcess:
    """The `WorkerPool`-like view of the local backend: no worker to watch."""

    addresses: tuple[str, ...] = ()
    given: tuple[str, ...] = ()
    backend = "local"

    def check(self) -> None:
        pass


@contextlib.contextmanager
def compute_on(requested: str, workers: list[str] | None = None):
    """Install the chosen backend's TFF context for the block, say where the
    run computes, and yield its pool (workers to watch, addresses to record).
    """
    from fedarena.core.execution.backends.tff_import import import_tff

    import_tff()  # first, so that no backend imports TFF's differential-privacy stack
    kind = resolve(requested, workers)
    print(where_it_computes(kind, workers), file=sys.stderr, flush=True)
    if kind == "local":
        from fedarena.core.execution.backends.local import local_backend

        with local_backend():
            yield InProcess()
        return
    from fedarena.core.execution.backends.worker import tff_workers

    with tff_workers(workers) as pool:
        yield pool
