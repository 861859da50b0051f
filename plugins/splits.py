"""Built-in splits: how the training set is divided among clients.

Every split is a function of the labels, the number of clients and the
``rng`` it is given (the engine passes ``np.random.default_rng([seed, 0])``),
and returns one sorted int64 index array per client.  Except where a split
says otherwise (``natural`` with ``mode = "sample"``), the arrays partition
the training set exactly: disjoint, and covering every sample.

No client is left empty when there are at least as many samples as
clients: a split that leaves a client empty moves one sample (drawn from
``rng``) to it from the largest client (the lowest-numbered among equals),
until none is empty (`fill_empty`).  With fewer samples than clients, the
last clients stay empty.
"""

from __future__ import annotations

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Facts, Split
from fedarena.core.plugin.params import param


def fill_empty(parts: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Give each empty client one sample from the currently largest client,
    while that client has more than one; then sort every part."""
    parts = [np.asarray(p, np.int64) for p in parts]
    sizes = np.array([len(p) for p in parts])
    for empty in np.flatnonzero(sizes == 0):
        donor = int(np.argmax(sizes))
        if sizes[donor] <= 1:
            break
        taken = int(rng.integers(sizes[donor]))
        parts[empty] = parts[donor][taken : taken + 1]
        parts[donor] = np.delete(parts[donor], taken)
        sizes[empty], sizes[donor] = 1, sizes[donor] - 1
    return [np.sort(p) for p in parts]


def dirichlet_weights(rng: np.random.Generator, alpha: float, k: int) -> np.ndarray:
    """One draw from the symmetric Dirichlet(alpha) over k outcomes.  For very
    small alpha every gamma variate can underflow to zero; the draw is then
    (as its limit) all mass on one outcome picked uniformly."""
    weights = rng.dirichlet(np.full(k, float(alpha)))
    if not np.all(np.isfinite(weights)) or weights.sum() <= 0:
        weights = np.zeros(k)
        weights[rng.integers(k)] = 1.0
    return weights


def cut(indices: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
    """Deal ``indices`` in order into ``len(weights)`` consecutive pieces with
    sizes proportional to ``weights`` (cut points floor(cumulative share * n))."""
    shares = np.cumsum(weights) / np.sum(weights)
    points = np.floor(shares[:-1] * len(indices)).astype(np.int64)
    return np.split(indices, points)


def _labels(labels) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if labels.size and labels.min() < 0:
        raise RunError(f"labels must be non-negative class indices, found {labels.min()}")
    return labels.astype(np.int64)


@attrs.frozen
class IID(Split):
    """Independent and identically distributed: a seeded shuffle cut into equal parts."""

    paper = "none (standard IID split)"

    def partition(self, labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
        return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), num_clients)]


@attrs.frozen
class Dirichlet(Split):
    """Label skew: each class dealt over the clients in Dirichlet(alpha) proportions (Hsu et al. 2019).

    For each class, proportions over the clients are drawn from the symmetric Dir(alpha), and that
    class's samples (shuffled) are dealt to the clients in those proportions.
    Small alpha: each client holds few classes; large alpha: close to IID.

    The Dirichlet label-skew split of Hsu, Qi & Brown 2019 ("Measuring the
    effects of non-identical data distribution for federated visual
    classification").  Note: Hsu et al. draw each *client's* class mix
    q ~ Dir(alpha p); this is the per-*class* form (proportions of a class
    over clients) used by Yurochkin et al. 2019, Wang et al. 2020 (FedMA)
    and Li et al. 2022 (NIID-Bench), which keeps every sample assigned.
    Client sizes therefore vary.  Empty clients get one sample each (see the
    module's rule) rather than redrawing until a minimum size is met."""

    paper = "Hsu et al. 2019, arXiv:1909.06335"

    alpha: float = param(0.5, doc="Dirichlet concentration: smaller is more skewed, large is nearly IID", gt=0)

    def partition(self, labels, num_clients, rng):
        labels = _labels(labels)
        pieces: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            for client, piece in enumerate(cut(members, dirichlet_weights(rng, self.alpha, num_clients))):
                pieces[client].append(piece)
        parts = [np.concatenate(p) if p else np.zeros(0, np.int64) for p in pieces]
        return fill_empty(parts, rng)


def apportion(total: int, sizes: np.ndarray) -> np.ndarray:
    """Integers summing to ``total``, one per entry of ``sizes``, each in
    [1, size] and as close to proportional as the largest-remainder method
    makes them.  Needs len(sizes) <= total <= sum(sizes)."""
    sizes = np.asarray(sizes, np.int64)
    quota = total * sizes / sizes.sum()
    alloc = np.clip(np.floor(quota).astype(np.int64), 1, sizes)
    while alloc.sum() < total:
        room = np.where(alloc < sizes, quota - alloc, -np.inf)
        alloc[int(np.argmax(room))] += 1
    while alloc.sum() > total:
        spare = np.where(alloc > 1, quota - alloc, np.inf)
        alloc[int(np.argmin(spare))] -= 1
    return alloc


@attrs.frozen
class Shards(Split):
    """Label-sorted shards, per_client to a client (McMahan et al. 2017).

    Pathological non-IID split of "Communication-efficient learning of deep
    networks from decentralized data" (MNIST: 200 shards of 300 for 100 clients, 2 each): sort the samples by label,
    cut them into ``num_clients * per_client`` shards, and give each client
    ``per_client`` shards at random.

    Deviation: shards never straddle two labels.  Each class is cut into a
    number of shards proportional to its size (at least one; largest
    remainders), so shard sizes differ slightly and every client holds at
    most ``per_client`` labels; McMahan et al. cut the label-sorted list
    into equal shards, so a few straddle two labels.  Within a label, the
    order is random.  Needs at least as many shards as classes; with fewer
    samples than shards, every shard is one sample and some clients get
    fewer shards."""

    paper = "McMahan et al. 2017, AISTATS"

    per_client: int = param(2, doc="shards per client (each client holds at most this many labels)", ge=1)

    def check(self, facts: Facts) -> list[str]:
        return self._enough(facts.num_clients, facts.num_classes)

    def _enough(self, num_clients: int, num_classes: int) -> list[str]:
        shards = num_clients * self.per_client
        if shards < num_classes:
            return [f"shards: {num_clients} clients x per_client {self.per_client} = {shards} shards, fewer than "
                    f"the {num_classes} classes; every class needs a shard"]
        return []

    def partition(self, labels, num_clients, rng):
        labels = _labels(labels)
        classes = np.unique(labels)
        problems = self._enough(num_clients, len(classes))
        if problems:
            raise RunError(problems[0])
        shuffled = rng.permutation(len(labels))
        ordered = shuffled[np.argsort(labels[shuffled], kind="stable")]  # by label, random within one
        sizes = np.array([np.count_nonzero(labels == c) for c in classes])
        total = min(num_clients * self.per_client, len(labels))
        counts = apportion(total, sizes)
        shards = []
        for members, count in zip(np.split(ordered, np.cumsum(sizes)[:-1]), counts):
            shards += np.array_split(members, count)
        order = rng.permutation(len(shards))
        parts = [np.concatenate([shards[s] for s in order[client::num_clients]] or [np.zeros(0, np.int64)])
                 for client in range(num_clients)]
        return fill_empty(parts, rng)


@attrs.frozen
class Natural(Split):
    """The dataset's own clients: its writers (e.g. ``emnist``).

    The dataset's training labels carry each sample's writer.

    ``mode = "merge"`` (default): writers are shuffled and dealt round-robin
    to the clients, so each client holds whole writers (one each when
    clients = writers) and every sample is used.  ``mode = "sample"``: that
    many writers are drawn at random, one per client, and the other
    writers' samples are not used (the usual practice with Federated
    EMNIST, e.g. Reddi et al. 2021) -- then the parts do not cover the
    training set.  A dataset without writers is refused when the scenario
    is checked (its `DatasetInfo.has_writers`); more clients than writers
    is an error when the data is loaded."""

    paper = "none (the dataset's writers); mode sample: Reddi et al. 2021, ICLR"

    mode: str = param("merge", choices=("merge", "sample"),
                      doc="merge: every writer goes to some client; sample: one random writer per client, rest unused")

    def check(self, facts: Facts) -> list[str]:
        if facts.has_writers:
            return []
        return ["natural: the dataset's samples have no writers to make clients of (emnist and shakespeare have "
                "them, and npz with a writers_train array); use such a dataset, or another split, e.g. "
                f"'split dirichlet(alpha = 0.5) over {facts.num_clients} clients'"]

    def partition(self, labels, num_clients, rng):
        from fedarena.plugins.datasets._writers import writers_of

        writers = writers_of(labels)
        if writers is None:
            raise RunError(
                "the natural split needs a dataset whose samples have writers (e.g. emnist); this dataset has none"
            )
        writers = np.asarray(writers, np.int64)
        present = np.unique(writers)
        if num_clients > len(present):
            raise RunError(f"the natural split has {num_clients} clients but the dataset only {len(present)} writers")
        order = np.argsort(writers, kind="stable")
        by_writer = dict(zip(present, np.split(order, np.cumsum(np.bincount(writers)[present])[:-1])))
        chosen = rng.permutation(present)
        if self.mode == "sample":
            return [np.sort(by_writer[w]) for w in chosen[:num_clients]]
        return [np.sort(np.concatenate([by_writer[w] for w in chosen[client::num_clients]]))
                for client in range(num_clients)]


@attrs.frozen
class Fang(Split):
    """Label-biased client groups with bias q (Fang et al. 2020); q = 1/classes is IID.

    From "Local model poisoning attacks to Byzantine-robust federated
    learning": the clients are divided at random into as many
    near-equal groups as there are classes; a sample of label l goes to
    group l with probability q and otherwise to one of the other groups
    uniformly, then to a client of that group uniformly.  q = 1/classes is
    IID; q = 1 gives every client one label.  Client sizes vary
    (multinomially).  The number of classes is taken as the largest label
    + 1.  Needs at least as many clients as classes."""

    paper = "Fang et al. 2020, USENIX Security"

    q: float = param(0.5, doc="probability that a sample goes to its own label's group (1/classes: IID)", ge=0, le=1)

    def check(self, facts: Facts) -> list[str]:
        if facts.num_clients < facts.num_classes:
            return [f"fang: {facts.num_clients} clients for {facts.num_classes} classes; "
                    "each class needs a group of at least one client"]
        return []

    def partition(self, labels, num_clients, rng):
        labels = _labels(labels)
        num_classes = int(labels.max()) + 1 if labels.size else 1
        if num_clients < num_classes:
            raise RunError(f"fang: {num_clients} clients for {num_classes} classes; need at least one per class")
        groups = np.array_split(rng.permutation(num_clients), num_classes)
        own = rng.random(len(labels)) < self.q
        if num_classes > 1:
            other = rng.integers(0, num_classes - 1, len(labels))
            other += other >= labels  # uniform over the groups other than the label's
        else:
            other = labels
        group = np.where(own, labels, other)
        sizes = np.array([len(g) for g in groups])
        slot = np.floor(rng.random(len(labels)) * sizes[group]).astype(np.int64)
        members = np.full((num_classes, sizes.max()), -1, np.int64)
        for g, clients in enumerate(groups):
            members[g, : len(clients)] = clients
        client = members[group, slot]
        order = np.argsort(client, kind="stable")
        parts = np.split(order, np.cumsum(np.bincount(client, minlength=num_clients))[:-1])
        return fill_empty(parts, rng)


@attrs.frozen
class QuantitySkew(Split):
    """Quantity skew: Dirichlet(alpha) client sizes, IID labels (Li et al. 2022).

    From NIID-Bench, "Federated learning on non-IID data silos: an
    experimental study": client shares of the
    training set are drawn from the symmetric Dir(alpha) over clients and
    the shuffled samples dealt accordingly, so labels stay IID while sizes
    differ.  Every client first gets one sample (when there are enough);
    the rest are dealt by the drawn shares."""

    paper = "Li et al. 2022, ICDE"

    alpha: float = param(0.5, doc="Dirichlet concentration over clients: smaller is more unequal", gt=0)

    def partition(self, labels, num_clients, rng):
        n = len(labels)
        shuffled = rng.permutation(n)
        weights = dirichlet_weights(rng, self.alpha, num_clients)
        if n < num_clients:
            return fill_empty(cut(shuffled, weights), rng)
        base, rest = shuffled[:num_clients], shuffled[num_clients:]
        return [np.sort(np.concatenate([base[i : i + 1], piece])) for i, piece in enumerate(cut(rest, weights))]


@hookimpl
def fedarena_register_splits(registry):
    registry.add("iid", IID)
    registry.add("dirichlet", Dirichlet)
    registry.add("shards", Shards)
    registry.add("natural", Natural)
    registry.add("fang", Fang)
    registry.add("quantity_skew", QuantitySkew)
