"""TFF's executor service over the in-process executor: ``fedarena worker
--backend local``.

TFF's C++ ``worker_binary`` serves TFF's executor service protocol
(``tensorflow_federated.v0.ExecutorGroup``: GetExecutor, CreateValue,
CreateCall, CreateStruct, CreateSelection, Compute, Dispose,
DisposeExecutor) but runs every computation on the CPU.  `ExecutorService`
serves the same protocol from `fedarena.core.execution.backends.local`'s
`LocalExecutor`, which runs TensorFlow computations on TensorFlow's own
runtime, hence on a GPU where there is one.  A fedarena run reaches it as it
reaches TFF's worker: TFF's ``RemoteExecutor`` over a
``RemoteExecutorGrpcStub``, and, for several workers, TFF's mergeable-
computation context, which splits the clients of a round across them.

It follows the C++ service where the protocol leaves a choice:

  * GetExecutor returns one executor per set of cardinalities (its id names
    them, ``clients=4,server=1``), counting the requests for it;
    DisposeExecutor counts one down and drops the executor, and every value
    it holds, at zero.
  * A request naming an executor that does not exist fails with
    FAILED_PRECONDITION, which TFF's client retries after asking for a new
    executor (the service restarted).  No other failure uses a status TFF
    retries (FAILED_PRECONDITION, UNAVAILABLE): a computation that cannot run
    fails at once, its message naming what failed (UNIMPLEMENTED for an
    intrinsic or building block the local executor does not support,
    INVALID_ARGUMENT for a bad value or reference, RESOURCE_EXHAUSTED for
    memory, INTERNAL otherwise).
  * Dispose ignores references it does not hold (values of an executor
    already dropped).

The service has no authentication: whoever reaches it can run code here.
`serve_local` binds exactly the address it is given (loopback by default),
or a Unix socket (``unix:/path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import itertools
import logging
import os
import socket
import sys
import threading
from collections import Counter, OrderedDict
from concurrent import futures

import grpc
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.proto.v0 import computation_pb2, executor_pb2, executor_pb2_grpc

from fedarena.core.errors import RunError
from fedarena.core.execution.backends.local import LocalExecutor, UnsupportedComputationError, device_summary

__all__ = ["ExecutorService", "SERVER_OPTIONS", "build_server", "serve_local", "start_local_service"]

_log = logging.getLogger(__name__)

# As TFF's own channels (and fedarena's, in worker.py) allow up to 2 GB each
# way, the server accepts and sends messages of any size gRPC allows.  And
# no SO_REUSEPORT: a port already taken fails to bind instead of being
# shared with whoever holds it.
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.so_reuseport", 0),
]
_MAX_WORKERS = 16
_MAX_DETAILS = 2000  # a status message travels in trailing metadata (8 KiB at most by default)
_COMPUTATION_CACHE_SIZE = 128
_PLACEMENTS = {p.uri: p for p in (tff.CLIENTS, tff.SERVER)}


class _Failure(Exception):
    """A request that fails with this gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class _Entry:
    """An executor of the service, the values it holds, and how many
    GetExecutor requests it still answers for."""

    __slots__ = ("executor", "values", "refcount", "lock")

    def __init__(self, executor: LocalExecutor):
        self.executor = executor
        self.values: dict = {}
        self.refcount = 1
        self.lock = threading.Lock()


class _ThreadLoop:
    """An event loop of one gRPC handler thread, closed when the thread
    ends (and its thread-local storage with it)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()

    def __del__(self):
        self.loop.close()


_loops = threading.local()


def _run(coroutine):
    """Run one of `LocalExecutor`'s coroutines to its end, on the event
    loop of this (gRPC handler) thread."""
    holder = getattr(_loops, "holder", None)
    if holder is None:
        holder = _loops.holder = _ThreadLoop()
    return holder.loop.run_until_complete(coroutine)


def _status_for(error: BaseException) -> grpc.StatusCode:
    if isinstance(error, _Failure):
        return error.code
    if isinstance(error, (UnsupportedComputationError, NotImplementedError)):
        return grpc.StatusCode.UNIMPLEMENTED
    if isinstance(error, (MemoryError, tf.errors.ResourceExhaustedError)):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(error, (TypeError, ValueError, KeyError, IndexError, tf.errors.InvalidArgumentError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def _describe(error: BaseException) -> str:
    if isinstance(error, _Failure):
        return str(error)
    text = error.message if isinstance(error, tf.errors.OpError) else str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _rpc(method):
    """A servicer method whose failures reach the client as a gRPC status
    whose message names the method and what failed."""
    name = method.__name__

    @functools.wraps(method)
    def handler(self, request, context):
        try:
            return method(self, request)
        except Exception as error:  # every failure becomes the client's status
            code = _status_for(error)
            message = f"fedarena local worker: {name} failed: {_describe(error)}"
            if len(message) > _MAX_DETAILS:
                message = message[: _MAX_DETAILS - 15] + " ... (shortened)"
            if code is grpc.StatusCode.INTERNAL:
                _log.warning("%s", message, exc_info=error)
            else:
                _log.info("%s", message)
            context.abort(code, message)

    return handler


def _empty_federated_type(value_proto: executor_pb2.Value):
    """The TFF type of a federated value with no members (TFF's own
    deserializer refuses one; the mergeable context sends one for a call
    over no clients), read through TFF's public deserializer."""
    carrier = executor_pb2.Value(computation=computation_pb2.Computation(
        type=computation_pb2.Type(federated=value_proto.federated.type),
        reference=computation_pb2.Reference(name="_"),
    ))
    return tff.framework.deserialize_value(carrier)[1]


