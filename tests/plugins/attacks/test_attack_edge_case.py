"""The edge-case backdoor (Wang et al. 2020, "Attack of the Tails"):
poisoned client data hold edge-case samples with the target label at the
poison ratio, honest clients are untouched, the attack success rate counts
exactly the edge-case test samples classified as the target, and a bad
edge-case file is a golden check error (exit 2) before anything runs.

Edge-case sets are made here: by hand (with values that tell every sample
apart), or from the digits dataset by ``fedarena.plugins.edge_cases``; no
binary file is committed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fedarena.core.scenario.sweep import check
from fedarena.core.errors import RunError, ScenarioError
from fedarena.core.plugin.interfaces import Facts
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import default_registry
from fedarena.plugins.attacks import edge_case as A
from fedarena.plugins.edge_cases import digits_edge_set, main as edge_cases_main, write_edge_set

from attack_harness import check_only_own_rows_change, check_registers, check_traces_with_an_unknown_number_of_rows

SHAPE = (4, 4, 1)
FACTS = Facts(10, 5, 4, SHAPE)


def save(path: Path, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:  # exactly this name (numpy.savez would add .npz)
        np.savez(file, **arrays)
    return path


def hand_edge_set(m: int = 20, tests: int = 6) -> dict[str, np.ndarray]:
    """Edge-case sample i is filled with 10 + i (test samples: 100 + i):
    nothing like client data in [0, 0.5), and each tells which it is."""
    x_train = (10.0 + np.arange(m, dtype=np.float32))[:, None, None, None] * np.ones((1,) + SHAPE, np.float32)
    x_test = (100.0 + np.arange(tests, dtype=np.float32))[:, None, None, None] * np.ones((1,) + SHAPE, np.float32)
    return {"x_train": x_train, "x_test": x_test}


@pytest.fixture
def hand_file(tmp_path) -> Path:
    return save(tmp_path / "hand.npz", **hand_edge_set())


@pytest.fixture
def digits_edge_file(tmp_path) -> Path:
    """A tiny edge-case set for the digits dataset: rotated sevens."""
    return write_edge_set(tmp_path / "edge" / "sevens.npz", digits_edge_set())


def client_data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return (0.5 * rng.random((n,) + SHAPE)).astype(np.float32), rng.integers(0, 4, n).astype(np.int32)


def poisoned(attack, x, y, seed=(1, 2), member=0, facts=FACTS):
    px, py = attack.poison_data(tf.constant(x), tf.constant(y), tf.constant(seed, tf.int64), facts,
                                tf.constant(member, tf.int32))
    return np.asarray(px), np.asarray(py)


# ---------------------------------------------------------------- poisoning


@pytest.mark.parametrize("ratio, count", [(0.3, 15), (0.4, 20), (1.0, 50), (0.01, 0)])
def test_poisoned_data_hold_edge_samples_labelled_target_at_the_poison_ratio(hand_file, ratio, count):
    x, y = client_data()
    attack = A.EdgeCase(path=str(hand_file), target=3, poison_ratio=ratio)
    px, py = poisoned(attack, x, y)
    assert px.shape == x.shape and py.shape == y.shape  # the client keeps its number of samples
    replaced = (px != x).reshape(len(x), -1).any(axis=1)
    assert replaced.sum() == count
    # Every replaced sample is an x_train sample, whole: which one, its value says.
    which = px[replaced][:, 0, 0, 0] - 10.0
    np.testing.assert_array_equal(px[replaced], np.asarray(hand_edge_set()["x_train"])[which.astype(int)])
    assert ((which >= 0) & (which < 20)).all()  # never an x_test sample
    assert (py[replaced] == 3).all()
    np.testing.assert_array_equal(px[~replaced], x[~replaced])
    np.testing.assert_array_equal(py[~replaced], y[~replaced])
    # x_train in a random order, repeated only when more samples are needed than it has.
    used = np.bincount(which.astype(int), minlength=20)
    assert used.max() - used.min() <= 1 and used.sum() == count


def test_the_poisoned_samples_and_their_edge_cases_change_with_the_seed(hand_file):
    x, y = client_data()
    attack = A.EdgeCase(path=str(hand_file), target=0, poison_ratio=0.2)
    first, _ = poisoned(attack, x, y, seed=(1, 2))
    again, _ = poisoned(attack, x, y, seed=(1, 2))
    other, _ = poisoned(attack, x, y, seed=(1, 3))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_edge_case_traces_once_for_clients_of_any_size(hand_file):
    attack = A.EdgeCase(path=str(hand_file), target=1, poison_ratio=0.5)

    @tf.function(input_signature=[tf.TensorSpec([None, *SHAPE], tf.float32), tf.TensorSpec([None], tf.int32)])
    def poison(x, y):
        return attack.poison_data(x, y, tf.constant([1, 2], tf.int64), FACTS, tf.constant(0))

    for n in (0, 7, 40):
        x, y = client_data(n)
        px, py = (np.asarray(t) for t in poison(x, y))
        edge = (px >= 10).reshape(n, 16).all(axis=1)
        assert px.shape == x.shape and edge.sum() == round(0.5 * n) and (py[edge] == 1).all()
    assert poison.experimental_get_tracing_count() == 1


def test_honest_clients_are_untouched_in_the_tff_round(tff_context, digits_edge_file):
    from fedarena.core.execution.engine.run import Run

    def first_round(ratio):
        text = DIGITS.format(attack=f'edge_case(path = "{digits_edge_file}", target = 1, poison_ratio = {ratio})')
        return next(Run(check(parse(text, "t.fls"), default_registry())).rounds()).clients

    half, full = first_round(0.5), first_round(1.0)
    bad = half["malicious"]
    assert bad.any() and (~bad).any() and (full["malicious"] == bad).all()
    np.testing.assert_array_equal(full["update_norm"][~bad], half["update_norm"][~bad])
    assert not np.allclose(full["update_norm"][bad], half["update_norm"][bad])


DIGITS = """\
scenario "edge" {{
  seed 2
  rounds 1
  dataset digits
  split iid over 6 clients
  model logistic
  training {{
    clients_per_round 6
    batch_size 32
  }}
  attack {attack} {{
    clients 2
  }}
}}
"""


# ---------------------------------------------------------------- the metric


def test_attack_success_rate_counts_exactly_the_edge_test_samples_predicted_as_target(hand_file):
    attack = A.EdgeCase(path=str(hand_file), target=2)
    seen = []
    verdicts = np.array([2, 0, 2, 2, 1, 3])  # by test sample: 3 of 6 classified as the target

    def predict(inputs):
        seen.append(inputs.copy())
        return np.eye(4)[verdicts[(inputs.reshape(len(inputs), -1)[:, 0] - 100).astype(int)]]

    clean_x, clean_y = client_data(9)
    assert attack.test_metrics(predict, clean_x, clean_y, FACTS) == {"attack_success_rate": pytest.approx(0.5)}
    np.testing.assert_array_equal(seen[0], hand_edge_set()["x_test"])  # the edge-case test set, not the clean one
    assert A.EdgeCase(path=str(hand_file), target=1).test_metrics(predict, clean_x, clean_y, FACTS) == {
        "attack_success_rate": pytest.approx(1 / 6)}


def test_boost_and_norm_bound_touch_the_attackers_rows_only():
    attack = A.EdgeCase(path="unread.npz", target=0)
    assert attack.poisons_data and not attack.poisons_updates
    rng = np.random.default_rng(0)
    updates = rng.normal(size=(5, 12)).astype(np.float32)
    own = np.array([True, False, True, False, False])
    ctx = None  # unused by this attack
    out = np.asarray(A.EdgeCase(path="x", target=0, boost=3.0).poison_updates(updates, own, ~own, ctx))
    np.testing.assert_allclose(out[own], 3.0 * updates[own], rtol=1e-6)
    np.testing.assert_array_equal(out[~own], updates[~own])
    bounded = A.EdgeCase(path="x", target=0, boost=3.0, norm_bound=1.5)
    out = np.asarray(bounded.poison_updates(updates, own, ~own, ctx))
    np.testing.assert_allclose(np.linalg.norm(out[own], axis=1), 1.5, rtol=1e-5)  # 3x rows of norm > 0.5
    np.testing.assert_allclose(out[own] / np.linalg.norm(out[own], axis=1, keepdims=True),
                               updates[own] / np.linalg.norm(updates[own], axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(out[~own], updates[~own])
    loose = np.asarray(A.EdgeCase(path="x", target=0, norm_bound=1e6).poison_updates(updates, own, ~own, ctx))
    np.testing.assert_allclose(loose, updates, rtol=1e-6)  # within the ball: unchanged


# ---------------------------------------------------------------- the file, checked with the scenario


TEXT = """\
scenario "edge" {{
  rounds 2
  dataset synthetic(samples = 200, features = 3, classes = 3)
  split iid over 4 clients
  model logistic
  attack edge_case(path = "{path}", target = 1) {{
    clients 1
  }}
}}
"""


def checked_at(folder: Path, path: str):
    return check(parse(TEXT.format(path=path), str(folder / "s.fls")), default_registry())


def report_at(folder: Path, path: str) -> str:
    with pytest.raises(ScenarioError) as caught:
        checked_at(folder, path)
    return str(caught.value)


def golden(folder: Path, path: str, message: str) -> str:
    line = f'      attack edge_case(path = "{path}", target = 1) {{'
    return f"{folder / 's.fls'}:6:10: edge_case: {message}\n{line}\n             ^"


def flat(n: int, features: int = 3) -> np.ndarray:
    return np.arange(n * features, dtype=np.float32).reshape(n, features) / (n * features)


def test_a_relative_path_is_read_from_the_scenario_file_s_folder(tmp_path, monkeypatch):
    save(tmp_path / "data" / "edge.npz", x_train=flat(5), x_test=flat(2))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the working directory
    (group,) = checked_at(tmp_path, "data/edge.npz").attacks
    assert group.attack.path == "data/edge.npz"
    facts = checked_at(tmp_path, "data/edge.npz").facts
    assert facts.resolve("data/edge.npz") == tmp_path / "data" / "edge.npz"
    np.testing.assert_array_equal(group.attack.edge_set(facts)[0], flat(5))
    assert checked_at(tmp_path, str(tmp_path / "data" / "edge.npz")).attacks  # absolute paths as they are
    monkeypatch.setenv("HOME", str(tmp_path))
    assert checked_at(elsewhere, "~/data/edge.npz").attacks
    # A scenario without a file: the working directory.
    monkeypatch.chdir(tmp_path)
    assert check(parse(TEXT.format(path="data/edge.npz")), default_registry()).attacks


def test_a_missing_file_is_a_golden_check_error(tmp_path):
    where = tmp_path / "nowhere.npz"
    assert report_at(tmp_path, "nowhere.npz") == golden(
        tmp_path, "nowhere.npz",
        f"the edge-case file {where} does not exist; give path = an .npz file with arrays x_train and x_test "
        f"(for the digits dataset, python -m fedarena.plugins.edge_cases {where} writes one)")
    (tmp_path / "folder.npz").mkdir()
    assert "folder.npz is a folder, not a file; give path = an .npz file" in report_at(tmp_path, "folder.npz")


def test_samples_of_the_wrong_shape_are_a_golden_check_error(tmp_path):
    save(tmp_path / "wide.npz", x_train=flat(5, 4), x_test=flat(2, 4))
    assert report_at(tmp_path, "wide.npz") == golden(
        tmp_path, "wide.npz",
        f"{tmp_path / 'wide.npz'}: x_train has samples of shape (4,), but the dataset's inputs have shape (3,); "
        "save x_train as an array of shape [n, 3]")
    save(tmp_path / "test_wide.npz", x_train=flat(5), x_test=flat(2, 1)[:, :, None])
    assert f"{tmp_path / 'test_wide.npz'}: x_test has samples of shape (1, 1)" in report_at(tmp_path, "test_wide.npz")


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": flat(5)}, "has no array 'x_test' (it has x_train); save the edge-case samples with "
                           "numpy.savez(path, x_train=..., x_test=...)"),
    ({"train": flat(5), "test": flat(2)}, "has no array 'x_train' or 'x_test' (it has train, test)"),
    ({"x_train": flat(0), "x_test": flat(2)}, "x_train has no samples"),
    ({"x_train": flat(3), "x_test": np.array([[0, np.nan, 1]])}, "x_test has values that are not finite"),
    ({"x_train": np.array([["a", "b", "c"]]), "x_test": flat(2)}, "x_train holds <U1 values, expected numbers"),
])
def test_a_file_without_the_edge_case_arrays_is_a_check_error(tmp_path, arrays, message):
    save(tmp_path / "edge.npz", **arrays)
    assert message in report_at(tmp_path, "edge.npz")


def test_a_file_that_is_not_an_npz_archive_is_a_check_error(tmp_path):
    np.save(tmp_path / "one.npy", flat(3))
    assert "holds a single array, not an .npz archive; save the edge-case samples with numpy.savez(" in \
        report_at(tmp_path, "one.npy")
    (tmp_path / "text.npz").write_text("x_train, x_test\n")
    assert f"cannot read {tmp_path / 'text.npz'} as an .npz file" in report_at(tmp_path, "text.npz")


def test_a_target_outside_the_classes_is_reported_with_the_file(tmp_path):
    with pytest.raises(ScenarioError) as caught:
        check(parse(TEXT.format(path="none.npz").replace("target = 1", "target = 7"), str(tmp_path / "s.fls")),
              default_registry())
    messages = [d.message for d in caught.value.diagnostics]
    assert messages[0] == "edge_case target 7 is not a class of this dataset (classes 0..2)"
    assert "does not exist" in messages[1]


def test_the_cli_reports_a_bad_edge_case_file_with_exit_code_2(tmp_path, capsys):
    from fedarena.core.cli.main import main

    scenario = tmp_path / "s.fls"
    scenario.write_text(TEXT.format(path="missing.npz"))
    assert main(["check", str(scenario)]) == 2
    assert capsys.readouterr().err == golden(
        tmp_path, "missing.npz",
        f"the edge-case file {tmp_path / 'missing.npz'} does not exist; give path = an .npz file with arrays "
        f"x_train and x_test (for the digits dataset, python -m fedarena.plugins.edge_cases "
        f"{tmp_path / 'missing.npz'} writes one)") + "\n"


def test_a_file_changed_after_the_check_fails_the_run_with_its_reason(tmp_path):
    save(tmp_path / "edge.npz", x_train=flat(5), x_test=flat(2))
    scenario = checked_at(tmp_path, "edge.npz")
    save(tmp_path / "edge.npz", x_train=flat(5, 2), x_test=flat(2, 2))
    with pytest.raises(RunError, match="x_train has samples of shape \\(2,\\)"):
        scenario.attacks[0].attack.test_metrics(lambda x: x, None, None, scenario.facts)


# ---------------------------------------------------------------- the digits edge-case set


def test_the_digits_edge_set_is_rotated_sevens_split_in_two(digits_edge_file):
    from sklearn.datasets import load_digits

    data = np.load(digits_edge_file)
    x_train, x_test = data["x_train"], data["x_test"]
    assert x_train.shape[1:] == x_test.shape[1:] == (8, 8, 1) and x_train.dtype == np.float32
    digits = load_digits()
    sevens = {np.rot90(image / 16.0).astype(np.float32).tobytes() for image in digits.images[digits.target == 7]}
    rows = [x[..., 0].tobytes() for x in np.concatenate([x_train, x_test])]
    assert set(rows) <= sevens and len(rows) == (digits.target == 7).sum()
    assert not {x[..., 0].tobytes() for x in x_train} & {x[..., 0].tobytes() for x in x_test}
    assert abs(len(x_train) - len(x_test)) <= 1
    again = digits_edge_set()
    np.testing.assert_array_equal(again["x_train"], x_train)  # the same file every time
    inverted = digits_edge_set(digit=3, transform="invert", test_fraction=0.25)
    assert len(inverted["x_test"]) * 3 == pytest.approx(len(inverted["x_train"]), abs=3)
    assert inverted["x_train"].max() <= 1 and inverted["x_train"].min() >= 0


def test_the_helper_command_writes_a_file_the_attack_accepts(tmp_path, capsys):
    out = tmp_path / "made" / "sevens.npz"
    assert edge_cases_main([str(out), "--digit", "4"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    x_train, x_test = A.read_edge_set(out, (8, 8, 1))
    assert len(x_train) and len(x_test)
    assert [p.name for p in out.parent.iterdir()] == ["sevens.npz"]  # no temporary file left
    with pytest.raises(SystemExit):
        edge_cases_main([str(out), "--test-fraction", "1.5"])


VARIANTS = {"edge_case_boost": A.EdgeCase(path="unread.npz", target=0, boost=3.0),
            "edge_case_bound": A.EdgeCase(path="unread.npz", target=0, norm_bound=0.5)}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_own_rows_change(variant):
    check_only_own_rows_change(VARIANTS[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_traces_with_an_unknown_number_of_rows(variant):
    check_traces_with_an_unknown_number_of_rows(VARIANTS[variant])


def test_registration():
    check_registers(A, "edge_case", A.EdgeCase)
