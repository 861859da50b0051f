"""fedarena aggregators as TFF aggregation factories.

    factory = as_tff_factory(Krum(f=1))
    process = tff.learning.algorithms.build_weighted_fed_avg(
        model_fn, client_optimizer_fn=...,
        model_aggregator=tff.aggregators.as_weighted_aggregator(factory))

The process's ``next`` does what fedarena's own round does with updates
(see docs/architecture.md, "One round, as TFF sees it"):

  client work   each client's value (any structure of float tensors) is
                flattened into one float32 row;
  gather        ``tff.federated_aggregate`` whose accumulate/merge
                concatenate the rows into a ``[K, d]`` matrix at the server;
  server step   the aggregator runs on that matrix (every row weight 1) and
                its ``[d]`` result is packed back into the value's structure.

Only stateless aggregators can be wrapped: the factory's state is just a
round counter that seeds the aggregator's randomness (``[seed, round]``).
What an aggregation factory cannot know is given neutral values in the
`ServerContext`: client ids are the row numbers, example counts 1, the
global weights zero.  Rows arrive in the order TFF merges them; rules that
depend on row order with a fixed seed (bucketing's buckets) see that order.
"""

from __future__ import annotations

import numpy as np

from fedarena.core.execution.engine.computations import aggregate_kept, build_gather
from fedarena.core.plugin.interfaces import Aggregator, Facts, Layer, ServerContext


def _neutral_facts() -> Facts:
    return Facts(num_clients=0, clients_per_round=0, num_classes=0, input_shape=())


def as_tff_factory(aggregator: Aggregator, facts: Facts | None = None, seed: int = 0):
    """A `tff.aggregators.UnweightedAggregationFactory` applying ``aggregator``
    to the client values.

    ``facts`` (optional) describes the federation for ``aggregator.check``
    and for rules that size themselves from it; problems raise ValueError
    right away.  ``seed`` is the first word of every round's stateless seed.
    Stateful aggregators (non-empty ``initial_state``) raise ValueError when
    the factory's ``create`` is called.  Wrap the factory with
    `tff.aggregators.as_weighted_aggregator` where a weighted one is needed
    (the weights are then ignored).
    """
    import tensorflow as tf
    import tensorflow_federated as tff

    if not isinstance(aggregator, Aggregator):
        raise TypeError(f"as_tff_factory needs a fedarena Aggregator, got {type(aggregator).__name__}")
    if facts is not None:
        problems = aggregator.check(facts)
        if problems:
            raise ValueError(f"{type(aggregator).__name__} cannot run here: " + "; ".join(problems))
    facts = facts if facts is not None else _neutral_facts()

    class RobustAggregationFactory(tff.aggregators.UnweightedAggregationFactory):
        """Gathers client values as rows and applies a fedarena aggregator."""

        def create(self, value_type):
            structure = _python_structure(value_type)
            leaves = tf.nest.flatten(structure)  # tf.TensorSpec, in the order tf.nest flattens values
            shapes = [tuple(int(s) for s in leaf.shape) for leaf in leaves]
            sizes = [int(np.prod(shape, dtype=np.int64)) for shape in shapes]
            dim = sum(sizes)
            state = aggregator.initial_state(dim, facts)
            if state:
                raise ValueError(
                    f"{type(aggregator).__name__} keeps state across rounds ({', '.join(state)}); "
                    "as_tff_factory wraps stateless aggregators only"
                )
            offsets = np.cumsum([0] + sizes[:-1])
            layers = tuple(Layer(f"value_{i}", shape, int(offset))
                           for i, (shape, offset) in enumerate(zip(shapes, offsets)))
            @tff.tensorflow.computation
            def initial_round():
                return tf.constant(0, tf.int32)

            @tff.federated_computation
            def initialize():
                return tff.federated_eval(initial_round, tff.SERVER)

            # Client work: one flat float32 row per client.
            @tff.tensorflow.computation(value_type)
            def flatten(value):
                return tf.concat([tf.reshape(tf.cast(t, tf.float32), [-1]) for t in tf.nest.flatten(value)], axis=0)

            # Gather: concatenate rows, as the engine's round does.
            gather = build_gather(flatten.type_signature.result)

            # Server step: the aggregator on the [K, d] matrix, packed back.
            @tff.tensorflow.computation(tff.TensorType(np.int32), gather.rows_type)
            def server_step(round_number, rows):
                count = tf.shape(rows)[0]
                round_number = round_number + 1
                ctx = ServerContext(
                    facts=facts, layers=layers, client_ids=tf.range(count, dtype=tf.int32),
                    num_examples=tf.ones([count], tf.float32), global_weights=tf.zeros([dim], tf.float32),
                    round=round_number,
                    seed=tf.stack([tf.constant(seed, tf.int64), tf.cast(round_number, tf.int64)]),
                )
                # The server stage's own plumbing: no rows, no call; the plugin's `apply`.
                aggregate, _, _ = aggregate_kept(aggregator, rows, tf.ones([count], tf.float32), ctx, {})
                parts = [tf.cast(tf.reshape(part, leaf.shape), leaf.dtype)
                         for part, leaf in zip(tf.split(aggregate, sizes), leaves)]
                return round_number, tf.nest.pack_sequence_as(structure, parts)

            @tff.federated_computation(initialize.type_signature.result, tff.FederatedType(value_type, tff.CLIENTS))
            def next_fn(state, value):
                rows = gather(tff.federated_map(flatten, value))
                out = tff.federated_map(server_step, tff.federated_zip((state, rows)))
                return tff.templates.MeasuredProcessOutput(
                    state=out[0], result=out[1], measurements=tff.federated_value((), tff.SERVER)
                )

            return tff.templates.AggregationProcess(initialize, next_fn)

    return RobustAggregationFactory()


def _python_structure(value_type):
    """The value type as a Python structure of `tf.TensorSpec` (to flatten
    and pack values the way `tf.nest` does); float tensors of known shape."""
    import tensorflow as tf
    import tensorflow_federated as tff

    if isinstance(value_type, tff.TensorType):
        structure = tf.TensorSpec(value_type.shape, value_type.dtype)
    elif isinstance(value_type, tff.StructWithPythonType) and tff.types.is_structure_of_tensors(value_type):
        structure = tff.types.structure_from_tensor_type_tree(lambda t: tf.TensorSpec(t.shape, t.dtype), value_type)
    else:
        raise TypeError(f"as_tff_factory aggregates a tensor or a Python structure of tensors, got {value_type}")
    for spec in tf.nest.flatten(structure):
        if not spec.dtype.is_floating:
            raise TypeError(f"as_tff_factory aggregates float tensors, got {spec.dtype.name}")
        if not spec.shape.is_fully_defined():
            raise TypeError(f"as_tff_factory needs fully defined shapes, got {spec.shape}")
    return structure
