"""fedarena aggregators offered as TFF aggregation factories: the process on
its own, and inside `tff.learning.algorithms.build_weighted_fed_avg`."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedarena.core.plugin.interfaces import Facts
from fedarena.core.execution.tff_factory import as_tff_factory
from fedarena.plugins.aggregators.afa import AFA
from fedarena.plugins.aggregators.bucketing import Bucketing
from fedarena.plugins.aggregators.centered_clipping import CenteredClipping
from fedarena.plugins.aggregators.fedavg import FedAvg
from fedarena.plugins.aggregators.krum import Krum
from fedarena.plugins.aggregators.median import Median
from fedarena.plugins.aggregators.trimmed_mean import TrimmedMean


@pytest.fixture(scope="module")
def tff_context():
    from fedarena.core.execution.backends.worker import tff_workers

    with tff_workers() as addresses:
        yield addresses


def test_the_process_applies_the_aggregator_to_the_client_values(tff_context):
    value_type = tff.types.to_type([tff.TensorType(np.float32, [2, 2]), tff.TensorType(np.float32, [3])])
    clients = [[np.full([2, 2], v, np.float32), np.array([v, -v, 2 * v], np.float32)] for v in (1.0, 2.0, 4.0, 100.0)]
    process = as_tff_factory(Median()).create(value_type)
    assert process.next.type_signature.result.result.member == value_type
    state = process.initialize()
    output = process.next(state, clients)
    np.testing.assert_allclose(output.result[0], np.full([2, 2], 3.0))  # median of 1, 2, 4, 100
    np.testing.assert_allclose(output.result[1], [3.0, -3.0, 6.0])
    assert output.state == 1  # the round counter that seeds randomised rules
    # Krum ignores the far client entirely; trimmed mean drops one per side.
    krum = as_tff_factory(Krum(f=0)).create(value_type)
    np.testing.assert_allclose(krum.next(krum.initialize(), clients).result[1], [2.0, -2.0, 4.0])
    trimmed = as_tff_factory(TrimmedMean(k=1)).create(value_type)
    np.testing.assert_allclose(trimmed.next(trimmed.initialize(), clients).result[1], [3.0, -3.0, 6.0])
    # A wrapping rule goes through its `apply` as in a run: buckets of one are the rows themselves.
    bucketed = as_tff_factory(Bucketing(inner=Median(), s=1)).create(value_type)
    np.testing.assert_allclose(bucketed.next(bucketed.initialize(), clients).result[1], [3.0, -3.0, 6.0])


def test_stateful_aggregators_and_failed_checks_are_refused():
    value_type = tff.TensorType(np.float32, [3])
    with pytest.raises(ValueError, match="CenteredClipping keeps state across rounds .previous.; "
                                         "as_tff_factory wraps stateless aggregators only"):
        as_tff_factory(CenteredClipping()).create(value_type)
    with pytest.raises(ValueError, match="keeps state across rounds"):
        as_tff_factory(AFA()).create(value_type)
    facts = Facts(num_clients=10, clients_per_round=4, num_classes=2, input_shape=(2,))
    with pytest.raises(ValueError, match=r"krum needs clients_per_round > 2f \+ 2 \(here 4 <= 2\*1 \+ 2\)"):
        as_tff_factory(Krum(f=1), facts)
    with pytest.raises(TypeError, match="float tensors"):
        as_tff_factory(Median()).create(tff.TensorType(np.int32, [3]))


def _keras_model():
    return tf.keras.Sequential([
        tf.keras.layers.InputLayer(input_shape=(4,)),
        tf.keras.layers.Dense(3, kernel_initializer=tf.keras.initializers.Constant(np.linspace(-1, 1, 12).reshape(4, 3)),
                              bias_initializer="zeros"),
    ])


def _client_data(seed, shift=0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, 4)).astype(np.float32) + shift
    y = rng.integers(0, 3, size=16).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(x=x, y=y)).batch(8)


def _learning_process(model_aggregator=None, unweighted=False):
    spec = collections.OrderedDict(x=tf.TensorSpec([None, 4], tf.float32), y=tf.TensorSpec([None], tf.int32))

    def model_fn():
        return tff.learning.models.from_keras_model(
            _keras_model(), input_spec=spec, loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )

    optimizer = tff.learning.optimizers.build_sgdm(learning_rate=0.5)
    if unweighted:
        return tff.learning.algorithms.build_unweighted_fed_avg(model_fn, optimizer)
    return tff.learning.algorithms.build_weighted_fed_avg(model_fn, optimizer, model_aggregator=model_aggregator)


def _one_round(process, data):
    state = process.initialize()
    before = [np.asarray(w) for w in process.get_model_weights(state).trainable]
    state = process.next(state, data).state
    after = [np.asarray(w) for w in process.get_model_weights(state).trainable]
    return before, after


def test_a_robust_aggregator_drives_tff_fed_avg(tff_context):
    data = [_client_data(i) for i in range(3)] + [_client_data(9, shift=50.0)]
    # Our unweighted mean, through the factory, equals TFF's own unweighted FedAvg.
    mean = tff.aggregators.as_weighted_aggregator(as_tff_factory(FedAvg()))
    start, ours = _one_round(_learning_process(mean), data)
    start_tff, theirs = _one_round(_learning_process(unweighted=True), data)
    for a, b in zip(start, start_tff):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Coordinate-wise median: one round runs, moves the model, and differs from the mean.
    median = tff.aggregators.as_weighted_aggregator(as_tff_factory(Median()))
    _, robust = _one_round(_learning_process(median), data)
    assert all(np.isfinite(w).all() for w in robust)
    assert any(not np.allclose(a, b) for a, b in zip(robust, start))
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(robust, ours))
