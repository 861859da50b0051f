"""Built-in models, defined in Keras and used through TFF's functional model.

Every model returns logits (no softmax) and has trainable weights only:
``tff.learning.models.functional_model_from_keras`` cannot carry layers
with non-trainable state, so there is no BatchNormalization anywhere (the
image models offer GroupNormalization, or no normalization).  Layers are
created in the order Keras lists their weights (``model.trainable_weights``),
so the engine's per-layer names line up with the flat update vector.

``keras(path = ...)`` builds one's own model from a ``.keras`` file; what
the checker can know of it without TensorFlow (input shape, output units,
layer classes) is read from the archive's ``config.json``.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import attrs

from fedarena.core.errors import RunError
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


def _group_problems(name: str, norm: str, groups: int, channels: tuple[int, ...]) -> list[str]:
    """GroupNormalization splits each convolution's channels into equal groups."""
    if norm == "group" and any(c % groups for c in channels):
        return [f"{name}: groups = {groups} does not divide the channels of its convolutions "
                f"({', '.join(map(str, channels))}); use a divisor of all of them"]
    return []


def _convolved(x, filters: int, padding: str, activation: str, norm: str, groups: int, name: str):
    """A 5x5 convolution and its activation; with ``norm = "group"``,
    GroupNormalization between the two, and no bias in the convolution
    (the norm's offset takes its place).  ``norm = "none"`` is the plain
    convolution the models had before the option existed, layer for layer."""
    import tensorflow as tf

    layers = tf.keras.layers
    if norm == "none":
        return layers.Conv2D(filters, 5, padding=padding, activation=activation, name=name)(x)
    x = layers.Conv2D(filters, 5, padding=padding, use_bias=False, name=name)(x)
    x = layers.GroupNormalization(groups=groups, name=f"{name}_norm")(x)
    return layers.Activation(activation, name=f"{name}_{activation}")(x)


