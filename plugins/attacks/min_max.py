"""Min-Max: every attacker sends the benign mean moved against a
perturbation direction as far as keeps it no farther from any benign update
than the benign updates are from each other.

Paper: V. Shejwalkar and A. Houmansadr, 2021, "Manipulating the Byzantine:
Optimizing Model Poisoning Attacks and Defenses for Federated Learning",
NDSS (the AGR-agnostic Min-Max attack).  With r_i the reference updates
and p the perturbation (``unit_vec`` mean / ||mean||, ``std`` the
coordinate standard deviation, ``sign`` the sign of the mean):

    u' = mean(r) - gamma p,   gamma = max { gamma : max_i ||u' - r_i||^2 <= max_{i,k} ||r_i - r_k||^2 }

found by the authors' binary search (from ``gamma_init``, step halving,
to ``tolerance``).  ``min_sum`` shares `mean_minus_gamma`.

>>> reference = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], tf.float64)
>>> min_max(reference, "unit_vec").numpy().round(3).tolist()
[0.0, 0.0]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins._tensor import column_mean, column_std, self_squared_distances
from fedarena.plugins.attacks._common import KNOWLEDGE, KNOWLEDGE_DOC, UpdateAttack, reference_rows

PERTURBATION_DOC = "p: 'unit_vec' mean / ||mean||, 'std' coordinate std, 'sign' sign of the mean"
PERTURBATIONS = ("unit_vec", "std", "sign")


def perturbation(mean, reference, kind):
    """The direction p of Min-Max and Min-Sum (see the module docstring)."""
    if kind == "unit_vec":
        return tf.math.divide_no_nan(mean, tf.norm(mean))
    if kind == "std":
        return column_std(reference)
    return tf.sign(mean)


def largest_gamma(ok, start, tolerance):
    """The binary search of Shejwalkar & Houmansadr: gamma starts at
    ``start`` with step ``start``; after each test the step halves and gamma
    moves up by half the step on success, down on failure; the last success
    is returned (0 if none) once gamma and it are within ``tolerance``."""
    def body(gamma, step, best):
        good = ok(gamma)
        best = tf.where(good, gamma, best)
        gamma = tf.where(good, gamma + step / 2.0, gamma - step / 2.0)
        return gamma, step / 2.0, best

    start = tf.constant(start, tf.float64)
    _, _, best = tf.while_loop(
        lambda gamma, step, best: tf.abs(best - gamma) > tolerance,
        body,
        [start, start, tf.constant(0.0, tf.float64)],
    )
    return best


def mean_minus_gamma(reference, kind, within, gamma_init=10.0, tolerance=1e-5):
    """``mean - gamma * p`` of the ``reference`` rows [r, d] (float64) with the
    largest gamma for which ``within(squared distances of the row to the
    reference rows [r], squared distances among the reference rows [r, r])``
    holds."""
    mean = column_mean(reference)
    p = perturbation(mean, reference, kind)
    ref_dist = self_squared_distances(reference)
    # ||mean - gamma p - ref_i||^2 = a_i - 2 gamma c_i + gamma^2 pp
    diff = mean[None, :] - reference
    a = tf.reduce_sum(diff * diff, axis=1)
    c = tf.linalg.matvec(diff, p)
    pp = tf.reduce_sum(p * p)
    gamma = largest_gamma(lambda g: within(a - 2.0 * g * c + g * g * pp, ref_dist), gamma_init, tolerance)
    return mean - gamma * p


def min_max_within(dist_to_ref, ref_dist):
    """Min-Max's condition: the largest distance to a reference row is at
    most the largest distance between two reference rows."""
    return tf.reduce_max(dist_to_ref) <= tf.reduce_max(ref_dist)


def min_max(reference, kind="unit_vec", gamma_init=10.0, tolerance=1e-5):
    """The Min-Max row of the ``reference`` rows [r, d] (float64)."""
    return mean_minus_gamma(reference, kind, min_max_within, gamma_init, tolerance)


@attrs.frozen
class MinMax(UpdateAttack):
    """Min-Max (Shejwalkar & Houmansadr 2021, "Manipulating the Byzantine:
    Optimizing Model Poisoning Attacks and Defenses for Federated Learning",
    NDSS), AGR-agnostic form.

    Every attacker sends ``mean - gamma * p`` of the reference updates with
    the largest ``gamma`` (binary search from ``gamma_init`` = 10 to
    ``tolerance`` 1e-5) such that its largest distance to a reference update
    is at most the largest distance between two reference updates.
    """

    paper = "Shejwalkar and Houmansadr 2021, NDSS"

    perturbation: str = param("unit_vec", doc=PERTURBATION_DOC, choices=PERTURBATIONS)
    knowledge: str = param("omniscient", doc=KNOWLEDGE_DOC, choices=KNOWLEDGE)
    gamma_init: float = param(10.0, doc="first gamma tried (and the search step)", gt=0)
    tolerance: float = param(1e-5, doc="search stops when the step is this fine", gt=0)

    def craft(self, updates, own, benign, ctx):
        reference = tf.cast(reference_rows(updates, own, benign, self.knowledge), tf.float64)
        return min_max(reference, self.perturbation, self.gamma_init, self.tolerance)


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("min_max", MinMax)
