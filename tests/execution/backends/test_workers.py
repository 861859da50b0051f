"""TFF workers run with `fedarena worker` and used with `--workers`: the
clients of each round are split across them, results match one worker,
and no worker process outlives its command."""

import os
import re
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import alive, fedarena_command, read, run_fedarena, tiny_scenario, wait_for_rounds
from fedarena.core.execution.backends.worker import free_port


def start_worker(port: int, backend: str = "worker"):
    """`fedarena worker` on ``port``: (process, address, pid of what computes:
    TFF's worker binary, or the process itself under the local backend)."""
    process = subprocess.Popen(
        fedarena_command("worker", "--port", port, "--backend", backend), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    line = process.stdout.readline()
    found = re.match(r"fedarena worker serving at (\S+) \(pid (\d+)\)", line)
    assert found, line + process.stderr.read()
    return process, found.group(1), int(found.group(2))


@pytest.fixture(params=["worker", "local"])
def two_workers(request):
    started = [start_worker(free_port(), request.param) for _ in range(2)]
    yield started
    for process, _, binary in started:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
        assert not alive(binary)
        assert "has no authentication" in process.stderr.read()


def test_a_run_split_across_two_workers_matches_one_worker(tmp_path, write_scenario, two_workers):
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    assert run_fedarena("run", write_scenario(tiny_scenario(one, rounds=4), "one.fls")).returncode == 0
    addresses = ",".join(address for _, address, _ in two_workers)
    result = run_fedarena("run", write_scenario(tiny_scenario(two, rounds=4), "two.fls"), "--workers", addresses)
    assert result.returncode == 0, result.stderr
    (root_a, a), (root_b, b) = read(one), read(two)
    assert (root_a["workers"], root_b["workers"]) == ("local", addresses)
    assert root_b["backend"] == "remote"
    for name in ("metrics/test_accuracy", "metrics/test_loss", "clients/update_norm", "model/weights"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_a_worker_that_dies_fails_the_round_by_name_and_resume_continues(tmp_path, write_scenario):
    port_a, port_b = free_port(), free_port()
    (a, address_a, _), (b, address_b, binary_b) = start_worker(port_a), start_worker(port_b)
    out = tmp_path / "out.h5"
    path = write_scenario(tiny_scenario(out, rounds=60))  # still running when worker b is killed at round 2
    workers = f"{address_a},{address_b}"
    run = subprocess.Popen(fedarena_command("run", path, "--workers", workers), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        wait_for_rounds(run, out, rounds=2)
        os.kill(binary_b, signal.SIGKILL)
        assert run.wait(120) == 1
        err = run.stderr.read()
        assert f"the TFF worker at {address_b} stopped answering; start it again and continue with --resume" in err
        root, data = read(out)
        assert root["status"] == "failed" and root["rounds_done"] >= 2
        assert data["clients/id"].shape[0] == root["rounds_done"]
        assert b.wait(30) == 1  # `fedarena worker` reports its dead binary and ends

        b, _, _ = start_worker(port_b)  # the worker is back
        resumed = run_fedarena("run", path, "--workers", workers, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert read(out)[0]["status"] == "complete"
    finally:
        for process in (a, b, run):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.wait(30)


def test_fedarena_worker_on_tffs_binary_serves_without_loading_tensorflow():
    """It only starts TFF's binary and waits until it answers: no TensorFlow
    (seconds of start-up) in the process that watches it."""
    process, address, binary = start_worker(free_port())
    try:
        assert alive(binary)
        loaded = Path(f"/proc/{process.pid}/maps").read_text()
        assert "_pywrap_tensorflow_internal" not in loaded and "libtensorflow_framework" not in loaded
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
