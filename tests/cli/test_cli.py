"""The ``fedarena`` command as a user meets it: exit codes, messages, the
HDF5 contract, and no TFF worker left behind on any way out."""

import os
import signal
import subprocess
import time

import attrs
import numpy as np
import pytest

from fedarena.core.cli import main as cli

from fedarena.core.plugin import registry as registry_module
from fedarena.core.plugin.interfaces import Aggregator

from conftest import (
    REPO, RESUME_FIELDS, RESUME_ROUNDS, alive, fedarena_command, orphan_workers, read, run_fedarena, tiny_scenario,
    wait_for_rounds, worker_children,
)


def test_run_writes_the_hdf5_contract(tmp_path, write_scenario):
    out = tmp_path / "out.h5"
    path = write_scenario(tiny_scenario(out, rounds=3))
    result = run_fedarena("run", path)
    assert result.returncode == 0, result.stderr
    assert orphan_workers() == []  # the run's own worker is gone with it
    assert f"results written to {out}" in result.stdout
    assert "Traceback" not in result.stderr
    root, data = read(out)
    assert root["status"] == "complete"
    assert root["scenario"] == path.read_text()
    assert root["seed"] == 1 and root["fedarena_version"]
    assert data["metrics/round"].tolist() == [1, 2, 3]
    assert data["metrics/test_accuracy"].shape == data["metrics/test_loss"].shape == (3,)
    for name in ("id", "malicious", "update_norm", "attack_group", "aggregation_weight"):
        assert data[f"clients/{name}"].shape == (3, 4), name
    # Malicious flags agree with the attack groups fixed at the start.
    assignment = data["split/attack_group"]
    assert (assignment >= 0).sum() == 2
    assert (data["clients/malicious"] == (assignment[data["clients/id"]] >= 0)).all()
    assert np.allclose(data["clients/aggregation_weight"].sum(axis=1), 1.0)
    assert data["model/weights"].ndim == 1


