"""Bulyan, over Krum.

Paper: El Mahdi El Mhamdi, Rachid Guerraoui and Sébastien Rouault, 2018,
"The Hidden Vulnerability of Distributed Learning in Byzantium", ICML.

Definition: for n updates of which at most f are Byzantine (n >= 4f + 3),

1. select theta = n - 2f updates by repeated Krum: each pick is the Krum
   winner of the updates not yet picked (scored on that remaining set,
   n_r - f - 2 neighbours, squared distances), then removed;
2. per coordinate, average the beta = theta - 2f = n - 4f selected values
   closest to the coordinate median of the selected set (averaging the
   whole selection is a known wrong variant).

Each selected row's share is 1/theta (its weight per coordinate varies).
Example counts are not used.

Deviations: for the last picks, where fewer than f + 3 updates remain,
Krum's neighbour count is clamped to at least 1; at run time theta and beta
are clamped to at least 1 when detectors left too few rows.  Where the
beta-th closest value is tied with another at the same distance on the
other side of the median (the paper leaves this open), the tied values
share the last places equally, so the result does not depend on the order
of the rows.  With ``layers`` the Krum distances of step 1 are measured on
those layers' columns; step 2 covers every coordinate.

With f = 1, seven rows: theta = 5 are selected (the two far rows are not)
and per coordinate the beta = 3 values closest to the median are averaged.

>>> import numpy as np
>>> rows = np.array([[0.], [1.], [2.], [3.], [6.], [50.], [-40.]], np.float32)
>>> aggregate, share = bulyan(rows, f=1)
>>> aggregate.numpy().tolist(), np.flatnonzero(share).tolist()
([2.0], [0, 1, 2, 3, 4])
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.params import param
from fedarena.plugins import _tensor
from fedarena.plugins import _tf as tf


def bulyan(rows, f, columns=None, max_rows=None):
    """Bulyan on ``rows`` ``[n, d]`` assuming ``f`` Byzantine rows, Krum
    distances on ``columns`` (None: all) -> (aggregate ``[d]``, share
    ``[n]``: 1/theta per selected row).  ``max_rows`` (a Python int) bounds
    ``n`` where its static shape does not say: the coordinate step then
    sorts by a sorting network of that size (`mean_closest_to_median`)."""
    rows = tf.convert_to_tensor(rows)
    n = tf.shape(rows)[0]
    theta = tf.maximum(n - 2 * f, 1)
    beta = tf.maximum(theta - 2 * f, 1)
    chosen = _tensor.repeated_krum(_tensor.pairwise_sq_distances(_tensor.on_columns(rows, columns)), f, theta)
    selected = tf.boolean_mask(rows, chosen)  # [theta, d]
    bound = rows.shape[0] if rows.shape[0] is not None else max_rows
    max_theta = None if bound is None else max(bound - 2 * f, 1)
    aggregate = _tensor.mean_closest_to_median(selected, beta, max_theta)
    share = tf.cast(chosen, rows.dtype) / tf.cast(theta, rows.dtype)
    return aggregate, share


@attrs.frozen
class Bulyan(Aggregator):
    """Bulyan (El Mhamdi et al. 2018, "The Hidden Vulnerability of Distributed
    Learning in Byzantium", ICML), over Krum.

    1. Select theta = n - 2f updates by repeated Krum: each pick is the Krum
       winner of the updates not yet picked (scored on that remaining set,
       n_r - f - 2 neighbours, squared distances), then removed.
    2. Per coordinate, average the beta = theta - 2f = n - 4f selected values
       closest to the coordinate median of the selected set.

    Needs n >= 4f + 3.  Shares: 1/theta for each selected update (its weight
    per coordinate varies).  For the last picks, where fewer than f + 3
    updates remain, Krum's neighbour count is clamped to at least 1; at run
    time theta and beta are clamped to at least 1 if detectors left too few
    rows.  Example counts are not used.  With ``layers``, the Krum distances
    of step 1 are measured on those layers' parameters; step 2 covers every
    coordinate.  Where the beta-th closest value is tied with another at the
    same distance on the other side of the median (the paper leaves this
    open), the tied values share the last places equally, so the result does
    not depend on the order of the rows.
    """

    paper = "El Mhamdi et al. 2018, ICML"

    f: int = param(doc="Byzantine updates the defender assumes per round", ge=0)
    layers: tuple[str, ...] = param((), doc=_tensor.AGGREGATOR_LAYERS_DOC)

    def check(self, facts):
        n = facts.clients_per_round
        if n < 4 * self.f + 3:
            return [f"bulyan needs clients_per_round >= 4f + 3 (here {n} < 4*{self.f} + 3); "
                    f"lower f or sample more clients"]
        return []

    def aggregate(self, rows, weights, ctx):
        return bulyan(rows, self.f, _tensor.layer_columns(ctx, self.layers), ctx.facts.clients_per_round)


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("bulyan", Bulyan)
