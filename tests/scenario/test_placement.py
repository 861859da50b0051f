"""Who attacks, and when: attack groups as a count (random), as explicit
client ids, or as the owners of a label; participation sampled like every
client or ``present every k rounds``.  The draws on hand-made inputs, the
default draw against golden arrays from the code before placement existed,
and end-to-end runs read back from HDF5."""

from __future__ import annotations

import numpy as np
import pytest

from fedarena.core.errors import ScenarioError
from fedarena.core.execution.engine.sampling import attacker_groups, round_clients, sample_clients
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import default_registry
from fedarena.core.scenario.sweep import check

SCENARIO = """\
scenario "placement" {{
  seed {seed}
  rounds {rounds}
  dataset synthetic(samples = 600, features = 8, classes = 3)
  split {split} over {clients} clients
  model mlp(hidden = [8])
  training {{
    clients_per_round {per_round}
    batch_size 16
    optimizer sgd(learning_rate = 0.2)
  }}
{attacks}}}
"""


def scenario_text(attacks: str, seed: int = 7, rounds: int = 4, clients: int = 20, per_round: int = 6,
                  split: str = "iid") -> str:
    return SCENARIO.format(attacks=attacks, seed=seed, rounds=rounds, clients=clients, per_round=per_round,
                           split=split)


def checked(attacks: str, **kwargs):
    return check(parse(scenario_text(attacks, **kwargs), "placement.fls"), default_registry(), "out.h5")


def attack(clients: str, extra: str = "", plugin: str = 'label_flip(mode = "random")') -> str:
    return f"  attack {plugin} {{\n    clients {clients}\n{extra}  }}\n"


# ---------------------------------------------------------------------------
# The default draw is the one before placement existed (golden arrays
# computed with that code: seed 7, 20 clients, groups of 3 and 10%).

GOLDEN_GROUPS = [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1, -1, -1, -1, 0, 1, -1, 0, 0, -1]
GOLDEN_MEMBERS = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 2, 0]
GOLDEN_SAMPLES = {1: [9, 1, 8, 3, 5, 2], 2: [3, 13, 7, 10, 19, 5], 3: [11, 18, 4, 2, 14, 12], 4: [12, 1, 8, 5, 10, 7]}


def test_counts_draw_the_same_attackers_and_samples_as_before():
    scenario = checked(attack("3") + attack("10%", plugin="gaussian"))
    groups, members = attacker_groups(scenario)
    assert groups.tolist() == GOLDEN_GROUPS
    assert members.tolist() == GOLDEN_MEMBERS
    for round_number, sample in GOLDEN_SAMPLES.items():
        assert round_clients(scenario, round_number, groups).tolist() == sample


# ---------------------------------------------------------------------------
# Explicit ids and label owners.


def test_explicit_ids_are_the_group_in_the_order_written_and_random_groups_take_the_rest():
    scenario = checked(attack("[12, 0, 5]") + attack("3", plugin="gaussian"))
    (listed, random_group) = scenario.attacks
    assert listed.ids == (12, 0, 5) and listed.num_clients == 3 and listed.placement == "ids"
    assert random_group.placement == "random"
    groups, members = attacker_groups(scenario)
    assert np.flatnonzero(groups == 0).tolist() == [0, 5, 12]
    assert [members[c] for c in (12, 0, 5)] == [0, 1, 2]
    # The random group: the first 3 of the seeded permutation that are not listed.
    order = np.random.default_rng([7, 1]).permutation(20)
    expected = [c for c in order if c not in (12, 0, 5)][:3]
    assert np.flatnonzero(groups == 1).tolist() == sorted(expected)
    assert [members[c] for c in expected] == [0, 1, 2]


def test_owners_are_the_clients_holding_most_of_the_label_ties_to_the_lower_id():
    scenario = checked(attack("[3]") + attack("owners(label = 1, count = 2)") + attack("owners(label = 2)"),
                       clients=6, split="dirichlet(alpha = 0.5)")
    histogram = np.array([
        [5, 9, 0],  # client 0: 9 of label 1
        [0, 9, 4],  # client 1: 9 of label 1 (a tie with 0: 0 first)
        [1, 2, 8],
        [0, 20, 9],  # the most of label 1, but listed by id in group 0
        [7, 1, 8],  # ties with client 2 on label 2: 2 is lower
        [3, 0, 0],
    ])
    groups, members = attacker_groups(scenario, histogram)
    assert groups.tolist() == [1, 1, 2, 0, -1, -1]
    assert members[0] == 0 and members[1] == 1


