"""The kit for models written as pure functions of their tensors
(`fedarena.core.plugin.interfaces.Network`): the engine runs such a model
as ``forward(trainable, statistics, x, training) -> (logits, statistics)``,
so BatchNorm's running statistics are values that flow in and out, never
Keras variables (TFF's Keras conversion cannot carry them).

An architecture is written once, as a function ``architecture(ops, x) ->
logits`` over the layer functions below (`conv`, `dense`, `batch_norm`,
`group_norm`, ...).  `network` runs it twice over:

- once in a throwaway graph, where ``ops`` *declares*: each tensor asked
  for is created with its initial value (drawn from the given NumPy
  generator) in the order the architecture asks for them, which fixes the
  names, shapes and order of the flat vector;
- then at every call of ``forward``, where ``ops`` *looks up* the tensors
  passed in by name and collects the running statistics' new values.

Conventions follow PyTorch's layers, which the CIFAR papers' models use:
convolutions pad symmetrically (``kernel // 2`` on each side, so a stride-2
3x3 convolution of a 32x32 map gives the same 16x16 pixels as PyTorch's,
where TF's "SAME" padding would shift them); BatchNorm's epsilon is 1e-5,
and its running statistics follow PyTorch's momentum rule, ``running =
(1 - momentum) * running + momentum * batch`` with the batch variance made
unbiased (``n / (n - 1)``), while the batch itself is normalised with the
biased variance.  Initialisation: convolutions He normal (He et al. 2015,
"Delving deep into rectifiers", as the ResNet paper uses), dense kernels
Glorot uniform, biases and BatchNorm's beta zero, gamma one, running mean
zero and variance one.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from fedarena.core.plugin.interfaces import Network

EPSILON = 1e-5


class _Declare:
    """The first pass: every tensor asked for is created, in order, with its initial value."""

    training = False

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.trainable: dict[str, np.ndarray] = {}
        self.statistics: dict[str, np.ndarray] = {}
        self.local: list[str] = []

    def _declare(self, into: dict, name: str, initial: Callable, local: bool):
        import tensorflow as tf

        if name in self.trainable or name in self.statistics:
            raise ValueError(f"the architecture asks for the tensor {name!r} twice")
        into[name] = np.asarray(initial(self.rng), np.float32)
        self.local += [name] if local else []
        return tf.constant(into[name])

    def weight(self, name: str, initial: Callable, local: bool = False):
        return self._declare(self.trainable, name, initial, local)

    def statistic(self, name: str, initial: Callable, local: bool = False):
        return self._declare(self.statistics, name, initial, local)

    def update(self, name: str, value) -> None:
        pass  # nothing trains while the tensors are declared


class _Apply:
    """A call of ``forward``: the tensors passed in, looked up by name; new running statistics collected."""

    def __init__(self, trainable: dict, statistics: dict, training: bool):
        self.trainable, self.statistics, self.training = trainable, statistics, training
        self.updated = dict(statistics)

    def weight(self, name: str, initial: Callable, local: bool = False):
        return self.trainable[name]

    def statistic(self, name: str, initial: Callable, local: bool = False):
        return self.statistics[name]

    def update(self, name: str, value) -> None:
        self.updated[name] = value


def network(architecture: Callable, input_shape: tuple[int, ...], rng: np.random.Generator) -> Network:
    """The `Network` of ``architecture(ops, x) -> logits`` for inputs of
    ``input_shape`` (2-D inputs get a channel axis), its initial values
    drawn from ``rng``.  Tensors declared with ``local=True`` are the ones a
    client keeps (FedBN, `Network.local`)."""
    import tensorflow as tf

    def with_channels(x):
        return x[..., None] if len(input_shape) == 2 else x

    declared = _Declare(rng)
    with tf.Graph().as_default():  # shapes only: nothing is computed
        architecture(declared, with_channels(tf.zeros([1, *input_shape], tf.float32)))
    trainable_names, statistics_names = tuple(declared.trainable), tuple(declared.statistics)

    def forward(trainable, statistics, x, training: bool):
        ops = _Apply(dict(zip(trainable_names, trainable)), dict(zip(statistics_names, statistics)), training)
        logits = architecture(ops, with_channels(x))
        return logits, tuple(ops.updated[name] for name in statistics_names)

    return Network(
        trainable=tuple(declared.trainable.items()), statistics=tuple(declared.statistics.items()),
        forward=forward, local=tuple(declared.local),
    )


# --------------------------------------------------------------------------
# Layers: ``layer(ops, name, x, ...) -> y``, tensors named ``<name>/<tensor>``.


def he_normal(rng: np.random.Generator, shape, fan_in: int) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def conv(ops, name: str, x, filters: int, kernel: int, stride: int = 1, bias: bool = False):
    """A ``kernel`` x ``kernel`` convolution, padded by ``kernel // 2`` on each side (as PyTorch's)."""
    import tensorflow as tf

    channels = int(x.shape[-1])
    shape = (kernel, kernel, channels, filters)
    w = ops.weight(f"{name}/kernel", lambda rng: he_normal(rng, shape, kernel * kernel * channels))
    pad = kernel // 2
    y = tf.nn.conv2d(x, w, strides=stride, padding=[[0, 0], [pad, pad], [pad, pad], [0, 0]])
    if bias:
        y = y + ops.weight(f"{name}/bias", lambda rng: np.zeros(filters))
    return y


