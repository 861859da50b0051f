"""NaN and Inf end to end: a client update that is not finite is dropped,
recorded and never averaged in; a run whose global model stops being
finite, or whose local training diverges, fails at once (exit 1, a message
naming the round, status ``failed``) and keeps the rounds before it."""

import re
import types

import attrs
import numpy as np
import pytest

import fedarena
from fedarena.core.errors import RunError
from fedarena.core.execution.runner import divergence
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.params import param
from fedarena.core.plugin.registry import build_registry
from fedarena.plugins import _tf as tf
from fedarena.plugins.aggregators.fedavg import fedavg
from fedarena.plugins.attacks._common import UpdateAttack

from conftest import read, run_fedarena, tiny_scenario

# The tiny scenario's model: 8 features, 8 hidden units, 3 classes.
DIM = 8 * 8 + 8 + 8 * 3 + 3


@attrs.frozen
class NonFinite(UpdateAttack):
    """A test attack: its clients' updates are honest but for one coordinate
    set to ``value``."""

    value: str = param("nan", doc="what the first coordinate becomes", choices=("nan", "inf", "-inf"))

    def craft(self, updates, own, benign, ctx):
        first = tf.one_hot(0, tf.shape(updates)[1], on_value=True, off_value=False)
        return tf.where(first[None, :], float(self.value), updates)


@attrs.frozen
class NanFrom(Aggregator):
    """A test aggregator: FedAvg, but NaN everywhere from round ``from_round`` on."""

    from_round: int = param(2, doc="the first round whose aggregate is NaN", ge=1)

    def aggregate(self, rows, weights, ctx):
        aggregate, share = fedavg(rows, weights)
        return tf.where(ctx.round >= self.from_round, float("nan"), aggregate), share


class TestPlugins:
    @staticmethod
    @hookimpl
    def fedarena_register_attacks(registry):
        registry.add("non_finite", NonFinite)

    @staticmethod
    @hookimpl
    def fedarena_register_aggregators(registry):
        registry.add("nan_from", NanFrom)


@pytest.fixture(scope="module")
def registry():
    return build_registry(extra_plugins=(("non-finite-tests", TestPlugins),))


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_nan_or_inf_update_is_dropped_recorded_and_never_averaged_in(tmp_path, registry, value):
    attack = f'  attack non_finite(value = "{value}") {{\n    clients 2\n  }}\n'
    path = tmp_path / "s.fls"
    path.write_text(tiny_scenario(tmp_path / "out.h5", rounds=3, attack=attack))
    fedarena.run(path, progress="none", registry=registry)
    attributes, data = read(tmp_path / "out.h5")
    assert attributes["status"] == "complete" and attributes["rounds_done"] == 3
    malicious = data["clients/malicious"]
    assert malicious.any() and (~malicious).any()  # the attack sent such updates, among honest ones
    # Each attacker's update is recorded as not finite and dropped; every honest one is kept.
    np.testing.assert_array_equal(data["clients/finite"], ~malicious)
    np.testing.assert_array_equal(data["clients/kept"], ~malicious)
    assert (data["clients/aggregation_weight"][malicious] == 0).all()
    np.testing.assert_allclose(data["clients/aggregation_weight"].sum(axis=1), 1.0, rtol=1e-6)
    # The arriving norm shows why (NaN or Inf); the model never took it in.
    assert not np.isfinite(data["clients/update_norm"][malicious]).any()
    assert np.isfinite(data["model/weights"]).all()
    assert np.isfinite(data["metrics/test_loss"]).all()


