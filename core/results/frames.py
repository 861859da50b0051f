"""Long-form pandas DataFrames of a results file (a single run or a sweep),
read through `fedarena.core.results.reader`.

Every frame starts with one column per sweep axis, named as the sweep names
it (``aggregator``, ``attack[label_flip].clients``, ``seed``), holding each
point's value of that axis, then ``run``: the point's index in the sweep (0
for a single run, which has no axis columns).  An axis whose values are all
integers (or all numbers) is a numeric column; the others hold the values
as the sweep wrote them (``krum(f = 2)``).  `axis_columns` gives the axis
columns of any of these frames, in the order the sweep lists them.

- `metrics_frame`: one row per run, evaluated round and metric.
- `clients_frame`: one row per run, round and sampled client.
- `detection_frame`: one row per run and round: the updates dropped.
- `index_frame`: one row per point: status, rounds done, label.

A point that has not started yet (``pending``) has a row in `index_frame`
and none in the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from fedarena.core.errors import UsageError
from fedarena.core.results import reader, schema

RUN = "run"
"""The column holding each row's point index (0 for a single run)."""
ROUND = "round"
METRIC = "metric"
VALUE = "value"
SLOT = "slot"
CLIENT = "client"
STATUS = "status"
ROUNDS_DONE = "rounds_done"
LABEL = "label"
SCORE_PREFIX = "score_"
"""Detector scores in `clients_frame`: one column ``score_<detector>`` each."""


# --------------------------------------------------------------------------
# Reading the file's runs once.


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Run:
    """One point of the file: its index, assignments, status, label and group
    (None when the point has not been written yet)."""

    def __init__(self, index: int, point: dict, status: str, label: str, group: h5py.Group | None):
        self.index, self.point, self.status, self.label, self.group = index, point, status, label, group


def _runs(f: h5py.File, path: Path) -> tuple[list[str], list[_Run]]:
    """The axes (in sweep order) and every point of an open file."""
    if not reader.is_sweep(f):
        if schema.SCENARIO not in f.attrs:
            raise UsageError(f"{path}: not a fedarena results file (no '{schema.SCENARIO}' attribute)")
        return [], [_Run(0, {}, _text(f.attrs.get(schema.STATUS, "?")), path.stem, f)]
    labels = [_text(v) for v in f[schema.INDEX_LABEL][()]]
    points = [json.loads(_text(v)) for v in f[schema.INDEX_POINT][()]]
    statuses = reader.point_statuses(f)
    axes: list[str] = []
    for point in points:
        axes += [axis for axis in point if axis not in axes]
    runs = []
    for index, (label, point, status) in enumerate(zip(labels, points, statuses)):
        name = schema.point_group(index)
        runs.append(_Run(index, point, status, label, f[name] if name in f else None))
    return axes, runs


def _typed(values: list) -> pd.Series:
    """An axis column: integers or numbers when every value is one, else text."""
    for kind in (int, float):
        try:
            return pd.Series([kind(v) for v in values], dtype="int64" if kind is int else "float64")
        except (TypeError, ValueError):
            continue
    return pd.Series([str(v) for v in values], dtype=object)


def _frame(axes: list[str], runs: list[_Run], rows_of) -> pd.DataFrame:
    """Concatenate ``rows_of(run) -> DataFrame`` over the runs, prefixed
    with the axis columns and ``run``."""
    parts = []
    for run in runs:
        rows = rows_of(run)
        if rows is None or not len(rows):
            continue
        rows = rows.copy()
        rows.insert(0, RUN, run.index)
        parts.append((run, rows))
    if parts:
        body = pd.concat([rows for _, rows in parts], ignore_index=True)
    else:
        empty = rows_of(None)
        empty.insert(0, RUN, pd.Series([], dtype="int64"))
        body = empty
    columns = {}
    for axis in axes:
        # The column's type is decided over every point, so that it is the
        # same whichever points have rows yet.
        dtype = _typed([run.point.get(axis, "") for run in runs]).dtype
        values = [run.point.get(axis, "") for run, rows in parts for _ in range(len(rows))]
        columns[axis] = _typed(values).astype(dtype) if values else pd.Series([], dtype=dtype)
    frame = pd.concat([pd.DataFrame(columns, index=body.index), body], axis=1)
    frame.attrs["axes"] = list(axes)
    return frame


