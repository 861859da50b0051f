"""The TFF computations of a round, as four builders that each trace and
test alone, composed the way TFF's ``compose_learning_process`` composes:

  `build_client_work`   one client, a ``tff.tensorflow.computation``: its
                        data (poisoned if its attack group acts), local
                        training from the broadcast model -> one row
                        (flat delta, example count, slot, group, id, loss);
  `build_gather`        the parts of a concatenating ``federated_aggregate``
                        (zero, accumulate, merge, report in slot order) that
                        stack the rows at the server; shared with
                        `fedarena.core.execution.tff_factory`;
  `build_server_stage`  one TF computation at SERVER on the stacked ``[K, d]``
                        matrix: model poisoning of malicious rows,
                        non-finite rows dropped, detectors and the aggregator
                        on the kept rows (`detect_on_kept`,
                        `aggregate_kept`), the server step;
  `compose_round`       the ``tff.federated_computation`` of one round.

Every server-side plugin is applied by `apply_role`: under its `Role`'s name
scope, with its state in and out.  `RoundComputations` builds the four for a
checked scenario.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.execution.failures import in_scope
from fedarena.core.plugin.interfaces import ServerContext
from fedarena.core.scenario.check import Scenario
from fedarena.core.scenario.roles import Role, scenario_roles

from fedarena.core.execution.engine.client_store import ClientStore
from fedarena.core.execution.engine.flat_model import FlatModel

# The per-client input of the client work, one TFF client value each.
CLIENT_FIELDS = (
    ("group", np.int32, []),  # attack group acting this round, -1 if none
    ("seed", np.int64, [2]),
    ("slot", np.int32, []),
    ("client", np.int32, []),
    ("member", np.int32, []),  # index within its attack group
)


def client_type(local_size: int = 0):
    """The client input's TFF type; with ``local_size`` > 0, a last field
    ``local_norm`` carries the client's own values of the tensors the model
    keeps on the clients (FedBN, `FlatModel.local`)."""
    import tensorflow_federated as tff

    fields = CLIENT_FIELDS + ((("local_norm", np.float32, [local_size]),) if local_size else ())
    return tff.StructType([(name, tff.TensorType(dtype, shape)) for name, dtype, shape in fields])


def apply_role(role: Role, plugin, state: dict, method, *args):
    """Apply a server-side plugin in its role: ``method(*args, own_state)``
    under the role's name scope, returning ``(*outputs, new_state)``; the
    new state replaces the role's entry in ``state`` (a role without state
    across rounds has none there, and gets an empty dict).  Returns the
    outputs before the state."""
    key = role.state_key
    *outputs, new = in_scope(role, plugin, method, *args, state.get(key, {}))
    state.update({key: new} if key in state else {})
    return outputs


def client_order(seed, n, epoch):
    """In TF: the order in which a client with ``n`` samples visits them in
    local epoch ``epoch``, drawn from its own ``seed``."""
    import tensorflow as tf

    return tf.argsort(tf.random.stateless_uniform([n], tf.random.experimental.stateless_fold_in(seed, epoch)))


def local_training(model: FlatModel, training) -> Callable:
    """In TF: ``local_update(flat, x, y, seed) -> (update as a flat delta,
    mean training loss, the flat vector reached)`` from the model ``flat``
    on (x, y).  FedAvg: local epochs of the client optimizer; FedSGD: minus
    the gradient of one batch.  The optimizer sees the trainable tensors
    only; running statistics (BatchNorm) follow each training step's
    forward pass, and their change is part of the delta.  The server trains
    on its root samples with the same function."""
    import tensorflow as tf

    optimizer = training.optimizer.build()
    epochs, batch_size = training.local_epochs, training.batch_size

    def local_update(flat, x, y, seed):
        start, start_statistics = model.split(flat)
        n = tf.shape(y)[0]

        def loss_of(weights, statistics, indices):
            logits, statistics = model.forward(weights, statistics, tf.gather(x, indices), training=True)
            return model.loss(logits, tf.gather(y, indices)), statistics

        def shuffled(epoch):
            return client_order(seed, n, epoch)

        def change(end, begin):
            return [tf.reshape(a - b, [-1]) for a, b in zip(end, begin)]

        if training.protocol == "fedsgd":
            indices = shuffled(0)[:batch_size]
            with tf.GradientTape() as tape:
                tape.watch(start)
                loss, statistics = loss_of(start, start_statistics, indices)
            grads = tape.gradient(loss, start)
            delta = tf.concat([-tf.reshape(g, [-1]) for g in grads] + change(statistics, start_statistics), axis=0)
            delta = tf.where(n > 0, delta, tf.zeros_like(delta))
            return delta, tf.where(n > 0, loss, 0.0), flat + delta

        # The mini-batch loop is a tf.while_loop over precomputed shuffles:
        # the same batches as a tf.data pipeline, at well under half the
        # cost per step (benchmarks B1/D1 in docs/performance.md).
        steps_per_epoch = (n + batch_size - 1) // batch_size
        orders = tf.stack([shuffled(epoch) for epoch in range(epochs)])

        def step(i, weights, statistics, opt_state, loss_sum, count):
            batch = i % steps_per_epoch
            indices = orders[i // steps_per_epoch, batch * batch_size : tf.minimum((batch + 1) * batch_size, n)]
            with tf.GradientTape() as tape:
                tape.watch(weights)
                loss, statistics = loss_of(weights, statistics, indices)
            grads = tape.gradient(loss, weights)
            opt_state, weights = optimizer.next(opt_state, weights, tuple(grads))
            taken = tf.cast(tf.size(indices), tf.float32)
            return i + 1, tuple(weights), tuple(statistics), opt_state, loss_sum + loss * taken, count + taken

        opt_state = optimizer.initialize(tuple(tf.TensorSpec(w.shape, w.dtype) for w in start))
        _, final, final_statistics, _, loss_sum, count = tf.while_loop(
            lambda i, *_: i < epochs * steps_per_epoch, step, (0, start, start_statistics, opt_state, 0.0, 0.0)
        )
        delta = tf.concat(change(final, start) + change(final_statistics, start_statistics), axis=0)
        return delta, tf.math.divide_no_nan(loss_sum, count), model.flatten((*final, *final_statistics))

    return local_update


def build_client_work(model: FlatModel, store: ClientStore, local_update: Callable,
                      attacks: Sequence[tuple[Role, object]] = (), facts=None):
    """The ``tff.tensorflow.computation`` ``(flat weights, client input) ->
    row`` of one client: its samples read from ``store``, poisoned by its
    attack group's ``poison_data`` when the group acts (``attacks``: every
    attack group's role and plugin, in group order), trained on by
    ``local_update`` (see `local_training`).

    When the model keeps tensors on the clients (FedBN: `FlatModel.local`),
    the client input carries the client's own values of them
    (``local_norm``); the client trains from the broadcast model with those
    values in place, its row's delta is zero there (nothing of them is
    shared), and the row carries the values it reached (``local_norm``),
    which the run stores back for the client's next round."""
    import tensorflow as tf
    import tensorflow_federated as tff

    keeps_local = len(model.local) > 0
    poison = data_poisoning(attacks, facts)

    @tff.tensorflow.computation(tff.TensorType(np.float32, [model.dim]), client_type(len(model.local)))
    def client_work(flat, data):
        # Client work: (poisoned) local data, local training from the broadcast model.
        x, y = store.read(data.client, model.input_shape)
        x, y = poison(x, y, data.group, data.seed, data.member)
        start = model.with_local(flat, data.local_norm) if keeps_local else flat
        delta, loss, end = local_update(start, x, y, data.seed)
        row = dict(
            delta=model.without_local(delta) if keeps_local else delta, n=tf.cast(tf.shape(y)[0], tf.float32),
            slot=data.slot, group=data.group, client=data.client, loss=loss,
        )
        if keeps_local:
            row["local_norm"] = tf.gather(end, model.local)
        return row

    return client_work


