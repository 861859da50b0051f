"""B7: robust aggregators at 100 clients x 1,000,000 parameters.

Krum, Bulyan and Multi-Krum (f = 10 each; Multi-Krum with its default
m = n - f) are called through the plugin's own TF code (``aggregate``) in a
``tf.function`` on a [100, 1e6] float32 matrix (normal rows, every weight 1).
The baseline is one 100 x 100 Gram matrix computed with NumPy (``X @ X.T``)
in the same process, timed right before and right after each aggregator
call (the mean of the two is that call's baseline).
Target: each aggregator <= 3 x the Gram matrix.

Extra lines (no target) show what bounds the aggregators: the plugins'
shared helpers, timed alone on the same matrix, in the same ``tf.function``
form: the coordinate-wise median (the sorting network of
``_tensor.sorted_rows``: the K rows are known), the whole pairwise squared-distance matrix, and TF's own Gram.
"""

from __future__ import annotations

import common

K, D, F = 100, 1_000_000, 10
TARGET = 3.0


def main(quick: bool = False) -> list[dict]:
    import attrs
    import numpy as np
    import tensorflow as tf

    from fedarena.core.testing import make_server_context
    from fedarena.plugins import _tensor
    from fedarena.plugins.aggregators.bulyan import Bulyan
    from fedarena.plugins.aggregators.krum import Krum
    from fedarena.plugins.aggregators.multi_krum import MultiKrum

    repeats = 2 if quick else 3
    x = np.random.default_rng(0).standard_normal((K, D), dtype=np.float32)
    updates, weights = tf.constant(x), tf.ones([K])
    ctx = attrs.evolve(make_server_context(np.zeros((K, 1), np.float32)), global_weights=tf.zeros([D]))
    spec = [tf.TensorSpec([K, D], tf.float32), tf.TensorSpec([K], tf.float32)]

    def compiled(rule):
        return tf.function(lambda u, w: rule.aggregate(u, w, ctx)[0], input_signature=spec)

    rules = {
        "krum": compiled(Krum(f=F)),
        "bulyan": compiled(Bulyan(f=F)),
        "multi_krum": compiled(MultiKrum(f=F)),
    }
    helpers = {
        "coordinate median (sorting network)": tf.function(lambda u, w: _tensor.coordinate_median(u), input_signature=spec),
        "pairwise sq. distances (centred)": tf.function(lambda u, w: _tensor.pairwise_sq_distances(u), input_signature=spec),
        "Gram in TF (tf.matmul)": tf.function(lambda u, w: tf.matmul(u, u, transpose_b=True), input_signature=spec),
    }
    for function in [*rules.values(), *helpers.values()]:
        function(updates, weights).numpy()  # trace and warm up
    gram = lambda: x @ x.T  # noqa: E731
    gram()
    times = {name: [] for name in [*rules, *helpers]}
    grams = {name: [] for name in times}
    for _ in range(repeats):
        for name, function in [*rules.items(), *helpers.items()]:
            before = common.timed(gram)[0]
            times[name].append(common.timed(lambda: function(updates, weights).numpy())[0])
            grams[name].append((before + common.timed(gram)[0]) / 2)
    out = []
    for name in rules:
        ratios = [t / g for t, g in zip(times[name], grams[name])]
        out.append(common.result("B7", f"{name}/NumPy Gram", ratios, TARGET, seconds=common.summary(times[name]),
                                 gram_s=common.summary(grams[name]),
                                 note=f"{name} {common.fmt_seconds(times[name])}, Gram {common.fmt_seconds(grams[name])}"))
    for name in helpers:
        ratios = [t / g for t, g in zip(times[name], grams[name])]
        out.append(common.result("B7", f"{name}/Gram", ratios, None, seconds=common.summary(times[name]),
                                 note=f"{common.fmt_seconds(times[name])}"))
    return out


if __name__ == "__main__":
    common.emit(main(common.quick_flag()))
