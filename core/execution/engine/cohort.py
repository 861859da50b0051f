"""Cohort training: a group of the round's sampled clients trained together
in one batched step, every client's update still its own (training setting
``client_group``).

A TFF client value is then a group of up to ``client_group`` clients, in
consecutive slots (`group_inputs`), so ``--workers`` splits groups across
machines as it splits clients.  The group's client work
(`build_cohort_work`) returns one row per client: a block that the gather
(`build_gather` with ``blocks``) concatenates into the same ``[K, d]``
matrix, in slot order, as the per-client path; the server stage, attacks,
detectors and aggregators see exactly what they see without groups.

Each client of a group trains as it would alone (`local_training`):

- its own samples, poisoned by its own attack group (`data_poisoning`), in
  its own shuffles (`client_order` from its seed);
- its own mini-batches of ``batch_size``, as many steps as alone: the group
  steps in lockstep, each client taking at step i the batch it would take
  at its own step i; a client past its last step stops: ``tf.where`` keeps
  its weights, statistics and optimizer state as they were;
- batches are padded to the group's widest one, but a padded position never
  enters a loss: a client's loss is the mean cross-entropy over its real
  samples only (the loss of `FlatModel.loss`, written per sample);
- models with running statistics (BatchNorm) couple the samples of a batch
  through its moments, where padding would count: a client whose batch is
  partial this step (at most once per epoch) is stepped alone, on its real
  samples, inside the same graph;
- the optimizer steps the stacked ``[G, ...]`` weights: TFF's optimizers
  are elementwise, so each client's slice moves as alone; their per-weight
  state is stacked too (see `_stacked_optimizer_state`), and the one scalar
  they keep (Adam's step count) is in lockstep every stepping client's own.
- FedSGD: one batch's gradient each; FedBN: each client starts from its own
  ``local_norm`` values and returns the ones it reached.

A step is vectorised over the group: each client's forward pass and loss
(`FlatModel.forward`, a Keras model through TFF's converter or a `Network`)
under ``tf.vectorized_map``, then one gradient of the sum of the clients'
losses with respect to the stacked weights, whose slice for each client is
the gradient of that client's own loss.  (Taking each client's gradient
inside ``tf.vectorized_map`` instead fails for convolutions: TF's
vectorisation of ``Conv2DBackpropFilter`` falls back to a loop that TF
itself cannot run.)  The clients' convolutions, each with its own filters,
are one grouped convolution (`vectorised_per_client`), for Keras models and
`Network`s alike; its gradient is TF's own.

Not the same as alone: a model drawing random numbers in its forward pass
(dropout) draws them differently.  No built-in model does.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import numpy as np

from fedarena.core.execution.engine.client_store import ClientStore
from fedarena.core.execution.engine.computations import CLIENT_FIELDS, client_order, data_poisoning
from fedarena.core.execution.engine.flat_model import FlatModel
from fedarena.core.scenario.roles import Role


def group_type(local_size: int = 0):
    """The TFF type of a group's input: every field of `client_type` with a
    first axis of one entry per client of the group."""
    import tensorflow_federated as tff

    fields = CLIENT_FIELDS + ((("local_norm", np.float32, [local_size]),) if local_size else ())
    return tff.StructType([(name, tff.TensorType(dtype, [None, *shape])) for name, dtype, shape in fields])


def group_inputs(inputs: list[dict], size: int) -> list[dict]:
    """The round's client inputs (in slot order) as groups of ``size``
    consecutive clients, each field stacked; the last group may be smaller."""
    return [{name: np.stack([given[name] for given in inputs[first : first + size]]) for name in inputs[first]}
            for first in range(0, len(inputs), size)]


def _stacked(tensors, count):
    """In TF: ``count`` copies of each tensor, stacked on a new first axis."""
    import tensorflow as tf

    return tuple(tf.tile(t[None], [count] + [1] * len(t.shape)) for t in tensors)


def _flatten_rows(tensors):
    """In TF: stacked tensors ``[G, ...]`` -> one row per client, ``[G, sum of sizes]``."""
    import tensorflow as tf

    return tf.concat([tf.reshape(t, [tf.shape(t)[0], -1]) for t in tensors], axis=1)


def _per_client(mask, tensor):
    """``mask`` ``[G]`` shaped to broadcast over a stacked tensor ``[G, ...]``."""
    import tensorflow as tf

    return tf.reshape(mask, [-1] + [1] * (len(tensor.shape) - 1))


def _stacked_optimizer_state(optimizer, shapes, count):
    """In TF: the optimizer's initial state for ``count`` stacked clients,
    and for each of its leaves whether it is per weight (stacked: a client
    that stops keeps its own) or shared (a scalar, such as a step count).
    A leaf is per weight when it changes shape with the weights."""
    import tensorflow as tf

    alone = optimizer.initialize(tuple(tf.TensorSpec(s, tf.float32) for s in shapes))
    lifted = optimizer.initialize(tuple(tf.TensorSpec((1, *s), tf.float32) for s in shapes))

    def shape(value):
        return tuple(value.shape) if hasattr(value, "shape") else ()

    per_weight = tf.nest.map_structure(lambda a, b: shape(a) != shape(b), alone, lifted)
    state = tf.nest.map_structure(
        lambda value, stacked: tf.tile(value, [count] + [1] * (len(value.shape) - 1)) if stacked else value,
        lifted, per_weight)
    return state, per_weight


@contextlib.contextmanager
def vectorised_per_client():
    """Within: ``tf.vectorized_map`` vectorises two more ops, which it would
    otherwise run as a loop over the clients (correct, but not batched, and
    a loop the in-process executor cannot compile):

    - a convolution whose filters differ from one client to the next
      (pfor's ``Conv2D`` converter vectorises only over the input) becomes
      one grouped convolution: the G clients' inputs ``[G, n, h, w, c]``
      side by side along channels (``[n, h, w, G c]``), their filters along
      output channels (``[k, k, c, G f]``), which TF's ``Conv2D`` reads as
      G groups (``feature_group_count`` G, inferred from the shapes: client
      g's filters see client g's channels only); the output is split back
      per client.  Its gradients are TF's own for grouped convolutions (CPU
      and GPU kernels); explicit padding (the model kit's) is applied first,
      as TF's CPU kernels have no gradient for a grouped convolution padded
      so.  Filters shared by the group, or the NCHW layout, keep TF's
      converter.
    - ``OnesLike`` (Keras' GroupNormalization builds its mask with it), which
      pfor has no converter for.

    TF has no public hook for this: the converters are put in pfor's
    registry (TF 2.14's private module) for the duration only."""
    import sys

    import tensorflow as tf

    import tensorflow.python.ops.parallel_for.pfor  # noqa: F401

    pfor = sys.modules["tensorflow.python.ops.parallel_for.pfor"]  # the module (the package's `pfor` is a function)
    registry = pfor._pfor_converter_registry
    plain_conv = registry["Conv2D"]

    def conv(pfor_input):
        if not pfor_input.input(1)[1] or pfor_input.get_attr("data_format") != b"NHWC":
            return plain_conv(pfor_input)
        pfor_input.stack_inputs(stack_indices=[0])
        x, w = pfor_input.stacked_input(0), pfor_input.stacked_input(1)  # [G, n, h, w, c], [G, k, k, c, f]
        x_shape, w_shape = tf.shape(x), tf.shape(w)
        side_by_side = tf.reshape(tf.transpose(x, [1, 2, 3, 0, 4]), [x_shape[1], x_shape[2], x_shape[3], -1])
        filters = tf.reshape(tf.transpose(w, [1, 2, 3, 0, 4]), [w_shape[1], w_shape[2], w_shape[3], -1])
        padding = pfor_input.get_attr("padding")
        if padding == b"EXPLICIT":
            side_by_side = tf.pad(side_by_side, np.reshape(pfor_input.get_attr("explicit_paddings"), [4, 2]))
            padding = b"VALID"
        y = tf.raw_ops.Conv2D(
            input=side_by_side, filter=filters, strides=pfor_input.get_attr("strides"), padding=padding,
            data_format="NHWC", dilations=pfor_input.get_attr("dilations"),
            use_cudnn_on_gpu=pfor_input.get_attr("use_cudnn_on_gpu"))
        y_shape = tf.shape(y)
        y = tf.transpose(tf.reshape(y, [y_shape[0], y_shape[1], y_shape[2], w_shape[0], w_shape[4]]), [3, 0, 1, 2, 4])
        y.set_shape([None, *pfor_input.op.outputs[0].shape])  # one client's output shape, per client
        return pfor.wrap(y, True)

    def ones_like(pfor_input):
        return pfor.wrap(tf.ones_like(pfor_input.stacked_input(0)), True)

    added = {"Conv2D": conv, "OnesLike": ones_like}
    before = {name: registry.get(name) for name in added}
    registry.update(added)
    try:
        yield
    finally:
        for name, converter in before.items():
            if converter is None:
                del registry[name]
            else:
                registry[name] = converter


def cohort_training(model: FlatModel, training) -> Callable:
    """In TF: ``group_update(start, x, y, sizes, orders) -> (deltas, losses,
    ends)``: every client of a group trained from its row of ``start``
    (``[G, d]``) as `local_training` trains it alone.  ``x``, ``y``: the
    group's samples, client after client, with one padding sample after
    them (never in a loss); ``sizes`` ``[G]``; ``orders`` ``[N + 1,
    epochs]``: at each client's samples, its own order of them in each
    epoch (`client_order`)."""
    import tensorflow as tf

    optimizer = training.optimizer.build()
    epochs, batch_size = training.local_epochs, training.batch_size
    trainable_count = model.trainable_count
    # Running statistics (BatchNorm) couple a batch's samples: padding would move them.
    coupled = model.statistics_from < model.dim

    def split_rows(rows):
        count = tf.shape(rows)[0]
        tensors = tuple(tf.reshape(part, [count, *shape])
                        for part, shape in zip(tf.split(rows, model.sizes, axis=1), model.shapes))
        return tensors[:trainable_count], tensors[trainable_count:]

    def masked_loss(weights, statistics, x, y, real):
        # One client: its mean loss over its real samples, its statistics after the forward pass.
        logits, statistics = model.forward(weights, statistics, x, training=True)
        losses = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        loss = tf.math.divide_no_nan(tf.reduce_sum(tf.where(real, losses, 0.0)),
                                     tf.reduce_sum(tf.cast(real, tf.float32)))
        return loss, tuple(statistics)

    def alone_step(weights, statistics, x, y):
        # One client on its real samples only, as `local_training` steps it.
        with tf.GradientTape() as tape:
            tape.watch(weights)
            logits, statistics = model.forward(weights, statistics, x, training=True)
            loss = model.loss(logits, y)
        return loss, tuple(tape.gradient(loss, weights)), tuple(statistics)

    def batch(step, steps, sizes, offsets, orders, x, y, width):
        """Each client's batch at its own step ``step`` (``steps``: its steps
        per epoch): features ``[G, width, ...]``, labels, which positions are real."""
        per_epoch = tf.maximum(steps, 1)
        epoch = tf.minimum(step // per_epoch, epochs - 1)
        position = ((step % per_epoch) * batch_size)[:, None] + tf.range(width)[None]
        real = position < sizes[:, None]  # width <= batch_size: never past the batch's end
        pad = tf.shape(y)[0] - 1  # the padding sample
        at = tf.where(real, offsets[:, None] + position, pad)
        index = tf.where(real, offsets[:, None] + tf.gather_nd(
            orders, tf.stack([at, tf.broadcast_to(epoch[:, None], tf.shape(at))], axis=-1)), pad)
        return tf.gather(x, index), tf.gather(y, index), real

    def gradients(weights, statistics, bx, by, real, stepping):
        """Every stepping client's loss, gradient and statistics on its batch, vectorised over the group."""
        with tf.GradientTape() as tape:
            tape.watch(weights)
            with vectorised_per_client():
                loss, new_statistics = tf.vectorized_map(
                    lambda args: masked_loss(*args), (weights, statistics, bx, by, real & stepping[:, None]))
            total = tf.reduce_sum(loss)  # each client's gradient is that of its own loss
        # (Dense: pfor's slicing of the stacked weights gives IndexedSlices gradients.)
        grads = tuple(tf.convert_to_tensor(g) for g in tape.gradient(total, weights))
        if not coupled:
            return loss, grads, new_statistics
        taken = tf.reduce_sum(tf.cast(real, tf.int32), axis=1)
        partial = tf.cast(tf.where(stepping & (taken < tf.shape(real)[1]))[:, 0], tf.int32)

        def alone(k, loss, grads, new_statistics):
            g = partial[k]
            own = alone_step(tuple(w[g] for w in weights), tuple(s[g] for s in statistics),
                             bx[g, : taken[g]], by[g, : taken[g]])
            put = lambda stacked, value: tf.tensor_scatter_nd_update(stacked, [[g]], value[None])  # noqa: E731
            return (k + 1, put(loss, own[0]), tuple(map(put, grads, own[1])), tuple(map(put, new_statistics, own[2])))

        _, loss, grads, new_statistics = tf.while_loop(
            lambda k, *_: k < tf.size(partial), alone, (0, loss, grads, new_statistics))
        return loss, grads, new_statistics

    def group_update(start, x, y, sizes, orders):
        count = tf.shape(start)[0]
        offsets = tf.cumsum(sizes, exclusive=True)
        width = tf.maximum(tf.minimum(batch_size, tf.reduce_max(sizes)), 1)
        start_weights, start_statistics = split_rows(start)
        steps = (sizes + batch_size - 1) // batch_size

        if training.protocol == "fedsgd":
            has_data = sizes > 0
            bx, by, real = batch(tf.zeros([], tf.int32), steps, sizes, offsets, orders, x, y, width)
            loss, grads, statistics = gradients(start_weights, start_statistics, bx, by, real, has_data)
            deltas = _flatten_rows(tuple(-g for g in grads)
                                   + tuple(s - s0 for s, s0 in zip(statistics, start_statistics)))
            deltas = tf.where(has_data[:, None], deltas, 0.0)
            return deltas, tf.where(has_data, loss, 0.0), start + deltas

        opt_state, per_weight = _stacked_optimizer_state(optimizer, model.shapes[:trainable_count], count)

        def step(i, weights, statistics, opt_state, loss_sum, taken_sum):
            stepping = i < epochs * steps
            bx, by, real = batch(i, steps, sizes, offsets, orders, x, y, width)
            loss, grads, new_statistics = gradients(weights, statistics, bx, by, real, stepping)
            new_state, new_weights = optimizer.next(opt_state, weights, grads)
            keep = lambda new, old: tf.where(_per_client(stepping, old), new, old)  # noqa: E731
            opt_state = tf.nest.map_structure(lambda new, old, stacked: keep(new, old) if stacked else new,
                                              new_state, opt_state, per_weight)
            taken = tf.where(stepping, tf.reduce_sum(tf.cast(real, tf.float32), axis=1), 0.0)
            return (i + 1, tuple(map(keep, new_weights, weights)), tuple(map(keep, new_statistics, statistics)),
                    opt_state, loss_sum + tf.where(stepping, loss, 0.0) * taken, taken_sum + taken)

        zeros = tf.zeros([count])
        _, weights, statistics, _, loss_sum, taken_sum = tf.while_loop(
            lambda i, *_: i < epochs * tf.reduce_max(steps), step,
            (0, start_weights, start_statistics, opt_state, zeros, zeros))
        ends = _flatten_rows(weights + statistics)
        return ends - start, tf.math.divide_no_nan(loss_sum, taken_sum), ends

    return group_update


def read_group(store: ClientStore, model: FlatModel, poison: Callable, data, epochs: int):
    """In TF: the group's samples, each client's read from ``store`` and
    poisoned by its own attack group, client after client, then one
    all-zero padding sample: ``(x, y, sizes [G], orders [N + 1, epochs])``
    (``orders``: each client's own order of its samples in each epoch)."""
    import tensorflow as tf

    count = tf.shape(data.client)[0]

    def read(g, xs, ys, orders, sizes):
        x, y = store.read(data.client[g], model.input_shape)
        x, y = poison(x, y, data.group[g], data.seed[g], data.member[g])
        n = tf.shape(y)[0]
        order = tf.stack([client_order(data.seed[g], n, epoch) for epoch in range(epochs)], axis=1)
        return g + 1, xs.write(g, x), ys.write(g, y), orders.write(g, order), sizes.write(g, n)

    arrays = (
        tf.TensorArray(tf.float32, count, infer_shape=False, element_shape=[None, *model.input_shape]),
        tf.TensorArray(tf.int32, count, infer_shape=False, element_shape=[None]),
        tf.TensorArray(tf.int32, count, infer_shape=False, element_shape=[None, epochs]),
        tf.TensorArray(tf.int32, count),
    )
    _, xs, ys, orders, sizes = tf.while_loop(lambda g, *_: g < count, read, (0, *arrays))
    x = tf.concat([xs.concat(), tf.zeros([1, *model.input_shape])], axis=0)
    y = tf.concat([ys.concat(), tf.zeros([1], tf.int32)], axis=0)
    orders = tf.concat([orders.concat(), tf.zeros([1, epochs], tf.int32)], axis=0)
    return x, y, sizes.stack(), orders


def build_cohort_work(model: FlatModel, store: ClientStore, training,
                      attacks: Sequence[tuple[Role, object]] = (), facts=None):
    """The ``tff.tensorflow.computation`` ``(flat weights, group input) ->
    rows``: `build_client_work` for a group of clients (`group_type`)
    trained together (`cohort_training`), one row per client in the
    group's order, each field of the rows stacked."""
    import tensorflow as tf
    import tensorflow_federated as tff

    poison = data_poisoning(attacks, facts)
    group_update = cohort_training(model, training)
    epochs = 1 if training.protocol == "fedsgd" else training.local_epochs
    keeps_local = len(model.local) > 0
    is_local = np.zeros(model.dim, bool)
    is_local[model.local] = True

    @tff.tensorflow.computation(tff.TensorType(np.float32, [model.dim]), group_type(len(model.local)))
    def cohort_work(flat, data):
        # Client work of a group: each client's (poisoned) data, trained together from the broadcast model.
        x, y, sizes, orders = read_group(store, model, poison, data, epochs)
        start = tf.tile(flat[None], [tf.shape(sizes)[0], 1])
        if keeps_local:  # FedBN: each client from its own values of the local coordinates
            start = tf.transpose(tf.tensor_scatter_nd_update(tf.transpose(start), model.local[:, None],
                                                             tf.transpose(data.local_norm)))
        deltas, losses, ends = group_update(start, x, y, sizes, orders)
        rows = dict(
            delta=tf.where(is_local[None], 0.0, deltas) if keeps_local else deltas, n=tf.cast(sizes, tf.float32),
            slot=data.slot, group=data.group, client=data.client, loss=losses,
        )
        if keeps_local:
            rows["local_norm"] = tf.gather(ends, model.local, axis=1)
        return rows

    return cohort_work
