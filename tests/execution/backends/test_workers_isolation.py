"""TFF's worker in a network namespace of its own (issue #9): reachable only
through fedarena's relay, on exactly the address chosen; a clear warning
where the machine does not allow it; and no relay or worker left behind."""

import fcntl
import ipaddress
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import alive, fedarena_command, orphan_workers, run_fedarena, tiny_scenario
from fedarena.core.cli import main as cli
from fedarena.core.execution.backends import isolation
from fedarena.core.execution.backends import worker as workers
from fedarena.core.errors import RunError
from fedarena.core.execution.backends.worker import ISOLATION_VARIABLE, LocalWorker

FAKE = isolation.FAKE_UNSHARE_ERRNO


def _available() -> bool:
    env = {k: v for k, v in os.environ.items() if k != FAKE}
    check = subprocess.run([sys.executable, "-I", isolation.__file__, "--check"], env=env, capture_output=True)
    return check.returncode == 0


isolated_only = pytest.mark.skipif(not _available(), reason="this machine does not allow user namespaces")


@pytest.fixture(autouse=True)
def the_cpp_worker(monkeypatch):
    """Isolation concerns TFF's C++ worker: every run and `fedarena worker`
    here uses that backend (the environment reaches the commands started)."""
    monkeypatch.setenv("FEDARENA_BACKEND", "worker")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    monkeypatch.delenv(FAKE, raising=False)
    monkeypatch.delenv(ISOLATION_VARIABLE, raising=False)


def non_loopback_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback ones."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                reply = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:
                continue
            address = socket.inet_ntoa(reply[20:24])
            if not ipaddress.ip_address(address).is_loopback:
                found.append(address)
    return found


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def net_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def wait_gone(*pids: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids), [pid for pid in pids if alive(pid)]


# --- isolated -------------------------------------------------------------


@isolated_only
def test_the_worker_is_reachable_through_its_relay_only(monkeypatch):
    monkeypatch.setenv(ISOLATION_VARIABLE, "required")
    worker = LocalWorker().start()
    relay = worker.relay_pid
    try:
        assert worker.isolated and worker.exposure is None and worker.address == f"127.0.0.1:{worker.port}"
        assert net_namespace(worker.pid) != net_namespace(os.getpid())
        assert children(worker.pid) == [worker.relay_pid]
        workers.connect(worker.address, worker, timeout=20)  # TFF answers through the relay
        assert not reachable("127.0.0.1", worker.inner_port)
        for address in non_loopback_addresses():
            assert not reachable(address, worker.port), address
            assert not reachable(address, worker.inner_port), address
    finally:
        worker.stop()
    assert not alive(relay)


@isolated_only
def test_a_run_reaches_its_worker_through_a_socket_only_its_user_may_open(monkeypatch):
    monkeypatch.setenv(ISOLATION_VARIABLE, "required")
    worker = LocalWorker(private=True).start()
    relay = worker.relay_pid
    try:
        path = worker.socket_path
        assert worker.address == f"unix:{path}"
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert not reachable("127.0.0.1", worker.inner_port)
        workers.connect(worker.address, worker, timeout=20)
    finally:
        worker.stop()
    wait_gone(worker.pid or 0, relay)
    assert not os.path.exists(os.path.dirname(path))


ECHO = textwrap.dedent("""\
    import socket, sys
    port = int(sys.argv[-1].split("=")[1])
    server = socket.create_server(("127.0.0.1", port))
    while True:
        client, _ = server.accept()
        while data := client.recv(1 << 16):
            client.sendall(data)
        client.close()
""")