def test_owners_of_a_label_too_few_clients_hold_is_an_error_at_the_block():
    text = scenario_text(attack("owners(label = 2, count = 3)"), clients=4, per_round=2,
                         split="dirichlet(alpha = 0.5)")
    scenario = check(parse(text, "placement.fls"), default_registry(), "out.h5")
    histogram = np.array([[5, 0, 1], [4, 4, 0], [0, 9, 2], [3, 3, 0]])
    with pytest.raises(ScenarioError) as caught:
        attacker_groups(scenario, histogram)
    assert str(caught.value) == (
        "placement.fls:13:13: attack clients owners(label = 2, count = 3): only 2 client(s) not in another attack "
        "group hold samples of label 2 under this split; lower count\n"
        "        clients owners(label = 2, count = 3)\n"
        "                ^"
    )


# ---------------------------------------------------------------------------
# Present every k rounds.


def test_present_every_round_puts_every_member_in_every_round_in_place_of_benign_clients():
    scenario = checked(attack("[1, 2, 3]", "    present every round\n") + attack("2", plugin="gaussian"),
                       rounds=30)
    (present, sampled) = scenario.attacks
    assert present.participation == "every round" and sampled.participation == "sampled"
    groups, _ = attacker_groups(scenario)
    for round_number in range(1, 31):
        ids = round_clients(scenario, round_number, groups)
        assert len(ids) == 6 and len(set(ids.tolist())) == 6
        assert {1, 2, 3} <= set(ids.tolist())
        # Sampled clients of the other group stay: only benign ones made room.
        before = set(sample_clients(scenario, round_number).tolist())
        assert {c for c in before if groups[c] == 1} <= set(ids.tolist())
        assert set(ids.tolist()) - {1, 2, 3} <= before


def test_present_every_k_rounds_puts_members_in_exactly_those_rounds():
    scenario = checked(attack("[4, 9]", "    present every 3 rounds\n"), rounds=40)
    assert scenario.attacks[0].participation == "every 3 rounds"
    groups, _ = attacker_groups(scenario)
    replaced = 0
    for round_number in range(1, 41):
        ids = round_clients(scenario, round_number, groups).tolist()
        assert len(ids) == 6 and len(set(ids)) == 6
        inside = {4, 9} & set(ids)
        assert inside == ({4, 9} if round_number % 3 == 0 else set())
        sampled = set(sample_clients(scenario, round_number).tolist())
        replaced += bool({4, 9} & sampled) and round_number % 3 != 0
        assert round_clients(scenario, round_number, groups).tolist() == ids  # from seed and round only
    assert replaced, "the seed never samples a member in an absent round: the top-up is untested"


# ---------------------------------------------------------------------------
# End to end: the HDF5 records say who attacked, and when.


def run_e2e(text, tmp_path, name):
    from fedarena.core.testing import run_text

    return run_text(text, tmp_path, name=name)


@pytest.mark.usefixtures("tff_context")
def test_explicit_ids_and_present_rounds_are_what_the_results_file_records(tmp_path):
    import h5py

    attacks = attack("[0, 3, 7]", "    present every round\n") + attack("[5, 9]", "    present every 2 rounds\n",
                                                                         plugin="gaussian")
    text = scenario_text(attacks, rounds=4, clients=10, per_round=6)
    record = run_e2e(text, tmp_path, "present.fls")
    ids, malicious = record.data["clients/id"], record.data["clients/malicious"].astype(bool)
    group = record.data["clients/attack_group"]
    assert ids.shape == (4, 6)
    for row, round_number in enumerate(range(1, 5)):
        attackers = set(ids[row][malicious[row]].tolist())
        expected = {0, 3, 7} | ({5, 9} if round_number % 2 == 0 else set())
        assert attackers == expected
        assert set(ids[row][group[row] == 0].tolist()) == {0, 3, 7}
        assert not {5, 9} & set(ids[row].tolist()) or round_number % 2 == 0
    assert record.data["split/attack_group"].tolist() == [0, -1, -1, 0, -1, 1, -1, 0, -1, 1]
    with h5py.File(tmp_path / "present.h5", "r") as f:
        flip, noise = f["plugins/attack_label_flip"].attrs, f["plugins/attack_gaussian"].attrs
        assert flip["members"].tolist() == [0, 3, 7] and flip["placement"] == "ids"
        assert flip["participation"] == "every round"
        assert noise["members"].tolist() == [5, 9] and noise["participation"] == "every 2 rounds"


