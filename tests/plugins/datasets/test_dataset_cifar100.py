"""The ``cifar100`` dataset: the python files ``train`` and ``test`` written
byte by byte, in a folder, a subfolder or a tar archive; fine and coarse
labels; pickles that would run code are refused (the unpickler shared with
``cifar10``)."""

from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np
import pytest

from dataset_helpers import assert_images, expect_error
from fedarena.core.plugin.interfaces import DatasetInfo
from fedarena.plugins.datasets.cifar100 import Cifar100


def cifar100_file(n: int, seed: int):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    fine = rng.integers(0, 100, n)
    coarse = fine // 5  # any map to 0..19 will do for the test
    data = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # red plane, green, blue, row-major
    batch = {b"filenames": [b"x.png"] * n, b"batch_label": b"fake", b"fine_labels": [int(v) for v in fine],
             b"coarse_labels": [int(v) for v in coarse], b"data": data}
    return pickle.dumps(batch, protocol=2), images, fine, coarse


def write_cifar100(folder, train=True, n_train=9, n_test=4):
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, n, wanted, seed in (("train", n_train, train, 1), ("test", n_test, True, 2)):
        if wanted:
            data, *arrays = cifar100_file(n, seed)
            (folder / name).write_bytes(data)
            written[name] = arrays
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [], b"coarse_label_names": []}))
    return written


@pytest.mark.parametrize("layout", ["folder", "python_subfolder", "tar_archive"])
def test_cifar100_python_files_fine_and_coarse(tmp_path, layout):
    source = tmp_path / "cifar-100-python"
    written = write_cifar100(source)
    path = {"folder": source, "python_subfolder": tmp_path}.get(layout)
    if layout == "tar_archive":
        path = tmp_path / "cifar-100-python.tar.gz"
        with tarfile.open(path, "w:gz") as archive:
            archive.add(source, arcname="cifar-100-python")
    data = Cifar100(path=str(path)).load(seed=0)
    assert_images(data.train_x, data.train_y, (32, 32, 3), 9)
    assert_images(data.test_x, data.test_y, (32, 32, 3), 4)
    images, fine, coarse = written["train"]
    np.testing.assert_array_equal(data.train_x, images / np.float32(255))
    np.testing.assert_array_equal(data.train_y, fine)
    np.testing.assert_array_equal(data.test_y, written["test"][1])
    assert data.info == DatasetInfo(num_classes=100, input_shape=(32, 32, 3))
    grouped = Cifar100(path=str(path), label_mode="coarse").load(seed=0)
    np.testing.assert_array_equal(grouped.train_y, coarse)
    assert grouped.info.num_classes == 20


def test_cifar100_test_file_alone_with_holdout_and_errors(tmp_path):
    write_cifar100(tmp_path, train=False, n_test=10)
    data = Cifar100(path=str(tmp_path), holdout=3).load(seed=0)
    assert (len(data.train_y), len(data.test_y)) == (7, 3)
    expect_error(Cifar100(path=str(tmp_path)), "no training set")
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(Cifar100(path=str(empty)), "no cifar100 files in", "train and test")
    (tmp_path / "test").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}))
    expect_error(Cifar100(path=str(tmp_path)), "test", "expected 'data', 'fine_labels'")
    data, *_ = cifar100_file(2, 3)
    batch = pickle.loads(data)
    batch[b"fine_labels"] = [3, 100]
    (tmp_path / "test").write_bytes(pickle.dumps(batch))
    expect_error(Cifar100(path=str(tmp_path), holdout=1), "labels range over 3..100, expected 0..99")


class Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar100_pickles_cannot_run_code(tmp_path):
    write_cifar100(tmp_path)
    (tmp_path / "train").write_bytes(pickle.dumps({b"data": Payload(), b"fine_labels": []}))
    expect_error(Cifar100(path=str(tmp_path)), "train", "refusing", "getcwd")