@isolated_only
def test_the_relay_passes_bytes_both_ways_unchanged_and_the_end_of_stream(tmp_path):
    echo = tmp_path / "echo.py"
    echo.write_text(ECHO)
    read, write = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-I", isolation.__file__, "--listen", "tcp:127.0.0.1:0", "--status-fd", str(write),
         "--parent", str(os.getpid()), "--", sys.executable, str(echo)], pass_fds=(write,),
    )
    os.close(write)
    try:
        word, relay, _, port = os.read(read, 200).decode().split()
        assert word == "isolated"
        payload, back = os.urandom(24 << 20), bytearray()
        with socket.create_connection(("127.0.0.1", int(port))) as client:

            def send():
                client.sendall(payload)
                client.shutdown(socket.SHUT_WR)  # the echo sees the end, ends its side too

            sender = threading.Thread(target=send)
            sender.start()
            while chunk := client.recv(1 << 20):
                back += chunk
            sender.join()
        assert back == payload
    finally:
        os.close(read)
        process.terminate()
        process.wait(10)
    wait_gone(int(relay))


@isolated_only
def test_a_scenario_runs_end_to_end_through_the_relay(tmp_path, write_scenario, monkeypatch):
    monkeypatch.setenv(ISOLATION_VARIABLE, "required")
    out = tmp_path / "out.h5"
    result = run_fedarena("run", write_scenario(tiny_scenario(out, rounds=2)), "--progress", "none")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower()
    assert f"results written to {out}" in result.stdout
    assert orphan_workers() == []


def start_fedarena_worker(*args: str, **env: str):
    process = subprocess.Popen(
        fedarena_command("worker", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env),
    )
    line = process.stdout.readline()
    assert line.startswith("fedarena worker serving at "), line + process.stderr.read()
    pid = int(line.rsplit("(pid ", 1)[1].split(")")[0])
    return process, line, pid


def stop_fedarena_worker(process) -> list[str]:
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 130
    return [line for line in process.stderr.read().splitlines() if line]


@isolated_only
def test_fedarena_worker_is_loopback_only_by_default():
    port = workers.free_port()
    process, line, pid = start_fedarena_worker("--port", port)
    relay = children(pid)
    assert len(relay) == 1
    assert line == f"fedarena worker serving at 127.0.0.1:{port} (pid {pid}); Ctrl-C to stop\n"
    assert net_namespace(pid) != net_namespace(os.getpid())
    for address in non_loopback_addresses():
        assert not reachable(address, port), address
    assert stop_fedarena_worker(process) == [
        f"fedarena worker: loopback-only: the TFF worker is reachable at 127.0.0.1:{port} from this machine "
        f"alone; it has no authentication, so any user of this machine can run code through it.",
        "stopped by SIGINT",
    ]
    wait_gone(pid, *relay)


@isolated_only
def test_fedarena_worker_on_every_interface_warns_loudly():
    port = workers.free_port()
    process, line, pid = start_fedarena_worker("--host", "0.0.0.0", "--port", port)
    relay = children(pid)
    assert line == f"fedarena worker serving at 0.0.0.0:{port} (pid {pid}); Ctrl-C to stop\n"
    for address in non_loopback_addresses():
        assert reachable(address, port), address
    assert stop_fedarena_worker(process) == [
        f"WARNING: the TFF worker listens on port {port} of EVERY network interface of this machine and has no "
        f"authentication or encryption: anyone who can reach it can run code here. Use it only on a trusted "
        f"network or behind a firewall.",
        "stopped by SIGINT",
    ]
    wait_gone(pid, *relay)


# --- where namespaces are not allowed -------------------------------------

SIMULATED = f"unshare: Operation not permitted (simulated by {FAKE})"


def test_without_namespaces_a_run_says_once_that_its_worker_is_exposed(monkeypatch, capsys):
    monkeypatch.setenv(FAKE, "EPERM")
    with workers.tff_workers() as pool:
        (worker,) = pool.processes.values()
        assert not worker.isolated and worker.relay_pid is None
        assert net_namespace(worker.pid) == net_namespace(os.getpid())
    assert capsys.readouterr().err.splitlines() == [
        f"fedarena: warning: the local TFF worker listens on port {worker.port} of every network interface, "
        f"without authentication: anyone who can reach this machine can run code through it while this command "
        f"runs; it could not be isolated: {SIMULATED}; see FEDARENA_WORKER_ISOLATION in the README"
    ]
    wait_gone(worker.pid or 0)


