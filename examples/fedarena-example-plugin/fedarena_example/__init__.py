"""An example fedarena plugin: the attack `shift` and the defense
`clipped_mean`, registered through fedarena's hooks."""

import attrs

from fedarena import hookimpl
from fedarena.core.interfaces import Aggregator, Attack
from fedarena.core.params import param


@attrs.frozen
class Shift(Attack):
    """Adds a constant to every coordinate of the attackers' updates."""

    poisons_updates = True

    amount: float = param(1.0, doc="value added to each coordinate", gt=0)

    def poison_updates(self, updates, own, benign, ctx):
        import tensorflow as tf

        return tf.where(own[:, None], updates + self.amount, updates)


@attrs.frozen
class ClippedMean(Aggregator):
    """Mean of the updates after clipping each to an L2 norm of at most `bound`."""

    bound: float = param(1.0, doc="largest L2 norm an update keeps", gt=0)

    def aggregate(self, updates, weights, ctx):
        import tensorflow as tf

        norms = tf.norm(updates, axis=1, keepdims=True)
        clipped = updates * tf.minimum(1.0, self.bound / tf.maximum(norms, 1e-12))
        share = tf.math.divide_no_nan(weights, tf.reduce_sum(weights))
        return tf.linalg.matvec(clipped, share, transpose_a=True), share


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("shift", Shift)


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("clipped_mean", ClippedMean)
