"""Divide-and-Conquer (DnC).

Paper: Virat Shejwalkar and Amir Houmansadr, 2021, "Manipulating the
Byzantine: Optimizing Model Poisoning Attacks and Defenses for Federated
Learning", NDSS (Algorithm 2).

Definition: ``niters`` times, draw b = ``subsample`` coordinates at random,
centre the sub-vectors on their mean, score each update by its squared
projection on the top right singular vector v of the centred matrix,

    score_i = <x_i - mean, v>^2,

and keep the n - floor(c f) lowest scores.  The output is the unweighted
mean of the updates kept in every iteration (share 1/|kept| each).

Deviations: the top singular direction comes from the eigendecomposition of
the centred rows' n x n Gram matrix (score_i = lambda_max u_i^2, the same
number as the SVD's, cheaper for d >> n); all coordinates are used when
d < b; the coordinates are drawn from the round seed folded with this
rule's salt (iteration i folds in i again).  If the iterations keep no
common update the aggregate is zero; at run time at least one update is
kept per iteration.  With ``layers`` the coordinates are drawn from those
layers' columns only; the mean covers every coordinate.

The row far off the line of the others is dropped:

>>> import numpy as np
>>> rows = np.array([[0., 0.], [1., 1.], [2., 2.], [0., 9.]], np.float32)
>>> aggregate, share = dnc(rows, dropped=1, seed=np.array([1, 2], np.int64))
>>> aggregate.numpy().tolist(), np.flatnonzero(share).tolist()
([1.0, 1.0], [0, 1, 2])
"""

from __future__ import annotations

import math

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.params import param
from fedarena.plugins import _tensor
from fedarena.plugins import _tf as tf

SALT_DNC = 102


def dnc(rows, dropped, seed, subsample=10000, niters=1, columns=None):
    """DnC on ``rows`` ``[n, d]``, dropping ``dropped`` rows per iteration
    (at least one row is kept), coordinates drawn from ``seed`` (int64
    ``[2]``) among ``columns`` (None: all) -> (aggregate ``[d]``, share
    ``[n]``: 1/|kept| per row kept in every iteration)."""
    rows = tf.convert_to_tensor(rows)
    n = tf.shape(rows)[0]
    view = _tensor.on_columns(rows, columns)
    view = view * _tensor.scale_of(view)  # exact; 1.0 unless huge values would overflow the Gram matrix
    d = tf.shape(view)[1]
    keep = tf.maximum(n - dropped, 1)

    def body(i, good):
        picked = _tensor.random_columns(tf.random.experimental.stateless_fold_in(seed, i), d,
                                        tf.minimum(subsample, d))
        sub = tf.gather(view, picked, axis=1)
        centred = sub - tf.reduce_mean(sub, axis=0, keepdims=True)
        values, vectors = tf.linalg.eigh(tf.matmul(centred, centred, transpose_b=True))
        scores = values[-1] * tf.square(vectors[:, -1])
        lowest = tf.math.top_k(-scores, k=keep).indices
        return i + 1, good & (tf.scatter_nd(lowest[:, None], tf.ones([keep]), [n]) > 0)

    _, good = tf.while_loop(lambda i, _: i < niters, body, (tf.constant(0), tf.ones([n], tf.bool)))
    chosen = tf.cast(good, rows.dtype)
    share = tf.math.divide_no_nan(chosen, tf.reduce_sum(chosen))
    return tf.linalg.matvec(rows, share, transpose_a=True), share


@attrs.frozen
class DnC(Aggregator):
    """Divide-and-Conquer (Shejwalkar and Houmansadr 2021, "Manipulating the
    Byzantine: Optimizing Model Poisoning Attacks and Defenses for Federated
    Learning", NDSS), Algorithm 2.

    ``niters`` times: draw ``subsample`` coordinates at random (all of them
    when d is smaller) from the round seed, centre the sub-vectors on their
    mean, score each update by its squared projection on the top right
    singular vector, keep the n - floor(c * f) lowest scores.  The output is
    the unweighted mean of the updates kept in every iteration (share
    1/|kept| each).  The top singular direction comes from the eigen-
    decomposition of the centred rows' n x n Gram matrix (score_i =
    lambda_max * u_i^2, the same number as the SVD's).  If the iterations
    keep no common update the aggregate is zero; at run time at least one
    update is kept per iteration.  With ``layers``, the coordinates are
    drawn from those layers' parameters only; the mean covers every one.
    """

    paper = "Shejwalkar and Houmansadr 2021, NDSS"

    f: int = param(doc="Byzantine updates the defender assumes per round", ge=0)
    subsample: int = param(10000, doc="coordinates drawn per iteration (b)", ge=1)
    niters: int = param(1, doc="iterations; the updates kept in all of them are averaged", ge=1)
    c: float = param(1.0, doc="filtering fraction: floor(c * f) updates are dropped per iteration", gt=0)
    layers: tuple[str, ...] = param((), doc=_tensor.AGGREGATOR_LAYERS_DOC)

    def dropped(self) -> int:
        return math.floor(self.c * self.f + 1e-9)

    def check(self, facts):
        n = facts.clients_per_round
        if self.dropped() >= n:
            return [f"dnc drops floor(c*f) = {self.dropped()} updates per iteration but clients_per_round is {n}; "
                    f"lower c or f, or sample more clients"]
        return []

    def aggregate(self, rows, weights, ctx):
        return dnc(rows, self.dropped(), _tensor.salted_seed(ctx.seed, SALT_DNC), self.subsample, self.niters,
                   _tensor.layer_columns(ctx, self.layers))


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("dnc", DnC)