def test_isolation_off_gives_the_old_worker_and_says_so(monkeypatch):
    monkeypatch.setenv(ISOLATION_VARIABLE, "off")
    worker = LocalWorker(private=True).start()
    try:
        assert not worker.isolated and worker.address == f"127.0.0.1:{worker.port}"
        assert worker.exposure == "isolation is off (FEDARENA_WORKER_ISOLATION=off)"
        assert net_namespace(worker.pid) == net_namespace(os.getpid())
    finally:
        worker.stop()


def test_required_isolation_fails_clearly_where_it_is_not_allowed(tmp_path, write_scenario, monkeypatch):
    monkeypatch.setenv(FAKE, "EPERM")
    monkeypatch.setenv(ISOLATION_VARIABLE, "required")
    with pytest.raises(RunError, match="cannot be isolated"):
        LocalWorker().start()
    result = run_fedarena("run", write_scenario(tiny_scenario(tmp_path / "out.h5", rounds=1)))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: the TFF worker cannot be isolated from the network, and FEDARENA_WORKER_ISOLATION=required: "
        f"{SIMULATED}"
    )
    assert "Traceback" not in result.stderr
    assert orphan_workers() == []


def test_a_bad_isolation_setting_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv(ISOLATION_VARIABLE, "maybe")
    assert cli.main(["worker"]) == 2
    assert capsys.readouterr().err == (
        "error: FEDARENA_WORKER_ISOLATION=maybe: expected one of auto, required, off\n"
    )


def test_fedarena_worker_without_namespaces_warns_loudly_why():
    port = workers.free_port()
    process, line, pid = start_fedarena_worker("--port", port, **{FAKE: "EPERM"})
    assert net_namespace(pid) == net_namespace(os.getpid())
    assert stop_fedarena_worker(process) == [
        f"WARNING: the TFF worker listens on port {port} of EVERY network interface of this machine and has no "
        f"authentication or encryption: anyone who can reach the port can run code here. Use it only on a "
        f"trusted network or behind a firewall.",
        f"WARNING: --host cannot narrow that: it could not be isolated: {SIMULATED}; see "
        f"FEDARENA_WORKER_ISOLATION in the README.",
        "stopped by SIGINT",
    ]
    wait_gone(pid)


# --- lifetimes ----------------------------------------------------------------

PARENT = textwrap.dedent("""\
    import time
    from fedarena.core.execution.backends.worker import LocalWorker
    worker = LocalWorker(private=True).start()
    print(worker.pid, worker.relay_pid, flush=True)
    time.sleep(120)
""")


@isolated_only
def test_sigkill_of_the_parent_leaves_no_relay_and_no_worker():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        worker, relay = map(int, parent.stdout.readline().split())
        assert alive(worker) and alive(relay)
        assert children(parent.pid) == [worker] and children(worker) == [relay]
    finally:
        parent.kill()
        parent.wait()
    wait_gone(worker, relay)


@isolated_only
def test_a_worker_whose_relay_dies_counts_as_ended_and_is_stopped(monkeypatch):
    monkeypatch.setenv(ISOLATION_VARIABLE, "required")
    worker = LocalWorker(private=True).start()
    pid, relay = worker.pid, worker.relay_pid
    try:
        assert worker.poll() is None
        os.kill(relay, signal.SIGKILL)
        wait_gone(relay)
        assert worker.poll() is not None
        assert worker.describe_end() == f"lost its relay (pid {relay}) and was stopped"
        assert not alive(pid)
    finally:
        worker.stop()


@isolated_only
def test_stopping_ends_the_worker_then_its_relay(monkeypatch):
    monkeypatch.setenv(ISOLATION_VARIABLE, "required")
    worker = LocalWorker(private=True).start()
    pid, relay = worker.pid, worker.relay_pid
    worker.stop()
    assert not alive(pid) and not alive(relay)
    worker.stop()  # idempotent
