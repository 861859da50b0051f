"""The ``npz`` dataset: one's own arrays, checked with the scenario from
their headers (a bad file is a scenario error at the dataset, with the
fix), loaded without pickle, with optional writers for the natural split."""

from __future__ import annotations

import numpy as np
import pytest

from fedarena.core.errors import RunError, ScenarioError
from fedarena.core.language.parser import parse
from fedarena.core.plugin.interfaces import DatasetInfo
from fedarena.core.plugin.registry import default_registry
from fedarena.core.scenario.sweep import check
from fedarena.plugins.datasets._writers import FederatedArrays, writers_of
from fedarena.plugins.datasets.npz import Npz
from fedarena.plugins.splits import Natural


def arrays(**changes):
    rng = np.random.default_rng(0)
    base = {"x_train": rng.random((10, 4, 3)), "y_train": np.arange(10) % 3,
            "x_test": rng.random((4, 4, 3)).astype(np.float32), "y_test": np.array([0, 1, 2, 4])}
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def saved(tmp_path, name="own.npz", **changes):
    file = tmp_path / name
    np.savez(file, **arrays(**changes))
    return file


def problem(file, classes=0) -> str:
    with pytest.raises(RunError) as caught:
        Npz(path=str(file), classes=classes).info()
    return str(caught.value)


def test_npz_loads_ones_own_arrays(tmp_path):
    file = saved(tmp_path)
    data = Npz(path=str(file)).load(seed=0)
    given = arrays()
    np.testing.assert_array_equal(data.train_x, given["x_train"].astype(np.float32))
    assert data.train_x.dtype == np.float32 and data.train_y.dtype == np.int32
    np.testing.assert_array_equal(data.test_y, [0, 1, 2, 4])
    assert data.info == DatasetInfo(num_classes=5, input_shape=(4, 3), has_writers=False)
    assert Npz(path=str(file), classes=7).info().num_classes == 7
    assert not isinstance(data, FederatedArrays)
    column = saved(tmp_path, "column.npz", y_train=(np.arange(10) % 3).reshape(10, 1))  # Keras' (n, 1) labels
    assert Npz(path=str(column)).load(seed=0).train_y.shape == (10,)


def test_npz_writers_make_natural_clients(tmp_path):
    writers = np.array(["bo", "al", "bo", "cy", "al", "al", "cy", "bo", "al", "cy"])
    file = saved(tmp_path, writers_train=writers)
    assert Npz(path=str(file)).info().has_writers
    data = Npz(path=str(file)).load(seed=0)
    assert data.writer_names == ("al", "bo", "cy")
    np.testing.assert_array_equal(data.train_writers, [1, 0, 1, 2, 0, 0, 2, 1, 0, 2])
    np.testing.assert_array_equal(writers_of(data.train_y), data.train_writers)
    parts = Natural().partition(data.train_y, 3, np.random.default_rng(0))
    assert sorted(len(p) for p in parts) == [3, 3, 4]
    numbered = Npz(path=str(saved(tmp_path, "n.npz", writers_train=np.arange(10) // 5 + 100))).load(seed=0)
    assert numbered.writer_names == ("100", "101")


def test_npz_problems_name_the_array_and_the_fix(tmp_path):
    file = saved(tmp_path, y_test=None)
    assert problem(file) == (f"npz: {file} has no y_test (it holds x_train, y_train, x_test); save it with "
                             "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
    file = saved(tmp_path, writer_train=np.zeros(10, int))
    assert problem(file) == (f"npz: {file} holds writer_train, which npz does not read; the arrays are x_train, "
                             "y_train, x_test, y_test and optionally writers_train")
    file = saved(tmp_path, y_train=np.arange(10) / 2)
    assert problem(file) == (f"npz: {file}: y_train has dtype float64; it must hold integers "
                             "(convert it with .astype(...))")
    file = saved(tmp_path, x_train=np.array([{"a": 1}] * 10, dtype=object))
    assert "x_train holds Python objects (dtype object), which are not loaded (allow_pickle is off" in problem(file)
    file = saved(tmp_path, y_train=np.arange(9))
    assert problem(file) == (f"npz: {file}: y_train has shape (9,) for x_train of shape (10, 4, 3); it must hold "
                             "one label per sample, shape (10,)")
    file = saved(tmp_path, x_test=np.zeros((4, 3, 4)))
    assert problem(file) == (f"npz: {file}: x_train has samples of shape (4, 3) but x_test of shape (3, 4); they "
                             "must be the same")
    file = saved(tmp_path, writers_train=np.zeros(3, int))
    assert "writers_train has shape (3,); it must hold one writer per training sample, shape (10,)" in problem(file)
    file = saved(tmp_path, y_test=np.array([0, -1, 2, 1]))
    assert problem(file) == f"npz: {file}: y_test has the label -1; labels are class indices 0, 1, 2, ..."
    file = saved(tmp_path)
    assert problem(file, classes=4) == (f"npz: {file}: labels go up to 4, but classes = 4; set classes to at least 5 "
                                        "(or 0 to take it from the labels)")
    (tmp_path / "text.npz").write_text("hello")
    assert problem(tmp_path / "text.npz").startswith(f"npz: {tmp_path / 'text.npz'} is not an .npz archive")
    assert problem(tmp_path / "none.npz") == (f"npz: {tmp_path / 'none.npz'} does not exist; give path = an .npz "
                                              "file (save it with np.savez(path, x_train=..., y_train=..., "
                                              "x_test=..., y_test=...))")
    file = saved(tmp_path, x_train=np.full((10, 4, 3), np.nan))
    with pytest.raises(RunError, match="x_train has values that are not finite"):
        Npz(path=str(file)).load(seed=0)


def test_a_bad_npz_is_a_scenario_error_at_the_dataset_and_a_relative_path_is_the_scenario_folders(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    saved(folder, y_test=None)
    text = """scenario "s" {
  rounds 1
  dataset npz(path = "own.npz")
  split iid over 2 clients
  model mlp
}"""
    with pytest.raises(ScenarioError) as caught:
        check(parse(text, str(folder / "s.fls")), default_registry())
    assert str(caught.value).startswith(
        f"{folder / 's.fls'}:3:11: dataset 'npz' cannot describe its data: npz: {folder / 'own.npz'} has no y_test")
    saved(folder)
    scenario = check(parse(text, str(folder / "s.fls")), default_registry())
    assert scenario.dataset.path == str(folder / "own.npz") and scenario.facts.input_shape == (4, 3)
