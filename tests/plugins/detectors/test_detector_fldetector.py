"""FLDetector: its L-BFGS Hessian-vector product against recursive BFGS
and the Hessian of a quadratic, the gap statistic and 2-means in 1-D
against brute force, and the detector over several rounds of hand-made
client updates (clients that contradict their own history are dropped,
honest ones are not), with partial participation, ``layers``, rows dropped
earlier, and its state through an engine checkpoint."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.plugin.interfaces import Facts, Layer, ServerContext
from fedarena.core.execution.engine.run import detect_on_kept
from fedarena.plugins.detectors import fldetector as D

from conftest import tiny_scenario


# --------------------------------------------------------------------------
# L-BFGS
# --------------------------------------------------------------------------


def spd(rng, d):
    q = rng.normal(size=(d, d))
    return q @ q.T / d + 0.5 * np.eye(d)


def recursive_bfgs(s, y):
    """The BFGS matrix after updating B_0 = sigma I with each pair in turn
    (sigma from the newest pair), written out."""
    sigma = y[-1] @ s[-1] / (s[-1] @ s[-1])
    b = sigma * np.eye(s.shape[1])
    for sj, yj in zip(s, y):
        bs = b @ sj
        b = b - np.outer(bs, bs) / (sj @ bs) + np.outer(yj, yj) / (yj @ sj)
    return b


def hvp(s, y, v):
    return D.lbfgs_hvp(tf.constant(s, tf.float32), tf.constant(y, tf.float32), tf.constant(v, tf.float32)).numpy()


def conjugate_gradient_steps(a, start, target, steps):
    """The steps w_{k+1} - w_k of conjugate gradient minimising
    0.5 (w - target)^T A (w - target): A-conjugate, as exact line search
    on a quadratic gives them."""
    w = start.copy()
    r = -(a @ (w - target))
    p = r.copy()
    out = []
    for _ in range(steps):
        alpha = (r @ r) / (p @ a @ p)
        out.append(alpha * p)
        w = w + alpha * p
        new_r = r - alpha * (a @ p)
        p = new_r + (new_r @ new_r) / (r @ r) * p
        r = new_r
    return np.array(out)


@pytest.mark.parametrize("pairs", [1, 3, 6])
def test_lbfgs_product_is_the_recursive_bfgs_matrix_and_meets_the_newest_secant_equation(pairs):
    rng = np.random.default_rng(pairs)
    d = 8
    a = spd(rng, d)
    s = rng.normal(size=(pairs, d))
    y = s @ a  # y_j = A s_j (A symmetric)
    v = rng.normal(size=d)
    np.testing.assert_allclose(hvp(s, y, v), recursive_bfgs(s, y) @ v, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(hvp(s, y, s[-1]), y[-1], rtol=1e-4, atol=1e-4)


def test_lbfgs_gives_the_exact_hessian_vector_product_on_the_span_of_a_quadratic_trajectory():
    rng = np.random.default_rng(1)
    d, m = 10, 4
    a = spd(rng, d)
    s = conjugate_gradient_steps(a, rng.normal(size=d), rng.normal(size=d), m)
    y = s @ a  # the gradient differences of the quadratic between the iterates
    for _ in range(3):
        v = rng.normal(size=m) @ s
        np.testing.assert_allclose(hvp(s, y, v), a @ v, rtol=1e-3, atol=1e-4)
    # Model deltas are minus gradients: the product is minus A v.
    v = rng.normal(size=m) @ s
    np.testing.assert_allclose(hvp(s, -y, v), -(a @ v), rtol=1e-3, atol=1e-4)
    # Steps that span the space: B is A itself.
    s = conjugate_gradient_steps(a, rng.normal(size=d), rng.normal(size=d), d)
    v = rng.normal(size=d)
    np.testing.assert_allclose(hvp(s, s @ a, v), a @ v, rtol=1e-3, atol=1e-3)


def test_lbfgs_survives_parallel_steps():
    s = np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]])
    out = hvp(s, 3 * s, np.array([1.0, 2.0, 0.0]))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [3.0, 6.0, 0.0], rtol=1e-4)


# --------------------------------------------------------------------------
# Gap statistic and 2-means in 1-D
# --------------------------------------------------------------------------


def brute_force_costs(x):
    x = np.sort(x)
    w1 = ((x - x.mean()) ** 2).sum()
    w2 = min(((x[:k] - x[:k].mean()) ** 2).sum() + ((x[k:] - x[k:].mean()) ** 2).sum() for k in range(1, len(x)))
    return w1, w2


def test_within_cluster_sums_are_the_exact_one_and_two_means_costs():
    rng = np.random.default_rng(0)
    batch = np.concatenate([rng.normal(size=(3, 9)), np.r_[rng.normal(0, 0.1, 6), rng.normal(5, 0.1, 3)][None]])
    w1, w2 = D.within_cluster_sums(tf.constant(batch, tf.float64))
    for row, a, b in zip(batch, w1.numpy(), w2.numpy()):
        np.testing.assert_allclose((a, b), brute_force_costs(row), rtol=1e-9)


_gap = tf.function(lambda x, seed, b: D.gap_finds_clusters(x, seed, b), reduce_retracing=True)


def numpy_gap(scores, seed, references):
    """The gap statistic written out (Tibshirani et al. 2001), with the same reference draws."""
    scaled = (scores - scores.min()) / (scores.max() - scores.min())
    reference = tf.random.stateless_uniform([references, len(scores)], seed, dtype=tf.float64).numpy()
    costs = np.array([brute_force_costs(r) for r in reference])
    w1, w2 = brute_force_costs(scaled)
    gap1 = np.log(costs[:, 0]).mean() - np.log(w1)
    gap2 = np.log(costs[:, 1]).mean() - np.log(w2)
    return gap1 < gap2 - np.sqrt(1 + 1 / references) * np.log(costs[:, 1]).std()


def test_gap_statistic_finds_no_attacker_in_one_tight_cluster_and_attackers_in_two():
    rng = np.random.default_rng(3)
    for trial in range(5):
        seed = tf.constant([trial, 11], tf.int64)
        one = rng.normal(1.0, 0.05, size=20)
        two = np.r_[rng.normal(1.0, 0.05, size=15), rng.normal(3.0, 0.05, size=5)]
        assert not _gap(tf.constant(one), seed, 10), trial
        assert _gap(tf.constant(two), seed, 10), trial
        assert numpy_gap(one, seed, 10) == bool(_gap(tf.constant(one), seed, 10))
        assert numpy_gap(two, seed, 10) == bool(_gap(tf.constant(two), seed, 10))
        wide = rng.uniform(0, 1, size=20)
        assert numpy_gap(wide, seed, 10) == bool(_gap(tf.constant(wide), seed, 10))
    # Too few scores, or all equal: nothing to split.
    seed = tf.constant([0, 0], tf.int64)
    assert not _gap(tf.constant([1.0, 5.0]), seed, 10)
    assert not _gap(tf.constant([2.0] * 6), seed, 10)
    assert not _gap(tf.zeros([0]), seed, 10)
    # Two exact values: W_2 is 0, an infinite gap.
    assert _gap(tf.constant([1.0] * 5 + [2.0] * 3), seed, 10)


def test_the_upper_cluster_is_the_higher_part_of_the_exact_two_means_split():
    rng = np.random.default_rng(4)
    for _ in range(20):
        x = rng.exponential(size=int(rng.integers(2, 12)))
        ordered = np.sort(x)
        costs = [((ordered[:k] - ordered[:k].mean()) ** 2).sum() + ((ordered[k:] - ordered[k:].mean()) ** 2).sum()
                 for k in range(1, len(x))]
        cut = int(np.argmin(costs)) + 1
        assert D.upper_cluster(tf.constant(x)).numpy().tolist() == (x >= ordered[cut]).tolist()
    flags = D.fldetector_flags(tf.constant([1.0, 1.1, 0.9, 1.0, 4.0, 4.2]), tf.constant([1, 2], tf.int64), 10)
    assert flags.numpy().tolist() == [False] * 4 + [True] * 2


# --------------------------------------------------------------------------
# The detector, round after round
# --------------------------------------------------------------------------

_traced = {}


def stepper(detector, dim, facts, layers):
    """The detector's round as the engine runs it: traced, K unknown, only
    the kept rows reaching the detector (`detect_on_kept`)."""
    key = (detector, dim, facts, layers)
    if key not in _traced:
        initial = detector.initial_state(dim, facts)
        spec = {k: tf.TensorSpec(v.shape, tf.as_dtype(v.dtype)) for k, v in initial.items()}

        @tf.function(input_signature=[
            tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.bool), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([dim], tf.float32), tf.TensorSpec([], tf.int32), spec,
        ])
        def step(updates, keep, ids, weights, round_number, state):
            ctx = ServerContext(
                facts=facts, layers=layers, client_ids=ids, num_examples=tf.ones_like(updates[:, 0]),
                global_weights=weights, round=round_number,
                seed=tf.stack([tf.constant(5, tf.int64), tf.cast(round_number, tf.int64)]),
            )
            out = detect_on_kept(detector, updates, keep, ctx, dict(state))
            assert out[0].shape.as_list() == [None, dim]
            assert out[1].shape.as_list() == [None] and out[2].shape.as_list() == [None]
            for name, value in out[3].items():
                assert value.shape.as_list() == list(initial[name].shape), name
                assert value.dtype == tf.as_dtype(initial[name].dtype), name
            return out

        _traced[key] = (step, initial)
    return _traced[key]


class Quadratic:
    """FedSGD on quadratic client losses f_i(w) = 0.5 (w - c_i)^T A_i (w - c_i):
    each client sends u_i = -grad f_i(w) plus fresh noise; the server steps
    w += lr * mean of the kept updates.  Attackers (``bad``) send a random
    vector of the benign scale instead: nothing like their own last update."""

    def __init__(self, seed=0, clients=16, dim=12, bad=(), lr=0.3, noise=0.05, spread=0.0, layers=None):
        rng = np.random.default_rng(seed)
        self.rng, self.clients, self.dim, self.bad, self.lr, self.noise = rng, clients, dim, set(bad), lr, noise
        a = spd(rng, dim)
        self.a = [a + spread * np.diag(rng.uniform(0, 1, dim)) for _ in range(clients)]
        self.centres = rng.normal(size=(clients, dim))
        self.weights = 3 * rng.normal(size=dim)
        self.layers = layers or (Layer("dense/kernel:0", (dim,), 0),)
        self.facts = Facts(num_clients=clients, clients_per_round=clients, num_classes=2, input_shape=(dim,),
                           server_learning_rate=lr)

    def updates(self, ids, bad_columns=None):
        rows = np.stack([-(self.a[i] @ (self.weights - self.centres[i])) for i in ids])
        rows += self.noise * np.linalg.norm(rows, axis=1).mean() * self.rng.normal(size=rows.shape) / np.sqrt(self.dim)
        scale = np.linalg.norm(rows, axis=1).mean() / np.sqrt(self.dim)
        columns = slice(None) if bad_columns is None else bad_columns
        for row, i in enumerate(ids):
            if i in self.bad:
                rows[row, columns] = scale * self.rng.normal(size=rows[row, columns].shape)
        return rows.astype(np.float32)

    def run(self, detector, rounds, ids_of=None, bad_columns=None):
        """(kept, score, state) of each round, as lists over rounds (rows in the order of that round's ids)."""
        step, state = stepper(detector, self.dim, self.facts, self.layers)
        history = []
        for r in range(1, rounds + 1):
            ids = np.arange(self.clients) if ids_of is None else np.asarray(ids_of(r))
            updates = self.updates(ids, bad_columns)
            _, score, kept, state = step(updates, np.ones(len(ids), bool), ids.astype(np.int32),
                                         self.weights.astype(np.float32), np.int32(r), state)
            kept, score = kept.numpy(), score.numpy()
            state = {k: v.numpy() for k, v in state.items()}
            history.append((ids, kept, score, state))
            self.weights = self.weights + self.lr * updates[kept].mean(axis=0)
        return history


def test_clients_inconsistent_with_their_history_are_dropped_once_the_window_is_full():
    window = 4
    history = Quadratic(bad=(2, 7, 11)).run(D.FLDetector(window=window), rounds=14)
    for r, (ids, kept, score, state) in enumerate(history, start=1):
        bad = np.isin(ids, [2, 7, 11])
        if r <= window + 1:  # distances start in round 3; N of them are needed
            assert kept.all(), r
        else:
            assert kept.tolist() == (~bad).tolist(), r
        if r <= 2:
            assert (score == 0).all() and int(state["pairs"]) == 0
        else:
            assert score[bad].min() > 2 * score[~bad].max(), r
        assert int(state["pairs"]) == min(max(r - 2, 0), window)
        assert int(state["recorded"]) == min(max(r - 2, 0), window)
        assert int(state["rounds"]) == r
    np.testing.assert_array_equal(history[-1][3]["previous_round"], 14)


def test_honest_clients_are_rarely_dropped():
    # The gap statistic errs now and then on honest scores (a few percent
    # of the deciding rounds): count over several runs.
    deciding = dropping = 0
    for seed in range(4):
        history = Quadratic(seed=seed, clients=20).run(D.FLDetector(window=4), rounds=14)
        assert all(kept.all() for _, kept, _, _ in history[:5])
        deciding += len(history) - 5
        dropping += sum(not kept.all() for _, kept, _, _ in history[5:])
        scores = history[-1][2]
        np.testing.assert_allclose(scores.mean(), 1.0, rtol=0.05)  # normalised by the mean distance
    assert dropping <= 0.1 * deciding


def test_the_prediction_is_the_previous_update_plus_the_lbfgs_product():
    sim = Quadratic(seed=5, clients=5, dim=6, noise=0.0)
    detector = D.FLDetector(window=3)
    history = sim.run(detector, rounds=4)
    before, after = history[2][3], history[3][3]  # state after rounds 3 and 4
    pairs = int(after["pairs"])
    s, y = after["weight_diffs"][3 - pairs:], after["update_diffs"][3 - pairs:]
    np.testing.assert_allclose(after["weights"] - before["weights"], after["step"], atol=1e-6)
    np.testing.assert_allclose(after["global_update"], after["step"] / sim.lr, rtol=1e-5, atol=1e-6)
    predicted = before["previous"] + hvp(s, y, after["step"])[None, :]
    distance = np.linalg.norm(predicted - after["previous"], axis=1)
    np.testing.assert_allclose(after["distances"][-1], distance / distance.mean(), rtol=2e-3, atol=1e-5)
    # Noise-free quadratic updates (A_i = A): the pairs give B = -A on the steps' span.
    np.testing.assert_allclose(y, -s @ sim.a[0], rtol=1e-3, atol=1e-4)


def test_partial_participation_predicts_only_clients_seen_in_the_previous_round():
    rounds = {1: [0, 1, 2, 3, 4, 5], 2: [0, 1, 2, 3, 4, 5], 3: [0, 1, 2, 6, 7, 8], 4: [0, 6, 9, 10, 11, 12]}
    sim = Quadratic(seed=3, clients=13)
    history = sim.run(D.FLDetector(window=5), rounds=4, ids_of=rounds.get)
    _, kept3, score3, state3 = history[2]
    assert kept3.all()
    assert (score3[:3] > 0).all() and (score3[3:] == 0).all()  # 6, 7, 8 were not in round 2
    assert np.isfinite(state3["distances"][-1][[0, 1, 2]]).all()
    assert np.isnan(np.delete(state3["distances"][-1], [0, 1, 2])).all()
    _, kept4, score4, state4 = history[3]
    # Client 0 has two distances, 6 has one (from round 4), 9-12 none.
    assert score4[0] > 0 and score4[1] > 0 and (score4[2:] == 0).all()
    np.testing.assert_allclose(score4[0], np.nanmean(state4["distances"][:, 0]), rtol=1e-6)
    assert np.isfinite(state4["distances"][-1][[0, 6]]).all()
    assert state4["previous_round"][[0, 6, 9, 12]].tolist() == [4] * 4
    assert state4["previous_round"][[3, 4, 5]].tolist() == [2] * 3


def test_partial_participation_still_finds_attackers_once_they_have_scores():
    # 16 of 20 clients a round: most attackers' rows carry a score, and the
    # gap statistic sees them apart; honest clients are never dropped.
    scored_bad = dropped_bad = 0
    for seed in (0, 1):
        sim = Quadratic(seed=seed, clients=20, bad=(1, 4, 8, 15))
        rng = np.random.default_rng(seed)
        history = sim.run(D.FLDetector(window=4), rounds=16, ids_of=lambda r: np.sort(rng.permutation(20)[:16]))
        for ids, kept, score, state in history[5:]:
            bad = np.isin(ids, [1, 4, 8, 15])
            assert kept[~bad].all() and kept[score == 0].all()
            scored_bad += (bad & (score > 0)).sum()
            dropped_bad += (bad & ~kept).sum()
    assert dropped_bad >= 0.75 * scored_bad


def test_layers_restrict_the_detector_to_their_columns():
    layers = (Layer("first/kernel:0", (6,), 0), Layer("second/kernel:0", (6,), 6))

    def drops(names):
        sim = Quadratic(seed=7, clients=12, bad=(3, 9), layers=layers)
        history = sim.run(D.FLDetector(window=3, layers=names), rounds=8, bad_columns=slice(6, 12))
        return sorted({int(i) for ids, kept, _, _ in history for i in ids[~kept]})

    assert drops(()) == [3, 9]
    assert drops(("second",)) == [3, 9]
    assert drops(("first",)) == []  # the attackers' first layer is honest
    with pytest.raises(ValueError, match="match no layer"):
        drops(("third",))


def test_rows_dropped_earlier_take_no_part_and_leave_no_history():
    sim = Quadratic(seed=8, clients=10)
    detector = D.FLDetector(window=2)
    step, state = stepper(detector, sim.dim, sim.facts, sim.layers)
    ids = np.arange(8, dtype=np.int32)
    for r in (1, 2, 3, 4):
        updates = sim.updates(ids)
        junk = 1e3 * np.ones_like(updates[:2])
        mixed = np.concatenate([junk[:1], updates, junk[1:]])
        keep = np.r_[False, np.ones(8, bool), False]
        args = (sim.weights.astype(np.float32), np.int32(r))
        _, score, kept, new = step(mixed, keep, np.r_[8, ids, 9].astype(np.int32), *args, state)
        _, base_score, base_kept, base = step(updates, np.ones(8, bool), ids, *args, state)
        kept, score = kept.numpy(), score.numpy()
        assert not kept[[0, 9]].any() and np.isnan(score[[0, 9]]).all()
        assert kept[1:9].tolist() == base_kept.numpy().tolist()
        np.testing.assert_allclose(score[1:9], base_score.numpy(), rtol=1e-5)
        for name in base:
            np.testing.assert_allclose(new[name].numpy(), base[name].numpy(), rtol=1e-6, err_msg=name)
        state = new
        sim.weights = sim.weights + sim.lr * updates.mean(axis=0)
    assert state["previous_round"].numpy().tolist() == [4] * 8 + [-1, -1]
    assert (state["previous"].numpy()[8:] == 0).all()
    assert np.isnan(state["distances"].numpy()[:, 8:]).all()


def test_empty_all_dropped_and_single_row_rounds():
    sim = Quadratic(seed=9, clients=6)
    step, state = stepper(D.FLDetector(window=2), sim.dim, sim.facts, sim.layers)
    w = sim.weights.astype(np.float32)
    out, score, kept, _ = step(np.zeros([0, sim.dim], np.float32), np.zeros(0, bool), np.zeros(0, np.int32), w,
                               np.int32(1), state)
    assert out.shape == (0, sim.dim) and score.shape == (0,) and kept.shape == (0,)
    rows = sim.updates(np.arange(4))
    _, score, kept, _ = step(rows, np.zeros(4, bool), np.arange(4, dtype=np.int32), w, np.int32(1), state)
    assert not kept.numpy().any() and np.isnan(score.numpy()).all()
    _, score, kept, _ = step(rows[:1], np.ones(1, bool), np.zeros(1, np.int32), w, np.int32(1), state)
    assert kept.numpy().tolist() == [True] and np.isfinite(score.numpy()).all()
    # A round where the model did not move gives no curvature pair.
    for r in (1, 2, 3):
        _, _, _, state = step(rows, np.ones(4, bool), np.arange(4, dtype=np.int32), w, np.int32(r), state)
    assert int(state["pairs"]) == 0 and int(state["recorded"]) == 0


def test_check_and_parameters():
    facts = Facts(num_clients=10, clients_per_round=2, num_classes=2, input_shape=(3,))
    assert "at least 3 clients per round" in D.FLDetector().check(facts)[0]
    assert D.FLDetector().check(Facts(num_clients=10, clients_per_round=3, num_classes=2, input_shape=(3,))) == []
    assert D.FLDetector().window == 10 and D.FLDetector().references == 10
    with pytest.raises(ValueError, match="window"):
        D.FLDetector(window=0)
    with pytest.raises(ValueError, match="references"):
        D.FLDetector(references=1)
    state = D.FLDetector(window=3).initial_state(7, facts)
    assert state["previous"].shape == (10, 7) and state["distances"].shape == (3, 10)
    assert np.isnan(state["distances"]).all() and (state["previous_round"] == -1).all()


# --------------------------------------------------------------------------
# In the engine: the state survives a checkpoint
# --------------------------------------------------------------------------


def test_the_state_survives_a_checkpoint_round_trip(tff_context, tmp_path):
    import h5py

    from fedarena.core.scenario.sweep import check
    from fedarena.core.execution.engine.run import Run
    from fedarena.core.language.parser import parse
    from fedarena.core.plugin.registry import default_registry
    from fedarena.core.results.writer import ResultsWriter

    text = (tiny_scenario(rounds=6).replace("clients_per_round 4", "clients_per_round 6")
            .replace("  aggregator fedavg", "  detector fldetector(window = 2)\n  aggregator fedavg"))

    def fresh():
        return Run(check(parse(text, "t.fls"), default_registry()))

    whole = list(fresh().rounds())
    state = whole[-1].state["detector_0"]
    assert int(state["rounds"]) == 6 and int(state["pairs"]) == 2 and int(state["recorded"]) == 2
    first = list(itertools.islice(fresh().rounds(), 3))
    # Through an HDF5 file, as the results writer keeps the checkpoint and --resume reads it back.
    with h5py.File(tmp_path / "checkpoint.h5", "w") as f:
        for key, arrays in first[-1].state.items():
            for name, value in arrays.items():
                ResultsWriter._replace(f, f"checkpoint/state/{key}/{name}", value)
    with h5py.File(tmp_path / "checkpoint.h5", "r") as f:
        saved = {key: {name: v[()] for name, v in group.items()} for key, group in f["checkpoint/state"].items()}
    resumed = list(fresh().rounds(weights=first[-1].weights, state=saved, first_round=4))
    np.testing.assert_array_equal(resumed[-1].weights, whole[-1].weights)
    for name, value in whole[-1].state["detector_0"].items():
        np.testing.assert_array_equal(resumed[-1].state["detector_0"][name], value, err_msg=name)
    for a, b in zip(resumed, whole[3:]):
        np.testing.assert_array_equal(a.clients["kept"], b.clients["kept"])
        np.testing.assert_array_equal(a.clients["detector_scores"], b.clients["detector_scores"])


def test_registration():
    from detector_harness import check_registers

    check_registers(D, "fldetector", D.FLDetector)
