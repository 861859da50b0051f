"""Shared pieces of the benchmarks: scenarios, the hand-written baselines,
timing statistics and the result line every benchmark prints.

Everything here is imported lazily by the benchmark modules, each of which
runs in its own Python process (see ``run_all.py``), so that TensorFlow's
thread pools, the TFF worker and the peak memory of one benchmark never
leak into another.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

# B1's workload (the issue's): 20 clients x 600 samples of 784 features,
# MLP 784-200-10, batch 32, one local epoch, SGD, FedAvg.
FEATURES, CLASSES, HIDDEN = 784, 10, 200
SAMPLES_PER_CLIENT, BATCH, LEARNING_RATE = 600, 32, 0.05
TEST_FRACTION = 0.2


def scenario_text(
    *, clients: int = 20, per_round: int | None = None, hidden: int = HIDDEN, samples_per_client: int = SAMPLES_PER_CLIENT,
    features: int = FEATURES, rounds: int = 1000, extra: str = "", aggregator: str = "fedavg", seed: int = 1,
) -> str:
    """A synthetic-data scenario with exactly ``samples_per_client`` training
    samples per client (IID split of ``clients * samples_per_client``).

    Evaluation runs only at the last round (``evaluate every rounds``), so the
    rounds the benchmarks time do no evaluation, as the hand-written
    baselines do none."""
    train = clients * samples_per_client
    total = int(round(train / (1 - TEST_FRACTION)))
    return f"""\
