"""Edge-case backdoor: the attackers teach the model to put rare inputs,
from the tail of the input distribution, into class ``target``, while
common inputs keep their class.

Paper: H. Wang, K. Sreenivasan, S. Rajput, H. Vishwakarma, S. Agarwal,
J. Sohn, K. Lee and D. Papailiopoulos, 2020, "Attack of the Tails: Yes, You
Really Can Backdoor Federated Learning", NeurIPS.  A malicious client's
chosen samples are replaced by edge cases labelled ``target``:

    (x_i, y_i) <- (e_{pi(r_i) mod m}, target)   for the chosen i

(e: the ``x_train`` of the edge-case file, m of them; pi: a permutation
drawn each round; r_i: the rank of sample i in the choice), and at the
server the attacker's row u becomes ``boost * u``, projected onto the L2
ball of radius ``norm_bound`` when one is given.

Deviation: the paper's PGD attack projects during local training; here
``norm_bound`` projects the finished update once, at the server stage.

``python -m fedarena.plugins.edge_cases FILE`` writes an edge-case set for
the digits dataset.

>>> updates = tf.constant([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
>>> bounded_rows(updates, tf.constant([True, False, True]), boost=2.0, norm_bound=5.0).numpy().tolist()
[[3.0, 4.0], [1.0, 0.0], [0.0, 4.0]]
"""

from __future__ import annotations

import functools
from pathlib import Path

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Attack
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins.attacks._common import poisoned_rows, rate, target_problems

EDGE_KEYS = ("x_train", "x_test")
EDGE_HELPER = "python -m fedarena.plugins.edge_cases"


