"""The ``shakespeare`` dataset: a SQLite file in TFF's layout written here,
read back as windows of 80 character ids and the next character's id, by
role; TFF's baseline vocabulary; the natural split over roles."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from fedarena.core.errors import RunError
from fedarena.core.plugin.interfaces import DatasetInfo
from fedarena.plugins.datasets._writers import FederatedArrays, writers_of
from fedarena.plugins.datasets.shakespeare import (
    BOS, EOS, OOV, PAD, SEQ_LEN, VOCABULARY, VOCABULARY_SIZE, Shakespeare, tokens, windows,
)
from fedarena.plugins.splits import Natural

SNIPPETS = {
    "THE_TEMPEST_ARIEL": {"train": [b"All hail, great master!", b"ab"], "test": [b"Ay, sir."]},
    "HAMLET_HAMLET": {"train": [b"To be, or not to be" * 6], "test": [b"Words, words, words.\n"]},
    "MACBETH_WITCH": {"train": [b"Fair is foul \xc3\xa9"], "test": [b"Hover."]},
}


def example(snippet: bytes) -> bytes:
    import tensorflow as tf

    feature = {"snippets": tf.train.Feature(bytes_list=tf.train.BytesList(value=[snippet]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_shakespeare_db(folder, snippets=SNIPPETS):
    """A SQLite file in TFF's shakespeare layout (examples, client_metadata)."""
    folder.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(folder / "shakespeare.sqlite")
    connection.execute("CREATE TABLE examples (split_name TEXT, client_id TEXT, serialized_example_proto BLOB)")
    connection.execute("CREATE TABLE client_metadata (client_id TEXT, split_name TEXT, num_examples INTEGER)")
    for client, splits in snippets.items():
        for split, texts in splits.items():
            connection.executemany("INSERT INTO examples VALUES (?, ?, ?)",
                                   [(split, client, example(text)) for text in texts])
            connection.execute("INSERT INTO client_metadata VALUES (?, ?, ?)", (client, split, len(texts)))
    connection.commit()
    connection.close()


def test_the_vocabulary_is_tffs_shakespeare_baseline():
    from tensorflow_federated.python.simulation.baselines.shakespeare import char_prediction_preprocessing as tff
    from tensorflow_federated.python.simulation.baselines.shakespeare import char_prediction_tasks

    assert list(VOCABULARY) == tff.CHAR_VOCAB
    assert (PAD, OOV, BOS, EOS) == tff.get_special_tokens()
    assert VOCABULARY_SIZE == char_prediction_tasks.VOCAB_LENGTH == 90
    assert SEQ_LEN == tff.DEFAULT_SEQUENCE_LENGTH == 80
    assert Shakespeare().info() == DatasetInfo(num_classes=90, input_shape=(80,), has_writers=True)


def test_tokens_and_windows_by_hand():
    d, h, a = VOCABULARY.index("d") + 1, VOCABULARY.index("h") + 1, VOCABULARY.index("a") + 1
    assert (d, h) == (1, 2)
    assert tokens(b"dh\xff").tolist() == [BOS, d, h, OOV, EOS]
    x, y = windows(tokens(b"ad"), stride=1)
    assert y.tolist() == [a, d, EOS]
    assert x.shape == (3, 80)
    assert x[0].tolist() == [PAD] * 79 + [BOS]
    assert x[2].tolist() == [PAD] * 77 + [BOS, a, d]
    x, y = windows(tokens(b"ad"), stride=2)
    assert y.tolist() == [a, EOS] and x[1].tolist() == [PAD] * 77 + [BOS, a, d]
    long = tokens(b"d" * 100)  # 102 ids: a window holds the 80 before its label, no padding
    x, y = windows(long, stride=1)
    assert len(y) == 101 and x[-1].tolist() == long[-81:-1].tolist() and PAD not in x[80].tolist()


def test_shakespeare_loads_windows_by_role(tmp_path):
    write_shakespeare_db(tmp_path)
    data = Shakespeare(path=str(tmp_path)).load(seed=0)
    assert isinstance(data, FederatedArrays)
    assert data.writer_names == ("HAMLET_HAMLET", "MACBETH_WITCH", "THE_TEMPEST_ARIEL")
    lengths = {name: sum(len(t) + 1 for t in splits["train"]) for name, splits in SNIPPETS.items()}
    assert np.bincount(data.train_writers).tolist() == [lengths[n] for n in data.writer_names]
    assert data.train_x.dtype == np.float32 and data.train_x.shape == (sum(lengths.values()), 80)
    assert data.train_y.dtype == np.int32 and data.test_y.dtype == np.int32
    assert data.train_y.min() >= 1 and data.train_y.max() < VOCABULARY_SIZE
    # The role's samples are its snippets' windows, in order.
    ariel = data.train_writers == 2
    expected = [windows(tokens(t), 1) for t in SNIPPETS["THE_TEMPEST_ARIEL"]["train"]]
    np.testing.assert_array_equal(data.train_x[ariel], np.concatenate([x for x, _ in expected]))
    np.testing.assert_array_equal(data.train_y[ariel], np.concatenate([y for _, y in expected]))
    assert OOV in data.train_y[data.train_writers == 1].tolist()  # the two bytes of "é"
    assert len(data.test_y) == sum(len(s["test"][0]) + 1 for s in SNIPPETS.values())
    # The natural split gives each role its own client.
    parts = Natural().partition(data.train_y, 3, np.random.default_rng(0))
    assert sorted(len(p) for p in parts) == sorted(lengths.values())
    assert all(len(set(data.train_writers[p])) == 1 for p in parts)
    np.testing.assert_array_equal(writers_of(data.train_y), data.train_writers)
    strided = Shakespeare(path=str(tmp_path), stride=4).load(seed=0)
    assert len(strided.train_y) == sum(len(range(1, len(t) + 2, 4)) for s in SNIPPETS.values() for t in s["train"])
    two = Shakespeare(path=str(tmp_path), max_writers=2).load(seed=0)
    assert len(two.writer_names) == 2 and set(np.unique(two.train_writers)) == {0, 1}


def test_shakespeare_errors(tmp_path):
    with pytest.raises(RunError, match="shakespeare.sqlite does not exist"):
        Shakespeare(path=str(tmp_path)).load(seed=0)
    (tmp_path / "shakespeare.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(RunError, match="cannot read .* as TFF's SQLite layout"):
        Shakespeare(path=str(tmp_path)).load(seed=0)
    assert Shakespeare(path=str(tmp_path / "gone")).check(None) == [
        f"dataset 'shakespeare': path {tmp_path / 'gone'} does not exist; give path = \"FOLDER\" holding TFF's "
        "shakespeare.sqlite"]
