"""Running a detector as the engine's server stage does: traced with the
number of rows unknown (``[None, d]``), through
`fedarena.core.execution.engine.run.detect_on_kept` (only the kept rows
reach the detector; its results are scattered back), and the hand-made
rounds the detector tests share.  Imported by the tests beside it."""

import attrs
import numpy as np
import tensorflow as tf

from fedarena.core.execution.engine.run import detect_on_kept
from fedarena.core.plugin.interfaces import Detector, Facts, Layer, ServerContext

FACTS = Facts(num_clients=20, clients_per_round=12, num_classes=3, input_shape=(4,))
MLP_LAYERS = (
    Layer("dense/kernel:0", (4, 6), 0),
    Layer("dense/bias:0", (6,), 24),
    Layer("dense_1/kernel:0", (6, 3), 30),
    Layer("dense_1/bias:0", (3,), 48),
)
DIM = 51
SOURCE = 1
SOURCE_COLUMNS = np.array([31, 34, 37, 40, 43, 46, 49])  # column 1 of the output kernel, then its bias

_traced = {}


def _step(detector, dim, layers, facts):
    key = (detector, dim, layers, facts)
    if key not in _traced:
        initial = detector.initial_state(dim, facts)
        state_spec = {k: tf.TensorSpec(v.shape, tf.as_dtype(v.dtype)) for k, v in initial.items()}

        @tf.function(input_signature=[
            tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.bool), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([], tf.int32), state_spec,
        ])
        def step(updates, keep, ids, round_number, state):
            ctx = ServerContext(
                facts=facts, layers=layers, client_ids=ids, num_examples=tf.ones_like(updates[:, 0]),
                global_weights=tf.zeros([dim]), round=round_number,
                seed=tf.stack([tf.constant(7, tf.int64), -tf.cast(round_number, tf.int64)]),
            )
            out = detect_on_kept(detector, updates, keep, ctx, dict(state))
            # The engine's shapes: [K, d] updates, [K] score and keep.
            assert out[0].shape.as_list() == [None, dim]
            assert out[1].shape.as_list() == [None] and out[2].shape.as_list() == [None]
            return out

        _traced[key] = step
    return _traced[key]


def run(detector, updates, keep=None, ids=None, state=None, layers=MLP_LAYERS, facts=FACTS, round_number=1):
    """(updates, score, keep, state) as NumPy."""
    updates = np.asarray(updates, np.float32)
    size, dim = updates.shape
    keep = np.ones(size, bool) if keep is None else np.asarray(keep, bool)
    ids = np.arange(size, dtype=np.int32) if ids is None else np.asarray(ids, np.int32)
    state = detector.initial_state(dim, facts) if state is None else state
    out = _step(detector, dim, layers, facts)(updates, keep, ids, np.int32(round_number), state)
    new_updates, score, kept, new_state = out
    return (new_updates.numpy(), score.numpy(), kept.numpy(), {k: v.numpy() for k, v in new_state.items()})


def layers_for(dim):
    return (Layer("dense/kernel:0", (dim,), 0),)


def sybil_case(seed=0, benign=8, sybils=3, dim=60):
    """Benign updates sharing a direction plus their own noise (pairwise
    cosine about 0.5), and near-identical sybils pointing elsewhere; the
    sybils are the last rows."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=dim)
    shared /= np.linalg.norm(shared)
    rows = shared + rng.normal(size=(benign, dim)) / np.sqrt(dim)
    rows *= rng.uniform(0.5, 2.0, size=(benign, 1))
    target = rng.normal(size=dim)
    target /= np.linalg.norm(target)
    fakes = target + 1e-3 * rng.normal(size=(sybils, dim))
    return np.concatenate([rows, fakes]).astype(np.float32)


def diverse_sybil_case(seed=0, benign=8, sybils=3, dim=60):
    """Benign updates in unrelated directions and near-identical sybils (last)."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(benign, dim))
    fakes = rng.normal(size=dim) + 1e-3 * rng.normal(size=(sybils, dim))
    return np.concatenate([rows, fakes]).astype(np.float32)