_NORM_DOC = "normalization after each convolution: none (the paper's), or group (GroupNormalization, Wu & He 2018)"


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
    padding, which gives the paper's 1,663,370 parameters on 28x28x1.

    Option (not in the paper): ``norm = "group"`` puts GroupNormalization
    (Wu & He 2018) with ``groups`` groups between each convolution and its
    ReLU, the convolution then without bias; Hsieh et al. 2020 ("The
    non-IID data quagmire of decentralized machine learning") recommend it
    for federated training on non-IID data, where BatchNorm fails."""

    paper = "McMahan et al. 2017, AISTATS"

    CHANNELS = (32, 64)

    hidden: int = param(512, doc="width of the fully connected hidden layer", ge=1)
    norm: str = param("none", choices=("none", "group"), doc=_NORM_DOC)
    groups: int = param(2, doc="groups of GroupNormalization with norm = group (must divide 32 and 64)", ge=1)

    def check(self, facts: Facts) -> list[str]:
        return (_group_problems("cnn", self.norm, self.groups, self.CHANNELS)
                + _image_problems("cnn", facts.input_shape, 4))

    def build(self, input_shape, num_classes):
        import tensorflow as tf

        problems = _group_problems("cnn", self.norm, self.groups, self.CHANNELS)
        if problems:
            raise ValueError("; ".join(problems))
        layers = tf.keras.layers
        inputs, x = _image_input(input_shape)
        x = _convolved(x, 32, "same", "relu", self.norm, self.groups, "conv1")
        x = layers.MaxPooling2D(2, name="pool1")(x)
        x = _convolved(x, 64, "same", "relu", self.norm, self.groups, "conv2")
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
    10, 5), and in C3 too when they are too small for a 5x5 valid window.
    ``norm = "group"`` (not in the paper) puts GroupNormalization between
    C1 and C3 and their activations, as in `cnn`."""

    paper = "LeCun et al. 1998, Proc. IEEE"

    CHANNELS = (6, 16)

    activation: str = param("relu", choices=("relu", "tanh"), doc="activation of every hidden layer")
    pooling: str = param("max", choices=("max", "average"), doc="pooling after each convolution")
    norm: str = param("none", choices=("none", "group"), doc=_NORM_DOC)
    groups: int = param(2, doc="groups of GroupNormalization with norm = group (must divide 6 and 16)", ge=1)

    def check(self, facts: Facts) -> list[str]:
        return (_group_problems("lenet5", self.norm, self.groups, self.CHANNELS)
                + _image_problems("lenet5", facts.input_shape, 4))

    def build(self, input_shape, num_classes):
        import tensorflow as tf

        problems = _group_problems("lenet5", self.norm, self.groups, self.CHANNELS)
        if problems:
            raise ValueError("; ".join(problems))
        layers = tf.keras.layers
        pool = layers.MaxPooling2D if self.pooling == "max" else layers.AveragePooling2D
        side = min(input_shape[:2])
        inputs, x = _image_input(input_shape)
        c1_padding = "same" if side < 32 else "valid"
        x = _convolved(x, 6, c1_padding, self.activation, self.norm, self.groups, "c1")
        x = pool(2, name="s2")(x)
        after_s2 = min(x.shape[1:3])
        x = _convolved(x, 16, "valid" if after_s2 >= 10 else "same", self.activation, self.norm, self.groups, "c3")
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


@attrs.frozen
class LSTM(Model):
    """The character LSTM of the Shakespeare baselines: embedding, stacked LSTMs, logits.

    From McMahan et al. 2017 ("Communication-efficient learning of deep
    networks from decentralized data", AISTATS: a 2-layer LSTM of 256 units
    over 8-dimensional character embeddings) as used by Reddi et al. 2021
    ("Adaptive federated optimization", ICLR) and TFF's Shakespeare
    baseline: an embedding of the vocabulary in ``embedding`` dimensions,
    ``layers`` LSTMs of ``units`` units, and a linear layer of one logit per
    character.  The input is a window of character ids as float32 (the
    engine's feature type), shape ``(seq_len,)``; the embedding casts them
    to int32.  The vocabulary is the dataset's classes: inputs and labels
    are ids in the same alphabet.

    Deviation: the original is sequence to sequence (a next-character
    prediction at every position of the window, the last LSTM returning
    the whole sequence); here each sample has one label, the character
    after its window, so the last LSTM returns only its final state and the
    output layer gives one set of logits per sample."""

    paper = "McMahan et al. 2017, AISTATS; Reddi et al. 2021, ICLR"

    embedding: int = param(8, doc="dimension of the character embedding", ge=1, le=4096)
    units: int = param(256, doc="units of each LSTM layer", ge=1, le=4096)
    layers: int = param(2, doc="number of stacked LSTM layers", ge=1, le=16)

    def check(self, facts: Facts) -> list[str]:
        if len(facts.input_shape) != 1:
            return [f"lstm needs sequences of character ids, inputs of shape (seq_len,); the dataset's input "
                    f"shape is {tuple(facts.input_shape)}: use a text dataset (e.g. shakespeare), or an image "
                    "model (cnn, lenet5, resnet) or mlp for this data"]
        return []

    def build(self, input_shape, num_classes):
        import tensorflow as tf

        inputs = tf.keras.Input(shape=tuple(input_shape), name="input")
        x = tf.keras.layers.Embedding(num_classes, self.embedding, name="embedding")(inputs)
        for index in range(self.layers):
            last = index == self.layers - 1
            x = tf.keras.layers.LSTM(self.units, return_sequences=not last, name=f"lstm{index + 1}")(x)
        outputs = tf.keras.layers.Dense(num_classes, name="logits")(x)
        return tf.keras.Model(inputs, outputs, name="lstm")


# --------------------------------------------------------------------------
# One's own Keras model, from a .keras file.

# Layers fedarena refuses in a model file, with the reason and the fix.
_BATCH_NORM = ("TFF's functional models cannot keep BatchNormalization's running statistics; "
               "use tf.keras.layers.GroupNormalization instead, or the built-in resnet18")
_METHOD_CALL = "it calls a method named in the file, which fedarena does not do; write it with Keras' built-in layers"
_REFUSED_LAYERS = {
    "Lambda": "a Lambda layer holds Python code, which fedarena never runs from a file; "
              "write it with Keras' built-in layers",
    "BatchNormalization": _BATCH_NORM, "SyncBatchNormalization": _BATCH_NORM,
    "ClassMethod": _METHOD_CALL, "InstanceMethod": _METHOD_CALL, "InstanceProperty": _METHOD_CALL,
}
# Layers that call a TensorFlow function named in the file (what `x * 2` or
# `tf.cast(x, "int32")` on a Keras tensor become): only functions that
# compute on tensors and touch nothing else (not `tf.io.write_file`).
_OPERATION_LAYERS = ("TFOpLambda", "SlicingOpLambda")
_SAFE_OPERATION_SPACES = ("math.", "nn.", "linalg.", "__operators__.")
_SAFE_OPERATIONS = {
    "cast", "reshape", "transpose", "expand_dims", "squeeze", "concat", "stack", "unstack", "split", "gather",
    "tile", "pad", "clip_by_value", "one_hot", "where", "identity", "ones_like", "zeros_like", "broadcast_to",
    "reverse", "slice",
}


def _shape_text(shape) -> str:
    dims = ["None" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _layer_dicts(config):
    """Every serialized Keras object in a config, nested ones included
    (``{"class_name": ..., "config": ...}`` dictionaries)."""
    if isinstance(config, dict):
        if "class_name" in config and "config" in config:
            yield config
        for value in config.values():
            yield from _layer_dicts(value)
    elif isinstance(config, list):
        for value in config:
            yield from _layer_dicts(value)


def _is_model(layer: dict) -> bool:
    return isinstance(layer.get("config"), dict) and isinstance(layer["config"].get("layers"), list)


def _input_shape(model: dict) -> tuple | str:
    """The input shape (batch axis left out) a model's config records, or a
    sentence saying why it is not known."""
    config = model["config"]
    layers = config["layers"]
    if "input_layers" in config:  # a functional model
        inputs = config["input_layers"]
        if len(inputs) != 1:
            return f"it has {len(inputs)} inputs; fedarena feeds a model one input"
        found = [l for l in layers if l.get("name", l["config"].get("name")) == inputs[0][0]]
        first = found[0] if found else {}
    else:  # a Sequential model: its first layer, or the shape it was built for
        first = layers[0] if layers else {}
    shape = (first.get("config") or {}).get("batch_input_shape") or (model.get("build_config") or {}).get("input_shape")
    if not isinstance(shape, list) or not shape:
        return "it records no input shape; start the model with tf.keras.Input(shape=...)"
    return tuple(shape[1:])


def _output_layer(model: dict) -> dict | str:
    """The layer whose output is the model's (inside nested models too), or
    a sentence saying why there is not one."""
    config = model["config"]
    layers = config["layers"]
    if not layers:
        return "it has no layers"
    if "output_layers" in config:  # a functional model
        outputs = config["output_layers"]
        if len(outputs) != 1:
            return f"it has {len(outputs)} outputs; fedarena trains a model with one output of logits"
        found = [l for l in layers if l.get("name", l["config"].get("name")) == outputs[0][0]]
        if not found:
            return "its output layer is missing from the file"
        last = found[0]
    else:
        last = layers[-1]
    return _output_layer(last) if _is_model(last) else last


def read_keras_config(file: Path) -> dict:
    """The model config (``config.json``) of a ``.keras`` archive, with
    nothing imported from TensorFlow; ValueError saying what is wrong with
    the file otherwise."""
    if not file.exists():
        raise ValueError(f"no file at {file}")
    if file.suffix.lower() in (".h5", ".hdf5"):
        raise ValueError(
            f"{file} is in Keras' legacy HDF5 format, whose loader can run Python code stored in the file; "
            "fedarena reads only the .keras format: save the model with model.save(\"model.keras\")"
        )
    if not zipfile.is_zipfile(file):
        raise ValueError(f"{file} is not a Keras archive (a .keras zip file, as model.save(\"model.keras\") writes)")
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
            if "config.json" not in names:
                raise ValueError(f"{file} is a zip file without config.json, not a Keras archive "
                                 "(save the model with model.save(\"model.keras\"))")
            config = json.loads(archive.read("config.json"))
            metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {file} as a Keras archive: {error}") from None
    version = str(metadata.get("keras_version", "")) if isinstance(metadata, dict) else ""
    if version.startswith("3."):
        raise ValueError(f"{file} was saved by Keras {version}; fedarena runs TensorFlow 2.14's Keras 2.14, "
                         "which cannot read it: save the model with tf.keras of TensorFlow 2.14")
    if not isinstance(config, dict) or not _is_model(config):
        raise ValueError(f"{file} holds no Keras model (its config.json lists no layers)")
    return config


def keras_config_problems(config: dict, file: Path, input_shape: tuple[int, ...], num_classes: int) -> list[str]:
    """What keeps the model of a ``.keras`` file's config from running here
    on inputs of ``input_shape`` with ``num_classes`` logits."""
    try:
        return _config_problems(config, file, input_shape, num_classes)
    except (TypeError, KeyError, AttributeError, IndexError) as error:  # a config.json not written by Keras
        return [f"{file}: its config.json is not a model config as Keras writes it ({type(error).__name__}: {error})"]


def _config_problems(config: dict, file: Path, input_shape: tuple[int, ...], num_classes: int) -> list[str]:
    problems = []
    for layer in _layer_dicts(config):
        settings = layer["config"]
        name = settings.get("name", "?") if isinstance(settings, dict) else str(settings)
        kind, module = layer["class_name"], str(layer.get("module") or "keras")
        if kind in _REFUSED_LAYERS:
            problems.append(f"{file} has a {kind} layer '{name}': {_REFUSED_LAYERS[kind]}")
        elif kind in _OPERATION_LAYERS and isinstance(settings, dict):
            function = str(settings.get("function"))
            if not (function in _SAFE_OPERATIONS or function.startswith(_SAFE_OPERATION_SPACES)):
                problems.append(f"{file}: '{name}' calls tf.{function}; a model file may call only TensorFlow's "
                                "math, nn, linalg and shape functions (fedarena runs nothing else from a file)")
        elif module != "builtins" and module != "keras" and not module.startswith("keras."):
            problems.append(f"{file}: '{name}' is a {kind} from the Python module '{module}'; fedarena builds "
                            "models of Keras' own layers only (it runs no code from a model file)")
    shape = _input_shape(config)
    if isinstance(shape, str):
        problems.append(f"the model in {file}: {shape}")
    elif len(shape) != len(input_shape) or any(d is not None and d != n for d, n in zip(shape, input_shape)):
        problems.append(f"the model in {file} takes inputs of shape {_shape_text(shape)}, but the dataset's are "
                        f"{_shape_text(input_shape)}: build it on tf.keras.Input(shape={_shape_text(input_shape)})")
    last = _output_layer(config)
    if isinstance(last, str):
        problems.append(f"the model in {file}: {last}")
    else:
        kind, settings = last["class_name"], last["config"] if isinstance(last["config"], dict) else {}
        if kind == "Dense" and settings.get("units") != num_classes:
            problems.append(f"the model in {file} ends in a Dense layer of {settings.get('units')} units, but the "
                            f"dataset has {num_classes} classes: end it with Dense({num_classes}), one logit per class")
        if kind == "Softmax":
            activation = "softmax"
        elif kind in ("Dense", "Activation"):
            activation = settings.get("activation", "linear")
        else:  # the output of other layers is known only when the model is built (`Keras.build` checks it)
            activation = "linear"
        if activation != "linear":
            what = activation if isinstance(activation, str) else "a custom activation"
            problems.append(f"the model in {file} ends in {what} ('{settings.get('name', '?')}'); fedarena trains "
                            "on logits (the loss applies the softmax): remove that activation")
    return problems


@attrs.frozen
class Keras(Model):
    """One's own Keras model, from a ``.keras`` file: its architecture, trained from fresh weights.

    The file is what ``model.save("model.keras")`` writes with TensorFlow
    2.14's Keras (no need to compile the model); Keras' legacy ``.h5``
    format is refused, as its loader can run code stored in the file.  The
    model is built anew from the file's config every time it is needed,
    with ``safe_mode``: nothing in the file is run as code, so Lambda
    layers, classes from modules other than Keras, and TensorFlow
    operations other than math, nn, linalg and shape ones (``x * 2`` and
    ``tf.cast`` are fine) are refused (the checker says so before anything
    runs).  Its weights are drawn afresh from the scenario seed by each
    layer's initializer, as for the built-in models; the weights stored in
    the file are not used (a run starts from given weights with the
    scenario's ``start from``).

    The checker reads the archive's ``config.json`` (without TensorFlow) and
    requires one input of the dataset's input shape (a ``None`` axis
    matches any size), one output, logits (no softmax) and, where the last
    layer is a Dense layer, one unit per class; the built model's output
    shape is checked again when it is built.  BatchNormalization is
    refused: TFF's functional models cannot keep its running statistics
    (GroupNormalization can stand in for it)."""

    paper = "none (the user's own model)"

    path: str = param(doc="the .keras file (model.save(\"model.keras\")); relative: from the scenario's folder")

    def check(self, facts: Facts) -> list[str]:
        file = facts.resolve(self.path)
        try:
            config = read_keras_config(file)
        except ValueError as error:
            return [f"keras: {error}"]
        return [f"keras: {problem}" for problem in keras_config_problems(config, file, facts.input_shape,
                                                                         facts.num_classes)]

    def build(self, input_shape, num_classes):
        import tensorflow as tf

        file = Path(os.path.expanduser(self.path))
        try:
            config = read_keras_config(file)
        except ValueError as error:  # the file changed since the scenario was checked
            raise RunError(f"keras: {error}") from None
        problems = keras_config_problems(config, file, tuple(input_shape), num_classes)
        if problems:
            raise RunError("keras: " + "; ".join(problems))
        try:
            model = tf.keras.saving.deserialize_keras_object(config, safe_mode=True)
        except Exception as error:  # whatever Keras raises for a config it cannot build
            raise RunError(f"keras: cannot build the model in {file}: {type(error).__name__}: {error}") from None
        if tuple(model.output_shape) != (None, num_classes):
            raise RunError(f"keras: the model in {file} gives outputs of shape {_shape_text(model.output_shape)}, "
                           f"but the dataset needs (None, {num_classes}): one logit per class")
        return model


@hookimpl
def fedarena_register_models(registry):
    registry.add("mlp", MLP)
    registry.add("logistic", Logistic)
    registry.add("cnn", CNN)
    registry.add("lenet5", LeNet5)
    registry.add("resnet", ResNet)
    registry.add("lstm", LSTM)
    registry.add("keras", Keras)
