"""Dataset plugins: the standard file formats written here byte by byte,
the real MNIST test set, Federated EMNIST from a SQLite file in TFF's
layout, and clear errors for missing or corrupt files."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import sqlite3
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fedarena.core.scenario.sweep import check
from fedarena.core.errors import RunError
from fedarena.core.plugin.interfaces import DatasetInfo, Facts
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import default_registry
from fedarena.plugins.datasets import (
    Cifar10, Emnist, FashionMnist, FederatedArrays, Mnist, WriterLabels, read_idx, writers_of,
)
from fedarena.plugins.splits import Natural

REAL_MNIST_T10K = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"


# ---------------------------------------------------------------- writers


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array, np.uint8)
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(file: Path, array: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(array)
    if gz:
        file = file.with_name(file.name + ".gz")
        data = gzip.compress(data)
    file.write_bytes(data)
    return file


def fake_images(n: int, shape=(28, 28), seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    images[0] = 0
    images[1] = 255  # the full range, so that scaling is seen at both ends
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def write_mnist_folder(folder: Path, gz: bool, train=True, test=True, n_train=40, n_test=20):
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for prefix, n, wanted, seed in (("train", n_train, train, 1), ("t10k", n_test, test, 2)):
        if wanted:
            x, y = fake_images(n, seed=seed)
            write_idx(folder / f"{prefix}-images-idx3-ubyte", x, gz)
            write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, gz)
            written[prefix] = (x, y)
    return written


def cifar_batch(n: int, seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # what the loader should give back
    labels = rng.integers(0, 10, n)
    # The batch format: each row is the red plane, then green, then blue, row-major.
    data = images.transpose(0, 3, 1, 2).reshape(n, 3072)
    return {b"batch_label": b"fake", b"labels": [int(v) for v in labels], b"data": data}, images, labels


def write_cifar_folder(folder: Path, train=True, test=True, n=6):
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    if train:
        for i in range(1, 6):
            batch, x, y = cifar_batch(n, seed=i)
            (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
            xs.append(x), ys.append(y)
    written = {"train": (np.concatenate(xs), np.concatenate(ys))} if train else {}
    if test:
        batch, x, y = cifar_batch(n, seed=9)
        (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
        written["test"] = (x, y)
    return written


def assert_images(x, y, shape, n):
    assert x.shape == (n, *shape) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int32
    assert x.min() >= 0.0 and x.max() <= 1.0


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


def test_keras_npz_layout_as_a_file_or_in_a_folder(tmp_path):
    (x_train, y_train), (x_test, y_test) = fake_images(30, seed=1), fake_images(10, seed=2)
    np.savez(tmp_path / "fashion_mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    for path in (tmp_path / "fashion_mnist.npz", tmp_path):
        data = FashionMnist(path=str(path)).load(seed=0)
        assert_images(data.train_x, data.train_y, (28, 28, 1), 30)
        assert_images(data.test_x, data.test_y, (28, 28, 1), 10)
        np.testing.assert_array_equal(data.test_x[..., 0], x_test / np.float32(255))
        np.testing.assert_array_equal(data.test_y, y_test)


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


def expect_error(dataset, *fragments):
    with pytest.raises(RunError) as caught:
        dataset.load(seed=0)
    message = str(caught.value)
    for fragment in fragments:
        assert str(fragment) in message, message
    return message


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


# ---------------------------------------------------------------- CIFAR-10


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


# ---------------------------------------------------------------- without files


def test_info_and_check_need_no_files():
    facts = Facts(num_clients=10, clients_per_round=5, num_classes=10, input_shape=(28, 28, 1))
    for dataset, shape in ((Mnist(path="/nonexistent"), (28, 28, 1)), (FashionMnist(), (28, 28, 1)),
                           (Cifar10(path="/nonexistent", holdout=5), (32, 32, 3)),
                           (Emnist(path="/nonexistent"), (28, 28, 1))):
        assert dataset.info().input_shape == shape and dataset.info().num_classes == 10
        assert dataset.check(facts) == []
    assert Emnist(only_digits=False).info().num_classes == 62


def test_scenarios_name_the_datasets_with_a_path(tmp_path):
    text = f"""scenario "s" {{
  rounds 1
  dataset mnist(path = "{tmp_path}", holdout = 2000)
  split dirichlet(alpha = 0.5) over 10 clients
  model cnn
}}"""
    scenario = check(parse(text, "s.fls"), default_registry())
    assert scenario.dataset == Mnist(path=str(tmp_path), holdout=2000)
    for name in ("fashion_mnist", "cifar10", "emnist"):
        assert default_registry().get("dataset", name) is not None


# ---------------------------------------------------------------- Federated EMNIST


def example(pixels: np.ndarray, label: int) -> bytes:
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature={
        "pixels": tf.train.Feature(float_list=tf.train.FloatList(value=pixels.reshape(-1).tolist())),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    })).SerializeToString()


def write_emnist_db(folder: Path, writers: dict[str, tuple[int, int]]) -> dict:
    """A SQLite file in TFF's emnist_all layout: per writer (train, test) counts."""
    folder.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(folder / "emnist_all.sqlite")
    connection.execute("CREATE TABLE examples (split_name TEXT, client_id TEXT, serialized_example_proto BLOB)")
    connection.execute("CREATE TABLE client_metadata (client_id TEXT, split_name TEXT, num_examples INTEGER)")
    rng = np.random.default_rng(0)
    truth, rows = {}, []
    for writer, counts in writers.items():
        for split, count in zip(("digits_only_train", "digits_only_test"), counts):
            labels = rng.integers(0, 10, count)
            pixels = rng.random((count, 28, 28)).astype(np.float32)
            truth[writer, split] = (pixels, labels)
            rows += [(i, split, writer, example(p, int(l))) for i, (p, l) in enumerate(zip(pixels, labels))]
            connection.execute("INSERT INTO client_metadata VALUES (?, ?, ?)", (writer, split, count))
    # Writers interleaved, as nothing promises they are stored contiguously.
    rows.sort(key=lambda row: row[0])
    connection.executemany("INSERT INTO examples VALUES (?, ?, ?)", [row[1:] for row in rows])
    connection.commit()
    connection.close()
    return truth


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