def test_a_global_model_that_stops_being_finite_fails_the_run_and_keeps_the_rounds_before(tmp_path, registry):
    path = tmp_path / "s.fls"
    path.write_text(tiny_scenario(tmp_path / "out.h5", rounds=4, aggregator="nan_from(from_round = 3)"))
    with pytest.raises(RunError) as caught:
        fedarena.run(path, progress="none", registry=registry)
    message = (f"the global model is no longer finite after round 3 ({DIM} of {DIM} weights are NaN or Inf, "
               f"although every update aggregated was finite: the aggregator returned them, or the server step "
               f"overflowed float32); rounds 1..2 are kept")
    assert str(caught.value) == message and caught.value.exit_code == 1
    attributes, data = read(tmp_path / "out.h5")
    assert attributes["status"] == "failed" and attributes["rounds_done"] == 2
    assert attributes["error"] == f"round 3: {message}"
    assert data["metrics/round"].tolist() == [1, 2] and data["clients/kept"].shape[0] == 2
    assert np.isfinite(data["model/weights"]).all()
    results = fedarena.open_results(tmp_path / "out.h5")  # the kept rounds read as usual
    assert results.index["status"].tolist() == ["failed"] and sorted(set(results.metrics["round"])) == [1, 2]


def test_a_diverging_local_training_fails_the_run_at_once_exit_1(tmp_path):
    # sgd(learning_rate = 1e30): every update is NaN from round 1; the run
    # would otherwise go on with every client dropped and end 'complete'.
    path = tmp_path / "s.fls"
    path.write_text(tiny_scenario(tmp_path / "out.h5", attack="").replace("learning_rate = 0.2",
                                                                          "learning_rate = 1e30"))
    done = run_fedarena("run", path, "--progress", "none")
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "error: the local training diverges: in round 1 the updates of all 4 benign clients are NaN or Inf "
        "(dropped, so the model would stand still; a smaller learning rate may help); no round is kept")
    assert "Traceback" not in done.stderr
    attributes, _ = read(tmp_path / "out.h5")
    assert attributes["status"] == "failed" and attributes["rounds_done"] == 0


def test_a_local_training_that_diverges_later_keeps_the_rounds_before(tmp_path):
    # sgd(learning_rate = 100) on the tiny scenario diverges after a few
    # rounds (the round depends on the floating point of the machine).
    path = tmp_path / "s.fls"
    path.write_text(tiny_scenario(tmp_path / "out.h5", rounds=8, attack="").replace("learning_rate = 0.2",
                                                                                    "learning_rate = 100"))
    done = run_fedarena("run", path, "--progress", "none")
    assert done.returncode == 1, done.stderr
    found = re.fullmatch(r"error: the local training diverges: in round (\d+) the updates of all 4 benign clients "
                         r"are NaN or Inf \(dropped, so the model would stand still; a smaller learning rate may "
                         r"help\); (.*)", done.stderr.splitlines()[-1])
    assert found, done.stderr
    failed = int(found[1])
    attributes, data = read(tmp_path / "out.h5")
    assert attributes["status"] == "failed" and attributes["rounds_done"] == failed - 1
    assert data["metrics/round"].tolist() == list(range(1, failed))
    assert data["clients/finite"].all() and np.isfinite(data["model/weights"]).all()


def result(round_number=3, weights=(0.0, 1.0), finite=(True, True, True), malicious=(False, False, True)):
    return types.SimpleNamespace(round=round_number, weights=np.array(weights, np.float32),
                                 clients={"finite": np.array(finite), "malicious": np.array(malicious)})


def test_divergence_is_a_non_finite_model_or_no_finite_benign_update():
    assert divergence(result()) is None
    # Attackers' non-finite updates, and some benign ones, are only dropped (recorded per client).
    assert divergence(result(finite=(True, False, False))) is None
    assert divergence(result(finite=(True, True), malicious=(True, True))) is None  # no benign client this round
    assert divergence(result(finite=(False, False, True))) == (
        "the local training diverges: in round 3 the updates of all 2 benign clients are NaN or Inf (dropped, so "
        "the model would stand still; a smaller learning rate may help); rounds 1..2 are kept")
    assert divergence(result(round_number=2, weights=(np.inf, 1.0))).startswith(
        "the global model is no longer finite after round 2 (1 of 2 weights are NaN or Inf, ")
    assert divergence(result(round_number=2, weights=(np.nan, 1.0))).endswith("; round 1 is kept")
    assert divergence(result(round_number=1, weights=(np.nan, 1.0))).endswith("; no round is kept")
