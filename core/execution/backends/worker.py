"""TFF executor workers that fedarena starts, owns and always stops.

TFF 0.87's default execution context starts a C++ ``worker_binary`` on first
use and never stops it: the worker outlives Python and keeps its stdout open.
fedarena instead starts the worker itself, knows its pid, and ends it on every
exit path (normal return, exception, Ctrl-C, SIGTERM).  If our process is
killed with SIGKILL, the kernel ends the worker for us (PR_SET_PDEATHSIG).

The worker binary listens on every network interface, without
authentication.  Where the machine allows it, fedarena runs it in a network
namespace of its own, reached only through a relay listening where fedarena
chooses (`fedarena.core.execution.backends.isolation`): a Unix socket in a private folder for
the worker of a run, the address given to ``fedarena worker``.
``FEDARENA_WORKER_ISOLATION`` (auto, required, off) says what to do where it
is not allowed.

The execution context (`fedarena.core.execution.backends.tff_context`) talks
to the worker through TFF's ``RemoteExecutor``, the same path that reaches
workers on other machines.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedarena.core.errors import RunError, UsageError
# The execution context over the workers is built in `tff_context`, fedarena's
# one door into TFF's private modules; `execution_context` stays importable here.
from fedarena.core.execution.backends.tff_context import execution_context, installed, remote_stub

_PR_SET_PDEATHSIG = 1
_READY_TIMEOUT_S = 60.0
_GRPC_MAX_MESSAGE_BYTES = 2 * 1000 * 1000 * 1000
_GRPC_OPTIONS = [
    ("grpc.max_message_length", _GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _GRPC_MAX_MESSAGE_BYTES),
]


def worker_binary_path() -> Path:
    """Where TFF ships its C++ executor service (found without importing
    TFF, which takes seconds)."""
    import importlib.util

    spec = importlib.util.find_spec("tensorflow_federated")
    if spec is None or not spec.origin:
        raise RunError("tensorflow-federated is not installed")
    path = Path(spec.origin).parent / "data" / "worker_binary"
    if not path.is_file():
        raise RunError(f"TFF's worker binary is missing at {path}; reinstall tensorflow-federated")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGTERM the
    # worker when the process that started it dies, even by SIGKILL.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


ISOLATION_VARIABLE = "FEDARENA_WORKER_ISOLATION"
_ISOLATION_MODES = ("auto", "required", "off")
_STATUS_TIMEOUT_S = 30.0


def isolation_mode() -> str:
    """``FEDARENA_WORKER_ISOLATION``: auto (isolate where the machine allows
    it, else warn), required (fail where it does not) or off."""
    value = os.environ.get(ISOLATION_VARIABLE, "").strip().lower() or "auto"
    if value not in _ISOLATION_MODES:
        raise UsageError(f"{ISOLATION_VARIABLE}={value}: expected one of {', '.join(_ISOLATION_MODES)}")
    return value


class _Unavailable(Exception):
    """Network isolation is not possible on this machine (the reason)."""


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (tells it from a later process
    given the same pid), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class LocalWorker:
    """One ``worker_binary`` process started and owned by this process.

    Isolated where the machine allows it (see `fedarena.core.execution.backends.isolation`):
    the worker then has a network of its own and is reached only through a
    relay listening on ``host:port``, or, with ``private``, on a Unix socket
    in a folder that only this user may enter.  Otherwise the worker listens
    on ``port`` of every network interface, as TFF makes it, and `exposure`
    says why.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", private: bool = False):
        self.host = host
        self.port = port or 0  # the port chosen when it starts, if 0
        self.private = private
        self.process: subprocess.Popen | None = None  # worker_binary itself
        self.isolated = False
        self.exposure: str | None = None  # why the worker is reachable from the network
        self.relay_pid: int | None = None
        self.inner_port: int | None = None  # the worker's port inside its namespace
        self.socket_path: str | None = None
        self.lost_relay = False
        self._relay_started: str | None = None
        self._folder: str | None = None
        self._returncode: int | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="fedarena-worker-", suffix=".log", delete=False)

    @property
    def address(self) -> str:
        """The gRPC target that reaches the worker."""
        if self.socket_path:
            return f"unix:{self.socket_path}"
        return f"{_host_in_url(self.host)}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> "LocalWorker":
        """Start the worker (isolated if possible, see `isolation_mode`);
        raise `RunError` if it cannot be started as asked."""
        try:
            mode = isolation_mode()
            if mode == "off":
                self.exposure = f"isolation is off ({ISOLATION_VARIABLE}=off)"
            else:
                try:
                    return self._start_isolated()
                except _Unavailable as reason:
                    if mode == "required":
                        raise RunError(
                            f"the TFF worker cannot be isolated from the network, and {ISOLATION_VARIABLE}="
                            f"required: {reason}"
                        ) from None
                    self.exposure = f"it could not be isolated: {reason}"
            return self._start_direct()
        except BaseException:
            self.stop()
            raise

    def _start_direct(self) -> "LocalWorker":
        self.socket_path = None
        if self.private:
            self.host = "127.0.0.1"
        self.port = self.port or free_port()
        args = [str(worker_binary_path()), f"--port={self.port}", "--max_concurrent_computation_calls=-1"]
        # Own session: a Ctrl-C at the terminal reaches us, and we stop the
        # worker in order, rather than both racing to die.
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        # Wait until it listens: a gRPC channel's first attempt refused
        # would back off for a second before the next one.
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.005)
        return self

    def _start_isolated(self) -> "LocalWorker":
        # A run's own worker is reached through a Unix socket in a folder only
        # this user may enter (127.0.0.1 would let every local user in);
        # TCP on 127.0.0.1 only if the socket's path would be too long.
        if self.private:
            self._folder = tempfile.mkdtemp(prefix="fedarena-worker-")  # mode 0700
            path = os.path.join(self._folder, "worker.sock")
            if len(os.fsencode(path)) < 100:  # sun_path holds 108 bytes
                self.socket_path = path
        if self.private and not self.socket_path:
            self.host = "127.0.0.1"
        listen = f"unix:{self.socket_path}" if self.socket_path else f"tcp:{_host_in_url(self.host)}:{self.port}"
        from fedarena.core.execution.backends import isolation

        binary = worker_binary_path()
        status, status_w = os.pipe()
        try:
            # `python -m fedarena.core.execution.backends.isolation`, run by its path (-I -S): it
            # needs the standard library only, and so starts without site or
            # fedarena's own imports (40 ms less).  It asks for the
            # death signal itself: no preexec_fn, which would run in a fork
            # of this (threaded) process.
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", isolation.__file__, "--listen", listen, "--status-fd",
                 str(status_w), "--parent", str(os.getpid()), "--", str(binary),
                 "--max_concurrent_computation_calls=-1"],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                pass_fds=(status_w,),
                start_new_session=True,
            )
        finally:
            os.close(status_w)
        try:
            line = _read_line(status, _STATUS_TIMEOUT_S)
        finally:
            os.close(status)
        word, _, rest = line.partition(" ")
        if word == "isolated":
            relay, inner, port = rest.split()
            self.relay_pid, self.inner_port, self.isolated = int(relay), int(inner), True
            self._relay_started = _start_time(self.relay_pid)
            self.port = self.port if self.socket_path else int(port)
            return self
        code = self._wait_ended()
        if word == "unavailable":
            raise _Unavailable(rest)
        if word == "error":
            raise RunError(f"the TFF worker cannot start: {rest}")
        raise RunError(f"the TFF worker exited with code {code} as it started\n{self.log_tail()}")

    def _wait_ended(self) -> int | None:
        """For a relay module that reported failure: it is leaving."""
        process, self.process = self.process, None
        try:
            process.wait(10.0)
        except subprocess.TimeoutExpired:
            pass
        self._returncode = _end(process)
        return self._returncode

    def poll(self) -> int | None:
        """The worker's exit code once it has ended, else None.  A worker
        whose relay has ended cannot be reached: it is stopped, and counts
        as ended (`lost_relay`)."""
        if self.process is None:
            return self._returncode
        code = self.process.poll()
        if code is None and self._relay_started and _start_time(self.relay_pid) != self._relay_started:
            self.lost_relay = True
            code = _end(self.process)
        return code

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process else self._returncode

    def describe_end(self) -> str:
        """How the worker ended, for a message: "exited with code N"."""
        if self.lost_relay:
            return f"lost its relay (pid {self.relay_pid}) and was stopped"
        return f"exited with code {self.returncode}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """End the worker, and its relay, by their pids; idempotent."""
        process, self.process = self.process, None
        if process is not None:
            self._returncode = _end(process, timeout)
        relay, started, self._relay_started = self.relay_pid, self._relay_started, None
        if relay and started:
            # The kernel ends the relay with the worker (its parent); make
            # sure of it, by its pid and start time.
            deadline = time.monotonic() + 5.0
            while _start_time(relay) == started and time.monotonic() < deadline:
                time.sleep(0.005)
            if _start_time(relay) == started:
                with contextlib.suppress(OSError):
                    os.kill(relay, signal.SIGKILL)
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def _end(process: subprocess.Popen, timeout: float = 10.0) -> int:
    """End ``process`` (SIGTERM, then SIGKILL after ``timeout``); its code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _read_line(fd: int, timeout: float) -> str:
    """One line from ``fd``, or what came before its end or the timeout."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


class _Connectivity:
    """Whether a gRPC channel is connected, kept current by gRPC's
    connectivity callback: what TFF's stub reads as ``is_ready``, without
    importing TFF (``fedarena worker`` needs no TensorFlow)."""

    def __init__(self, channel):
        self.is_ready = False
        self._channel = channel  # kept: a collected channel reports nothing
        channel.subscribe(self._changed, try_to_connect=True)

    def _changed(self, state) -> None:
        import grpc

        self.is_ready = state is grpc.ChannelConnectivity.READY


def connect(address: str, process=None, timeout: float = _READY_TIMEOUT_S, make_stub=None):
    """A TFF remote-executor stub for the executor service at ``address``,
    once it answers; fails with a clear message if it never does.
    ``process`` (a `LocalWorker` or a `subprocess.Popen`) is the worker's,
    if it is ours: its end fails at once.  ``make_stub`` (a gRPC channel ->
    an object with ``is_ready``) replaces TFF's stub: `_Connectivity` only
    waits for the service."""
    import grpc

    stub = (make_stub or remote_stub)(grpc.insecure_channel(address, _GRPC_OPTIONS))
    deadline = time.monotonic() + timeout
    delay = 0.002
    while not stub.is_ready:
        if process is not None and process.poll() is not None:
            how = process.describe_end() if isinstance(process, LocalWorker) else (
                f"exited with code {process.returncode}")
            raise RunError(f"TFF worker at {address} {how} before it was ready")
        if time.monotonic() > deadline:
            raise RunError(f"TFF worker at {address} did not answer within {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return stub


class WorkerPool:
    """The workers a command uses, and a health check for long calls: TFF
    retries a call whose worker died, forever; `check` notices instead."""

    def __init__(self, stubs: dict, processes: dict, grace: float = 5.0):
        # ``processes``: address -> our own `LocalWorker` (with ``pid``, ``poll``).
        self.stubs, self.processes, self.grace = stubs, processes, grace
        # The addresses the user gave (empty when the workers are our own).
        self.given = [address for address in stubs if address not in processes]
        # What the results file records as the run's backend.
        self.backend = "remote" if self.given else "worker"
        self._down_since: dict[str, float] = {}

    @property
    def addresses(self) -> list[str]:
        return list(self.stubs)

    def check(self) -> None:
        """Raise `RunError` naming a worker that has stopped answering."""
        now = time.monotonic()
        for address, stub in self.stubs.items():
            process = self.processes.get(address)
            if process is not None and process.poll() is not None:
                how = process.describe_end() if isinstance(process, LocalWorker) else (
                    f"exited with code {process.returncode}")
                raise RunError(f"the TFF worker at {address} {how}")
            if stub.is_ready:
                self._down_since.pop(address, None)
            elif now - self._down_since.setdefault(address, now) > self.grace:
                raise RunError(
                    f"the TFF worker at {address} stopped answering; start it again and continue with --resume"
                )


def exposure_warning(worker: LocalWorker) -> str:
    """The one line a run prints when its own worker is reachable from the
    network (not isolated)."""
    return (
        f"fedarena: warning: the local TFF worker listens on port {worker.port} of every network interface, "
        f"without authentication: anyone who can reach this machine can run code through it while this command "
        f"runs; {worker.exposure}; see {ISOLATION_VARIABLE} in the README"
    )


@contextlib.contextmanager
def tff_workers(addresses: list[str] | None = None):
    """Install a TFF execution context for the duration of the block.

    With no addresses, start one local worker, private to this command
    where the machine allows it, and stop it on the way out, whatever the
    way out is.  Yields the `WorkerPool` in use.
    """
    started: list[LocalWorker] = []
    try:
        if addresses:
            stubs = {address: connect(address) for address in addresses}
        else:
            worker = LocalWorker(private=True)
            started.append(worker)
            worker.start()
            if worker.exposure:
                print(exposure_warning(worker), file=sys.stderr, flush=True)
            try:
                stubs = {worker.address: connect(worker.address, worker)}
            except RunError as error:
                raise RunError(f"{error}\n{worker.log_tail()}") from None
        pool = WorkerPool(stubs, {w.address: w for w in started})
        context = execution_context(list(stubs.values()))
        with installed(context):
            yield pool
    finally:
        for worker in started:
            worker.stop()


def _addresses_of(host: str) -> list:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        return []
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only loopback addresses of this machine."""
    addresses = _addresses_of(host)
    return bool(addresses) and all(a.is_loopback for a in addresses)


