"""The model plugin's model seen as one flat float32 vector.

Every model is used in one functional form, ``forward(trainable,
statistics, x, training) -> (logits, new statistics)`` (`FlatModel.forward`),
whichever way the plugin wrote it:

- a Keras model (`Model.build`) goes through TFF's
  ``functional_model_from_keras``, which refuses layers with running state
  (BatchNormalization) and so has no statistics: ``statistics`` is empty
  and the computations are exactly those of TFF's functional model;
- a `Network` (`Model.network`, for models with BatchNorm) is already a
  pure function of its tensors: its running statistics are values that flow
  in and out of ``forward``, never Keras variables inside TFF's graph.

The flat vector is the trainable tensors, then the statistics
(``.../moving_mean``, ``.../moving_variance``), each a `Layer`.  A client's
update row holds the change of both, so the server combines statistics like
weights: the aggregator treats them as coordinates (FedAvg gives the
weighted mean of the clients' statistics; a robust aggregator its own
robust combination).  The server's learning rate and momentum apply to the
trainable part only: the statistics take the aggregate as it is (with a
step other than 1 a running variance could leave its clients' range and
turn negative), see ``statistics_from`` in `build_server_stage`.  Local
optimizers see only the trainable tensors.

A `Network` may name tensors each client keeps as its own (FedBN,
`Network.local`): their coordinates are `FlatModel.local`; the run keeps
every client's values of them (`fedarena.core.execution.engine.run`).
"""

from __future__ import annotations

import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.interfaces import Layer
from fedarena.core.scenario.check import Scenario


