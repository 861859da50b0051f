"""The local executor's ``federated_aggregate`` and what it keeps alive
(`fedarena.core.execution.backends.local`): any accumulate/merge evaluated
member by member in order; an aggregate marked `STACKED_ROWS` (fedarena's
gather) stacked in one concatenation with the same bits; a block's values
dropped once no later local reads them; a map read only by the gather
computed client by client, each row freed once stacked (benchmark B4)."""

from __future__ import annotations

import os
import weakref

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.core.impl.compiler import building_blocks

from fedarena.core.execution.backends import local
from fedarena.core.execution.backends.local import STACKED_ROWS, UnsupportedComputationError, local_backend
from fedarena.core.execution.engine.computations import Gather, build_gather

F32 = np.float32


@pytest.fixture(scope="module")
def local_ctx():
    with local_backend() as context:
        yield context


@pytest.fixture
def tf_calls(monkeypatch):
    """Every TensorFlow computation the local executor calls: (function, argument, result)."""
    calls = []
    original = local._TensorFlowFunction.call

    def call(self, arg, rt):
        result = original(self, arg, rt)
        calls.append((self, arg, result))
        return result

    monkeypatch.setattr(local._TensorFlowFunction, "call", call)
    return calls


# An order-sensitive accumulate: digits appended in base 10 (Horner), and a
# merge that agrees with it; the report reads both fields.
DIGITS = tff.StructType([("h", F32), ("n", np.int32)])


@tff.tensorflow.computation
def no_digits():
    return {"h": tf.constant(0.0), "n": tf.constant(0)}


@tff.tensorflow.computation(DIGITS, F32)
def append_digit(acc, x):
    return {"h": acc["h"] * 10.0 + x, "n": acc["n"] + 1}


@tff.tensorflow.computation(DIGITS, DIGITS)
def merge_digits(a, b):
    return {"h": a["h"] * tf.pow(10.0, tf.cast(b["n"], F32)) + b["h"], "n": a["n"] + b["n"]}


@tff.tensorflow.computation(DIGITS)
def digits_report(acc):
    return acc["h"] + 0.5 * tf.cast(acc["n"], F32)


@tff.federated_computation(tff.FederatedType(F32, tff.CLIENTS))
def horner(x):
    return tff.federated_aggregate(x, no_digits(), append_digit, merge_digits, digits_report)


def test_a_custom_accumulate_runs_member_by_member_in_client_order(local_ctx):
    assert horner([1.0, 2.0, 3.0]) == 123.0 + 1.5
    assert horner([3.0, 2.0, 1.0]) == 321.0 + 1.5
    assert horner([]) == 0.0


def _concatenating_gather(row_type, field: str) -> Gather:
    """build_gather's parts with the accumulator's one field named ``field``
    (another name than STACKED_ROWS: an ordinary aggregate)."""
    rows_type = tff.TensorType(row_type.dtype, [None, *row_type.shape])
    held = tff.StructType([(field, rows_type)])

    @tff.tensorflow.computation
    def zero():
        return {field: tf.zeros([0, *row_type.shape], row_type.dtype)}

    @tff.tensorflow.computation(held, row_type)
    def accumulate(rows, row):
        return {field: tf.concat([rows[field], row[None]], axis=0)}

    @tff.tensorflow.computation(held, held)
    def merge(a, b):
        return {field: tf.concat([a[field], b[field]], axis=0)}

    @tff.tensorflow.computation(held)
    def report(rows):
        return rows[field]

    return Gather(zero, accumulate, merge, report)


def test_a_stacked_rows_aggregate_gives_the_bits_of_one_accumulate_per_client(local_ctx, tf_calls):
    row = tff.TensorType(F32, [4])
    stacked, plain = _concatenating_gather(row, STACKED_ROWS), _concatenating_gather(row, "rows")
    values = np.random.default_rng(0).standard_normal((7, 4)).astype(F32)
    values[1, 2], values[3, 0], values[5, 1] = np.nan, -0.0, np.inf

    def gathered(gather):
        return np.asarray(tff.federated_computation(gather, tff.FederatedType(row, tff.CLIENTS))(list(values)))

    tf_calls.clear()
    by_stacking = gathered(stacked)
    stacking_calls = len(tf_calls)
    tf_calls.clear()
    by_accumulating = gathered(plain)
    assert by_stacking.view(np.uint32).tolist() == by_accumulating.view(np.uint32).tolist() \
        == values.view(np.uint32).tolist()
    # zero and report only, against zero, report and one accumulate per client
    assert (stacking_calls, len(tf_calls)) == (2, 2 + len(values))


