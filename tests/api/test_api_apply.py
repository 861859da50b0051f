"""`fedarena.apply`: one aggregator, detector or model-poisoning attack on
a NumPy update matrix, run through the server stage's own plumbing."""

import numpy as np
import pytest

import fedarena
from fedarena.core.errors import ScenarioError, UsageError
from fedarena.core.plugin.registry import default_registry
from fedarena.core.testing import make_server_context
from fedarena.plugins.aggregators.krum import Krum

N, D = 10, 6
REGISTRY = default_registry()

# Parameters an aggregator needs (or that fit 10 rows); the others run with their defaults.
AGGREGATOR_PARAMS = {
    "krum": {"f": 2}, "multi_krum": {"f": 2}, "bulyan": {"f": 1}, "dnc": {"f": 2, "subsample": 4},
    "bucketing": {"inner": ("krum", {"f": 1}), "s": 2},
}
# Shares: each row's coefficient in the aggregate, 1/n per row for coordinate-wise rules
# (plugins/aggregators/__init__.py): they sum to one, except where a rule clips rows.
SHARES_SUM_TO_ONE = {"afa", "bucketing", "bulyan", "dnc", "fedavg", "fltrust", "geometric_median", "krum", "median",
                     "multi_krum", "trimmed_mean"}
SHARES_AT_MOST_ONE = {"centered_clipping", "norm_clipping", "signguard"}
# Rules whose aggregate is the rows combined with their shares (for FLTrust the
# rows rescaled first; for coordinate-wise rules the shares are only 1/n).
COMBINATIONS = {"afa", "bucketing", "dnc", "fedavg", "geometric_median", "krum", "multi_krum", "norm_clipping",
                "signguard", "centered_clipping"}


def updates(seed=0, n=N, d=D):
    rng = np.random.default_rng(seed)
    rows = rng.normal(0.5, 1.0, size=(n, d)).astype(np.float32)
    rows[3] *= 30  # an outlier by norm
    return rows


def plugin_text(name, params):
    from fedarena.core.api import _value_text

    if not params:
        return name
    return f"{name}(" + ", ".join(f"{k} = {_value_text(v, k)}" for k, v in params.items()) + ")"


def test_the_three_line_check():
    out = fedarena.apply("krum(f = 1)", np.random.rand(6, 4))
    assert out.kind == "aggregator" and out.aggregate.shape == (4,) and out.shares.sum() == 1.0
    assert isinstance(out.plugin, Krum) and out.plugin.f == 1


def test_every_aggregator_is_in_a_table():
    names = set(REGISTRY.names("aggregator"))
    assert names == SHARES_SUM_TO_ONE | SHARES_AT_MOST_ONE


@pytest.mark.parametrize("name", sorted(REGISTRY.names("aggregator")))
def test_every_aggregator_gives_a_finite_aggregate_and_its_shares(name):
    rows = updates()
    root = rows[np.arange(N) != 3].mean(axis=0)
    needs_root = getattr(REGISTRY.get("aggregator", name).cls, "needs_root_update", False)
    out = fedarena.apply((name, AGGREGATOR_PARAMS.get(name, {})), rows, root_update=root if needs_root else None)
    assert out.kind == "aggregator"
    assert out.aggregate.shape == (D,) and np.isfinite(out.aggregate).all()
    assert out.shares.shape == (N,) and np.isfinite(out.shares).all() and (out.shares >= 0).all()
    if name in SHARES_SUM_TO_ONE:
        assert out.shares.sum() == pytest.approx(1.0, abs=1e-5)
    else:
        assert 0 < out.shares.sum() <= 1.0 + 1e-5
    if name in COMBINATIONS:
        np.testing.assert_allclose(out.aggregate, out.shares @ rows, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out.updates, rows)
    assert out.scores is None and out.kept.all()
    # A text call, a (name, params) pair and an instance are the same plugin.
    text = plugin_text(name, AGGREGATOR_PARAMS.get(name, {}))
    again = fedarena.apply(text, rows, root_update=root if needs_root else None)
    assert again.plugin == out.plugin
    np.testing.assert_allclose(again.aggregate, out.aggregate, rtol=1e-6)


@pytest.mark.parametrize("name", ["krum", "median", "fedavg", "multi_krum"])
def test_rows_not_kept_take_no_part(name):
    rows = updates(1)
    kept = np.ones(N, bool)
    kept[[0, 5]] = False
    params = {"f": 1} if "krum" in name else {}
    out = fedarena.apply((name, params), rows, kept=kept)
    alone = fedarena.apply((name, params), rows[kept])
    assert (out.shares[~kept] == 0).all()
    np.testing.assert_allclose(out.aggregate, alone.aggregate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.shares[kept], alone.shares, rtol=1e-5, atol=1e-7)


def test_fedavg_weighs_by_the_example_counts():
    rows = updates(2)
    weights = np.arange(1, N + 1, dtype=np.float32)
    out = fedarena.apply("fedavg", rows, weights=weights)
    np.testing.assert_allclose(out.shares, weights / weights.sum(), rtol=1e-6)


DETECTORS = {
    "norm_outlier": {}, "cosine_outlier": {}, "flame": {}, "foolsgold": {}, "fldetector": {}, "contra": {},
    "auror": {}, "label_flip_pca": {"source": 1},
}


