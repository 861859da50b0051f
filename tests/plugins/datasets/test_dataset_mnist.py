"""The ``mnist`` dataset: IDX files written byte by byte (gzipped or not),
the held-out test set, the real MNIST test set, and clear errors for
missing or corrupt files."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from conftest import REPO
from dataset_helpers import assert_images, expect_error, fake_images, write_idx, write_mnist_folder
from fedarena.core.errors import RunError
from fedarena.core.plugin.interfaces import DatasetInfo
from fedarena.plugins.datasets._idx import read_idx
from fedarena.plugins.datasets.mnist import Mnist

REAL_MNIST_T10K = REPO.parent / "shared" / "data" / "mnist-t10k"


# ---------------------------------------------------------------- MNIST formats


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_mnist_idx_files_load_scaled_with_a_channel_axis(tmp_path, gz):
    written = write_mnist_folder(tmp_path, gz=gz)
    data = Mnist(path=str(tmp_path)).load(seed=3)
    assert_images(data.train_x, data.train_y, (28, 28, 1), 40)
    assert_images(data.test_x, data.test_y, (28, 28, 1), 20)
    x, y = written["train"]
    np.testing.assert_array_equal(data.train_x[..., 0], x / np.float32(255))
    np.testing.assert_array_equal(data.train_y, y)
    np.testing.assert_array_equal(data.test_x[..., 0], written["t10k"][0] / np.float32(255))
    assert data.train_x.min() == 0.0 and data.train_x.max() == 1.0
    assert data.info == DatasetInfo(num_classes=10, input_shape=(28, 28, 1))


def test_read_idx_is_exact_for_gzip_and_raw(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = write_idx(tmp_path / "a-idx3-ubyte", array, gz=False)
    packed = write_idx(tmp_path / "b-idx3-ubyte", array, gz=True)
    np.testing.assert_array_equal(read_idx(raw), array)
    np.testing.assert_array_equal(read_idx(packed), array)


def test_holdout_splits_a_test_set_alone_reproducibly(tmp_path):
    written = write_mnist_folder(tmp_path, gz=True, train=False, n_test=50)
    first = Mnist(path=str(tmp_path), holdout=12).load(seed=0)
    again = Mnist(path=str(tmp_path), holdout=12).load(seed=99)  # the run's seed does not move the test set
    assert len(first.train_y) == 38 and len(first.test_y) == 12
    np.testing.assert_array_equal(first.test_x, again.test_x)
    np.testing.assert_array_equal(first.train_y, again.train_y)
    # Train and test are a partition of the file's samples.
    x, y = written["t10k"]
    pooled = np.concatenate([first.train_x, first.test_x])[..., 0]
    key = lambda images: sorted(map(bytes, (images * 255).round().astype(np.uint8).reshape(len(images), -1)))
    assert key(pooled) == key(x / np.float32(255))
    assert np.array_equal(np.bincount(np.concatenate([first.train_y, first.test_y])), np.bincount(y))


def test_holdout_takes_the_training_files_when_present(tmp_path):
    write_mnist_folder(tmp_path, gz=False, n_train=40, n_test=20)
    data = Mnist(path=str(tmp_path), holdout=10).load(seed=0)
    assert (len(data.train_y), len(data.test_y)) == (30, 10)


def test_real_mnist_test_set_through_path():
    if not REAL_MNIST_T10K.is_dir():
        pytest.skip(f"{REAL_MNIST_T10K} is absent")
    for line in (REAL_MNIST_T10K / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((REAL_MNIST_T10K / name).read_bytes()).hexdigest() == digest
    data = Mnist(path=str(REAL_MNIST_T10K), holdout=2000).load(seed=0)
    assert_images(data.train_x, data.train_y, (28, 28, 1), 8000)
    assert_images(data.test_x, data.test_y, (28, 28, 1), 2000)
    assert data.train_x.max() == 1.0 and data.train_x.min() == 0.0
    counts = np.bincount(np.concatenate([data.train_y, data.test_y]), minlength=10)
    assert counts.sum() == 10000 and counts[1] == 1135
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # A real digit has a dark background and bright strokes.
    assert data.train_x[:, 0, 0, 0].max() == 0.0 and data.train_x.mean() < 0.2
    with pytest.raises(RunError, match="holdout"):
        Mnist(path=str(REAL_MNIST_T10K)).load(seed=0)


# ---------------------------------------------------------------- MNIST errors


def test_missing_path_and_empty_folder_say_what_was_expected(tmp_path):
    missing = tmp_path / "nowhere"
    expect_error(Mnist(path=str(missing)), missing, "does not exist", "train-images-idx3-ubyte")
    expect_error(Mnist(path=str(tmp_path)), tmp_path, "no dataset files", "t10k-labels-idx1-ubyte", ".npz")


def test_half_a_pair_is_an_error(tmp_path):
    x, _ = fake_images(5)
    write_idx(tmp_path / "train-images-idx3-ubyte", x, gz=True)
    expect_error(Mnist(path=str(tmp_path)), "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte")


@pytest.mark.parametrize("damage", ["truncated_gzip", "bad_magic", "short_data", "count_mismatch",
                                    "wrong_image_size", "label_out_of_range"])
def test_corrupt_idx_files_raise_run_errors_naming_the_file(tmp_path, damage):
    write_mnist_folder(tmp_path, gz=True)
    images, labels = tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    if damage == "truncated_gzip":
        images.write_bytes(images.read_bytes()[:100])
        target, words = images, "cannot read"
    elif damage == "bad_magic":
        images.write_bytes(gzip.compress(b"\x01\x02" + raw[2:]))
        target, words = images, "not an IDX file"
    elif damage == "short_data":
        images.write_bytes(gzip.compress(raw[:-7]))
        target, words = images, "expected"
    elif damage == "count_mismatch":
        write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(39, np.uint8), gz=True)
        target, words = labels, "40 images but 39 labels"
    elif damage == "wrong_image_size":
        write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((40, 27, 28), np.uint8), gz=True)
        target, words = images, "expected (28, 28, 1)"
    else:
        write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(40, 10, np.uint8), gz=True)
        target, words = labels, "expected 0..9"
    expect_error(Mnist(path=str(tmp_path)), target.name, words)


def test_a_sha256sums_file_beside_the_data_is_enforced(tmp_path):
    write_mnist_folder(tmp_path, gz=True)
    names = [p.name for p in sorted(tmp_path.iterdir())]
    sums = "".join(f"{hashlib.sha256((tmp_path / n).read_bytes()).hexdigest()}  {n}\n" for n in names)
    (tmp_path / "SHA256SUMS").write_text(sums)
    Mnist(path=str(tmp_path)).load(seed=0)  # matches: fine
    victim = tmp_path / "t10k-images-idx3-ubyte.gz"
    x, _ = fake_images(20, seed=5)  # a valid file, but not the one listed
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x, gz=True)
    expect_error(Mnist(path=str(tmp_path)), victim, "SHA-256", "corrupt")


def test_holdout_errors(tmp_path):
    write_mnist_folder(tmp_path, gz=True, train=False, n_test=20)
    expect_error(Mnist(path=str(tmp_path)), "no training set", "holdout")
    expect_error(Mnist(path=str(tmp_path), holdout=20), "holdout = 20", "only 20 samples")
    with pytest.raises(ValueError):
        Mnist(holdout=-1)


def test_bad_npz_is_a_run_error(tmp_path):
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(b"not a zip file")
    expect_error(Mnist(path=str(bad)), bad, ".npz")
    np.savez(bad, images=np.zeros((2, 28, 28), np.uint8))
    expect_error(Mnist(path=str(bad)), "x_train")
