"""Every client's training samples, stored once per run for the client
computation to read by client id."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np


class ClientStore:
    """Every client's training samples, written once per run as two raw
    files per client (features, labels); the client computation reads its
    own files by client id.  Nothing is re-serialised from Python each
    round, and a round touches only the sampled clients' files.

    Workers must see the same folder: local ones do; workers on other
    machines need it on a shared file system.
    """

    def __init__(self, train_x: np.ndarray, train_y: np.ndarray, parts: list[np.ndarray],
                 root: np.ndarray | None = None):
        self.directory = Path(tempfile.mkdtemp(prefix="fedarena-clients-"))
        self._remove = weakref.finalize(self, shutil.rmtree, str(self.directory), True)
        # The server's root samples, if any, are stored as one more client.
        stored = list(parts) + ([root] if root is not None and len(root) else [])
        for client, part in enumerate(stored):
            np.ascontiguousarray(train_x[part], dtype=np.float32).tofile(self.directory / f"x{client}.raw")
            np.ascontiguousarray(train_y[part], dtype=np.int32).tofile(self.directory / f"y{client}.raw")
        self.sizes = np.array([len(p) for p in parts], dtype=np.int32)
        self.root = len(parts) if len(stored) > len(parts) else None  # the root's id in the store

    def read(self, client, input_shape):
        """In TF: (features, labels) of one client."""
        import tensorflow as tf

        def path(kind):
            return tf.strings.join([str(self.directory), f"/{kind}", tf.strings.as_string(client), ".raw"])

        x = tf.reshape(tf.io.decode_raw(tf.io.read_file(path("x")), tf.float32), [-1, *input_shape])
        y = tf.io.decode_raw(tf.io.read_file(path("y")), tf.int32)
        return x, y

    def close(self) -> None:
        self._remove()
