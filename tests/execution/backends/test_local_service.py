"""TFF's executor service over the in-process executor
(`fedarena.core.execution.backends.service`, ``fedarena worker --backend
local``): computations through TFF's RemoteExecutor equal the in-process
results, a round split across two services by TFF's mergeable context equals
one process, failures reach the client at once and by name, and the service
listens only where it is told."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.proto.v0 import computation_pb2, executor_pb2, executor_pb2_grpc

from handmade import (
    CLIENTS_F32, SERVER_F32, STRUCT, TINY, aggregate_with_report, broadcast_and_map, federated_sum,
    hand_made_round, struct_and_selection, struct_in_tf,
)
from fedarena.core.errors import RunError
from fedarena.core.execution import interrupts
from fedarena.core.execution.backends.local import local_context
from fedarena.core.execution.backends.service import build_server, serve_local, start_local_service
from fedarena.core.execution.backends.tff_context import execution_context, installed
from fedarena.core.execution.backends.worker import connect

F32 = np.float32
WAIT_S = 30  # no wait below is unbounded


@pytest.fixture(scope="module")
def services():
    started = [start_local_service() for _ in range(2)]
    yield started
    for _, stop in started:
        stop()


@pytest.fixture(scope="module")
def local_ctx():
    return local_context()


@pytest.fixture(scope="module")
def one_ctx(services):
    """TFF's context over one service, as fedarena builds it for one worker."""
    return execution_context([connect(services[0][0], timeout=WAIT_S)])


@pytest.fixture(scope="module")
def two_ctx(services):
    """TFF's mergeable context over both services, as fedarena builds it
    for ``--workers A,B``."""
    return execution_context([connect(address, timeout=WAIT_S) for address, _ in services])


def _under(context, comp, *args, timeout=WAIT_S):
    """``comp(*args)`` under ``context``, in a thread, waited for at most
    ``timeout`` seconds."""
    outcome = {}

    def target():
        try:
            with installed(context):
                outcome["value"] = comp(*args)
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"no answer within {timeout} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _assert_same(a, b, path="result", close=False):
    """Equal values of equal Python/NumPy types, recursively (floats to
    float32 rounding if ``close``)."""
    if isinstance(a, tff.structure.Struct):
        assert isinstance(b, tff.structure.Struct), path
        assert [k for k, _ in tff.structure.iter_elements(a)] == [k for k, _ in tff.structure.iter_elements(b)], path
        for (k, x), (_, y) in zip(tff.structure.iter_elements(a), tff.structure.iter_elements(b)):
            _assert_same(x, y, f"{path}.{k}", close)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{path}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]", close)
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), f"{path}: {a!r} vs {b!r}"
        for key in a:
            _assert_same(a[key], b[key], f"{path}[{key!r}]", close)
    else:
        assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__} ({a!r} vs {b!r})"
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
            if close and a.dtype.kind == "f":
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=path)
            else:
                np.testing.assert_array_equal(a, b, err_msg=path)
        elif close and isinstance(a, np.floating):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6), f"{path}: {a!r} vs {b!r}"
        else:
            assert a == b or (a != a and b != b), f"{path}: {a!r} vs {b!r}"


# --------------------------------------------------------------------------
# Computations


@tff.federated_computation(CLIENTS_F32, CLIENTS_F32)
def means(x, w):
    return tff.federated_mean(x), tff.federated_mean(x, w)


@tff.federated_computation(tff.FederatedType(STRUCT, tff.SERVER), tff.FederatedType(STRUCT, tff.CLIENTS))
def dtypes_round_trip(s, c):
    return tff.federated_map(struct_in_tf, s), tff.federated_map(struct_in_tf, c), c


@tff.federated_computation(SERVER_F32, tff.FederatedType(np.int32, tff.CLIENTS))
def zip_value_eval(g, k):
    return (tff.federated_zip((tff.federated_broadcast(g), k)), tff.federated_value(np.int32(3), tff.CLIENTS),
            tff.federated_eval(tff.tensorflow.computation(lambda: tf.constant(2.0)), tff.SERVER))


