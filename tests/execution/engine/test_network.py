"""Models with running statistics: the functional kit's layers on
hand-made inputs (BatchNorm's batch moments and momentum rule, GroupNorm,
PyTorch-style padding), `FlatModel`'s flat vector (trainable tensors, then
statistics; FedBN's local coordinates), local training moving the
statistics, the server stage giving statistics the plain aggregate, and
Keras models with GroupNorm (accepted) or BatchNorm (refused clearly)."""

import attrs
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedarena.core.errors import RunError
from fedarena.core.execution.engine.computations import build_server_stage, local_training
from fedarena.core.execution.engine.flat_model import FlatModel
from fedarena.core.language.parser import parse
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Model
from fedarena.core.plugin.params import param
from fedarena.core.plugin.registry import build_registry
from fedarena.core.scenario.roles import Role
from fedarena.core.scenario.sweep import check
from fedarena.plugins import _functional as fn
from fedarena.plugins.aggregators.fedavg import FedAvg

EPS = fn.EPSILON


# --------------------------------------------------------------------------
# Layers on hand-made inputs.


def test_batch_norm_trains_on_batch_moments_and_moves_the_running_ones_by_the_momentum_rule():
    x = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0], [7.0, 3.0]], np.float32)
    net = fn.network(lambda ops, x: fn.batch_norm(ops, "bn", x, momentum=0.25), (2,), np.random.default_rng(0))
    assert [n for n, _ in net.trainable] == ["bn/gamma", "bn/beta"]
    assert [n for n, _ in net.statistics] == ["bn/moving_mean", "bn/moving_variance"]
    gamma, beta = np.array([2.0, 0.5], np.float32), np.array([1.0, -1.0], np.float32)
    running = (np.array([1.0, 1.0], np.float32), np.array([4.0, 2.0], np.float32))

    y, (mean, variance) = net.forward((gamma, beta), running, tf.constant(x), training=True)
    batch_mean, biased = x.mean(axis=0), x.var(axis=0)
    np.testing.assert_allclose(y, (x - batch_mean) / np.sqrt(biased + EPS) * gamma + beta, rtol=1e-5, atol=1e-6)
    # running = 0.75 * running + 0.25 * batch, the batch variance unbiased (n / (n - 1)).
    np.testing.assert_allclose(mean, 0.75 * running[0] + 0.25 * batch_mean, rtol=1e-6)
    np.testing.assert_allclose(variance, 0.75 * running[1] + 0.25 * x.var(axis=0, ddof=1), rtol=1e-6)

    y, kept = net.forward((gamma, beta), running, tf.constant(x), training=False)
    np.testing.assert_allclose(y, (x - running[0]) / np.sqrt(running[1] + EPS) * gamma + beta, rtol=1e-5)
    np.testing.assert_array_equal(kept[0], running[0])
    np.testing.assert_array_equal(kept[1], running[1])
    # A negative running variance (only a poisoned update makes one) evaluates as zero, finitely.
    y, _ = net.forward((gamma, beta), (running[0], np.array([-3.0, 2.0], np.float32)), tf.constant(x), False)
    np.testing.assert_allclose(y[:, 0], (x[:, 0] - 1.0) / np.sqrt(EPS) * 2.0 + 1.0, rtol=1e-5)


