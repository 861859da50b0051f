"""The model plugin's Keras model seen as one flat float32 vector."""

from __future__ import annotations

import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.interfaces import Layer
from fedarena.core.scenario.check import Scenario


class FlatModel:
    """The model plugin's Keras model seen as one flat parameter vector:
    TFF's functional form, for training and for evaluation (`predict`)."""

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
        # Evaluation: the functional model inside a tf.function over the flat
        # vector, traced once for the model's input shape, whatever the batch
        # size.  The functional model traces only in a graph context, so the
        # trace happens inside a graph of its own; the concrete function
        # captures nothing from it, and runs eagerly.
        with tf.Graph().as_default():
            self._evaluate = tf.function(
                lambda flat, x: self.functional.predict_on_batch((self.unflatten(flat), ()), x, training=False),
                input_signature=[tf.TensorSpec([self.dim], tf.float32),
                                 tf.TensorSpec((None,) + self.input_shape, tf.float32)],
            )
            self._logits = self._evaluate.get_concrete_function()

    def unflatten(self, flat):
        import tensorflow as tf

        return tuple(tf.reshape(part, shape) for part, shape in zip(tf.split(flat, self.sizes), self.shapes))

    def predict(self, flat: np.ndarray, x: np.ndarray, batch: int = 1024) -> np.ndarray:
        """The logits of the model with weights ``flat`` on ``x``, ``batch``
        inputs at a time."""
        import tensorflow as tf

        flat = tf.constant(np.asarray(flat, np.float32))
        return np.concatenate([
            self._logits(flat, tf.constant(np.asarray(x[i : i + batch], np.float32))).numpy()
            for i in range(0, len(x), batch)
        ])