class ExecutorService(executor_pb2_grpc.ExecutorGroupServicer):
    """TFF's executor service protocol over `LocalExecutor`s (see the
    module's documentation).  Thread-safe: gRPC calls its methods from a
    pool of threads."""

    def __init__(self):
        self._executors: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)  # value ids, unique for the service's life
        self._computations: OrderedDict = OrderedDict()  # digest -> (proto, type)
        self._requested: Counter = Counter()  # executor id -> GetExecutor requests

    # ----------------------------------------------------------------- state

    def stats(self) -> dict:
        """How many executors it has, how many values they hold, and how
        many GetExecutor requests each executor id has had."""
        with self._lock:
            entries = list(self._executors.values())
            requested = dict(self._requested)
        return {"executors": len(entries), "values": sum(len(e.values) for e in entries), "requested": requested}

    def _entry(self, executor_id: executor_pb2.ExecutorId) -> _Entry:
        with self._lock:
            entry = self._executors.get(executor_id.id)
        if entry is None:
            # As TFF's C++ service: retryable, once the client asks for a new
            # executor (GetExecutor).
            raise _Failure(grpc.StatusCode.FAILED_PRECONDITION,
                           f"no executor {executor_id.id!r} (disposed, or the service restarted)")
        return entry

    @staticmethod
    def _value(entry: _Entry, ref: executor_pb2.ValueRef, role: str):
        with entry.lock:
            value = entry.values.get(ref.id)
        if value is None:
            raise _Failure(grpc.StatusCode.NOT_FOUND, f"no value {ref.id!r} (the {role}) in this executor")
        return value

    def _keep(self, entry: _Entry, value) -> executor_pb2.ValueRef:
        value_id = str(next(self._ids))
        with entry.lock:
            entry.values[value_id] = value
        return executor_pb2.ValueRef(id=value_id)

    def _computation(self, value_proto: executor_pb2.Value):
        """A computation and its type, one proto object per distinct
        computation, so that the local executor's compile cache (by proto
        object) finds it again on the next round."""
        digest = hashlib.sha256(value_proto.computation.SerializeToString(deterministic=True)).digest()
        with self._lock:
            found = self._computations.get(digest)
            if found is not None:
                self._computations.move_to_end(digest)
                return found
        proto, type_spec = tff.framework.deserialize_value(value_proto)
        found = proto, type_spec
        with self._lock:
            self._computations[digest] = found
            while len(self._computations) > _COMPUTATION_CACHE_SIZE:
                self._computations.popitem(last=False)
        return found

    def _deserialize(self, value_proto: executor_pb2.Value):
        """``(value, type)`` as TFF's ``deserialize_value`` gives them, but
        also for federated values with no members, at any depth, and with
        computations through `_computation`."""
        which = value_proto.WhichOneof("value")
        if which == "computation" and value_proto.computation.WhichOneof("computation") != "literal":
            return self._computation(value_proto)
        if which == "federated" and not value_proto.federated.value:
            type_spec = _empty_federated_type(value_proto)
            if type_spec.all_equal:
                raise ValueError(f"an all-equal federated value of type {type_spec} with no member value")
            return [], type_spec
        if which == "struct":
            values, types = [], []
            for element in value_proto.struct.element:
                name = element.name or None
                value, type_spec = self._deserialize(element.value)
                values.append((name, value))
                types.append((name, type_spec) if name else type_spec)
            return tff.structure.Struct(values), tff.StructType(types)
        return tff.framework.deserialize_value(value_proto)

    # --------------------------------------------------------------- methods

    @_rpc
    def GetExecutor(self, request):
        cardinalities = {}
        for item in request.cardinalities:
            uri = item.placement.uri
            if uri not in _PLACEMENTS:
                raise _Failure(grpc.StatusCode.INVALID_ARGUMENT, f"unknown placement {uri!r}")
            if item.cardinality < 0:
                raise _Failure(grpc.StatusCode.INVALID_ARGUMENT,
                               f"a negative cardinality for {uri}: {item.cardinality}")
            cardinalities[uri] = item.cardinality
        key = ",".join(f"{uri}={n}" for uri, n in sorted(cardinalities.items()))
        with self._lock:
            self._requested[key] += 1
            entry = self._executors.get(key)
            if entry is None:
                self._executors[key] = _Entry(LocalExecutor({_PLACEMENTS[u]: n for u, n in cardinalities.items()}))
            else:
                entry.refcount += 1
        return executor_pb2.GetExecutorResponse(executor=executor_pb2.ExecutorId(id=key))

    @_rpc
    def CreateValue(self, request):
        entry = self._entry(request.executor)
        value, type_spec = self._deserialize(request.value)
        created = _run(entry.executor.create_value(value, type_spec))
        return executor_pb2.CreateValueResponse(value_ref=self._keep(entry, created))

    @_rpc
    def CreateCall(self, request):
        entry = self._entry(request.executor)
        function = self._value(entry, request.function_ref, "function")
        argument = self._value(entry, request.argument_ref, "argument") if request.HasField("argument_ref") else None
        if not isinstance(function.type_signature, tff.FunctionType):
            raise _Failure(grpc.StatusCode.INVALID_ARGUMENT,
                           f"a call of {request.function_ref.id!r}, a value of type {function.type_signature}, "
                           "not a function")
        result = _run(entry.executor.create_call(function, argument))
        return executor_pb2.CreateCallResponse(value_ref=self._keep(entry, result))

    @_rpc
    def CreateStruct(self, request):
        entry = self._entry(request.executor)
        elements = [(element.name or None, self._value(entry, element.value_ref, f"struct element {i}"))
                    for i, element in enumerate(request.element)]
        result = _run(entry.executor.create_struct(tff.structure.Struct(elements)))
        return executor_pb2.CreateStructResponse(value_ref=self._keep(entry, result))

    @_rpc
    def CreateSelection(self, request):
        entry = self._entry(request.executor)
        source = self._value(entry, request.source_ref, "source")
        if not isinstance(source.type_signature, tff.StructType):
            raise _Failure(grpc.StatusCode.INVALID_ARGUMENT,
                           f"a selection from {request.source_ref.id!r}, a value of type {source.type_signature}, "
                           "not a struct")
        if not 0 <= request.index < len(source.type_signature):
            raise _Failure(grpc.StatusCode.INVALID_ARGUMENT,
                           f"index {request.index} out of range for a struct of {len(source.type_signature)} elements")
        result = _run(entry.executor.create_selection(source, request.index))
        return executor_pb2.CreateSelectionResponse(value_ref=self._keep(entry, result))

    @_rpc
    def Compute(self, request):
        entry = self._entry(request.executor)
        value = self._value(entry, request.value_ref, "value to compute")
        if isinstance(value.type_signature, tff.FunctionType):
            raise _Failure(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{request.value_ref.id!r} is a function ({value.type_signature}): "
                           "it has no value to compute")
        result = _run(value.compute())
        proto, _ = tff.framework.serialize_value(result, value.type_signature)
        return executor_pb2.ComputeResponse(value=proto)

    @_rpc
    def Dispose(self, request):
        entry = self._entry(request.executor)
        with entry.lock:
            for ref in request.value_ref:
                entry.values.pop(ref.id, None)
        return executor_pb2.DisposeResponse()

    @_rpc
    def DisposeExecutor(self, request):
        key = request.executor.id
        with self._lock:
            entry = self._executors.get(key)
            if entry is None:
                raise _Failure(grpc.StatusCode.INVALID_ARGUMENT, f"no executor {key!r} to dispose")
            entry.refcount -= 1
            if entry.refcount <= 0:
                del self._executors[key]
        if entry.refcount <= 0:
            with entry.lock:
                entry.values.clear()
            entry.executor.close()
        return executor_pb2.DisposeExecutorResponse()


