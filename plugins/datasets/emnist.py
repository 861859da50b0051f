"""``emnist``: Federated EMNIST, handwritten characters grouped by writer.

Source: G. Cohen, S. Afshar, J. Tapson and A. van Schaik, "EMNIST: an
extension of MNIST to handwritten letters", IJCNN 2017 (arXiv:1702.05373),
partitioned by writer as in LEAF: S. Caldas et al., "LEAF: A Benchmark for
Federated Settings", arXiv:1812.01097, 2018; the copy TFF distributes
(``tff.simulation.datasets.emnist``, one SQLite file ``emnist_all.sqlite``,
about 1.5 GB, cached in ``~/.tff`` by ``fedarena data fetch emnist``
through TFF's own download function).  28x28 grey levels; 3,383 writers
and 10 classes with ``only_digits``, else 3,400 writers and 62 classes.
TFF publishes no checksum: a download is checked against the client and
example counts TFF's documentation gives for each split.

Preprocessing: TFF's float pixels (ink 0, background 1) are inverted by
default to MNIST's convention (ink 1 on background 0), clipped to [0, 1]
and given a channel axis, (28, 28, 1); labels int32.  The training set is
every chosen writer's training samples, the test set their test samples;
each training sample's writer travels with its label (`WriterLabels`) for
the ``natural`` split.  ``max_writers`` keeps a subset chosen with a fixed
seed (0).  With ``normalize = "standard"``, then ``(x - mean) / std`` with
the mean and standard deviation of the pixels of the training set as
loaded (computed at load: they depend on ``only_digits``, ``invert`` and
``max_writers``, and no published values match TFF's copy; LEAF and TFF's
baselines standardize nothing).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Dataset, DatasetInfo, Facts
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins.datasets._common import normalize_param, normalized, path_problem
from fedarena.plugins.datasets._download import RemoteFile, Source, tff_sqlite_check
from fedarena.plugins.datasets._writers import FederatedArrays, WriterLabels, tff_writers

_EMNIST_FILE = "emnist_all.sqlite"
TFF_ORIGIN = "https://storage.googleapis.com/tff-datasets-public/"


@attrs.frozen
class Emnist(Dataset):
    """Federated EMNIST (Cohen et al. 2017; LEAF, Caldas et al. 2018), by writer, through TFF.

    Handwritten characters grouped by writer, 28x28, 3,383
    writers and 10 classes with ``only_digits``, else 3,400 writers and 62
    classes (digits, upper case, lower case).  Every writer has training and
    test samples; the training set is all writers' training samples and the
    test set all their test samples.  Each training sample's writer is
    known, for the ``natural`` split.

    Read from TFF's ``emnist_all.sqlite`` (about 1.5 GB): in ``path``, or
    in TFF's cache ``~/.tff``, where ``fedarena data fetch emnist``
    downloads it with TFF's own download function.  The rows are streamed
    from that SQLite file in stored order (rather than through one
    ``tf.data`` pipeline per writer), so a writer's samples need not be
    contiguous: ``train_writers`` says whose each one is.

    TFF stores ink as 0 and background as 1; ``invert`` (default) flips this
    to MNIST's convention, ink 1 on background 0."""

    paper = "Cohen et al. 2017, IJCNN; LEAF: Caldas et al. 2018, arXiv:1812.01097"

    only_digits: bool = param(True, doc="digits only (10 classes, 3,383 writers); false: 62 classes, 3,400 writers")
    path: str = param("", doc="a folder holding TFF's emnist_all.sqlite; empty: TFF's cache ~/.tff (or "
                              "$FEDARENA_DATA/tff), filled by 'fedarena data fetch emnist'")
    invert: bool = param(True, doc="store ink as 1 and background as 0, as MNIST does (TFF's raw data is the reverse)")
    max_writers: int = param(0, ge=0, doc="keep only this many writers, chosen with a fixed seed (0: all)")
    normalize: str = normalize_param()

    SOURCE: ClassVar[Source] = Source(
        dataset="emnist", loader="tff", size="about 1.5 GB",
        path_hint='"FOLDER" holding TFF\'s emnist_all.sqlite',
        files=(RemoteFile(_EMNIST_FILE, TFF_ORIGIN + "emnist_all.sqlite.lzma"),),
        # TFF's documentation of emnist.load_data: writers and examples per split.
        verify_contents=tff_sqlite_check("emnist", {
            "digits_only_train": (3383, 341_873), "digits_only_test": (3383, 40_832),
            "all_train": (3400, 671_585), "all_test": (3400, 77_483),
        }),
    )

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=10 if self.only_digits else 62, input_shape=(28, 28, 1), has_writers=True)

    def check(self, facts: Facts) -> list[str]:
        if self.path:
            return path_problem("emnist", self.path, self.SOURCE.path_hint)
        problem = self.SOURCE.problem()
        return [problem] if problem else []

    def database(self) -> Path:
        return Path(os.path.expanduser(self.path)) / _EMNIST_FILE if self.path else self.SOURCE.location()

    def load(self, seed: int) -> FederatedArrays:
        database = self.database() if self.path else self.SOURCE.ensure()
        if not database.is_file():
            raise RunError(f"emnist: {database} does not exist; give path = a folder holding TFF's {_EMNIST_FILE}, "
                           "or leave path empty and run 'fedarena data fetch emnist'")
        prefix = "digits_only" if self.only_digits else "all"
        names = tff_writers("emnist", database, (f"{prefix}_train", f"{prefix}_test"))
        if self.max_writers and self.max_writers < len(names):
            keep = np.random.default_rng(0).choice(len(names), self.max_writers, replace=False)
            names = [names[i] for i in np.sort(keep)]
        train_x, train_y, train_w = self._read(str(database), f"{prefix}_train", names)
        test_x, test_y, test_w = self._read(str(database), f"{prefix}_test", names)
        arrays = FederatedArrays(
            train_x=train_x, train_y=WriterLabels(train_y, train_w, names), test_x=test_x, test_y=test_y,
            info=self.info(), train_writers=train_w, test_writers=test_w, writer_names=tuple(names),
        )
        # No stated numbers: the training set's own (see the module's docstring).
        return normalized(arrays, self.normalize, None, f"emnist at {database}")

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
