"""B4: first-round latency and peak memory at 100 clients x ~1M parameters.

Each measurement is a fresh child process (``--child``), so that start-up
(Python, TensorFlow/TFF import, data, client store, worker start, tracing)
and peak RSS are its own.  Workload: MLP 784-1250-10 (993,760 parameters),
100 clients, all 100 sampled, 64 synthetic samples each (two batches of 32:
client data stays small so that memory is about the update matrix), one
epoch, FedAvg, evaluation after the round (as a 1-round run does).

Backends: ``--backend local`` (the default, as a run's: the in-process
executor, one process) or ``--backend worker`` (TFF's C++ worker, a second
process where client updates are gathered and the server stage runs).

First-round latency: from the parent's spawn of the child to the first
`RoundResult` (what a user waits for).  Peak RSS of the process tree: VmHWM
of the child (the Python process) plus, under the worker backend, VmHWM of
its TFF worker, read after the round; the sum is an upper bound on what
both held at once.
Target: peak RSS <= 3 x (100 x d float32 update matrix + the d-float32 model).

Safety: the parent watches the child's and its worker's RSS and ends both
(by pid) if together they pass a cap, by default the smaller of 8 GiB and
half the memory available when B4 starts; set FEDARENA_BENCH_MEMORY_CAP_GIB
to change it.  A capped run reports the cap as a lower bound of the peak and
the time it was stopped as a lower bound of the latency.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

CLIENTS, HIDDEN, SAMPLES = 100, 1250, 64
FEATURES, CLASSES = 784, 10
TARGET = 3.0


def child(backend: str) -> None:
    spawned = float(os.environ["FEDARENA_BENCH_SPAWNED"])
    started = time.time()
    import common  # noqa: E402  (sets TF_CPP_MIN_LOG_LEVEL first)

    import tensorflow  # noqa: F401
    import tensorflow_federated  # noqa: F401

    from fedarena.core.execution.engine.run import Run

    if backend == "worker":
        from fedarena.core.execution.backends.worker import tff_workers as computing
    else:
        from fedarena.core.execution.backends.local import local_backend as computing

    imported = time.time()
    idle_rss = common.peak_rss_mib()
    text = common.scenario_text(clients=CLIENTS, hidden=HIDDEN, samples_per_client=SAMPLES, rounds=1)
    with computing() as pool:
        worker_up = time.time()
        workers = [p.pid for p in pool.processes.values()] if backend == "worker" else []
        print("B4-WORKERS " + json.dumps(workers), flush=True)
        idle_worker_rss = sum(_vm_hwm_mib(pid) for pid in workers)
        run = Run(common.make_scenario(text))
        built = time.time()
        result = next(run.rounds())
        done = time.time()
        worker_rss = sum(_vm_hwm_mib(pid) for pid in workers)
        dim = run.model.dim
        run.close()
    print("B4-CHILD " + json.dumps(dict(
        latency_s=done - spawned, python_start_s=started - spawned, import_s=imported - started,
        worker_start_s=worker_up - imported, run_setup_s=built - worker_up, first_round_s=done - built,
        round_stages_s=result.seconds, idle_rss_mib=idle_rss, idle_worker_rss_mib=idle_worker_rss, python_rss_mib=common.peak_rss_mib(),
        worker_rss_mib=worker_rss, dim=dim,
    )), flush=True)


def _vm_hwm_mib(pid: int, field: str = "VmHWM:") -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for entry in status:
                if entry.startswith(field):
                    return int(entry.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def memory_cap_mib() -> float:
    if os.environ.get("FEDARENA_BENCH_MEMORY_CAP_GIB"):
        return float(os.environ["FEDARENA_BENCH_MEMORY_CAP_GIB"]) * 1024
    available = 0.0
    with open("/proc/meminfo") as meminfo:
        for entry in meminfo:
            if entry.startswith("MemAvailable:"):
                available = int(entry.split()[1]) / 1024
    return min(8 * 1024, available / 2)


def measure_once(cap_mib: float, backend: str = "local") -> dict:
    """One child run, watched: its RSS plus its worker's, sampled every 0.1 s."""
    import threading

    env = dict(os.environ, FEDARENA_BENCH_SPAWNED=repr(time.time()), TF_CPP_MIN_LOG_LEVEL="3")
    spawned = time.time()
    child_process = subprocess.Popen([sys.executable, __file__, "--child", backend], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    workers: list[int] = []

    def read_stdout():
        for entry in child_process.stdout:
            lines.append(entry)
            if entry.startswith("B4-WORKERS "):
                workers.extend(json.loads(entry.removeprefix("B4-WORKERS ")))

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    stderr: list[str] = []
    threading.Thread(target=lambda: stderr.extend(child_process.stderr), daemon=True).start()
    sampled_peak, capped_at = 0.0, None
    while child_process.poll() is None:
        rss = _vm_hwm_mib(child_process.pid, "VmRSS:") + sum(_vm_hwm_mib(pid, "VmRSS:") for pid in workers)
        sampled_peak = max(sampled_peak, rss)
        if rss > cap_mib or time.time() - spawned > 600:
            capped_at = time.time() - spawned
            child_process.kill()
            for pid in workers:  # the worker our child started; it would also die with it (PDEATHSIG)
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            break
        time.sleep(0.1)
    child_process.wait()
    reader.join(5)
    if capped_at is not None:
        return dict(capped=True, latency_s=capped_at, peak_mib=sampled_peak, sampled_peak_mib=sampled_peak)
    for entry in lines:
        if entry.startswith("B4-CHILD "):
            found = json.loads(entry.removeprefix("B4-CHILD "))
            found.update(capped=False, peak_mib=found["python_rss_mib"] + found["worker_rss_mib"],
                         sampled_peak_mib=sampled_peak)
            return found
    raise RuntimeError(f"B4 child failed (exit {child_process.returncode}):\n{''.join(stderr)[-3000:]}")


def main(quick: bool = False, backend: str = "local") -> list[dict]:
    import common

    cap = memory_cap_mib()
    runs = [measure_once(cap, backend) for _ in range(1 if quick else 3)]
    dim = HIDDEN * (FEATURES + 1) + CLASSES * (HIDDEN + 1)
    budget_mib = (CLIENTS * dim + dim) * 4 / 2**20
    peaks = [r["peak_mib"] for r in runs]
    latency = [r["latency_s"] for r in runs]
    complete = [r for r in runs if not r["capped"]]
    med = lambda key: common.summary([r[key] for r in complete])["median"]  # noqa: E731
    if complete:
        note = (f"{backend} backend; d = {dim:,}; update matrix + model = {budget_mib:.0f} MiB; "
                f"peak RSS python {med('python_rss_mib'):.0f} MiB (after imports alone {med('idle_rss_mib'):.0f})")
        if backend == "worker":
            note += f" + TFF worker {med('worker_rss_mib'):.0f} MiB (idle {med('idle_worker_rss_mib'):.0f})"
        latency_note = (f"python start {med('python_start_s'):.1f} s, TF/TFF/fedarena import {med('import_s'):.1f} s, "
                        + (f"worker start {med('worker_start_s'):.1f} s, " if backend == "worker" else "")
                        + f"data+store+tracing {med('run_setup_s'):.1f} s, "
                        f"first round (with evaluation) {med('first_round_s'):.1f} s")
    else:
        note = latency_note = ""
    if len(complete) < len(runs):
        capped = (f"{len(runs) - len(complete)} of {len(runs)} runs passed the {cap / 1024:.1f} GiB memory cap and were "
                  f"stopped (peak and latency below are then lower bounds)")
        note = (f"{capped}; {note}" if note
                else f"{backend} backend; d = {dim:,}; update matrix + model = {budget_mib:.0f} MiB; {capped}")
        latency_note = latency_note or capped
    return [
        common.result("B4", "peak RSS/(update matrix+model)", [p / budget_mib for p in peaks], TARGET,
                      lower_bound=len(complete) < len(runs),
                      peak_rss_mib=common.summary(peaks), budget_mib=budget_mib, cap_mib=cap, runs=runs, note=note),
        common.result("B4", "first-round latency", latency, None, unit=" s", lower_bound=len(complete) < len(runs),
                      note=latency_note),
    ]


def backend_flag() -> str:
    """``--backend local|worker`` (default local, as a run's)."""
    if "--backend" not in sys.argv:
        return "local"
    at = sys.argv.index("--backend") + 1
    if at >= len(sys.argv) or sys.argv[at] not in ("local", "worker"):
        sys.exit("b4_first_round_memory.py: --backend takes local or worker")
    return sys.argv[at]


if __name__ == "__main__":
    if "--child" in sys.argv:
        child(sys.argv[sys.argv.index("--child") + 1])
    else:
        import common

        common.emit(main(common.quick_flag(), backend_flag()))