def flip_case(seed=0, benign=10, flipped=3, noisy_other_columns=False):
    """Updates of the 51-parameter MLP; flipped clients (the last rows) push
    the source class's output parameters the other way."""
    rng = np.random.default_rng(seed)
    rows = 0.1 * rng.normal(size=(benign + flipped, DIM))
    push = rng.uniform(0.5, 1.0, size=len(SOURCE_COLUMNS))
    rows[:benign, SOURCE_COLUMNS] += push
    rows[benign:, SOURCE_COLUMNS] -= push
    if noisy_other_columns:  # big, unrelated differences elsewhere must not matter
        other = np.setdiff1d(np.arange(DIM), SOURCE_COLUMNS)
        rows[:3, other] += 5.0 * rng.normal(size=(3, len(other)))
    return rows.astype(np.float32)


def outlier_case(seed=0, rows=12, dim=30):
    """Benign updates around one direction with norms near 1; the last row is
    the planted outlier (returned separately: long, or pointing elsewhere)."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    benign = direction + 0.3 * rng.normal(size=(rows, dim)) / np.sqrt(dim)
    benign *= rng.uniform(0.9, 1.1, size=(rows, 1)) / np.linalg.norm(benign, axis=1, keepdims=True)
    long = 10.0 * benign[0]
    away = -direction + 0.3 * rng.normal(size=dim) / np.sqrt(dim)
    return benign.astype(np.float32), long.astype(np.float32), away.astype(np.float32)


def auror_case(seed=0, benign=10, attackers=3, dim=40):
    rng = np.random.default_rng(seed)
    rows = 0.002 * rng.normal(size=(benign + attackers, dim))
    rows[benign:, :5] += 0.05
    return rows.astype(np.float32)


# --------------------------------------------------------------------------
# Checks every detector must pass
# --------------------------------------------------------------------------


def check_rows_dropped_earlier_stay_dropped_and_change_no_decision(detector, make, layers):
    updates = make()
    size, dim = updates.shape
    base_updates, base_score, base_kept, base_state = run(detector, updates, layers=layers)
    assert 0 < base_kept.sum() < size, "the case must make the detector drop something"
    # Three junk rows (huge, two identical) marked as dropped, among the real ones.
    rng = np.random.default_rng(9)
    junk = 1e3 * rng.normal(size=(3, dim)).astype(np.float32)
    junk[1] = junk[0]
    at = [0, size // 2, size]
    mixed = np.insert(updates, at, junk, axis=0)
    keep = np.insert(np.ones(size, bool), at, False)
    ids = np.insert(np.arange(size), at, [15, 16, 17])
    real = keep.copy()
    out_updates, score, kept, state = run(detector, mixed, keep, ids, layers=layers)
    assert not kept[~real].any()
    assert np.isnan(score[~real]).all()
    np.testing.assert_array_equal(out_updates[~real], junk)
    assert kept[real].tolist() == base_kept.tolist()
    np.testing.assert_allclose(score[real], base_score, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_updates[real], base_updates, rtol=1e-5, atol=1e-6)
    initial = detector.initial_state(dim, FACTS)
    for key, value in state.items():
        np.testing.assert_array_equal(value[15:18], initial[key][15:18])
        np.testing.assert_allclose(value, base_state[key], rtol=1e-6)




def check_runs_on_empty_all_dropped_and_single_row_rounds(detector, make, layers):
    dim = make().shape[1]
    out, score, kept, _ = run(detector, np.zeros([0, dim]), layers=layers)
    assert out.shape == (0, dim) and score.shape == (0,) and kept.shape == (0,)
    rows = make()[:4]
    out, score, kept, _ = run(detector, rows, keep=np.zeros(4, bool), layers=layers)
    assert not kept.any() and np.isnan(score).all()
    np.testing.assert_array_equal(out, rows)
    out, score, kept, _ = run(detector, rows[:1], layers=layers)
    assert kept.tolist() == [True] and np.isfinite(score).all()




def check_registers(module, name, cls):
    """The module registers exactly ``name`` -> ``cls``, an attrs Detector."""
    added = {}

    class Recorder:
        def add(self, name, cls):
            added[name] = cls

    module.fedarena_register_detectors(registry=Recorder())
    assert added == {name: cls}
    assert attrs.has(cls) and issubclass(cls, Detector)
