"""Built-in models, defined in Keras and used through TFF's functional model."""

from __future__ import annotations

import attrs

from fedarena.core.hookspecs import hookimpl
from fedarena.core.interfaces import Model
from fedarena.core.params import param


@attrs.frozen
class MLP(Model):
    """Multilayer perceptron: flattened input, ReLU hidden layers, linear logits."""

    hidden: tuple[int, ...] = param((200,), doc="width of each hidden layer", ge=1)

    def build(self, input_shape, num_classes):
        import tensorflow as tf

        layers = [tf.keras.layers.InputLayer(input_shape=input_shape), tf.keras.layers.Flatten()]
        layers += [tf.keras.layers.Dense(width, activation="relu") for width in self.hidden]
        layers.append(tf.keras.layers.Dense(num_classes))
        return tf.keras.Sequential(layers)


@attrs.frozen
class Logistic(Model):
    """Multinomial logistic regression: one linear layer on the flattened input."""

    def build(self, input_shape, num_classes):
        import tensorflow as tf

        return tf.keras.Sequential(
            [tf.keras.layers.InputLayer(input_shape=input_shape), tf.keras.layers.Flatten(),
             tf.keras.layers.Dense(num_classes)]
        )


@hookimpl
def fedarena_register_models(registry):
    registry.add("mlp", MLP)
    registry.add("logistic", Logistic)
