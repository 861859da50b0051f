"""Norm outliers: drop the updates whose L2 norm is an outlier among the
kept updates.

Reference: B. Iglewicz and D. C. Hoaglin, 1993, "How to Detect and Handle
Outliers" (ASQC Basic References in Quality Control, vol. 16), who define
the modified z-score and suggest 3.5 as the outlier threshold.  With
``x_i = ||u_i||``:

    z_i = 0.6745 (x_i - median_j x_j) / MAD,   MAD = median_i |x_i - median_j x_j|

and row i is kept when ``|z_i| <= threshold``.  Score: ``z_i``.

Deviation: when more than half the norms are equal (MAD 0), the mean
absolute deviation times 1.253314 replaces MAD / 0.6745 (zero scores when
every norm is equal).

>>> rows = tf.constant([[1.0, 0.0], [0.0, 1.1], [0.9, 0.0], [30.0, 0.0]])
>>> score, keep = norm_outliers(rows, threshold=3.5)
>>> score.numpy().astype(float).round(2).tolist()
[-0.34, 0.34, -1.01, 195.27]
>>> keep.numpy().tolist()
[True, True, True, False]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Detector
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins._tensor import on_columns, robust_z, row_norms64, row_scales, to_float32
from fedarena.plugins.detectors._common import LAYERS_DOC


def norm_outliers(x, threshold):
    """(modified z-score of each row's L2 norm [n], kept: |z| <= threshold [n])."""
    # Norms of huge rows overflow float32: then z from float64 norms
    # (`row_norms64`); at ordinary scales the float32 computation, unchanged.
    norms = tf.norm(x, axis=1)
    z = tf.where(tf.reduce_all(tf.math.is_finite(norms)) & tf.reduce_all(tf.equal(row_scales(x), 1.0)),
                 robust_z(norms), to_float32(robust_z(row_norms64(x))))
    return z, tf.abs(z) <= threshold


@attrs.frozen
class NormOutlier(Detector):
    """Drop updates whose L2 norm is an outlier among the kept updates: the
    modified z-score 0.6745 (x - median) / MAD (Iglewicz & Hoaglin 1993,
    "How to Detect and Handle Outliers", who suggest 3.5) beyond
    ``threshold`` in absolute value.  When more than half the norms are equal
    (MAD 0), the mean absolute deviation times 1.253314 replaces MAD / 0.6745.
    Score: the z-score."""

    paper = "modified z-score: Iglewicz and Hoaglin 1993, ASQC"

    threshold: float = param(3.5, doc="largest |modified z-score| kept", gt=0)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def detect(self, rows, ctx):
        return norm_outliers(on_columns(rows, ctx.columns(self.layers)), self.threshold)


@hookimpl
def fedarena_register_detectors(registry):
    registry.add("norm_outlier", NormOutlier)