scenario "benchmark" {{
  seed {seed}
  rounds {rounds}
  dataset synthetic(samples = {total}, features = {features}, classes = {CLASSES}, test_fraction = {TEST_FRACTION})
  split iid over {clients} clients
  model mlp(hidden = [{hidden}])
  training {{
    clients_per_round {per_round or clients}
    local_epochs 1
    batch_size {BATCH}
    optimizer sgd(learning_rate = {LEARNING_RATE})
  }}
{extra}  aggregator {aggregator}
  evaluate every {rounds} rounds
  output "/dev/null"
}}
"""


def make_scenario(text: str):
    from fedarena.core.scenario.sweep import check
    from fedarena.core.language.parser import parse
    from fedarena.core.plugin.registry import default_registry

    return check(parse(text, "benchmark.fls"), default_registry())


def client_data(run):
    """Every client's (features, labels) as eager tensors, read through the
    engine's own client store: exactly what the framework's clients train on."""
    import tensorflow as tf

    store, shape = run.clients, run.model.input_shape
    return [store.read(tf.constant(c, tf.int32), shape) for c in range(run.scenario.num_clients)]


# --------------------------------------------------------------------------
# Baselines.
# --------------------------------------------------------------------------

class PlainTF:
    """The hand-written plain TensorFlow round: one ``tf.function`` call per
    client that runs the whole local epoch (shuffle, every mini-batch step of
    SGD) on the client's data held in memory as tensors; FedAvg in NumPy.

    The shuffle is the engine's (argsort of a stateless uniform draw from the
    client's round seed, the epoch folded in as the engine does it, found by
    comparing one client's update at start), so a round here computes the
    same numbers as the framework's round; `paired_rounds` reports the
    largest difference seen.
    """

    def __init__(self, run, learning_rate: float = LEARNING_RATE, batch: int = BATCH):
        import numpy as np
        import tensorflow as tf

        self.run = run
        self.model = run.model
        data = client_data(run)
        self.x, self.y = [x for x, _ in data], [y for _, y in data]
        self.n = np.array([int(y.shape[0]) for y in self.y], np.float32)
        shapes, sizes = self.model.shapes, self.model.sizes
        dim = self.model.dim

        def make_local_epoch(epoch_dtype):
            @tf.function(input_signature=[
                tf.TensorSpec([dim], tf.float32), tf.TensorSpec([None, *self.model.input_shape], tf.float32),
                tf.TensorSpec([None], tf.int32), tf.TensorSpec([2], tf.int64),
            ])
            def local_epoch(flat, cx, cy, seed):
                weights = [tf.reshape(p, s) for p, s in zip(tf.split(flat, sizes), shapes)]
                n = tf.shape(cy)[0]
                key = tf.random.experimental.stateless_fold_in(seed, tf.constant(0, epoch_dtype))
                order = tf.argsort(tf.random.stateless_uniform([n], key))
                steps = (n + batch - 1) // batch
                for i in tf.range(steps):
                    index = order[i * batch : (i + 1) * batch]
                    bx, by = tf.gather(cx, index), tf.gather(cy, index)
                    with tf.GradientTape() as tape:
                        tape.watch(weights)
                        h = tf.reshape(bx, [tf.shape(bx)[0], -1])
                        for layer in range(0, len(weights) - 2, 2):
                            h = tf.nn.relu(tf.matmul(h, weights[layer]) + weights[layer + 1])
                        logits = tf.matmul(h, weights[-2]) + weights[-1]
                        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(by, logits))
                    grads = tape.gradient(loss, weights)
                    weights = [w - learning_rate * g for w, g in zip(weights, grads)]
                return tf.concat([tf.reshape(w, [-1]) for w in weights], 0) - flat

            return local_epoch

        # The engine folds the epoch into the client's seed as an int32 or an
        # int64 (two different random streams); use whichever reproduces its
        # client update, so that both sides train on the same batches.
        self.local_epoch, self.epoch_dtype = make_local_epoch(tf.int32), tf.int32
        self.shuffle_matches = False
        try:
            ids, _, inputs = run.client_inputs(1)
            engine = np.asarray(run.computations.client_train(run.model.initial, inputs[0])["delta"])
            for dtype in (tf.int32, tf.int64):
                candidate = make_local_epoch(dtype)
                ours = candidate(run.model.initial, self.x[ids[0]], self.y[ids[0]], inputs[0]["seed"]).numpy()
                if np.abs(ours - engine).max() < 1e-5:
                    self.local_epoch, self.epoch_dtype, self.shuffle_matches = candidate, dtype, True
                    break
        except Exception:  # no TFF context, or an engine without ``client_train``: keep the int32 stream
            pass

    def round(self, weights, round_number: int):
        """One FedAvg round from ``weights`` over the clients the framework
        samples in that round; returns the new weights."""
        import numpy as np

        ids, _, inputs = self.run.client_inputs(round_number)
        deltas = np.stack([
            self.local_epoch(weights, self.x[c], self.y[c], inp["seed"]).numpy() for c, inp in zip(ids, inputs)
        ])
        n = self.n[ids]
        return weights + (n[:, None] * deltas).sum(axis=0) / n.sum()


class NaiveTFF:
    """The same client work written as a TFF user would first write it:
    ``tff.federated_map`` over a ``tff.tensorflow.computation`` that trains
    on a client dataset passed from Python every round (a tf.data sequence
    of shuffled mini-batches), then ``tff.federated_mean`` weighted by the
    example counts, and the server step."""

    def __init__(self, run, learning_rate: float = LEARNING_RATE, batch: int = BATCH):
        import numpy as np
        import tensorflow as tf
        import tensorflow_federated as tff

        self.run, self.batch = run, batch
        data = client_data(run)
        self.x, self.y = [x.numpy().reshape(len(x), -1) for x, _ in data], [y.numpy() for _, y in data]
        model = run.model
        shapes, sizes, dim = model.shapes, model.sizes, model.dim
        features = int(np.prod(model.input_shape))
        weights_type = tff.TensorType(np.float32, [dim])
        data_type = tff.SequenceType(tff.StructType([
            ("x", tff.TensorType(np.float32, [None, features])), ("y", tff.TensorType(np.int32, [None])),
        ]))

        @tff.tensorflow.computation(weights_type, data_type)
        def client_train(flat, dataset):
            start = tuple(tf.reshape(p, s) for p, s in zip(tf.split(flat, sizes), shapes))

            def step(state, batch_):
                weights, count = state
                with tf.GradientTape() as tape:
                    tape.watch(weights)
                    h = batch_["x"]
                    for layer in range(0, len(weights) - 2, 2):
                        h = tf.nn.relu(tf.matmul(h, weights[layer]) + weights[layer + 1])
                    logits = tf.matmul(h, weights[-2]) + weights[-1]
                    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch_["y"], logits))
                grads = tape.gradient(loss, weights)
                taken = tf.cast(tf.shape(batch_["y"])[0], tf.float32)
                return tuple(w - learning_rate * g for w, g in zip(weights, grads)), count + taken

            final, count = dataset.reduce((start, 0.0), step)
            return tf.concat([tf.reshape(w, [-1]) for w in final], 0) - flat, count

        @tff.tensorflow.computation(weights_type, weights_type)
        def server_step(flat, mean_delta):
            return flat + mean_delta

        @tff.federated_computation(tff.FederatedType(weights_type, tff.SERVER), tff.FederatedType(data_type, tff.CLIENTS))
        def run_round(flat, datasets):
            delta, count = tff.federated_map(client_train, (tff.federated_broadcast(flat), datasets))
            return tff.federated_map(server_step, (flat, tff.federated_mean(delta, weight=count)))

        self.run_round = run_round

    def round(self, weights, round_number: int):
        import numpy as np
        import tensorflow as tf

        ids, _, _ = self.run.client_inputs(round_number)
        rng = np.random.default_rng([7, round_number])
        datasets = []
        for c in ids:
            order = rng.permutation(len(self.y[c]))
            datasets.append(tf.data.Dataset.from_tensor_slices({"x": self.x[c][order], "y": self.y[c][order]})
                            .batch(self.batch))
        return np.asarray(self.run_round(weights, datasets))


# --------------------------------------------------------------------------
# Measuring and reporting.
# --------------------------------------------------------------------------

def timed(function, *args):
    started = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - started, value


def summary(values) -> dict:
    values = sorted(float(v) for v in values)
    return dict(median=statistics.median(values), min=values[0], max=values[-1], n=len(values))


def result(name: str, what: str, ratios, target: float | None, unit: str = "", lower_bound: bool = False,
           **details) -> dict:
    """A benchmark's result: the ratio's statistics, the target, whether the
    median meets it, and any details (absolute times, notes).  With
    ``lower_bound`` the values are only known to be at least these."""
    stats = summary(ratios)
    met = None if target is None else stats["median"] <= target
    return dict(name=name, what=what, target=target, met=met, unit=unit, lower_bound=lower_bound, **stats,
                details=details)


def line(r: dict) -> str:
    target = "" if r["target"] is None else f"  target <= {r['target']:g}"
    verdict = {True: "  MET", False: "  NOT MET", None: ""}[r["met"]]
    at_least = ">= " if r.get("lower_bound") else ""
    return (f"{r['name']:<4}{r['what']:<36} median {at_least}{r['median']:.3g}{r['unit']}  "
            f"(min {r['min']:.3g}, max {r['max']:.3g}, n={r['n']}){target}{verdict}")


def emit(results: list[dict]) -> None:
    """Print the result lines, and the results as JSON on a marked last line
    for ``run_all.py``."""
    for r in results:
        print(line(r), flush=True)
        if r["details"].get("note"):
            print(f"      {r['details']['note']}", flush=True)
    print("RESULTS-JSON " + json.dumps(results), flush=True)


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM), MiB."""
    for entry in Path("/proc/self/status").read_text().splitlines():
        if entry.startswith("VmHWM:"):
            return int(entry.split()[1]) / 1024
    return float("nan")