def data_poisoning(attacks: Sequence[tuple[Role, object]], facts) -> Callable:
    """In TF: ``poison(x, y, group, seed, member) -> (x, y)``: a client's
    samples after its attack group's ``poison_data`` (``group`` -1: none,
    the samples as they are)."""
    import tensorflow as tf

    poisoners = [(role, attack) for role, attack in attacks]

    def poison(x, y, group, seed, member):
        if not any(a.poisons_data for _, a in poisoners):
            return x, y
        branches = [lambda: (x, y)] + [
            (lambda r=role, a=attack: in_scope(r, a, a.poison_data, x, y, seed, facts, member))
            if attack.poisons_data else (lambda: (x, y))
            for role, attack in poisoners
        ]
        return tf.switch_case(group + 1, branches)

    return poison


@attrs.frozen
class Gather:
    """The four parts of a concatenating ``tff.federated_aggregate``: rows
    of ``row_type`` (a tensor, or a structure of tensors) are stacked along
    a new first axis of unknown size (the pattern of TFF's own
    ``UnweightedReservoirSamplingFactory``).  The accumulator is the rows
    in a struct whose one field is named
    `fedarena.core.execution.backends.local.STACKED_ROWS`: the in-process
    executor then stacks all rows in one concatenation (the same values)."""

    zero: object  # () -> no rows
    accumulate: object  # (rows, row) -> rows
    merge: object  # (rows, rows) -> rows
    report: object  # rows -> rows, in slot order where rows have a ``slot``

    @property
    def rows_type(self):
        """The type of the gathered rows at the server."""
        return self.report.type_signature.result

    def __call__(self, values):
        """In a federated computation: the CLIENTS-placed rows gathered at SERVER."""
        import tensorflow_federated as tff

        return tff.federated_aggregate(values, self.zero(), self.accumulate, self.merge, self.report)


