"""Bucketing, around an inner robust rule.

Paper: Sai Praneeth Karimireddy, Lie He and Martin Jaggi, 2022,
"Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing", ICLR.

Definition: shuffle the n updates by a random permutation, split them into
ceil(n/s) buckets of s consecutive updates (the last may be smaller),
average each bucket (unweighted) and apply the inner rule to the bucket
means.  A row's share is its bucket's share divided by the bucket size.

Deviations: the permutation is drawn from the round seed folded with this
rule's salt.  The inner rule sees one row per bucket with weight = its
number of updates, the first member's client id, the summed example counts
and a seed of its own (another salt); its ``check`` runs with
clients_per_round = ceil(n/s).  A stateful inner rule keeps its state; AFA
(per-client reputation) cannot be wrapped.

With s = 1 bucketing is the inner rule itself.  With s = 2 the four rows
make two bucket means; Krum (f = 0) picks one of them, and the two rows of
that bucket share the aggregate:

>>> import numpy as np
>>> from fedarena.plugins.aggregators.krum import krum
>>> from fedarena.plugins.aggregators.median import median
>>> rows = np.array([[0., 0.], [1., 0.], [0., 1.], [9., 9.]], np.float32)
>>> seed = np.array([1, 2], np.int64)
>>> bucketing(rows, 1, seed, lambda means, sizes, *_: median(means))[0].numpy().tolist()
[0.5, 0.5]
>>> aggregate, share = bucketing(rows, 2, seed, lambda means, sizes, *_: krum(means, f=0))
>>> share.numpy().tolist()
[0.0, 0.5, 0.0, 0.5]
>>> aggregate.numpy().tolist()
[5.0, 4.5]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator, Facts, ServerContext
from fedarena.core.plugin.params import param
from fedarena.plugins import _tensor
from fedarena.plugins import _tf as tf
from fedarena.plugins.aggregators.afa import AFA

SALT_BUCKETS, SALT_INNER = 104, 105


def bucketing(rows, s, seed, inner):
    """Bucketing of ``rows`` ``[n, d]``: a permutation drawn from ``seed``,
    buckets of ``s``, and ``inner(means, sizes, bucket, count) ->
    (aggregate, share of each bucket)`` on the bucket means ``[count, d]``
    with the bucket sizes ``[count]`` (``bucket``: the bucket of each row,
    int32 ``[n]``).  -> (aggregate ``[d]``, share ``[n]``)."""
    rows = tf.convert_to_tensor(rows)
    n = tf.shape(rows)[0]
    order = tf.argsort(tf.random.stateless_uniform([n], seed))
    bucket = tf.scatter_nd(order[:, None], tf.range(n) // s, [n])  # bucket of each row
    count = (n + s - 1) // s
    means = tf.math.unsorted_segment_mean(rows, bucket, count)
    sizes = tf.math.unsorted_segment_sum(tf.ones([n], rows.dtype), bucket, count)
    aggregate, inner_share = inner(means, sizes, bucket, count)
    share = tf.gather(inner_share, bucket) / tf.gather(sizes, bucket)
    return aggregate, share


@attrs.frozen
class Bucketing(Aggregator):
    """Bucketing (Karimireddy, He and Jaggi 2022, "Byzantine-Robust Learning on
    Heterogeneous Datasets via Bucketing", ICLR).

    The kept updates are shuffled by a random permutation drawn from the
    round seed, split into ceil(n/s) buckets of s consecutive updates (the
    last may be smaller), each bucket is averaged (unweighted), and the
    ``inner`` aggregator combines the bucket means.  The inner rule sees one
    row per bucket with weight = its number of updates, the first member's
    client id, the summed example counts, and a seed of its own; its
    ``check`` runs with clients_per_round = ceil(n/s).  A row's share is its
    bucket's share divided by the bucket size.  A stateful inner rule keeps
    its state; AFA (per-client reputation) cannot be wrapped.
    """

    paper = "Karimireddy et al. 2022, ICLR"

    inner: Aggregator = param(doc="aggregator applied to the bucket means", kind="aggregator")
    s: int = param(2, doc="updates per bucket", ge=1)

    def buckets(self, n: int) -> int:
        return -(-n // self.s)

    def _inner_facts(self, facts: Facts) -> Facts:
        return attrs.evolve(facts, clients_per_round=self.buckets(facts.clients_per_round))

    def check(self, facts):
        if isinstance(self.inner, AFA):
            return ["bucketing cannot wrap afa: AFA keeps a reputation per client, and bucket means are not clients"]
        n = facts.clients_per_round
        prefix = (f"bucketing(s = {self.s}) leaves ceil({n}/{self.s}) = {self.buckets(n)} "
                  "bucket means for its inner rule: ")
        return [prefix + message for message in self.inner.check(self._inner_facts(facts))]

    def initial_state(self, dim, facts):
        return self.inner.initial_state(dim, self._inner_facts(facts))

    def apply(self, rows, weights, ctx, state):
        new_state = state

        def inner(means, sizes, bucket, count):
            nonlocal new_state
            inner_ctx = ServerContext(
                facts=self._inner_facts(ctx.facts), layers=ctx.layers,
                client_ids=tf.math.unsorted_segment_min(ctx.client_ids, bucket, count),
                num_examples=tf.math.unsorted_segment_sum(weights, bucket, count),
                global_weights=ctx.global_weights, round=ctx.round,
                seed=_tensor.salted_seed(ctx.seed, SALT_INNER),
            )
            aggregate, share, new_state = self.inner.apply(means, sizes, inner_ctx, state)
            return aggregate, share

        aggregate, share = bucketing(rows, self.s, _tensor.salted_seed(ctx.seed, SALT_BUCKETS), inner)
        aggregate.set_shape(rows.shape[1:])
        return aggregate, share, new_state


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("bucketing", Bucketing)
