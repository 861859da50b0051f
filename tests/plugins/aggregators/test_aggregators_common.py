"""What every built-in aggregator shares, run as the server stage runs it
(`aggregate_kept`): permutation invariance, rows of weight 0 ignored, no
row left, an unknown number of rows in a graph, ``layers``, distinct salts,
the doctests of every module, and no TensorFlow at import."""

import doctest
import importlib
import pkgutil
import subprocess
import sys

import attrs
import numpy as np
import pytest
import tensorflow as tf

import fedarena.plugins.aggregators as package
from fedarena.core.plugin.registry import default_registry
from fedarena.plugins.aggregators.afa import AFA
from fedarena.plugins.aggregators.bucketing import Bucketing
from fedarena.plugins.aggregators.bulyan import Bulyan
from fedarena.plugins.aggregators.centered_clipping import CenteredClipping
from fedarena.plugins.aggregators.dnc import DnC
from fedarena.plugins.aggregators.fedavg import FedAvg
from fedarena.plugins.aggregators.fltrust import FLTrust
from fedarena.plugins.aggregators.geometric_median import GeometricMedian
from fedarena.plugins.aggregators.krum import Krum
from fedarena.plugins.aggregators.median import Median
from fedarena.plugins.aggregators.multi_krum import MultiKrum
from fedarena.plugins.aggregators.norm_clipping import NormClipping
from fedarena.plugins.aggregators.signguard import SignGuard
from fedarena.plugins.aggregators.trimmed_mean import TrimmedMean

from aggregator_helpers import D, K, context, layered_context, run, sample_updates, state_of

MODULES = sorted(info.name for info in pkgutil.iter_modules(package.__path__))

ALL = {
    "fedavg": FedAvg(),
    "median": Median(),
    "trimmed_mean": TrimmedMean(beta=0.2),
    "trimmed_mean_k": TrimmedMean(k=2),
    "krum": Krum(f=2),
    "multi_krum": MultiKrum(f=2),
    "multi_krum_iterative": MultiKrum(f=2, iterative=True),
    "bulyan": Bulyan(f=2),
    "geometric_median": GeometricMedian(),
    "centered_clipping": CenteredClipping(tau=1.0, iterations=2),
    "norm_clipping": NormClipping(bound=1.0, noise=0.01),
    "dnc": DnC(f=2, subsample=4, niters=2),
    "signguard": SignGuard(fraction=0.5),
    "bucketing": Bucketing(inner=Krum(f=1), s=2),
    "afa": AFA(),
}


def test_every_aggregator_is_registered():
    names = set(default_registry().names("aggregator"))
    assert {"fedavg", "median", "trimmed_mean", "krum", "multi_krum", "bulyan", "geometric_median",
            "centered_clipping", "norm_clipping", "dnc", "signguard", "bucketing", "afa", "fltrust"} <= names


PERMUTATION = dict(ALL)
# A fixed seed shuffles rows into buckets by position, so bucketing is only
# permutation invariant with one update per bucket.
PERMUTATION["bucketing"] = Bucketing(inner=Median(), s=1)