@pytest.mark.parametrize("slots", [[0, 1, 2, 3], [2, 0, 3, 1]])
def test_the_gather_stacks_rows_in_slot_order(local_ctx, slots):
    row = tff.StructType([("slot", np.int32), ("value", tff.TensorType(F32, [2]))])
    gather = build_gather(row)
    out = tff.federated_computation(gather, tff.FederatedType(row, tff.CLIENTS))(
        [dict(slot=np.int32(s), value=np.array([s, 10 * s], F32)) for s in slots])
    np.testing.assert_array_equal(out["slot"], [0, 1, 2, 3])
    np.testing.assert_array_equal(out["value"], [[0, 0], [1, 10], [2, 20], [3, 30]])


def test_the_gather_of_blocks_stacks_every_block_in_slot_order(local_ctx):
    block = tff.StructType([("slot", tff.TensorType(np.int32, [None])), ("value", tff.TensorType(F32, [None, 2]))])
    gather = build_gather(block, blocks=True)
    blocks = [dict(slot=np.array([2, 3], np.int32), value=np.array([[2, 20], [3, 30]], F32)),
              dict(slot=np.array([], np.int32), value=np.zeros([0, 2], F32)),
              dict(slot=np.array([0, 1], np.int32), value=np.array([[0, 0], [1, 10]], F32))]
    out = tff.federated_computation(gather, tff.FederatedType(block, tff.CLIENTS))(blocks)
    np.testing.assert_array_equal(out["slot"], [0, 1, 2, 3])
    np.testing.assert_array_equal(out["value"], [[0, 0], [1, 10], [2, 20], [3, 30]])


def test_a_stacked_rows_mark_on_members_that_are_not_rows_is_refused_at_once(local_ctx):
    wide = tff.TensorType(F32, [None, 2])
    held = tff.StructType([(STACKED_ROWS, wide)])

    @tff.tensorflow.computation
    def zero():
        return {STACKED_ROWS: tf.zeros([0, 2])}

    @tff.tensorflow.computation(held, F32)
    def accumulate(rows, x):
        return {STACKED_ROWS: rows[STACKED_ROWS] + x}

    @tff.tensorflow.computation(held, held)
    def merge(a, b):
        return {STACKED_ROWS: tf.concat([a[STACKED_ROWS], b[STACKED_ROWS]], 0)}

    @tff.tensorflow.computation(held)
    def report(rows):
        return rows[STACKED_ROWS]

    @tff.federated_computation(tff.FederatedType(F32, tff.CLIENTS))
    def misuse(x):
        return tff.federated_aggregate(x, zero(), accumulate, merge, report)

    with pytest.raises(UnsupportedComputationError) as raised:
        misuse([1.0])
    assert str(raised.value) == (
        "federated_aggregate marked 'fedarena_stacked_rows' with members of type float32 "
        "that are not rows of float32[?,2]"
    )


# A block drops a value once no later local reads it.

def test_each_local_is_dropped_after_its_last_reader():
    f32 = tff.TensorType(F32)

    @tff.tensorflow.computation(F32)
    def add_one(x):
        return x + 1.0

    add = add_one.to_building_block()
    ref = lambda name: building_blocks.Reference(name, f32)  # noqa: E731
    block = building_blocks.Block(
        [("a", building_blocks.Call(add, ref("x"))), ("b", building_blocks.Call(add, ref("a"))),
         ("unread", building_blocks.Call(add, ref("x"))), ("c", building_blocks.Call(add, ref("b"))),
         ("d", building_blocks.Struct([ref("a"), ref("c")]))],
        ref("c"),
    )
    assert local._dead_after(block.proto.block) == [[], [], ["unread"], ["b"], ["a", "d"]]
    lam = building_blocks.Lambda("x", f32, block)
    rebinding = building_blocks.Block(
        [("a", building_blocks.Call(add, ref("x"))),
         ("g", building_blocks.Lambda("unused", f32, ref("a"))),
         ("a", building_blocks.Call(add, ref("a")))],
        building_blocks.Struct([ref("a"), building_blocks.Call(building_blocks.Reference("g", lam.type_signature), ref("x"))]),
    )
    assert local._dead_after(rebinding.proto.block) == [[], [], []]


