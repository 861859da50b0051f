"""Model plugins: shapes, parameter counts from the papers, and what TFF's
functional model needs (trainable weights only, created in listed order)."""

from __future__ import annotations

import numpy as np
import pytest

from fedarena.core.scenario.sweep import check
from fedarena.core.errors import ScenarioError
from fedarena.core.plugin.interfaces import Facts
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import default_registry
from fedarena.plugins.models import CNN, MLP, LeNet5, Logistic, ResNet

MODELS = [MLP(hidden=(16,)), Logistic(), CNN(), LeNet5(), LeNet5(activation="tanh", pooling="average"),
          ResNet(depth=8), ResNet(depth=8, norm="none"), CNN(norm="group", hidden=32),
          LeNet5(norm="group", activation="tanh", groups=1)]
SHAPES = [(28, 28, 1), (32, 32, 3), (8, 8, 1), (28, 28)]


def built_in_graph(model, shape, classes):
    """Build in a fresh graph, recording the order weights are created in."""
    import tensorflow as tf

    created = []

    def record(next_creator, **kwargs):
        variable = next_creator(**kwargs)
        created.append(variable.name)
        return variable

    with tf.Graph().as_default():
        with tf.variable_creator_scope(record):
            keras_model = model.build(shape, classes)
        return keras_model, created


@pytest.mark.parametrize("model", MODELS, ids=repr)
def test_models_give_batch_by_classes_logits(model):
    import tensorflow as tf

    for shape, classes in zip(SHAPES, (10, 10, 4, 62)):
        keras_model = model.build(shape, classes)
        x = np.random.default_rng(0).random((3, *shape), np.float32)
        logits = keras_model(x, training=False).numpy()
        assert logits.shape == (3, classes) and np.all(np.isfinite(logits))
        # Logits, not probabilities: no softmax at the end.
        assert not np.allclose(logits.sum(axis=1), 1.0)
        assert keras_model.non_trainable_weights == []
        assert not any(isinstance(layer, tf.keras.layers.BatchNormalization) for layer in keras_model.layers)


@pytest.mark.parametrize("model", MODELS, ids=repr)
def test_weights_are_created_in_the_order_keras_lists_them(model):
    # The engine names the flat vector's slices from `trainable_weights`,
    # while TFF orders the weights by creation: the two must agree.
    keras_model, created = built_in_graph(model, (32, 32, 3), 10)
    assert created == [w.name for w in keras_model.trainable_weights]


def test_cnn_has_the_papers_parameter_count():
    model = CNN().build((28, 28, 1), 10)
    assert model.count_params() == 1_663_370  # McMahan et al. 2017
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    assert [layer.kernel_size for layer in model.layers if hasattr(layer, "kernel_size")] == [(5, 5), (5, 5)]


def test_lenet5_parameter_counts():
    assert LeNet5().build((28, 28, 1), 10).count_params() == 61_706  # the usual LeNet-5 on MNIST
    assert LeNet5().build((32, 32, 3), 10).count_params() == 62_006  # 3 input channels: 2 x 150 more


def test_resnet_depth_and_norm():
    import tensorflow as tf

    def convs(model):
        return [l for l in model.layers if isinstance(l, tf.keras.layers.Conv2D) and "shortcut" not in l.name]

    models = {depth: ResNet(depth=depth).build((32, 32, 3), 10) for depth in (8, 20)}
    for depth, model in models.items():
        assert len(convs(model)) + 1 == depth  # weighted layers: convolutions and the output
        assert model.layers[-1].output_shape == (None, 10)
        assert all(isinstance(l, tf.keras.layers.GroupNormalization) for l in model.layers if "norm" in l.name)
    # Stem 432 + 32, stage 1: 6 x (2,304 + 32), stage 2: 4,672 + 9,280 + 576 (1x1 shortcut) + 4 x 9,280,
    # stage 3: 18,560 + 36,992 + 2,176 + 4 x 36,992, output 650 (He et al.'s ResNet-20: "0.27M").
    assert models[20].count_params() == 272_474
    plain = ResNet(depth=8, norm="none").build((32, 32, 3), 10)
    assert not any(isinstance(l, tf.keras.layers.GroupNormalization) for l in plain.layers)


