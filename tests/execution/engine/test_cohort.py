"""Cohort training (training setting ``client_group``): a group of clients
trained together gives every client the row it gets trained alone, for
FedAvg (Adam, momentum SGD, two epochs) and FedSGD, with label flipping and
a backdoor in the group, unequal client sizes (one smaller than a batch,
one with no samples), a last group smaller than the others, BatchNorm and
FedBN, convolutions (one grouped convolution, in the in-process executor);
and a whole run with groups writes what it writes without."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from fedarena.core.errors import ScenarioError
from fedarena.core.execution.engine.client_store import ClientStore
from fedarena.core.execution.engine.cohort import build_cohort_work, group_inputs
from fedarena.core.execution.engine.computations import build_client_work, local_training
from fedarena.core.execution.engine.flat_model import FlatModel
from fedarena.core.execution.runner import Progress, run_scenario
from fedarena.core.language.parser import parse
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Dataset, DatasetArrays, DatasetInfo, Model
from fedarena.core.plugin.params import param
from fedarena.core.plugin.registry import build_registry, default_registry
from fedarena.core.scenario.roles import scenario_roles
from fedarena.core.scenario.sweep import check
from fedarena.core.testing import read_record
from fedarena.plugins import _functional as fn

from conftest import tiny_scenario

# Unequal clients: one smaller than a batch (5 < 8), one with no samples.
SIZES = [37, 5, 0, 16, 23, 8]
ATTACK_GROUPS = [-1, 0, -1, 1, 0, 1]  # label_flip is group 0, backdoor group 1

MLP = """scenario "cohort" {{
  seed 1
  rounds 1
  dataset synthetic(samples = 200, features = 16, classes = 3)
  split iid over 6 clients
  model mlp(hidden = [8])
  training {{
    local_epochs {epochs}
    batch_size 8
    optimizer {optimizer}
    protocol "{protocol}"
  }}
  attack label_flip(mode = "all_to_one", target = 0) {{ clients 1 }}
  attack backdoor(target = 1, poison_ratio = 0.5) {{ clients 1 }}
  aggregator fedavg
}}"""


def hand_made(scenario, sizes=SIZES):
    """The scenario's model, a client store of clients with ``sizes``
    samples, its attacks, and one input per client (slot = client id)."""
    model = FlatModel(scenario)
    data = scenario.dataset.load(scenario.seed)
    order = np.random.default_rng(0).permutation(len(data.train_y))[: sum(sizes)]
    store = ClientStore(data.train_x, data.train_y, np.split(order, np.cumsum(sizes)[:-1]))
    attacks = [(role, plugin) for role, plugin in scenario_roles(scenario) if role.kind == "attack"]
    inputs = [dict(group=np.int32(group), seed=np.array([1, 100 + client], np.int64), slot=np.int32(client),
                   client=np.int32(client), member=np.int32(0))
              for client, group in enumerate(ATTACK_GROUPS[: len(sizes)])]
    return model, store, attacks, inputs


def solo_and_grouped(scenario, model, store, attacks, inputs, start, size):
    """Every client's row trained alone, and trained in groups of ``size``, field by field."""
    alone = build_client_work(model, store, local_training(model, scenario.training), attacks, scenario.facts)
    together = build_cohort_work(model, store, scenario.training, attacks, scenario.facts)
    solo = [alone(start, given) for given in inputs]
    blocks = [together(start, group) for group in group_inputs(inputs, size)]
    names = list(solo[0].keys())
    assert list(blocks[0].keys()) == names  # the same row fields, in the same order
    return ({name: np.stack([np.asarray(row[name]) for row in solo]) for name in names},
            {name: np.concatenate([np.asarray(block[name]) for block in blocks]) for name in names})


