"""The TFF round of a whole `Run`: its aggregate against NumPy, determinism,
the training protocols and server options, resuming, and the plugin pieces
it is made of (data poisoning, aggregators) on hand-made inputs.
(Each builder alone: test_builders.py.)"""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.scenario.sweep import check
from fedarena.core.execution.engine.run import Run
from fedarena.core.execution.engine.sampling import sample_clients
from fedarena.core.plugin.interfaces import Facts
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import default_registry
from fedarena.plugins.aggregators.fedavg import FedAvg
from fedarena.plugins.aggregators.median import Median
from fedarena.plugins.attacks.label_flip import LabelFlip

from conftest import tiny_scenario

FACTS = Facts(num_clients=10, clients_per_round=5, num_classes=4, input_shape=(2,))


def tiny_run(**kwargs) -> Run:
    return Run(check(parse(tiny_scenario(**kwargs), "tiny.fls"), default_registry()))


def test_one_tff_round_equals_numpy_fedavg_of_the_same_client_updates(tff_context):
    run = tiny_run()
    start = run.model.initial
    ids, acting, inputs = run.client_inputs(1)
    assert (acting >= 0).any(), "the round should include an attacker for this test to mean something"
    solo = [run.computations.client_train(start, client) for client in inputs]
    deltas = np.stack([np.asarray(s["delta"]) for s in solo])
    examples = np.array([float(s["n"]) for s in solo])
    assert examples.tolist() == run.clients.sizes[ids].tolist()
    expected = start + (examples[:, None] * deltas).sum(axis=0) / examples.sum()

    out = run.computations.run_round(start, run.round_info(1, run.computations.initial_state), inputs)
    np.testing.assert_allclose(out["weights"], expected, atol=1e-6)
    np.testing.assert_allclose(out["update_norm"], np.linalg.norm(deltas, axis=1), rtol=1e-5)
    np.testing.assert_allclose(out["aggregation_weight"], examples / examples.sum(), rtol=1e-6)


def test_rounds_learn_and_are_deterministic_under_the_seed(tff_context):
    first = [r.metrics["test_accuracy"] for r in tiny_run(rounds=4, attack="").rounds()]
    again = [r.metrics["test_accuracy"] for r in tiny_run(rounds=4, attack="").rounds()]
    assert first == again
    assert first[-1] > 0.8  # 3 well-separated classes: chance is 1/3


def test_client_sampling_depends_only_on_seed_and_round():
    scenario = check(parse(tiny_scenario(), "t.fls"), default_registry())
    assert sample_clients(scenario, 3).tolist() == sample_clients(scenario, 3).tolist()
    assert len(set(sample_clients(scenario, 3))) == scenario.training.clients_per_round


def test_malicious_clients_poison_their_data_and_only_theirs(tff_context):
    run = tiny_run()
    start = run.model.initial
    _, acting, inputs = run.client_inputs(1)
    slot = int(np.flatnonzero(acting >= 0)[0])
    honest = dict(inputs[slot], group=np.int32(-1))
    poisoned = run.computations.client_train(start, inputs[slot])["delta"]
    clean = run.computations.client_train(start, honest)["delta"]
    assert np.abs(np.asarray(poisoned) - np.asarray(clean)).max() > 1e-3


def test_label_flip_targeted_flips_exactly_the_source_class():
    y = tf.constant([0, 1, 2, 3, 1, 1], tf.int32)
    _, flipped = LabelFlip(source=1, target=3).poison_data(None, y, tf.constant([1, 2], tf.int64), FACTS, 0)
    assert flipped.numpy().tolist() == [0, 3, 2, 3, 3, 3]


def test_label_flip_all_to_one_and_random():
    y = tf.constant(np.arange(400) % 4, tf.int32)
    seed = tf.constant([5, 6], tf.int64)
    _, all_to_one = LabelFlip(mode="all_to_one", target=2).poison_data(None, y, seed, FACTS, 0)
    assert set(all_to_one.numpy().tolist()) == {2}
    _, randomised = LabelFlip(mode="random").poison_data(None, y, seed, FACTS, 0)
    randomised = randomised.numpy()
    assert (randomised != y.numpy()).all()  # a random flip never keeps the label
    assert set(randomised.tolist()) == {0, 1, 2, 3}


def test_label_flip_poison_ratio_flips_about_that_share():
    y = tf.zeros([10000], tf.int32)
    _, flipped = LabelFlip(source=0, target=1, poison_ratio=0.3).poison_data(None, y, tf.constant([1, 1], tf.int64), FACTS, 0)
    assert abs(flipped.numpy().mean() - 0.3) < 0.02


