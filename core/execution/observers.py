"""Observers: code that sees every round of a run as it completes, in
fedarena's own process, beside the results file.

`execute` (`runner.py`) calls an observer's ``start`` once the run is
prepared, ``round`` with each `RoundResult` right after it is written to
the results file, and ``close`` on every way out (complete, failed,
interrupted).  An observer that raises is reported once on stderr and left
out of the rest of the run; the run itself goes on.

`TensorBoard` (``fedarena run FILE --tensorboard DIR``) is the built-in one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np


class Observer:
    """Sees a run's rounds.  Every method may be left as it is."""

    def start(self, scenario, registry, info) -> None:
        """The run is prepared (``info``: its `RunInfo`)."""

    def round(self, result) -> None:
        """A round is done and written (``result``: its `RoundResult`)."""

    def close(self, status: str) -> None:
        """The run ended: ``complete``, ``failed`` or ``interrupted``."""


class Observers:
    """The observers of one run, each kept apart: one that fails is named
    once and dropped, and the run goes on."""

    def __init__(self, observers=()):
        self.live = list(observers)

    def _each(self, method: str, *args) -> None:
        for observer in list(self.live):
            try:
                getattr(observer, method)(*args)
            except Exception as error:  # noqa: BLE001 (an observer must not end the run)
                self.live.remove(observer)
                name = getattr(observer, "name", type(observer).__name__)
                print(f"fedarena: warning: the {name} observer failed and is left out of the rest of the run: "
                      f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)
                if method != "close":
                    try:
                        observer.close("failed")
                    except Exception:  # noqa: BLE001
                        pass

    def start(self, scenario, registry, info) -> None:
        self._each("start", scenario, registry, info)

    def round(self, result) -> None:
        self._each("round", result)

    def close(self, status: str) -> None:
        self._each("close", status)
        self.live = []


def safe_name(text: str, limit: int = 100) -> str:
    """A folder name from a sweep point's label: ``aggregator=krum(f = 10),
    seed=2`` -> ``aggregator=krum_f=10_seed=2``."""
    name = re.sub(r"[^A-Za-z0-9._=+-]+", "_", re.sub(r"\s*=\s*", "=", text)).strip("._")
    return name[:limit].rstrip("._")


def point_folder(directory: str | Path, index: int, label: str) -> Path:
    """Where a sweep point's TensorBoard files go: ``DIR/03_aggregator=krum_seed=2``
    (the index keeps folders distinct and in the sweep's order)."""
    name = safe_name(label)
    return Path(directory) / (f"{index:03d}_{name}" if name else f"{index:03d}")


class TensorBoard(Observer):
    """Writes each round to TensorBoard event files in ``directory``
    (``tf.summary``), flushed every round, step = round number:

    - ``metrics/NAME``: every metric as a scalar, in the rounds evaluated
      (the values of the results file's ``/metrics``);
    - ``clients/update_norm``: a histogram of the round's clients' update
      norms, and ``clients/update_norm_benign_mean``,
      ``clients/update_norm_malicious_mean`` (when the round has such clients);
    - ``clients/aggregation_weight``: a histogram of the aggregator's shares;
    - ``clients/kept``, ``clients/dropped``: how many updates the server kept;
    - ``detectors/I_NAME/score``: each detector's scores, a histogram;
    - ``detection/NAME``: the round's confusion counts (``true_positives``, ...);
    - ``seconds/STAGE``: the time of each stage of the round.
    """

    name = "TensorBoard"

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._writer = None
        self._detectors: list[str] = []

    def start(self, scenario, registry, info) -> None:
        import tensorflow as tf

        self._detectors = [f"{index}_{safe_name(registry.name_of(detector)) or 'detector'}"
                           for index, detector in enumerate(scenario.detectors)]
        self.directory.mkdir(parents=True, exist_ok=True)
        self._writer = tf.summary.create_file_writer(str(self.directory))

    def round(self, result) -> None:
        import tensorflow as tf

        if self._writer is None:
            return
        clients = result.clients
        with self._writer.as_default(step=result.round):
            for name, value in result.metrics.items():
                tf.summary.scalar(f"metrics/{name}", float(value))
            norms = np.asarray(clients.get("update_norm", ()), np.float64)
            finite = np.isfinite(norms)
            if finite.any():
                tf.summary.histogram("clients/update_norm", norms[finite])
            malicious = np.asarray(clients.get("malicious", np.zeros(len(norms), bool)), bool)
            for group, rows in (("benign", ~malicious & finite), ("malicious", malicious & finite)):
                if rows.any():
                    tf.summary.scalar(f"clients/update_norm_{group}_mean", float(norms[rows].mean()))
            if "aggregation_weight" in clients:
                shares = np.asarray(clients["aggregation_weight"], np.float64)
                tf.summary.histogram("clients/aggregation_weight", shares[np.isfinite(shares)])
            if "kept" in clients:
                kept = np.asarray(clients["kept"], bool)
                tf.summary.scalar("clients/kept", int(kept.sum()))
                tf.summary.scalar("clients/dropped", int((~kept).sum()))
            scores = np.asarray(clients.get("detector_scores", np.zeros((len(norms), 0))), np.float64)
            for column, detector in enumerate(self._detectors[: scores.shape[1] if scores.ndim == 2 else 0]):
                values = scores[:, column]
                tf.summary.histogram(f"detectors/{detector}/score", values[np.isfinite(values)])
            for name, count in result.detection.items():
                tf.summary.scalar(f"detection/{name}", int(count))
            for stage, seconds in result.seconds.items():
                tf.summary.scalar(f"seconds/{stage}", float(seconds))
        self._writer.flush()

    def close(self, status: str) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.flush()
            writer.close()
