"""The text model (`lstm`) and one's own Keras model (`keras(path = ...)`):
shapes, parameter counts, one-round runs through the engine read back from
the results file, and the checker's exact messages for files that cannot run."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import attrs
import numpy as np
import pytest

from fedarena.core.errors import RunError, ScenarioError
from fedarena.core.language.parser import parse
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Dataset, DatasetArrays, DatasetInfo, Facts
from fedarena.core.plugin.params import param
from fedarena.core.plugin.registry import default_registry
from fedarena.core.scenario.sweep import check
from fedarena.plugins.models import LSTM, Keras

from test_models import built_in_graph


def facts(input_shape, num_classes, scenario_dir=""):
    return Facts(num_clients=4, clients_per_round=2, num_classes=num_classes, input_shape=tuple(input_shape),
                 scenario_dir=scenario_dir)


# --------------------------------------------------------------------------
# lstm


def test_lstm_gives_one_set_of_logits_per_window():
    import tensorflow as tf

    model = LSTM(embedding=4, units=6).build((10,), 5)
    ids = np.random.default_rng(0).integers(0, 5, (3, 10)).astype(np.float32)
    logits = model(ids, training=False).numpy()
    assert logits.shape == (3, 5) and np.all(np.isfinite(logits))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Embedding", "LSTM", "LSTM", "Dense"]
    first, second = (l for l in model.layers if isinstance(l, tf.keras.layers.LSTM))
    assert first.return_sequences and not second.return_sequences
    assert model.non_trainable_weights == []
    # Float ids are cast to int: the same windows as int32 give the same logits.
    np.testing.assert_array_equal(model(ids.astype(np.int32), training=False).numpy(), logits)


def test_lstm_has_the_shakespeare_baselines_parameter_count():
    # Vocabulary 90 (TFF's 86 characters and 4 special ids), embedding 8,
    # two LSTMs of 256: 4 gates x 256 x (inputs + 256 recurrent + 1 bias).
    embedding = 90 * 8
    lstm1 = 4 * 256 * (8 + 256 + 1)
    lstm2 = 4 * 256 * (256 + 256 + 1)
    logits = 256 * 90 + 90
    assert LSTM().build((80,), 90).count_params() == embedding + lstm1 + lstm2 + logits == 820_522
    one_layer = LSTM(layers=1, units=16, embedding=3).build((80,), 7)
    assert one_layer.count_params() == 7 * 3 + 4 * 16 * (3 + 16 + 1) + 16 * 7 + 7
    assert [type(l).__name__ for l in one_layer.layers].count("LSTM") == 1


def test_lstm_weights_are_created_in_the_order_keras_lists_them():
    keras_model, created = built_in_graph(LSTM(units=8, layers=3), (12,), 6)
    assert created == [w.name for w in keras_model.trainable_weights]
    assert created[:4] == ["embedding/embeddings:0", "lstm1/lstm_cell/kernel:0",
                           "lstm1/lstm_cell/recurrent_kernel:0", "lstm1/lstm_cell/bias:0"]


def test_lstm_needs_sequences():
    assert LSTM().check(facts((80,), 90)) == []
    assert LSTM().check(facts((28, 28, 1), 10)) == [
        "lstm needs sequences of character ids, inputs of shape (seq_len,); the dataset's input shape is "
        "(28, 28, 1): use a text dataset (e.g. shakespeare), or an image model (cnn, lenet5, resnet) or mlp for this data"
    ]
    with pytest.raises(ValueError, match="'layers' must be <= 16"):
        LSTM(layers=17)


def test_the_checker_reports_lstm_on_images_with_the_place_and_the_fix():
    text = """scenario "s" {
  rounds 1
  dataset digits
  split iid over 4 clients
  model lstm(units = 8)
}"""
    with pytest.raises(ScenarioError) as caught:
        check(parse(text, "s.fls"), default_registry())
    assert str(caught.value).splitlines()[:3] == [
        "s.fls:5:9: lstm needs sequences of character ids, inputs of shape (seq_len,); the dataset's input shape "
        "is (8, 8, 1): use a text dataset (e.g. shakespeare), or an image model (cnn, lenet5, resnet) or mlp for "
        "this data",
        "      model lstm(units = 8)",
        "            ^",
    ]


@attrs.frozen
class CountingText(Dataset):
    """Windows of ``length`` consecutive ids modulo ``vocabulary``, each
    labelled with the id that follows: next-character prediction any
    sequence model can learn."""

    length: int = param(10, doc="window length", ge=1)
    vocabulary: int = param(5, doc="number of distinct ids", ge=2)

    def info(self):
        return DatasetInfo(num_classes=self.vocabulary, input_shape=(self.length,))

    def load(self, seed):
        starts = np.random.default_rng(0).integers(0, self.vocabulary, 240)
        x = ((starts[:, None] + np.arange(self.length)) % self.vocabulary).astype(np.float32)
        y = ((starts + self.length) % self.vocabulary).astype(np.int32)
        return DatasetArrays(x[:200], y[:200], x[200:], y[200:], self.info())


class CountingTextPlugin:
    @hookimpl
    def fedarena_register_datasets(registry):
        registry.add("counting_text", CountingText)


def test_lstm_trains_through_the_engine(fedarena_run):
    record = fedarena_run("""scenario "lstm on counting text" {
  rounds 2
  dataset counting_text
  split iid over 4 clients
  model lstm(embedding = 4, units = 8)
  training {
    local_epochs 3
    batch_size 10
    optimizer adam(learning_rate = 0.03)
  }
  evaluate every 1 rounds
}""", plugins=(CountingTextPlugin,))
    assert record.status == "complete"
    weights = record.data["model/weights"]
    built = LSTM(embedding=4, units=8).build((10,), 5)
    assert weights.shape == (built.count_params(),) and np.all(np.isfinite(weights))
    loss = record.data["metrics/test_loss"]
    assert len(loss) == 2 and loss[1] < loss[0]


# --------------------------------------------------------------------------
# keras(path = ...): files saved here by the test


def save(model, path: Path) -> Path:
    model.save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Model files, each by what it shows."""
    import tensorflow as tf

    layers = tf.keras.layers
    folder = tmp_path_factory.mktemp("models")
    made = {}

    def functional(body, shape=(16,), name=None):
        inputs = tf.keras.Input(shape=shape)
        return tf.keras.Model(inputs, body(inputs), name=name)

    # A model with a shortcut: weights in two branches at equal depth.
    def residual(x):
        h = layers.Dense(8, activation="relu", name="hidden")(x)
        shortcut = layers.Dense(8, name="shortcut")(x)
        return layers.Dense(4, name="logits")(layers.Add()([h, shortcut]))

    made["good"] = save(functional(residual), folder / "good.keras")
    made["sequential"] = save(tf.keras.Sequential([layers.InputLayer(input_shape=(16,)), layers.Dense(4)]),
                              folder / "sequential.keras")
    made["images"] = save(functional(lambda x: layers.Dense(4)(layers.Flatten()(x)), shape=(28, 28, 1)),
                          folder / "images.keras")
    made["ten_units"] = save(functional(lambda x: layers.Dense(10)(x)), folder / "ten_units.keras")
    made["softmax"] = save(functional(lambda x: layers.Dense(4, activation="softmax", name="probabilities")(x)),
                           folder / "softmax.keras")
    made["lambda"] = save(functional(lambda x: layers.Dense(4)(layers.Lambda(lambda t: t * 2, name="double")(x))),
                          folder / "lambda.keras")
    made["batchnorm"] = save(functional(lambda x: layers.Dense(4)(layers.BatchNormalization(name="bn")(x))),
                             folder / "batchnorm.keras")
    # `tf.cast` and `x * 2` on Keras tensors: layers calling TF functions by name.
    made["operations"] = save(functional(lambda x: layers.Dense(4)(tf.cast(tf.cast(x, tf.int32), tf.float32) * 2.0)),
                              folder / "operations.keras")
    made["h5"] = save(functional(lambda x: layers.Dense(4)(x)), folder / "legacy.h5")
    made["not_zip"] = folder / "text.keras"
    made["not_zip"].write_text("not a model")
    # A config naming a class from a module other than Keras' (as a custom
    # layer's would): Keras would import that module to build it.
    made["foreign"] = folder / "foreign.keras"
    with zipfile.ZipFile(made["good"]) as source, zipfile.ZipFile(made["foreign"], "w") as target:
        config = json.loads(source.read("config.json"))
        hidden = next(l for l in config["config"]["layers"] if l["name"] == "hidden")
        hidden.update(module="my_layers", class_name="Scaled")
        target.writestr("config.json", json.dumps(config))
        target.writestr("metadata.json", source.read("metadata.json"))
    made["malformed"] = folder / "malformed.keras"
    with zipfile.ZipFile(made["malformed"], "w") as target:
        target.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": [1, 2]}}))
    # An operation layer calling a TF function that writes a file.
    made["writes"] = folder / "writes.keras"
    with zipfile.ZipFile(made["operations"]) as source, zipfile.ZipFile(made["writes"], "w") as target:
        config = json.loads(source.read("config.json"))
        multiply = next(l for l in config["config"]["layers"] if l["config"].get("function") == "math.multiply")
        multiply["config"]["function"] = "io.write_file"
        target.writestr("config.json", json.dumps(config))
        target.writestr("metadata.json", source.read("metadata.json"))
    return made


