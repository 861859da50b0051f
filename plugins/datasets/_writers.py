"""Datasets with natural clients (writers), such as Federated EMNIST.

Their training labels carry each sample's writer (`WriterLabels`), which is
how the ``natural`` split finds the writers through the unchanged
``Split.partition(labels, ...)`` interface: it asks `writers_of`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.interfaces import DatasetArrays


class WriterLabels(np.ndarray):
    """Training labels (int32) that also carry each sample's writer index in
    ``.writers`` (int32, same length), and the writers' names in
    ``.writer_names``.  This is how a dataset with natural clients hands them
    to the ``natural`` split while ``Split.partition`` takes labels only.

    The attributes live on the array returned by ``load`` only: indexing,
    slicing or converting it (``np.asarray``) gives plain labels."""

    writers: np.ndarray | None
    writer_names: tuple[str, ...]

    def __new__(cls, labels, writers, writer_names=()):
        labels = np.asarray(labels, np.int32)
        writers = np.asarray(writers, np.int32)
        if writers.shape != labels.shape:
            raise ValueError(f"writers of shape {writers.shape} for labels of shape {labels.shape}")
        obj = labels.view(cls)
        obj.writers, obj.writer_names = writers, tuple(writer_names)
        return obj

    def __array_finalize__(self, obj):
        # A derived array (slice, copy, arithmetic) does not keep the writers:
        # they would no longer line up with its elements.
        self.writers, self.writer_names = None, ()

    def __reduce__(self):
        # Pickles as plain labels, for the same reason.
        return np.asarray(self).__reduce__()


def writers_of(labels) -> np.ndarray | None:
    """The writer index of each sample if ``labels`` carries them (`WriterLabels`), else None."""
    return getattr(labels, "writers", None)


@attrs.frozen(eq=False)
class FederatedArrays(DatasetArrays):
    """`DatasetArrays` of a dataset with natural clients: ``writer_names``
    (index = writer id), ``train_writers`` and ``test_writers`` (int32, the
    writer of each sample; -1 where a test sample's writer is not known).
    ``train_y`` is a `WriterLabels` carrying ``train_writers`` too."""

    train_writers: np.ndarray = attrs.field(kw_only=True)
    test_writers: np.ndarray = attrs.field(kw_only=True)
    writer_names: tuple[str, ...] = attrs.field(kw_only=True)


def tff_writers(dataset: str, database: Path, splits: tuple[str, ...]) -> list[str]:
    """The sorted client ids (writers) of the given splits of a SQLite file
    in TFF's layout (table ``client_metadata``)."""
    marks = ", ".join("?" for _ in splits)
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            rows = connection.execute(
                f"SELECT DISTINCT client_id FROM client_metadata WHERE split_name IN ({marks})", splits).fetchall()
    except sqlite3.Error as error:
        raise RunError(f"{dataset}: cannot read {database} as TFF's SQLite layout: {error}") from error
    if not rows:
        raise RunError(f"{dataset}: {database} has no clients in {', '.join(splits)}")
    return sorted(row[0] for row in rows)
