"""Built-in attacks.

Data poisoning (``poisons_data``) changes a malicious client's training
samples inside its TFF client computation: `LabelFlip`, `Backdoor` (with a
trigger plugin of ``fedarena.plugins.triggers``: BadNets pixel patch,
blended pattern, DBA distributed patch), `Neurotoxin` and `EdgeCase`.

Model poisoning (``poisons_updates``) rewrites the attack's own rows of the
round's ``[K, d]`` update matrix at the server stage, where ``K`` is not
known statically; all of it is matrix code (``tf.while_loop`` only for the
one-dimensional searches of Fang-Krum, Min-Max and Min-Sum).  Conventions
(see ``ALGORITHMS.md``):

* Updates are deltas (client model minus global model).
* ``knowledge`` picks the reference updates an attack reads:
  ``"omniscient"`` the round's benign rows (the ``benign`` mask);
  ``"partial"`` this attack's own rows *before* the attack (malicious
  clients train normally on their data, so those rows are honest-looking
  updates, which is Fang et al.'s partial-knowledge setting).
* Every attacker of a group sends the same crafted row unless the attack
  is randomised (Gaussian, Fang-Trim) or acts row by row (sign flip,
  scaling, boosting).
* Rows outside ``own`` are never changed; when a group has no row in a
  round nothing is computed (``tf.cond``).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from statistics import NormalDist
from typing import ClassVar

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Attack, Trigger
from fedarena.core.plugin.params import param
from fedarena.plugins.triggers import Pixel

KNOWLEDGE = ("omniscient", "partial")
_KNOWLEDGE_DOC = "reference updates: 'omniscient' the round's benign rows, 'partial' the attackers' own rows before the attack"


# --------------------------------------------------------------------------
# Shared pieces


def expected_attackers(facts) -> int:
    """Attackers expected in one round: ``num_attackers`` scaled by the share
    of clients sampled per round, rounded half up, at least 1."""
    share = facts.num_attackers * facts.clients_per_round / max(facts.num_clients, 1)
    return max(1, int(math.floor(share + 0.5)))


def alie_z(n: int, m: int, variant: str = "paper") -> float:
    """z_max of "A Little Is Enough" (Baruch et al. 2019, NeurIPS).

    ``s = floor(n / 2 + 1) - m`` is the number of benign workers the
    attackers must win over.  ``"paper"``: ``z = Phi^-1((n - s) / n)``, the
    paper's Algorithm 1.  ``"library"``: ``z = Phi^-1((n - m - s) / (n - m))``,
    the form common in public code (the share among benign workers only).
    Raises `ValueError` when the quantile is not inside (0, 1).
    """
    if variant not in ("paper", "library"):
        raise ValueError(f"unknown ALIE variant {variant!r}")
    s = math.floor(n / 2 + 1) - m
    if variant == "paper":
        num, den = n - s, n
    else:
        num, den = n - m - s, n - m
    if den <= 0 or not 0 < num / den < 1:
        raise ValueError(f"ALIE z is undefined for n = {n}, m = {m} ({variant}): quantile {num}/{den}")
    return NormalDist().inv_cdf(num / den)


def _reference(updates, own, benign, knowledge):
    """The rows a model-poisoning attack reads (see the module docstring)."""
    import tensorflow as tf

    return tf.boolean_mask(updates, benign if knowledge == "omniscient" else own)


def _mean(rows):
    """Column mean of ``[r, d]`` rows; zeros when there are none."""
    import tensorflow as tf

    count = tf.cast(tf.shape(rows)[0], rows.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(rows, axis=0), count)


def _std(rows):
    """Column population standard deviation (ddof = 0) of ``[r, d]`` rows; zeros when there are none."""
    import tensorflow as tf

    centred = rows - _mean(rows)[None, :]
    count = tf.cast(tf.shape(rows)[0], rows.dtype)
    return tf.sqrt(tf.math.divide_no_nan(tf.reduce_sum(centred * centred, axis=0), count))


def _sq_distances(a, b):
    """Squared L2 distances between the rows of ``a`` [p, d] and ``b`` [q, d] -> [p, q] (Gram form)."""
    import tensorflow as tf

    aa = tf.reduce_sum(a * a, axis=1)
    bb = tf.reduce_sum(b * b, axis=1)
    return tf.maximum(aa[:, None] + bb[None, :] - 2.0 * tf.matmul(a, b, transpose_b=True), 0.0)


def _self_sq_distances(rows):
    """Pairwise squared distances of one set of rows, with an exact zero diagonal."""
    import tensorflow as tf

    dist = _sq_distances(rows, rows)
    return tf.linalg.set_diag(dist, tf.zeros([tf.shape(rows)[0]], rows.dtype))


def _sum_smallest_off_diagonal(dist, k):
    """Per row of a square matrix, the sum of its ``k`` smallest entries off the diagonal."""
    import tensorflow as tf

    n = tf.shape(dist)[0]
    k = tf.clip_by_value(k, 0, tf.maximum(n - 1, 0))
    inf = tf.constant(np.inf, dist.dtype)
    ordered = tf.sort(tf.where(tf.eye(n, dtype=tf.bool), inf, dist), axis=1)
    return tf.reduce_sum(tf.where((tf.range(n) < k)[None, :], ordered, tf.zeros_like(ordered)), axis=1)


class _UpdateAttack(Attack):
    """Base of the model-poisoning attacks: ``craft`` returns the new own
    rows (``[K, d]``, or one ``[d]`` row sent by every attacker)."""

    poisons_updates: ClassVar[bool] = True

    def craft(self, updates, own, benign, ctx):
        raise NotImplementedError

    def poison_updates(self, updates, own, benign, ctx):
        import tensorflow as tf

        updates = tf.convert_to_tensor(updates)
        own = tf.convert_to_tensor(own, tf.bool)
        benign = tf.convert_to_tensor(benign, tf.bool)

        def attacked():
            crafted = tf.cast(self.craft(updates, own, benign, ctx), updates.dtype)
            return tf.where(own[:, None], tf.broadcast_to(crafted, tf.shape(updates)), updates)

        return tf.cond(tf.reduce_any(own), attacked, lambda: updates)


# --------------------------------------------------------------------------
# Data poisoning


def _rate(hits: np.ndarray) -> float:
    return float(np.mean(hits)) if hits.size else float("nan")


@attrs.frozen
class LabelFlip(Attack):
    """Label flipping (Tolpegin et al. 2020, "Data Poisoning Attacks Against
    Federated Learning Systems", ESORICS).

    Modes: ``targeted`` relabels samples of class ``source`` as ``target``
    (the paper's attack); ``all_to_one`` relabels every sample as ``target``;
    ``random`` relabels each sample as a uniformly drawn other class.
    ``poison_ratio`` is the share of eligible samples flipped, drawn anew
    each round from the client's stateless seed.

    Test metrics: mode ``targeted`` reports ``source_recall`` (share of
    source-class test samples classified as the source, the paper's measure)
    and ``flip_rate`` (share of them classified as the target); mode
    ``all_to_one`` reports ``flip_rate`` over the test samples of every other
    class; mode ``random`` reports nothing (clean accuracy says it all).
    """

    poisons_data = True

    source: int | None = param(None, doc="class whose samples are relabelled (mode targeted)", ge=0)
    target: int | None = param(None, doc="class the flipped samples get (modes targeted, all_to_one)", ge=0)
    mode: str = param("targeted", doc="which labels flip", choices=("targeted", "all_to_one", "random"))
    poison_ratio: float = param(1.0, doc="share of eligible samples flipped", gt=0, le=1)

    def check(self, facts):
        problems = []
        needs = {"targeted": ("source", "target"), "all_to_one": ("target",), "random": ()}[self.mode]
        for name in needs:
            if getattr(self, name) is None:
                problems.append(f"label_flip mode '{self.mode}' needs '{name}'")
        for name in ("source", "target"):
            value = getattr(self, name)
            if value is not None and value >= facts.num_classes:
                problems.append(
                    f"label_flip {name} {value} is not a class of this dataset (classes 0..{facts.num_classes - 1})"
                )
        if self.mode == "targeted" and self.source is not None and self.source == self.target:
            problems.append("label_flip source and target are the same class: nothing would flip")
        return problems

    def poison_data(self, x, y, seed, facts, member):
        import tensorflow as tf

        n = tf.shape(y)[0]
        chosen = tf.random.stateless_uniform([n], seed) < self.poison_ratio
        if self.mode == "targeted":
            flip, new = chosen & tf.equal(y, self.source), tf.fill([n], tf.constant(self.target, y.dtype))
        elif self.mode == "all_to_one":
            flip, new = chosen, tf.fill([n], tf.constant(self.target, y.dtype))
        else:
            offset = tf.random.stateless_uniform(
                [n], seed + 1, minval=1, maxval=facts.num_classes, dtype=tf.int32
            )
            flip, new = chosen, (y + tf.cast(offset, y.dtype)) % facts.num_classes
        return x, tf.where(flip, new, y)

    def test_metrics(self, predict, test_x, test_y, facts):
        if self.mode == "targeted":
            pick = test_y == self.source
            if not pick.any():
                return {"source_recall": float("nan"), "flip_rate": float("nan")}
            predicted = np.argmax(predict(test_x[pick]), axis=1)
            return {"source_recall": _rate(predicted == self.source), "flip_rate": _rate(predicted == self.target)}
        if self.mode == "all_to_one":
            pick = test_y != self.target
            if not pick.any():
                return {"flip_rate": float("nan")}
            return {"flip_rate": _rate(np.argmax(predict(test_x[pick]), axis=1) == self.target)}
        return {}


def _poisoned_rows(n, ratio: float, seed):
    """In TF: the samples a data-poisoning attack changes, exactly
    ``round(ratio * n)`` of ``n`` drawn from the stateless seed -> (bool
    ``[n]``, int32 ``[n]`` ranks of a random permutation: the chosen samples
    are those of rank below the count)."""
    import tensorflow as tf

    count = tf.cast(tf.round(ratio * tf.cast(n, tf.float32)), tf.int32)
    ranks = tf.math.invert_permutation(tf.argsort(tf.random.stateless_uniform([n], seed)))
    return ranks < count, ranks


def _target_problems(name: str, target: int, facts) -> list[str]:
    if target >= facts.num_classes:
        return [f"{name} target {target} is not a class of this dataset (classes 0..{facts.num_classes - 1})"]
    return []


@attrs.frozen
class Backdoor(Attack):
    """Backdoor by trigger-stamped samples relabelled to ``target``.

    ``trigger`` is a trigger plugin (``fedarena plugins trigger`` lists
    them): ``pixel`` (BadNets patch, the default), ``blend`` (blended
    pattern, Chen et al. 2017) or ``dba`` (distributed trigger, Xie et al.
    2020), e.g. ``backdoor(target = 0, trigger = pixel(size = 4))``.  An
    attacker stamps the part of the trigger its index in the attack group
    picks (only DBA has several parts); evaluation stamps the whole trigger.

    ``poison_ratio``: exactly ``round(poison_ratio * n)`` of a malicious
    client's ``n`` samples, drawn anew each round from its stateless seed,
    get the trigger and the target label (samples of any class, as BadNets).

    ``boost`` > 1 also scales the attacker's own update rows at the server by
    ``boost`` (explicit boosting, Bhagoji et al. 2019; the scaling of
    Bagdasaryan et al. 2020): averaging with benign rows divides a single
    attacker's contribution by about the number of clients per round, and
    boosting undoes that.  With ``boost`` = 1 the attack touches data only
    (``poisons_updates`` is then False).

    Test metric ``attack_success_rate``: share of the test samples whose true
    label is not ``target`` that the model classifies as ``target`` once
    stamped with the full trigger.
    """

    poisons_data = True

    target: int = param(doc="class every triggered sample is labelled as", ge=0)
    trigger: Trigger = param(Pixel(), doc="the trigger stamped on poisoned samples, e.g. pixel(size = 3)",
                             kind="trigger")
    poison_ratio: float = param(0.3, doc="share of each malicious client's samples stamped and relabelled", gt=0, le=1)
    boost: float = param(1.0, doc="factor applied to the attackers' own update rows at the server (1 = none)", gt=0)

    @property
    def poisons_updates(self) -> bool:  # type: ignore[override]
        return self.boost != 1.0

    @property
    def _name(self) -> str:
        return type(self).__name__.lower()

    def check(self, facts):
        problems = _target_problems(self._name, self.target, facts)
        return problems + [f"{self._name} trigger: {message}" for message in self.trigger.check(facts)]

    def poison_data(self, x, y, seed, facts, member):
        import tensorflow as tf

        shape = tuple(facts.input_shape)
        chosen, _ = _poisoned_rows(tf.shape(y)[0], self.poison_ratio, seed)
        stamped = self.trigger.stamp_member(x, member, shape)
        select = tf.reshape(chosen, [-1] + [1] * len(shape))
        return tf.where(select, stamped, x), tf.where(chosen, tf.constant(self.target, y.dtype), y)

    def poison_updates(self, updates, own, benign, ctx):
        import tensorflow as tf

        return tf.where(own[:, None], updates * self.boost, updates)

    def test_metrics(self, predict, test_x, test_y, facts):
        pick = test_y != self.target
        if not pick.any():
            return {"attack_success_rate": float("nan")}
        predicted = np.argmax(predict(self.trigger.stamp(test_x[pick])), axis=1)
        return {"attack_success_rate": _rate(predicted == self.target)}


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
        problems = _target_problems("edge_case", self.target, facts)
        try:
            read_edge_set(facts.resolve(self.path), facts.input_shape)
        except ValueError as error:
            problems.append(f"edge_case: {error}")
        return problems

    def poison_data(self, x, y, seed, facts, member):
        import tensorflow as tf

        edge_train, _ = self.edge_set(facts)
        count = edge_train.shape[0]
        chosen, ranks = _poisoned_rows(tf.shape(y)[0], self.poison_ratio, seed)
        # The chosen samples (ranks 0 .. k - 1) take x_train in a random order.
        order = tf.argsort(tf.random.stateless_uniform([count], tf.random.experimental.stateless_fold_in(seed, 1)))
        edge = tf.gather(tf.constant(edge_train), tf.gather(order, ranks % count))
        select = tf.reshape(chosen, [-1] + [1] * len(facts.input_shape))
        return tf.where(select, edge, x), tf.where(chosen, tf.constant(self.target, y.dtype), y)

    def poison_updates(self, updates, own, benign, ctx):
        import tensorflow as tf

        rows = updates * self.boost
        if self.norm_bound is not None:
            norms = tf.norm(rows, axis=1, keepdims=True)
            rows = rows * tf.minimum(1.0, tf.math.divide_no_nan(tf.cast(self.norm_bound, rows.dtype), norms))
        return tf.where(own[:, None], rows, updates)

    def test_metrics(self, predict, test_x, test_y, facts):
        _, edge_test = self.edge_set(facts)
        predicted = np.argmax(predict(edge_test), axis=1)
        return {"attack_success_rate": _rate(predicted == self.target)}


@attrs.frozen
class Neurotoxin(Backdoor):
    """Neurotoxin (Zhang et al. 2022, "Neurotoxin: Durable Backdoors in
    Federated Learning", ICML): a `Backdoor` (same parameters, trigger included)
    whose update is restricted to the coordinates benign clients change
    least, so that later benign rounds overwrite the backdoor less.

    The attacker zeroes, in its own update rows, the top-``ratio`` share of
    coordinates by magnitude of a benign update direction, then applies
    ``boost``.  ``knowledge``: ``"history"`` (default, the paper's form) takes
    the last global update, the difference between this round's and the
    previous round's global model (kept in the state; nothing is masked in
    the first round seen); ``"omniscient"`` takes the mean of this round's
    benign rows.  ``ratio`` 0.05 matches ``gradmask_ratio`` 0.95 (keep the
    bottom 95 %) in the authors' example command.

    Deviations: the paper projects every local gradient step onto the mask
    (projected gradient descent) and clips the update's norm; here the mask
    is applied once to the trained update at the server stage, and no norm
    clipping is done.  The mask is global over all coordinates (the
    authors' ``aggregate_all_layer`` setting), not per layer.
    """

    poisons_updates: ClassVar[bool] = True  # type: ignore[assignment]

    ratio: float = param(0.05, doc="share of coordinates (largest benign change) the attacker leaves alone", ge=0, lt=1)
    knowledge: str = param("history", doc="benign direction: 'history' last global update, 'omniscient' benign mean",
                           choices=("history", "omniscient"))

    def initial_state(self, dim, facts):
        if self.knowledge != "history":
            return {}
        return {"previous_global": np.zeros([dim], np.float32), "has_previous": np.int32(0)}

    def keep_mask(self, direction, valid=True):
        """1 on the coordinates the attacker may change, 0 on the top-``ratio``
        by magnitude of ``direction`` [d] (all 1 when ``valid`` is False)."""
        import tensorflow as tf

        dim = int(direction.shape[0])
        k = int(round(self.ratio * dim))
        if k == 0:
            return tf.ones([dim], direction.dtype)
        top = tf.math.top_k(tf.abs(direction), k=k).indices
        masked = tf.scatter_nd(top[:, None], tf.ones([k], direction.dtype), [dim])
        return tf.where(valid, 1.0 - masked, tf.ones_like(masked))

    def poison_updates_with_state(self, updates, own, benign, ctx, state):
        import tensorflow as tf

        updates = tf.convert_to_tensor(updates)
        if self.knowledge == "history":
            previous = tf.convert_to_tensor(state["previous_global"])
            keep = self.keep_mask(ctx.global_weights - previous, tf.not_equal(state["has_previous"], 0))
            state = {"previous_global": tf.identity(ctx.global_weights),
                     "has_previous": tf.ones_like(state["has_previous"])}
        else:
            keep = self.keep_mask(_mean(tf.boolean_mask(updates, benign)))
        return tf.where(own[:, None], updates * keep[None, :] * self.boost, updates), state

    def poison_updates(self, updates, own, benign, ctx):
        if self.knowledge == "history":
            raise TypeError("neurotoxin with knowledge 'history' keeps state: call poison_updates_with_state")
        return self.poison_updates_with_state(updates, own, benign, ctx, {})[0]


# --------------------------------------------------------------------------
# Model poisoning


@attrs.frozen
class SignFlip(_UpdateAttack):
    """Sign flipping, in the update-replacement forms (ALGORITHMS.md names
    the four meanings found in practice).

    ``variant``: ``"own"`` (default) sends the attacker's own update negated;
    ``"benign_mean"`` sends the negated mean of the reference updates
    (``knowledge``); ``"scaled"`` sends ``-scale`` times its own update
    (default factor -4, the value of the sign-flipping attack in Li et al.
    2019, "RSA", AAAI).  Gradient negation during
    local training -- the fourth meaning -- changes local training, not the
    submitted update, and is not provided here.
    """

    variant: str = param("own", doc="what is negated", choices=("own", "benign_mean", "scaled"))
    scale: float = param(4.0, doc="factor of the 'scaled' variant: the row sent is -scale * own update", gt=0)
    knowledge: str = param("omniscient", doc=_KNOWLEDGE_DOC + " (variant benign_mean)", choices=KNOWLEDGE)

    def craft(self, updates, own, benign, ctx):
        if self.variant == "own":
            return -updates
        if self.variant == "scaled":
            return -self.scale * updates
        return -_mean(_reference(updates, own, benign, self.knowledge))


@attrs.frozen
class Gaussian(_UpdateAttack):
    """Gaussian attack (Blanchard et al. 2017, "Machine Learning with
    Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS): each
    attacker sends an independent draw from ``N(0, sigma^2 I)``; the Krum
    paper's sigma is 200.  Draws come from the round's stateless seed."""

    sigma: float = param(200.0, doc="standard deviation of every coordinate", gt=0)

    def craft(self, updates, own, benign, ctx):
        import tensorflow as tf

        seed = tf.random.experimental.stateless_fold_in(tf.cast(ctx.seed, tf.int64), 0x6A55)
        return self.sigma * tf.random.stateless_normal(tf.shape(updates), seed, dtype=updates.dtype)


@attrs.frozen
class Scaling(_UpdateAttack):
    """Model replacement by scaling (Bagdasaryan et al. 2020, "How To
    Backdoor Federated Learning", AISTATS): the attacker submits
    ``gamma * (X - G) + G`` for its target model ``X``, i.e. its update
    scaled by ``gamma``; ``gamma = n / eta`` (clients per round over the
    server learning rate) unless given, which replaces the global model by
    ``X`` under FedAvg with equal weights when the benign updates cancel.

    The paper has one attacker per round.  With several, each scales its own
    update by ``gamma``; ``share = true`` divides ``gamma`` by the number of
    this attack's rows in the round, so that together they replace the model
    once.  The attacker's target model comes from its local training (pair
    it with a data-poisoning attack's data via a second attack group, or use
    ``backdoor(boost = ...)``, which is this scaling on backdoored updates).
    """

    gamma: float | None = param(None, doc="scale factor; default clients_per_round / server_learning_rate", gt=0)
    share: bool = param(False, doc="divide gamma among this attack's rows in the round")

    def check(self, facts):
        if self.gamma is None and facts.server_learning_rate <= 0:
            return ["scaling needs 'gamma' when the server learning rate is 0"]
        return []

    def factor(self, facts) -> float:
        return float(self.gamma) if self.gamma is not None else facts.clients_per_round / facts.server_learning_rate

    def craft(self, updates, own, benign, ctx):
        import tensorflow as tf

        gamma = tf.constant(self.factor(ctx.facts), updates.dtype)
        if self.share:
            gamma = gamma / tf.reduce_sum(tf.cast(own, updates.dtype))
        return gamma * updates


@attrs.frozen
class ALIE(_UpdateAttack):
    """A Little Is Enough (Baruch et al. 2019, NeurIPS).

    Every attacker sends ``mean + sign * z * std`` of the reference updates,
    per coordinate (``std`` is the population standard deviation, ddof 0).
    ``sign`` -1 (default) is the paper's ``mean - z * std``; +1 is the other
    form seen in public code.  Unless ``z`` is given it is `alie_z(n, m,
    variant)` with ``n`` = clients per round and ``m`` =
    `expected_attackers` (the scenario's attackers scaled by the sampled
    share).  ``knowledge = "partial"`` estimates mean and std from the
    attackers' own pre-attack updates, as attackers without access to benign
    clients must; the default reads the benign rows.
    """

    z: float | None = param(None, doc="z; default from clients per round and expected attackers per round")
    variant: str = param("paper", doc="formula for z when not given", choices=("paper", "library"))
    sign: int = param(-1, doc="-1: mean - z * std (the paper); +1: mean + z * std", choices=(-1, 1))
    knowledge: str = param("omniscient", doc=_KNOWLEDGE_DOC, choices=KNOWLEDGE)

    def z_value(self, facts) -> float:
        if self.z is not None:
            return float(self.z)
        return alie_z(facts.clients_per_round, expected_attackers(facts), self.variant)

    def check(self, facts):
        if self.z is not None:
            return []
        try:
            self.z_value(facts)
        except ValueError as error:
            return [f"alie: {error}; give 'z' explicitly"]
        return []

    def craft(self, updates, own, benign, ctx):
        reference = _reference(updates, own, benign, self.knowledge)
        return _mean(reference) + self.sign * self.z_value(ctx.facts) * _std(reference)


@attrs.frozen
class IPM(_UpdateAttack):
    """Inner product manipulation (Xie et al. 2020, "Fall of Empires:
    Breaking Byzantine-tolerant SGD by Inner Product Manipulation", UAI):
    every attacker sends ``-epsilon`` times the mean of the reference
    updates.  The paper: epsilon = 0.1 defeats Krum, epsilon = 100 the mean."""

    epsilon: float = param(0.1, doc="scale of the negated reference mean", gt=0)
    knowledge: str = param("omniscient", doc=_KNOWLEDGE_DOC, choices=KNOWLEDGE)

    def craft(self, updates, own, benign, ctx):
        return -self.epsilon * _mean(_reference(updates, own, benign, self.knowledge))


@attrs.frozen
class FangKrum(_UpdateAttack):
    """Fang et al.'s attack on Krum (Fang et al. 2020, "Local Model
    Poisoning Attacks to Byzantine-Robust Federated Learning", USENIX
    Security), in update space.

    ``s = sign(sum of reference updates)``; the crafted update is
    ``-lambda * s`` and every attacker of the group sends a copy of it.
    ``lambda`` starts at ``1 / ((n - 2m - 1) sqrt(d)) * min_i sum of
    distances from reference update i to its n - m - 2 nearest reference
    updates + 1 / sqrt(d) * max_i ||reference update i||`` (n rows in the
    round, m of them this attack's) and is halved until Krum, run on the
    m crafted copies plus the reference updates with parameter ``f``
    (default m) and ``n' - f - 2`` neighbours by squared distance (``n'`` =
    m + reference rows; rows of other attack groups take no part), picks a
    crafted copy, or until ``lambda < threshold`` (1e-5; that last, tiny
    lambda is then used).

    ``knowledge = "partial"``: the attackers' pre-attack updates stand in
    for the benign ones, in the direction, the bound and the simulated Krum
    (as the paper does).  Choices where the paper is silent: the
    denominator is clamped to at least 1 and the neighbour count to the
    reference rows available (both matter only with partial knowledge);
    ties in the simulated Krum go to the crafted update, so with too few
    rows for Krum (``n' <= f + 2``) the starting lambda is kept.
    """

    f: int | None = param(None, doc="Krum's f assumed by the attacker; default this attack's rows in the round", ge=0)
    knowledge: str = param("omniscient", doc=_KNOWLEDGE_DOC, choices=KNOWLEDGE)
    threshold: float = param(1e-5, doc="lambda below which the search stops", gt=0)

    def check(self, facts):
        if self.f is not None and self.f >= facts.clients_per_round:
            return [f"fang_krum f = {self.f} must be below clients per round ({facts.clients_per_round})"]
        return []

    def craft(self, updates, own, benign, ctx):
        import tensorflow as tf

        dtype = tf.float64
        reference = tf.cast(_reference(updates, own, benign, self.knowledge), dtype)
        dim = float(updates.shape[1])
        n = tf.shape(updates)[0]
        m = tf.reduce_sum(tf.cast(own, tf.int32))
        r = tf.shape(reference)[0]
        direction = -tf.sign(tf.reduce_sum(reference, axis=0))  # against the benign direction

        # Starting lambda (an upper bound on the one Krum still accepts).
        ref_dist = _self_sq_distances(reference)
        neighbours = tf.clip_by_value(n - m - 2, 0, tf.maximum(r - 1, 0))
        summed = _sum_smallest_off_diagonal(tf.sqrt(ref_dist), neighbours)
        denominator = tf.cast(tf.maximum(n - 2 * m - 1, 1), dtype)
        lam0 = (tf.reduce_min(summed) / denominator + tf.reduce_max(tf.norm(reference, axis=1))) / math.sqrt(dim)
        lam0 = tf.where(tf.math.is_finite(lam0), lam0, tf.zeros_like(lam0))

        # Squared distance from lambda * direction to each reference row: a quadratic in lambda.
        dd = tf.reduce_sum(direction * direction)
        dr = tf.linalg.matvec(reference, direction)
        rr = tf.reduce_sum(reference * reference, axis=1)
        f = m if self.f is None else tf.constant(self.f, tf.int32)
        krum_neighbours = m + r - f - 2

        def crafted_selected(lam):
            to_ref = tf.maximum(lam * lam * dd - 2.0 * lam * dr + rr, 0.0)  # [r]
            top = tf.concat([tf.zeros([m, m], dtype), tf.tile(to_ref[None, :], [m, 1])], axis=1)
            bottom = tf.concat([tf.tile(to_ref[:, None], [1, m]), ref_dist], axis=1)
            scores = _sum_smallest_off_diagonal(tf.concat([top, bottom], axis=0), krum_neighbours)
            best_reference = tf.reduce_min(tf.concat([scores[m:], tf.constant([np.inf], dtype)], axis=0))
            return tf.reduce_min(scores[:m]) <= best_reference

        lam = tf.while_loop(
            lambda lam: tf.logical_and(lam >= self.threshold, tf.logical_not(crafted_selected(lam))),
            lambda lam: [lam / 2.0],
            [lam0],
        )
        lam = lam[0] if isinstance(lam, (list, tuple)) else lam
        return lam * direction


@attrs.frozen
class FangTrim(_UpdateAttack):
    """Fang et al.'s attack on trimmed mean and median (Fang et al. 2020,
    USENIX Security), in update space; each attacker samples its own row.

    Full knowledge (``"omniscient"``): per coordinate ``j``, ``s_j`` = sign of
    the benign sum; where ``s_j > 0`` each attacker samples uniformly below
    the benign minimum, in ``[min / b, min]`` if min > 0 else ``[b * min,
    min]``; elsewhere above the benign maximum, in ``[max, b * max]`` if
    max > 0 else between ``max`` and ``max / b`` (nearer zero).  Partial knowledge: with ``mu`` and
    ``sigma`` (population std) of the attackers' pre-attack updates and
    ``s`` the sign of ``mu``, sample in ``[mu - 4 sigma, mu - 3 sigma]``
    where ``s_j > 0``, else in ``[mu + 3 sigma, mu + 4 sigma]``.
    Coordinates with ``s_j = 0`` are treated as decreasing (pushed up).
    """

    knowledge: str = param("omniscient", doc=_KNOWLEDGE_DOC, choices=KNOWLEDGE)
    b: float = param(2.0, doc="how far beyond the benign extreme samples may go (full knowledge)", gt=1)

    def craft(self, updates, own, benign, ctx):
        import tensorflow as tf

        reference = _reference(updates, own, benign, self.knowledge)
        seed = tf.random.experimental.stateless_fold_in(tf.cast(ctx.seed, tf.int64), 0xFA9)
        u = tf.random.stateless_uniform(tf.shape(updates), seed, dtype=updates.dtype)
        if self.knowledge == "omniscient":
            s = tf.sign(tf.reduce_sum(reference, axis=0))
            high, low = tf.reduce_max(reference, axis=0), tf.reduce_min(reference, axis=0)
            down_lo, down_hi = tf.where(low > 0, low / self.b, low * self.b), low
            up_lo, up_hi = high, tf.where(high > 0, high * self.b, high / self.b)
        else:
            mu, sigma = _mean(reference), _std(reference)
            s = tf.sign(mu)
            down_lo, down_hi = mu - 4.0 * sigma, mu - 3.0 * sigma
            up_lo, up_hi = mu + 3.0 * sigma, mu + 4.0 * sigma
        lo = tf.where(s > 0, down_lo, up_lo)
        hi = tf.where(s > 0, down_hi, up_hi)
        return lo[None, :] + u * (hi - lo)[None, :]


def _perturbation(mean, reference, kind):
    import tensorflow as tf

    if kind == "unit_vec":
        return tf.math.divide_no_nan(mean, tf.norm(mean))
    if kind == "std":
        return _std(reference)
    return tf.sign(mean)


def _largest_gamma(ok, start, tolerance):
    """The binary search of Shejwalkar & Houmansadr: gamma starts at
    ``start`` with step ``start``; after each test the step halves and gamma
    moves up by half the step on success, down on failure; the last success
    is returned (0 if none) once gamma and it are within ``tolerance``."""
    import tensorflow as tf

    def body(gamma, step, best):
        good = ok(gamma)
        best = tf.where(good, gamma, best)
        gamma = tf.where(good, gamma + step / 2.0, gamma - step / 2.0)
        return gamma, step / 2.0, best

    start = tf.constant(start, tf.float64)
    _, _, best = tf.while_loop(
        lambda gamma, step, best: tf.abs(best - gamma) > tolerance,
        body,
        [start, start, tf.constant(0.0, tf.float64)],
    )
    return best


class _MinMaxSum(_UpdateAttack):
    """Shared part of Min-Max and Min-Sum: crafted = mean - gamma * p."""

    def _within(self, dist_to_ref, ref_dist):
        raise NotImplementedError

    def craft(self, updates, own, benign, ctx):
        import tensorflow as tf

        reference = tf.cast(_reference(updates, own, benign, self.knowledge), tf.float64)
        mean = _mean(reference)
        p = _perturbation(mean, reference, self.perturbation)
        ref_dist = _self_sq_distances(reference)
        # ||mean - gamma p - ref_i||^2 = a_i - 2 gamma c_i + gamma^2 pp
        diff = mean[None, :] - reference
        a = tf.reduce_sum(diff * diff, axis=1)
        c = tf.linalg.matvec(diff, p)
        pp = tf.reduce_sum(p * p)
        gamma = _largest_gamma(
            lambda g: self._within(a - 2.0 * g * c + g * g * pp, ref_dist), self.gamma_init, self.tolerance
        )
        return mean - gamma * p


_PERTURBATION_DOC = "p: 'unit_vec' mean / ||mean||, 'std' coordinate std, 'sign' sign of the mean"


@attrs.frozen
class MinMax(_MinMaxSum):
    """Min-Max (Shejwalkar & Houmansadr 2021, "Manipulating the Byzantine:
    Optimizing Model Poisoning Attacks and Defenses for Federated Learning",
    NDSS), AGR-agnostic form.

    Every attacker sends ``mean - gamma * p`` of the reference updates with
    the largest ``gamma`` (binary search from ``gamma_init`` = 10 to
    ``tolerance`` 1e-5) such that its largest distance to a reference update
    is at most the largest distance between two reference updates.
    """

    perturbation: str = param("unit_vec", doc=_PERTURBATION_DOC, choices=("unit_vec", "std", "sign"))
    knowledge: str = param("omniscient", doc=_KNOWLEDGE_DOC, choices=KNOWLEDGE)
    gamma_init: float = param(10.0, doc="first gamma tried (and the search step)", gt=0)
    tolerance: float = param(1e-5, doc="search stops when the step is this fine", gt=0)

    def _within(self, dist_to_ref, ref_dist):
        import tensorflow as tf

        return tf.reduce_max(dist_to_ref) <= tf.reduce_max(ref_dist)


@attrs.frozen
class MinSum(_MinMaxSum):
    """Min-Sum (Shejwalkar & Houmansadr 2021, NDSS), AGR-agnostic form.

    As `MinMax`, but the condition is on sums of squared distances: the
    crafted update's sum to all reference updates must not exceed
    ``threshold`` of the reference updates' own sums: ``"max"`` (default,
    the paper's text: the largest sum of any reference update) or ``"min"``
    (the authors' notebook: the smallest, a stealthier attack).
    """

    perturbation: str = param("unit_vec", doc=_PERTURBATION_DOC, choices=("unit_vec", "std", "sign"))
    knowledge: str = param("omniscient", doc=_KNOWLEDGE_DOC, choices=KNOWLEDGE)
    threshold: str = param("max", doc="which reference score bounds the crafted one", choices=("max", "min"))
    gamma_init: float = param(10.0, doc="first gamma tried (and the search step)", gt=0)
    tolerance: float = param(1e-5, doc="search stops when the step is this fine", gt=0)

    def _within(self, dist_to_ref, ref_dist):
        import tensorflow as tf

        scores = tf.reduce_sum(ref_dist, axis=1)
        bound = tf.reduce_max(scores) if self.threshold == "max" else tf.reduce_min(scores)
        return tf.reduce_sum(dist_to_ref) <= bound


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("label_flip", LabelFlip)
    registry.add("backdoor", Backdoor)
    registry.add("neurotoxin", Neurotoxin)
    registry.add("edge_case", EdgeCase)
    registry.add("sign_flip", SignFlip)
    registry.add("gaussian", Gaussian)
    registry.add("scaling", Scaling)
    registry.add("alie", ALIE)
    registry.add("ipm", IPM)
    registry.add("fang_krum", FangKrum)
    registry.add("fang_trim", FangTrim)
    registry.add("min_max", MinMax)
    registry.add("min_sum", MinSum)
