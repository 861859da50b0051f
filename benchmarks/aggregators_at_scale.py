"""Every registered aggregator at the sizes robust-aggregation libraries
publish (issue #19): 80 clients x 65,536 parameters and 100 x 1,000,000.

Each aggregator (enumerated from the registry, so a new one is covered at
once) runs through its plugin's own TF code (``apply``, which calls
``aggregate``; its initial state for the stateful ones) in a
``tf.function`` on a float32 matrix of normal rows, every weight 1.  Two
baselines are measured in the same process, interleaved with it (ours, the
NumPy reference, the Gram; the order turns each repeat):

- a NumPy reference of the same aggregator, written here in plain NumPy as
  a user would; the line also reports the largest absolute difference
  between the two aggregates.  DnC, SignGuard and bucketing have none: each
  draws its random coordinates or permutation from TF's stateless RNG, so a
  NumPy version would first have to reproduce those draws (and SignGuard's
  mean-shift clustering is long); their lines use the Gram alone;
- NumPy's ``X @ X.T`` (the n x n Gram matrix), the common yardstick of B7.

Warm-up (tracing, first call) is not timed.  Each line gives the median,
min and max of the per-repeat ratios; the note gives our absolute time.

Bulyan's coordinate step (per coordinate, the mean of the beta values
nearest the median of the theta selected ones) is also timed alone, the
sorting network it uses now against the two ``NthElement`` selections it
used before, and the whole aggregate both ways.  Likewise the coordinate-wise
median and trimmed mean: their sort by the sorting network now (the
plugin's bound, ``clients_per_round``) against ``tf.sort`` before (no
bound), with NumPy's version, the first call (tracing included) and
whether now and before agree bit for bit; ``--coordinate`` runs only these,
at 80 x 65,536, at ByzPy's 64 x 65,536 (trimming 8 per side) and, with
``--large``, at 100 x 1e6.

The published figures of ByzPy and ByzFL (PyTorch on CPU, other hardware:
the ByzPy README does not name it) are printed next to ours at their
settings: Multi-Krum at 80 x 65,536 with f = 20 averaging q = 12 rows, and
the coordinate-wise trimmed mean at 64 x 65,536 trimming f = 8 per side.

    uv run --locked python benchmarks/aggregators_at_scale.py            # both sizes, full repeats
    uv run --locked python benchmarks/aggregators_at_scale.py --quick    # 80 x 65,536 only, fewer repeats
    uv run --locked python benchmarks/aggregators_at_scale.py --quick --large   # and 100 x 1e6
    uv run --locked python benchmarks/aggregators_at_scale.py --quick --coordinate [--large]

Absolute milliseconds need a quiet machine; the ratios move less with load.
"""

from __future__ import annotations

import math
import os
import sys

import common

SIZES = {"80 x 65,536": (80, 65_536), "100 x 1e6": (100, 1_000_000)}
# The coordinate-wise sorts alone (--coordinate): label -> (n, d, values
# trimmed per side; None: the trimmed mean's default beta = 0.1).
COORDINATE_SIZES = {"80 x 65,536": (80, 65_536, None), "64 x 65,536": (64, 65_536, 8),
                    "100 x 1e6": (100, 1_000_000, None)}
F = 10  # Byzantine rows assumed by the rules that take f (as in B7)

# Published by ByzPy, benchmarks/README.md of github.com/Byzpy/byzpy (read
# 2026): milliseconds per aggregation, PyTorch on CPU, on hardware the README
# does not name (not this machine).  "ActorPool x6": ByzPy with six worker
# processes, its fastest figure; "direct": ByzPy in one process.
BYZPY = [
    dict(what="Multi-Krum, 80 x 65,536, f = 20, q = 12 averaged", rule="multi_krum", params={"f": 20, "m": 12},
         shape=(80, 65_536), byzpy_pool=26.30, byzpy_direct=59.66, byzfl=78.17),
    dict(what="trimmed mean, 64 x 65,536, f = 8 per side", rule="trimmed_mean", params={"k": 8},
         shape=(64, 65_536), byzpy_pool=15.15, byzpy_direct=65.52, byzfl=68.08),
]


