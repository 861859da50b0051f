"""What the attack tests share: small hand-made update matrices and
contexts, independent NumPy code (distances, a small Krum), and the checks
every model-poisoning attack must pass.  Imported by the tests beside it."""

import attrs
import numpy as np
import tensorflow as tf

from fedarena.core.plugin.interfaces import Attack, Facts, Layer, ServerContext

D = 30
FACTS = Facts(num_clients=50, clients_per_round=10, num_classes=4, input_shape=(8, 8, 1), num_attackers=10)


def context(k: int, d: int = D, facts: Facts = FACTS, seed=(7, -1), global_weights=None, round_number=1):
    return ServerContext(
        facts=facts, layers=(Layer("dense/kernel:0", (d,), 0),), client_ids=tf.range(k, dtype=tf.int32),
        num_examples=tf.ones([k]), global_weights=tf.zeros([d]) if global_weights is None else tf.constant(
            global_weights, tf.float32), round=tf.constant(round_number, tf.int32),
        seed=tf.constant(seed, tf.int64),
    )


def matrix(seed=0, k=10, d=D, own=(3, 7), other=(), centre=0.1, noise=1.0):
    """``k`` rows scattered around ``centre``; ``own`` rows are this attack's,
    ``other`` rows belong to another attack group (neither own nor benign)."""
    rng = np.random.default_rng(seed)
    updates = (centre + noise * rng.normal(size=(k, d))).astype(np.float32)
    own_mask = np.isin(np.arange(k), own)
    benign = ~own_mask & ~np.isin(np.arange(k), other)
    return updates, own_mask, benign


def attack_rows(attack, updates, own, benign, ctx=None):
    ctx = ctx or context(len(updates), updates.shape[1])
    return np.asarray(attack.poison_updates(tf.constant(updates), tf.constant(own), tf.constant(benign), ctx))


def pairwise_sq(a, b):
    return ((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1)


def numpy_krum(rows, f):
    """Krum (Blanchard 2017): argmin of the summed squared distances to the
    n - f - 2 nearest other rows."""
    n = len(rows)
    dist = pairwise_sq(rows, rows)
    np.fill_diagonal(dist, np.inf)
    return int(np.argmin(np.sort(dist, axis=1)[:, : n - f - 2].sum(axis=1)))


def perturbation(ref, kind):
    mean = ref.mean(0)
    return {"unit_vec": mean / np.linalg.norm(mean), "std": ref.std(0), "sign": np.sign(mean)}[kind]


def recovered_gamma(row, ref, kind):
    p = perturbation(ref, kind)
    gamma = (ref.mean(0) - row) @ p / (p @ p)
    np.testing.assert_allclose(row, ref.mean(0) - gamma * p, atol=1e-5)
    return gamma


def poisoned(attack, x, y, member=0, input_shape=None, seed=(1, 2)):
    facts = Facts(10, 5, 4, tuple(input_shape or x.shape[1:]))
    px, py = attack.poison_data(tf.constant(x), tf.constant(y), tf.constant(seed, tf.int64), facts,
                                tf.constant(member, tf.int32))
    return np.asarray(px), np.asarray(py)


def images(n=50, shape=(8, 8, 1), seed=0):
    rng = np.random.default_rng(seed)
    return (0.5 * rng.random((n,) + shape)).astype(np.float32), rng.integers(0, 4, n).astype(np.int32)


def check_only_own_rows_change(attack):
    assert attack.poisons_updates
    updates, own, benign = matrix(seed=12, other=(9,))
    out = attack_rows(attack, updates, own, benign)
    np.testing.assert_array_equal(out[~own], updates[~own])
    assert not np.allclose(out[own], updates[own])
    none = np.zeros(10, bool)
    np.testing.assert_array_equal(attack_rows(attack, updates, none, ~none), updates)  # group absent this round



def check_traces_with_an_unknown_number_of_rows(attack):
    spec = [tf.TensorSpec([None, D], tf.float32), tf.TensorSpec([None], tf.bool), tf.TensorSpec([None], tf.bool)]
    ctx = context(10)  # attacks read only facts and seed from it

    @tf.function(input_signature=spec)
    def poison(updates, own, benign):
        assert updates.shape[0] is None
        return attack.poison_updates(updates, own, benign, ctx)

    for k, own_rows in ((10, (3, 7)), (7, (0, 1, 6))):
        updates, own, benign = matrix(seed=13, k=k, own=own_rows)
        graph = np.asarray(poison(tf.constant(updates), tf.constant(own), tf.constant(benign)))
        np.testing.assert_allclose(graph, attack_rows(attack, updates, own, benign, ctx), rtol=1e-5, atol=1e-5)
    assert poison.experimental_get_tracing_count() == 1  # one graph for every K



def check_registers(module, name, cls):
    """The module registers exactly ``name`` -> ``cls``, an attrs Attack."""
    added = {}

    class Recorder:
        def add(self, name, cls):
            added[name] = cls

    module.fedarena_register_attacks(registry=Recorder())
    assert added == {name: cls}
    assert attrs.has(cls) and issubclass(cls, Attack)
