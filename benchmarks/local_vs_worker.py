"""Round time under the in-process executor (`backends.local`) against TFF's
C++ worker, on the CPU.

Two rounds shaped like fedarena's (``federated_map`` of client training
over the clients, a ``federated_aggregate`` that concatenates the update
rows and orders them in its report, a server ``federated_map`` that averages
them into the model); each client reads its own samples from files with
``tf.io.read_file``, as fedarena's clients do:

  mlp  MNIST-shaped synthetic data: 10 clients x 600 samples of 784
       features, MLP 784-200-10, batch 32, one local epoch, SGD 0.05
  cnn  CIFAR-shaped synthetic data: 10 clients x 128 samples of 32x32x3,
       conv3x3(16)-pool-conv3x3(32)-pool-dense(10), batch 32, one epoch

For each: the time to the first round done under each context (compiling
the computation for that context, building its TF functions, the round),
then ``--repeats`` timed rounds interleaved (local, worker, worker, local,
...) from the same weights and clients, the median per-round seconds of
each and the median of the per-pair ratios local/worker.  The two results
are also compared (largest absolute difference of the new weights).

    uv run --locked python benchmarks/local_vs_worker.py [--repeats N] [--only mlp,cnn]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build_round(kind: str, directory: str, clients: int):
    import numpy as np
    import tensorflow as tf
    import tensorflow_federated as tff

    rng = np.random.default_rng(0)
    if kind == "mlp":
        input_shape, samples, batch, lr = (784,), 600, 32, 0.05
        shapes = [(784, 200), (200,), (200, 10), (10,)]
    else:
        input_shape, samples, batch, lr = (32, 32, 3), 128, 32, 0.05
        shapes = [(3, 3, 3, 16), (16,), (3, 3, 16, 32), (32,), (8 * 8 * 32, 10), (10,)]
    sizes = [int(np.prod(s)) for s in shapes]
    dim = sum(sizes)
    for c in range(clients):
        rng.normal(size=(samples, *input_shape)).astype(np.float32).tofile(f"{directory}/x{c}.raw")
        rng.integers(0, 10, size=samples).astype(np.int32).tofile(f"{directory}/y{c}.raw")
    initial = np.concatenate([
        (rng.normal(size=n) * (0.0 if len(s) == 1 else np.sqrt(2.0 / np.prod(s[:-1])))).astype(np.float32)
        for s, n in zip(shapes, sizes)
    ])

    def unflatten(flat):
        parts = tf.split(flat, sizes)
        return [tf.reshape(p, s) for p, s in zip(parts, shapes)]

    def logits_of(weights, x):
        if kind == "mlp":
            w1, b1, w2, b2 = weights
            return tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2) + b2
        k1, b1, k2, b2, w3, b3 = weights
        h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(x, k1, 1, "SAME") + b1), 2, 2, "VALID")
        h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(h, k2, 1, "SAME") + b2), 2, 2, "VALID")
        return tf.matmul(tf.reshape(h, [-1, 8 * 8 * 32]), w3) + b3

    weights_type = tff.TensorType(np.float32, [dim])
    client_type = tff.StructType([("slot", np.int32), ("client", np.int32), ("seed", tff.TensorType(np.int64, [2]))])

    @tff.tensorflow.computation(weights_type, client_type)
    def client_train(flat, data):
        def path(name):
            return tf.strings.join([directory, f"/{name}", tf.strings.as_string(data.client), ".raw"])

        x = tf.reshape(tf.io.decode_raw(tf.io.read_file(path("x")), tf.float32), [-1, *input_shape])
        y = tf.io.decode_raw(tf.io.read_file(path("y")), tf.int32)
        n = tf.shape(y)[0]
        order = tf.argsort(tf.random.stateless_uniform([n], data.seed))
        steps = (n + batch - 1) // batch
        start = unflatten(flat)

        def step(i, weights, loss_sum):
            indices = order[i * batch: tf.minimum((i + 1) * batch, n)]
            with tf.GradientTape() as tape:
                tape.watch(weights)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    tf.gather(y, indices), logits_of(weights, tf.gather(x, indices))))
            grads = tape.gradient(loss, weights)
            return i + 1, [w - lr * g for w, g in zip(weights, grads)], loss_sum + loss

        _, final, loss_sum = tf.while_loop(lambda i, *_: i < steps, step, (0, start, 0.0))
        delta = tf.concat([tf.reshape(a - b, [-1]) for a, b in zip(final, start)], axis=0)
        return dict(delta=delta, n=tf.cast(n, tf.float32), slot=data.slot, loss=loss_sum / tf.cast(steps, tf.float32))

    row_type = client_train.type_signature.result
    fields = list(tff.structure.iter_elements(row_type))
    names = [name for name, _ in fields]
    rows_type = tff.StructType([(name, tff.TensorType(t.dtype, [None, *t.shape])) for name, t in fields])

    @tff.tensorflow.computation
    def no_rows():
        return {name: tf.zeros([0, *t.shape], t.dtype) for name, t in fields}

    @tff.tensorflow.computation(rows_type, row_type)
    def append_row(rows, row):
        return {name: tf.concat([rows[name], row[name][None]], axis=0) for name in names}

    @tff.tensorflow.computation(rows_type, rows_type)
    def merge_rows(a, b):
        return {name: tf.concat([a[name], b[name]], axis=0) for name in names}

    @tff.tensorflow.computation(rows_type)
    def in_slot_order(rows):
        order = tf.argsort(rows["slot"])
        return {name: tf.gather(rows[name], order) for name in names}

    @tff.tensorflow.computation(weights_type, in_slot_order.type_signature.result)
    def server_stage(flat, rows):
        share = rows["n"] / tf.reduce_sum(rows["n"])
        return dict(weights=flat + tf.reduce_sum(rows["delta"] * share[:, None], axis=0), loss=rows["loss"])

    @tff.federated_computation(tff.FederatedType(weights_type, tff.SERVER), tff.FederatedType(client_type, tff.CLIENTS))
    def run_round(flat, client_data):
        updates = tff.federated_map(client_train, (tff.federated_broadcast(flat), client_data))
        rows = tff.federated_aggregate(updates, no_rows(), append_row, merge_rows, in_slot_order)
        return tff.federated_map(server_stage, tff.federated_zip((flat, rows)))

    inputs = [dict(slot=np.int32(c), client=np.int32(c), seed=np.array([1, c], np.int64)) for c in range(clients)]
    return run_round, initial, inputs, dim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per context (default 5)")
    parser.add_argument("--only", default="mlp,cnn", help="workloads, comma-separated (mlp, cnn)")
    parser.add_argument("--clients", type=int, default=10)
    options = parser.parse_args()

    import numpy as np
    import tensorflow as tf
    from tensorflow_federated.python.core.impl.context_stack import context_stack_impl

    from fedarena.core.execution.backends.local import device_summary, local_context

    try:
        from fedarena.core.execution.backends.worker import tff_workers
    except ImportError:  # before the move to core/execution
        from fedarena.core.workers import tff_workers

    print(f"TF {tf.__version__}; local backend runs on: {device_summary()}; "
          f"TFF worker: C++ worker_binary (CPU); {os.cpu_count()} CPU cores")
    started = time.perf_counter()
    with tff_workers():
        print(f"worker start: {time.perf_counter() - started:.2f} s")
        worker = context_stack_impl.context_stack.current
        local = local_context()
        for kind in [k.strip() for k in options.only.split(",") if k.strip()]:
            directory = tempfile.mkdtemp(prefix=f"fedarena-bench-{kind}-")
            try:
                run_round, weights, inputs, dim = build_round(kind, directory, options.clients)

                def one(context):
                    with context_stack_impl.context_stack.install(context):
                        t0 = time.perf_counter()
                        out = run_round(weights, inputs)
                        return time.perf_counter() - t0, out

                first_worker, out_worker = one(worker)
                first_local, out_local = one(local)
                times = {"local": [], "worker": []}
                for i in range(options.repeats):
                    order = [("local", local), ("worker", worker)]
                    for name, context in order if i % 2 == 0 else order[::-1]:
                        times[name].append(one(context)[0])
                ratios = [a / b for a, b in zip(times["local"], times["worker"])]
                difference = float(np.max(np.abs(out_local["weights"] - out_worker["weights"])))
                print(
                    f"[{kind}] {options.clients} clients, d={dim:,}: "
                    f"first round: local {first_local:.2f} s, worker {first_worker:.2f} s | "
                    f"per round (median of {options.repeats}): local {statistics.median(times['local']):.3f} s, "
                    f"worker {statistics.median(times['worker']):.3f} s | "
                    f"local/worker {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}) | "
                    f"max |weights difference| {difference:.2e}"
                )
            finally:
                shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
