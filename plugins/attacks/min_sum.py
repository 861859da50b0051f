"""Min-Sum: as Min-Max, but the crafted row's sum of squared distances to
the benign updates must stay within the benign updates' own sums.

Paper: V. Shejwalkar and A. Houmansadr, 2021, "Manipulating the Byzantine:
Optimizing Model Poisoning Attacks and Defenses for Federated Learning",
NDSS (the AGR-agnostic Min-Sum attack):

    u' = mean(r) - gamma p,
    gamma = max { gamma : sum_i ||u' - r_i||^2 <= max_k sum_i ||r_k - r_i||^2 }

``threshold = "min"`` bounds by the smallest sum instead (the authors'
notebook: a stealthier attack).  The search and p are Min-Max's.

>>> reference = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], tf.float64)
>>> min_sum(reference, "unit_vec").numpy().round(3).tolist()
[0.14, 0.14]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins.attacks._common import KNOWLEDGE, KNOWLEDGE_DOC, UpdateAttack, reference_rows
from fedarena.plugins.attacks.min_max import PERTURBATION_DOC, PERTURBATIONS, mean_minus_gamma


def min_sum(reference, kind="unit_vec", threshold="max", gamma_init=10.0, tolerance=1e-5):
    """The Min-Sum row of the ``reference`` rows [r, d] (float64); the bound
    is the largest (``"max"``) or smallest (``"min"``) reference sum."""

    def within(dist_to_ref, ref_dist):
        scores = tf.reduce_sum(ref_dist, axis=1)
        bound = tf.reduce_max(scores) if threshold == "max" else tf.reduce_min(scores)
        return tf.reduce_sum(dist_to_ref) <= bound

    return mean_minus_gamma(reference, kind, within, gamma_init, tolerance)


@attrs.frozen
class MinSum(UpdateAttack):
    """Min-Sum (Shejwalkar & Houmansadr 2021, NDSS), AGR-agnostic form.

    As `MinMax`, but the condition is on sums of squared distances: the
    crafted update's sum to all reference updates must not exceed
    ``threshold`` of the reference updates' own sums: ``"max"`` (default,
    the paper's text: the largest sum of any reference update) or ``"min"``
    (the authors' notebook: the smallest, a stealthier attack).
    """

    paper = "Shejwalkar and Houmansadr 2021, NDSS"

    perturbation: str = param("unit_vec", doc=PERTURBATION_DOC, choices=PERTURBATIONS)
    knowledge: str = param("omniscient", doc=KNOWLEDGE_DOC, choices=KNOWLEDGE)
    threshold: str = param("max", doc="which reference score bounds the crafted one", choices=("max", "min"))
    gamma_init: float = param(10.0, doc="first gamma tried (and the search step)", gt=0)
    tolerance: float = param(1e-5, doc="search stops when the step is this fine", gt=0)

    def craft(self, updates, own, benign, ctx):
        reference = tf.cast(reference_rows(updates, own, benign, self.knowledge), tf.float64)
        return min_sum(reference, self.perturbation, self.threshold, self.gamma_init, self.tolerance)


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("min_sum", MinSum)