@tff.tensorflow.computation(tff.SequenceType(np.int32))
def sequence_total(ds):
    return ds.reduce(np.int32(0), lambda a, b: a + b)


COMPUTATIONS = [
    ("sum", federated_sum, ([1.0, 2.5, -3.0],)),
    ("means", means, ([1.0, 2.0, 4.0], [1.0, 0.0, 3.0])),
    ("broadcast_map", broadcast_and_map, (2.0, [1.0, 2.0, 3.0])),
    ("aggregate_report", aggregate_with_report, ([3.0, -1.0, 2.0, 0.5],)),
    ("dtypes", dtypes_round_trip, (
        dict(a=2**40, b=True, c="hello", d=np.array([1, 2], np.int32)),
        [dict(a=-1, b=False, c=b"x\x00y", d=np.array([5, 6], np.int32)),
         dict(a=3, b=True, c="", d=np.array([0, -7], np.int32))],
    )),
    ("struct_selection", struct_and_selection, (dict(x=1.0, y=(5, "s")),)),
    ("zip_value_eval", zip_value_eval, (1.5, [1, 2])),
    ("sequence", sequence_total, ([1, 2, 3],)),
]


# --------------------------------------------------------------------------
# (1) One service: what the in-process executor computes


@pytest.mark.parametrize("name, comp, args", COMPUTATIONS, ids=[c[0] for c in COMPUTATIONS])
def test_a_computation_through_one_remote_executor_equals_in_process(local_ctx, one_ctx, name, comp, args):
    _assert_same(_under(one_ctx, comp, *args), _under(local_ctx, comp, *args))


def test_known_values_through_the_service(one_ctx):
    assert _under(one_ctx, federated_sum, [1.0, 2.5, -3.0]) == pytest.approx(0.5)
    assert _under(one_ctx, means, [1.0, 2.0, 4.0], [1.0, 0.0, 3.0]) == pytest.approx((7 / 3, 13 / 4))
    assert _under(one_ctx, broadcast_and_map, 2.0, [1.0, 2.0, 3.0]) == [2.0, 4.0, 6.0]
    out = _under(one_ctx, aggregate_with_report, [3.0, -1.0, 2.0, 0.5])
    np.testing.assert_array_equal(out["sorted"], [-1.0, 0.5, 2.0, 3.0])
    assert out["count"] == 4 and out["any_negative"] and out["sum"] == pytest.approx(4.5)


def test_messages_over_grpcs_default_4_mb_limit_go_both_ways(one_ctx):
    big = tff.TensorType(F32, [3_000_000])  # 12 MB each way
    double = tff.tensorflow.computation(lambda x: x * 2.0, big)
    x = np.arange(3_000_000, dtype=F32)
    np.testing.assert_array_equal(_under(one_ctx, double, x), x * 2.0)


def test_a_unix_socket_address(tmp_path):
    address, stop = start_local_service(f"unix:{tmp_path}/worker.sock")
    try:
        assert address == f"unix:{tmp_path}/worker.sock" and os.path.exists(tmp_path / "worker.sock")
        context = execution_context([connect(address, timeout=WAIT_S)])
        assert _under(context, federated_sum, [1.0, 2.0]) == 3.0
    finally:
        stop()


# --------------------------------------------------------------------------
# (2) Two services: TFF's mergeable context splits the clients


def _clients_seen(services):
    """The CLIENTS cardinalities each service was asked for."""
    seen = []
    for _, stop in services:
        counts = set()
        for key in stop.service.stats()["requested"]:
            counts |= {int(part.split("=")[1]) for part in key.split(",") if part.startswith("clients=")}
        seen.append(counts)
    return seen