def build_gather(row_type, blocks: bool = False) -> Gather:
    """The parts of a ``federated_aggregate`` that concatenates rows of
    ``row_type``.  TFF merges partial results in any order; when the row is
    a structure with a ``slot`` field, the report restores slot order (and
    hands the rows on uncopied when they already are in it).
    With ``blocks``, each client value is already a block of rows (a
    group of clients trained together, `cohort`): ``row_type``'s fields
    have a first axis of unknown size, and blocks are concatenated."""
    import tensorflow as tf
    import tensorflow_federated as tff

    from fedarena.core.execution.backends.local import STACKED_ROWS

    new_axis = [] if blocks else [None]
    if isinstance(row_type, tff.TensorType):
        rows_type = tff.TensorType(row_type.dtype, [*new_axis, *row_type.shape])

        def each(fn, *values):
            return fn(row_type, *values)

        ordered = False
    else:
        row_fields = tff.structure.to_elements(row_type)
        rows_type = tff.StructType([(name, tff.TensorType(t.dtype, [*new_axis, *t.shape])) for name, t in row_fields])

        def each(fn, *values):
            return {name: fn(t, *(value[name] for value in values)) for name, t in row_fields}

        ordered = "slot" in dict(row_fields)
    stacked_type = tff.StructType([(STACKED_ROWS, rows_type)])

    @tff.tensorflow.computation
    def no_rows():
        return {STACKED_ROWS: each(lambda t: tf.zeros([0, *(t.shape[1:] if blocks else t.shape)], t.dtype))}

    @tff.tensorflow.computation(stacked_type, row_type)
    def append_row(stacked, row):
        return {STACKED_ROWS: each(lambda _, a, r: tf.concat([a, r if blocks else r[None]], axis=0),
                                   stacked[STACKED_ROWS], row)}

    @tff.tensorflow.computation(stacked_type, stacked_type)
    def merge_rows(a, b):
        return {STACKED_ROWS: each(lambda _, x, y: tf.concat([x, y], axis=0), a[STACKED_ROWS], b[STACKED_ROWS])}

    if ordered:
        @tff.tensorflow.computation(stacked_type)
        def report(stacked):
            rows = stacked[STACKED_ROWS]
            order = tf.argsort(rows["slot"])
            in_order = tf.reduce_all(tf.equal(order, tf.range(tf.size(order))))
            # Rows already in slot order pass through without a copy of the matrix.
            return tf.cond(in_order, lambda: each(lambda _, r: tf.identity(r), rows),
                           lambda: each(lambda _, r: tf.gather(r, order), rows))
    else:
        @tff.tensorflow.computation(stacked_type)
        def report(stacked):
            return stacked[STACKED_ROWS]

    return Gather(no_rows, append_row, merge_rows, report)