def test_every_detector_is_listed():
    assert set(REGISTRY.names("detector")) == set(DETECTORS)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detectors_score_and_keep_rows(name):
    rows = updates(3, d=20)
    layers = {"dense/kernel": (2, 10)}  # 10 classes: label_flip_pca reads an output kernel
    kept = np.ones(N, bool)
    kept[7] = False  # dropped before: not seen, still dropped
    out = fedarena.apply((name, DETECTORS[name]), rows, kept=kept, layers=layers)
    assert out.kind == "detector" and out.aggregate is None
    assert out.scores.shape == (N,) and np.isnan(out.scores[7]) and np.isfinite(np.delete(out.scores, 7)).all()
    assert out.kept.dtype == bool and out.kept.shape == (N,) and not out.kept[7]
    assert out.updates.shape == rows.shape
    if name != "flame":  # FLAME clips and adds noise to the rows it keeps
        np.testing.assert_array_equal(out.updates, rows)
    facts = make_server_context(rows).facts
    assert set(out.state) == set(out.plugin.initial_state(20, facts))  # the state after, by name


def test_norm_outlier_drops_the_outlier_and_state_carries_over():
    rows = updates(4)
    out = fedarena.apply("norm_outlier", rows)
    assert not out.kept[3] and out.kept.sum() >= N - 2 and out.scores[3] == out.scores.max()
    first = fedarena.apply("foolsgold", rows)
    second = fedarena.apply("foolsgold", rows, state=first.state, round=2)
    assert set(first.state) == set(second.state) == {"history"}
    np.testing.assert_allclose(second.state["history"], 2 * first.state["history"], rtol=1e-5)


UPDATE_ATTACKS = sorted(e.name for e in REGISTRY.entries("attack") if e.cls.poisons_updates is True)


def test_the_model_poisoning_attacks_are_these():
    assert set(UPDATE_ATTACKS) >= {"alie", "fang_krum", "fang_trim", "gaussian", "ipm", "min_max", "min_sum",
                                   "scaling", "sign_flip"}


@pytest.mark.parametrize("name", UPDATE_ATTACKS)
def test_model_poisoning_attacks_rewrite_their_rows_only(name):
    rows = updates(5)
    malicious = np.zeros(N, bool)
    malicious[[1, 6]] = True
    params = {"target": 0, "ratio": 0.5, "knowledge": "omniscient"} if name == "neurotoxin" else {}
    out = fedarena.apply((name, params), rows, malicious=malicious, seed=3)
    assert out.kind == "attack" and out.aggregate is None and out.scores is None
    assert out.updates.shape == rows.shape and np.isfinite(out.updates).all()
    np.testing.assert_array_equal(out.updates[~malicious], rows[~malicious])
    assert not np.allclose(out.updates[malicious], rows[malicious])
    # Row indices mark the same rows.
    again = fedarena.apply((name, params), rows, malicious=[1, 6], seed=3)
    np.testing.assert_array_equal(again.updates, out.updates)


def test_an_attack_and_a_defense_in_a_row():
    rows = updates(6)
    rows[3] = rows[2]  # no outlier this time
    attacked = fedarena.apply("alie", rows, malicious=[0, 1, 2]).updates
    assert fedarena.apply("krum(f = 3)", attacked).shares[:3].sum() == 1.0  # ALIE's rows win Krum


@pytest.mark.parametrize("plugin,expected", [
    ("krum(f = 3)", "<plugin>:1:1: krum needs clients_per_round > 2f + 2 (here 6 <= 2*3 + 2); lower f or sample "
                    "more clients (n = 6 rows)\n    krum(f = 3)\n    ^"),
    ("krm(f = 1)", "<plugin>:1:1: no aggregator, detector or attack is named 'krm'; did you mean 'krum'?\n"
                   "    krm(f = 1)\n    ^"),
    ("krum(f = -1)", "<plugin>:1:10: parameter 'f' of aggregator 'krum' must be >= 0, got -1\n"
                     "    krum(f = -1)\n             ^"),
    (("krum", {"g": 1}), "<plugin>:1:1: aggregator 'krum' needs parameter 'f' (Byzantine updates the defender "
                         "assumes per round)\n    krum(g = 1)\n    ^\n"
                         "<plugin>:1:6: aggregator 'krum' has no parameter 'g'; it takes f, layers\n"
                         "    krum(g = 1)\n         ^"),
    ("krum(f = 1", "<plugin>:1:11: unexpected end of the call; expected ')' or ','\n    krum(f = 1\n              ^"),
])
def test_plugin_errors_point_into_the_call(plugin, expected):
    with pytest.raises(ScenarioError) as raised:
        fedarena.apply(plugin, np.ones((6, 3)))
    assert str(raised.value) == expected


def test_usage_errors():
    rows = updates()
    with pytest.raises(UsageError, match="poisons its clients' training data"):
        fedarena.apply("label_flip(source = 1, target = 2)", rows, malicious=[0])
    with pytest.raises(UsageError, match="say which they are with malicious="):
        fedarena.apply("alie", rows)
    with pytest.raises(UsageError, match="root_update"):
        fedarena.apply("fltrust", rows)
    with pytest.raises(ValueError, match=r"\[n, d\] matrix"):
        fedarena.apply("fedavg", rows[0])
    with pytest.raises(ValueError, match="one entry per row"):
        fedarena.apply("fedavg", rows, weights=[1, 2])
    with pytest.raises(ValueError, match="the layers hold 4 parameters"):
        fedarena.apply("fedavg", rows, layers={"a": 4})