def _read(path: str | Path, rows_of) -> pd.DataFrame:
    path = Path(path)
    with reader.open_results(path) as f:
        axes, runs = _runs(f, path)
        return _frame(axes, runs, rows_of)


def axis_columns(frame: pd.DataFrame) -> list[str]:
    """The sweep axis columns of a frame made here: those before ``run``."""
    return list(frame.columns[: list(frame.columns).index(RUN)])


# --------------------------------------------------------------------------
# The four frames.


def _metric_order(names) -> list[str]:
    first = [m for m in schema.TEST_METRICS if m in names]
    last = [m for m in schema.DETECTION_METRICS if m in names]
    return first + sorted(m for m in names if m not in first and m not in last and m != schema.ROUND) + last


def metrics_frame(path: str | Path) -> pd.DataFrame:
    """Columns: the sweep axes, ``run``, ``round``, ``metric``, ``value``:
    one row per run, evaluated round and metric (NaN values kept, as the
    file holds them), ordered by run, round and metric (``test_accuracy``,
    ``test_loss``, the attacks' metrics, the detection metrics)."""

    def rows(run: _Run | None) -> pd.DataFrame | None:
        if run is None:
            return pd.DataFrame({ROUND: pd.Series([], dtype="int64"), METRIC: pd.Series([], dtype=object),
                                 VALUE: pd.Series([], dtype="float64")})
        if run.group is None:
            return None
        found = reader.metrics(run.group)
        rounds = np.asarray(found.get(schema.ROUND, np.zeros(0)), dtype=np.int64)
        names = _metric_order(found)
        if not len(rounds) or not names:
            return None
        return pd.DataFrame({
            ROUND: np.repeat(rounds, len(names)),
            METRIC: np.tile(np.array(names, dtype=object), len(rounds)),
            VALUE: np.stack([np.asarray(found[n], dtype=np.float64)[: len(rounds)] for n in names], axis=1).ravel(),
        })

    return _read(path, rows)


_CLIENT_COLUMNS = (
    (schema.CLIENT_ID, CLIENT, "int64"),
    (schema.MALICIOUS, schema.MALICIOUS, "bool"),
    (schema.ATTACK_GROUP, schema.ATTACK_GROUP, None),  # the group's name (None: benign)
    (schema.FINITE, schema.FINITE, "bool"),
    (schema.KEPT, schema.KEPT, "bool"),
    (schema.AGGREGATION_WEIGHT, schema.AGGREGATION_WEIGHT, "float64"),
    (schema.UPDATE_NORM, schema.UPDATE_NORM, "float64"),
    (schema.NUM_EXAMPLES, schema.NUM_EXAMPLES, "int64"),
    (schema.TRAIN_LOSS, schema.TRAIN_LOSS, "float64"),
)


def detector_names(group: h5py.Group) -> list[str]:
    """A run's detectors, in role order, named as scenarios name them: the
    plugin's name, numbered ``NAME_1``, ``NAME_2`` when used more than once."""
    plugins = reader.plugins(group)
    keys = sorted((k for k in plugins if k.startswith(schema.DETECTOR_PREFIX)),
                  key=lambda k: int(k[len(schema.DETECTOR_PREFIX):]))
    names = [str(plugins[k].get(schema.PLUGIN_NAME, k)) for k in keys]
    seen: dict[str, int] = {}
    numbered = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        numbered.append(f"{name}_{seen[name]}" if names.count(name) > 1 else name)
    return numbered