def test_batch_norm_of_feature_maps_pools_every_position():
    x = np.random.default_rng(1).normal(size=(2, 3, 3, 2)).astype(np.float32)
    net = fn.network(lambda ops, x: fn.batch_norm(ops, "bn", x, momentum=1.0), (3, 3, 2), np.random.default_rng(0))
    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    _, (mean, variance) = net.forward((ones, zeros), (zeros, ones), tf.constant(x), training=True)
    flat = x.reshape(-1, 2)  # 18 values per channel
    np.testing.assert_allclose(mean, flat.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(variance, flat.var(axis=0, ddof=1), rtol=1e-5)


def test_group_norm_normalises_each_sample_over_its_groups():
    x = np.random.default_rng(2).normal(size=(2, 2, 2, 4)).astype(np.float32)
    net = fn.network(lambda ops, x: fn.group_norm(ops, "gn", x, groups=2), (2, 2, 4), np.random.default_rng(0))
    assert net.statistics == ()
    gamma, beta = np.array([1, 2, 3, 4], np.float32), np.array([0, 1, 0, 1], np.float32)
    y, _ = net.forward((gamma, beta), (), tf.constant(x), training=True)
    grouped = x.reshape(2, 2, 2, 2, 2)  # [n, h, w, group, channel in group]
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    std = np.sqrt(grouped.var(axis=(1, 2, 4), keepdims=True) + EPS)
    np.testing.assert_allclose(y, ((grouped - mean) / std).reshape(x.shape) * gamma + beta, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.forward((gamma, beta), (), tf.constant(x), training=False)[0], y)


def test_a_strided_convolution_pads_both_sides_as_pytorch_does():
    # 3x3 kernel of ones, stride 2, on a 4x4 map: output (0, 0) sums rows
    # and columns -1..1 (padding, 0, 1), where TF's "SAME" would sum 0..2.
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    net = fn.network(lambda ops, x: fn.conv(ops, "c", x, 1, 3, stride=2), (4, 4, 1), np.random.default_rng(0))
    y, _ = net.forward((np.ones((3, 3, 1, 1), np.float32),), (), tf.constant(x), training=False)
    image = np.pad(x[0, :, :, 0], 1)
    expected = [[image[r : r + 3, c : c + 3].sum() for c in (0, 2)] for r in (0, 2)]
    np.testing.assert_array_equal(y[0, :, :, 0], expected)


def test_a_network_asking_twice_for_one_tensor_is_refused():
    def twice(ops, x):
        return fn.dense(ops, "d", fn.dense(ops, "d", x, 2), 2)

    with pytest.raises(ValueError, match="asks for the tensor 'd/kernel' twice"):
        fn.network(twice, (3,), np.random.default_rng(0))


# --------------------------------------------------------------------------
# A tiny BatchNorm model as a plugin, through FlatModel.


@attrs.frozen
class TinyBN(Model):
    """Dense 4 -> BatchNorm -> ReLU -> dense logits."""

    norm_state: str = param("global", choices=("global", "local"), doc="FedBN or not")

    def network(self, input_shape, num_classes, rng):
        local = self.norm_state == "local"

        def architecture(ops, x):
            h = fn.relu(fn.batch_norm(ops, "bn", fn.dense(ops, "hidden", x, 4), momentum=0.1, local=local))
            return fn.dense(ops, "logits", h, num_classes)

        return fn.network(architecture, input_shape, rng)


class TinyBNPlugin:
    @hookimpl
    def fedarena_register_models(registry):
        registry.add("tiny_bn", TinyBN)


class KerasNormPlugin:
    """Keras models with GroupNormalization or BatchNormalization."""

    @attrs.frozen
    class KerasNorm(Model):
        kind_of_norm: str = param("group", choices=("group", "batch"), doc="the normalization layer")

        def build(self, input_shape, num_classes):
            layers = tf.keras.layers
            norm = layers.GroupNormalization(groups=2) if self.kind_of_norm == "group" else layers.BatchNormalization()
            return tf.keras.Sequential([layers.InputLayer(input_shape=input_shape), layers.Dense(4), norm,
                                        layers.ReLU(), layers.Dense(num_classes)])

    @hookimpl
    def fedarena_register_models(registry):
        registry.add("keras_norm", KerasNormPlugin.KerasNorm)


def scenario_with(model: str, protocol: str = "fedavg", batch_size: int = 32):
    text = f"""scenario "bn" {{
  rounds 1
  dataset synthetic(samples = 200, features = 3, classes = 3)
  split iid over 4 clients
  model {model}
  training {{
    protocol {protocol}
    batch_size {batch_size}
    optimizer sgd(learning_rate = 0.1)
  }}
}}"""
    registry = build_registry(extra_plugins=(("tiny_bn", TinyBNPlugin), ("keras_norm", KerasNormPlugin)))
    return check(parse(text, "bn.fls"), registry)


def test_the_flat_vector_is_the_trainable_tensors_then_the_statistics():
    model = FlatModel(scenario_with("tiny_bn"))
    assert [(layer.name, layer.shape, layer.offset) for layer in model.layers] == [
        ("hidden/kernel", (3, 4), 0), ("hidden/bias", (4,), 12), ("bn/gamma", (4,), 16), ("bn/beta", (4,), 20),
        ("logits/kernel", (4, 3), 24), ("logits/bias", (3,), 36),
        ("bn/moving_mean", (4,), 39), ("bn/moving_variance", (4,), 43),
    ]
    assert model.dim == 47 and model.statistics_from == 39 and model.trainable_count == 6
    np.testing.assert_array_equal(model.initial[39:], [0, 0, 0, 0, 1, 1, 1, 1])
    assert model.local.size == 0
    trainable, statistics = model.split(tf.constant(model.initial))
    assert [tuple(t.shape) for t in statistics] == [(4,), (4,)] and len(trainable) == 6
    # FedBN: gamma, beta and both statistics are the client's own.
    local = FlatModel(scenario_with('tiny_bn(norm_state = "local")'))
    assert local.local.tolist() == list(range(16, 24)) + list(range(39, 47))
    np.testing.assert_array_equal(local.initial, model.initial)  # the same draws from the seed


def test_evaluation_uses_the_running_statistics_of_the_flat_vector():
    model = FlatModel(scenario_with("tiny_bn"))
    x = np.random.default_rng(3).normal(size=(5, 3)).astype(np.float32)
    weights = model.initial.copy()
    weights[39:43], weights[43:] = [1.0, -1.0, 0.5, 0.0], [4.0, 0.25, 1.0, 9.0]
    parts = [np.asarray(p) for p in model.unflatten(tf.constant(weights))]
    kernel, bias, gamma, beta, out_kernel, out_bias, mean, variance = parts
    h = np.maximum((x @ kernel + bias - mean) / np.sqrt(variance + EPS) * gamma + beta, 0)
    np.testing.assert_allclose(model.predict(weights, x), h @ out_kernel + out_bias, rtol=1e-4, atol=1e-5)


def run_local_update(scenario, x, y, seed=(1, 2)):
    model = FlatModel(scenario)
    update = local_training(model, scenario.training)
    with tf.Graph().as_default() as graph:
        outputs = update(tf.constant(model.initial), tf.constant(x), tf.constant(y), tf.constant(seed, tf.int64))
        with tf.compat.v1.Session(graph=graph) as session:
            delta, loss, end = session.run(outputs)
    return model, delta, loss, end


def test_local_training_moves_the_statistics_by_the_momentum_rule_and_the_weights_by_sgd():
    x = np.random.default_rng(4).normal(size=(8, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)
    # One step: a batch of all 8 samples.
    model, delta, loss, end = run_local_update(scenario_with("tiny_bn", batch_size=8), x, y)
    np.testing.assert_allclose(end, model.initial + delta, atol=1e-6)
    kernel, bias = model.initial[:12].reshape(3, 4), model.initial[12:16]
    pre = x @ kernel + bias  # what BatchNorm saw
    np.testing.assert_allclose(delta[39:43], 0.1 * pre.mean(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(end[43:], 0.9 + 0.1 * pre.var(axis=0, ddof=1), rtol=1e-4)
    assert np.abs(delta[:39]).max() > 0 and np.isfinite(loss) and loss > 0
    # FedSGD: minus the gradient for the weights; the statistics' change of that one forward pass.
    model, sgd_delta, _, _ = run_local_update(scenario_with("tiny_bn", protocol="fedsgd", batch_size=8), x, y)
    np.testing.assert_allclose(sgd_delta[39:], delta[39:], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sgd_delta[:39] * 0.1, delta[:39], rtol=1e-4, atol=1e-6)  # one SGD step of 0.1


def test_the_server_steps_the_weights_but_gives_the_statistics_the_plain_aggregate(tff_context):
    from fedarena.core.plugin.interfaces import Facts, Layer

    dim, statistics_from = 4, 2
    row_type = tff.StructType([
        ("delta", tff.TensorType(np.float32, [dim])), ("n", tff.TensorType(np.float32)),
        ("slot", tff.TensorType(np.int32)), ("group", tff.TensorType(np.int32)),
        ("client", tff.TensorType(np.int32)), ("loss", tff.TensorType(np.float32)),
    ])
    rows_type = tff.StructType([(name, tff.TensorType(t.dtype, [None, *t.shape]))
                                for name, t in tff.structure.to_elements(row_type)])
    stage = build_server_stage(
        rows_type, dim=dim, layers=(Layer("w", (2,), 0), Layer("bn/moving_mean", (2,), 2)),
        facts=Facts(num_clients=2, clients_per_round=2, num_classes=2, input_shape=(1,)),
        aggregator=(Role("aggregator"), FedAvg()), server_learning_rate=0.5, statistics_from=statistics_from,
    )
    delta = np.array([[2.0, 4.0, 1.0, 3.0], [4.0, 0.0, 3.0, 1.0]], np.float32)
    rows = dict(delta=delta, n=np.array([1.0, 3.0], np.float32), slot=np.arange(2, dtype=np.int32),
                group=np.full(2, -1, np.int32), client=np.arange(2, dtype=np.int32), loss=np.zeros(2, np.float32))
    out = stage(np.array([10.0, 10.0, 10.0, 10.0], np.float32), rows,
                dict(round=np.int32(1), seed=np.array([0, -1], np.int64), state={}))
    mean = (1 * delta[0] + 3 * delta[1]) / 4  # [3.5, 1.0, 2.5, 1.5]
    np.testing.assert_allclose(out["weights"], [10 + 0.5 * 3.5, 10 + 0.5 * 1.0, 10 + 2.5, 10 + 1.5])


def test_a_keras_model_with_group_norm_goes_through_tff_with_no_statistics():
    model = FlatModel(scenario_with('keras_norm(kind_of_norm = "group")'))
    assert model.statistics_from == model.dim == 3 * 4 + 4 + 4 + 4 + 4 * 3 + 3
    assert [layer.name.split("/")[-1] for layer in model.layers][2:4] == ["gamma:0", "beta:0"]
    x = np.random.default_rng(5).normal(size=(4, 3)).astype(np.float32)
    assert model.predict(model.initial, x).shape == (4, 3)


def test_a_keras_model_with_batch_norm_is_refused_with_the_way_out():
    with pytest.raises(RunError) as caught:
        FlatModel(scenario_with('keras_norm(kind_of_norm = "batch")'))
    assert str(caught.value) == (
        "model 'KerasNorm' has non-trainable weights (such as BatchNormalization's running statistics), which "
        "TFF's Keras conversion cannot carry: use GroupNormalization in a Keras model, or write the model as a "
        "functional network (Model.network), as resnet18 and vgg11 are")