def test_a_fedarena_shaped_round_across_two_services_equals_one_process(local_ctx, one_ctx, two_ctx, services):
    run_round, w, inputs = hand_made_round()
    expected = _under(local_ctx, run_round, w, np.int32(1), inputs)
    split = _under(two_ctx, run_round, w, np.int32(1), inputs)
    # (Bitwise equal on a CPU; a GPU's reductions need not be deterministic.)
    _assert_same(split, expected, close=True)
    _assert_same(_under(one_ctx, run_round, w, np.int32(1), inputs), expected, close=True)
    # Five clients, split 3 + 2 (TFF's mergeable context fills the first).
    assert {3} <= _clients_seen(services)[0] and {2} <= _clients_seen(services)[1]
    # A second round from the first's weights, the clients in another order.
    expected_2 = _under(local_ctx, run_round, expected["weights"], np.int32(2), inputs[::-1])
    _assert_same(_under(two_ctx, run_round, split["weights"], np.int32(2), inputs[::-1]), expected_2, close=True)
    assert list(expected_2["clients"]) == [4, 1, 7, 2, 5]


def test_sum_mean_and_aggregate_across_two_services(local_ctx, two_ctx):
    for comp, args in [(federated_sum, ([1.0, 2.5, -3.0, 4.0],)), (means, ([1.0, 2.0, 4.0], [1.0, 0.0, 3.0])),
                       (aggregate_with_report, ([3.0, -1.0, 2.0, 0.5, 7.0],))]:
        _assert_same(_under(two_ctx, comp, *args), _under(local_ctx, comp, *args), close=True)
    assert _under(two_ctx, federated_sum, []) == 0.0  # no clients: one service, over none


def _fedarena_run():
    import importlib

    def first(*names):
        errors = []
        for name in names:
            module, _, attribute = name.rpartition(".")
            try:
                return getattr(importlib.import_module(module), attribute)
            except (ImportError, AttributeError) as error:
                errors.append(f"{name}: {error}")
        raise ImportError("; ".join(errors))

    try:
        Run = first("fedarena.core.execution.engine.run.Run", "fedarena.core.engine.Run")
        check = first("fedarena.core.scenario.check.check", "fedarena.core.scenario.sweep.check",
                      "fedarena.core.check.check")
        parse = first("fedarena.core.language.parser.parse", "fedarena.core.language.parse")
        registry = first("fedarena.core.plugin.registry.default_registry", "fedarena.core.registry.default_registry")
        return Run(check(parse(TINY, "tiny.fls"), registry()))
    except ImportError as error:  # the modules are being moved
        pytest.skip(f"fedarena's engine is not importable right now: {error}")


def test_fedarena_tiny_scenario_round_across_two_services_equals_one_process(local_ctx, one_ctx, two_ctx, services):
    run = _fedarena_run()
    try:
        weights = run.model.initial
        state = run.computations.initial_state
        _, _, inputs = run.client_inputs(1)
        info = run.round_info(1, state)
        expected = _under(local_ctx, run.computations.run_round, weights, info, inputs, timeout=120)
        # The first service gets the round as TFF compiles it for one worker
        # (Grappler-optimised), then, with the second, as its mergeable
        # compiler does (not optimised): the same TF functions, under the
        # same names, in two forms, in one TensorFlow runtime.
        got_one = _under(one_ctx, run.computations.run_round, weights, info, inputs, timeout=120)
        got = _under(two_ctx, run.computations.run_round, weights, info, inputs, timeout=120)
        for result in (expected, got_one, got):
            result.pop("stage_seconds", None)  # wall times
        _assert_same(got_one, expected, close=True)
        _assert_same(got, expected, close=True)  # (bitwise equal on a CPU)
        assert {2} <= _clients_seen(services)[0] and {2} <= _clients_seen(services)[1]  # 4 clients: 2 + 2
    finally:
        run.close()


# --------------------------------------------------------------------------
# (3) Failures reach the client at once, by name


def test_an_unsupported_intrinsic_reaches_the_client_by_name_at_once(one_ctx):
    @tff.federated_computation(tff.FederatedType(np.int32, tff.CLIENTS))
    def secure(x):
        return tff.federated_secure_sum_bitwidth(x, 8)

    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        _under(one_ctx, secure, [1, 2, 3])
    assert time.monotonic() - started < 60  # a hang guard, not a speed test
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    details = caught.value.details()
    assert "CreateValue failed" in details and "'federated_secure_sum_bitwidth'" in details, details


