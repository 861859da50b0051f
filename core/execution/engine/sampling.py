"""Who takes part in a round: the attack groups fixed for the run and the
clients sampled each round, from the scenario's seed alone.

The attack groups' members are chosen in three passes: first the clients
listed by id (``clients [0, 3, 7]``), then each ``owners(label, count)``
group, in block order, takes the clients holding the most samples of its
label among those not yet taken, and last the groups given as a count (or
a percentage) take consecutive runs of one seeded permutation of the
clients, skipping those already taken.  Without ids or owners this is the
original draw, client for client.

Each round ``clients_per_round`` clients are sampled without replacement
(`sample_clients`).  Members of groups that are ``present every k rounds``
never come from that sample: in the rounds k, 2k, ... all of them take part
and replace sampled benign clients, so the number per round stays fixed
(`round_clients`).
"""

from __future__ import annotations

import numpy as np

from fedarena.core.errors import Diagnostic, ScenarioError
from fedarena.core.scenario.check import Scenario


def attacker_groups(scenario: Scenario, class_histogram: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The attack group of every client (-1 for benign) and its index within
    that group, fixed for the run.  ``class_histogram`` (``[client, class]``
    sample counts) is needed by ``owners`` groups; a label with fewer
    holders than the group's count is a scenario error at its block."""
    groups = np.full(scenario.num_clients, -1, dtype=np.int32)
    members = np.zeros(scenario.num_clients, dtype=np.int32)
    for index, group in enumerate(scenario.attacks):
        if group.ids is not None:
            chosen = np.asarray(group.ids, dtype=np.int64)
            groups[chosen], members[chosen] = index, np.arange(len(chosen))
    for index, group in enumerate(scenario.attacks):
        if group.owners is not None:
            chosen = _owners(scenario, group, class_histogram, groups)
            groups[chosen], members[chosen] = index, np.arange(len(chosen))
    order = np.random.default_rng([scenario.seed, 1]).permutation(scenario.num_clients)
    free = order[groups[order] < 0]
    start = 0
    for index, group in enumerate(scenario.attacks):
        if group.ids is not None or group.owners is not None:
            continue
        chosen = free[start : start + group.num_clients]
        groups[chosen], members[chosen] = index, np.arange(len(chosen))
        start += group.num_clients
    return groups, members


def _owners(scenario: Scenario, group, class_histogram: np.ndarray | None, groups: np.ndarray) -> np.ndarray:
    """The ``count`` clients not yet in a group that hold the most samples of
    the label, most first (ties: the lower id)."""
    label, count = group.owners.label, group.owners.count
    held = np.asarray(class_histogram)[:, label].astype(np.int64)
    candidates = np.flatnonzero((groups < 0) & (held > 0))
    if len(candidates) < count:
        raise ScenarioError([Diagnostic(
            f"attack clients {group.owners}: only {len(candidates)} client(s) not in another attack group hold "
            f"samples of label {label} under this split; lower count", group.span)],
            scenario.filename, scenario.source)
    ranked = candidates[np.lexsort((candidates, -held[candidates]))]
    return ranked[:count]


def sample_clients(scenario: Scenario, round_number: int) -> np.ndarray:
    """The client ids sampled in a round; depends only on seed and round."""
    rng = np.random.default_rng([scenario.seed, 2, round_number])
    return rng.choice(scenario.num_clients, scenario.training.clients_per_round, replace=False).astype(np.int32)


def round_clients(scenario: Scenario, round_number: int, groups: np.ndarray) -> np.ndarray:
    """The clients taking part in a round, ``clients_per_round`` of them.

    Without ``present`` groups, the sample (`sample_clients`).  With them:
    the sample without any present group's members, then the members of the
    groups present this round in place of sampled benign clients (dropped
    at random; should there be too few, sampled clients of other attack
    groups go too), or, when the sample held members of groups absent this
    round, topped up with clients drawn from those not sampled.  The draws
    depend only on seed and round."""
    sampled = sample_clients(scenario, round_number)
    present = [index for index, group in enumerate(scenario.attacks) if group.present is not None]
    if not present:
        return sampled
    in_present_group = np.isin(groups, present)
    now = np.concatenate([np.flatnonzero(groups == index) for index in present
                          if scenario.attacks[index].present_in(round_number)] or [np.zeros(0, np.int64)])
    kept = sampled[~in_present_group[sampled]]
    room = scenario.training.clients_per_round - len(now)
    rng = np.random.default_rng([scenario.seed, 4, round_number])
    if len(kept) > room:
        benign = groups[kept] < 0
        # Benign clients leave first, in random order; then other attackers.
        priority = np.where(benign, 0, 1) * len(kept) + rng.permutation(len(kept))
        leaving = np.argsort(priority)[: len(kept) - room]
        kept = np.delete(kept, leaving)
    elif len(kept) < room:
        unsampled = np.setdiff1d(np.flatnonzero(~in_present_group), sampled)
        kept = np.concatenate([kept, rng.choice(unsampled, room - len(kept), replace=False)])
    return np.concatenate([kept, now]).astype(np.int32)
