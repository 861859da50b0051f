"""FLTrust.

Paper: Xiaoyu Cao, Minghong Fang, Jia Liu and Neil Zhenqiang Gong, 2021,
"FLTrust: Byzantine-robust Federated Learning via Trust Bootstrapping",
NDSS.

Definition: the server trains on its own small clean root dataset (about
100 samples) from the global model, giving g0.  Each update gets trust

    TS_i = ReLU(cos(g_i, g0)),

is rescaled to the norm of g0, and the aggregate is the trust-weighted mean

    g = sum_i TS_i (||g0|| / ||g_i||) g_i / sum_j TS_j.

All trust zero gives a zero update (no division by zero).

Deviations: the server's update is computed with the clients' protocol and
optimizer (the paper trains the root model like the clients, which is the
same thing); a row's share is its normalised trust.  With ``layers`` the
cosine (the trust) is measured on those layers' columns; the rescaling to
the norm of g0 uses whole norms.

The row against g0 gets no trust; the others are rescaled to ||g0||:

>>> import numpy as np
>>> rows = np.array([[2., 0.], [0., 5.], [-1., 0.]], np.float32)
>>> aggregate, share = fltrust(rows, np.array([3., 4.], np.float32))
>>> [round(float(s), 3) for s in share]
[0.429, 0.571, 0.0]
>>> [round(float(x), 3) for x in aggregate]
[2.143, 2.857]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.params import param
from fedarena.plugins import _tensor
from fedarena.plugins import _tf as tf


def fltrust(rows, root, columns=None):
    """FLTrust on ``rows`` ``[n, d]`` with the server's root update ``root``
    ``[d]``, cosines on ``columns`` (None: all) -> (aggregate ``[d]``, share
    ``[n]``: the normalised trust scores)."""
    rows = tf.convert_to_tensor(rows)
    root = tf.convert_to_tensor(root, rows.dtype)
    # Norms in float64 and cosines of rows scaled each by its own power of
    # two: finite for any finite rows, bit-for-bit as before at ordinary scales.
    root_norm = _tensor.row_norms64(root[None, :])[0]
    norms = _tensor.row_norms64(rows)
    view, root_view = _tensor.on_columns(rows, columns), _tensor.on_columns(root, columns)
    view = view * _tensor.row_scales(view)[:, None]
    root_view = root_view * _tensor.scale_of(root_view)
    cosine = tf.math.divide_no_nan(tf.linalg.matvec(view, root_view), tf.norm(view, axis=1) * tf.norm(root_view))
    trust = tf.nn.relu(cosine)
    share = tf.math.divide_no_nan(trust, tf.reduce_sum(trust))
    scaled = rows * tf.cast(tf.math.divide_no_nan(root_norm, norms), rows.dtype)[:, None]
    return tf.linalg.matvec(scaled, share, transpose_a=True), share


@attrs.frozen
class FLTrust(Aggregator):
    """FLTrust (Cao, Fang, Liu and Gong 2021, "FLTrust: Byzantine-robust
    Federated Learning via Trust Bootstrapping", NDSS).

    The server trains on its own small clean root dataset (training setting
    ``root_samples``, about 100 in the paper) from the global model, giving
    g0.  Each update gets trust ReLU(cos(g_i, g0)), is rescaled to the norm
    of g0, and the aggregate is the trust-weighted mean.  All trust zero
    gives a zero update (no division by zero).  Deviations: the server's
    update is computed with the clients' protocol and optimizer (the paper
    trains the root model like the clients, which is the same thing); the
    shares reported per row are the normalised trust scores.  With
    ``layers``, the cosine (the trust) is measured on those layers'
    parameters; the rescaling to the norm of g0 uses whole norms.
    """

    paper = "Cao et al. 2021, NDSS"

    needs_root_update = True

    layers: tuple[str, ...] = param((), doc=_tensor.AGGREGATOR_LAYERS_DOC)

    def check(self, facts):
        if facts.root_samples <= 0:
            return ["fltrust needs a server root dataset: add 'root_samples 100' to the training block"]
        return []

    def aggregate(self, rows, weights, ctx):
        return fltrust(rows, ctx.root_update, _tensor.layer_columns(ctx, self.layers))


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("fltrust", FLTrust)