@pytest.mark.parametrize("rows", [5, 6])
def test_median_equals_numpy_median(rows):
    updates = np.random.default_rng(rows).normal(size=(rows, 7)).astype(np.float32)
    from fedarena.core.testing import make_server_context

    aggregate, share = Median().aggregate(tf.constant(updates), tf.ones([rows]), make_server_context(updates))
    np.testing.assert_array_equal(aggregate.numpy(), np.median(updates, axis=0))
    assert np.allclose(share.numpy(), 1 / rows)


def test_median_ignores_rows_with_zero_weight():
    from fedarena.core.execution.engine.run import aggregate_kept
    from fedarena.core.testing import make_server_context

    updates = np.array([[1.0], [2.0], [100.0], [3.0]], np.float32)
    # The server stage drops rows of weight 0 before the aggregator sees them.
    aggregate, share, _ = aggregate_kept(Median(), tf.constant(updates), tf.constant([1.0, 1.0, 0.0, 1.0]),
                                         make_server_context(updates), {})
    assert aggregate.numpy().tolist() == [2.0]
    assert share.numpy()[2] == 0


def test_fedavg_weights_by_examples():
    updates = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    aggregate, share = FedAvg().aggregate(updates, tf.constant([1.0, 3.0]), FACTS)
    np.testing.assert_allclose(aggregate.numpy(), [0.25, 0.75])
    np.testing.assert_allclose(share.numpy(), [0.25, 0.75])


def test_a_round_sends_only_scalars_per_client(tff_context):
    run = tiny_run()
    _, _, inputs = run.client_inputs(1)
    for client in inputs:
        assert all(np.asarray(v).size <= 2 for v in client.values())
    run.close()


def _with_training(text: str, extra: str) -> str:
    return text.replace("    optimizer sgd(learning_rate = 0.2)\n", f"    optimizer sgd(learning_rate = 0.2)\n{extra}")


def _run_text(text: str) -> Run:
    return Run(check(parse(text, "t.fls"), default_registry()))


def test_fedsgd_with_server_step_equals_one_full_batch_fedavg_step(tff_context):
    # One full-batch SGD step of 0.2 per client, averaged, equals the
    # server applying the averaged gradient with learning rate 0.2.
    big_batch = tiny_scenario(attack="").replace("batch_size 16", "batch_size 1000")
    fedavg = _run_text(big_batch)
    fedsgd = _run_text(_with_training(big_batch, "    protocol fedsgd\n    server_learning_rate 0.2\n"))
    np.testing.assert_allclose(next(fedsgd.rounds()).weights, next(fedavg.rounds()).weights, atol=2e-6)
    with pytest.raises(Exception, match="local_epochs must be 1"):
        _run_text(_with_training(big_batch, "    protocol fedsgd\n").replace("local_epochs 1", "local_epochs 2"))


def test_server_momentum_carries_the_aggregate_across_rounds(tff_context):
    run = _run_text(_with_training(tiny_scenario(attack=""), "    server_momentum 0.5\n"))
    start = run.model.initial
    first, second = run.rounds(), None
    r1 = next(first)
    np.testing.assert_allclose(r1.state["server"]["velocity"], r1.weights - start, atol=1e-6)
    r2 = next(first)
    step = r2.weights - r1.weights
    np.testing.assert_allclose(r2.state["server"]["velocity"], step, atol=1e-6)
    assert np.abs(step - (r1.weights - start) * 0.5).max() > 1e-4  # momentum is more than a constant


def test_fltrust_runs_on_root_samples_kept_from_the_clients(tff_context):
    text = _with_training(tiny_scenario(aggregator="fltrust"), "    root_samples 50\n")
    run = _run_text(text)
    assert run.class_histogram.sum() == len(run.data.train_y) - 50
    assert run.clients.root == 6 and run.clients.sizes.sum() == len(run.data.train_y) - 50
    for result in run.rounds():
        share = result.clients["aggregation_weight"]
        assert abs(share.sum() - 1) < 1e-5 or share.sum() == 0
    assert result.metrics["test_accuracy"] > 0.5
    with pytest.raises(Exception, match="fltrust needs a server root dataset"):
        _run_text(tiny_scenario(aggregator="fltrust"))


def test_a_stateful_defense_resumes_exactly_from_its_checkpointed_state(tff_context):
    text = tiny_scenario(rounds=4).replace("  aggregator fedavg", "  detector foolsgold\n  aggregator fedavg")
    whole = [r for r in _run_text(text).rounds()]
    assert "detector_0" in whole[-1].state  # FoolsGold keeps its history at the server
    first_two = list(itertools.islice(_run_text(text).rounds(), 2))
    resumed = list(_run_text(text).rounds(weights=first_two[-1].weights, state=first_two[-1].state, first_round=3))
    np.testing.assert_array_equal(resumed[-1].weights, whole[-1].weights)
    np.testing.assert_array_equal(resumed[-1].state["detector_0"]["history"], whole[-1].state["detector_0"]["history"])
