"""Neurotoxin: a backdoor whose update avoids the coordinates benign
clients change most, so that later benign rounds overwrite it less.

Paper: Z. Zhang, A. Panda, L. Song, Y. Yang, M. W. Mahoney, J. E.
Gonzalez, K. Ramchandran and P. Mittal, 2022, "Neurotoxin: Durable
Backdoors in Federated Learning", ICML.  With g a benign update direction
(the last global update, or the mean of this round's benign rows) and
T the top-``ratio`` share of coordinates by |g|:

    u_j <- boost * u_j  for j not in T,   u_j <- 0  for j in T

Deviations: the paper projects every local gradient step onto the mask and
clips the update's norm; here the mask is applied once to the trained
update at the server stage, without norm clipping; the mask is global over
all coordinates, not per layer.

>>> top_coordinates_mask(tf.constant([0.1, -3.0, 0.2, 2.0]), ratio=0.5).numpy().tolist()
[1.0, 0.0, 1.0, 0.0]
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins._tensor import column_mean
from fedarena.plugins.attacks.backdoor import Backdoor


def top_coordinates_mask(direction, ratio, valid=True):
    """1 on the coordinates the attacker may change, 0 on the top-``ratio``
    share by magnitude of ``direction`` [d] (all 1 when ``valid`` is False)."""
    dim = int(direction.shape[0])
    k = int(round(ratio * dim))
    if k == 0:
        return tf.ones([dim], direction.dtype)
    top = tf.math.top_k(tf.abs(direction), k=k).indices
    masked = tf.scatter_nd(top[:, None], tf.ones([k], direction.dtype), [dim])
    return tf.where(valid, 1.0 - masked, tf.ones_like(masked))


@attrs.frozen
class Neurotoxin(Backdoor):
    """Neurotoxin (Zhang et al. 2022, "Neurotoxin: Durable Backdoors in
    Federated Learning", ICML): a `Backdoor` (same parameters, trigger included)
    whose update is restricted to the coordinates benign clients change
    least, so that later benign rounds overwrite the backdoor less.

    The attacker zeroes, in its own update rows, the top-``ratio`` share of
    coordinates by magnitude of a benign update direction, then applies
    ``boost``.  ``knowledge``: ``"history"`` (default, the paper's form) takes
    the last global update, the difference between this round's and the
    previous round's global model (kept in the state; nothing is masked in
    the first round seen); ``"omniscient"`` takes the mean of this round's
    benign rows.  ``ratio`` 0.05 matches ``gradmask_ratio`` 0.95 (keep the
    bottom 95 %) in the authors' example command.

    Deviations: the paper projects every local gradient step onto the mask
    (projected gradient descent) and clips the update's norm; here the mask
    is applied once to the trained update at the server stage, and no norm
    clipping is done.  The mask is global over all coordinates (the
    authors' ``aggregate_all_layer`` setting), not per layer.
    """

    paper = "Zhang et al. 2022, ICML"

    poisons_updates: ClassVar[bool] = True  # type: ignore[assignment]

    ratio: float = param(0.05, doc="share of coordinates (largest benign change) the attacker leaves alone", ge=0, lt=1)
    knowledge: str = param("history", doc="benign direction: 'history' last global update, 'omniscient' benign mean",
                           choices=("history", "omniscient"))

    def initial_state(self, dim, facts):
        if self.knowledge != "history":
            return {}
        return {"previous_global": np.zeros([dim], np.float32), "has_previous": np.int32(0)}

    def keep_mask(self, direction, valid=True):
        """1 on the coordinates the attacker may change, 0 on the top-``ratio``
        by magnitude of ``direction`` [d] (all 1 when ``valid`` is False)."""
        return top_coordinates_mask(direction, self.ratio, valid)

    def apply(self, updates, own, benign, ctx, state):
        updates = tf.convert_to_tensor(updates)
        if self.knowledge == "history":
            previous = tf.convert_to_tensor(state["previous_global"])
            keep = self.keep_mask(ctx.global_weights - previous, tf.not_equal(state["has_previous"], 0))
            state = {"previous_global": tf.identity(ctx.global_weights),
                     "has_previous": tf.ones_like(state["has_previous"])}
        else:
            keep = self.keep_mask(column_mean(tf.boolean_mask(updates, benign)))
        return tf.where(own[:, None], updates * keep[None, :] * self.boost, updates), state

    def poison_updates(self, updates, own, benign, ctx):
        if self.knowledge == "history":
            raise TypeError("neurotoxin with knowledge 'history' keeps state: call apply")
        return self.apply(updates, own, benign, ctx, {})[0]


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("neurotoxin", Neurotoxin)
