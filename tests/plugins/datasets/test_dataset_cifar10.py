"""The ``cifar10`` dataset: python pickle batches written byte by byte, in a
folder, a subfolder or a tar archive; errors for missing or corrupt
batches; pickles that would run code are refused."""

from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np
import pytest

from dataset_helpers import assert_images, expect_error, write_cifar_folder
from fedarena.core.plugin.interfaces import DatasetInfo
from fedarena.plugins.datasets.cifar10 import Cifar10


@pytest.mark.parametrize("layout", ["folder", "batches_subfolder", "tar_archive"])
def test_cifar10_python_batches(tmp_path, layout):
    source = tmp_path / "cifar-10-batches-py"
    written = write_cifar_folder(source)
    path = source
    if layout == "batches_subfolder":
        path = tmp_path
    elif layout == "tar_archive":
        path = tmp_path / "cifar-10-python.tar.gz"
        with tarfile.open(path, "w:gz") as archive:
            archive.add(source, arcname="cifar-10-batches-py")
    data = Cifar10(path=str(path)).load(seed=0)
    assert_images(data.train_x, data.train_y, (32, 32, 3), 30)
    assert_images(data.test_x, data.test_y, (32, 32, 3), 6)
    # Pixel (row, column, channel) comes from the right plane and place.
    np.testing.assert_array_equal(data.train_x, written["train"][0] / np.float32(255))
    np.testing.assert_array_equal(data.train_y, written["train"][1])
    np.testing.assert_array_equal(data.test_x, written["test"][0] / np.float32(255))
    assert data.info == DatasetInfo(num_classes=10, input_shape=(32, 32, 3))


def test_cifar10_test_batch_alone_with_holdout(tmp_path):
    write_cifar_folder(tmp_path, train=False, n=10)
    data = Cifar10(path=str(tmp_path), holdout=4).load(seed=0)
    assert (len(data.train_y), len(data.test_y)) == (6, 4)
    expect_error(Cifar10(path=str(tmp_path)), "no training set")


def test_cifar10_errors(tmp_path):
    write_cifar_folder(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    expect_error(Cifar10(path=str(tmp_path)), tmp_path, "data_batch_3")
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(Cifar10(path=str(empty)), empty, "data_batch_1", "test_batch")
    (tmp_path / "data_batch_3").write_bytes(b"\x80\x02garbage")
    expect_error(Cifar10(path=str(tmp_path)), "data_batch_3", "cannot unpickle")
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    expect_error(Cifar10(path=str(tmp_path)), "data_batch_3", "3072")


class Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar10_pickles_cannot_run_code(tmp_path):
    write_cifar_folder(tmp_path)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Payload(), b"labels": []}))
    expect_error(Cifar10(path=str(tmp_path)), "test_batch", "refusing", "getcwd")
