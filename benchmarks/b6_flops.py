"""B6: the physical limit: achieved GFLOP/s of B1's round, of the plain loop,
of grouped (batched) multi-client training, and of large matrix products;
and where the framework round's time goes.

FLOP count (training an MLP): 6 x parameters x samples per epoch (forward
2 x P x n, backward 4 x P x n, the bias terms counted like weights; the ReLU,
softmax and SGD update are not counted).  B1's round: P = 159,010, 20 x 600
samples -> 11.4 GFLOP.  Matrix products: 2 m k n FLOP.

Where the time goes:
- ``RoundResult.seconds`` of the framework round (client stage, which holds
  TFF dispatch and the gather, then attack, detection, aggregation);
- the plain per-client loop written twice: batches stepped by a
  ``tf.range`` loop (the baseline) and by ``tf.data.Dataset.batch().reduce``
  (the batch loop the engine's client computation had until commit f63426f
  moved it to a ``tf.while_loop``), same numbers;
- one empty TFF computation call (per-call overhead of the executor);
- grouped training: the 20 clients' weights stacked into one [20, ...] model
  stepped together by ``einsum`` (each client's update stays its own;
  checked against the per-client loop): the hand-written bound of what
  batching the clients can give.  The engine's own grouped training
  (training setting ``client_group``, `engine/cohort.py`) is timed against
  its per-client path by benchmarks/cohort.py.
"""

from __future__ import annotations

import common


def plain_variants(run, epoch_dtype, batch=common.BATCH, learning_rate=common.LEARNING_RATE):
    """The per-client epoch with a tf.data reduce batch loop, and the grouped
    (stacked) epoch of all clients at once."""
    import numpy as np
    import tensorflow as tf

    model = run.model
    sizes, shapes, dim = model.sizes, model.shapes, model.dim

    def forward_loss(weights, bx, by):
        h = tf.nn.relu(tf.matmul(bx, weights[0]) + weights[1])
        logits = tf.matmul(h, weights[2]) + weights[3]
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(by, logits))

    def shuffled(seed, n):
        key = tf.random.experimental.stateless_fold_in(seed, tf.constant(0, epoch_dtype))
        return tf.argsort(tf.random.stateless_uniform([n], key))

    @tf.function(input_signature=[tf.TensorSpec([dim], tf.float32), tf.TensorSpec([None, common.FEATURES], tf.float32),
                                  tf.TensorSpec([None], tf.int32), tf.TensorSpec([2], tf.int64)])
    def tf_data_epoch(flat, cx, cy, seed):
        start = tuple(tf.reshape(p, s) for p, s in zip(tf.split(flat, sizes), shapes))

        def step(weights, index):
            with tf.GradientTape() as tape:
                tape.watch(weights)
                loss = forward_loss(weights, tf.gather(cx, index), tf.gather(cy, index))
            grads = tape.gradient(loss, weights)
            return tuple(w - learning_rate * g for w, g in zip(weights, grads))

        order = shuffled(seed, tf.shape(cy)[0])
        final = tf.data.Dataset.from_tensor_slices(order).batch(batch).reduce(start, step)
        return tf.concat([tf.reshape(w, [-1]) for w in final], 0) - flat

    @tf.function(input_signature=[tf.TensorSpec([dim], tf.float32), tf.TensorSpec([None, None, common.FEATURES], tf.float32),
                                  tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, 2], tf.int64)])
    def grouped_epoch(flat, gx, gy, seeds):
        # Every client of the group starts from the same global weights.
        groups, n = tf.shape(gy)[0], tf.shape(gy)[1]
        weights = [tf.tile(tf.reshape(p, s)[None], [groups] + [1] * len(s)) for p, s in zip(tf.split(flat, sizes), shapes)]
        orders = tf.map_fn(lambda s: shuffled(s, n), seeds, fn_output_signature=tf.int32)
        for i in tf.range((n + batch - 1) // batch):
            index = orders[:, i * batch : (i + 1) * batch]
            bx, by = tf.gather(gx, index, batch_dims=1), tf.gather(gy, index, batch_dims=1)
            with tf.GradientTape() as tape:
                tape.watch(weights)
                h = tf.nn.relu(tf.einsum("gbi,gio->gbo", bx, weights[0]) + weights[1][:, None])
                logits = tf.einsum("gbi,gio->gbo", h, weights[2]) + weights[3][:, None]
                # Summed over clients: each client's gradient is that of its own mean loss.
                loss = tf.reduce_sum(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(by, logits), axis=1))
            grads = tape.gradient(loss, weights)
            weights = [w - learning_rate * g for w, g in zip(weights, grads)]
        return tf.concat([tf.reshape(w, [groups, -1]) for w in weights], 1) - flat[None]

    return tf_data_epoch, grouped_epoch


