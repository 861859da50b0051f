"""What-if diagnostics (``run_all.py --whatif``): measured candidates for
the engine changes that the targets not met call for.  Nothing here changes
the repository; each candidate runs beside the current code in the same
process (or fresh processes, for memory), on the same inputs.

D1  The client computation's batch loop as a ``tf.while_loop`` instead of
    ``tf.data.Dataset...reduce``: a copy of ``core/execution/engine/run.py`` with only that
    block replaced (skipped if the engine no longer has it), run on B1's
    workload and on B3's beside the current engine and the plain-TF loop.
D2  Gathering client updates at the server: the engine's concatenating
    ``federated_aggregate`` against each client writing its row to a file
    that the server stage reads back (and ``federated_mean`` as the floor);
    time and peak RSS of a fresh TFF worker each, 100 clients x 100,000
    float32 (client values made inside the worker).
D3  Krum and Multi-Krum with the rows centred on a row chosen by a first,
    uncentred Krum pass (on every column, or on 1/16 of them), against the
    plugin as it is and a NumPy Gram as in B7; the precision of the squared
    distances under each centring (the plugin's, the coordinate median, the
    Krum-chosen row, none) in two adversarial cases; and the floor of
    Bulyan's coordinate-wise step (NumPy's partition over axis 0).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import common

# The engine's batch loop: a tf.data pipeline of shuffled index batches,
# reduced with ``step`` (``shuffled(epoch)`` gives one epoch's order).
ENGINE_LOOP = re.compile(
    r"^(?P<indent> +)batches = tf\.data\.Dataset\.range\(epochs\).*?"
    r"final, _, loss_sum, count = batches\.reduce\(\(start, opt_state, 0\.0, 0\.0\), step\)\n",
    re.DOTALL | re.MULTILINE,
)
WHILE_LOOP = """\
steps = (n + batch_size - 1) // batch_size
orders = tf.stack([shuffled(tf.constant(e, tf.int64)) for e in range(epochs)])