def test_client_rows_are_freed_before_the_server_stage_runs(local_ctx):
    row = tff.StructType([("slot", np.int32), ("delta", tff.TensorType(F32, [3]))])
    gather = build_gather(row)

    @tff.tensorflow.computation(tff.TensorType(F32, [3]), np.int32)
    def client(weights, slot):
        return {"slot": slot, "delta": weights * tf.cast(slot + 1, F32)}

    @tff.tensorflow.computation(tff.TensorType(F32, [3]), gather.rows_type)
    def server(weights, rows):
        return {"total": weights + tf.reduce_sum(rows["delta"], axis=0)}

    @tff.federated_computation(tff.FederatedType(tff.TensorType(F32, [3]), tff.SERVER),
                               tff.FederatedType(np.int32, tff.CLIENTS))
    def round_(weights, slots):
        rows = gather(tff.federated_map(client, (tff.federated_broadcast(weights), slots)))
        return tff.federated_map(server, tff.federated_zip((weights, rows)))

    alive_at_server = []
    rows_made = []

    def watch(self, arg, rt):  # before each call: how many client deltas are still alive
        alive_at_server.append(sum(r() is not None for r in rows_made))
        result = watched(self, arg, rt)
        if isinstance(result, tff.structure.Struct) and "delta" in tff.structure.name_list(result) \
                and result["delta"].shape.rank == 1:  # a client's row, not the stacked rows
            rows_made.append(weakref.ref(result["delta"]))
        return result

    watched = local._TensorFlowFunction.call
    local._TensorFlowFunction.call = watch
    try:
        out = round_(np.ones(3, F32), [0, 1, 2, 3])
    finally:
        local._TensorFlowFunction.call = watched
    np.testing.assert_array_equal(out["total"], [11.0, 11.0, 11.0])
    assert len(rows_made) == 4
    # the server stage is the last call: by then no client's delta is held
    assert alive_at_server[-1] == 0


# A map read only by a marked aggregate is computed client by client into
# the stacked matrix.

def _client_round(gather, client, extra=None):
    """``(weights@SERVER, slots@CLIENTS) -> (rows@SERVER[, extra(mapped)])``:
    ``client`` mapped over the clients, its results gathered."""
    weights_type = client.type_signature.parameter[0]

    @tff.federated_computation(tff.FederatedType(weights_type, tff.SERVER),
                               tff.FederatedType(client.type_signature.parameter[1], tff.CLIENTS))
    def round_(weights, slots):
        mapped = tff.federated_map(client, (tff.federated_broadcast(weights), slots))
        if extra is None:
            return gather(mapped)
        return gather(mapped), extra(mapped)

    return round_


ROW = tff.StructType([("slot", np.int32), ("delta", tff.TensorType(F32, [3]))])


@tff.tensorflow.computation(tff.TensorType(F32, [3]), np.int32)
def scaled_row(weights, slot):
    return {"slot": slot, "delta": weights * tf.cast(slot + 1, F32)}


def _watch_client_rows(monkeypatch):
    """Before each call of ``scaled_row``: how many rows it made are alive."""
    alive_before, made = [], []
    original = local._TensorFlowFunction.call
    client_fn = None

    def call(self, arg, rt):
        nonlocal client_fn
        result = original(self, arg, rt)
        is_client = isinstance(result, tff.structure.Struct) and "delta" in tff.structure.name_list(result) \
            and result["delta"].shape.rank == 1
        if is_client:
            alive_before.append(sum(r() is not None for r in made))
            made.append(weakref.ref(result["delta"]))
        return result

    monkeypatch.setattr(local._TensorFlowFunction, "call", call)
    return alive_before, made


def test_each_clients_row_is_freed_once_stacked_before_the_next_is_computed(local_ctx, monkeypatch):
    alive_before, made = _watch_client_rows(monkeypatch)
    out = _client_round(build_gather(ROW), scaled_row)(np.array([1, 2, -3], F32), [0, 1, 2, 3])
    np.testing.assert_array_equal(out["slot"], [0, 1, 2, 3])
    np.testing.assert_array_equal(out["delta"], [[1, 2, -3], [2, 4, -6], [3, 6, -9], [4, 8, -12]])
    assert len(made) == 4
    assert alive_before == [0, 0, 0, 0]  # every row made so far is gone when the next one is made


def test_a_map_with_another_reader_is_computed_whole_and_read_by_both(local_ctx, monkeypatch):
    alive_before, made = _watch_client_rows(monkeypatch)

    @tff.tensorflow.computation(ROW)
    def delta_of(row):
        return row["delta"]

    def total(mapped):
        return tff.federated_sum(tff.federated_map(delta_of, mapped))

    rows, summed = _client_round(build_gather(ROW), scaled_row, total)(np.array([1, 2, -3], F32), [0, 1, 2])
    np.testing.assert_array_equal(rows["delta"], [[1, 2, -3], [2, 4, -6], [3, 6, -9]])
    np.testing.assert_array_equal(summed, [6, 12, -18])
    assert alive_before == [0, 1, 2]  # all rows made before either reader runs


