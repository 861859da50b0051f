"""Built-in models, defined in Keras and used through TFF's functional model.

Every model returns logits (no softmax) and has trainable weights only:
``tff.learning.models.functional_model_from_keras`` cannot carry layers
with non-trainable state, so there is no BatchNormalization anywhere (the
ResNet uses GroupNormalization, or no normalization).  Layers are created
in the order Keras lists their weights (``model.trainable_weights``), so
the engine's per-layer names line up with the flat update vector.
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Facts, Model
from fedarena.core.plugin.params import param


@attrs.frozen
class MLP(Model):
    """Multilayer perceptron: flattened input, ReLU hidden layers, linear logits."""

    paper = "none (standard model)"

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

    paper = "none (standard model)"

    def build(self, input_shape, num_classes):
        import tensorflow as tf

        return tf.keras.Sequential(
            [tf.keras.layers.InputLayer(input_shape=input_shape), tf.keras.layers.Flatten(),
             tf.keras.layers.Dense(num_classes)]
        )


def _image_problems(name: str, input_shape: tuple[int, ...], min_side: int) -> list[str]:
    """Image models take (height, width, channels) or (height, width) inputs."""
    if len(input_shape) not in (2, 3):
        return [f"{name} needs image inputs (height, width[, channels]); the dataset's input shape is {tuple(input_shape)}"]
    if min(input_shape[:2]) < min_side:
        return [f"{name} needs images of at least {min_side}x{min_side}; the dataset's are "
                f"{input_shape[0]}x{input_shape[1]}"]
    return []


def _image_input(input_shape):
    """An input layer, and a reshape to (h, w, 1) for 2-D inputs."""
    import tensorflow as tf

    inputs = tf.keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    if len(input_shape) == 2:
        x = tf.keras.layers.Reshape((*input_shape, 1), name="add_channel")(x)
    return inputs, x


@attrs.frozen
class CNN(Model):
    """The MNIST CNN of McMahan et al. 2017: two 5x5 conv + max-pool, dense 512, logits.

    From "Communication-efficient learning of deep networks from
    decentralized data": 5x5 convolution
    with 32 channels, 2x2 max-pooling, 5x5 convolution with 64 channels, 2x2
    max-pooling, a 512-unit ReLU layer and a linear output layer (logits;
    the paper's softmax is in the loss).  Convolutions are ReLU with "same"
    padding, which gives the paper's 1,663,370 parameters on 28x28x1."""

    paper = "McMahan et al. 2017, AISTATS"

    hidden: int = param(512, doc="width of the fully connected hidden layer", ge=1)

    def check(self, facts: Facts) -> list[str]:
        return _image_problems("cnn", facts.input_shape, 4)

    def build(self, input_shape, num_classes):
        import tensorflow as tf

        layers = tf.keras.layers
        inputs, x = _image_input(input_shape)
        x = layers.Conv2D(32, 5, padding="same", activation="relu", name="conv1")(x)
        x = layers.MaxPooling2D(2, name="pool1")(x)
        x = layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2")(x)
        x = layers.MaxPooling2D(2, name="pool2")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(self.hidden, activation="relu", name="dense1")(x)
        outputs = layers.Dense(num_classes, name="logits")(x)
        return tf.keras.Model(inputs, outputs, name="cnn")


@attrs.frozen
class LeNet5(Model):
    """LeNet-5 (LeCun et al. 1998), with ReLU and max-pooling by default.

    From "Gradient-based learning applied to document recognition": C1 6@5x5, S2 2x2 pooling, C3 16@5x5, S4 2x2
    pooling, C5 120, F6 84, output.

    Deviations, as in most modern uses: C3 is fully connected to S2 (the
    paper's sparse connection table is dropped), pooling has no trainable
    coefficients, the output is a linear layer giving logits (not the
    paper's RBF units), and the activation is ReLU with max-pooling by
    default (``activation = "tanh"``, ``pooling = "average"`` come closer to
    the original).  The paper's input is 32x32; smaller images get "same"
    padding in C1 (28x28 MNIST then follows the paper's geometry: 28, 14,
    10, 5), and in C3 too when they are too small for a 5x5 valid window."""

    paper = "LeCun et al. 1998, Proc. IEEE"

    activation: str = param("relu", choices=("relu", "tanh"), doc="activation of every hidden layer")
    pooling: str = param("max", choices=("max", "average"), doc="pooling after each convolution")

    def check(self, facts: Facts) -> list[str]:
        return _image_problems("lenet5", facts.input_shape, 4)

    def build(self, input_shape, num_classes):
        import tensorflow as tf

        layers = tf.keras.layers
        pool = layers.MaxPooling2D if self.pooling == "max" else layers.AveragePooling2D
        side = min(input_shape[:2])
        inputs, x = _image_input(input_shape)
        c1_padding = "same" if side < 32 else "valid"
        x = layers.Conv2D(6, 5, padding=c1_padding, activation=self.activation, name="c1")(x)
        x = pool(2, name="s2")(x)
        after_s2 = min(x.shape[1:3])
        x = layers.Conv2D(16, 5, padding="valid" if after_s2 >= 10 else "same", activation=self.activation,
                          name="c3")(x)
        x = pool(2, name="s4")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(120, activation=self.activation, name="c5")(x)
        x = layers.Dense(84, activation=self.activation, name="f6")(x)
        outputs = layers.Dense(num_classes, name="logits")(x)
        return tf.keras.Model(inputs, outputs, name="lenet5")


@attrs.frozen
class ResNet(Model):
    """The CIFAR-10 ResNet of He et al. 2016 (depth 6n + 2), with GroupNorm instead of BatchNorm.

    From "Deep residual learning for image recognition", section 4.2: a 3x3 convolution with ``width``
    filters, three stages of n basic blocks (two 3x3 convolutions each) with
    width, 2 x width and 4 x width filters, the 2nd and 3rd starting with
    stride 2, global average pooling and a linear output; depth = 6n + 2
    (8, 14, 20, 32, 44, 56, 110).  Initialised with He normal.

    Deviations: BatchNormalization is replaced by GroupNormalization (Wu &
    He 2018) with ``groups`` groups, as Hsieh et al. 2020 ("The non-IID
    data quagmire of decentralized machine learning") recommend for
    federated training -- or by nothing (``norm = "none"``, convolutions
    then get biases); TFF's functional models cannot hold BatchNorm's
    running statistics.  Where the shape changes, the shortcut is a strided
    1x1 convolution (the paper's option B) instead of option A's zero-padded
    identity, which needs no weights."""

    paper = "He et al. 2016, CVPR"

    depth: int = param(20, doc="number of weighted layers, 6n + 2 (8, 14, 20, 32, ...)", ge=8)
    width: int = param(16, doc="filters of the first stage (doubled in each later stage)", ge=1)
    norm: str = param("group", choices=("group", "none"), doc="normalization after each convolution")
    groups: int = param(2, doc="groups of GroupNormalization (1: normalise over all channels)", ge=1)

    def _problems(self) -> list[str]:
        problems = []
        if (self.depth - 2) % 6:
            problems.append(f"resnet: depth must be 6n + 2 (8, 14, 20, 26, 32, ...), got {self.depth}")
        if self.norm == "group" and self.width % self.groups:
            problems.append(f"resnet: width {self.width} is not divisible into {self.groups} groups")
        return problems

    def check(self, facts: Facts) -> list[str]:
        return self._problems() + _image_problems("resnet", facts.input_shape, 4)

    def build(self, input_shape, num_classes):
        import tensorflow as tf

        problems = self._problems()
        if problems:
            raise ValueError("; ".join(problems))
        layers = tf.keras.layers
        grouped = self.norm == "group"

        def conv(x, filters, kernel, stride, name):
            return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=not grouped,
                                 kernel_initializer="he_normal", name=name)(x)

        def norm(x, name):
            return layers.GroupNormalization(groups=self.groups, name=name)(x) if grouped else x

        inputs, x = _image_input(input_shape)
        x = layers.ReLU(name="stem_relu")(norm(conv(x, self.width, 3, 1, "stem_conv"), "stem_norm"))
        blocks = (self.depth - 2) // 6
        for stage in range(3):
            filters = self.width * 2**stage
            for block in range(blocks):
                name = f"stage{stage + 1}_block{block + 1}"
                stride = 2 if stage > 0 and block == 0 else 1
                y = layers.ReLU(name=f"{name}_relu1")(norm(conv(x, filters, 3, stride, f"{name}_conv1"), f"{name}_norm1"))
                if stride != 1 or x.shape[-1] != filters:
                    # Keras lists a functional model's weights by depth, the
                    # shortcut's before the main path's at equal depth; they
                    # are created in that order so that the two orders agree.
                    shortcut = conv(x, filters, 1, stride, f"{name}_shortcut")
                    y = conv(y, filters, 3, 1, f"{name}_conv2")
                    shortcut = norm(shortcut, f"{name}_shortcut_norm")
                    y = norm(y, f"{name}_norm2")
                else:
                    shortcut = x
                    y = norm(conv(y, filters, 3, 1, f"{name}_conv2"), f"{name}_norm2")
                x = layers.ReLU(name=f"{name}_relu2")(layers.Add(name=f"{name}_add")([shortcut, y]))
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        outputs = layers.Dense(num_classes, name="logits")(x)
        return tf.keras.Model(inputs, outputs, name=f"resnet{self.depth}")


@hookimpl
def fedarena_register_models(registry):
    registry.add("mlp", MLP)
    registry.add("logistic", Logistic)
    registry.add("cnn", CNN)
    registry.add("lenet5", LeNet5)
    registry.add("resnet", ResNet)
