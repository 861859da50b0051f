"""The round's four builders, each built and run alone: the client work on
a tiny dataset, the gather, the server stage on a hand-made matrix, and
their composition (see `fedarena.core.execution.engine.computations`)."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedarena.core.execution import tff_factory
from fedarena.core.execution.engine import computations, run
from fedarena.core.execution.engine.client_store import ClientStore
from fedarena.core.execution.engine.computations import (
    build_client_work,
    build_gather,
    build_server_stage,
    client_type,
    compose_round,
    local_training,
)
from fedarena.core.execution.engine.flat_model import FlatModel
from fedarena.core.execution.failures import PluginFailure, failing_role
from fedarena.core.language.parser import parse
from fedarena.core.plugin.interfaces import Facts, Layer
from fedarena.core.plugin.registry import default_registry
from fedarena.core.scenario.roles import Role
from fedarena.core.scenario.sweep import check
from fedarena.plugins.aggregators.fedavg import FedAvg

from conftest import tiny_scenario

FACTS = Facts(num_clients=4, clients_per_round=4, num_classes=3, input_shape=(3,))
AGGREGATOR = (Role("aggregator"), FedAvg())
ROW_FIELDS = ["delta", "n", "slot", "group", "client", "loss"]


@pytest.fixture(scope="module")
def tiny():
    """A tiny scenario's model, client store and local training (no attack)."""
    scenario = check(parse(tiny_scenario(attack=""), "tiny.fls"), default_registry())
    data = scenario.dataset.load(scenario.seed)
    parts = [np.arange(0, 40), np.arange(40, 65)]
    store = ClientStore(data.train_x, data.train_y, parts)
    model = FlatModel(scenario)
    yield scenario, model, store, local_training(model, scenario.training)
    store.close()


def client_input(client, slot, group=-1, seed=(1, 2)):
    return dict(group=np.int32(group), seed=np.array(seed, np.int64), slot=np.int32(slot),
                client=np.int32(client), member=np.int32(0))


def row_type(dim):
    return tff.StructType([
        ("delta", tff.TensorType(np.float32, [dim])), ("n", tff.TensorType(np.float32)),
        ("slot", tff.TensorType(np.int32)), ("group", tff.TensorType(np.int32)),
        ("client", tff.TensorType(np.int32)), ("loss", tff.TensorType(np.float32)),
    ])


def rows(delta, n, group=None):
    k = len(n)
    return dict(delta=np.asarray(delta, np.float32), n=np.asarray(n, np.float32), slot=np.arange(k, dtype=np.int32),
                group=np.asarray(group if group is not None else [-1] * k, np.int32),
                client=np.arange(10, 10 + k, dtype=np.int32), loss=np.zeros(k, np.float32))


def round_info(state=None):
    return dict(round=np.int32(1), seed=np.array([0, -1], np.int64), state=state or {})


# Client work.

def test_the_client_work_of_one_client_returns_its_row(tiny, tff_context):
    scenario, model, store, local_update = tiny
    work = build_client_work(model, store, local_update, facts=scenario.facts)
    assert work.type_signature.parameter[1].is_equivalent_to(client_type())
    assert [name for name, _ in tff.structure.to_elements(work.type_signature.result)] == ROW_FIELDS
    row = work(model.initial, client_input(client=1, slot=3))
    assert np.asarray(row["delta"]).shape == (model.dim,)
    assert np.abs(np.asarray(row["delta"])).max() > 0  # it trained
    assert float(row["n"]) == 25.0
    assert (int(row["slot"]), int(row["group"]), int(row["client"])) == (3, -1, 1)
    assert math.isfinite(float(row["loss"])) and float(row["loss"]) > 0
    again = work(model.initial, client_input(client=1, slot=0))
    np.testing.assert_array_equal(again["delta"], row["delta"])  # depends on data and seed only
    other_seed = work(model.initial, client_input(client=1, slot=3, seed=(1, 3)))
    assert np.abs(np.asarray(other_seed["delta"]) - np.asarray(row["delta"])).max() > 0  # the seed shuffles