def test_a_computation_failing_as_it_runs_reaches_the_client_at_once(one_ctx):
    @tff.tensorflow.computation(F32)
    def finite(x):
        return tf.debugging.check_numerics(x, "x must be finite")

    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        _under(one_ctx, finite, np.float32("nan"))
    assert time.monotonic() - started < 60  # a hang guard, not a speed test
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "CreateCall failed" in caught.value.details() and "x must be finite" in caught.value.details()
    assert _under(one_ctx, finite, 1.0) == 1.0  # the service goes on


def _raw_stub(address):
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=WAIT_S)
    return executor_pb2_grpc.ExecutorGroupStub(channel)


def _cardinalities(clients):
    return [executor_pb2.Cardinality(placement=computation_pb2.Placement(uri="clients"), cardinality=clients)]


def _value(x):
    return tff.framework.serialize_value(np.float32(x), tff.TensorType(F32))[0]


def test_dispose_and_the_executor_lifecycle(services):
    stub = _raw_stub(services[0][0])
    service = services[0][1].service
    call = dict(timeout=WAIT_S)
    first = stub.GetExecutor(executor_pb2.GetExecutorRequest(cardinalities=_cardinalities(97)), **call).executor
    second = stub.GetExecutor(executor_pb2.GetExecutorRequest(cardinalities=_cardinalities(97)), **call).executor
    assert first == second and first.id == "clients=97"  # one executor per cardinalities, counted
    refs = [stub.CreateValue(executor_pb2.CreateValueRequest(executor=first, value=_value(i)), **call).value_ref
            for i in range(3)]
    assert len({r.id for r in refs}) == 3
    before = service.stats()["values"]
    stub.Dispose(executor_pb2.DisposeRequest(executor=first, value_ref=refs[:2]), **call)
    stub.Dispose(executor_pb2.DisposeRequest(executor=first, value_ref=refs[:1]), **call)  # again: ignored
    assert service.stats()["values"] == before - 2
    with pytest.raises(grpc.RpcError) as caught:
        stub.Compute(executor_pb2.ComputeRequest(executor=first, value_ref=refs[0]), **call)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND and refs[0].id in caught.value.details()
    computed = stub.Compute(executor_pb2.ComputeRequest(executor=first, value_ref=refs[2]), **call).value
    assert tff.framework.deserialize_value(computed)[0] == 2.0

    stub.DisposeExecutor(executor_pb2.DisposeExecutorRequest(executor=first), **call)  # one request left
    stub.Compute(executor_pb2.ComputeRequest(executor=first, value_ref=refs[2]), **call)
    stub.DisposeExecutor(executor_pb2.DisposeExecutorRequest(executor=first), **call)
    assert "clients=97" not in [k for k in service._executors]
    assert service.stats()["values"] == before - 3
    with pytest.raises(grpc.RpcError) as caught:  # TFF's client retries this one after a new GetExecutor
        stub.Compute(executor_pb2.ComputeRequest(executor=first, value_ref=refs[2]), **call)
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION and "clients=97" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        stub.DisposeExecutor(executor_pb2.DisposeExecutorRequest(executor=first), **call)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_tffs_remote_executor_disposes_what_it_created(services):
    import asyncio

    stub = connect(services[1][0], timeout=WAIT_S)
    service = services[1][1].service
    executor = tff.framework.RemoteExecutor(stub, dispose_batch_size=1)
    executor.set_cardinalities({tff.CLIENTS: 98})

    async def go():
        values = [await executor.create_value(np.float32(i), tff.TensorType(F32)) for i in range(4)]
        held = service.stats()["values"]
        del values
        return held

    held = asyncio.run(go())
    assert service.stats()["values"] <= held - 3  # the finalizers disposed of them
    executor.close()
    assert not any(k == "clients=98" for k in service._executors)


