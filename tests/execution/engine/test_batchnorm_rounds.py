"""BatchNorm models through whole rounds, on tiny CIFAR-shaped data
(32x32x3): a full ResNet-18 round read back from HDF5, the server averaging
running statistics like weights, and FedBN's per-client normalization
layers kept across rounds and across ``--resume``."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from fedarena.core.execution.engine.run import Run
from fedarena.core.execution.runner import Progress, run_scenario
from fedarena.core.language.parser import parse
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Dataset, DatasetArrays, DatasetInfo
from fedarena.core.plugin.registry import build_registry
from fedarena.core.scenario.sweep import check
from fedarena.core.testing import read_record
from fedarena.plugins.cifar_models import ResNet18


@attrs.frozen
class TinyImages(Dataset):
    """32x32x3 images of 4 classes, each a class colour plus noise: 12 per client for 3 clients, 16 to test."""

    def info(self):
        return DatasetInfo(num_classes=4, input_shape=(32, 32, 3))

    def load(self, seed):
        rng = np.random.default_rng(0)
        y = np.arange(52, dtype=np.int32) % 4
        colours = rng.random((4, 1, 1, 3))
        x = (colours[y] + 0.2 * rng.normal(size=(52, 32, 32, 3))).astype(np.float32)
        return DatasetArrays(x[:36], y[:36], x[36:], y[36:], self.info())


class TinyImagesPlugin:
    @hookimpl
    def fedarena_register_datasets(registry):
        registry.add("tiny_images", TinyImages)


class StopAfter:
    """Stops the run after ``rounds`` rounds, as an interruption would."""

    def __init__(self, rounds):
        self.rounds = rounds

    @hookimpl
    def fedarena_round_end(self, run, round, metrics):
        return False if round >= self.rounds else None


def scenario_text(model: str, output="bn.h5", rounds: int = 1, clients_per_round: int = 3,
                  extra: str = "") -> str:
    return f"""scenario "batchnorm" {{
  seed 3
  rounds {rounds}
  dataset tiny_images
  split iid over 3 clients
  model {model}
  training {{
    clients_per_round {clients_per_round}
    local_epochs 1
    batch_size 4
    optimizer sgd(learning_rate = 0.05)
{extra}  }}
  aggregator fedavg
  evaluate every 1 rounds
  output "{output}"
}}"""


def registry(*more):
    return build_registry(extra_plugins=(("tiny_images", TinyImagesPlugin),
                                         *((type(p).__name__, p) for p in more)))


def checked(text: str, *more):
    return check(parse(text, "bn.fls"), registry(*more))


def run_file(text: str, directory, *more, resume: bool = False):
    plugins = registry(*more)
    scenario = check(parse(text.replace('output "bn.h5"', f'output "{directory / "bn.h5"}"'), "bn.fls"), plugins)
    run_scenario(scenario, plugins, force=not resume, resume=resume, progress=Progress(scenario.rounds, enabled=False))
    return read_record(directory / "bn.h5")


def layout(model: ResNet18, num_classes: int = 4):
    """Every tensor's (offset, size) in the flat vector, by name: trainable ones, then statistics."""
    net = model.network((32, 32, 3), num_classes, np.random.default_rng(0))
    named = [*net.trainable, *net.statistics]
    sizes = [int(np.prod(v.shape)) for _, v in named]
    return {name: (offset, size) for (name, _), offset, size in zip(named, np.cumsum([0] + sizes[:-1]), sizes)}


def part(weights, where, name):
    offset, size = where[name]
    return weights[offset : offset + size]


def test_a_resnet18_round_trains_weights_and_batchnorm_statistics(tmp_path):
    record = run_file(scenario_text("resnet18"), tmp_path)
    assert record.status == "complete"
    weights = record.data["model/weights"]
    where = layout(ResNet18())
    # 11,173,962 parameters for 10 classes, 6 x 513 fewer for 4; then 9,600 running statistics.
    assert weights.shape == (11_173_962 - 6 * 513 + 9_600,) and np.all(np.isfinite(weights))
    norms = [name.rsplit("/", 1)[0] for name in where if name.endswith("moving_mean")]
    assert len(norms) == 20
    for norm in norms:  # every BatchNorm left its initial values: mean 0, variance 1, gamma 1, beta 0
        assert np.abs(part(weights, where, f"{norm}/moving_mean")).max() > 0, norm
        assert np.abs(part(weights, where, f"{norm}/moving_variance") - 1).max() > 0, norm
        assert np.abs(part(weights, where, f"{norm}/gamma") - 1).max() > 0, norm
    assert np.all(part(weights, where, "stage4/block2/norm2/moving_variance") >= 0)
    assert np.isfinite(record.data["metrics/test_accuracy"][0])
    assert record.data["clients/update_norm"].shape == (1, 3)


