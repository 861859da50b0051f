"""The ``fashion_mnist`` dataset: MNIST's formats under its own name, here
Keras' ``.npz`` layout given as a file or found in a folder."""

from __future__ import annotations

import numpy as np

from dataset_helpers import assert_images, fake_images
from fedarena.plugins.datasets.fashion_mnist import FashionMnist


def test_keras_npz_layout_as_a_file_or_in_a_folder(tmp_path):
    (x_train, y_train), (x_test, y_test) = fake_images(30, seed=1), fake_images(10, seed=2)
    np.savez(tmp_path / "fashion_mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    for path in (tmp_path / "fashion_mnist.npz", tmp_path):
        data = FashionMnist(path=str(path)).load(seed=0)
        assert_images(data.train_x, data.train_y, (28, 28, 1), 30)
        assert_images(data.test_x, data.test_y, (28, 28, 1), 10)
        np.testing.assert_array_equal(data.test_x[..., 0], x_test / np.float32(255))
        np.testing.assert_array_equal(data.test_y, y_test)
