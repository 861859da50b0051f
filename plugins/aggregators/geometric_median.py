"""Geometric median by the smoothed Weiszfeld algorithm (RFA).

Paper: Krishna Pillutla, Sham M. Kakade and Zaid Harchaoui, 2022, "Robust
Aggregation for Federated Learning", IEEE Transactions on Signal Processing.

Definition: the point v minimising sum_i alpha_i ||v - w_i||, alpha_i the
example counts normalised, approximated by R smoothed Weiszfeld steps from
the weighted MEAN:

    beta_i = alpha_i / max(nu, ||v - w_i||),   v = sum_i beta_i w_i / sum_i beta_i

Shares are the normalised beta_i of the last step.

Deviation: always R iterations (the paper's relative objective-improvement
stop is not used).

>>> import numpy as np
>>> rows = np.array([[0., 0.], [1., 0.], [0., 1.], [9., 9.]], np.float32)
>>> v, share = geometric_median(rows, np.ones(4, np.float32), iterations=30)
>>> [round(float(x), 2) for x in v]  # the mean is [2.5, 2.5]
[0.5, 0.5]
>>> int(np.argmin(share))  # the far row weighs least
3
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.params import param
from fedarena.plugins import _tensor
from fedarena.plugins import _tf as tf


def geometric_median(rows, weights, iterations=3, nu=1e-6):
    """Smoothed Weiszfeld on ``rows`` ``[n, d]`` with point weights
    ``weights`` ``[n]`` -> (the approximate geometric median ``[d]``, share
    ``[n]``: the last iteration's normalised Weiszfeld weights)."""
    rows = tf.convert_to_tensor(rows)
    alpha = weights / tf.reduce_sum(weights)
    # Huge rows are scaled by an exact power of two (1.0 at ordinary scales,
    # where nothing changes) so that no distance overflows; nu with them.
    scale = _tensor.scale_of(rows)
    rows = rows * scale
    nu = nu * scale

    def body(i, v, share):
        beta = alpha / tf.maximum(nu, tf.norm(rows - v[None, :], axis=1))
        share = beta / tf.reduce_sum(beta)
        return i + 1, tf.linalg.matvec(rows, share, transpose_a=True), share

    start = tf.linalg.matvec(rows, alpha, transpose_a=True)
    _, v, share = tf.while_loop(lambda i, *_: i < iterations, body, (tf.constant(0), start, alpha))
    return v / scale, share


@attrs.frozen
class GeometricMedian(Aggregator):
    """Geometric median by the smoothed Weiszfeld algorithm of RFA (Pillutla,
    Kakade and Harchaoui 2022, "Robust Aggregation for Federated Learning",
    IEEE TSP).

    alpha_i = example counts normalised; v starts at the weighted MEAN; each
    of the R iterations sets beta_i = alpha_i / max(nu, ||v - w_i||) and
    v = sum beta_i w_i / sum beta_i.  Shares are the normalised beta_i of the
    last iteration.  Deviation: always R iterations (the paper's relative
    objective-improvement stop is not used).
    """

    paper = "Pillutla et al. 2022, IEEE TSP"

    iterations: int = param(3, doc="Weiszfeld iterations R", ge=1)
    nu: float = param(1e-6, doc="smoothing: distances below nu count as nu", gt=0)

    def aggregate(self, rows, weights, ctx):
        return geometric_median(rows, weights, self.iterations, self.nu)


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("geometric_median", GeometricMedian)