def test_the_server_averages_statistics_like_weights_without_its_learning_rate(tff_context):
    text = scenario_text("resnet18(width = 4)", clients_per_round=2, extra="    server_learning_rate 0.5\n")
    run = Run(checked(text))
    model = run.model
    # 300 BatchNorm channels at width 4 (4 + 4 x 4 + 5 x 8 + 5 x 16 + 5 x 32): 600 statistics, last.
    assert model.statistics_from == model.dim - 600
    start = model.initial
    ids, _, inputs = run.client_inputs(1)
    solo = [run.computations.client_train(start, given) for given in inputs]
    deltas = np.stack([np.asarray(s["delta"]) for s in solo])
    n = np.array([float(s["n"]) for s in solo])
    assert n.tolist() == [12.0, 12.0]
    mean = (n[:, None] * deltas).sum(axis=0) / n.sum()
    out = run.computations.run_round(start, run.round_info(1, run.computations.initial_state), inputs)
    s = model.statistics_from
    clients_statistics = start[s:] + deltas[:, s:]  # each client's running statistics after its training
    assert np.abs(clients_statistics[0] - clients_statistics[1]).max() > 1e-4  # the test can tell them apart
    np.testing.assert_allclose(out["weights"][s:], (n[:, None] * clients_statistics).sum(axis=0) / n.sum(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["weights"][:s], start[:s] + 0.5 * mean[:s], rtol=1e-5, atol=1e-6)


FEDBN = 'resnet18(width = 4, norm_state = "local")'


def test_fedbn_clients_train_from_their_own_normalization_layers(tff_context):
    run = Run(checked(scenario_text(FEDBN, rounds=2)))
    model = run.model
    local = model.local
    assert local.size == 300 * 4  # gamma, beta, running mean and variance of 300 channels
    results = list(run.rounds())
    after = [r.state["clients"]["local_norm"] for r in results]
    assert after[0].shape == (3, local.size) and after[0].dtype == np.float32
    for r in results:  # the global model never changes the clients' own tensors, and shares nothing of them
        np.testing.assert_array_equal(r.weights[local], model.initial[local])
    assert np.abs(after[0][0] - after[0][1]).max() > 0  # each client has its own values
    assert "clients" not in run.computations.initial_state  # the run keeps them, not the TFF round

    # Client 0's second round, redone alone: from its own first-round values it
    # reaches exactly what the run stored; from the global model's, it does not.
    _, _, inputs = run.client_inputs(2)
    own = next(dict(given) for given in inputs if int(given["client"]) == 0)
    own["local_norm"] = after[0][0]
    row = run.computations.client_train(results[0].weights, own)
    np.testing.assert_array_equal(np.asarray(row["local_norm"]), after[1][0])
    assert np.all(np.asarray(row["delta"])[local] == 0)
    own["local_norm"] = model.initial[local]
    fresh = run.computations.client_train(results[0].weights, own)
    assert np.abs(np.asarray(fresh["local_norm"]) - after[1][0]).max() > 1e-4

    # Evaluation: the global model with the mean of the clients' values in their place.
    evaluated = run.evaluated_weights(results[-1].weights)
    np.testing.assert_allclose(evaluated[local], after[1].mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(np.delete(evaluated, local), np.delete(results[-1].weights, local))


def test_fedbn_local_values_survive_resume(tmp_path):
    whole_dir, cut_dir = tmp_path / "whole", tmp_path / "cut"
    whole_dir.mkdir(), cut_dir.mkdir()
    text = scenario_text(FEDBN, rounds=3, clients_per_round=2)
    whole = run_file(text, whole_dir)
    cut = run_file(text, cut_dir, StopAfter(1))
    assert cut.status == "interrupted" and cut.attrs["rounds_done"] == 1
    stored = "checkpoint/state/clients/local_norm"
    assert cut.data[stored].shape == whole.data[stored].shape == (3, 1200)
    assert np.abs(cut.data[stored] - whole.data[stored]).max() > 0  # round 1's values, not the end's
    resumed = run_file(text, cut_dir, resume=True)
    assert resumed.status == "complete" and resumed.attrs["rounds_done"] == 3
    np.testing.assert_array_equal(resumed.data[stored], whole.data[stored])
    np.testing.assert_array_equal(resumed.data["model/weights"], whole.data["model/weights"])
    np.testing.assert_array_equal(resumed.data["metrics/test_accuracy"], whole.data["metrics/test_accuracy"])
    np.testing.assert_array_equal(resumed.data["metrics/test_loss"], whole.data["metrics/test_loss"])


def test_fedbn_needs_local_training_and_the_checker_says_so():
    from fedarena.core.errors import ScenarioError

    with pytest.raises(ScenarioError) as caught:
        checked(scenario_text(FEDBN, extra="    protocol fedsgd\n"))
    assert str(caught.value).splitlines()[0].endswith(
        'resnet18: norm_state = "local" (FedBN) keeps layers on the clients, which needs local training; use '
        'protocol fedavg, or norm_state = "global"')
