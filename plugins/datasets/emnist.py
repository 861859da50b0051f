"""``emnist``: Federated EMNIST, handwritten characters grouped by writer.

Source: G. Cohen, S. Afshar, J. Tapson and A. van Schaik, "EMNIST: an
extension of MNIST to handwritten letters", IJCNN 2017 (arXiv:1702.05373),
partitioned by writer as in LEAF: S. Caldas et al., "LEAF: A Benchmark for
Federated Settings", arXiv:1812.01097, 2018; the copy TFF distributes
(``tff.simulation.datasets.emnist``, one SQLite file ``emnist_all.sqlite``).
28x28 grey levels; 3,383 writers and 10 classes with ``only_digits``, else
3,400 writers and 62 classes.

Preprocessing: TFF's float pixels (ink 0, background 1) are inverted by
default to MNIST's convention (ink 1 on background 0), clipped to [0, 1]
and given a channel axis, (28, 28, 1); labels int32.  The training set is
every chosen writer's training samples, the test set their test samples;
each training sample's writer travels with its label (`WriterLabels`) for
the ``natural`` split.  ``max_writers`` keeps a subset chosen with a fixed
seed (0).
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Dataset, DatasetInfo
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins.datasets._writers import FederatedArrays, WriterLabels

_EMNIST_FILE = "emnist_all.sqlite"


@attrs.frozen
class Emnist(Dataset):
    """Federated EMNIST (Cohen et al. 2017; LEAF, Caldas et al. 2018), by writer, through TFF.

    Handwritten characters grouped by writer, 28x28, 3,383
    writers and 10 classes with ``only_digits``, else 3,400 writers and 62
    classes (digits, upper case, lower case).  Every writer has training and
    test samples; the training set is all writers' training samples and the
    test set all their test samples.  Each training sample's writer is
    known, for the ``natural`` split.

    Loaded with ``tff.simulation.datasets.emnist.load_data(cache_dir=path)``,
    which downloads ``emnist_all.sqlite.lzma`` once (about 1.5 GB unpacked)
    unless ``<path>/emnist_all.sqlite`` exists; the rows are then streamed
    from that SQLite file in stored order (rather than through one
    ``tf.data`` pipeline per writer), so a writer's samples need not be
    contiguous: ``train_writers`` says whose each one is.

    TFF stores ink as 0 and background as 1; ``invert`` (default) flips this
    to MNIST's convention, ink 1 on background 0."""

    paper = "Cohen et al. 2017, IJCNN; LEAF: Caldas et al. 2018, arXiv:1812.01097"

    only_digits: bool = param(True, doc="digits only (10 classes, 3,383 writers); false: 62 classes, 3,400 writers")
    path: str = param("", doc="TFF's cache folder holding emnist_all.sqlite; empty: ~/.tff (downloaded if absent)")
    invert: bool = param(True, doc="store ink as 1 and background as 0, as MNIST does (TFF's raw data is the reverse)")
    max_writers: int = param(0, ge=0, doc="keep only this many writers, chosen with a fixed seed (0: all)")

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=10 if self.only_digits else 62, input_shape=(28, 28, 1))

    def database(self) -> Path:
        folder = Path(os.path.expanduser(self.path)) if self.path else Path.home() / ".tff"
        return folder / _EMNIST_FILE

    def load(self, seed: int) -> FederatedArrays:
        import tensorflow_federated as tff

        cache = str(Path(os.path.expanduser(self.path))) if self.path else None
        try:
            train, test = tff.simulation.datasets.emnist.load_data(only_digits=self.only_digits, cache_dir=cache)
        except Exception as error:  # download, decompression or database-format failures
            raise RunError(
                f"emnist: TFF's loader failed ({type(error).__name__}: {error}); it needs network on first use, "
                f"or {self.database()} (TFF's emnist_all.sqlite, unpacked from emnist_all.sqlite.lzma)"
            ) from error
        database = getattr(train, "_filepath", None) or str(self.database())
        names = sorted(set(train.client_ids) | set(test.client_ids))
        if self.max_writers and self.max_writers < len(names):
            keep = np.random.default_rng(0).choice(len(names), self.max_writers, replace=False)
            names = [names[i] for i in np.sort(keep)]
        prefix = "digits_only" if self.only_digits else "all"
        train_x, train_y, train_w = self._read(database, f"{prefix}_train", names)
        test_x, test_y, test_w = self._read(database, f"{prefix}_test", names)
        return FederatedArrays(
            train_x=train_x, train_y=WriterLabels(train_y, train_w, names), test_x=test_x, test_y=test_y,
            info=self.info(), train_writers=train_w, test_writers=test_w, writer_names=tuple(names),
        )

    def _read(self, database: str, split_name: str, names: list[str]):
        """One split's samples of the chosen writers, streamed from the SQLite
        file in chunks (the full dataset is about 2 GB as float32)."""
        import sqlite3

        index = {name: i for i, name in enumerate(names)}
        spec = {
            "pixels": tf.io.FixedLenFeature((28, 28), tf.float32),
            "label": tf.io.FixedLenFeature((), tf.int64),
        }
        # In the order stored (no ORDER BY: SQLite would sort gigabytes of blobs);
        # the natural split does not need a writer's samples to be contiguous.
        query = "SELECT client_id, serialized_example_proto FROM examples WHERE split_name = ?"
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
                (total,) = connection.execute(
                    "SELECT COUNT(*) FROM examples WHERE split_name = ?", (split_name,)).fetchone()
                pixels = np.zeros((total, 28, 28, 1), np.float32)
                labels = np.zeros(total, np.int32)
                writers = np.zeros(total, np.int32)
                cursor = connection.execute(query, (split_name,))
                filled = 0
                while rows := cursor.fetchmany(10_000):
                    rows = [row for row in rows if row[0] in index]
                    if not rows:
                        continue
                    parsed = tf.io.parse_example(tf.constant([bytes(row[1]) for row in rows]), spec)
                    end = filled + len(rows)
                    pixels[filled:end, ..., 0] = parsed["pixels"].numpy()
                    labels[filled:end] = parsed["label"].numpy()
                    writers[filled:end] = [index[row[0]] for row in rows]
                    filled = end
        except sqlite3.Error as error:
            raise RunError(f"emnist: cannot read {database}: {error}") from error
        except tf.errors.OpError as error:
            raise RunError(f"emnist: bad example in {database} ({split_name}): {error.message}") from error
        if filled < total:  # writers left out by max_writers
            pixels, labels, writers = pixels[:filled].copy(), labels[:filled].copy(), writers[:filled].copy()
        if self.invert:
            np.subtract(1.0, pixels, out=pixels)
        np.clip(pixels, 0.0, 1.0, out=pixels)
        num_classes = self.info().num_classes
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise RunError(f"emnist: {database} ({split_name}) has labels {labels.min()}..{labels.max()}, "
                           f"expected 0..{num_classes - 1}")
        return pixels, labels, writers


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("emnist", Emnist)