def serving_notice(worker: LocalWorker) -> list[str]:
    """What ``fedarena worker`` says, on stderr, about who can reach it."""
    port = worker.port
    if worker.isolated and is_loopback(worker.host):
        return [
            f"fedarena worker: loopback-only: the TFF worker is reachable at {worker.address} from this machine "
            f"alone; it has no authentication, so any user of this machine can run code through it."
        ]
    if worker.isolated:
        addresses = _addresses_of(worker.host)
        where = (
            f"port {port} of EVERY network interface of this machine"
            if any(a.is_unspecified for a in addresses)
            else f"{worker.address}, an address other machines may reach,"
        )
        return [
            f"WARNING: the TFF worker listens on {where} and has no authentication or encryption: anyone who can "
            f"reach it can run code here. Use it only on a trusted network or behind a firewall."
        ]
    lines = [
        f"WARNING: the TFF worker listens on port {port} of EVERY network interface of this "
        f"machine and has no authentication or encryption: anyone who can reach the port can run "
        f"code here. Use it only on a trusted network or behind a firewall.",
        f"WARNING: --host cannot narrow that: {worker.exposure}; see {ISOLATION_VARIABLE} in the README.",
    ]
    if not is_loopback(worker.host):
        lines.append(f"WARNING: advertising {worker.host}, which is not a loopback address.")
    return lines


def serve(host: str, port: int) -> int:
    """``fedarena worker``: one owned worker in the foreground until a stop
    is requested (Ctrl-C or SIGTERM); then it is stopped by its pid.

    Isolated, the worker is reachable only at ``host:port`` (127.0.0.1 by
    default); otherwise TFF's binary listens on every interface."""
    from fedarena.core.execution import interrupts

    worker = LocalWorker(port=port or None, host=host)
    try:
        worker.start()
        if worker.isolated:
            unspecified = any(a.is_unspecified for a in _addresses_of(host))
            local = f"127.0.0.1:{worker.port}" if unspecified else worker.address
        else:
            local = f"127.0.0.1:{worker.port}"
        connect(local, worker, make_stub=_Connectivity)
        for line in serving_notice(worker):
            print(line, file=sys.stderr)
        print(f"fedarena worker serving at {worker.address} (pid {worker.pid}); Ctrl-C to stop", flush=True)
        while worker.poll() is None:
            interrupts.sleep(0.2)
        print(f"error: the TFF worker {worker.describe_end()}\n{worker.log_tail()}", file=sys.stderr)
        return 1
    finally:
        worker.stop()
