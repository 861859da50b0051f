"""TFF programs built by hand (no fedarena engine) that the executor tests
run under each context and compare: small computations over every
building block and intrinsic kind, and fedarena's round in small."""

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

F32 = np.float32


CLIENTS_F32 = tff.FederatedType(F32, tff.CLIENTS)


SERVER_F32 = tff.FederatedType(F32, tff.SERVER)


@tff.tensorflow.computation(F32, F32)
def multiply(a, b):
    return a * b


@tff.federated_computation(CLIENTS_F32)
def federated_sum(x):
    return tff.federated_sum(x)


@tff.federated_computation(SERVER_F32, CLIENTS_F32)
def broadcast_and_map(g, x):
    return tff.federated_map(multiply, (tff.federated_broadcast(g), x))


ROWS = tff.TensorType(F32, [None])


@tff.tensorflow.computation
def no_rows():
    return tf.zeros([0], F32)


@tff.tensorflow.computation(ROWS, F32)
def append(rows, x):
    return tf.concat([rows, [x]], axis=0)


@tff.tensorflow.computation(ROWS, ROWS)
def merge(a, b):
    return tf.concat([a, b], axis=0)


@tff.tensorflow.computation(ROWS)
def report(rows):
    return {"sorted": tf.sort(rows), "count": tf.size(rows), "any_negative": tf.reduce_any(rows < 0),
            "sum": tf.reduce_sum(rows)}


@tff.federated_computation(CLIENTS_F32)
def aggregate_with_report(x):
    return tff.federated_aggregate(x, no_rows(), append, merge, report)


STRUCT = tff.StructType([("a", np.int64), ("b", np.bool_), ("c", np.str_), ("d", tff.TensorType(np.int32, [2]))])


@tff.tensorflow.computation(STRUCT)
def struct_in_tf(s):
    return {"a": s.a * 2, "b": tf.logical_not(s.b), "c": tf.strings.join([s.c, "!"]), "d": tf.reverse(s.d, [0])}


@tff.federated_computation(tff.StructType([("x", F32), ("y", tff.StructType([np.int32, np.str_]))]))
def struct_and_selection(s):
    return s.y[1], s.x, s.y, (s.y[0], s.x)


TINY = """\
scenario "tiny" {
  seed 3
  rounds 2
  dataset synthetic(samples = 600, features = 8, classes = 3)
  split iid over 6 clients
  model mlp(hidden = [8])
  training {
    clients_per_round 4
    local_epochs 1
    batch_size 16
    optimizer sgd(learning_rate = 0.2)
  }
  attack label_flip(mode = "all_to_one", target = 0) {
    clients 2
  }
  aggregator median
  output "out.h5"
}
"""


def hand_made_round(dim=12, samples=16):
    """fedarena's round in small: clients train (a few gradient steps of a
    linear model on data they make from their id), rows gathered by a
    concatenating aggregate whose report orders them by slot, then a server
    stage on the stacked rows."""
    weights_type = tff.TensorType(F32, [dim])
    client_type = tff.StructType([("slot", np.int32), ("client", np.int32), ("seed", tff.TensorType(np.int64, [2]))])

    @tff.tensorflow.computation(weights_type, client_type)
    def client_train(w, data):
        x = tf.random.stateless_normal([samples, dim], data.seed)
        y = tf.reduce_sum(x, axis=1) * tf.cast(data.client, F32)

        def step(i, v):
            with tf.GradientTape() as tape:
                tape.watch(v)
                loss = tf.reduce_mean((tf.linalg.matvec(x, v) - y) ** 2)
            return i + 1, v - 0.01 * tape.gradient(loss, v)

        _, final = tf.while_loop(lambda i, _: i < 5, step, (0, w))
        return dict(delta=final - w, n=tf.cast(samples, F32), slot=data.slot, client=data.client)

    row_type = client_train.type_signature.result
    names = [n for n, _ in tff.structure.iter_elements(row_type)]
    rows_type = tff.StructType([(n, tff.TensorType(t.dtype, [None, *t.shape]))
                                for n, t in tff.structure.iter_elements(row_type)])

    @tff.tensorflow.computation
    def empty():
        return {n: tf.zeros([0, *t.shape], t.dtype) for n, t in tff.structure.iter_elements(row_type)}

    @tff.tensorflow.computation(rows_type, row_type)
    def append_row(rows, row):
        return {n: tf.concat([rows[n], row[n][None]], 0) for n in names}

    @tff.tensorflow.computation(rows_type, rows_type)
    def merge_rows(a, b):
        return {n: tf.concat([a[n], b[n]], 0) for n in names}

    @tff.tensorflow.computation(rows_type)
    def in_slot_order(rows):
        order = tf.argsort(rows["slot"])
        return {n: tf.gather(rows[n], order) for n in names}

    @tff.tensorflow.computation(weights_type, in_slot_order.type_signature.result, np.int32)
    def server_stage(w, rows, round_number):
        weights = rows["n"] / tf.reduce_sum(rows["n"])
        update = tf.reduce_sum(rows["delta"] * weights[:, None], axis=0)
        return dict(weights=w + update, norms=tf.norm(rows["delta"], axis=1), clients=rows["client"],
                    round=round_number)

    @tff.federated_computation(tff.FederatedType(weights_type, tff.SERVER), tff.FederatedType(np.int32, tff.SERVER),
                               tff.FederatedType(client_type, tff.CLIENTS))
    def run_round(w, round_number, client_data):
        updates = tff.federated_map(client_train, (tff.federated_broadcast(w), client_data))
        rows = tff.federated_aggregate(updates, empty(), append_row, merge_rows, in_slot_order)
        return tff.federated_map(server_stage, tff.federated_zip((w, rows, round_number)))

    inputs = [dict(slot=np.int32(s), client=np.int32(c), seed=np.array([1, c], np.int64))
              for s, c in enumerate([4, 1, 7, 2, 5])]
    return run_round, np.zeros(dim, F32), inputs