def test_model_checks_need_images_and_valid_settings():
    flat = Facts(num_clients=4, clients_per_round=2, num_classes=4, input_shape=(16,))
    images = Facts(num_clients=4, clients_per_round=2, num_classes=10, input_shape=(32, 32, 3))
    for model in (CNN(), LeNet5(), ResNet()):
        assert "image inputs" in model.check(flat)[0]
        assert model.check(images) == []
    assert MLP().check(flat) == [] and Logistic().check(flat) == []
    assert "6n + 2" in ResNet(depth=10).check(images)[0]
    assert "groups" in ResNet(width=15, groups=2).check(images)[0]
    with pytest.raises(ValueError, match="6n"):
        ResNet(depth=10).build((32, 32, 3), 10)


def test_the_checker_reports_a_model_that_does_not_fit_the_data():
    text = """scenario "s" {
  rounds 1
  dataset synthetic
  split iid over 4 clients
  model resnet(depth = 9)
}"""
    with pytest.raises(ScenarioError) as caught:
        check(parse(text, "s.fls"), default_registry())
    message = str(caught.value)
    assert "6n + 2" in message and "image inputs" in message
    for name in ("cnn", "lenet5", "resnet", "mlp", "logistic"):
        assert default_registry().get("model", name) is not None


@pytest.mark.parametrize("model", [CNN(), ResNet(depth=8)], ids=repr)
def test_models_work_as_tff_functional_models(model):
    import tensorflow as tf
    import tensorflow_federated as tff

    shape = (28, 28, 1)
    functional = tff.learning.models.functional_model_from_keras(
        lambda: model.build(shape, 10), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        input_spec=(tf.TensorSpec((None,) + shape, tf.float32), tf.TensorSpec([None], tf.int32)),
    )
    trainable, non_trainable = functional.initial_weights
    assert non_trainable == () or len(non_trainable) == 0
    with tf.Graph().as_default() as graph:
        weights = tuple(tf.constant(w) for w in trainable)
        x = tf.constant(np.random.default_rng(0).random((2, *shape), np.float32))
        with tf.GradientTape() as tape:
            tape.watch(weights)
            logits = functional.predict_on_batch((weights, ()), x, training=True)
            loss = functional.loss(logits, tf.constant([1, 2]))
        grads = tape.gradient(loss, weights)
        with tf.compat.v1.Session(graph=graph) as session:
            logits, grads = session.run((logits, grads))
    assert logits.shape == (2, 10)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)


def test_cnn_and_lenet5_defaults_build_the_models_they_built_before_the_norm_option():
    # Existing results stay bit-identical: same layers, same names, same
    # weights from the same seed as the pre-option definitions (written out here).
    import tensorflow as tf

    layers = tf.keras.layers

    def old_cnn():
        inputs = tf.keras.Input(shape=(28, 28, 1), name="input")
        x = layers.Conv2D(32, 5, padding="same", activation="relu", name="conv1")(inputs)
        x = layers.MaxPooling2D(2, name="pool1")(x)
        x = layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2")(x)
        x = layers.Flatten(name="flatten")(layers.MaxPooling2D(2, name="pool2")(x))
        x = layers.Dense(512, activation="relu", name="dense1")(x)
        return tf.keras.Model(inputs, layers.Dense(10, name="logits")(x))

    def old_lenet5():
        inputs = tf.keras.Input(shape=(28, 28, 1), name="input")
        x = layers.Conv2D(6, 5, padding="same", activation="relu", name="c1")(inputs)
        x = layers.MaxPooling2D(2, name="s2")(x)
        x = layers.Conv2D(16, 5, padding="valid", activation="relu", name="c3")(x)
        x = layers.Flatten(name="flatten")(layers.MaxPooling2D(2, name="s4")(x))
        x = layers.Dense(84, activation="relu", name="f6")(layers.Dense(120, activation="relu", name="c5")(x))
        return tf.keras.Model(inputs, layers.Dense(10, name="logits")(x))

    for model, old in ((CNN(), old_cnn), (LeNet5(), old_lenet5)):
        tf.keras.utils.set_random_seed(3)
        new_model = model.build((28, 28, 1), 10)
        tf.keras.utils.set_random_seed(3)
        old_model = old()
        assert [l.get_config() | {"name": ""} for l in new_model.layers[1:]] == \
               [l.get_config() | {"name": ""} for l in old_model.layers[1:]]
        assert [w.name for w in new_model.weights] == [w.name for w in old_model.weights]
        for new, before in zip(new_model.get_weights(), old_model.get_weights()):
            np.testing.assert_array_equal(new, before)