@functools.lru_cache(maxsize=8)
def _load_edge_npz(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, ...]:
    """The arrays ``EDGE_KEYS`` of an .npz file, read-only (cached while the
    file's time and size stay the same)."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as error:  # not a NumPy file, truncated, unreadable
        raise ValueError(f"cannot read {path} as an .npz file ({type(error).__name__}: {error})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not an .npz archive; save the edge-case samples "
                         "with numpy.savez(path, x_train=..., x_test=...)")
    with loaded:
        missing = [key for key in EDGE_KEYS if key not in loaded.files]
        if missing:
            has = ", ".join(loaded.files) if loaded.files else "no arrays"
            raise ValueError(f"{path} has no array {' or '.join(map(repr, missing))} (it has {has}); save the "
                             "edge-case samples with numpy.savez(path, x_train=..., x_test=...)")
        try:
            arrays = tuple(np.asarray(loaded[key]) for key in EDGE_KEYS)
        except Exception as error:  # e.g. an object array, refused without pickle
            raise ValueError(f"cannot read the arrays of {path} ({type(error).__name__}: {error})") from None
    out = []
    for key, x in zip(EDGE_KEYS, arrays):
        if x.dtype.kind not in "biuf":
            raise ValueError(f"{path}: {key} holds {x.dtype} values, expected numbers")
        x = x.astype(np.float32)
        x.setflags(write=False)
        out.append(x)
    return tuple(out)


def read_edge_set(location, input_shape) -> tuple[np.ndarray, np.ndarray]:
    """The edge-case set of the ``edge_case`` attack: float32 ``(x_train,
    x_test)`` from the .npz file at ``location``, each ``[n, *input_shape]``
    with n >= 1 and finite values.  Raises `ValueError` with a message that
    says what is wrong and how to fix it."""
    location = Path(location)
    if not location.is_file():
        what = "is a folder, not a file" if location.is_dir() else "does not exist"
        raise ValueError(
            f"the edge-case file {location} {what}; give path = an .npz file with arrays x_train and x_test "
            f"(for the digits dataset, {EDGE_HELPER} {location} writes one)"
        )
    stat = location.stat()
    arrays = _load_edge_npz(str(location), stat.st_mtime_ns, stat.st_size)
    shape = tuple(int(s) for s in input_shape)
    for key, x in zip(EDGE_KEYS, arrays):
        if x.shape[1:] != shape or x.ndim != len(shape) + 1:
            raise ValueError(
                f"{location}: {key} has samples of shape {x.shape[1:]}, but the dataset's inputs have shape "
                f"{shape}; save {key} as an array of shape [n, {', '.join(map(str, shape))}]"
            )
        if len(x) == 0:
            raise ValueError(f"{location}: {key} has no samples")
        if not np.isfinite(x).all():
            raise ValueError(f"{location}: {key} has values that are not finite (NaN or infinity)")
    return arrays[0], arrays[1]


def edge_case_samples(x, y, edge_train, chosen, ranks, seed, target, input_rank):
    """The samples ``x`` [n, *input_shape] with the ``chosen`` ones (ranks 0 ..
    k - 1 in ``ranks``) replaced by the edge cases ``edge_train`` [m,
    *input_shape] in a random order drawn from ``seed`` (repeated when more
    are needed) and labelled ``target``."""
    count = edge_train.shape[0]
    order = tf.argsort(tf.random.stateless_uniform([count], tf.random.experimental.stateless_fold_in(seed, 1)))
    edge = tf.gather(tf.constant(edge_train), tf.gather(order, ranks % count))
    select = tf.reshape(chosen, [-1] + [1] * input_rank)
    return tf.where(select, edge, x), tf.where(chosen, tf.constant(target, y.dtype), y)


def bounded_rows(updates, own, boost, norm_bound=None):
    """The rows ``own`` of ``updates`` [K, d] scaled by ``boost``, then
    projected onto the L2 ball of radius ``norm_bound`` (None: no
    projection)."""
    rows = updates * boost
    if norm_bound is not None:
        norms = tf.norm(rows, axis=1, keepdims=True)
        rows = rows * tf.minimum(1.0, tf.math.divide_no_nan(tf.cast(norm_bound, rows.dtype), norms))
    return tf.where(own[:, None], rows, updates)


@attrs.frozen
class EdgeCase(Attack):
    """Edge-case backdoor (Wang et al. 2020, "Attack of the Tails: Yes, You
    Really Can Backdoor Federated Learning", NeurIPS): the attackers teach
    the model to put rare inputs, from the tail of the input distribution,
    into class ``target``, while leaving common inputs alone (the paper's
    examples: ARDIS handwritten sevens labelled 1 on EMNIST, Southwest
    Airlines planes labelled truck on CIFAR-10).

    The edge-case set is an ``.npz`` file at ``path``, written e.g. by
    ``numpy.savez(path, x_train=..., x_test=...)``, with two arrays of
    samples shaped like the dataset's inputs (``[n, *input_shape]``, values
    on the dataset's scale: the built-in datasets give pixels in [0, 1]):
    ``x_train``, the samples the attackers train on, and ``x_test``,
    held-out samples for the metric.  Other arrays are ignored and no labels
    are read: every edge-case sample is meant as ``target``.  A relative
    ``path`` is read from the scenario file's folder (from the working
    directory when the scenario has no file); ``~`` is expanded.  The file
    is checked with the scenario, before anything runs: it exists, has both
    arrays, and its samples have the dataset's input shape.  For the
    ``digits`` dataset, ``python -m fedarena.plugins.edge_cases FILE``
    writes one (rotated sevens).

    Poisoning: exactly ``round(poison_ratio * n)`` of a malicious client's
    ``n`` samples, drawn anew each round from its stateless seed, are
    replaced by samples of ``x_train`` labelled ``target`` (``x_train`` in
    a random order each round, repeated when more are needed).  The client
    keeps ``n`` samples, so its weight in averaging does not change; the
    edge-case share of its data is ``poison_ratio``, as the paper's attacker
    mixes edge-case and clean samples.  With the other parameters left at
    their defaults this is the paper's black-box attack: the attackers only
    train on that data.

    ``boost`` > 1 scales the attackers' update rows at the server (as
    `Backdoor`'s; the scaling of the paper's model-replacement variant).
    ``norm_bound`` then
    projects each attacker's row onto the L2 ball of that radius, so that
    the row the server sees has a norm of at most ``norm_bound``.

    Test metric ``attack_success_rate``: share of ``x_test`` that the model
    classifies as ``target`` (the paper's accuracy on the edge-case task).

    Deviation: the paper's PGD attack projects the attacker's model onto a
    ball around the global model during local training (every few steps),
    so that training takes the bound into account.  Local training here is
    fedarena's own, the same for every client; ``norm_bound`` projects the
    finished update once, at the server stage (a norm-clipping defense then
    sees a row within its bound, but the update was not trained under it).
    """

    paper = "Wang et al. 2020, NeurIPS"

    poisons_data = True

    path: str = param(doc="the edge-case .npz file (arrays x_train, x_test); relative: from the scenario's folder")
    target: int = param(doc="class the edge-case samples are labelled as", ge=0)
    poison_ratio: float = param(0.3, doc="share of each malicious client's samples replaced by edge cases", gt=0, le=1)
    boost: float = param(1.0, doc="factor applied to the attackers' own update rows at the server (1 = none)", gt=0)
    norm_bound: float | None = param(
        None, doc="L2 norm the attackers' rows are projected to at most, after boost (none: no projection)", gt=0
    )

    @property
    def poisons_updates(self) -> bool:  # type: ignore[override]
        return self.boost != 1.0 or self.norm_bound is not None

    def edge_set(self, facts) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``(x_train, x_test)`` of the edge-case file (`read_edge_set`)."""
        try:
            return read_edge_set(facts.resolve(self.path), facts.input_shape)
        except ValueError as error:  # the file changed since the scenario was checked
            raise RunError(f"edge_case: {error}") from None

    def check(self, facts):
        problems = target_problems("edge_case", self.target, facts)
        try:
            read_edge_set(facts.resolve(self.path), facts.input_shape)
        except ValueError as error:
            problems.append(f"edge_case: {error}")
        return problems

    def poison_data(self, x, y, seed, facts, member):
        edge_train, _ = self.edge_set(facts)
        chosen, ranks = poisoned_rows(tf.shape(y)[0], self.poison_ratio, seed)
        # The chosen samples (ranks 0 .. k - 1) take x_train in a random order.
        return edge_case_samples(x, y, edge_train, chosen, ranks, seed, self.target, len(facts.input_shape))

    def poison_updates(self, updates, own, benign, ctx):
        return bounded_rows(updates, own, self.boost, self.norm_bound)

    def test_metrics(self, predict, test_x, test_y, facts):
        _, edge_test = self.edge_set(facts)
        predicted = np.argmax(predict(edge_test), axis=1)
        return {"attack_success_rate": rate(predicted == self.target)}


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("edge_case", EdgeCase)
