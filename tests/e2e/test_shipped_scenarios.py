"""The example scenarios under ``scenarios/``.

- Every ``.fls`` file there passes the checker (a sweep at every point).
- There is one scenario per built-in attack (``scenarios/attacks/NAME.fls``)
  and per built-in defense other than FedAvg (``scenarios/defenses/NAME.fls``,
  for every aggregator and detector), and each names its plugin.
- Each attack and defense scenario, cut to two rounds, runs end to end on
  TFF, and its results file shows what its plugin does: an attack's rows are
  marked malicious and, for model poisoning, look the way the attack crafts
  them; an aggregator's shares follow its rule; a detector records one
  finite score per examined row and drops what its rule drops.
- The mixed scenario (a backdoor group and an ALIE group) keeps the two
  groups apart in its results file.

Data files a scenario reads beside it (the edge-case set of
``attacks/edge_case.fls``) are made first, as the scenario says, and a run
gets a copy in its folder.

The runs share one TFF context (the session's ``tff_context``); each traces
its own computations, a few seconds per scenario.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scenarios"
ALL_FILES = sorted(SCENARIOS.rglob("*.fls"))
MIXED = "mixed_backdoor_alie.fls"
ROUNDS = 2

pytestmark = pytest.mark.usefixtures("edge_case_digits")


def _relative(path: Path) -> str:
    return path.relative_to(SCENARIOS).as_posix()


def _builtin_names(kind: str) -> list[str]:
    from fedarena.core.plugin.registry import default_registry

    return [e.name for e in default_registry().entries(kind) if e.cls.__module__.startswith("fedarena.plugins.")]


ATTACKS = _builtin_names("attack")
AGGREGATORS = [name for name in _builtin_names("aggregator") if name != "fedavg"]
DETECTORS = _builtin_names("detector")


def checked(path: Path):
    """The scenario of a file, parsed and checked (a sweep: its first point)."""
    from fedarena.core.language.parser import parse
    from fedarena.core.plugin.registry import default_registry
    from fedarena.core.scenario.sweep import check_points

    spec = parse(path.read_text(encoding="utf-8"), str(path))
    runs = check_points(spec, default_registry())
    assert runs, f"{path} stands for no run"
    return runs[0][1]


# --------------------------------------------------------------------------
# Checking every file.
# --------------------------------------------------------------------------


def test_there_are_scenarios():
    assert len(ALL_FILES) >= len(ATTACKS) + len(AGGREGATORS) + len(DETECTORS) + 1


@pytest.mark.parametrize("path", ALL_FILES, ids=_relative)
def test_every_scenario_passes_the_checker(path):
    from fedarena.core.errors import ScenarioError

    try:
        scenario = checked(path)
    except ScenarioError as error:
        # A dataset this machine has not fetched: the scenario says so at its
        # top (tests/scenario/test_shipped_scenarios_check.py holds it to that).
        fetch = re.search(r"'(fedarena data fetch \w+)'", str(error))
        if fetch is None or fetch.group(1) not in path.read_text(encoding="utf-8"):
            raise
        pytest.skip(f"needs `{fetch.group(1)}` first")
    assert scenario.rounds >= 1


@pytest.mark.parametrize("path", ALL_FILES, ids=_relative)
def test_every_scenario_says_what_it_shows(path):
    """A leading comment says what the scenario is about."""
    assert path.read_text(encoding="utf-8").startswith("# "), f"{path} should open with a comment"


def test_the_checker_test_can_fail(tmp_path):
    """A broken scenario does not pass `checked` (the test above can fail)."""
    from fedarena.core.errors import ScenarioError

    text = (SCENARIOS / "defenses" / "krum.fls").read_text(encoding="utf-8").replace("krum(f = 2)", "krum(f = 4)")
    path = tmp_path / "krum.fls"
    path.write_text(text)
    with pytest.raises(ScenarioError, match="2f \\+ 2"):
        checked(path)


@pytest.mark.parametrize("name", ATTACKS)
def test_each_attack_has_a_scenario_that_uses_it(name):
    path = SCENARIOS / "attacks" / f"{name}.fls"
    assert path.is_file(), f"no scenario for the attack '{name}'"
    scenario = checked(path)
    assert [group.name for group in scenario.attacks] == [name]
    assert scenario.output == f"results/{name}.h5"
    assert type(scenario.dataset).__name__ == "Digits"  # offline


@pytest.mark.parametrize("name", AGGREGATORS + DETECTORS)
def test_each_defense_has_a_scenario_that_uses_it(name):
    from fedarena.core.plugin.registry import default_registry

    path = SCENARIOS / "defenses" / f"{name}.fls"
    assert path.is_file(), f"no scenario for the defense '{name}'"
    scenario = checked(path)
    registry = default_registry()
    if name in AGGREGATORS:
        assert registry.name_of(scenario.aggregator) == name
    else:
        assert [registry.name_of(d) for d in scenario.detectors] == [name]
    assert len(scenario.attacks) == 1, "a defense scenario faces one attack"
    assert scenario.output == f"results/{name}.h5"
    assert type(scenario.dataset).__name__ == "Digits"  # offline


def test_the_mixed_scenario_has_a_backdoor_group_and_an_alie_group():
    scenario = checked(SCENARIOS / MIXED)
    assert [group.name for group in scenario.attacks] == ["backdoor", "alie"]


# --------------------------------------------------------------------------
# Running them, cut short.
# --------------------------------------------------------------------------


def shrink(text: str, rounds: int = ROUNDS) -> str:
    """The scenario with ``rounds N`` replaced by ``rounds <rounds>``, and
    its output in the current folder (the run redirects it anyway)."""
    text, count = re.subn(r"^(\s*)rounds\s+\d+\s*$", rf"\g<1>rounds {rounds}", text, count=1, flags=re.M)
    assert count == 1, "no 'rounds N' statement to shrink"
    text, count = re.subn(r'^(\s*)output\s+"[^"]*"', r'\g<1>output "shrunk.h5"', text, count=1, flags=re.M)
    if count == 0:  # the default output: one is added after the rounds
        text = re.sub(r"^(\s*)(rounds \d+\s*)$", r'\g<1>\g<2>\n\g<1>output "shrunk.h5"', text, count=1, flags=re.M)
    return text


def test_shrink_keeps_attack_rounds_and_changes_the_run_length():
    text = (SCENARIOS / "attacks" / "neurotoxin.fls").read_text(encoding="utf-8")
    short = shrink(text)
    assert "\n  rounds 2\n" in short and "rounds 1..15" in short and 'output "shrunk.h5"' in short


@pytest.fixture(scope="module")
def run_scenario(tff_context, tmp_path_factory):
    """``run_scenario("attacks/gaussian.fls")`` -> its RunRecord, two rounds,
    run once per module."""
    from fedarena.core.testing import run_text

    directory = tmp_path_factory.mktemp("scenario_runs")
    done: dict = {}

    def run(relative: str):
        if relative not in done:
            # Relative paths in a scenario are read from its folder: the run's, here.
            for data in (SCENARIOS / relative).parent.glob("*.npz"):
                shutil.copy(data, directory / data.name)
            text = shrink((SCENARIOS / relative).read_text(encoding="utf-8"))
            done[relative] = run_text(text, directory, name=relative.replace("/", "__"))
        return done[relative]

    return run


class Rounds:
    """The per-round client datasets of a results file, as arrays."""

    def __init__(self, record):
        data = record.data
        self.record = record
        self.malicious = data["clients/malicious"].astype(bool)
        self.group = data["clients/attack_group"]
        self.norm = data["clients/update_norm"]
        self.weight = data["clients/aggregation_weight"]
        self.kept = data["clients/kept"].astype(bool)
        self.examples = data["clients/num_examples"]
        self.scores = data["clients/detector_scores"]
        self.id = data["clients/id"]

    def rows(self):
        """(round index, malicious mask, benign mask) for each round."""
        for r in range(self.malicious.shape[0]):
            yield r, self.malicious[r], ~self.malicious[r]

    def with_attackers(self, at_least: int = 1):
        """Rounds with at least that many attackers (there must be one)."""
        rounds = [r for r in range(self.malicious.shape[0]) if self.malicious[r].sum() >= at_least]
        assert rounds, f"no round with {at_least} attackers: the scenario's seed gives too few to test"
        return rounds


def check_run(record, groups: list[str]):
    """What every attack or defense run must show: complete, both rounds,
    metrics, and attack groups consistent between /split and /clients."""
    data = record.data
    assert record.status == "complete", record.attrs.get("error")
    assert record.attrs["rounds_done"] == ROUNDS and record.attrs["rounds_planned"] == ROUNDS
    assert list(data["metrics/round"]) == list(range(1, ROUNDS + 1))
    assert np.isfinite(data["metrics/test_accuracy"]).all()
    split_group = data["split/attack_group"]
    assert [str(g) for g in record_attack_groups(record)] == groups
    rows = Rounds(record)
    assert rows.malicious.any(), "no attacker was sampled in the first rounds"
    # An attacking row carries its client's group; every other row carries -1.
    assert (rows.group[~rows.malicious] == -1).all()
    assert (rows.group[rows.malicious] == split_group[rows.id[rows.malicious]]).all()
    for index in range(len(groups)):
        assert (split_group == index).sum() >= 1
    return rows


def record_attack_groups(record) -> list[str]:
    import h5py

    with h5py.File(record.path, "r") as f:
        return [g.decode() if isinstance(g, bytes) else str(g) for g in f["split"].attrs["attack_groups"]]


def close(a, b, rtol=1e-4, atol=1e-6):
    return np.allclose(a, b, rtol=rtol, atol=atol)


def identical_rows(rows: Rounds):
    """All attackers of a round send one crafted row: equal norms (the
    honest updates of different clients never coincide)."""
    for r in rows.with_attackers(2):
        norms = rows.norm[r][rows.malicious[r]]
        assert close(norms, norms[0], rtol=1e-5), f"round {r + 1}: attackers' rows differ: {norms}"
        benign = np.sort(rows.norm[r][~rows.malicious[r]])
        assert (np.diff(benign) > 0).all(), "benign norms should all differ"


def metric(record, name):
    values = record.data.get(f"metrics/{name}")
    assert values is not None, f"metrics/{name} missing; have {sorted(k for k in record.data if k.startswith('metrics/'))}"
    assert len(values) == ROUNDS and np.isfinite(values).all()
    assert ((0 <= values) & (values <= 1)).all()
    return values


def model_dim(record) -> int:
    return int(record.data["model/weights"].size)


# --- attacks ---------------------------------------------------------------


def attack_label_flip(record, rows):
    metric(record, "label_flip_source_recall")
    metric(record, "label_flip_flip_rate")


def attack_backdoor(record, rows):
    metric(record, "backdoor_attack_success_rate")


def attack_edge_case(record, rows):
    metric(record, "edge_case_attack_success_rate")


def attack_neurotoxin(record, rows):
    metric(record, "neurotoxin_attack_success_rate")
    # boost = 2 on top of the masked update: longer than every benign update.
    for r, bad, good in rows.rows():
        if bad.any():
            assert rows.norm[r][bad].min() > rows.norm[r][good].max()


def attack_sign_flip(record, rows):
    # variant "scaled", scale 4: -4 times the attacker's own update.
    for r in rows.with_attackers():
        assert np.median(rows.norm[r][rows.malicious[r]]) > 2.5 * np.median(rows.norm[r][~rows.malicious[r]])


def attack_gaussian(record, rows):
    # N(0, 200^2 I) in d dimensions has norm close to 200 sqrt(d).
    expected = 200.0 * math.sqrt(model_dim(record))
    for r in rows.with_attackers():
        assert close(rows.norm[r][rows.malicious[r]], expected, rtol=0.05)
    # Honest updates are tiny until FedAvg has averaged the noise in.
    assert rows.malicious[0].any() and rows.norm[0][~rows.malicious[0]].max() < 0.01 * expected


def attack_scaling(record, rows):
    # gamma = 10 times the attacker's own update.
    for r in rows.with_attackers():
        assert rows.norm[r][rows.malicious[r]].min() > 5 * np.median(rows.norm[r][~rows.malicious[r]])


def attack_alie(record, rows):
    identical_rows(rows)


def attack_ipm(record, rows):
    identical_rows(rows)
    # -0.1 times the benign mean: at most 0.1 times the longest benign update.
    for r in rows.with_attackers():
        assert rows.norm[r][rows.malicious[r]].max() <= 0.1 * rows.norm[r][~rows.malicious[r]].max() + 1e-6


def attack_fang_krum(record, rows):
    identical_rows(rows)
    # The attack's aim: Krum (weight 1 on one row) selects a crafted copy.
    for r in rows.with_attackers():
        assert close(np.sort(rows.weight[r])[-1], 1.0) and close(np.sort(rows.weight[r])[:-1], 0.0)
        assert rows.malicious[r][np.argmax(rows.weight[r])], f"round {r + 1}: Krum picked a benign update"


def attack_fang_trim(record, rows):
    # Every coordinate is pushed beyond the benign extremes, each attacker
    # drawing its own row: the norms fall outside the benign range, and
    # differ from one attacker to the next.
    for r in rows.with_attackers():
        bad, good = rows.norm[r][rows.malicious[r]], rows.norm[r][~rows.malicious[r]]
        assert (bad < good.min()).all() or (bad > good.max()).all(), (bad, good)
    for r in rows.with_attackers(2):
        bad = rows.norm[r][rows.malicious[r]]
        assert not close(bad, bad[0], rtol=1e-6)


def attack_min_max(record, rows):
    identical_rows(rows)


def attack_min_sum(record, rows):
    identical_rows(rows)


ATTACK_PROPERTIES = {name[len("attack_"):]: f for name, f in dict(globals()).items() if name.startswith("attack_")}


def test_every_attack_has_a_property_to_test():
    assert sorted(ATTACK_PROPERTIES) == sorted(ATTACKS)


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_scenario_runs_and_shows_its_attack(name, run_scenario):
    record = run_scenario(f"attacks/{name}.fls")
    rows = check_run(record, [name])
    assert record.data[f"plugins/attack_{name}"]["name"] == name
    ATTACK_PROPERTIES[name](record, rows)


# --- aggregators -------------------------------------------------------------


def _uniform_over_kept(rows):
    for r in range(rows.weight.shape[0]):
        n = rows.kept[r].sum()
        assert close(rows.weight[r][rows.kept[r]], 1.0 / n) and close(rows.weight[r][~rows.kept[r]], 0.0)


def _exactly(rows, count: int, share: float):
    """In every round, ``count`` rows have weight ``share`` and the rest 0."""
    for r in range(rows.weight.shape[0]):
        weights = rows.weight[r]
        chosen = weights > 1e-9
        assert chosen.sum() == count, f"round {r + 1}: {weights}"
        assert close(weights[chosen], share)


def defense_median(record, rows):
    _uniform_over_kept(rows)


def defense_trimmed_mean(record, rows):
    _uniform_over_kept(rows)


def defense_krum(record, rows):
    _exactly(rows, 1, 1.0)
    for r in range(rows.weight.shape[0]):
        assert not rows.malicious[r][np.argmax(rows.weight[r])], "Krum picked a noise update"


def defense_multi_krum(record, rows):
    n, f = rows.weight.shape[1], 2
    _exactly(rows, n - f, 1.0 / (n - f))
    assert (rows.weight[rows.malicious] == 0).all(), "an update scaled by 10 was averaged"


def defense_bulyan(record, rows):
    n, f = rows.weight.shape[1], 2
    assert n == 12
    _exactly(rows, n - 2 * f, 1.0 / (n - 2 * f))  # theta = n - 2f selected updates


def defense_geometric_median(record, rows):
    for r, bad, good in rows.rows():
        assert close(rows.weight[r].sum(), 1.0) and (rows.weight[r] > 0).all()
        if bad.any():  # Weiszfeld weights fall with the distance to the estimate
            assert rows.weight[r][bad].max() < rows.weight[r][good].min()


def defense_centered_clipping(record, rows):
    n, tau = rows.weight.shape[1], 0.5
    assert (rows.weight >= 0).all() and (rows.weight <= 1.0 / n + 1e-6).all()
    # Round 1 starts from a zero centre: each share is min(1, tau / ||x_i||) / n.
    assert close(rows.weight[0], np.minimum(1.0, tau / rows.norm[0]) / n, rtol=1e-3)


def defense_norm_clipping(record, rows):
    bound = 1.0
    share = rows.examples / rows.examples.sum(axis=1, keepdims=True)
    assert close(rows.weight, share * np.minimum(1.0, bound / rows.norm), rtol=1e-3)
    assert (rows.weight[rows.malicious] < 0.5 * share[rows.malicious]).all(), "boosted rows were not clipped"


def defense_dnc(record, rows):
    n, f = rows.weight.shape[1], 2
    _exactly(rows, n - f, 1.0 / (n - f))  # floor(c * f) = 2 dropped, the rest averaged


def defense_signguard(record, rows):
    for r in range(rows.weight.shape[0]):
        weights = rows.weight[r]
        chosen = weights > 0
        assert 0 < chosen.sum() <= len(weights)
        median = np.median(rows.norm[r])
        # The chosen rows are clipped to the median norm and averaged.
        expected = np.minimum(1.0, median / rows.norm[r][chosen]) / chosen.sum()
        assert close(weights[chosen], expected, rtol=1e-3)
        ratio = rows.norm[r] / median
        assert ((ratio[chosen] >= 0.1) & (ratio[chosen] <= 3.0)).all()


def defense_bucketing(record, rows):
    _exactly(rows, 2, 0.5)  # the inner Krum picks one bucket mean of s = 2 updates


def defense_afa(record, rows):
    for r in range(rows.weight.shape[0]):
        assert close(rows.weight[r].sum(), 1.0)
    assert (rows.weight[rows.malicious] == 0).all(), "a noise update was averaged"
    # Round 1: every client has the prior reputation, so the good updates
    # are weighted by their example counts.
    good = rows.weight[0] > 0
    assert close(rows.weight[0][good], rows.examples[0][good] / rows.examples[0][good].sum())


def defense_fltrust(record, rows):
    for r in range(rows.weight.shape[0]):
        assert (rows.weight[r] >= 0).all() and close(rows.weight[r].sum(), 1.0)
        # Shares are trust scores (cosine to the root update), not example counts.
        trusted = rows.weight[r][rows.weight[r] > 0]
        assert trusted.max() > 1.5 * trusted.min()
    assert (rows.weight[rows.malicious] == 0).all(), "an update against the root direction got trust"


# --- detectors ---------------------------------------------------------------


def _one_score_per_row(rows):
    assert rows.scores.shape == rows.kept.shape + (1,)
    score = rows.scores[..., 0]
    assert np.isfinite(score[rows.kept]).all()
    assert np.isfinite(score).all()  # every row is finite here, so every row was examined
    assert close(rows.weight[~rows.kept], 0.0)
    tp = rows.record.data["detection/true_positives"]
    fp = rows.record.data["detection/false_positives"]
    assert list(tp) == list((~rows.kept & rows.malicious).sum(axis=1))
    assert list(fp) == list((~rows.kept & ~rows.malicious).sum(axis=1))
    return score


def _drops_every_attacker(rows):
    dropped = ~rows.kept
    assert dropped[rows.malicious].all(), f"attackers kept: {rows.malicious & rows.kept}"


def defense_flame(record, rows):
    score = _one_score_per_row(rows)
    assert (score[rows.kept] == 0).all() and (score[~rows.kept] > 0).all()
    n = rows.kept.shape[1]
    assert (rows.kept.sum(axis=1) >= n // 2 + 1).all()  # the majority cluster
    _drops_every_attacker(rows)


def defense_foolsgold(record, rows):
    score = _one_score_per_row(rows)
    assert ((score >= 0) & (score <= 1)).all()
    assert (rows.kept == (score > 0)).all()
    _drops_every_attacker(rows)


def defense_contra(record, rows):
    score = _one_score_per_row(rows)
    assert ((score >= 0) & (score <= 1)).all()
    assert (rows.kept == (score >= 0.5 - 1e-6)).all()
    # Reputations start at 1 and move by delta = 0.1.
    assert close(score * 10, np.round(score * 10), atol=1e-4)
    for r in rows.with_attackers(2):  # the colluders find each other
        assert score[r][rows.malicious[r]].max() < score[r][~rows.malicious[r]].min()


def defense_norm_outlier(record, rows):
    score = _one_score_per_row(rows)
    assert (rows.kept == (np.abs(score) <= 3.5)).all()
    _drops_every_attacker(rows)


def defense_cosine_outlier(record, rows):
    score = _one_score_per_row(rows)
    assert (rows.kept == (np.abs(score) <= 3.5)).all()
    _drops_every_attacker(rows)


def defense_label_flip_pca(record, rows):
    score = _one_score_per_row(rows)
    assert (score >= 0).all()
    for r in rows.with_attackers():  # the flippers lie farthest from the main cluster
        assert score[r][rows.malicious[r]].min() > score[r][~rows.malicious[r]].max()
    _drops_every_attacker(rows)


def defense_auror(record, rows):
    score = _one_score_per_row(rows)
    assert (score >= 0).all()
    _drops_every_attacker(rows)
    assert rows.kept[~rows.malicious].all(), "Auror dropped a benign update"


def defense_fldetector(record, rows):
    score = _one_score_per_row(rows)
    # Two rounds: the first curvature pair comes in round 3, so there is no
    # prediction yet: every score is 0 and every client is kept.  The
    # detector's state (in the checkpoint) has every client's update.
    assert (score == 0).all() and rows.kept.all()
    state = {name[len("checkpoint/state/detector_0/"):]: value for name, value in record.data.items()
             if name.startswith("checkpoint/state/detector_0/")}
    assert int(state["rounds"]) == ROUNDS and int(state["pairs"]) == 0
    assert (state["previous_round"] == ROUNDS).all()  # every client takes part in every round
    assert (np.abs(state["previous"]).sum(axis=1) > 0).all()


DEFENSE_PROPERTIES = {name[len("defense_"):]: f for name, f in dict(globals()).items() if name.startswith("defense_")}


def test_every_defense_has_a_property_to_test():
    assert sorted(DEFENSE_PROPERTIES) == sorted(AGGREGATORS + DETECTORS)


@pytest.mark.parametrize("name", AGGREGATORS + DETECTORS)
def test_defense_scenario_runs_and_shows_its_rule(name, run_scenario):
    record = run_scenario(f"defenses/{name}.fls")
    scenario = checked(SCENARIOS / "defenses" / f"{name}.fls")
    rows = check_run(record, [group.name for group in scenario.attacks])
    if name in DETECTORS:
        assert record.data["plugins/detector_0"]["name"] == name
    else:
        assert record.data["plugins/aggregator"]["name"] == name
        assert rows.scores.shape[-1] == 0 and rows.kept.all()
    DEFENSE_PROPERTIES[name](record, rows)


# --- the mixed scenario ------------------------------------------------------


def test_mixed_scenario_tells_the_backdoor_and_alie_groups_apart(run_scenario):
    record = run_scenario(MIXED)
    rows = check_run(record, ["backdoor", "alie"])
    split_group = record.data["split/attack_group"]
    assert sorted(set(split_group[split_group >= 0].tolist())) == [0, 1]
    assert (split_group == 0).sum() == 3 and (split_group == 1).sum() == 3
    acting = set(rows.group[rows.malicious].tolist())
    assert acting == {0, 1}, f"groups acting in the first rounds: {acting}"
    assert record.data["plugins/attack_backdoor"]["name"] == "backdoor"
    assert record.data["plugins/attack_alie"]["name"] == "alie"
    metric(record, "backdoor_attack_success_rate")
    assert not any(k.startswith("metrics/alie_") for k in record.data)
    # The groups behave as their attacks do: ALIE's rows in a round are one
    # crafted row; the backdoor's are each client's own (poisoned) training.
    for r in range(rows.group.shape[0]):
        alie = rows.norm[r][rows.group[r] == 1]
        backdoor = rows.norm[r][rows.group[r] == 0]
        if len(alie) >= 2:
            assert close(alie, alie[0], rtol=1e-5)
        if len(backdoor) >= 2:
            assert not close(backdoor, backdoor[0], rtol=1e-5)
