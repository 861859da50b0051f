"""Running a checked scenario on TensorFlow Federated.

One round, as TFF sees it (see ARCHITECTURE.md):

  client work   ``tff.federated_map(client_train)`` over the sampled clients:
                data poisoning of malicious clients' data, local training,
                one flat update row per client;
  gather        ``tff.federated_aggregate`` whose accumulate/merge concatenate
                rows (order restored by slot in the report);
  server stage  one TF computation at SERVER on the stacked ``[K, d]``
                matrix: model poisoning of malicious rows, non-finite rows
                dropped, detectors, the aggregator, the server step.

The global model is one flat float32 vector; the model plugin's Keras model
is used through TFF's functional form for training and through Keras itself
for evaluation.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
import attrs
import numpy as np

from fedarena.core.execution import interrupts
from fedarena.core.scenario.check import Scenario
from fedarena.core.errors import RunError
from fedarena.core.execution.failures import SCOPE_PREFIX, PluginFailure
from fedarena.core.plugin.interfaces import Layer, ServerContext


class ClientStore:
    """Every client's training samples, written once per run as two raw
    files per client (features, labels); the client computation reads its
    own files by client id.  Nothing is re-serialised from Python each
    round, and a round touches only the sampled clients' files.

    Workers must see the same folder: local ones do; workers on other
    machines need it on a shared file system.
    """

    def __init__(self, train_x: np.ndarray, train_y: np.ndarray, parts: list[np.ndarray],
                 root: np.ndarray | None = None):
        self.directory = Path(tempfile.mkdtemp(prefix="fedarena-clients-"))
        self._remove = weakref.finalize(self, shutil.rmtree, str(self.directory), True)
        # The server's root samples, if any, are stored as one more client.
        stored = list(parts) + ([root] if root is not None and len(root) else [])
        for client, part in enumerate(stored):
            np.ascontiguousarray(train_x[part], dtype=np.float32).tofile(self.directory / f"x{client}.raw")
            np.ascontiguousarray(train_y[part], dtype=np.int32).tofile(self.directory / f"y{client}.raw")
        self.sizes = np.array([len(p) for p in parts], dtype=np.int32)
        self.root = len(parts) if len(stored) > len(parts) else None  # the root's id in the store

    def read(self, client, input_shape):
        """In TF: (features, labels) of one client."""
        import tensorflow as tf

        def path(kind):
            return tf.strings.join([str(self.directory), f"/{kind}", tf.strings.as_string(client), ".raw"])

        x = tf.reshape(tf.io.decode_raw(tf.io.read_file(path("x")), tf.float32), [-1, *input_shape])
        y = tf.io.decode_raw(tf.io.read_file(path("y")), tf.int32)
        return x, y

    def close(self) -> None:
        self._remove()


def attacker_groups(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """The attack group of every client (-1 for benign) and its index within
    that group, fixed for the run."""
    groups = np.full(scenario.num_clients, -1, dtype=np.int32)
    members = np.zeros(scenario.num_clients, dtype=np.int32)
    order = np.random.default_rng([scenario.seed, 1]).permutation(scenario.num_clients)
    start = 0
    for index, group in enumerate(scenario.attacks):
        chosen = order[start : start + group.num_clients]
        groups[chosen], members[chosen] = index, np.arange(len(chosen))
        start += group.num_clients
    return groups, members


def sample_clients(scenario: Scenario, round_number: int) -> np.ndarray:
    """The client ids sampled in a round; depends only on seed and round."""
    rng = np.random.default_rng([scenario.seed, 2, round_number])
    return rng.choice(scenario.num_clients, scenario.training.clients_per_round, replace=False).astype(np.int32)


class FlatModel:
    """The model plugin's Keras model seen as one flat parameter vector."""

    def __init__(self, scenario: Scenario):
        import tensorflow as tf
        import tensorflow_federated as tff

        info = scenario.dataset.info()
        self.input_shape, self.num_classes = tuple(info.input_shape), info.num_classes
        # Initial weights are drawn while the functional model is built;
        # seeding first makes them depend on the scenario seed only.
        tf.keras.utils.set_random_seed(scenario.seed)
        self.functional = tff.learning.models.functional_model_from_keras(
            lambda: scenario.model.build(self.input_shape, self.num_classes),
            tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            input_spec=(tf.TensorSpec((None,) + self.input_shape, tf.float32), tf.TensorSpec([None], tf.int32)),
        )
        trainable, non_trainable = self.functional.initial_weights
        if non_trainable:
            raise RunError(f"model '{type(scenario.model).__name__}' has non-trainable weights; not supported yet")
        self.shapes = [tuple(w.shape) for w in trainable]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.dim = sum(self.sizes)
        with tf.Graph().as_default():  # a throwaway copy, only for the layer names
            names = [w.name for w in scenario.model.build(self.input_shape, self.num_classes).trainable_weights]
        offsets = np.cumsum([0] + self.sizes[:-1])
        self.layers = tuple(Layer(n, s, int(o)) for n, s, o in zip(names, self.shapes, offsets))
        self.initial = np.concatenate([np.asarray(w, np.float32).reshape(-1) for w in trainable])
        # The functional model runs only in a graph context: evaluation uses a
        # graph and session of its own, built once.
        graph = tf.Graph()
        with graph.as_default():
            self._flat = tf.compat.v1.placeholder(tf.float32, [self.dim])
            self._x = tf.compat.v1.placeholder(tf.float32, (None,) + self.input_shape)
            self._logits = self.functional.predict_on_batch((self.unflatten(self._flat), ()), self._x, training=False)
        self._session = tf.compat.v1.Session(graph=graph)

    def unflatten(self, flat):
        import tensorflow as tf

        return tuple(tf.reshape(part, shape) for part, shape in zip(tf.split(flat, self.sizes), self.shapes))

    def predict(self, flat: np.ndarray, x: np.ndarray, batch: int = 1024) -> np.ndarray:
        return np.concatenate([
            self._session.run(self._logits, {self._flat: flat, self._x: x[i : i + batch]})
            for i in range(0, len(x), batch)
        ])