def test_keras_file_that_fits_checks_clean_and_builds_afresh(files):
    import tensorflow as tf

    assert Keras(path=str(files["good"])).check(facts((16,), 4)) == []
    assert Keras(path=str(files["sequential"])).check(facts((16,), 4)) == []
    assert Keras(path=str(files["operations"])).check(facts((16,), 4)) == []
    assert Keras(path=str(files["operations"])).build((16,), 4).output_shape == (None, 4)
    saved = tf.keras.models.load_model(files["good"], compile=False)
    built = Keras(path=str(files["good"])).build((16,), 4)
    assert [type(l).__name__ for l in built.layers] == [type(l).__name__ for l in saved.layers]
    assert [w.shape for w in built.trainable_weights] == [w.shape for w in saved.trainable_weights]
    # The architecture only: weights are drawn afresh, not the file's.
    assert not any(np.array_equal(a, b) for a, b in zip(built.get_weights(), saved.get_weights()) if a.ndim == 2)
    assert built.output_shape == (None, 4)


def test_keras_file_weights_are_created_in_the_order_keras_lists_them(files):
    keras_model, created = built_in_graph(Keras(path=str(files["good"])), (16,), 4)
    assert created == [w.name for w in keras_model.trainable_weights]


def test_keras_relative_path_is_read_from_the_scenario_folder(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the folder the file is in
    folder = files["good"].parent
    assert Keras(path="good.keras").check(facts((16,), 4, scenario_dir=str(folder))) == []
    assert Keras(path="good.keras").check(facts((16,), 4, scenario_dir=str(tmp_path))) == [
        f"keras: no file at {tmp_path / 'good.keras'}"]


def test_keras_check_errors_name_the_file_what_it_has_and_what_the_dataset_needs(files, tmp_path):
    def problems(name, shape=(16,), classes=4):
        return Keras(path=str(files[name])).check(facts(shape, classes))

    missing = tmp_path / "missing.keras"
    assert Keras(path=str(missing)).check(facts((16,), 4)) == [f"keras: no file at {missing}"]
    assert problems("images") == [
        f"keras: the model in {files['images']} takes inputs of shape (28, 28, 1), but the dataset's are (16,): "
        "build it on tf.keras.Input(shape=(16,))"]
    assert problems("ten_units") == [
        f"keras: the model in {files['ten_units']} ends in a Dense layer of 10 units, but the dataset has 4 classes: "
        "end it with Dense(4), one logit per class"]
    assert problems("softmax") == [
        f"keras: the model in {files['softmax']} ends in softmax ('probabilities'); fedarena trains on logits "
        "(the loss applies the softmax): remove that activation"]
    assert problems("lambda") == [
        f"keras: {files['lambda']} has a Lambda layer 'double': a Lambda layer holds Python code, which fedarena "
        "never runs from a file; write it with Keras' built-in layers"]
    assert problems("batchnorm") == [
        f"keras: {files['batchnorm']} has a BatchNormalization layer 'bn': TFF's functional models cannot keep "
        "BatchNormalization's running statistics; use tf.keras.layers.GroupNormalization instead, or the "
        "built-in resnet18"]
    assert problems("h5") == [
        f"keras: {files['h5']} is in Keras' legacy HDF5 format, whose loader can run Python code stored in the "
        "file; fedarena reads only the .keras format: save the model with model.save(\"model.keras\")"]
    assert problems("not_zip") == [
        f"keras: {files['not_zip']} is not a Keras archive (a .keras zip file, as model.save(\"model.keras\") writes)"]
    assert problems("foreign") == [
        f"keras: {files['foreign']}: 'hidden' is a Scaled from the Python module 'my_layers'; fedarena builds "
        "models of Keras' own layers only (it runs no code from a model file)"]
    assert problems("malformed") == [
        f"keras: {files['malformed']}: its config.json is not a model config as Keras writes it "
        "(AttributeError: 'int' object has no attribute 'get')"]
    assert problems("writes") == [
        f"keras: {files['writes']}: 'tf.math.multiply' calls tf.io.write_file; a model file may call only "
        "TensorFlow's math, nn, linalg and shape functions (fedarena runs nothing else from a file)"]


def test_keras_build_refuses_what_check_refuses_without_running_it(files):
    # A file changed after the check: build reads it again and refuses the
    # Lambda layer before Keras deserializes anything.
    with pytest.raises(RunError, match="has a Lambda layer 'double'"):
        Keras(path=str(files["lambda"])).build((16,), 4)
    with pytest.raises(RunError, match="ends in a Dense layer of 10 units"):
        Keras(path=str(files["ten_units"])).build((16,), 4)


def test_the_checker_makes_a_relative_keras_path_absolute_for_the_build(files, tmp_path, monkeypatch):
    # `build` gets no scenario folder: the checked scenario must carry the
    # path the check read, whatever the working directory.
    folder = files["good"].parent
    scenario = folder / "relative.fls"
    text = """scenario "s" {
  rounds 1
  dataset synthetic(features = 16, classes = 4)
  split iid over 4 clients
  model keras(path = "good.keras")
}"""
    monkeypatch.chdir(tmp_path)
    checked = check(parse(text, str(scenario)), default_registry())
    assert checked.model.path == str(files["good"])


def test_the_checker_reports_a_keras_file_that_does_not_fit_the_data(files, tmp_path):
    scenario = tmp_path / "s.fls"
    text = f"""scenario "s" {{
  rounds 1
  dataset synthetic(features = 8, classes = 4)
  split iid over 4 clients
  model keras(path = "{files['good']}")
}}"""
    with pytest.raises(ScenarioError) as caught:
        check(parse(text, str(scenario)), default_registry())
    assert str(caught.value).splitlines()[0] == (
        f"{scenario}:5:9: keras: the model in {files['good']} takes inputs of shape (16,), but the "
        "dataset's are (8,): build it on tf.keras.Input(shape=(8,))")


def test_a_keras_file_trains_through_the_engine(fedarena_run, files):
    record = fedarena_run(f"""scenario "own model" {{
  rounds 1
  dataset synthetic(samples = 200, features = 16, classes = 4)
  split iid over 4 clients
  model keras(path = "{files['good']}")
}}""")
    assert record.status == "complete"
    weights = record.data["model/weights"]
    built = Keras(path=str(files["good"])).build((16,), 4)
    assert weights.shape == (built.count_params(),) and np.all(np.isfinite(weights))
    assert record.data["plugins/model"]["name"] == "keras"
    assert str(files["good"]) in record.data["plugins/model"]["label"]