def test_group_norm_sits_between_each_convolution_and_its_activation():
    import tensorflow as tf

    cnn = CNN(norm="group").build((28, 28, 1), 10)
    kinds = [type(layer).__name__ for layer in cnn.layers]
    assert kinds == ["InputLayer", "Conv2D", "GroupNormalization", "Activation", "MaxPooling2D", "Conv2D",
                     "GroupNormalization", "Activation", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    norms = [l for l in cnn.layers if isinstance(l, tf.keras.layers.GroupNormalization)]
    assert [n.groups for n in norms] == [2, 2]
    assert not any(l.use_bias for l in cnn.layers if isinstance(l, tf.keras.layers.Conv2D))
    # The paper's 1,663,370 less the convolutions' biases (32 + 64), plus
    # GroupNorm's scale and offset per channel (2 x 32 + 2 x 64).
    assert cnn.count_params() == 1_663_370 - 96 + 192
    lenet = LeNet5(norm="group", activation="tanh", groups=1).build((28, 28, 1), 10)
    assert [l.name for l in lenet.layers[1:5]] == ["c1", "c1_norm", "c1_tanh", "s2"]
    assert lenet.get_layer("c1_tanh").activation is tf.keras.activations.tanh
    assert lenet.count_params() == 61_706 - 22 + 44


def test_group_norm_groups_must_divide_the_channels():
    images = Facts(num_clients=4, clients_per_round=2, num_classes=10, input_shape=(28, 28, 1))
    assert CNN(norm="group", groups=3).check(images) == [
        "cnn: groups = 3 does not divide the channels of its convolutions (32, 64); use a divisor of all of them"]
    assert LeNet5(norm="group", groups=4).check(images) == [
        "lenet5: groups = 4 does not divide the channels of its convolutions (6, 16); use a divisor of all of them"]
    assert CNN(norm="group", groups=32).check(images) == [] and LeNet5(norm="group", groups=2).check(images) == []
    assert CNN(groups=3).check(images) == []  # groups matter only with norm = "group"
    with pytest.raises(ValueError, match="groups = 3"):
        CNN(norm="group", groups=3).build((28, 28, 1), 10)


def test_a_group_norm_model_trains_through_the_engine(fedarena_run):
    record = fedarena_run("""scenario "lenet5 with GroupNorm on digits" {
  seed 2
  rounds 1
  dataset digits
  split iid over 4 clients
  model lenet5(norm = "group")
  training {
    batch_size 32
    optimizer sgd(learning_rate = 0.05)
  }
}""")
    assert record.status == "complete"
    weights = record.data["model/weights"]
    built = LeNet5(norm="group").build((8, 8, 1), 10)
    assert weights.shape == (built.count_params(),) and np.all(np.isfinite(weights))
    # GroupNorm's scales start at 1 and offsets at 0; one round of training moved them.
    scale, offset = (np.asarray(w).size for w in built.get_layer("c1_norm").weights)
    c1 = built.get_layer("c1").kernel.shape.num_elements()
    assert scale == offset == 6
    c1_scale, c1_offset = weights[c1:c1 + 6], weights[c1 + 6:c1 + 12]
    assert not np.allclose(c1_scale, 1.0) and not np.allclose(c1_offset, 0.0)
    assert np.allclose(c1_scale, 1.0, atol=0.5)
