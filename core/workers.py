"""TFF executor workers that fedarena starts, owns and always stops.

TFF 0.87's default execution context starts a C++ ``worker_binary`` on first
use and never stops it: the worker outlives Python and keeps its stdout open.
fedarena instead starts the worker itself, knows its pid, and ends it on every
exit path (normal return, exception, Ctrl-C, SIGTERM).  If our process is
killed with SIGKILL, the kernel ends the worker for us (PR_SET_PDEATHSIG).

The execution context talks to the worker through TFF's ``RemoteExecutor``,
the same path that reaches workers on other machines.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from fedarena.core.errors import RunError

_PR_SET_PDEATHSIG = 1
_READY_TIMEOUT_S = 60.0
_GRPC_MAX_MESSAGE_BYTES = 2 * 1000 * 1000 * 1000
_GRPC_OPTIONS = [
    ("grpc.max_message_length", _GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _GRPC_MAX_MESSAGE_BYTES),
]


def worker_binary_path() -> Path:
    """Where TFF ships its C++ executor service."""
    import tensorflow_federated

    path = Path(tensorflow_federated.__file__).parent / "data" / "worker_binary"
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


class LocalWorker:
    """One ``worker_binary`` process started and owned by this process."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="fedarena-worker-", suffix=".log", delete=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> "LocalWorker":
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
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """End the worker by its pid; idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)


def connect(address: str, process: subprocess.Popen | None = None, timeout: float = _READY_TIMEOUT_S):
    """A TFF remote-executor stub for the executor service at ``address``,
    once it answers; fails with a clear message if it never does."""
    import grpc
    from tensorflow_federated.python.core.impl.executors import remote_executor_grpc_stub

    channel = grpc.insecure_channel(address, _GRPC_OPTIONS)
    stub = remote_executor_grpc_stub.RemoteExecutorGrpcStub(channel)
    deadline = time.monotonic() + timeout
    while not stub.is_ready:
        if process is not None and process.poll() is not None:
            raise RunError(f"TFF worker at {address} exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RunError(f"TFF worker at {address} did not answer within {timeout:.0f} s")
        time.sleep(0.05)
    return stub


def execution_context(stubs):
    """A synchronous TFF execution context over remote executor stubs.

    One stub gives TFF's ordinary context; several give the mergeable-
    computation context, which splits the clients of a call across them.
    """
    from tensorflow_federated.python.core.backends.native import compiler, mergeable_comp_compiler
    from tensorflow_federated.python.core.environments.tensorflow_frontend import tensorflow_computation
    from tensorflow_federated.python.core.impl.execution_contexts import (
        async_execution_context,
        mergeable_comp_execution_context,
        sync_execution_context,
    )
    from tensorflow_federated.python.core.impl.executor_stacks import python_executor_stacks
    from tensorflow_federated.python.core.impl.executors import remote_executor
    from tensorflow_federated.python.core.impl.types import placements

    def factory_for(stub):
        def stack_fn(cardinalities):
            # A call with no CLIENTS argument still needs a cardinality.
            cardinalities.setdefault(placements.CLIENTS, 0)
            executor = remote_executor.RemoteExecutor(stub)
            executor.set_cardinalities(cardinalities)
            return executor

        return python_executor_stacks.ResourceManagingExecutorFactory(executor_stack_fn=stack_fn)

    common = dict(
        transform_args=tensorflow_computation.transform_args,
        transform_result=tensorflow_computation.transform_result,
    )
    if len(stubs) == 1:
        return sync_execution_context.SyncExecutionContext(
            executor_fn=factory_for(stubs[0]), compiler_fn=compiler.desugar_and_transform_to_native, **common
        )
    async_contexts = [
        async_execution_context.AsyncExecutionContext(
            executor_fn=factory_for(stub), compiler_fn=compiler.transform_to_native_form, **common
        )
        for stub in stubs
    ]
    return mergeable_comp_execution_context.MergeableCompExecutionContext(
        async_contexts=async_contexts, compiler_fn=mergeable_comp_compiler.compile_to_mergeable_comp_form
    )


class WorkerPool:
    """The workers a command uses, and a health check for long calls: TFF
    retries a call whose worker died, forever; `check` notices instead."""

    def __init__(self, stubs: dict, processes: dict, grace: float = 5.0):
        self.stubs, self.processes, self.grace = stubs, processes, grace
        # The addresses the user gave (empty when the workers are our own).
        self.given = [address for address in stubs if address not in processes]
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
                raise RunError(f"the TFF worker at {address} exited with code {process.returncode}")
            if stub.is_ready:
                self._down_since.pop(address, None)
            elif now - self._down_since.setdefault(address, now) > self.grace:
                raise RunError(
                    f"the TFF worker at {address} stopped answering; start it again and continue with --resume"
                )


@contextlib.contextmanager
def tff_workers(addresses: list[str] | None = None):
    """Install a TFF execution context for the duration of the block.

    With no addresses, start one local worker and stop it on the way out,
    whatever the way out is.  Yields the `WorkerPool` in use.
    """
    from tensorflow_federated.python.core.impl.context_stack import context_stack_impl

    started: list[LocalWorker] = []
    try:
        if addresses:
            stubs = {address: connect(address) for address in addresses}
        else:
            worker = LocalWorker().start()
            started.append(worker)
            try:
                stubs = {worker.address: connect(worker.address, worker.process)}
            except RunError as error:
                raise RunError(f"{error}\n{worker.log_tail()}") from None
        pool = WorkerPool(stubs, {w.address: w.process for w in started})
        context = execution_context(list(stubs.values()))
        with context_stack_impl.context_stack.install(context):
            yield pool
    finally:
        for worker in started:
            worker.stop()


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(host: str, port: int) -> int:
    """``fedarena worker``: one owned worker in the foreground until a stop
    is requested (Ctrl-C or SIGTERM); then it is stopped by its pid."""
    import sys

    from fedarena.core import interrupts

    worker = LocalWorker(port=port or None, host=host).start()
    try:
        connect(f"127.0.0.1:{worker.port}", worker.process)
        # TFF's worker binary has no option to choose its listening address:
        # it listens on every interface of this machine, whatever --host says.
        print(
            f"WARNING: the TFF worker listens on port {worker.port} of EVERY network interface of this "
            f"machine and has no authentication or encryption: anyone who can reach the port can run "
            f"code here. Use it only on a trusted network or behind a firewall.",
            file=sys.stderr,
        )
        if host not in LOOPBACK:
            print(f"WARNING: advertising {host}, which is not a loopback address.", file=sys.stderr)
        print(f"fedarena worker serving at {worker.address} (pid {worker.pid}); Ctrl-C to stop", flush=True)
        while worker.process.poll() is None:
            interrupts.sleep(0.2)
        print(f"error: the TFF worker exited with code {worker.process.returncode}\n{worker.log_tail()}",
              file=sys.stderr)
        return 1
    finally:
        worker.stop()