# --------------------------------------------------------------------------
# (4) It listens only where it is told


def _non_loopback_ipv4() -> list[str]:
    import fcntl
    import ipaddress
    import struct

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


def _listening_on(port: int) -> set[str]:
    """The local addresses of the sockets listening on TCP ``port``, from
    /proc/net/tcp and tcp6 (an IPv4-mapped IPv6 address as IPv4: gRPC binds
    127.0.0.1 as ::ffff:127.0.0.1)."""
    import ipaddress

    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                host, hex_port = fields[1].split(":")
                if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(host)
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # host-order words
                address = ipaddress.ip_address(raw)
                found.add(str(getattr(address, "ipv4_mapped", None) or address))
    return found


def _reachable(host, port) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def test_it_listens_on_loopback_only(services):
    address = services[0][0]
    host, port = address.rsplit(":", 1)
    port = int(port)
    assert host == "127.0.0.1"
    assert _reachable("127.0.0.1", port)
    assert _listening_on(port) == {"127.0.0.1"}
    for other in _non_loopback_ipv4():  # where the machine has one
        assert not _reachable(other, port), other


def test_every_interface_only_when_asked():
    server, _, address = build_server("0.0.0.0", 0)
    try:
        port = int(address.rsplit(":", 1)[1])
        assert address == f"0.0.0.0:{port}" and _listening_on(port) & {"0.0.0.0", "::"}
        for other in _non_loopback_ipv4():
            assert _reachable(other, port), other
    finally:
        server.stop(None)


def test_a_port_in_use_fails_to_bind_instead_of_being_shared(services):
    port = int(services[0][0].rsplit(":", 1)[1])
    with pytest.raises(RunError, match=f"cannot listen at 127.0.0.1:{port}"):
        build_server("127.0.0.1", port)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_local_serves_until_a_signal_then_stops(capfd, signum):
    outcome = {}

    def ready(address):
        def use_then_signal():
            try:
                context = execution_context([connect(address, timeout=WAIT_S)])
                outcome["sum"] = _under(context, federated_sum, [1.0, 2.0])
            finally:
                os.kill(os.getpid(), signum)

        outcome["address"] = address
        threading.Thread(target=use_then_signal, daemon=True).start()

    started = time.monotonic()
    with pytest.raises(interrupts.Interrupted) as caught:
        serve_local("127.0.0.1", 0, ready=ready)
    assert caught.value.signum == signum  # the CLI exits with 128 + signum: 130, 143
    assert time.monotonic() - started < WAIT_S
    assert outcome["sum"] == 3.0
    port = int(outcome["address"].rsplit(":", 1)[1])
    assert not _reachable("127.0.0.1", port)  # stopped
    out, err = capfd.readouterr()
    assert f"fedarena worker serving at {outcome['address']} (pid {os.getpid()}); Ctrl-C to stop\n" in out
    assert "loopback-only" in err and "has no authentication" in err and "local backend" in err


def test_fedarena_worker_backend_local_serves_a_run_and_stops_on_sigterm(tmp_path):
    """`fedarena worker --backend local` end to end: a run sent to it with
    --workers equals the same run in-process; SIGTERM stops it with 143."""
    import signal
    import subprocess

    from conftest import fedarena_command, tiny_scenario
    from fedarena.core.testing import run_text

    worker = subprocess.Popen(fedarena_command("worker", "--backend", "local"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        line = worker.stdout.readline()
        assert line.startswith("fedarena worker serving at 127.0.0.1:"), line + worker.stderr.read()
        address = line.split()[4]
        text = tiny_scenario(rounds=2, aggregator="median")
        remote = run_text(text, tmp_path, name="remote.fls", workers=[address])
        local = run_text(text, tmp_path, name="local.fls", backend="local")
        assert remote.attrs["backend"] == "remote" and remote.status == "complete"
        np.testing.assert_allclose(remote.data["model/weights"], local.data["model/weights"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(remote.data["clients/id"], local.data["clients/id"])
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 143
    finally:
        if worker.poll() is None:
            worker.kill()