def parameters(name: str, registry) -> dict:
    """The parameters each rule runs with (its defaults otherwise)."""
    if name in ("krum", "multi_krum", "bulyan", "dnc"):
        return {"f": F}
    if name == "bucketing":  # Krum over the bucket means (n / 2 of them)
        return {"inner": registry.get("aggregator", "krum").cls(f=F), "s": 2}
    return {}


# --------------------------------------------------------------------------
# NumPy references: the same rules, written as a user would in NumPy.
# --------------------------------------------------------------------------

def np_gram_sq_distances(x):
    import numpy as np

    sq = np.einsum("ij,ij->i", x, x)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)


def np_krum_scores(dist, remaining, f):
    import numpy as np

    n_r = int(remaining.sum())
    k = max(min(max(n_r - f - 2, 1), n_r - 1), 0)
    masked = np.where(remaining[None, :] & ~np.eye(len(dist), dtype=bool), dist, np.inf)
    scores = np.sort(masked, axis=1)[:, :k].sum(axis=1)
    return np.where(remaining, scores, np.inf)


def np_bulyan(x, f):
    import numpy as np

    n = len(x)
    theta, dist = n - 2 * f, np_gram_sq_distances(x)
    beta = theta - 2 * f
    remaining = np.ones(n, bool)
    for _ in range(theta):
        remaining[np.argmin(np_krum_scores(dist, remaining, f))] = False
    selected = x[~remaining]
    median = np.median(selected, axis=0)
    nearest = np.argpartition(np.abs(selected - median), beta - 1, axis=0)[:beta]
    return np.take_along_axis(selected, nearest, axis=0).mean(axis=0)


def np_afa(x, xi=2.0, delta_xi=0.25, prior=3.0):
    """AFA's first round: equal reputations (nobody blocked), weights 1."""
    import numpy as np

    good = np.ones(len(x), bool)
    while True:
        aggregate = x[good].mean(axis=0)
        cosine = x @ aggregate / (np.linalg.norm(x, axis=1) * np.linalg.norm(aggregate))
        values = cosine[good]
        mean, median, std = values.mean(), np.median(values), values.std()
        bad = good & ((cosine < median - xi * std) if mean < median else (cosine > median + xi * std))
        if not bad.any():
            break
        good &= ~bad
        xi += delta_xi
    reputation = np.where(good, (prior + 1) / (2 * prior + 1), prior / (2 * prior + 1))
    coeff = np.where(good, reputation, 0.0)
    return coeff @ x / coeff.sum()


