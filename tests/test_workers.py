"""TFF workers run with `fedarena worker` and used with `--workers`: the
clients of each round are split across them, results match one worker,
and no worker process outlives its command."""

import os
import re
import signal
import subprocess

import numpy as np
import pytest

from conftest import alive, fedarena_command, run_fedarena, tiny_scenario, worker_children
from fedarena.core.workers import free_port
from test_cli import read


def start_worker(port: int):
    process = subprocess.Popen(
        fedarena_command("worker", "--port", port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    line = process.stdout.readline()
    found = re.match(r"fedarena worker serving at (\S+) \(pid (\d+)\)", line)
    assert found, line + process.stderr.read()
    return process, found.group(1), int(found.group(2))


@pytest.fixture
def two_workers():
    started = [start_worker(free_port()) for _ in range(2)]
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
    before = set(worker_children(None))
    result = run_fedarena("run", write_scenario(tiny_scenario(two, rounds=4), "two.fls"), "--workers", addresses)
    assert result.returncode == 0, result.stderr
    assert set(worker_children(None)) == before  # it used the given workers and started none of its own
    (_, a), (_, b) = read(one), read(two)
    for name in ("metrics/test_accuracy", "metrics/test_loss", "clients/update_norm", "model/weights"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7, err_msg=name)
