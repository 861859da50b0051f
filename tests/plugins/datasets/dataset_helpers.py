"""Dataset files written byte by byte in their standard formats (IDX, Keras
``.npz``, CIFAR-10 python batches, TFF's EMNIST SQLite), and the checks the
dataset tests share."""

from __future__ import annotations

import gzip
import pickle
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest

from fedarena.core.errors import RunError


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


# ---------------------------------------------------------------- checks


def assert_images(x, y, shape, n):
    assert x.shape == (n, *shape) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int32
    assert x.min() >= 0.0 and x.max() <= 1.0


def expect_error(dataset, *fragments):
    with pytest.raises(RunError) as caught:
        dataset.load(seed=0)
    message = str(caught.value)
    for fragment in fragments:
        assert str(fragment) in message, message
    return message