def dense(ops, name: str, x, units: int):
    """A fully connected layer with a bias."""
    import tensorflow as tf

    fan_in = int(x.shape[-1])
    w = ops.weight(f"{name}/kernel", lambda rng: glorot_uniform(rng, fan_in, units))
    b = ops.weight(f"{name}/bias", lambda rng: np.zeros(units))
    return tf.matmul(x, w) + b


def batch_norm(ops, name: str, x, momentum: float, local: bool = False):
    """BatchNorm (Ioffe & Szegedy 2015) over every axis but the last.

    Training: the batch is normalised with its own mean and (biased)
    variance, and the running statistics move towards the batch's by the
    momentum rule (unbiased variance), as PyTorch's ``BatchNorm2d`` does.
    Evaluation: normalised with the running statistics; a running variance
    below zero (only a crafted, poisoned update can make one) counts as
    zero, so that evaluation stays finite."""
    import tensorflow as tf

    channels = int(x.shape[-1])
    gamma = ops.weight(f"{name}/gamma", lambda rng: np.ones(channels), local)
    beta = ops.weight(f"{name}/beta", lambda rng: np.zeros(channels), local)
    mean_name, variance_name = f"{name}/moving_mean", f"{name}/moving_variance"
    moving_mean = ops.statistic(mean_name, lambda rng: np.zeros(channels), local)
    moving_variance = ops.statistic(variance_name, lambda rng: np.ones(channels), local)
    if not ops.training:
        return tf.nn.batch_normalization(x, moving_mean, tf.maximum(moving_variance, 0.0), beta, gamma, EPSILON)
    axes = list(range(len(x.shape) - 1))
    mean, variance = tf.nn.moments(x, axes)
    count = tf.cast(tf.size(x) // channels, tf.float32)
    unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
    ops.update(mean_name, (1.0 - momentum) * moving_mean + momentum * tf.stop_gradient(mean))
    ops.update(variance_name, (1.0 - momentum) * moving_variance + momentum * tf.stop_gradient(unbiased))
    return tf.nn.batch_normalization(x, mean, variance, beta, gamma, EPSILON)


def group_norm(ops, name: str, x, groups: int, local: bool = False):
    """GroupNorm (Wu & He 2018): each sample's channels in ``groups``
    groups, each group normalised over its channels and positions; no
    running statistics, so training and evaluation agree."""
    import tensorflow as tf

    channels = int(x.shape[-1])
    gamma = ops.weight(f"{name}/gamma", lambda rng: np.ones(channels), local)
    beta = ops.weight(f"{name}/beta", lambda rng: np.zeros(channels), local)
    shape = tf.shape(x)
    grouped = tf.reshape(x, tf.concat([shape[:-1], [groups, channels // groups]], axis=0))
    axes = list(range(1, len(x.shape) - 1)) + [len(x.shape)]
    mean, variance = tf.nn.moments(grouped, axes, keepdims=True)
    normalised = tf.reshape((grouped - mean) * tf.math.rsqrt(variance + EPSILON), shape)
    return normalised * gamma + beta


def norm(ops, name: str, x, kind: str, *, momentum: float, groups: int, local: bool = False):
    """The normalization a model's ``norm`` parameter names: ``batch``, ``group`` or ``none``."""
    if kind == "batch":
        return batch_norm(ops, name, x, momentum, local)
    if kind == "group":
        return group_norm(ops, name, x, groups, local)
    return x


def max_pool(x, size: int = 2):
    import tensorflow as tf

    return tf.nn.max_pool2d(x, size, size, "VALID")


def relu(x):
    import tensorflow as tf

    return tf.nn.relu(x)