def gflops_of_matmul(m, k, n, calls, repeats):
    """GFLOP/s of ``calls`` chained m x k by k x n products inside one
    tf.function, measured ``repeats`` times."""
    import time

    import tensorflow as tf

    a = tf.random.normal([m, k])
    b = tf.random.normal([k, n]) / k**0.5

    @tf.function
    def chain():
        total = tf.zeros([m, n])
        for _ in tf.range(calls):
            total += tf.matmul(a, b)
        return total

    chain().numpy()
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        chain().numpy()
        rates.append(2.0 * m * k * n * calls / (time.perf_counter() - started) / 1e9)
    return rates


def main(quick: bool = False) -> list[dict]:
    import numpy as np
    import tensorflow as tf
    import tensorflow_federated as tff

    from fedarena.core.execution.engine.run import Run
    from fedarena.core.execution.backends.worker import tff_workers

    repeats = 4 if quick else 8
    with tff_workers():
        run = Run(common.make_scenario(common.scenario_text()))
        try:
            plain = common.PlainTF(run)
            tf_data_epoch, grouped_epoch = plain_variants(run, plain.epoch_dtype)

            @tff.tensorflow.computation
            def empty():
                return tf.constant(0.0)

            def ids_inputs(round_number):
                ids, _, inputs = run.client_inputs(round_number)
                return ids, np.stack([i["seed"] for i in inputs])

            def tf_data_round(weights, round_number):
                ids, seeds = ids_inputs(round_number)
                return [tf_data_epoch(weights, plain.x[c], plain.y[c], s).numpy() for c, s in zip(ids, seeds)]

            def grouped_round(weights, round_number):
                ids, seeds = ids_inputs(round_number)
                gx, gy = tf.stack([plain.x[c] for c in ids]), tf.stack([plain.y[c] for c in ids])
                return grouped_epoch(weights, gx, gy, seeds).numpy()

            weights = run.model.initial
            ids, seeds = ids_inputs(1)
            solo = np.stack([plain.local_epoch(weights, plain.x[c], plain.y[c], s).numpy() for c, s in zip(ids, seeds)])
            grouped_diff = float(np.abs(grouped_round(weights, 1) - solo).max())
            tf_data_diff = float(np.abs(np.stack(tf_data_round(weights, 1)) - solo).max())
            empty()

            fw, base, results, _ = common.paired_rounds(run, plain.round, repeats)
            tf_data_s, grouped_s, empty_s = [], [], []
            for i in range(repeats):
                tf_data_s.append(common.timed(tf_data_round, weights, i + 1)[0])
                grouped_s.append(common.timed(grouped_round, weights, i + 1)[0])
                empty_s.append(common.timed(empty)[0])
            samples = float(sum(run.clients.sizes))
        finally:
            run.close()
    flop = 6.0 * run.model.dim * samples
    big = gflops_of_matmul(2048, 2048, 2048, 4, 3 if quick else 5)
    small = gflops_of_matmul(32, 784, 200, 2000, 3 if quick else 5)
    stages = common.stage_medians(results)
    per_round = lambda times: [flop / t / 1e9 for t in times]  # noqa: E731
    plain_median = common.summary(base)["median"]
    return [
        common.result("B6", "framework round", per_round(fw), None, unit=" GFLOP/s",
                      flop_per_round=flop, stages_s=stages,
                      note=f"{flop / 1e9:.2f} GFLOP per round (6 x {run.model.dim:,} parameters x {samples:,.0f} samples); "
                           f"round {common.fmt_seconds(fw)}; stages (median s): "
                           + ", ".join(f"{k} {v:.4f}" for k, v in stages.items())),
        common.result("B6", "plain TF per-client loop", per_round(base), None, unit=" GFLOP/s",
                      note=f"round {common.fmt_seconds(base)}"),
        common.result("B6", "plain TF, tf.data reduce loop", per_round(tf_data_s), None, unit=" GFLOP/s",
                      note=f"client work only {common.fmt_seconds(tf_data_s)} (the engine's batch loop before f63426f; "
                           f"{common.summary(tf_data_s)['median'] / plain_median:.2f}x the tf.range loop); "
                           f"same updates to {tf_data_diff:.1e}"),
        common.result("B6", "grouped 20 clients (einsum)", per_round(grouped_s), None, unit=" GFLOP/s",
                      note=f"client work only {common.fmt_seconds(grouped_s)}; every client's update equals its solo "
                           f"update to {grouped_diff:.1e}; hand-written (the engine's: benchmarks/cohort.py)"),
        common.result("B6", "matmul 2048x2048x2048", big, None, unit=" GFLOP/s"),
        common.result("B6", "matmul 32x784 by 784x200", small, None, unit=" GFLOP/s"),
        common.result("B6", "empty TFF call", empty_s, None, unit=" s"),
    ]


if __name__ == "__main__":
    common.emit(main(common.quick_flag()))