@pytest.mark.usefixtures("tff_context")
def test_label_owners_under_a_skewed_split_are_the_owners_in_the_results_file(tmp_path):
    import h5py

    text = scenario_text(attack("owners(label = 2, count = 2)"), rounds=1, clients=8, per_round=8,
                         split="dirichlet(alpha = 0.1)")
    run_e2e(text, tmp_path, "owners.fls")
    with h5py.File(tmp_path / "owners.h5", "r") as f:
        histogram = f["split/class_histogram"][()]
        members = f["plugins/attack_label_flip"].attrs["members"].tolist()
        assert f["plugins/attack_label_flip"].attrs["placement"] == "owners(label = 2, count = 2)"
        malicious = f["clients/id"][0][f["clients/malicious"][0].astype(bool)]
    held = histogram[:, 2]
    top = sorted(range(8), key=lambda c: (-held[c], c))[:2]
    assert members == top and sorted(malicious.tolist()) == sorted(top)
    assert held[top].min() > np.delete(held, top).max(), "the split gives a tie at the cut: pick another seed"


# ---------------------------------------------------------------------------
# The syntax: read, laid out by `fedarena fmt`, and read back the same.


def test_the_new_syntax_is_formatted_and_reads_back_the_same():
    from fedarena.core.language import spec
    from fedarena.core.language.fmt import format_text

    text = (
        'scenario "s" {\n  rounds 4\n  start   from "pre.h5"  round 3  # the checkpoint\n  dataset digits\n'
        "  split dirichlet over 10 clients\n  model logistic\n"
        "  attack gaussian { clients [0, 3,7]  present every 2 rounds\n rounds 1..3 }\n"
        "  attack gaussian { clients owners(label = 7, count = 2) present every round }\n}\n"
    )
    formatted = format_text(text)
    assert formatted == (
        'scenario "s" {\n  rounds 4\n  start from "pre.h5" round 3  # the checkpoint\n\n  dataset digits\n'
        "  split dirichlet over 10 clients\n  model logistic\n\n"
        "  attack gaussian {\n    clients [0, 3, 7]\n    present every 2 rounds\n    rounds 1..3\n  }\n\n"
        "  attack gaussian {\n    clients owners(label = 7, count = 2)\n    present every round\n  }\n}\n"
    )
    parsed = parse(text)
    assert parse(formatted) == parsed and format_text(formatted) == formatted
    (start,) = parsed.all("start")
    assert start.value == spec.StartFrom("pre.h5", 3)
    first, second = (s.value.settings for s in parsed.all("attack"))
    assert [(s.name, s.value) for s in first] == [("clients", (0, 3, 7)), ("present", spec.Every(2)),
                                                  ("rounds", spec.Range(1, 3))]
    assert second[1].value == spec.Every(1)
    # `present` and `round` stay ordinary names elsewhere.
    named = parse('scenario "s" {\n  rounds 2\n  dataset present(round = 1)\n  split iid over 2 clients\n'
                  "  model logistic\n}\n")
    assert named.all("dataset")[0].value.name == "present"


def test_present_is_swept_with_every_values():
    from fedarena.core.scenario.sweep import check_points

    text = scenario_text(attack("[1, 2]", "    present every round\n"), rounds=4) + (
        "sweep {\n  attack.present in [every 1, every 2]\n  attack.clients in [[1, 2], [3, 4, 5]]\n}\n")
    points = check_points(parse(text, "sweep.fls"), default_registry(), "out.h5")
    got = [(p.label, g.attacks[0].participation, g.attacks[0].ids) for p, g in points]
    assert got == [
        ("attack.present=every 1, attack.clients=[1, 2]", "every round", (1, 2)),
        ("attack.present=every 1, attack.clients=[3, 4, 5]", "every round", (3, 4, 5)),
        ("attack.present=every 2, attack.clients=[1, 2]", "every 2 rounds", (1, 2)),
        ("attack.present=every 2, attack.clients=[3, 4, 5]", "every 2 rounds", (3, 4, 5)),
    ]