def numpy_reference(name: str, rule, root):
    """A NumPy function of the update matrix for ``name``, or None (see the
    module docstring)."""
    import numpy as np

    def krum(x):
        return x[np.argmin(np_krum_scores(np_gram_sq_distances(x), np.ones(len(x), bool), rule.f))]

    def multi_krum(x):
        m = len(x) - rule.f if rule.m is None else rule.m
        scores = np_krum_scores(np_gram_sq_distances(x), np.ones(len(x), bool), rule.f)
        return x[np.argsort(scores, kind="stable")[:m]].mean(axis=0)

    def trimmed_mean(x):
        trim = rule.k if rule.k is not None else math.ceil(rule.beta * len(x) - 1e-9)
        trim = min(trim, (len(x) - 1) // 2)
        return np.sort(x, axis=0)[trim : len(x) - trim].mean(axis=0)

    def norm_clipping(x):
        norms = np.linalg.norm(x, axis=1)
        return (np.minimum(1.0, rule.bound / norms) / len(x)) @ x

    def centered_clipping(x):  # from the initial state: v = 0
        v = np.zeros(x.shape[1], np.float32)
        for _ in range(rule.iterations):
            diff = x - v
            v = v + np.minimum(1.0, rule.tau / np.linalg.norm(diff, axis=1)) @ diff / len(x)
        return v

    def geometric_median(x):
        v = x.mean(axis=0)
        for _ in range(rule.iterations):
            beta = 1.0 / np.maximum(rule.nu, np.linalg.norm(x - v, axis=1))
            v = beta @ x / beta.sum()
        return v

    def fltrust(x):
        norms = np.linalg.norm(x, axis=1)
        trust = np.maximum(x @ root / (norms * np.linalg.norm(root)), 0.0)
        return (trust / trust.sum() * np.linalg.norm(root) / norms) @ x

    references = {
        "fedavg": lambda x: x.mean(axis=0),
        "median": lambda x: np.median(x, axis=0),
        "trimmed_mean": trimmed_mean,
        "krum": krum,
        "multi_krum": multi_krum,
        "bulyan": lambda x: np_bulyan(x, rule.f),
        "norm_clipping": norm_clipping,
        "centered_clipping": centered_clipping,
        "geometric_median": geometric_median,
        "fltrust": fltrust,
        "afa": lambda x: np_afa(x, rule.xi, rule.delta_xi, rule.prior),
    }
    return references.get(name)


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------

def compiled_rule(rule, n: int, d: int, root):
    """``rule`` as the server stage calls it, in a ``tf.function`` of the
    update matrix (rows of a count known only when the graph runs, at most
    ``clients_per_round = n``; weights 1; its initial state)."""
    import attrs
    import numpy as np
    import tensorflow as tf

    from fedarena.core.plugin.interfaces import Layer
    from fedarena.core.testing import make_server_context

    ctx = make_server_context(np.zeros((n, 1), np.float32), layers=[Layer("weights", (d,), 0)])
    ctx = attrs.evolve(ctx, global_weights=tf.zeros([d]), root_update=tf.constant(root),
                       facts=attrs.evolve(ctx.facts, input_shape=(d,), root_samples=1))
    state = {key: tf.constant(value) for key, value in rule.initial_state(d, ctx.facts).items()}

    @tf.function(input_signature=[tf.TensorSpec([None, d], tf.float32)])
    def run(rows):
        return rule.apply(rows, tf.ones([tf.shape(rows)[0]]), ctx, state)[0]

    return run


def interleaved(functions: dict, repeats: int) -> dict:
    """Seconds of each function per repeat, called in turn, the order
    reversed every other repeat (A B C, C B A, ...)."""
    times = {name: [] for name in functions}
    order = list(functions)
    for i in range(repeats):
        for name in (order if i % 2 == 0 else order[::-1]):
            times[name].append(common.timed(functions[name])[0])
    return times


def ms(values) -> str:
    s = common.summary(values)
    return f"{1000 * s['median']:.1f} ms (min {1000 * s['min']:.1f}, max {1000 * s['max']:.1f})"


def measure_size(label: str, n: int, d: int, repeats: int, registry, names) -> list[dict]:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    root = rng.standard_normal(d, dtype=np.float32)
    rows = tf.constant(x)
    gram = lambda: x @ x.T  # noqa: E731
    gram()
    out = []
    for name in names:
        rule = registry.get("aggregator", name).cls(**parameters(name, registry))
        ours = compiled_rule(rule, n, d, root)
        aggregate = ours(rows).numpy()  # trace and warm up
        reference = numpy_reference(name, rule, root)
        functions = {"ours": lambda: ours(rows).numpy(), "gram": gram}
        note = ""
        if reference is not None:
            agree = float(np.abs(reference(x) - aggregate).max())
            functions["numpy"] = lambda: reference(x)
            note = f", max |ours - NumPy| {agree:.1e}"
        times = interleaved(functions, repeats)
        tag = "S" if d < 1_000_000 else "L"
        details = dict(size=label, ours_s=common.summary(times["ours"]), gram_s=common.summary(times["gram"]))
        out.append(common.result(tag, f"{name}/NumPy Gram", [a / b for a, b in zip(times["ours"], times["gram"])],
                                 None, **details, note=f"{label}: ours {ms(times['ours'])}, Gram {ms(times['gram'])}"
                                 + note))
        if reference is not None:
            out.append(common.result(tag, f"{name}/NumPy {name}",
                                     [a / b for a, b in zip(times["ours"], times["numpy"])], None,
                                     numpy_s=common.summary(times["numpy"]),
                                     note=f"{label}: NumPy {name} {ms(times['numpy'])}{note}"))
        else:
            out[-1]["details"]["note"] += " (no NumPy version: random draws from TF's RNG)"
    out += bulyan_step(label, n, d, repeats)
    out += coordinate_sorts(label, n, d, None, repeats)
    return out


def coordinate_sorts(label: str, n: int, d: int, trim: int | None, repeats: int) -> list[dict]:
    """Coordinate-wise median and trimmed mean (``trim`` per side; None: the
    default beta = 0.1) through their plugin functions, on rows of a count
    known only when the graph runs, as the server stage gives them: now,
    with the plugin's bound (the sorting network), against before (no
    bound: ``tf.sort``), and NumPy's version in the same process."""
    import numpy as np
    import tensorflow as tf

    from fedarena.plugins.aggregators.median import median
    from fedarena.plugins.aggregators.trimmed_mean import trimmed_mean

    trim = math.ceil(0.1 * n - 1e-9) if trim is None else trim
    x = np.random.default_rng(3).standard_normal((n, d), dtype=np.float32)
    rows = tf.constant(x)
    cases = {
        "median": (lambda r, bound: median(r, bound)[0], lambda: np.median(x, axis=0)),
        "trimmed_mean": (lambda r, bound: trimmed_mean(r, k=trim, max_rows=bound)[0],
                         lambda: np.sort(x, axis=0)[trim : n - trim].mean(axis=0)),
    }
    tag = "S" if d < 1_000_000 else "L"
    out = []
    for name, (rule, numpy) in cases.items():
        spec = [tf.TensorSpec([None, d])]
        now = tf.function(lambda r, rule=rule: rule(r, n), input_signature=spec)
        before = tf.function(lambda r, rule=rule: rule(r, None), input_signature=spec)
        first_now, now_value = common.timed(lambda: now(rows).numpy())
        first_before, before_value = common.timed(lambda: before(rows).numpy())
        identical = np.array_equal(now_value.view(np.uint32), before_value.view(np.uint32))
        difference = float(np.abs(now_value - numpy()).max())
        times = interleaved({"now": lambda: now(rows).numpy(), "before": lambda: before(rows).numpy(),
                             "numpy": numpy}, repeats)
        what = name if name == "median" else f"trimmed_mean (trim {trim})"
        out += [
            common.result(tag, f"{what}: network/tf.sort", [a / b for a, b in zip(times["now"], times["before"])],
                          None, note=f"{label}: now {ms(times['now'])}, before {ms(times['before'])}; "
                                     f"{'bit for bit equal' if identical else 'NOT bit for bit equal'}; first call "
                                     f"(tracing included) {first_now:.2f} s now, {first_before:.2f} s before"),
            common.result(tag, f"{what}: network/NumPy", [a / b for a, b in zip(times["now"], times["numpy"])],
                          None, note=f"{label}: NumPy {ms(times['numpy'])}, max |ours - NumPy| {difference:.1e}"),
        ]
    return out


def bulyan_step(label: str, n: int, d: int, repeats: int) -> list[dict]:
    """Bulyan's coordinate step and whole aggregate: the sorting network it
    uses now against the two ``NthElement`` selections of before."""
    import numpy as np
    import tensorflow as tf

    from fedarena.plugins import _tensor
    from fedarena.plugins.aggregators.bulyan import bulyan

    theta = n - 2 * F
    beta = theta - 2 * F
    rng = np.random.default_rng(1)
    selected = tf.constant(rng.standard_normal((theta, d), dtype=np.float32))
    rows = tf.constant(rng.standard_normal((n, d), dtype=np.float32))
    beta_t = tf.constant(beta)  # a tensor, as in the plugin: no constant folding on either side

    network = tf.function(lambda s, b: _tensor.mean_closest_to_median(s, b),
                          input_signature=[tf.TensorSpec([theta, d]), tf.TensorSpec([], tf.int32)])
    selection = tf.function(lambda s, b: _tensor.mean_closest_to_median_by_selection(tf.transpose(s), b),
                            input_signature=[tf.TensorSpec([theta, d]), tf.TensorSpec([], tf.int32)])
    # The whole aggregate on rows of a count known only when the graph runs,
    # as the server stage gives them: with the bound the plugin passes
    # (clients_per_round: the network) and without (the selection, as before).
    new = tf.function(lambda r: bulyan(r, F, max_rows=n)[0], input_signature=[tf.TensorSpec([None, d])])
    old = tf.function(lambda r: bulyan(r, F)[0], input_signature=[tf.TensorSpec([None, d])])
    step_difference = float(np.abs(network(selected, beta_t).numpy() - selection(selected, beta_t).numpy()).max())
    whole_difference = float(np.abs(new(rows).numpy() - old(rows).numpy()).max())
    times = interleaved({
        "network": lambda: network(selected, beta_t).numpy(), "selection": lambda: selection(selected, beta_t).numpy(),
        "new": lambda: new(rows).numpy(), "old": lambda: old(rows).numpy(),
    }, repeats)
    tag = "S" if d < 1_000_000 else "L"
    return [
        common.result(tag, "bulyan step: network/NthElement",
                      [a / b for a, b in zip(times["network"], times["selection"])], None,
                      note=f"{label}, theta {theta}, beta {beta}: network {ms(times['network'])}, two NthElement "
                           f"{ms(times['selection'])}; max difference {step_difference:.1e}"),
        common.result(tag, "bulyan aggregate: now/before", [a / b for a, b in zip(times["new"], times["old"])], None,
                      note=f"{label}: now {ms(times['new'])}, before {ms(times['old'])}; "
                           f"max difference {whole_difference:.1e}"),
    ]


def byzpy_lines(repeats: int, registry) -> list[dict]:
    """Ours at ByzPy's published settings, next to ByzPy's and ByzFL's figures."""
    import numpy as np
    import tensorflow as tf

    out = []
    for case in BYZPY:
        n, d = case["shape"]
        x = np.random.default_rng(2).standard_normal((n, d), dtype=np.float32)
        rule = registry.get("aggregator", case["rule"]).cls(**case["params"])
        ours = compiled_rule(rule, n, d, np.zeros(d, np.float32))
        rows = tf.constant(x)
        ours(rows)
        gram = lambda: x @ x.T  # noqa: E731
        times = interleaved({"ours": lambda: ours(rows).numpy(), "gram": gram}, repeats)
        median_ms = 1000 * common.summary(times["ours"])["median"]
        out.append(common.result(
            "BP", f"{case['rule']}/ByzPy ActorPool x6", [1000 * t / case["byzpy_pool"] for t in times["ours"]], None,
            note=f"{case['what']}: ours {ms(times['ours'])} here (Gram {ms(times['gram'])}); published on other "
                 f"hardware: ByzPy ActorPool x6 {case['byzpy_pool']} ms, ByzPy direct {case['byzpy_direct']} ms, "
                 f"ByzFL {case['byzfl']} ms (ours/ByzFL {median_ms / case['byzfl']:.2f})"))
    return out


def main(quick: bool = False, large: bool | None = None, coordinate: bool = False) -> list[dict]:
    import tensorflow as tf

    from fedarena.core.plugin.registry import default_registry

    tf.get_logger().setLevel("ERROR")  # one tf.function per rule: TF's retracing warning is expected here
    registry = default_registry()
    names = sorted(registry.names("aggregator"))
    large = (not quick) if large is None else large
    out = []
    if coordinate:
        for label, (n, d, trim) in COORDINATE_SIZES.items():
            if large or d < 1_000_000:
                repeats = (2 if quick else 5) if d < 1_000_000 else (2 if quick else 3)
                out += coordinate_sorts(label, n, d, trim, repeats)
        load = os.getloadavg()
        out[-1]["details"]["note"] += f"\n      load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
        return out
    sizes = [label for label in SIZES if large or SIZES[label][1] < 1_000_000]
    for label in sizes:
        n, d = SIZES[label]
        repeats = (2 if quick else 5) if d < 1_000_000 else (2 if quick else 3)
        out += measure_size(label, n, d, repeats, registry, names)
    out += byzpy_lines(2 if quick else 5, registry)
    load = os.getloadavg()
    out[-1]["details"]["note"] += f"\n      load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    return out


if __name__ == "__main__":
    common.emit(main(common.quick_flag(), True if "--large" in sys.argv else None, "--coordinate" in sys.argv))