def detect_on_kept(detector, updates, keep, ctx: ServerContext, state: dict):
    """In TF: run a detector on the kept rows only and scatter its results
    back: -> (updates with the kept rows as the detector left them, score
    ``[K]`` (NaN for rows it did not see), keep ``[K]``, state).  With no
    row kept, the detector is skipped and its state kept."""
    import tensorflow as tf

    index = tf.where(keep)[:, 0]
    every_row = tf.equal(tf.size(index), tf.size(keep))

    def run():
        # With every row kept, the rows go in and come back as they are: no
        # gather nor scatter copies the [K, d] matrix (the same values).
        rows_in = tf.cond(every_row, lambda: updates, lambda: tf.gather(updates, index))
        rows, score, kept, new = detector.apply(rows_in, ctx.take(index), state)
        size = tf.shape(keep, out_type=tf.int64)
        return (
            tf.cond(every_row, lambda: tf.convert_to_tensor(rows, updates.dtype),
                    lambda: tf.tensor_scatter_nd_update(updates, index[:, None], rows)),
            tf.tensor_scatter_nd_update(tf.fill(tf.cast(size, tf.int32), math.nan), index[:, None],
                                        tf.cast(score, tf.float32)),
            tf.scatter_nd(index[:, None], tf.cast(kept, tf.bool), size),
            new,
        )

    def skip():
        return updates, tf.fill(tf.shape(keep), math.nan), keep, state

    updates_after, score, keep_after, new = tf.cond(tf.size(index) > 0, run, skip)
    updates_after.set_shape(updates.shape)
    return updates_after, score, keep_after, new


def aggregate_kept(aggregator, updates, weights, ctx: ServerContext, state: dict):
    """In TF: run the aggregator on the rows with weight > 0 only: ->
    (aggregate ``[d]``, share ``[K]`` scattered back, zero for the other
    rows, state).  With no row left the aggregate is zero and the state
    kept."""
    import tensorflow as tf

    index = tf.where(weights > 0)[:, 0]
    every_row = tf.equal(tf.size(index), tf.size(weights))

    def run():
        # With every row weighted, no gather copies the [K, d] matrix (the same values).
        rows = tf.cond(every_row, lambda: updates, lambda: tf.gather(updates, index))
        aggregate, share, new = aggregator.apply(rows, tf.gather(weights, index), ctx.take(index), state)
        share = tf.scatter_nd(index[:, None], tf.cast(share, tf.float32), tf.shape(weights, out_type=tf.int64))
        return tf.cast(aggregate, tf.float32), share, new

    def empty():
        return tf.zeros(tf.shape(updates)[1:], tf.float32), tf.zeros_like(weights), state

    aggregate, share, new = tf.cond(tf.size(index) > 0, run, empty)
    aggregate.set_shape(updates.shape[1:])
    share.set_shape(weights.shape)
    return aggregate, share, new


def round_info_type(initial_state: dict):
    """The SERVER input of a round besides the weights: round number, the
    server's seed, the state of every stateful role (and the server's)."""
    import tensorflow_federated as tff

    return tff.StructType([
        ("round", tff.TensorType(np.int32)),
        ("seed", tff.TensorType(np.int64, [2])),
        ("state", tff.StructType([
            (key, tff.StructType([(name, tff.TensorType(v.dtype, v.shape)) for name, v in state.items()]))
            for key, state in initial_state.items()
        ])),
    ])


def initial_state(stateful: Sequence[tuple[Role, object]], dim: int, facts, server_momentum: float = 0.0) -> dict:
    """The state of a run's first round: every stateful role's
    ``initial_state`` (roles without state are left out) and the server's
    momentum, by state key."""
    state = {}
    if server_momentum > 0:
        state["server"] = {"velocity": np.zeros(dim, np.float32)}
    for role, plugin in stateful:
        initial = in_scope(role, plugin, plugin.initial_state, dim, facts)
        values = {name: np.asarray(value) for name, value in initial.items()}
        if values:
            state[role.state_key] = values
    return state