def body(i, state):
    j = i % steps
    return i + 1, step(state, orders[i // steps][j * batch_size : (j + 1) * batch_size])

_, (final, _, loss_sum, count) = tf.while_loop(
    lambda i, state: i < epochs * steps, body, (tf.constant(0), (start, opt_state, 0.0, 0.0)))
"""


def with_while_loop(source: str) -> str | None:
    """The engine's source with its batch loop replaced, or None if it has none."""
    found = ENGINE_LOOP.search(source)
    if found is None:
        return None
    indent = found.group("indent")
    replacement = "".join(indent + row if row.strip() else row for row in WHILE_LOOP.splitlines(keepends=True))
    return source[: found.start()] + replacement + source[found.end() :]


def d1_client_loop(quick: bool) -> list[dict]:
    """D1 on B1's workload (FedAvg) and on B3's (ALIE + FLAME + Krum)."""
    import b3_defended_round as b3

    first = d1_one(quick, "D1", common.scenario_text(), "FedAvg")
    if len(first) == 1:  # not applicable: the engine no longer has the tf.data loop
        return first
    return first + d1_one(quick, "D1", common.scenario_text(extra=b3.EXTRA, aggregator="krum(f = 4)"), "B3 defended")


def d1_one(quick: bool, label: str, text: str, workload: str) -> list[dict]:
    import importlib.util

    import numpy as np

    from fedarena.core.execution.engine import run as engine
    from fedarena.core.execution.backends.worker import tff_workers

    source = with_while_loop(Path(engine.__file__).read_text())
    if source is None:
        return [common.result(label, "engine with while_loop/plain-TF", [float("nan")], None,
                              note="not applicable: the engine's client loop is no longer the tf.data reduce one "
                                   "(it became a tf.while_loop in commit f63426f)")]
    spec = importlib.util.spec_from_loader("fedarena.core._engine_whatif", loader=None)
    patched = importlib.util.module_from_spec(spec)
    exec(compile(source, "engine_whatif.py", "exec"), patched.__dict__)
    repeats = 4 if quick else 8
    with tff_workers():
        scenario = common.make_scenario(text)
        current, candidate = engine.Run(scenario), patched.Run(scenario)
        try:
            plain = common.PlainTF(current)
            ours, theirs = current.rounds(), candidate.rounds()
            weights = current.model.initial
            for _ in range(2):
                a, b = next(ours), next(theirs)
                plain.round(weights, a.round)
                weights = a.weights
            same = float(np.abs(a.weights - b.weights).max())
            t_cur, t_new, t_plain = [], [], []
            for _ in range(repeats):
                t, a = common.timed(next, ours)
                t_cur.append(t)
                t, b = common.timed(next, theirs)
                t_new.append(t)
                t_plain.append(common.timed(plain.round, weights, a.round)[0])
                same = max(same, float(np.abs(a.weights - b.weights).max()))
                weights = a.weights
        finally:
            current.close()
            candidate.close()
    return [
        common.result(label, f"{workload}: engine now/plain-TF", [c / p for c, p in zip(t_cur, t_plain)], None,
                      note=f"current {common.fmt_seconds(t_cur)}, plain {common.fmt_seconds(t_plain)}"),
        common.result(label, f"{workload}: while_loop/plain-TF", [c / p for c, p in zip(t_new, t_plain)], None,
                      note=f"with while_loop {common.fmt_seconds(t_new)}; its weights equal the current "
                           f"engine's to {same:.1e}"),
    ]


def d2_child(variant: str, clients: int, dim: int) -> None:
    """One gather variant in a fresh worker; prints times and the worker's VmHWM."""
    import tempfile

    import numpy as np
    import tensorflow as tf
    import tensorflow_federated as tff

    from fedarena.core.execution.backends.worker import tff_workers

    data_type = tff.StructType([("seed", tff.TensorType(np.int64, [2])), ("slot", tff.TensorType(np.int32))])
    directory = tempfile.mkdtemp(prefix="fedarena-whatif-")

    def delta(c):
        return tf.random.stateless_normal([dim], c.seed)

    if variant == "federated_mean":
        client = tff.tensorflow.computation(lambda c: delta(c), data_type)

        @tff.federated_computation(tff.FederatedType(data_type, tff.CLIENTS))
        def gather(data):
            return tff.federated_mean(tff.federated_map(client, data))
    elif variant == "concat":
        client = tff.tensorflow.computation(lambda c: delta(c), data_type)
        rows_type = tff.TensorType(np.float32, [None, dim])
        zero = tff.tensorflow.computation(lambda: tf.zeros([0, dim]))
        append = tff.tensorflow.computation(lambda a, r: tf.concat([a, r[None]], 0), rows_type, client.type_signature.result)
        merge = tff.tensorflow.computation(lambda a, b: tf.concat([a, b], 0), rows_type, rows_type)
        report = tff.tensorflow.computation(lambda a: tf.reduce_mean(a, 0), rows_type)

        @tff.federated_computation(tff.FederatedType(data_type, tff.CLIENTS))
        def gather(data):
            return tff.federated_aggregate(tff.federated_map(client, data), zero(), append, merge, report)
    else:  # files: each client writes its row; the server reads every row back after the (scalar) sum
        def path(slot):
            return tf.strings.join([directory, "/u", tf.strings.as_string(slot), ".raw"])

        @tff.tensorflow.computation(data_type)
        def client(c):
            with tf.control_dependencies([tf.io.write_file(path(c.slot), tf.io.serialize_tensor(delta(c)))]):
                return tf.ones([], tf.int32)

        @tff.tensorflow.computation(tff.TensorType(np.int32))
        def server(count):
            with tf.control_dependencies([count]):
                rows = tf.map_fn(lambda i: tf.io.parse_tensor(tf.io.read_file(path(i)), tf.float32), tf.range(clients),
                                 fn_output_signature=tf.TensorSpec([dim], tf.float32))
            return tf.reduce_mean(tf.ensure_shape(rows, [clients, dim]), 0)

        @tff.federated_computation(tff.FederatedType(data_type, tff.CLIENTS))
        def gather(data):
            return tff.federated_map(server, tff.federated_sum(tff.federated_map(client, data)))

    inputs = [dict(seed=np.array([1, i], np.int64), slot=np.int32(i)) for i in range(clients)]
    expected = np.mean([tf.random.stateless_normal([dim], [1, i]).numpy() for i in range(clients)], 0)
    with tff_workers() as pool:
        times = [common.timed(gather, inputs)[0] for _ in range(3)]
        error = float(np.abs(np.asarray(gather(inputs)) - expected).max())
        pid = next(iter(pool.processes.values())).pid
        hwm = next(int(e.split()[1]) / 1024 for e in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if e.startswith("VmHWM:"))
    print("D2-CHILD " + json.dumps(dict(times=times, worker_hwm_mib=hwm, error=error)), flush=True)


def d2_gather(quick: bool, clients: int = 100, dim: int = 100_000) -> list[dict]:
    out = []
    matrix_mib = clients * dim * 4 / 2**20
    for variant in ("federated_mean", "concat", "files"):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        done = subprocess.run([sys.executable, __file__, "--d2-child", variant, str(clients), str(dim)], env=env,
                              capture_output=True, text=True, timeout=600)
        found = [json.loads(e.removeprefix("D2-CHILD ")) for e in done.stdout.splitlines() if e.startswith("D2-CHILD ")]
        if not found:
            raise RuntimeError(f"D2 {variant} failed:\n{done.stderr[-3000:]}")
        r = found[0]
        out.append(common.result(
            "D2", f"gather by {variant}", r["times"][1:], None, unit=" s",
            note=f"first call {r['times'][0]:.2f} s; worker peak RSS {r['worker_hwm_mib']:.0f} MiB for a "
                 f"{matrix_mib:.0f} MiB update matrix ({clients} x {dim:,}); mean correct to {r['error']:.1e}"))
    return out


def d3_krum_centre(quick: bool) -> list[dict]:
    import numpy as np
    import tensorflow as tf

    from fedarena.plugins import _tensor
    from fedarena.plugins.aggregators.krum import Krum
    from fedarena.plugins.aggregators.multi_krum import MultiKrum

    k, d, f = 100, 1_000_000, 10
    x = np.random.default_rng(0).standard_normal((k, d), dtype=np.float32)
    rows = tf.constant(x)
    spec = [tf.TensorSpec([k, d], tf.float32)]

    def distances(gram):
        sq = tf.linalg.diag_part(gram)
        dist = tf.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
        return tf.linalg.set_diag(0.5 * (dist + tf.transpose(dist)), tf.zeros_like(sq))

    def centred_distances(r, f):
        """Squared distances of rows centred on the Krum winner of a first,
        uncentred pass (used only to choose a central row)."""
        rough = distances(tf.matmul(r, r, transpose_b=True))
        centred = r - r[tf.argmin(_tensor.krum_scores(rough, tf.ones([tf.shape(r)[0]], tf.bool), f))][None, :]
        return distances(tf.matmul(centred, centred, transpose_b=True))

    def centred_distances_sampled(r, f, share=16):
        """As `centred_distances`, with the first pass on 1/share of the
        columns (a contiguous block here; in the plugin a block drawn from the
        round's seed, so that an attacker cannot aim at it)."""
        block = r[:, : max(r.shape[1] // share, 1)]
        rough = distances(tf.matmul(block, block, transpose_b=True))
        centred = r - r[tf.argmin(_tensor.krum_scores(rough, tf.ones([tf.shape(r)[0]], tf.bool), f))][None, :]
        return distances(tf.matmul(centred, centred, transpose_b=True))

    def scores(r):
        return _tensor.krum_scores(centred_distances(r, f), tf.ones([tf.shape(r)[0]], tf.bool), f)

    def scores_sampled(r):
        return _tensor.krum_scores(centred_distances_sampled(r, f), tf.ones([tf.shape(r)[0]], tf.bool), f)

    @tf.function(input_signature=spec)
    def krum_sampled(r):
        return r[tf.argmin(scores_sampled(r), output_type=tf.int32)]

    @tf.function(input_signature=spec)
    def krum(r):
        return r[tf.argmin(scores(r), output_type=tf.int32)]

    @tf.function(input_signature=spec)
    def multi_krum(r):
        m = tf.shape(r)[0] - f
        best = tf.math.top_k(-scores(r), k=m).indices
        return tf.linalg.matvec(r, tf.scatter_nd(best[:, None], tf.ones([m]), [tf.shape(r)[0]]) / tf.cast(m, tf.float32),
                                transpose_a=True)

    current = {
        "krum": tf.function(lambda r: Krum(f=f).aggregate(r, tf.ones([k]), None)[0], input_signature=spec),
        "multi_krum": tf.function(lambda r: MultiKrum(f=f).aggregate(r, tf.ones([k]), None)[0], input_signature=spec),
    }
    candidate = {"krum": krum, "multi_krum": multi_krum}
    sampled = {"krum": krum_sampled}
    agree = {name: float(np.abs(current[name](rows).numpy() - candidate[name](rows).numpy()).max()) for name in current}
    agree_sampled = float(np.abs(current["krum"](rows).numpy() - krum_sampled(rows).numpy()).max())
    # Precision where centring matters: honest rows far from the origin
    # (offset 5 in every coordinate, spread 0.01).  Case "huge": one
    # attacker 1000x larger.  Case "zeros": a quarter of the rows are
    # attackers sending all-zero updates (the smallest norms).  Relative
    # error of the honest pairs' squared distances against float64.
    def centred_on(r, centre):
        c = r - centre[None, :]
        return distances(tf.matmul(c, c, transpose_b=True))

    centrings = {
        "plugin now": lambda r, f_: _tensor.pairwise_sq_distances(r),
        "coordinate median": lambda r, f_: centred_on(r, _tensor.coordinate_median(r)),
        "Krum-row centre": centred_distances,
        "Krum-row centre, 1/16 first pass": centred_distances_sampled,
        "none": lambda r, f_: distances(tf.matmul(r, r, transpose_b=True)),
    }
    rng = np.random.default_rng(1)
    honest = (rng.standard_normal((20, 100_000)) * 0.01 + 5.0).astype(np.float32)
    cases = {"huge": (honest.copy(), [0], 4), "zeros": (honest.copy(), list(range(5)), 5)}
    cases["huge"][0][0] *= 1000
    cases["zeros"][0][:5] = 0.0
    errors = {}
    for case, (matrix, attackers, f_case) in cases.items():
        keep = [i for i in range(len(matrix)) if i not in attackers]
        exact = ((matrix[:, None, :].astype(np.float64) - matrix[None, :, :]) ** 2).sum(-1)[np.ix_(keep, keep)]
        for name, centring in centrings.items():
            dist = np.asarray(centring(tf.constant(matrix), f_case))[np.ix_(keep, keep)]
            errors[case, name] = float(np.max(np.abs(dist - exact) / (exact + np.eye(len(keep)))))

    def against_gram(function):
        """Seconds of ``function()`` over the mean of a NumPy Gram timed just before and after."""
        before = common.timed(lambda: x @ x.T)[0]
        seconds = common.timed(function)[0]
        return seconds / ((before + common.timed(lambda: x @ x.T)[0]) / 2)

    x @ x.T
    out = []
    for name in current:
        ratios_now, ratios_new = [], []
        for _ in range(2 if quick else 3):
            ratios_now.append(against_gram(lambda: current[name](rows).numpy()))
            ratios_new.append(against_gram(lambda: candidate[name](rows).numpy()))
        out.append(common.result("D3", f"{name} (plugin now)/NumPy Gram", ratios_now, None))
        out.append(common.result("D3", f"{name} Krum-row centre/Gram", ratios_new, None,
                                 note=f"aggregate equals the current plugin's to {agree[name]:.1e}"))
        if name in sampled:
            ratios_sampled = [against_gram(lambda: sampled[name](rows).numpy()) for _ in range(2 if quick else 3)]
            out.append(common.result("D3", f"{name} same, 1/16 first pass/Gram", ratios_sampled, None,
                                     note=f"aggregate equals the current plugin's to {agree_sampled:.1e}"))
    # Bulyan's coordinate-wise step needs order statistics of the theta =
    # n - 2f selected rows in every coordinate: the fastest primitive at hand
    # (NumPy's introselect over axis 0) is its floor.
    theta = k - 2 * f
    selected = x[:theta]
    floor = []
    for _ in range(2 if quick else 3):
        floor.append(against_gram(lambda: np.partition(selected, theta // 2, axis=0)))
    for case, what in (("huge", "one 1000x attacker"), ("zeros", "5 of 20 rows zero")):
        out.append(common.result("D3", f"rel. error, honest pairs, {case}", [errors[case, "plugin now"]], None,
                                 note=f"squared distances vs float64, {what}: "
                                      + ", ".join(f"{name} {errors[case, name]:.1e}" for name in centrings)))
    out.append(common.result("D3", "np.partition [80, 1e6] axis 0/Gram", floor, None,
                             note="one per-coordinate selection over Bulyan's selected rows: a floor for its "
                                  "coordinate-wise trimmed mean"))
    return out


def main(quick: bool = False) -> list[dict]:
    return d1_client_loop(quick) + d2_gather(quick) + d3_krum_centre(quick)


if __name__ == "__main__":
    if "--d2-child" in sys.argv:
        at = sys.argv.index("--d2-child")
        d2_child(sys.argv[at + 1], int(sys.argv[at + 2]), int(sys.argv[at + 3]))
    else:
        common.emit(main(common.quick_flag()))