def test_a_data_attack_poisons_only_its_groups_clients(tiny, tff_context):
    scenario, model, store, local_update = tiny

    class ZeroFeatures:
        poisons_data = True

        def poison_data(self, x, y, seed, facts, member):
            return tf.zeros_like(x), y

    work = build_client_work(model, store, local_update, [(Role("attack", 0), ZeroFeatures())], scenario.facts)
    benign = work(model.initial, client_input(client=0, slot=0, group=-1))
    poisoned = work(model.initial, client_input(client=0, slot=0, group=0))
    plain = build_client_work(model, store, local_update, facts=scenario.facts)(model.initial, client_input(0, 0))
    np.testing.assert_array_equal(benign["delta"], plain["delta"])
    assert np.abs(np.asarray(poisoned["delta"]) - np.asarray(benign["delta"])).max() > 1e-4


def test_a_data_attack_that_fails_as_it_is_built_is_named_by_its_role(tiny):
    scenario, model, store, local_update = tiny

    class Broken:
        poisons_data = True

        def poison_data(self, *args):
            raise ValueError("no")

    with pytest.raises(PluginFailure) as caught:
        build_client_work(model, store, local_update, [(Role("attack", 0), Broken())], scenario.facts)
    assert caught.value.role == Role("attack", 0) and failing_role(caught.value).key == "attack_0"


# Gather.

def test_the_gather_concatenates_the_rows_in_slot_order(tff_context):
    rtype = tff.StructType([("slot", tff.TensorType(np.int32)), ("value", tff.TensorType(np.float32, [2]))])
    gather = build_gather(rtype)
    assert gather.rows_type.is_equivalent_to(tff.StructType([
        ("slot", tff.TensorType(np.int32, [None])), ("value", tff.TensorType(np.float32, [None, 2]))]))

    @tff.federated_computation(tff.FederatedType(rtype, tff.CLIENTS))
    def gathered(values):
        return gather(values)

    slots = [3, 0, 4, 1, 2]
    out = gathered([dict(slot=np.int32(s), value=np.array([s, -s], np.float32)) for s in slots])
    assert np.asarray(out["slot"]).tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(out["value"], [[s, -s] for s in range(5)])
    assert np.asarray(gathered([])["value"]).shape == (0, 2)  # no client, no row


def test_the_gather_of_plain_tensors_stacks_every_row(tff_context):
    gather = build_gather(tff.TensorType(np.float32, [3]))
    assert gather.rows_type == tff.TensorType(np.float32, [None, 3])

    @tff.federated_computation(tff.FederatedType(tff.TensorType(np.float32, [3]), tff.CLIENTS))
    def gathered(values):
        return gather(values)

    values = [np.full(3, v, np.float32) for v in (1.0, 2.0, 3.0)]
    out = np.asarray(gathered(values))
    assert sorted(out[:, 0].tolist()) == [1.0, 2.0, 3.0] and out.shape == (3, 3)


def test_tff_factory_gathers_with_the_engines_gather():
    assert tff_factory.build_gather is computations.build_gather


# Server stage.

def test_the_server_stage_drops_non_finite_rows_and_aggregates_the_rest(tff_context):
    stage = build_server_stage(build_gather(row_type(3)).rows_type, dim=3, layers=(Layer("w", (3,), 0),),
                               facts=FACTS, aggregator=AGGREGATOR)
    delta = [[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0], [3.0, 2.0, 1.0], [np.inf, 1.0, 1.0]]
    out = stage(np.ones(3, np.float32), rows(delta, [1, 1, 3, 1]), round_info())
    assert np.asarray(out["finite"]).tolist() == [True, False, True, False]
    assert np.asarray(out["kept"]).tolist() == [True, False, True, False]
    np.testing.assert_allclose(out["aggregation_weight"], [0.25, 0.0, 0.75, 0.0])
    np.testing.assert_allclose(out["weights"], 1 + np.array([2.5, 2.0, 1.5]), rtol=1e-6)
    assert not np.isfinite(np.asarray(out["update_norm"])[[1, 3]]).any()  # as the rows arrived
    assert np.asarray(out["detector_scores"]).shape == (4, 0)
    assert np.asarray(out["stage_seconds"]).shape == (3,)


