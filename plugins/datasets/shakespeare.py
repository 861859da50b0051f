"""``shakespeare``: next-character prediction on Shakespeare's plays, by speaking role.

Source: the federated Shakespeare dataset of LEAF (S. Caldas et al., "LEAF:
A Benchmark for Federated Settings", arXiv:1812.01097, 2018), built from
the Complete Works of Shakespeare as in H. B. McMahan et al.,
"Communication-Efficient Learning of Deep Networks from Decentralized
Data", AISTATS 2017: one client per speaking role in a play.  The copy is
TFF's (``tff.simulation.datasets.shakespeare``): one SQLite file
``shakespeare.sqlite`` with 715 roles, 16,068 training and 2,356 test
snippets (each a contiguous run of a role's lines; every role has both),
cached in ``~/.tff`` by ``fedarena data fetch shakespeare`` through TFF's
own download function.  TFF publishes no checksum: a download is checked
against those counts.

Preprocessing, with TFF's Shakespeare baseline vocabulary
(``tff.simulation.baselines.shakespeare``): its 86 characters get ids 1 ..
86 in its order, and four ids are special: 0 padding, 87 out of
vocabulary (any other byte), 88 beginning and 89 end of a snippet, so the
vocabulary has 90 ids (``num_classes``).  A snippet's bytes become
``[88, ids..., 89]``; every position after the first is one sample
(``stride = 1``, as LEAF's next-character task) whose label ``y`` is the id
there and whose input ``x`` is the 80 ids before it (``SEQ_LEN``, as
McMahan et al. and TFF's baseline), left-padded with 0 within the snippet;
``x`` is float32 of shape (80,) (the model casts it to ids), ``y`` int32.
With ``stride = k``, every k-th position only.  Each training sample's
role travels with its label (`WriterLabels`) for the ``natural`` split;
``max_writers`` keeps a subset of roles chosen with a fixed seed (0).

Deviation from TFF's baseline: TFF cuts each snippet into chunks of 81 ids
and trains sequence to sequence, a loss at each of the 80 positions of a
chunk; here each sample has one label, the next character after a window
of 80 (LEAF's formulation), since a fedarena model maps one input to one
label.  A model sees every character once as a label per epoch at
``stride = 1`` (TFF: once per chunk position), with up to 80 characters of
context (TFF: from the chunk's start).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Dataset, DatasetInfo, Facts
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins.datasets._common import path_problem
from fedarena.plugins.datasets._download import RemoteFile, Source, tff_sqlite_check
from fedarena.plugins.datasets._writers import FederatedArrays, WriterLabels, tff_writers
from fedarena.plugins.datasets.emnist import TFF_ORIGIN

SEQ_LEN = 80
# TFF's Shakespeare baseline vocabulary (char_prediction_preprocessing.CHAR_VOCAB), in its order.
VOCABULARY = tuple(
    "dhlptx@DHLPTX"
    " $(,048cgkoswCGKOSW[_#'/37;?bfjnrvzBFJNRVZ\"&*.26:\naeimquyAEIMQUY]!%)-159\r"
)
PAD, OOV, BOS, EOS = 0, len(VOCABULARY) + 1, len(VOCABULARY) + 2, len(VOCABULARY) + 3
VOCABULARY_SIZE = len(VOCABULARY) + 4  # 90 ids: 0 .. 89
_FILE = "shakespeare.sqlite"


def _byte_ids() -> np.ndarray:
    """The id of every byte value: 1 .. 86 for the vocabulary, OOV for the rest."""
    table = np.full(256, OOV, np.int32)
    for index, char in enumerate(VOCABULARY):
        table[ord(char)] = index + 1
    return table


_BYTE_IDS = _byte_ids()


def tokens(snippet: bytes) -> np.ndarray:
    """A snippet's ids: ``[BOS, ids of its bytes..., EOS]``."""
    return np.concatenate([[BOS], _BYTE_IDS[np.frombuffer(snippet, np.uint8)], [EOS]]).astype(np.int32)