def test_existing_output_is_never_overwritten_without_force(tmp_path, write_scenario):
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    path = write_scenario(tiny_scenario(out, rounds=1))
    result = run_fedarena("run", path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {out} already exists; pass --force to overwrite it, or choose another output"
    assert out.read_bytes() == b"precious"
    assert run_fedarena("run", path, "--force").returncode == 0
    assert read(out)[0]["status"] == "complete"


def test_bad_scenario_exits_2_with_the_place_and_no_traceback(tmp_path, write_scenario):
    path = write_scenario(tiny_scenario(tmp_path / "out.h5").replace("aggregator fedavg", "aggregator fedavgg"))
    result = run_fedarena("run", path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == f"{path}:16:14: unknown aggregator 'fedavgg'; did you mean 'fedavg'?"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.h5").exists()


def test_usage_errors_exit_2(tmp_path):
    missing = run_fedarena("run", tmp_path / "nope.fls")
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: {tmp_path / 'nope.fls'}: no such scenario file"
    assert run_fedarena("frobnicate").returncode == 2
    assert run_fedarena("run").returncode == 2


def test_a_bad_backend_is_a_usage_error_before_any_work(tmp_path, write_scenario):
    path = write_scenario(tiny_scenario(tmp_path / "out.h5"))
    both = run_fedarena("run", path, "--backend", "local", "--workers", "127.0.0.1:1")
    assert both.returncode == 2 and "Traceback" not in both.stderr
    assert both.stderr.strip() == (
        "error: --backend local chooses where a run without --workers computes; with --workers, each worker "
        "computes where its own `fedarena worker --backend ...` says")
    env = dict(os.environ, FEDARENA_BACKEND="gpu", TF_CPP_MIN_LOG_LEVEL="3")
    bad = subprocess.run(fedarena_command("run", path), env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: FEDARENA_BACKEND must be one of auto, local, worker, not 'gpu'"
    assert not (tmp_path / "out.h5").exists()


def test_help_explains_the_commands():
    top = run_fedarena("--help")
    assert top.returncode == 0 and "run" in top.stdout and "check" in top.stdout
    run = run_fedarena("run", "--help")
    assert run.returncode == 0 and "--force" in run.stdout and "never overwritten" in run.stdout


def test_check_validates_without_running(tmp_path, write_scenario):
    result = run_fedarena("check", REPO / "scenarios" / "quickstart.fls")
    assert result.returncode == 0
    assert "ok (20 rounds, 20 clients, 4 attackers)" in result.stdout


@attrs.frozen
class Exploding(Aggregator):
    """Averages like FedAvg, but fails inside the TFF computation in round 2."""

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        with tf.control_dependencies([tf.debugging.assert_less(ctx.round, 2, message="boom")]):
            share = weights / tf.reduce_sum(weights)
            return tf.linalg.matvec(updates, share, transpose_a=True), share


class ExplodingPlugin:
    from fedarena import hookimpl

    @staticmethod
    @hookimpl
    def fedarena_register_aggregators(registry):
        registry.add("exploding", Exploding)


def test_a_plugin_failing_mid_run_is_named_and_completed_rounds_are_kept(
    tmp_path, write_scenario, monkeypatch, capsys, tff_context
):
    registry = registry_module.build_registry(extra_plugins=(("exploding", ExplodingPlugin),))
    monkeypatch.setattr(registry_module, "default_registry", lambda: registry)
    before = set(worker_children(os.getpid()))
    out = tmp_path / "out.h5"
    path = write_scenario(tiny_scenario(out, aggregator="exploding"))
    assert cli.main(["run", str(path)]) == 1
    err = capsys.readouterr().err
    (error_line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert error_line.startswith("error: the run failed in round 2: aggregator 'exploding' failed: ")
    assert "boom" in err and err.startswith("fedarena: backend local: "), err
    root, data = read(out)
    assert root["status"] == "failed" and root["rounds_done"] == 1
    assert "aggregator 'exploding' failed" in root["error"]
    assert data["metrics/round"].tolist() == [1]
    assert set(worker_children(os.getpid())) == before


def start_long_run(tmp_path, write_scenario, backend: str):
    """A run of 100,000 rounds under ``backend``, once two rounds are written:
    (process, results file, pid of its TFF worker or None under local)."""
    out = tmp_path / "out.h5"
    path = write_scenario(tiny_scenario(out, rounds=100000))
    process = subprocess.Popen(
        fedarena_command("run", path, "--backend", backend), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    wait_for_rounds(process, out)
    workers = worker_children(process.pid)
    assert len(workers) == (1 if backend == "worker" else 0)
    return process, out, workers[0] if workers else None


BACKENDS = ["local", "worker"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_stop_the_run_keep_rounds_and_leave_no_worker(tmp_path, write_scenario, signum, code, backend):
    process, out, worker = start_long_run(tmp_path, write_scenario, backend)
    process.send_signal(signum)
    assert process.wait(60) == code
    assert "Traceback" not in process.stderr.read()
    assert worker is None or not alive(worker)
    root, data = read(out)
    assert root["status"] == "interrupted" and root["backend"] == backend
    assert root["rounds_done"] >= 2
    assert len(data["metrics/round"]) == data["clients/id"].shape[0] == root["rounds_done"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_leaves_no_worker_and_a_readable_file(tmp_path, write_scenario, backend):
    process, out, worker = start_long_run(tmp_path, write_scenario, backend)
    process.kill()
    process.wait(30)
    deadline = time.monotonic() + 10
    while worker is not None and alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker is None or not alive(worker)
    # fedarena's reader: a kill during HDF5's flush may leave the superblock
    # short, which the reader mends on a copy (docs/results.md).
    from fedarena.core.testing import read_record

    record = read_record(out)
    root, data = record.attrs, record.data
    assert root["status"] == "running"
    done = root["rounds_done"]
    assert done >= 2
    # Every completed round is there; a round being written when the kill
    # landed may show up past rounds_done (docs/results.md), never before it.
    assert data["clients/id"].shape[0] >= done and len(data["metrics/round"]) >= done
    assert data["metrics/round"][:done].tolist() == list(range(1, done + 1))


def test_quickstart_learns_despite_label_flipping(tmp_path):
    out = tmp_path / "quickstart.h5"
    result = run_fedarena("run", REPO / "scenarios" / "quickstart.fls", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "test_accuracy" in result.stdout and f"results written to {out}" in result.stdout
    root, data = read(out)
    assert root["status"] == "complete" and root["rounds_done"] == 20
    assert data["metrics/round"].tolist() == list(range(1, 21))
    assert data["metrics/test_accuracy"][-1] > 0.8
    assert data["clients/id"].shape == (20, 5)
    assert (data["split/attack_group"] >= 0).sum() == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_after_sigkill_gives_the_uninterrupted_run(tmp_path, write_scenario, backend, uninterrupted_run):
    out = tmp_path / "out.h5"
    path = write_scenario(tiny_scenario(out, rounds=RESUME_ROUNDS))
    process = subprocess.Popen(fedarena_command("run", path, "--backend", backend), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    wait_for_rounds(process, out, rounds=5)
    process.kill()
    process.wait(30)
    from fedarena.core.testing import read_record  # mends a file cut during HDF5's flush (docs/results.md)

    root = read_record(out).attrs
    assert root["status"] == "running" and root["rounds_done"] < RESUME_ROUNDS

    resumed = run_fedarena("run", path, "--resume", "--backend", backend)
    assert resumed.returncode == 0, resumed.stderr
    (a_root, a), (b_root, b) = uninterrupted_run(backend), read(out)
    assert b_root["status"] == "complete" and b_root["rounds_done"] == RESUME_ROUNDS
    for name in RESUME_FIELDS:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_resume_refuses_a_different_scenario(tmp_path, write_scenario):
    out = tmp_path / "out.h5"
    assert run_fedarena("run", write_scenario(tiny_scenario(out, rounds=1))).returncode == 0
    other = write_scenario(tiny_scenario(out, rounds=2), "other.fls")
    result = run_fedarena("run", other, "--resume")
    assert result.returncode == 2
    assert "was written by a different scenario text" in result.stderr