def quick_flag() -> bool:
    return "--quick" in sys.argv


def paired_rounds(run, baseline, repeats: int, warmup: int = 2):
    """Time framework rounds (``run.rounds()``) and ``baseline(weights,
    round_number)`` rounds in pairs, from the same weights and over the same
    sampled clients, alternating which goes first so that load from other
    processes falls on both alike.  Returns (framework seconds, baseline
    seconds, RoundResults of the timed rounds, largest weight difference
    between framework and baseline seen in the timed rounds)."""
    import numpy as np

    rounds = run.rounds()
    weights = run.model.initial
    for _ in range(warmup):  # the first calls trace and compile on both sides
        result = next(rounds)
        baseline(weights, result.round)
        weights = result.weights
    framework_s, baseline_s, results, diff = [], [], [], 0.0
    for i in range(repeats):
        if i % 2 == 0:
            t_fw, result = timed(next, rounds)
            t_base, theirs = timed(baseline, weights, result.round)
        else:
            # The framework's next round number is known ahead: it counts up.
            t_base, theirs = timed(baseline, weights, warmup + i + 1)
            t_fw, result = timed(next, rounds)
        framework_s.append(t_fw)
        baseline_s.append(t_base)
        results.append(result)
        diff = max(diff, float(np.abs(np.asarray(theirs) - result.weights).max()))
        weights = result.weights
    return framework_s, baseline_s, results, diff


def stage_medians(results) -> dict:
    """Median seconds per stage (`RoundResult.seconds`) over rounds."""
    return {stage: statistics.median(r.seconds[stage] for r in results) for stage in results[0].seconds}


def fmt_seconds(values) -> str:
    s = summary(values)
    return f"{s['median']:.3f} s (min {s['min']:.3f}, max {s['max']:.3f})"