def clients_frame(path: str | Path) -> pd.DataFrame:
    """Columns: the sweep axes, ``run``, ``round``, ``slot``, ``client`` (its
    id), ``malicious``, ``attack_group`` (the attack block's name, None for
    a benign client), ``finite``, ``kept``, ``aggregation_weight``,
    ``update_norm``, ``num_examples``, ``train_loss``, and one
    ``score_<detector>`` column per detector (NaN in runs without it):
    one row per run, completed round and sampled client."""
    score_columns: list[str] = []

    def rows(run: _Run | None) -> pd.DataFrame | None:
        if run is None:
            return pd.DataFrame({name: pd.Series([], dtype=dtype or object)
                                 for name, dtype in [(ROUND, "int64"), (SLOT, "int64")]
                                 + [(c, d) for _, c, d in _CLIENT_COLUMNS]})
        if run.group is None:
            return None
        found = reader.clients(run.group)
        ids = found.get(schema.CLIENT_ID)
        if ids is None or not ids.size:
            return None
        rounds, slots = ids.shape
        columns = {ROUND: np.repeat(np.arange(1, rounds + 1), slots), SLOT: np.tile(np.arange(slots), rounds)}
        groups = reader.attack_groups(run.group)
        for name, column, dtype in _CLIENT_COLUMNS:
            values = found.get(name)
            if values is None:
                values = np.full(ids.shape, np.nan)
            values = values.reshape(-1)
            if name == schema.ATTACK_GROUP:
                columns[column] = np.array([groups[g] if 0 <= g < len(groups) else None for g in values.astype(int)],
                                           dtype=object)
            else:
                columns[column] = values.astype(dtype)
        scores = found.get(schema.DETECTOR_SCORES)
        if scores is not None and scores.ndim == 3:
            for i, name in enumerate(detector_names(run.group)[: scores.shape[2]]):
                column = SCORE_PREFIX + name
                columns[column] = scores[:, :, i].reshape(-1).astype(np.float64)
                if column not in score_columns:
                    score_columns.append(column)
        return pd.DataFrame(columns)

    frame = _read(path, rows)
    fixed = [c for c in frame.columns if not c.startswith(SCORE_PREFIX)]
    return frame.reindex(columns=fixed + score_columns)


def detection_frame(path: str | Path) -> pd.DataFrame:
    """Columns: the sweep axes, ``run``, ``round``, ``true_positives``,
    ``false_positives``, ``true_negatives``, ``false_negatives``: one row
    per run and completed round, the updates dropped that round (by a
    detector, or for not being finite) against the clients that attacked."""
    counts = (schema.TRUE_POSITIVES, schema.FALSE_POSITIVES, schema.TRUE_NEGATIVES, schema.FALSE_NEGATIVES)

    def rows(run: _Run | None) -> pd.DataFrame | None:
        if run is None:
            return pd.DataFrame({name: pd.Series([], dtype="int64") for name in (ROUND, *counts)})
        if run.group is None:
            return None
        found = reader.detection(run.group)
        rounds = found.get(schema.ROUND)
        if rounds is None or not len(rounds):
            return None
        return pd.DataFrame({ROUND: rounds.astype(np.int64),
                             **{name: np.asarray(found.get(name, np.zeros(len(rounds))), dtype=np.int64)
                                for name in counts}})

    return _read(path, rows)


def index_frame(path: str | Path) -> pd.DataFrame:
    """Columns: the sweep axes, ``run``, ``status``, ``rounds_done``,
    ``label``: one row per point of a sweep (pending ones too, with 0
    rounds done), or one row for a single run (labelled with the file's
    stem)."""

    def rows(run: _Run | None) -> pd.DataFrame:
        if run is None:
            return pd.DataFrame({STATUS: pd.Series([], dtype=object), ROUNDS_DONE: pd.Series([], dtype="int64"),
                                 LABEL: pd.Series([], dtype=object)})
        done = int(run.group.attrs.get(schema.ROUNDS_DONE, 0)) if run.group is not None else 0
        return pd.DataFrame({STATUS: [run.status], ROUNDS_DONE: [done], LABEL: [run.label]})

    return _read(path, rows)
