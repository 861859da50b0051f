"""Gaussian attack: each attacker sends random noise.

Paper: P. Blanchard, E. M. El Mhamdi, R. Guerraoui and J. Stainer, 2017,
"Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent",
NeurIPS (sigma = 200 in their experiments):

    u'_i ~ N(0, sigma^2 I),  independently for each attacker i

Draws come from the round's stateless seed (with a salt of this attack),
so a round is reproducible.

>>> seed = tf.constant([1, 2], tf.int64)
>>> rows = gaussian_rows([3, 2], seed, sigma=200.0)
>>> rows.shape.as_list(), bool(tf.reduce_all(rows == gaussian_rows([3, 2], seed, sigma=200.0)))
([3, 2], True)
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins._tensor import salted_seed
from fedarena.plugins.attacks._common import UpdateAttack

# Salt folded into the round seed for the draws.
GAUSSIAN_SALT = 0x6A55


def gaussian_rows(shape, seed, sigma, dtype=None):
    """Rows of the given ``shape`` drawn from N(0, sigma^2) with the stateless ``seed``."""
    return sigma * tf.random.stateless_normal(shape, seed, dtype=dtype or tf.float32)


@attrs.frozen
class Gaussian(UpdateAttack):
    """Gaussian attack (Blanchard et al. 2017, "Machine Learning with
    Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS): each
    attacker sends an independent draw from ``N(0, sigma^2 I)``; the Krum
    paper's sigma is 200.  Draws come from the round's stateless seed."""

    paper = "Blanchard et al. 2017, NeurIPS"

    sigma: float = param(200.0, doc="standard deviation of every coordinate", gt=0)

    def craft(self, updates, own, benign, ctx):
        return gaussian_rows(tf.shape(updates), salted_seed(ctx.seed, GAUSSIAN_SALT), self.sigma, updates.dtype)


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("gaussian", Gaussian)