def build_server_stage(rows_type, *, dim: int, layers, facts, aggregator: tuple[Role, object],
                       attacks: Sequence[tuple[Role, object]] = (), detectors: Sequence[tuple[Role, object]] = (),
                       state: dict | None = None, server_learning_rate: float = 1.0, server_momentum: float = 0.0,
                       root_update: Callable | None = None, statistics_from: int | None = None):
    """The ``tff.tensorflow.computation`` ``(global weights, gathered rows,
    round info) -> round outputs`` of the server: each update attack
    rewrites its group's rows, non-finite rows are dropped, each detector
    runs on the kept rows (`detect_on_kept`), the aggregator on the rows
    still kept (`aggregate_kept`), then the server step (with momentum if
    ``server_momentum``).  ``state`` is the first round's (see
    `initial_state`); ``root_update(global_weights, seed)`` is the server's
    own update on its root samples, for plugins that need it.  Coordinates
    from ``statistics_from`` on are running statistics (`FlatModel`): they
    take the aggregate as it is, without the server's learning rate or
    momentum.  Rows with a ``local_norm`` field (FedBN) pass it through."""
    import tensorflow as tf
    import tensorflow_federated as tff

    initial = state or {}
    statistics_from = dim if statistics_from is None else statistics_from
    passes_local = "local_norm" in dict(tff.structure.to_elements(rows_type))
    weights_type = tff.TensorType(np.float32, [dim])

    @tff.tensorflow.computation(weights_type, rows_type, round_info_type(initial))
    def server_stage(global_weights, rows, round_info):
        def stamp(*after):  # wall time once ``after`` (and the previous stamp) is computed
            with tf.control_dependencies([t for t in tf.nest.flatten(after) if t is not None]):
                return tf.timestamp()

        state = {key: dict(tff.structure.iter_elements(round_info.state[key])) for key in initial}
        updates, groups = rows["delta"], rows["group"]
        started = stamp(global_weights, updates)
        root = None
        if root_update is not None:  # the server trains on its root samples as a client would
            root = root_update(global_weights, round_info.seed)
        ctx = ServerContext(
            facts=facts, layers=layers, client_ids=rows["client"], num_examples=rows["n"],
            global_weights=global_weights, round=round_info.round, seed=round_info.seed,
            root_update=root,
        )
        benign = groups < 0
        # Model poisoning: each attack rewrites its own rows.
        for role, attack in attacks:
            (updates,) = apply_role(role, attack, state, attack.apply,
                                    updates, tf.equal(groups, role.group), benign, ctx)
        # What each client's update looked like on arrival.  The same bits as
        # tf.norm's sqrt(reduce_sum(x * x)) on the CPU, without its [K, d] squares.
        sent_norm = tf.math.reduce_euclidean_norm(updates, axis=1)
        attacked = stamp(started, updates)
        # Non-finite rows never reach a detector or the aggregator.  A finite
        # norm means a finite row (an inf or NaN would make the sum of squares
        # one); only when some norm is not (or overflowed) are the rows
        # checked entry by entry and zeroed, each a copy of the [K, d] matrix.
        norm_finite = tf.math.is_finite(sent_norm)
        finite = tf.cond(tf.reduce_all(norm_finite), lambda: norm_finite,
                         lambda: tf.reduce_all(tf.math.is_finite(updates), axis=1))
        updates = tf.cond(tf.reduce_all(finite), lambda: tf.identity(updates),
                          lambda: tf.where(finite[:, None], updates, 0.0))
        keep, scores = finite, []
        for role, detector in detectors:
            updates, score, keep = apply_role(role, detector, state, detect_on_kept, detector, updates, keep, ctx)
            scores.append(score)
        detected = stamp(attacked, updates, keep)
        role, plugin = aggregator
        aggregate, row_weights = apply_role(role, plugin, state, aggregate_kept, plugin, updates,
                                            tf.where(keep, rows["n"], 0.0), ctx)
        averaged = aggregate
        if "server" in state:  # FedAvgM: the server steps along a momentum of aggregates
            aggregate = server_momentum * state["server"]["velocity"] + aggregate
            state["server"] = {"velocity": aggregate}
        new_weights = global_weights + server_learning_rate * aggregate
        if statistics_from < dim:  # running statistics: the aggregate as it is
            new_weights = tf.concat([new_weights[:statistics_from],
                                     global_weights[statistics_from:] + averaged[statistics_from:]], axis=0)
        finished = stamp(detected, new_weights, row_weights, state)
        return dict(
            **({"local_norm": rows["local_norm"]} if passes_local else {}),  # FedBN: stored by the run
            weights=new_weights,
            state=state,
            stage_seconds=tf.stack([attacked - started, detected - attacked, finished - detected]),
            update_norm=sent_norm,
            aggregation_weight=row_weights,
            kept=keep,
            finite=finite,
            train_loss=rows["loss"],
            num_examples=rows["n"],
            detector_scores=tf.stack(scores, axis=1) if scores else tf.zeros([tf.shape(updates)[0], 0]),
        )

    return server_stage