# --------------------------------------------------------------------------
# Serving


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _target(host: str, port: int) -> str:
    """The gRPC address to bind: ``unix:/path`` as given, else ``host:port``."""
    if host.startswith("unix:"):
        return host
    return f"{_host_in_url(host)}:{int(port)}"


def build_server(host: str = "127.0.0.1", port: int = 0, max_workers: int = _MAX_WORKERS):
    """A started gRPC server with an `ExecutorService`, bound to exactly
    ``host:port`` (port 0: a free one) or to the Unix socket ``unix:/path``;
    ``(server, service, address)``, ``address`` the gRPC target that reaches
    it.  Raises `RunError` if the address cannot be bound."""
    target = _target(host, port)
    service = ExecutorService()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fedarena-service"),
        options=SERVER_OPTIONS,
    )
    executor_pb2_grpc.add_ExecutorGroupServicer_to_server(service, server)
    try:
        bound = server.add_insecure_port(target)
    except RuntimeError as error:
        bound, reason = 0, f": {error}"
    else:
        reason = ""
    if not bound:
        server.stop(None)
        raise RunError(f"the local-backend worker cannot listen at {target}{reason} (in use, or not an address of "
                       "this machine?)")
    address = target if target.startswith("unix:") else f"{_host_in_url(host)}:{bound}"
    server.start()
    return server, service, address


