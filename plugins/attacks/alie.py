"""A Little Is Enough (ALIE): every attacker sends the benign mean shifted
by z standard deviations per coordinate, small enough to pass robust
aggregators and large enough to steer them.

Paper: M. Baruch, G. Baruch and Y. Goldberg, 2019, "A Little Is Enough:
Circumventing Defenses For Distributed Learning", NeurIPS.  With mu_j and
sigma_j the mean and the population standard deviation of coordinate j of
the reference updates, n workers and m attackers:

    u'_j = mu_j - z sigma_j,   s = floor(n / 2 + 1) - m,   z = Phi^-1((n - s) / n)

(Algorithm 1).  Deviations and variants: ``sign = +1`` sends mu + z sigma
(a form seen in public code); ``variant = "library"`` takes z =
Phi^-1((n - m - s) / (n - m)), the form common in public code; m is the
scenario's attackers scaled by the share of clients sampled per round
(`expected_attackers`); ``knowledge = "partial"`` estimates mu and sigma
from the attackers' own pre-attack updates.

>>> round(alie_z(20, 4), 3), round(alie_z(20, 4, "library"), 3)
(0.385, 0.157)
>>> alie(tf.constant([[1.0, 0.0], [3.0, 2.0], [2.0, 4.0]]), z=1.0).numpy().astype(float).round(3).tolist()
[1.184, 0.367]
"""

from __future__ import annotations

import math
from statistics import NormalDist

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf  # noqa: F401 (the doctest uses it)
from fedarena.plugins._tensor import column_mean, column_std
from fedarena.plugins.attacks._common import KNOWLEDGE, KNOWLEDGE_DOC, UpdateAttack, reference_rows


def expected_attackers(facts) -> int:
    """Attackers expected in one round: ``num_attackers`` scaled by the share
    of clients sampled per round, rounded half up, at least 1."""
    share = facts.num_attackers * facts.clients_per_round / max(facts.num_clients, 1)
    return max(1, int(math.floor(share + 0.5)))


def alie_z(n: int, m: int, variant: str = "paper") -> float:
    """z_max of "A Little Is Enough" (Baruch et al. 2019, NeurIPS).

    ``s = floor(n / 2 + 1) - m`` is the number of benign workers the
    attackers must win over.  ``"paper"``: ``z = Phi^-1((n - s) / n)``, the
    paper's Algorithm 1.  ``"library"``: ``z = Phi^-1((n - m - s) / (n - m))``,
    the form common in public code (the share among benign workers only).
    Raises `ValueError` when the quantile is not inside (0, 1).
    """
    if variant not in ("paper", "library"):
        raise ValueError(f"unknown ALIE variant {variant!r}")
    s = math.floor(n / 2 + 1) - m
    if variant == "paper":
        num, den = n - s, n
    else:
        num, den = n - m - s, n - m
    if den <= 0 or not 0 < num / den < 1:
        raise ValueError(f"ALIE z is undefined for n = {n}, m = {m} ({variant}): quantile {num}/{den}")
    return NormalDist().inv_cdf(num / den)


def alie(reference, z, sign=-1):
    """The crafted row: ``mean + sign * z * std`` of the ``reference`` rows [r, d]
    per coordinate (population standard deviation)."""
    return column_mean(reference) + sign * z * column_std(reference)


@attrs.frozen
class ALIE(UpdateAttack):
    """A Little Is Enough (Baruch et al. 2019, NeurIPS).

    Every attacker sends ``mean + sign * z * std`` of the reference updates,
    per coordinate (``std`` is the population standard deviation, ddof 0).
    ``sign`` -1 (default) is the paper's ``mean - z * std``; +1 is the other
    form seen in public code.  Unless ``z`` is given it is `alie_z(n, m,
    variant)` with ``n`` = clients per round and ``m`` =
    `expected_attackers` (the scenario's attackers scaled by the sampled
    share).  ``knowledge = "partial"`` estimates mean and std from the
    attackers' own pre-attack updates, as attackers without access to benign
    clients must; the default reads the benign rows.
    """

    paper = "Baruch et al. 2019, NeurIPS"

    z: float | None = param(None, doc="z; default from clients per round and expected attackers per round")
    variant: str = param("paper", doc="formula for z when not given", choices=("paper", "library"))
    sign: int = param(-1, doc="-1: mean - z * std (the paper); +1: mean + z * std", choices=(-1, 1))
    knowledge: str = param("omniscient", doc=KNOWLEDGE_DOC, choices=KNOWLEDGE)

    def z_value(self, facts) -> float:
        if self.z is not None:
            return float(self.z)
        return alie_z(facts.clients_per_round, expected_attackers(facts), self.variant)

    def check(self, facts):
        if self.z is not None:
            return []
        try:
            self.z_value(facts)
        except ValueError as error:
            return [f"alie: {error}; give 'z' explicitly"]
        return []

    def craft(self, updates, own, benign, ctx):
        reference = reference_rows(updates, own, benign, self.knowledge)
        return alie(reference, self.z_value(ctx.facts), self.sign)


@hookimpl
def fedarena_register_attacks(registry):
    registry.add("alie", ALIE)