def test_the_server_stage_applies_attacks_detectors_and_momentum_in_their_roles(tff_context):
    class Double:  # an update attack: doubles its group's rows, counts its calls in its state
        def apply(self, updates, mine, benign, ctx, state):
            return tf.where(mine[:, None], 2.0 * updates, updates), {"calls": state["calls"] + 1}

    class DropLargest:  # a detector: drops the kept row with the largest norm
        def apply(self, updates, ctx, state):
            norm = tf.norm(updates, axis=1)
            return updates, norm, tf.not_equal(tf.range(tf.size(norm)), tf.argmax(norm, output_type=tf.int32)), state

    state = {"server": {"velocity": np.full(2, 1.0, np.float32)}, "attack_0": {"calls": np.int32(0)}}
    stage = build_server_stage(
        build_gather(row_type(2)).rows_type, dim=2, layers=(Layer("w", (2,), 0),), facts=FACTS,
        aggregator=AGGREGATOR, attacks=[(Role("attack", 0), Double())], detectors=[(Role("detector", 0), DropLargest())],
        state=state, server_learning_rate=0.5, server_momentum=0.9,
    )
    out = stage(np.zeros(2, np.float32), rows([[1.0, 0.0], [0.0, 1.0], [4.0, 4.0]], [1, 1, 1], group=[-1, 0, -1]),
                round_info(state))
    assert np.asarray(out["kept"]).tolist() == [True, True, False]  # the attack ran first: row 1 is now [0, 2]
    np.testing.assert_allclose(out["detector_scores"][:, 0], [1.0, 2.0, math.sqrt(32)], rtol=1e-6)
    aggregate = np.array([0.5, 1.0])
    np.testing.assert_allclose(out["state"]["server"]["velocity"], 0.9 + aggregate, rtol=1e-6)
    np.testing.assert_allclose(out["weights"], 0.5 * (0.9 + aggregate), rtol=1e-6)
    assert int(out["state"]["attack_0"]["calls"]) == 1


def test_a_server_plugin_that_fails_as_it_is_built_is_named_by_its_role():
    class Broken:
        def apply(self, *args):
            raise RuntimeError("broken")

    with pytest.raises(PluginFailure) as caught:
        build_server_stage(build_gather(row_type(2)).rows_type, dim=2, layers=(Layer("w", (2,), 0),), facts=FACTS,
                           aggregator=AGGREGATOR, detectors=[(Role("detector", 1), Broken())])
    assert caught.value.role == Role("detector", 1)
    assert "broken" in str(caught.value)


# The round composed.

def test_compose_round_has_the_rounds_type_and_runs_the_three_stages(tiny, tff_context):
    scenario, model, store, local_update = tiny
    work = build_client_work(model, store, local_update, facts=scenario.facts)
    gather = build_gather(work.type_signature.result)
    stage = build_server_stage(gather.rows_type, dim=model.dim, layers=model.layers, facts=scenario.facts,
                               aggregator=AGGREGATOR)
    round_ = compose_round(work, gather, stage)
    weights_type = tff.TensorType(np.float32, [model.dim])
    assert round_.type_signature.parameter.is_equivalent_to(tff.StructType([
        ("global_weights", tff.FederatedType(weights_type, tff.SERVER)),
        ("round_info", tff.FederatedType(stage.type_signature.parameter[2], tff.SERVER)),
        ("client_data", tff.FederatedType(client_type(), tff.CLIENTS)),  # last: see compose_round
    ]))
    assert round_.type_signature.result.is_equivalent_to(tff.FederatedType(stage.type_signature.result, tff.SERVER))
    inputs = [client_input(client=1, slot=0), client_input(client=0, slot=1, seed=(1, 3))]
    solo = [work(model.initial, i) for i in inputs]
    n = np.array([float(s["n"]) for s in solo])
    expected = model.initial + sum(k * np.asarray(s["delta"]) for k, s in zip(n, solo)) / n.sum()
    out = round_(model.initial, round_info(), inputs)
    np.testing.assert_allclose(out["weights"], expected, atol=1e-6)
    np.testing.assert_array_equal(out["num_examples"], n)  # in slot order


def test_a_runs_computations_are_the_four_builders():
    assert run.RoundComputations is computations.RoundComputations
    # The kept-row plumbing other code imports from the run module.
    assert run.detect_on_kept is computations.detect_on_kept and run.aggregate_kept is computations.aggregate_kept
