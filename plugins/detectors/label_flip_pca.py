"""Label-flip PCA: label flipping from class ``source`` shows in the
output-layer parameters of that class.

Paper: V. Tolpegin, S. Truex, M. E. Gursoy and L. Liu, 2020, "Data
Poisoning Attacks Against Federated Learning Systems", ESORICS.  For the
kept updates, with P_i the slice of u_i for class ``source`` (its column of
the output kernel and its bias entry):

    Z = standardize(P)  (per column),   Y = first 2 principal components of Z
    (A, B) = 2-means(Y)

Deviation: the paper separates the clusters by eye; here the smaller
cluster is dropped when the centroids lie more than ``separation`` times
the pooled within-cluster RMS distance apart (nothing on equal sizes or
fewer than 3 rows).  Score: the distance to the larger cluster's centroid
in units of that RMS.

>>> p = tf.constant([[1.0, 1.1], [1.1, 0.9], [0.9, 1.0], [1.0, 0.95], [-1.0, -1.0]])
>>> distance, keep = label_flip_pca(p, separation=2.0, standardize=False)
>>> keep.numpy().tolist()
[True, True, True, True, False]
"""

from __future__ import annotations

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Detector
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins._tensor import mean_or_zero, minority_of, on_columns, scale_of, two_means


def class_columns(layers, num_classes, source, names=()):
    """Columns of the output layer's parameters for class ``source``: column
    ``source`` of the last 2-D kernel of shape [hidden, classes] among the
    layers matching ``names`` (all if empty), flattened row-major as the
    engine does, and entry ``source`` of the bias right after it, if the
    next layer has shape [classes] and matches ``names`` too."""
    layers = sorted(layers, key=lambda l: l.offset)
    matching = [i for i, l in enumerate(layers) if not names or any(name in l.name for name in names)]
    kernels = [i for i in matching if len(layers[i].shape) == 2 and layers[i].shape[1] == num_classes]
    if not kernels:
        raise ValueError(f"no 2-D output kernel with {num_classes} columns among the layers "
                         f"{[l.name for l in layers]}" + (f" matching {list(names)}" if names else ""))
    index = kernels[-1]
    kernel = layers[index]
    columns = [kernel.offset + np.arange(kernel.shape[0]) * num_classes + source]
    if index + 1 in matching and tuple(layers[index + 1].shape) == (num_classes,):
        columns.append(np.array([layers[index + 1].offset + source]))
    return np.concatenate(columns).astype(np.int64)


def pca_projection(x, components=2, standardize=True):
    """The rows of ``x`` [n, c] projected on their first principal components
    ([n, components], zero-padded when fewer exist), via SVD of the centred
    (and, with ``standardize``, unit-variance) columns."""
    centred = x - mean_or_zero(x)
    if standardize:
        deviation = tf.sqrt(mean_or_zero(tf.square(centred)))
        centred = tf.math.divide_no_nan(centred, deviation)
    s, u, _ = tf.linalg.svd(centred, full_matrices=False)
    projected = (u * s[None, :])[:, :components]
    return tf.pad(projected, [[0, 0], [0, components - tf.shape(projected)[1]]])


def separated_minority(points, separation):
    """2-means on ``points``; (the smaller cluster if the centroids lie more
    than ``separation`` times the pooled within-cluster RMS distance apart,
    else nothing [n] bool, each point's distance to the larger cluster's
    centroid in units of that RMS [n])."""
    assign, centroids = two_means(points)
    own = tf.gather(centroids, assign)
    spread_rms = tf.sqrt(mean_or_zero(tf.reduce_sum(tf.square(points - own), axis=1)))
    gap = tf.norm(centroids[0] - centroids[1])
    minority = minority_of(assign)
    larger = tf.where(tf.reduce_sum(assign) * 2 > tf.size(assign), 1, 0)
    distance = tf.math.divide_no_nan(tf.norm(points - centroids[larger], axis=1), spread_rms)
    separated = (gap > separation * spread_rms) & (gap > 0)
    return minority & separated, distance


def label_flip_pca(x, separation, standardize=True):
    """Tolpegin et al.'s test on the source-class slices ``x`` [n, c] of the
    kept updates: -> (distance of each row to the larger 2-means cluster on
    the first 2 principal components, in within-cluster RMS units [n], kept
    [n]: all but a well separated smaller cluster; all with fewer than 3
    rows)."""
    # Huge (finite) slices are first scaled by an exact power of two (1.0
    # below 2^50): the standardisation squares values, and the distances
    # come out in RMS units, so the scale changes nothing else.
    x = x * scale_of(x)
    n = tf.shape(x)[0]
    minority, distance = tf.cond(
        n >= 3,
        lambda: separated_minority(pca_projection(x, 2, standardize), separation),
        lambda: (tf.zeros([n], tf.bool), tf.zeros([n], x.dtype)))
    return distance, ~minority


@attrs.frozen
class LabelFlipPCA(Detector):
    """Tolpegin et al. 2020 ("Data Poisoning Attacks Against Federated
    Learning Systems", ESORICS): label flipping from class ``source`` shows in
    the output-layer parameters of that class.  Each kept update's slice for
    class ``source`` (column ``source`` of the last [hidden, classes] kernel
    and that class's bias entry, see `class_columns`; ``layers`` restricts
    where that kernel is looked for) is standardized per column (as the
    authors' code does before PCA), projected on 2 principal components (SVD
    in TF) and split by 2-means.

    The paper separates the clusters by eye; the rule here: the smaller
    cluster is dropped when the centroids lie more than ``separation`` times
    the pooled within-cluster RMS distance apart (a 2-means split of one
    Gaussian blob gives about 2.7); nothing is dropped on equal sizes or
    with fewer than 3 kept rows.  Score: the distance to the larger
    cluster's centroid, in units of that RMS."""

    paper = "Tolpegin et al. 2020, ESORICS"

    source: int = param(doc="the class whose output-layer parameters are examined", ge=0)
    separation: float = param(4.0, doc="centroid gap, in within-cluster RMS distances, needed to drop", gt=0)
    standardize: bool = param(True, doc="scale each column to unit variance before PCA")
    layers: tuple[str, ...] = param((), doc="names (substrings) of the layers searched for the output layer; "
                                                "empty: all")

    def check(self, facts):
        if self.source >= facts.num_classes:
            return [f"source class {self.source} does not exist: the dataset has {facts.num_classes} classes"]
        return []

    def detect(self, rows, ctx):
        columns = class_columns(ctx.layers, ctx.facts.num_classes, self.source, self.layers)
        return label_flip_pca(on_columns(rows, columns), self.separation, self.standardize)


@hookimpl
def fedarena_register_detectors(registry):
    registry.add("label_flip_pca", LabelFlipPCA)
