"""The ``emnist`` dataset: Federated EMNIST from a SQLite file in TFF's
layout, with each sample's writer for the ``natural`` split."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from dataset_helpers import assert_images, expect_error, write_emnist_db
from fedarena.plugins.datasets._writers import FederatedArrays, WriterLabels, writers_of
from fedarena.plugins.datasets.emnist import Emnist
from fedarena.plugins.splits import Natural


def test_emnist_loads_from_tffs_sqlite_with_writers(tmp_path):
    counts = {"f0001_10": (5, 2), "f0002_20": (3, 1), "f0003_30": (7, 2)}
    truth = write_emnist_db(tmp_path, counts)
    data = Emnist(path=str(tmp_path)).load(seed=0)
    assert isinstance(data, FederatedArrays)
    assert_images(data.train_x, data.train_y, (28, 28, 1), 15)
    assert_images(data.test_x, data.test_y, (28, 28, 1), 5)
    assert data.writer_names == tuple(sorted(counts))
    assert np.bincount(data.train_writers).tolist() == [5, 3, 7]
    assert np.bincount(data.test_writers).tolist() == [2, 1, 2]
    np.testing.assert_array_equal(writers_of(data.train_y), data.train_writers)
    first = data.train_writers == 0
    pixels, labels = truth["f0001_10", "digits_only_train"]
    np.testing.assert_allclose(data.train_x[first, ..., 0], 1.0 - pixels, atol=1e-6)  # inverted to ink = 1
    np.testing.assert_array_equal(data.train_y[first], labels)
    raw = Emnist(path=str(tmp_path), invert=False).load(seed=0)
    np.testing.assert_allclose(raw.train_x[first, ..., 0], pixels, atol=1e-6)
    # The natural split sees the writers through the labels.
    parts = Natural().partition(data.train_y, 3, np.random.default_rng(0))
    assert sorted(len(p) for p in parts) == [3, 5, 7]
    assert all(len(set(data.train_writers[p])) == 1 for p in parts)
    # Derived arrays do not pretend to carry writers.
    assert writers_of(data.train_y[:4]) is None and writers_of(np.asarray(data.train_y)) is None
    kept = Emnist(path=str(tmp_path), max_writers=2).load(seed=0)
    assert len(kept.writer_names) == 2 and len(set(kept.train_writers)) == 2


def test_emnist_bad_database_is_a_run_error(tmp_path):
    (tmp_path / "emnist_all.sqlite").write_bytes(b"this is not a database" * 100)
    expect_error(Emnist(path=str(tmp_path)), "emnist", "emnist_all.sqlite")


def test_writer_labels_keep_their_writers_only_whole():
    labels = WriterLabels([3, 1, 2], [0, 0, 1], ("a", "b"))
    assert labels.dtype == np.int32 and labels.writers.tolist() == [0, 0, 1]
    assert writers_of(labels[::-1]) is None
    assert pickle.loads(pickle.dumps(labels)).tolist() == [3, 1, 2]
    with pytest.raises(ValueError):
        WriterLabels([1, 2], [0])