def _in_scope(role: str, plugin, method, *args):
    """Call a plugin's method under a TF name scope naming its role, so that
    an error raised later inside the graph can be traced back to it; an
    error raised now is wrapped at once."""
    import tensorflow as tf

    try:
        with tf.name_scope(SCOPE_PREFIX + role):
            return method(*args)
    except Exception as error:
        raise PluginFailure(role, plugin, error) from error


def detect_on_kept(detector, updates, keep, ctx: ServerContext, state: dict):
    """In TF: run a detector on the kept rows only and scatter its results
    back: -> (updates with the kept rows as the detector left them, score
    ``[K]`` (NaN for rows it did not see), keep ``[K]``, state).  With no
    row kept, the detector is skipped and its state kept."""
    import tensorflow as tf

    index = tf.where(keep)[:, 0]

    def run():
        rows, score, kept, new = detector.apply(tf.gather(updates, index), ctx.take(index), state)
        size = tf.shape(keep, out_type=tf.int64)
        return (
            tf.tensor_scatter_nd_update(updates, index[:, None], rows),
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

    def run():
        aggregate, share, new = aggregator.apply(tf.gather(updates, index), tf.gather(weights, index),
                                                 ctx.take(index), state)
        share = tf.scatter_nd(index[:, None], tf.cast(share, tf.float32), tf.shape(weights, out_type=tf.int64))
        return tf.cast(aggregate, tf.float32), share, new

    def empty():
        return tf.zeros(tf.shape(updates)[1:], tf.float32), tf.zeros_like(weights), state

    aggregate, share, new = tf.cond(tf.size(index) > 0, run, empty)
    aggregate.set_shape(updates.shape[1:])
    share.set_shape(weights.shape)
    return aggregate, share, new


class RoundComputations:
    """The TFF computations of one scenario, traced once per run."""

    def __init__(self, scenario: Scenario, model: FlatModel, store: ClientStore):
        import tensorflow as tf
        import tensorflow_federated as tff

        self.scenario = scenario
        facts = scenario.facts
        training = scenario.training
        optimizer = training.optimizer.build()
        data_attacks = [g.attack for g in scenario.attacks]
        update_attacks = [(i, g.attack) for i, g in enumerate(scenario.attacks) if g.attack.poisons_updates]
        detectors, aggregator = scenario.detectors, scenario.aggregator
        functional, dim = model.functional, model.dim
        epochs, batch_size, server_lr = training.local_epochs, training.batch_size, training.server_learning_rate

        weights_type = tff.TensorType(np.float32, [dim])
        client_type = tff.StructType([
            ("group", tff.TensorType(np.int32)),  # attack group acting this round, -1 if none
            ("seed", tff.TensorType(np.int64, [2])),
            ("slot", tff.TensorType(np.int32)),
            ("client", tff.TensorType(np.int32)),
            ("member", tff.TensorType(np.int32)),  # index within its attack group
        ])

        def poison(x, y, group, seed, member):
            if not any(a.poisons_data for a in data_attacks):
                return x, y
            branches = [lambda: (x, y)] + [
                (lambda i=i, a=a: _in_scope(f"attack_{i}", a, a.poison_data, x, y, seed, facts, member))
                if a.poisons_data else (lambda: (x, y))
                for i, a in enumerate(data_attacks)
            ]
            return tf.switch_case(group + 1, branches)

        def local_update(flat, x, y, seed):
            """In TF: (update as a flat delta, mean training loss) from the
            model ``flat`` on (x, y).  FedAvg: local epochs of the client
            optimizer; FedSGD: minus the gradient of one batch."""
            start = model.unflatten(flat)
            n = tf.shape(y)[0]

            def loss_of(weights, indices):
                logits = functional.predict_on_batch((weights, ()), tf.gather(x, indices), training=True)
                return functional.loss(logits, tf.gather(y, indices))

            def shuffled(epoch):
                return tf.argsort(tf.random.stateless_uniform([n], tf.random.experimental.stateless_fold_in(seed, epoch)))

            if training.protocol == "fedsgd":
                indices = shuffled(0)[:batch_size]
                with tf.GradientTape() as tape:
                    tape.watch(start)
                    loss = loss_of(start, indices)
                grads = tape.gradient(loss, start)
                delta = -tf.concat([tf.reshape(g, [-1]) for g in grads], axis=0)
                return tf.where(n > 0, delta, tf.zeros_like(delta)), tf.where(n > 0, loss, 0.0)

            # The mini-batch loop is a tf.while_loop over precomputed shuffles:
            # the same batches as a tf.data pipeline, at well under half the
            # cost per step (benchmarks B1/D1 in docs/performance.md).
            steps_per_epoch = (n + batch_size - 1) // batch_size
            orders = tf.stack([shuffled(epoch) for epoch in range(epochs)])

            def step(i, weights, opt_state, loss_sum, count):
                batch = i % steps_per_epoch
                indices = orders[i // steps_per_epoch, batch * batch_size : tf.minimum((batch + 1) * batch_size, n)]
                with tf.GradientTape() as tape:
                    tape.watch(weights)
                    loss = loss_of(weights, indices)
                grads = tape.gradient(loss, weights)
                opt_state, weights = optimizer.next(opt_state, weights, tuple(grads))
                taken = tf.cast(tf.size(indices), tf.float32)
                return i + 1, tuple(weights), opt_state, loss_sum + loss * taken, count + taken

            opt_state = optimizer.initialize(tuple(tf.TensorSpec(w.shape, w.dtype) for w in start))
            _, final, _, loss_sum, count = tf.while_loop(
                lambda i, *_: i < epochs * steps_per_epoch, step, (0, start, opt_state, 0.0, 0.0)
            )
            delta = tf.concat([tf.reshape(a - b, [-1]) for a, b in zip(final, start)], axis=0)
            return delta, tf.math.divide_no_nan(loss_sum, count)

        @tff.tensorflow.computation(weights_type, client_type)
        def client_train(flat, data):
            # Client work: (poisoned) local data, local training from the broadcast model.
            x, y = store.read(data.client, model.input_shape)
            x, y = poison(x, y, data.group, data.seed, data.member)
            delta, loss = local_update(flat, x, y, data.seed)
            return dict(
                delta=delta, n=tf.cast(tf.shape(y)[0], tf.float32), slot=data.slot, group=data.group,
                client=data.client, loss=loss,
            )

        row_type = client_train.type_signature.result
        row_fields = tff.structure.to_elements(row_type)
        names = [name for name, _ in row_fields]
        rows_type = tff.StructType([(name, tff.TensorType(t.dtype, [None, *t.shape])) for name, t in row_fields])

        @tff.tensorflow.computation
        def no_rows():
            return {name: tf.zeros([0, *t.shape], t.dtype) for name, t in row_fields}

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

        # Server-side plugins with state across rounds, by key.
        stateful = [(f"attack_{i}", a) for i, a in update_attacks]
        stateful += [(f"detector_{i}", d) for i, d in enumerate(detectors)] + [("aggregator", aggregator)]
        self.initial_state = {}
        if training.server_momentum > 0:
            self.initial_state["server"] = {"velocity": np.zeros(dim, np.float32)}
        needs_root = any(p.needs_root_update for _, p in stateful)
        if needs_root and store.root is None:
            raise RunError("a plugin needs the server's root update, but the scenario keeps no root samples "
                           "(training setting root_samples)")
        for key, plugin in stateful:
            initial = _in_scope(key, plugin, plugin.initial_state, dim, facts)
            state = {name: np.asarray(value) for name, value in initial.items()}
            if state:
                self.initial_state[key] = state
        round_type = tff.StructType([
            ("round", tff.TensorType(np.int32)),
            ("seed", tff.TensorType(np.int64, [2])),
            ("state", tff.StructType([
                (key, tff.StructType([(name, tff.TensorType(v.dtype, v.shape)) for name, v in state.items()]))
                for key, state in self.initial_state.items()
            ])),
        ])
        layers = model.layers

        @tff.tensorflow.computation(weights_type, in_slot_order.type_signature.result, round_type)
        def server_stage(global_weights, rows, round_info):
            def stamp(*after):  # wall time once ``after`` (and the previous stamp) is computed
                with tf.control_dependencies([t for t in tf.nest.flatten(after) if t is not None]):
                    return tf.timestamp()

            state = {key: dict(tff.structure.iter_elements(round_info.state[key])) for key in self.initial_state}
            updates, groups = rows["delta"], rows["group"]
            started = stamp(global_weights, updates)
            root_update = None
            if needs_root:  # the server trains on its root samples as a client would
                root_x, root_y = store.read(store.root, model.input_shape)
                root_update, _ = local_update(global_weights, root_x, root_y, round_info.seed)
            ctx = ServerContext(
                facts=facts, layers=layers, client_ids=rows["client"], num_examples=rows["n"],
                global_weights=global_weights, round=round_info.round, seed=round_info.seed,
                root_update=root_update,
            )
            benign = groups < 0
            # Model poisoning: each attack rewrites its own rows.
            for index, attack in update_attacks:
                key = f"attack_{index}"
                updates, new = _in_scope(key, attack, attack.apply,
                                         updates, tf.equal(groups, index), benign, ctx, state.get(key, {}))
                state.update({key: new} if key in state else {})
            sent_norm = tf.norm(updates, axis=1)  # what each client's update looked like on arrival
            attacked = stamp(started, updates)
            # Non-finite rows never reach a detector or the aggregator.
            finite = tf.reduce_all(tf.math.is_finite(updates), axis=1)
            updates = tf.where(finite[:, None], updates, 0.0)
            keep, scores = finite, []
            for index, detector in enumerate(detectors):
                key = f"detector_{index}"
                updates, score, keep, new = _in_scope(key, detector, detect_on_kept, detector, updates, keep, ctx,
                                                      state.get(key, {}))
                scores.append(score)
                state.update({key: new} if key in state else {})
            detected = stamp(attacked, updates, keep)
            aggregate, row_weights, new = _in_scope("aggregator", aggregator, aggregate_kept, aggregator, updates,
                                                    tf.where(keep, rows["n"], 0.0), ctx,
                                                    state.get("aggregator", {}))
            state.update({"aggregator": new} if "aggregator" in state else {})
            if "server" in state:  # FedAvgM: the server steps along a momentum of aggregates
                aggregate = training.server_momentum * state["server"]["velocity"] + aggregate
                state["server"] = {"velocity": aggregate}
            new_weights = global_weights + server_lr * aggregate
            finished = stamp(detected, new_weights, row_weights, state)
            return dict(
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

        # The CLIENTS-placed argument comes last: TFF 0.87's mergeable context
        # (several workers) splits clients correctly only in that position.
        @tff.federated_computation(
            tff.FederatedType(weights_type, tff.SERVER),
            tff.FederatedType(round_type, tff.SERVER),
            tff.FederatedType(client_type, tff.CLIENTS),
        )
        def run_round(global_weights, round_info, client_data):
            # Client work.
            updates = tff.federated_map(client_train, (tff.federated_broadcast(global_weights), client_data))
            # Gather the rows at the server, in slot order.
            rows = tff.federated_aggregate(updates, no_rows(), append_row, merge_rows, in_slot_order)
            # Server stage: model poisoning, detection, aggregation, server step.
            return tff.federated_map(server_stage, tff.federated_zip((global_weights, rows, round_info)))

        self.client_train = client_train
        self.server_stage = server_stage
        self.run_round = run_round


def call_interruptibly(function, *args, watch=None):
    """Call a TFF computation so that Ctrl-C and SIGTERM still reach us.

    TFF's synchronous context waits on a future with no timeout; a signal
    that the kernel delivers to one of gRPC's threads then never wakes the
    main thread.  The call runs in a daemon thread instead, and the main
    thread waits in short slices, checking for a stop request between them.  TFF's context stack is per thread, so the caller's context is
    installed in the helper thread.
    """
    from tensorflow_federated.python.core.impl.context_stack import context_stack_impl

    context = context_stack_impl.context_stack.current
    outcome: dict = {}

    def target():
        try:
            with context_stack_impl.context_stack.install(context):
                outcome["value"] = function(*args)
        except BaseException as error:  # handed to the main thread below
            outcome["error"] = error

    thread = threading.Thread(target=target, name="fedarena-tff-call", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
        interrupts.check()
        if watch is not None:
            watch.check()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@attrs.frozen
class RoundResult:
    round: int
    weights: np.ndarray
    state: dict  # server-side plugin state after the round
    clients: dict[str, np.ndarray]  # per slot
    metrics: dict[str, float]  # empty when the round was not evaluated
    seconds: dict[str, float]  # per stage
    detection: dict[str, int]  # confusion counts of this round's drops against the malicious set


class Run:
    """One scenario's run: data prepared, computations traced, rounds executed."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.data = scenario.dataset.load(scenario.seed)
        # The server's root samples (if any) are drawn first and kept from the clients.
        pool = np.random.default_rng([scenario.seed, 3]).permutation(len(self.data.train_y))
        root, pool = np.sort(pool[: scenario.training.root_samples]), np.sort(pool[scenario.training.root_samples :])
        labels = self.data.train_y if not len(root) else self.data.train_y[pool]
        parts = scenario.split.partition(labels, scenario.num_clients, np.random.default_rng([scenario.seed, 0]))
        if len(root):
            parts = [pool[p] for p in parts]
        self.clients = ClientStore(self.data.train_x, self.data.train_y, parts, root)
        num_classes = self.data.info.num_classes
        self.class_histogram = np.stack([np.bincount(self.data.train_y[p], minlength=num_classes) for p in parts])
        self.groups, self.members = attacker_groups(scenario)
        self.model = FlatModel(scenario)
        self.computations = RoundComputations(scenario, self.model, self.clients)

    # The workers in use, checked while a round runs (see `WorkerPool.check`).
    watch = None

    def close(self) -> None:
        self.clients.close()

    def client_inputs(self, round_number: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        ids = sample_clients(self.scenario, round_number)
        active = np.array([g >= 0 and self.scenario.attacks[g].active_in(round_number) for g in self.groups[ids]])
        acting = np.where(active, self.groups[ids], -1).astype(np.int32)
        inputs = [
            dict(
                group=acting[slot],
                seed=np.array([self.scenario.seed, round_number * self.scenario.num_clients + cid], np.int64),
                slot=np.int32(slot), client=np.int32(cid), member=self.members[cid],
            )
            for slot, cid in enumerate(ids)
        ]
        return ids, acting, inputs

    def evaluate(self, weights: np.ndarray) -> dict[str, float]:
        test_x, test_y = self.data.test_x, self.data.test_y
        logits = self.model.predict(weights, test_x)
        metrics = {f"test_{name}": metric.compute(test_y, logits) for name, metric in self.scenario.metrics}
        facts = self.scenario.facts
        for group in self.scenario.attacks:
            found = group.attack.test_metrics(lambda x: self.model.predict(weights, x), test_x, test_y, facts)
            metrics.update({f"{group.name}_{name}": value for name, value in found.items()})
        return metrics

    def round_info(self, round_number: int, state: dict) -> dict:
        # Client seeds are [seed, round * clients + id] >= 0; the server's are
        # negative in the second word, so the two never collide.
        return dict(round=np.int32(round_number), seed=np.array([self.scenario.seed, -round_number], np.int64),
                    state=state)

    def rounds(self, weights: np.ndarray | None = None, state: dict | None = None, first_round: int = 1,
               detection_totals: dict[str, int] | None = None):
        """Yield a `RoundResult` per round, from ``first_round`` on (a resumed
        run passes the checkpoint's weights, state and detection counts)."""
        weights = self.model.initial if weights is None else weights
        initial = self.computations.initial_state
        # A checkpoint read back from HDF5 lists names alphabetically; the
        # round's TFF type takes the state in the order of `initial_state`.
        state = initial if state is None else {key: {name: state[key][name] for name in initial[key]}
                                               for key in initial}
        self.detection_totals = dict(detection_totals or {})
        for round_number in range(first_round, self.scenario.rounds + 1):
            started = time.perf_counter()
            ids, acting, inputs = self.client_inputs(round_number)
            out = call_interruptibly(self.computations.run_round, weights, self.round_info(round_number, state), inputs,
                                     watch=self.watch)
            weights = np.asarray(out.pop("weights"), dtype=np.float32)
            state = _as_arrays(out.pop("state"))
            attack_s, detection_s, aggregation_s = np.asarray(out.pop("stage_seconds"), np.float64)
            trained = time.perf_counter()
            clients = {name: np.asarray(value) for name, value in out.items()}
            clients.update(id=ids, malicious=acting >= 0, attack_group=acting)
            detection = confusion(flagged=~clients["kept"], malicious=clients["malicious"])
            self.detection_totals = {k: self.detection_totals.get(k, 0) + v for k, v in detection.items()}
            metrics = {}
            if round_number % self.scenario.evaluate_every == 0 or round_number == self.scenario.rounds:
                metrics = self.evaluate(weights)
                metrics.update(precision_recall(self.detection_totals))
            evaluated = time.perf_counter()
            seconds = {
                "client": trained - started - attack_s - detection_s - aggregation_s,
                "attack": attack_s, "detection": detection_s, "aggregation": aggregation_s,
                "evaluation": evaluated - trained,
            }
            yield RoundResult(round_number, weights, state, clients, metrics, seconds, detection)


def confusion(flagged: np.ndarray, malicious: np.ndarray) -> dict[str, int]:
    """Detection confusion counts: a dropped row is a positive."""
    return {
        "true_positives": int(np.sum(flagged & malicious)),
        "false_positives": int(np.sum(flagged & ~malicious)),
        "true_negatives": int(np.sum(~flagged & ~malicious)),
        "false_negatives": int(np.sum(~flagged & malicious)),
    }


def precision_recall(counts: dict[str, int]) -> dict[str, float]:
    """Detection precision and recall over the counts given (NaN when undefined)."""
    tp, fp, fn = counts.get("true_positives", 0), counts.get("false_positives", 0), counts.get("false_negatives", 0)
    return {
        "detection_precision": tp / (tp + fp) if tp + fp else float("nan"),
        "detection_recall": tp / (tp + fn) if tp + fn else float("nan"),
    }


def _as_arrays(structure) -> dict:
    """TFF's returned structure -> nested dicts of NumPy arrays."""
    if hasattr(structure, "items"):
        return {key: _as_arrays(value) for key, value in structure.items()}
    return np.asarray(structure)