def _stop(server, grace: float = 2.0) -> None:
    server.stop(grace).wait(grace + 5.0)


def start_local_service(host: str = "127.0.0.1", port: int = 0):
    """An `ExecutorService` serving in the background (gRPC's own threads)
    on a free loopback port, for tests: ``(address, stop)``; ``stop()`` is
    idempotent.  The service object is ``stop.service``."""
    server, service, address = build_server(host, port)
    stopped = threading.Event()

    def stop(grace: float = 1.0) -> None:
        if not stopped.is_set():
            stopped.set()
            _stop(server, grace)

    stop.service = service
    return address, stop


def _addresses_of(host: str) -> list:
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        return []
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def serving_notice(host: str, address: str) -> list[str]:
    """What ``fedarena worker --backend local`` says on stderr about who can
    reach it, and where its computations run."""
    device = f"fedarena worker: local backend: TFF computations run in this process, on {device_summary()}."
    if address.startswith("unix:"):
        reach = (f"fedarena worker: the executor service is reachable through the Unix socket {address[5:]}, by the "
                 "users its file permissions let in; it has no authentication, so any of them can run code through it.")
        return [reach, device]
    addresses = _addresses_of(host)
    if addresses and all(a.is_loopback for a in addresses):
        return [
            f"fedarena: warning: loopback-only: the TFF executor service at {address} is reachable from this "
            f"machine alone, but it has no authentication: any user of this machine can run code as you through "
            f"it. A --host other than a loopback address would let other machines do the same.",
            device,
        ]
    every = any(a.is_unspecified for a in addresses)
    where = (f"port {address.rsplit(':', 1)[1]} of EVERY network interface of this machine" if every
             else f"{address}, an address other machines may reach,")
    return [
        f"fedarena: WARNING: the TFF executor service listens on {where} and has no authentication or "
        f"encryption: anyone who can reach it can run code here as you. Use it only on a trusted network or "
        f"behind a firewall; without --host it listens on 127.0.0.1, this machine only.",
        device,
    ]


def serve_local(host: str = "127.0.0.1", port: int = 0, ready=None) -> None:
    """``fedarena worker --backend local``: TFF's executor service over the
    in-process executor, in the foreground until Ctrl-C or SIGTERM.

    Binds exactly ``host:port`` (127.0.0.1 by default; port 0: a free one),
    or the Unix socket ``host="unix:/path"`` (``port`` unused).  Prints who
    can reach it on stderr, then ``fedarena worker serving at ADDRESS (pid
    N); Ctrl-C to stop`` on stdout, as the C++ worker's ``serve`` does;
    ``ready``, if given, is then called with ADDRESS (or ``set()``, for a
    `threading.Event`).  On SIGINT or SIGTERM it stops the server (in-flight
    calls get 2 s) and raises `fedarena.core.execution.interrupts.Interrupted`
    (a ``KeyboardInterrupt`` with ``signum``), which the CLI's ``main`` turns
    into exit code 130 or 143.  Raises `RunError` if it cannot bind."""
    from fedarena.core.execution import interrupts

    handled = (interrupts.handled() if threading.current_thread() is threading.main_thread()
               else contextlib.nullcontext())
    with handled:
        server, _service, address = build_server(host, port)
        try:
            for line in serving_notice(host, address):
                print(line, file=sys.stderr)
            print(f"fedarena worker serving at {address} (pid {os.getpid()}); Ctrl-C to stop", flush=True)
            if ready is not None:
                ready.set() if hasattr(ready, "set") else ready(address)
            while True:
                interrupts.sleep(0.2)
        finally:
            _stop(server)
            if address.startswith("unix:"):
                with contextlib.suppress(OSError):
                    os.unlink(address[5:])