def test_streamed_rows_keep_every_bit_and_the_client_order(local_ctx):
    row = tff.StructType([("slot", np.int32), ("delta", tff.TensorType(F32, [4])), ("n", np.int64)])
    values = np.random.default_rng(1).standard_normal((6, 4)).astype(F32)
    values[0, 1], values[2, 3], values[4, 0], values[5, 2] = np.nan, -0.0, -np.inf, np.float32(1e-45)

    @tff.tensorflow.computation(tff.TensorType(F32, [6, 4]), np.int32)
    def pick(all_rows, slot):
        return {"slot": slot, "delta": tf.identity(all_rows[slot]), "n": tf.cast(slot, tf.int64) * 7}

    slots = [5, 3, 0, 1, 4, 2]  # out of slot order: the report reorders the stacked rows
    out = _client_round(build_gather(row), pick)(values, slots)
    np.testing.assert_array_equal(out["slot"], np.arange(6))
    assert out["delta"].view(np.uint32).tolist() == values.view(np.uint32).tolist()
    np.testing.assert_array_equal(out["n"], 7 * np.arange(6))


def test_streaming_no_clients_gives_the_zero_rows(local_ctx):
    out = _client_round(build_gather(ROW), scaled_row)(np.ones(3, F32), [])
    assert out["delta"].shape == (0, 3) and out["slot"].shape == (0,)


def test_only_a_map_read_once_by_a_streamable_marked_aggregate_is_streamed():
    row, block = tff.TensorType(F32, [2]), tff.TensorType(F32, [None, 2])
    rows_gather, blocks_gather = build_gather(row), build_gather(block, blocks=True)
    plain = _concatenating_gather(row, "rows")

    @tff.tensorflow.computation(F32)
    def to_row(x):
        return tf.fill([2], x)

    @tff.tensorflow.computation(F32)
    def to_block(x):
        return tf.fill([1, 2], x)

    def locals_streamed(fn):
        comp = tff.federated_computation(fn, tff.FederatedType(F32, tff.CLIENTS))
        proto = comp.to_building_block().proto
        body = getattr(proto, "lambda").result
        assert body.WhichOneof("computation") == "block"
        return [body.block.local[i].value.call.function.intrinsic.uri for i in sorted(local._streamed_maps(body.block))]

    assert locals_streamed(lambda x: rows_gather(tff.federated_map(to_row, x))) == ["federated_map"]
    assert locals_streamed(lambda x: plain(tff.federated_map(to_row, x))) == []
    assert locals_streamed(lambda x: blocks_gather(tff.federated_map(to_block, x))) == []

    def read_twice(x):
        mapped = tff.federated_map(to_row, x)
        return rows_gather(mapped), rows_gather(mapped)

    assert locals_streamed(read_twice) == []


def test_a_streamed_row_of_another_shape_is_refused_by_name(local_ctx):
    ragged_row = tff.TensorType(F32, [None])
    held = tff.StructType([(STACKED_ROWS, tff.TensorType(F32, [None, None]))])

    @tff.tensorflow.computation
    def zero():
        return {STACKED_ROWS: tf.zeros([0, 1])}

    @tff.tensorflow.computation(held, ragged_row)
    def accumulate(rows, row):
        return {STACKED_ROWS: tf.concat([rows[STACKED_ROWS], row[None]], axis=0)}

    @tff.tensorflow.computation(held, held)
    def merge(a, b):
        return {STACKED_ROWS: tf.concat([a[STACKED_ROWS], b[STACKED_ROWS]], axis=0)}

    @tff.tensorflow.computation(held)
    def report(rows):
        return rows[STACKED_ROWS]

    @tff.tensorflow.computation(tff.TensorType(F32, [3]), np.int32)
    def ragged(weights, slot):
        return tf.fill([slot + 1], weights[0])

    with pytest.raises(local.LocalExecutionError) as raised:
        _client_round(Gather(zero, accumulate, merge, report), ragged)(np.ones(3, F32), [0, 1])
    assert str(raised.value) == ("federated_aggregate cannot stack a row of shape (2,) and type float32 "
                                 "onto rows of shape (1,) and type float32")


def test_a_streamed_map_computes_each_client_once_and_refuses_a_second_reading():
    from types import SimpleNamespace

    calls = []
    fn = SimpleNamespace(call=lambda item, rt: calls.append(item) or item * 10)
    mapped = local._MappedLater(fn, SimpleNamespace(all_equal=False, items=[1, 2, 3]))
    rt = SimpleNamespace(clients=3)
    results = mapped.results(rt)
    assert calls == []  # nothing computed before the aggregate asks
    assert next(results) == 10 and calls == [1]
    assert list(results) == [20, 30] and calls == [1, 2, 3]
    with pytest.raises(local.LocalExecutionError, match="a federated_map streamed into an aggregate was read twice"):
        next(mapped.results(rt))
