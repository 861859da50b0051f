"""The model as one flat vector: layers, and evaluation as a tf.function
over the vector."""

import numpy as np
import tensorflow as tf

from fedarena.core.execution.engine.flat_model import FlatModel
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import default_registry
from fedarena.core.scenario.sweep import check

from conftest import tiny_scenario


def test_the_flat_vector_covers_every_layer_in_order():
    model = FlatModel(check(parse(tiny_scenario(attack=""), "tiny.fls"), default_registry()))
    assert model.dim == sum(model.sizes) == model.initial.size
    assert [layer.offset for layer in model.layers] == np.cumsum([0] + model.sizes[:-1]).tolist()
    parts = [p.numpy() for p in model.unflatten(tf.constant(model.initial))]
    assert [p.shape for p in parts] == model.shapes
    np.testing.assert_array_equal(np.concatenate([p.reshape(-1) for p in parts]), model.initial)


def test_evaluation_is_a_tf_function_of_the_flat_vector_traced_once():
    scenario = check(parse(tiny_scenario(attack=""), "tiny.fls"), default_registry())
    model = FlatModel(scenario)
    x = np.random.default_rng(0).normal(size=(70, *model.input_shape)).astype(np.float32)
    weights = model.initial + 0.1
    logits = model.predict(weights, x, batch=32)  # batches of 32, 32 and 6
    assert logits.shape == (70, model.num_classes)
    # The same model in plain NumPy: dense layers with ReLU, then logits.
    parts = [p.numpy() for p in model.unflatten(tf.constant(weights))]
    h = x.reshape(len(x), -1)
    for kernel, bias in zip(parts[:-2:2], parts[1:-2:2]):
        h = np.maximum(h @ kernel + bias, 0)
    np.testing.assert_allclose(logits, h @ parts[-2] + parts[-1], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.predict(weights, x[:5].astype(np.float64)), logits[:5])
    assert model._evaluate.experimental_get_tracing_count() == 1
    assert not tf.compat.v1.get_default_graph().get_operations()  # no TF1 graph or session behind it
