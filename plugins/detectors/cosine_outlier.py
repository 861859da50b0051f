"""Cosine outliers: drop the updates whose direction is an outlier among the
kept updates.

Reference: the modified z-score of B. Iglewicz and D. C. Hoaglin, 1993,
"How to Detect and Handle Outliers" (ASQC Basic References in Quality
Control, vol. 16), applied to the cosine similarity of each update to the
coordinate-wise median m of the kept updates:

    c_i = <u_i, m> / (||u_i|| ||m||),   z_i = 0.6745 (c_i - median_j c_j) / MAD

Row i is kept when ``|z_i| <= threshold``: both sides count, as for norms.
Score: ``z_i``.  As in ``norm_outlier``, the mean absolute deviation times
1.253314 stands in when the MAD is 0; a zero row or a zero median has
similarity 0.

>>> rows = tf.constant([[1.0, 0.1], [1.0, -0.1], [0.9, 0.0], [1.1, 0.05], [-1.0, 0.0]])
>>> score, keep = cosine_outliers(rows, threshold=3.5)
>>> keep.numpy().tolist()
[True, True, True, True, False]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Detector
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins._tensor import coordinate_median, on_columns, robust_z
from fedarena.plugins.detectors._common import LAYERS_DOC


def cosine_outliers(x, threshold, max_rows=None):
    """(modified z-score of each row's cosine similarity to the coordinate-wise
    median of the rows [n], kept: |z| <= threshold [n]); ``n >= 1``.
    ``max_rows`` (a Python int) bounds ``n`` where its static shape does not
    say: the median's sort is then a sorting network (`sorted_rows`)."""
    centre = coordinate_median(x, max_rows)
    unit = tf.math.divide_no_nan(x, tf.norm(x, axis=1, keepdims=True))
    cosine = tf.linalg.matvec(unit, tf.math.divide_no_nan(centre, tf.norm(centre)))
    z = robust_z(cosine)
    return z, tf.abs(z) <= threshold


@attrs.frozen
class CosineOutlier(Detector):
    """Drop updates whose cosine similarity to the coordinate-wise median of
    the kept updates is an outlier: modified z-score (as `NormOutlier`)
    beyond ``threshold`` in absolute value (Iglewicz & Hoaglin 1993).  Both
    sides count, as for norms.  Score: the z-score."""

    paper = "modified z-score: Iglewicz and Hoaglin 1993, ASQC"

    threshold: float = param(3.5, doc="largest |modified z-score| kept", gt=0)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def detect(self, rows, ctx):
        return cosine_outliers(on_columns(rows, ctx.columns(self.layers)), self.threshold, ctx.facts.clients_per_round)


@hookimpl
def fedarena_register_detectors(registry):
    registry.add("cosine_outlier", CosineOutlier)