def assert_rows_equal(solo, grouped, atol=1e-6, rtol=1e-5):
    assert set(solo) == set(grouped)
    for name in ("slot", "client", "group", "n"):
        assert grouped[name].tolist() == solo[name].tolist(), name
    np.testing.assert_allclose(grouped["loss"], solo["loss"], rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(grouped["delta"], solo["delta"], rtol=0, atol=atol)
    if "local_norm" in solo:
        np.testing.assert_allclose(grouped["local_norm"], solo["local_norm"], rtol=0, atol=atol)


@pytest.mark.parametrize("protocol, optimizer, epochs", [
    ("fedavg", "adam(learning_rate = 0.01)", 2),
    ("fedavg", "sgd(learning_rate = 0.1, momentum = 0.9)", 1),
    ("fedsgd", "sgd(learning_rate = 0.1)", 1),
])
def test_each_client_of_a_group_gets_its_solo_row(protocol, optimizer, epochs, tff_context):
    scenario = check(parse(MLP.format(protocol=protocol, optimizer=optimizer, epochs=epochs), "c.fls"),
                     default_registry())
    model, store, attacks, inputs = hand_made(scenario)
    # Groups of 4: the last one holds 2 clients.
    solo, grouped = solo_and_grouped(scenario, model, store, attacks, inputs, model.initial, 4)
    assert_rows_equal(solo, grouped)
    assert grouped["n"].tolist() == SIZES
    # The client with no samples sends nothing; every other one trained.
    assert not grouped["delta"][2].any() and grouped["loss"][2] == 0
    assert (np.abs(grouped["delta"][[0, 1, 3, 4, 5]]).max(axis=1) > 1e-4).all()
    # Data poisoning is each client's own: the same clients, none attacking, train otherwise.
    clean = [dict(given, group=np.int32(-1)) for given in inputs]
    _, unpoisoned = solo_and_grouped(scenario, model, store, attacks, clean, model.initial, 4)
    attacked = np.array(ATTACK_GROUPS) >= 0
    assert (np.abs(unpoisoned["delta"] - grouped["delta"]).max(axis=1)[attacked] > 1e-4).all()
    np.testing.assert_allclose(unpoisoned["delta"][~attacked], grouped["delta"][~attacked], atol=1e-6)


@attrs.frozen
class TinyImages(Dataset):
    """8x8x3 images of 3 classes, each a class colour plus noise: 60 to train, 12 to test."""

    def info(self):
        return DatasetInfo(num_classes=3, input_shape=(8, 8, 3))

    def load(self, seed):
        rng = np.random.default_rng(0)
        y = np.arange(72, dtype=np.int32) % 3
        x = (rng.random((3, 1, 1, 3))[y] + 0.2 * rng.normal(size=(72, 8, 8, 3))).astype(np.float32)
        return DatasetArrays(x[:60], y[:60], x[60:], y[60:], self.info())


@attrs.frozen
class TinyConvNet(Model):
    """Two 3x3 convolutions of 4 filters (the second of stride 2), each
    followed by a normalization and ReLU, global mean pooling, logits: the
    model kit's layers (`fedarena.plugins._functional`) at a size that
    compiles in seconds."""

    norm: str = param("batch", choices=("batch", "group", "none"), doc="normalization after each convolution")
    norm_state: str = param("global", choices=("global", "local"), doc="local: FedBN")

    def network(self, input_shape, num_classes, rng):
        import tensorflow as tf

        def logits(ops, x):
            for layer, stride in ((1, 1), (2, 2)):
                x = fn.conv(ops, f"conv{layer}", x, 4, 3, stride, bias=self.norm == "none")
                x = fn.relu(fn.norm(ops, f"norm{layer}", x, self.norm, momentum=0.1, groups=2,
                                    local=self.norm_state == "local"))
            return fn.dense(ops, "logits", tf.reduce_mean(x, axis=[1, 2]), num_classes)

        return fn.network(logits, tuple(input_shape), rng)


class TinyPlugins:
    @hookimpl
    def fedarena_register_datasets(registry):
        registry.add("tiny_images_8", TinyImages)

    @hookimpl
    def fedarena_register_models(registry):
        registry.add("tiny_conv", TinyConvNet)


def image_scenario(model_call: str):
    text = f"""scenario "conv" {{
  seed 2
  rounds 1
  dataset tiny_images_8
  split iid over 4 clients
  model {model_call}
  training {{
    local_epochs 2
    batch_size 4
    optimizer sgd(learning_rate = 0.05, momentum = 0.5)
  }}
  attack label_flip(mode = "all_to_one", target = 0) {{ clients 1 }}
  aggregator fedavg
}}"""
    return check(parse(text, "conv.fls"), build_registry(extra_plugins=(("tiny", TinyPlugins),)))


@pytest.mark.parametrize("model_call", ['tiny_conv(norm = "batch")', 'tiny_conv(norm = "batch", norm_state = "local")'])
def test_a_batchnorm_model_in_a_group_gets_its_solo_rows(model_call, tff_context):
    scenario = image_scenario(model_call)
    # Partial batches (13 = 3 x 4 + 1, 3 < 4) take the path that steps a client alone on its real samples.
    model, store, attacks, inputs = hand_made(scenario, [13, 3, 8, 6])
    assert model.statistics_from < model.dim
    if len(model.local):  # FedBN: each client starts from its own normalization layers
        rng = np.random.default_rng(5)
        for given in inputs:
            given["local_norm"] = (model.initial[model.local]
                                   + 0.1 * rng.normal(size=len(model.local))).astype(np.float32)
    solo, grouped = solo_and_grouped(scenario, model, store, attacks, inputs, model.initial, 3)
    assert_rows_equal(solo, grouped, atol=1e-5)
    statistics = np.abs(grouped["delta"][:, model.statistics_from :]).max(axis=1)
    if len(model.local):  # FedBN shares none of its normalization layers; each client's moved
        assert not statistics.any()
        assert (np.abs(grouped["local_norm"] - np.stack([g["local_norm"] for g in inputs])).max(axis=1) > 1e-4).all()
    else:
        assert (statistics > 1e-4).all()


@pytest.mark.parametrize("model_call", ['tiny_conv(norm = "group")', 'lenet5(norm = "group")'])
def test_a_convolutional_model_in_a_group_gets_its_solo_rows_in_process(model_call):
    """The clients' convolutions run as one grouped convolution, in the
    in-process executor a GPU run uses: the model kit's (explicit padding)
    and a Keras model's (TFF's conversion, Keras' GroupNormalization)."""
    from fedarena.core.execution.backends.local import local_backend

    scenario = image_scenario(model_call)
    model, store, attacks, inputs = hand_made(scenario, [13, 3, 0, 6])
    assert any(len(layer.shape) == 4 for layer in model.layers)  # convolution kernels
    with local_backend():
        solo, grouped = solo_and_grouped(scenario, model, store, attacks, inputs, model.initial, 3)
    assert_rows_equal(solo, grouped)
    assert not grouped["delta"][2].any()  # the client with no samples
    assert (np.abs(grouped["delta"][[0, 1, 3]]).max(axis=1) > 1e-3).all()


def with_group(text: str, size: int) -> str:
    return text.replace("    batch_size 16\n", f"    batch_size 16\n    client_group {size}\n")


def test_a_run_in_groups_writes_the_rows_and_weights_of_a_run_without(tmp_path):
    registry = default_registry()
    records = []
    for name, size in (("alone", 1), ("grouped", 3)):  # 4 clients per round: groups of 3 and 1
        text = tiny_scenario(tmp_path / f"{name}.h5", rounds=3)
        text = with_group(text, size) if size > 1 else text  # the default: each client alone
        scenario = check(parse(text, f"{name}.fls"), registry)
        assert scenario.training.client_group == size
        run_scenario(scenario, registry, force=True, progress=Progress(scenario.rounds, enabled=False))
        records.append(read_record(tmp_path / f"{name}.h5"))
    alone, grouped = records
    assert alone.status == grouped.status == "complete"
    for name in ("clients/id", "clients/kept", "clients/malicious", "clients/num_examples"):
        assert np.array_equal(alone.data[name], grouped.data[name]), name
    for name in ("model/weights", "clients/update_norm", "clients/train_loss", "metrics/test_loss"):
        np.testing.assert_allclose(grouped.data[name], alone.data[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("value, message", [
    (0, "training setting 'client_group' must be >= 1, got 0"),
    (1001, "training setting 'client_group' must be between 1 and 1000 (the clients of a group hold their "
           "weights, optimizer state and a batch each in memory at once), got 1001"),
])
def test_the_group_size_is_checked_with_the_scenario(value, message):
    with pytest.raises(ScenarioError) as error:
        check(parse(with_group(tiny_scenario(), value), "t.fls"), default_registry())
    assert message in str(error.value)
