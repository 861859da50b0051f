"""Centered clipping.

Paper: Sai Praneeth Karimireddy, Lie He and Martin Jaggi, 2021, "Learning
from History for Byzantine Robust Optimization", ICML.

Definition: v starts at the previous round's aggregate v_prev (zero before
the first round); each of L iterations does

    v <- v + (1/n) sum_i (x_i - v) min(1, tau / ||x_i - v||)

Unweighted, as published.  The result is v_prev a + sum_i s_i x_i; a row's
share is its coefficient s_i.  State: ``previous``, the last aggregate.

Deviation: tau is in the units of the updates (model deltas here, not the
paper's worker momenta): pick it near the norm of a typical benign update's
distance to the aggregate.

From v_prev = 0 with tau = 1, the far row moves v by only 1/4 of a unit
vector:

>>> import numpy as np
>>> rows = np.array([[0., 0.], [1., 0.], [0., 1.], [9., 9.]], np.float32)
>>> v, share = centered_clipping(rows, np.zeros(2, np.float32), tau=1.0)
>>> [round(float(x), 3) for x in v]
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


def centered_clipping(rows, previous, tau=1.0, iterations=1):
    """Centered clipping of ``rows`` ``[n, d]`` around ``previous`` ``[d]``
    -> (v ``[d]``, share ``[n]``: each row's coefficient in v)."""
    rows = tf.convert_to_tensor(rows)
    previous = tf.convert_to_tensor(previous, rows.dtype)
    n = tf.shape(rows)[0]
    count = tf.cast(n, rows.dtype)

    def body(i, v, share):
        diff = rows - v[None, :]
        clip = _tensor.row_clip_factors(diff, tau)  # finite norms for any finite rows
        v = v + tf.linalg.matvec(diff, clip, transpose_a=True) / count
        share = (1.0 - tf.reduce_sum(clip) / count) * share + clip / count
        return i + 1, v, share

    _, v, share = tf.while_loop(
        lambda i, *_: i < iterations, body, (tf.constant(0), previous, tf.zeros([n], rows.dtype))
    )
    return v, share


@attrs.frozen
class CenteredClipping(Aggregator):
    """Centered clipping (Karimireddy, He and Jaggi 2021, "Learning from
    History for Byzantine Robust Optimization", ICML).

    v starts at the previous round's aggregate (state ``previous``, zero
    before the first round); each of the L iterations does
    v += (1/n) sum_i (x_i - v) min(1, tau / ||x_i - v||).  The mean is
    unweighted, as in the paper.  tau is in the units of the updates (model
    deltas here, not the paper's worker momenta): pick it near the norm of
    a typical benign update's distance to the aggregate; too small and
    the aggregate barely moves, too large and nothing is clipped.  Share of
    row i: its coefficient in v = a v_prev + sum_i s_i x_i.
    """

    paper = "Karimireddy et al. 2021, ICML"

    tau: float = param(1.0, doc="clipping radius around the centre, in update units", gt=0)
    iterations: int = param(1, doc="clipping iterations L", ge=1)

    def initial_state(self, dim, facts):
        import numpy as np

        return {"previous": np.zeros([dim], np.float32)}

    def apply(self, rows, weights, ctx, state):
        v, share = centered_clipping(rows, state["previous"], self.tau, self.iterations)
        return v, share, {"previous": v}


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("centered_clipping", CenteredClipping)