@pytest.mark.parametrize("name", sorted(PERMUTATION))
def test_permuting_the_rows_permutes_only_the_shares(name):
    aggregator = PERMUTATION[name]
    updates = sample_updates()
    weights = np.arange(1, K + 1, dtype=np.float32)
    weights[7] = 0
    order = np.random.default_rng(5).permutation(K)
    ids = np.arange(K)
    aggregate, share, state = run(aggregator, updates, weights, context(K, ids=ids))
    aggregate2, share2, state2 = run(aggregator, updates[order], weights[order], context(K, ids=ids[order]))
    np.testing.assert_allclose(aggregate2, aggregate, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(share2, share[order], rtol=1e-4, atol=1e-6)
    for key in state:
        np.testing.assert_allclose(state2[key], state[key], rtol=1e-4, atol=1e-5)
    assert share[7] == 0


@pytest.mark.parametrize("name", sorted(ALL))
def test_rows_of_weight_zero_take_no_part(name):
    aggregator = ALL[name]
    clean = sample_updates(1, k=11)
    aggregate, share, state = run(aggregator, clean)
    junk = np.full((3, D), 1e4, np.float32) * np.array([[1], [-1], [3]], np.float32)
    updates = np.concatenate([junk[:1], clean[:5], junk[1:], clean[5:]])
    weights = np.concatenate([[0], np.ones(5), [0, 0], np.ones(6)]).astype(np.float32)
    ids = np.concatenate([[15], np.arange(5), [16, 17], np.arange(5, 11)])
    aggregate2, share2, state2 = run(aggregator, updates, weights, context(14, ids=ids))
    np.testing.assert_allclose(aggregate2, aggregate, rtol=1e-5, atol=1e-6)
    assert share2[[0, 6, 7]].tolist() == [0, 0, 0]
    np.testing.assert_allclose(np.delete(share2, [0, 6, 7]), share, rtol=1e-5, atol=1e-7)
    for key in state:
        np.testing.assert_allclose(state2[key], state[key])


@pytest.mark.parametrize("name", sorted(ALL))
def test_no_row_left_gives_a_zero_aggregate(name):
    aggregate, share, state = run(ALL[name], sample_updates(), np.zeros(K))
    assert not aggregate.any() and not share.any()
    for key, value in state_of(ALL[name]).items():
        np.testing.assert_array_equal(state[key], value.numpy())


@pytest.mark.parametrize("name", sorted(ALL))
def test_works_in_a_graph_with_unknown_number_of_rows(name):
    from fedarena.core.execution.engine.run import aggregate_kept

    aggregator = ALL[name]
    state = state_of(aggregator)

    @tf.function(input_signature=[tf.TensorSpec([None, D], tf.float32), tf.TensorSpec([None], tf.float32)])
    def graph(updates, weights):
        return aggregate_kept(aggregator, updates, weights, context(tf.shape(updates)[0]), state)

    @tf.function(input_signature=[tf.TensorSpec([None, D], tf.float32), tf.TensorSpec([None], tf.float32)])
    def kept_rows_only(rows, weights):  # the plugin alone, as the server stage calls it
        return aggregator.apply(rows, weights, context(tf.shape(rows)[0]), state)

    for k in (K, 9):
        updates, weights = sample_updates(2, k=k), np.ones(k, np.float32)
        weights[3] = 0
        aggregate, share, new = graph(tf.constant(updates), tf.constant(weights))
        assert aggregate.shape == [D] and share.shape == [k]
        expected = run(aggregator, updates, weights, context(k), state)
        np.testing.assert_allclose(aggregate.numpy(), expected[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(share.numpy(), expected[1], rtol=1e-5, atol=1e-7)
        assert {key: value.shape for key, value in new.items()} == {key: value.shape for key, value in state.items()}
        aggregate, share, _ = kept_rows_only(tf.constant(updates), tf.ones([k]))
        assert aggregate.shape == [D] and share.shape == [k]
    assert graph.experimental_get_tracing_count() == 1  # one trace serves every K
    assert kept_rows_only.experimental_get_tracing_count() == 1


# ------------------------------------------------------------------ layers

WITH_LAYERS = sorted(name for name, aggregator in ALL.items() if hasattr(aggregator, "layers"))


def test_the_rules_that_compare_rows_take_layers():
    assert WITH_LAYERS == ["afa", "bulyan", "dnc", "krum", "multi_krum", "multi_krum_iterative", "signguard"]
    assert FLTrust().layers == ()
    for name in ("fedavg", "median", "trimmed_mean", "geometric_median", "centered_clipping", "norm_clipping",
                 "bucketing"):
        assert not hasattr(ALL[name], "layers"), name


@pytest.mark.parametrize("name", WITH_LAYERS + ["fltrust"])
def test_layers_naming_every_layer_change_nothing(name):
    aggregator = FLTrust() if name == "fltrust" else ALL[name]
    root = np.linspace(-1, 2, D)
    updates = sample_updates(4)
    expected = run(aggregator, updates, ctx=layered_context(K, root))
    got = run(attrs.evolve(aggregator, layers=("first", "second")), updates, ctx=layered_context(K, root))
    for a, b in zip(got[:2], expected[:2]):
        np.testing.assert_array_equal(a, b)
    for key in expected[2]:
        np.testing.assert_array_equal(got[2][key], expected[2][key])
    with pytest.raises(ValueError, match="match no layer"):
        run(attrs.evolve(aggregator, layers=("third",)), updates, ctx=layered_context(K, root))


# ------------------------------------------------------------ conventions

def test_randomised_rules_never_share_a_salt():
    salts = {}
    for name in MODULES:
        module = importlib.import_module(f"{package.__name__}.{name}")
        for attribute, value in vars(module).items():
            if attribute.startswith("SALT"):
                salts[f"{name}.{attribute}"] = value
    assert set(salts) >= {"norm_clipping.SALT_NOISE", "dnc.SALT_DNC", "signguard.SALT_SIGNGUARD",
                          "bucketing.SALT_BUCKETS", "bucketing.SALT_INNER"}
    assert len(set(salts.values())) == len(salts), salts


@pytest.mark.parametrize("name", MODULES)
def test_the_module_doctest_runs(name):
    module = importlib.import_module(f"{package.__name__}.{name}")
    assert "\n>>> " in module.__doc__, "each aggregator module shows its rule on a few hand-made rows"
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.attempted > 0 and result.failed == 0, result


def test_the_package_docstring_holds_the_conventions_and_nothing_else():
    assert {name for name in vars(package) if not name.startswith("__")} <= set(MODULES)
    assert "ALGORITHMS.md" not in package.__doc__ and "/work/" not in package.__doc__


def test_importing_the_aggregators_does_not_import_tensorflow():
    code = ("import sys, importlib, pkgutil, fedarena.plugins.aggregators as p\n"
            "for i in pkgutil.iter_modules(p.__path__): importlib.import_module(p.__name__ + '.' + i.name)\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