class FlatModel:
    """The model plugin's model as one flat parameter vector (trainable
    tensors, then running statistics): its functional form for training
    (`forward`, `loss`) and for evaluation (`predict`)."""

    def __init__(self, scenario: Scenario):
        import tensorflow as tf

        info = scenario.dataset.info()
        self.input_shape, self.num_classes = tuple(info.input_shape), info.num_classes
        name = type(scenario.model).__name__
        network = scenario.model.network(self.input_shape, self.num_classes, np.random.default_rng([scenario.seed, 4]))
        if network is None:
            trainable, statistics, local = self._from_keras(scenario), (), ()
        else:
            trainable, statistics, local = network.trainable, network.statistics, network.local
            self._forward = network.forward
            self._loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            unknown = sorted(set(local) - {n for n, _ in (*trainable, *statistics)})
            if unknown:
                raise RunError(f"model '{name}' keeps tensors it does not have on its clients: {unknown}")
        named = [*trainable, *statistics]
        self.shapes = [tuple(np.shape(value)) for _, value in named]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.dim = sum(self.sizes)
        self.trainable_count = len(trainable)  # tensors, the first of `shapes`
        self.statistics_from = sum(self.sizes[: self.trainable_count])  # the first statistic's coordinate
        offsets = np.cumsum([0] + self.sizes[:-1])
        self.layers = tuple(Layer(n, s, int(o)) for (n, _), s, o in zip(named, self.shapes, offsets))
        self.initial = np.concatenate([np.asarray(v, np.float32).reshape(-1) for _, v in named])
        # The coordinates each client keeps as its own (FedBN), ascending.
        kept = set(local)
        self.local = np.concatenate([np.arange(layer.offset, layer.offset + layer.size) for layer in self.layers
                                     if layer.name in kept] or [np.zeros(0, int)]).astype(np.int64)
        # Evaluation: ``forward`` inside a tf.function over the flat vector,
        # traced once for the model's input shape, whatever the batch size.
        # TFF's functional model traces only in a graph context, so the
        # trace happens inside a graph of its own; the concrete function
        # captures nothing from it, and runs eagerly.
        with tf.Graph().as_default():
            self._evaluate = tf.function(
                lambda flat, x: self.forward(*self.split(flat), x, training=False)[0],
                input_signature=[tf.TensorSpec([self.dim], tf.float32),
                                 tf.TensorSpec((None,) + self.input_shape, tf.float32)],
            )
            self._logits = self._evaluate.get_concrete_function()

    def _from_keras(self, scenario: Scenario):
        """The Keras model through TFF's functional form: its named trainable weights."""
        import tensorflow as tf
        import tensorflow_federated as tff

        name = type(scenario.model).__name__
        # Initial weights are drawn while the functional model is built;
        # seeding first makes them depend on the scenario seed only.
        tf.keras.utils.set_random_seed(scenario.seed)
        try:
            functional = tff.learning.models.functional_model_from_keras(
                lambda: scenario.model.build(self.input_shape, self.num_classes),
                tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                input_spec=(tf.TensorSpec((None,) + self.input_shape, tf.float32), tf.TensorSpec([None], tf.int32)),
            )
        except Exception as error:
            # TFF's refusal (KerasFunctionalModelError) is not exported from
            # its public API: it is recognised by name; anything else (the
            # model plugin's own errors included) passes through unchanged.
            if type(error).__name__ != "KerasFunctionalModelError":
                raise
            raise RunError(f"model '{name}': TFF cannot use this Keras model: {error}") from None
        trainable, non_trainable = functional.initial_weights
        if non_trainable:  # BatchNormalization's running statistics, typically
            raise RunError(
                f"model '{name}' has non-trainable weights (such as BatchNormalization's running statistics), "
                f"which TFF's Keras conversion cannot carry: use GroupNormalization in a Keras model, or write the "
                f"model as a functional network (Model.network), as resnet18 and vgg11 are"
            )
        self._forward = lambda weights, statistics, x, training: (
            functional.predict_on_batch((weights, ()), x, training=training), ())
        self._loss = lambda y, logits: functional.loss(logits, y)
        with tf.Graph().as_default():  # a throwaway copy, only for the layer names
            names = [w.name for w in scenario.model.build(self.input_shape, self.num_classes).trainable_weights]
        return tuple(zip(names, trainable))

    # In TF.

    def forward(self, trainable, statistics, x, training: bool):
        """In TF: ``(logits, new statistics)`` of the model on ``x``;
        ``training`` a Python bool (see `Network`)."""
        return self._forward(tuple(trainable), tuple(statistics), x, training)

    def loss(self, logits, y):
        """In TF: the mean cross-entropy of ``logits`` against labels ``y``."""
        return self._loss(y, logits)

    def unflatten(self, flat):
        """In TF: every tensor of the flat vector, trainable ones then statistics."""
        import tensorflow as tf

        return tuple(tf.reshape(part, shape) for part, shape in zip(tf.split(flat, self.sizes), self.shapes))

    def split(self, flat):
        """In TF: ``(trainable tensors, statistics)`` of the flat vector."""
        tensors = self.unflatten(flat)
        return tensors[: self.trainable_count], tensors[self.trainable_count :]

    @staticmethod
    def flatten(tensors):
        """In TF: tensors back into (a part of) the flat vector."""
        import tensorflow as tf

        return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)

    def with_local(self, flat, values):
        """In TF: the flat vector with the local coordinates set to ``values`` (``[k]``)."""
        import tensorflow as tf

        return tf.tensor_scatter_nd_update(flat, self.local[:, None], values)

    def without_local(self, delta):
        """In TF: an update with its local coordinates zero: what is shared of it."""
        import tensorflow as tf

        return tf.tensor_scatter_nd_update(delta, self.local[:, None], tf.zeros([len(self.local)], delta.dtype))

    # In NumPy.

    def predict(self, flat: np.ndarray, x: np.ndarray, batch: int = 1024) -> np.ndarray:
        """The logits of the model with weights ``flat`` on ``x``, ``batch``
        inputs at a time."""
        import tensorflow as tf

        flat = tf.constant(np.asarray(flat, np.float32))
        return np.concatenate([
            self._logits(flat, tf.constant(np.asarray(x[i : i + batch], np.float32))).numpy()
            for i in range(0, len(x), batch)
        ])
