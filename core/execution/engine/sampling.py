"""Who takes part in a round: the attack groups fixed for the run and the
clients sampled each round, from the scenario's seed alone."""

from __future__ import annotations

import numpy as np

from fedarena.core.scenario.check import Scenario


def attacker_groups(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """The attack group of every client (-1 for benign) and its index within
    that group, fixed for the run."""
    groups = np.full(scenario.num_clients, -1, dtype=np.int32)
    members = np.zeros(scenario.num_clients, dtype=np.int32)
    order = np.random.default_rng([scenario.seed, 1]).permutation(scenario.num_clients)
    start = 0
    for index, group in enumerate(scenario.attacks):
        chosen = order[start : start + group.num_clients]
        groups[chosen], members[chosen] = index, np.arange(len(chosen))
        start += group.num_clients
    return groups, members


def sample_clients(scenario: Scenario, round_number: int) -> np.ndarray:
    """The client ids sampled in a round; depends only on seed and round."""
    rng = np.random.default_rng([scenario.seed, 2, round_number])
    return rng.choice(scenario.num_clients, scenario.training.clients_per_round, replace=False).astype(np.int32)
