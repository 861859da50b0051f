"""Norm clipping with optional weak differential privacy.

Paper: Ziteng Sun, Peter Kairouz, Ananda Theertha Suresh and H. Brendan
McMahan, 2019, "Can You Really Backdoor Federated Learning?",
arXiv:1911.07963.

Definition: each update is scaled to norm at most M,
x_i * min(1, M / ||x_i||); the clipped updates are averaged weighted by
example counts (FedAvg), and Gaussian noise N(0, sigma^2 I) is added to the
aggregate (sigma = ``noise``; none by default).  A row's share is its
example share times its clip factor.

Deviation: the noise is drawn with a stateless RNG from the round seed
folded with this rule's salt, so runs are reproducible.

>>> import numpy as np
>>> rows = np.array([[0., 0.], [1., 0.], [0., 1.], [9., 9.]], np.float32)
>>> aggregate, share = norm_clipping(rows, np.ones(4, np.float32), bound=1.0)
>>> [round(float(x), 3) for x in aggregate]
[0.427, 0.427]
>>> [round(float(s), 3) for s in share]
[0.25, 0.25, 0.25, 0.02]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.params import param
from fedarena.plugins import _tensor
from fedarena.plugins import _tf as tf

SALT_NOISE = 101


def norm_clipping(rows, weights, bound=1.0, noise=0.0, seed=None):
    """The example-weighted mean of ``rows`` ``[n, d]`` clipped to norm
    ``bound``, plus N(0, noise^2) per coordinate drawn from ``seed`` (int64
    ``[2]``; only needed when ``noise > 0``) -> (aggregate ``[d]``, share
    ``[n]``)."""
    rows = tf.convert_to_tensor(rows)
    clip = _tensor.row_clip_factors(rows, bound)  # finite norms for any finite rows
    share = tf.math.divide_no_nan(weights, tf.reduce_sum(weights)) * clip
    aggregate = tf.linalg.matvec(rows, share, transpose_a=True)
    if noise > 0:
        aggregate += noise * tf.random.stateless_normal(tf.shape(rows)[1:], seed, dtype=rows.dtype)
    return aggregate, share


@attrs.frozen
class NormClipping(Aggregator):
    """Norm clipping with optional weak differential privacy (Sun et al. 2019,
    "Can You Really Backdoor Federated Learning?", arXiv:1911.07963).

    Each update is scaled to norm at most ``bound`` (x * min(1, M / ||x||)),
    the clipped updates are averaged weighted by example counts (FedAvg),
    and Gaussian noise of std ``noise`` per coordinate is added to the
    aggregate, drawn with a stateless RNG from the round seed.  Shares:
    each row's coefficient (example share times its clip factor).
    """

    paper = "Sun et al. 2019, arXiv:1911.07963"

    bound: float = param(1.0, doc="norm bound M on each update, in update units", gt=0)
    noise: float = param(0.0, doc="std of the Gaussian noise added to the aggregate (weak DP)", ge=0)

    def aggregate(self, rows, weights, ctx):
        seed = _tensor.salted_seed(ctx.seed, SALT_NOISE) if self.noise > 0 else None
        return norm_clipping(rows, weights, self.bound, self.noise, seed)


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("norm_clipping", NormClipping)