def compose_round(client_work, gather: Gather, server_stage):
    """The ``tff.federated_computation`` ``(global weights@SERVER, round
    info@SERVER, client inputs@CLIENTS) -> round outputs@SERVER``: the
    client work mapped over the clients from the broadcast weights, the
    rows gathered at the server, the server stage on them."""
    import tensorflow_federated as tff

    weights_type, clients_type = client_work.type_signature.parameter
    round_type = server_stage.type_signature.parameter[2]

    # The CLIENTS-placed argument comes last: TFF 0.87's mergeable context
    # (several workers) splits clients correctly only in that position.
    @tff.federated_computation(
        tff.FederatedType(weights_type, tff.SERVER),
        tff.FederatedType(round_type, tff.SERVER),
        tff.FederatedType(clients_type, tff.CLIENTS),
    )
    def run_round(global_weights, round_info, client_data):
        # Client work.
        updates = tff.federated_map(client_work, (tff.federated_broadcast(global_weights), client_data))
        # Gather the rows at the server, in slot order.
        rows = gather(updates)
        # Server stage: model poisoning, detection, aggregation, server step.
        return tff.federated_map(server_stage, tff.federated_zip((global_weights, rows, round_info)))

    return run_round


class RoundComputations:
    """The TFF computations of one scenario, traced once per run:
    ``client_train`` (the client work: of one client, or of a group of
    ``group_size`` clients, `cohort`), ``gather``, ``server_stage``,
    ``run_round`` (the three composed) and the first round's
    ``initial_state``."""

    def __init__(self, scenario: Scenario, model: FlatModel, store: ClientStore):
        self.scenario = scenario
        training, facts = scenario.training, scenario.facts
        roles = scenario_roles(scenario)
        attacks = [(role, plugin) for role, plugin in roles if role.kind == "attack"]
        update_attacks = [(role, attack) for role, attack in attacks if attack.poisons_updates]
        detectors = [(role, plugin) for role, plugin in roles if role.kind == "detector"]
        aggregator = next((role, plugin) for role, plugin in roles if role.kind == "aggregator")
        if len(model.local) and training.protocol == "fedsgd":
            raise RunError("the model keeps normalization layers on the clients (norm_state = \"local\", FedBN), "
                           "which needs local training: use protocol fedavg")
        local_update = local_training(model, training)

        # The client work: one client per TFF client value, or (training
        # setting client_group > 1) a group of clients trained together (`cohort`).
        self.group_size = training.client_group
        if self.group_size > 1:
            from fedarena.core.execution.engine.cohort import build_cohort_work  # cohort builds on this module

            self.client_train = build_cohort_work(model, store, training, attacks, facts)
        else:
            self.client_train = build_client_work(model, store, local_update, attacks, facts)
        self.gather = build_gather(self.client_train.type_signature.result, blocks=self.group_size > 1)
        # Server-side plugins with state across rounds, by key.
        stateful = update_attacks + detectors + [aggregator]
        needs_root = any(plugin.needs_root_update for _, plugin in stateful)
        if needs_root and store.root is None:
            raise RunError("a plugin needs the server's root update, but the scenario keeps no root samples "
                           "(training setting root_samples)")
        self.initial_state = initial_state(stateful, model.dim, facts, training.server_momentum)
        root_update = None
        if needs_root:
            def root_update(global_weights, seed):
                root_x, root_y = store.read(store.root, model.input_shape)
                delta = local_update(global_weights, root_x, root_y, seed)[0]
                return model.without_local(delta) if len(model.local) else delta

        self.server_stage = build_server_stage(
            self.gather.rows_type, dim=model.dim, layers=model.layers, facts=facts, aggregator=aggregator,
            attacks=update_attacks, detectors=detectors, state=self.initial_state,
            server_learning_rate=training.server_learning_rate, server_momentum=training.server_momentum,
            root_update=root_update, statistics_from=model.statistics_from,
        )
        self.run_round = compose_round(self.client_train, self.gather, self.server_stage)