def windows(ids: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The samples of one snippet's ids: for positions 1, 1 + stride, ...,
    the ``SEQ_LEN`` ids before (left-padded with PAD) and the id there."""
    padded = np.concatenate([np.full(SEQ_LEN, PAD, np.int32), ids])
    # Row t of the view is padded[t : t + SEQ_LEN] = the SEQ_LEN ids before ids[t].
    view = np.lib.stride_tricks.sliding_window_view(padded, SEQ_LEN)
    positions = np.arange(1, len(ids), stride)
    return view[positions], ids[positions]


@attrs.frozen
class Shakespeare(Dataset):
    """Federated Shakespeare (LEAF, Caldas et al. 2018; McMahan et al. 2017), next character by speaking role, via TFF.

    715 roles (clients); the input is a window of 80 character ids
    (float32, shape (80,)), the label the next character's id, of 90 (TFF's
    baseline vocabulary of 86 characters plus padding, out of vocabulary,
    beginning and end).  One sample per character (``stride``); each
    training sample's role is known, for the ``natural`` split.  Read from
    TFF's ``shakespeare.sqlite``: in ``path``, or in TFF's cache ``~/.tff``,
    where ``fedarena data fetch shakespeare`` downloads it.

    Deviation: one label per window (LEAF's task), not TFF's
    sequence-to-sequence loss over chunks of 80."""

    paper = "LEAF: Caldas et al. 2018, arXiv:1812.01097; McMahan et al. 2017, AISTATS"

    path: str = param("", doc="a folder holding TFF's shakespeare.sqlite; empty: TFF's cache ~/.tff (or "
                              "$FEDARENA_DATA/tff), filled by 'fedarena data fetch shakespeare'")
    stride: int = param(1, ge=1, le=SEQ_LEN,
                        doc="a sample at every stride-th character of a snippet (1: every character, as LEAF)")
    max_writers: int = param(0, ge=0, doc="keep only this many roles, chosen with a fixed seed (0: all 715)")

    SOURCE: ClassVar[Source] = Source(
        dataset="shakespeare", loader="tff", size="a few MB",
        path_hint='"FOLDER" holding TFF\'s shakespeare.sqlite',
        files=(RemoteFile(_FILE, TFF_ORIGIN + "shakespeare.sqlite.lzma"),),
        # TFF's documentation of shakespeare.load_data: roles and snippets per split.
        verify_contents=tff_sqlite_check("shakespeare", {"train": (715, 16_068), "test": (715, 2_356)}),
    )

    def info(self) -> DatasetInfo:
        return DatasetInfo(num_classes=VOCABULARY_SIZE, input_shape=(SEQ_LEN,), has_writers=True)

    def check(self, facts: Facts) -> list[str]:
        if self.path:
            return path_problem("shakespeare", self.path, self.SOURCE.path_hint)
        problem = self.SOURCE.problem()
        return [problem] if problem else []

    def load(self, seed: int) -> FederatedArrays:
        database = Path(os.path.expanduser(self.path)) / _FILE if self.path else self.SOURCE.ensure()
        if not database.is_file():
            raise RunError(f"shakespeare: {database} does not exist; give path = a folder holding TFF's {_FILE}, "
                           "or leave path empty and run 'fedarena data fetch shakespeare'")
        names = tff_writers("shakespeare", database, ("train", "test"))
        if self.max_writers and self.max_writers < len(names):
            keep = np.random.default_rng(0).choice(len(names), self.max_writers, replace=False)
            names = [names[i] for i in np.sort(keep)]
        train_x, train_y, train_w = self._read(database, "train", names)
        test_x, test_y, test_w = self._read(database, "test", names)
        return FederatedArrays(
            train_x=train_x, train_y=WriterLabels(train_y, train_w, names), test_x=test_x, test_y=test_y,
            info=self.info(), train_writers=train_w, test_writers=test_w, writer_names=tuple(names),
        )

    def _read(self, database: Path, split_name: str, names: list[str]):
        """One split's samples of the chosen roles: (x float32 [n, 80], y int32 [n], writer int32 [n])."""
        index = {name: i for i, name in enumerate(names)}
        spec = {"snippets": tf.io.FixedLenFeature((), tf.string)}
        xs, ys, ws = [], [], []
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
                cursor = connection.execute(
                    "SELECT client_id, serialized_example_proto FROM examples WHERE split_name = ?", (split_name,))
                while rows := cursor.fetchmany(2_000):
                    rows = [row for row in rows if row[0] in index]
                    if not rows:
                        continue
                    parsed = tf.io.parse_example(tf.constant([bytes(row[1]) for row in rows]), spec)
                    for (client, _), snippet in zip(rows, parsed["snippets"].numpy()):
                        x, y = windows(tokens(snippet), self.stride)
                        xs.append(x.astype(np.float32)), ys.append(y), ws.append(np.full(len(y), index[client], np.int32))
        except sqlite3.Error as error:
            raise RunError(f"shakespeare: cannot read {database}: {error}") from error
        except tf.errors.OpError as error:
            raise RunError(f"shakespeare: bad example in {database} ({split_name}): {error.message}") from error
        if not ys:
            raise RunError(f"shakespeare: {database} has no {split_name} snippets of the chosen roles")
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("shakespeare", Shakespeare)
