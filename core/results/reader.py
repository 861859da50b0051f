"""Reading results files back: the one reader, which every other part of
fedarena uses (``fedarena show`` and ``report``, ``--resume``, a sweep's
parallel jobs).  The layout it reads is `fedarena.core.results.schema`.

Files are opened read-only and without HDF5's file lock, so that a run's
file can be read while the run goes on (it is complete between rounds).
The functions taking an ``h5py.Group`` read one run, whether it is a whole
file or a sweep point's group (``runs/NNNN``); the writer calls them too,
on the file it has open to resume.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Callable

import attrs
import h5py
import numpy as np

from fedarena.core.errors import UsageError
from fedarena.core.results import schema


# --------------------------------------------------------------------------
# Opening a file.


@contextlib.contextmanager
def open_results(path: str | Path):
    """A results file opened read-only (single run or sweep), closed on exit."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such results file")
    with tempfile.TemporaryDirectory(prefix="fedarena-read-") as scratch:
        if _killed_mid_round(path):
            # The run died during HDF5's flush: `--resume` mends the file
            # itself; a reader mends a copy and reads that.
            copy = Path(scratch) / path.name
            shutil.copyfile(path, copy)
            cover_what_was_written(copy)
            path = copy
        try:
            f = h5py.File(path, "r", locking=False)
        except OSError as error:
            raise UsageError(f"{path}: {cut_short(path) or 'not a readable HDF5 results file'} ({error})") from None
        with f:
            yield f


_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Where superblock versions 0 and 1 (the ones h5py writes by default; no
# checksum) record the end of file: version 1 adds 4 bytes before the addresses.
_END_OFFSET = {0: 40, 1: 44}


def cover_what_was_written(path: Path) -> bool:
    """Make a file killed in the middle of HDF5's flush readable again.

    HDF5 writes its metadata at a flush in no set order, so a process
    killed during one can leave an object pointing at space past the end
    of file recorded in the superblock ("addr overflow").  The space was
    written (the file is that long), so, as ``h5clear --increment`` does,
    the recorded end is raised to the file's size.  Only the superblock
    versions fedarena writes (0 and 1, which have no checksum) are touched.
    Returns whether the file was changed."""
    ends = _recorded_end(path)
    if ends is None or ends[1] <= ends[0]:
        return False
    try:
        with open(path, "r+b") as file:
            file.seek(_END_OFFSET[file.read(9)[8]])
            file.write(struct.pack("<Q", ends[1]))
    except OSError:  # not ours to mend (read-only): opening it will say what is wrong
        return False
    return True


def _recorded_end(path: Path) -> tuple[int, int] | None:
    """(end of file the superblock records, size on disk), or None for a
    file whose superblock fedarena does not write."""
    try:
        with open(path, "rb") as file:
            head = file.read(56)
            size = os.fstat(file.fileno()).st_size
    except OSError:
        return None
    if len(head) < 56 or head[:8] != _SIGNATURE or head[8] not in (0, 1) or head[13] != 8:
        return None
    (end,) = struct.unpack_from("<Q", head, _END_OFFSET[head[8]])
    return end, size


def cut_short(path: Path) -> str | None:
    """Says so when the file is shorter than its superblock records (it
    was truncated, or copied before its run wrote it whole)."""
    ends = _recorded_end(path)
    if ends is None or ends[1] >= ends[0]:
        return None
    return f"the file is cut short: {ends[1]} of its {ends[0]} bytes"


def _killed_mid_round(path: Path) -> bool:
    """Whether the file's writer died while writing a round: the file is
    longer than its superblock says (a writer reserves a round's space
    first, and HDF5 gives back what was unused when it closes the file) and
    no live run holds its claim (``PATH.lock``, flocked for a run's life)."""
    ends = _recorded_end(path)
    if ends is None or ends[1] <= ends[0]:
        return False
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return True  # no claim: nobody is writing it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live run is writing it: it will close the round itself
    finally:
        os.close(fd)
    return True


def every_dataset(group: h5py.Group) -> dict[str, np.ndarray]:
    """Every dataset under ``group`` by its path relative to it, read whole."""
    found: dict[str, np.ndarray] = {}
    group.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


def is_sweep(f: h5py.File) -> bool:
    return f.attrs.get(schema.KIND) == schema.SWEEP_KIND


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def point_statuses(f: h5py.File) -> list[str]:
    """A sweep's ``/index/status``: each point's status, in order."""
    return [_text(s) for s in f[schema.INDEX_STATUS][()]]


def run_groups(f: h5py.File) -> list[tuple[h5py.Group, str | None]]:
    """Every run in an open file with its label: the points of a sweep in
    order (labelled as they were in the sweep), or the file itself (label
    None) for a single run."""
    if is_sweep(f):
        runs = f.get(schema.RUNS, {})
        return [(runs[name], str(runs[name].attrs.get(schema.POINT_LABEL, name))) for name in sorted(runs)]
    return [(f, None)]


# --------------------------------------------------------------------------
# One run's parts.


def run_attributes(group: h5py.Group) -> dict:
    """The run's attributes (`schema.RUN_ATTRIBUTES`, plus a point's)."""
    return dict(group.attrs)


def _datasets(group: h5py.Group, name: str) -> dict[str, np.ndarray]:
    return {k: v[()] for k, v in group[name].items()} if name in group else {}


def metrics(group: h5py.Group) -> dict[str, np.ndarray]:
    """``/metrics``: name -> 1-D array, one entry per evaluated round."""
    return _datasets(group, schema.METRICS)


def clients(group: h5py.Group) -> dict[str, np.ndarray]:
    """``/clients``: name -> ``[round, slot]`` array."""
    return _datasets(group, schema.CLIENTS)


def detection(group: h5py.Group) -> dict[str, np.ndarray]:
    """``/detection``: name -> 1-D array, one entry per round."""
    return _datasets(group, schema.DETECTION)


def timing(group: h5py.Group) -> dict[str, np.ndarray]:
    """``/timing``: name -> 1-D array, one entry per round."""
    return _datasets(group, schema.TIMING)


def plugins(group: h5py.Group) -> dict[str, dict]:
    """``/plugins``: role group -> its attributes (name, label, parameters, ...)."""
    return {k: dict(v.attrs) for k, v in group[schema.PLUGINS].items()} if schema.PLUGINS in group else {}


def attack_groups(group: h5py.Group) -> tuple[str, ...]:
    """The names of the run's attack blocks, in order."""
    if schema.SPLIT not in group:
        return ()
    return tuple(str(n) for n in group[schema.SPLIT].attrs.get(schema.ATTACK_GROUPS, ()))


def assignment(group: h5py.Group) -> np.ndarray:
    """The attack block of every client, -1 for benign."""
    path = f"{schema.SPLIT}/{schema.ATTACK_GROUP}"
    return group[path][()] if path in group else np.zeros(0, int)


def point(group: h5py.Group) -> dict:
    """A sweep point's assignments; empty for a single run."""
    return json.loads(group.attrs[schema.POINT_ASSIGNMENTS]) if schema.POINT_ASSIGNMENTS in group.attrs else {}


def stored_models(group: h5py.Group) -> dict[int, Callable[[], np.ndarray]]:
    """The global models a run's file holds, by the round after which each
    was taken, each as a function that reads it: those kept by ``save model
    every K rounds`` (`schema.SAVED_WEIGHTS`, up to ``rounds_done``) and the
    checkpoint's (`schema.MODEL_WEIGHTS`, after round ``rounds_done``);
    empty before the first round."""
    if schema.MODEL_WEIGHTS not in group:
        return {}
    done = int(group[schema.MODEL].attrs.get(schema.MODEL_ROUND, group.attrs.get(schema.ROUNDS_DONE, 0)))
    models: dict[int, Callable[[], np.ndarray]] = {}
    if schema.SAVED_ROUND in group and schema.SAVED_WEIGHTS in group:
        saved = group[schema.SAVED_WEIGHTS]
        for row, number in enumerate(group[schema.SAVED_ROUND][()]):
            if 0 < number <= done and row < saved.shape[0]:
                models[int(number)] = lambda row=row: saved[row]
    models[done] = lambda: group[schema.MODEL_WEIGHTS][()]
    return models


@attrs.frozen
class ModelSpec:
    """What a run's model took and gave: the input shape (None in files
    written before it was recorded) and the number of classes."""

    input_shape: tuple[int, ...] | None
    num_classes: int | None


def model_spec(group: h5py.Group) -> ModelSpec:
    model = group.get(schema.MODEL)
    attributes = dict(model.attrs) if model is not None else {}
    shape = attributes.get(schema.MODEL_INPUT_SHAPE)
    classes = attributes.get(schema.MODEL_NUM_CLASSES)
    if classes is None and f"{schema.SPLIT}/{schema.CLASS_HISTOGRAM}" in group:  # the histogram's columns
        classes = group[f"{schema.SPLIT}/{schema.CLASS_HISTOGRAM}"].shape[1]
    return ModelSpec(None if shape is None else tuple(int(n) for n in shape),
                     None if classes is None else int(classes))


def start(group: h5py.Group) -> dict:
    """``/start``: where the run's model started from (path, absolute_path,
    kind, round, sha256); empty for a run that started from its own
    initial weights."""
    return dict(group[schema.START].attrs) if schema.START in group else {}


@attrs.frozen(eq=False)
class Checkpoint:
    """Where a run stopped: what `--resume` continues from."""

    rounds_done: int
    weights: np.ndarray | None
    state: dict
    detection_totals: dict


def checkpoint(group: h5py.Group) -> Checkpoint:
    """The rounds done, the latest global model, the stateful plugins'
    state and the detection counts summed over the rounds written.  Raises
    ``KeyError`` if the run has not got that far (nothing to resume)."""
    weights = group[schema.MODEL_WEIGHTS][()] if schema.MODEL_WEIGHTS in group else None
    state = {key: {name: v[()] for name, v in arrays.items()} for key, arrays in group[schema.CHECKPOINT_STATE].items()}
    totals = {name: int(v[()].sum()) for name, v in group[schema.DETECTION].items() if name != schema.ROUND}
    return Checkpoint(int(group.attrs[schema.ROUNDS_DONE]), weights, state, totals)


# --------------------------------------------------------------------------
# Whole runs.


def plugin_label(plugin_attrs: dict) -> str:
    """How a plugin is shown: its label, else its name, else its parameters."""
    return str(plugin_attrs.get(schema.PLUGIN_LABEL) or plugin_attrs.get(schema.PLUGIN_NAME)
               or plugin_attrs.get(schema.PLUGIN_PARAMETERS, "?"))


@attrs.frozen(eq=False)
class RunView:
    """One run read back from a results file."""

    label: str
    attrs: dict
    metrics: dict  # name -> 1-D array, one entry per evaluated round
    clients: dict  # name -> [round, slot] array
    detection: dict  # name -> 1-D array per round
    plugins: dict  # role -> attributes (name, parameters, distribution, ...)
    attack_groups: tuple[str, ...]
    assignment: np.ndarray  # attack group of every client, -1 for benign
    point: dict  # a sweep point's assignments; empty for a single run

    @property
    def status(self) -> str:
        return str(self.attrs.get(schema.STATUS, "?"))

    def final(self, metric: str) -> float:
        values = self.metrics.get(metric)
        return float(values[-1]) if values is not None and len(values) else float("nan")

    @property
    def attack_metrics(self) -> list[str]:
        return sorted(m for m in self.metrics
                      if m != schema.ROUND and m not in schema.TEST_METRICS + schema.DETECTION_METRICS)

    @property
    def aggregator_label(self) -> str:
        return plugin_label(self.plugins.get(schema.AGGREGATOR_GROUP, {}))

    @property
    def detector_labels(self) -> list[str]:
        """The detectors, in role order."""
        return [plugin_label(v) for k, v in sorted(self.plugins.items()) if k.startswith(schema.DETECTOR_PREFIX)]

    @property
    def attack_label(self) -> str:
        """The attack groups with their sizes, e.g. ``alie x 4``; ``no attack``
        when no client attacks."""
        parts = []
        for index, name in enumerate(self.attack_groups):
            count = int(np.sum(self.assignment == index))
            if count:
                parts.append(f"{plugin_label(self.plugins.get(schema.ATTACK_PREFIX + name, {}))} x {count}")
        return " + ".join(parts) or "no attack"


def damage(group: h5py.Group, resuming: bool = False) -> str | None:
    """What makes a run's record untrustworthy (a file cut short that HDF5
    still opens, an attribute or a dataset edited or deleted by hand), or
    None.  Rows past ``rounds_done`` are allowed: a round cut short by a
    crash may leave them (docs/results.md).  With ``resuming``, the
    checkpoint the run continues from must be there too."""
    for name in (schema.STATUS, schema.ROUNDS_PLANNED, schema.ROUNDS_DONE):
        if name not in group.attrs:
            return f"attribute '{name}' is missing"
    status, planned, done = (_plain(group.attrs[name]) for name in (schema.STATUS, schema.ROUNDS_PLANNED,
                                                                     schema.ROUNDS_DONE))
    if status not in schema.STATUSES:
        return f"attribute '{schema.STATUS}' is {status!r}, not one of {', '.join(schema.STATUSES)}"
    if type(planned) is not int or planned < 1:
        return f"attribute '{schema.ROUNDS_PLANNED}' is {planned!r}, not a number of rounds"
    if type(done) is not int or not 0 <= done <= planned:
        return f"attribute '{schema.ROUNDS_DONE}' is {done!r}, not a number of rounds from 0 to {planned}"
    needed = [f"{schema.CLIENTS}/{schema.CLIENT_ID}", f"{schema.DETECTION}/{schema.ROUND}"] if done else []
    metrics_group = group.get(schema.METRICS, {})
    if len(metrics_group) and schema.ROUND not in metrics_group:
        return f"'{schema.METRICS}/{schema.ROUND}' is missing"
    evaluated = int(np.sum(metrics_group[schema.ROUND][()] <= done)) if len(metrics_group) else 0
    if evaluated:  # every evaluation writes the clean test accuracy
        needed.append(f"{schema.METRICS}/{schema.TEST_ACCURACY}")
    if resuming and done:
        needed += [schema.MODEL_WEIGHTS, schema.CHECKPOINT_STATE]
    for name in needed:
        if name not in group:
            return f"'{name}' is missing"
    for name in schema.PER_ROUND_GROUPS:
        for dataset in group.get(name, {}).values():
            if dataset.shape[0] < done:
                return f"'{_inside(group, dataset)}' has {dataset.shape[0]} rows, but {done} rounds are done"
    for dataset in metrics_group.values():
        if dataset.shape[0] < evaluated:
            return (f"'{_inside(group, dataset)}' has {dataset.shape[0]} rows, but {evaluated} evaluated "
                    f"rounds are done")
    return None


def _inside(group: h5py.Group, dataset: h5py.Dataset) -> str:
    """The dataset's path inside the run's group (``clients/id``)."""
    return dataset.name[len(group.name):].lstrip("/")


def _plain(value):
    """An attribute as Python writes it in a message: text, an int, a list."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value.tolist() if isinstance(value, (np.generic, np.ndarray)) else value


def check_run(group: h5py.Group, path: str | Path) -> None:
    """Raise a `UsageError` naming the file, the run and what is wrong when
    its record cannot be trusted (`damage`).  A group without a scenario
    is no run's record: a sweep point that never started, or not a
    results file (which the callers say)."""
    if schema.SCENARIO not in group.attrs:
        return
    problem = damage(group)
    if problem is not None:
        where = str(path) if group.name == "/" else f"{path}, run {group.name.lstrip('/')}"
        raise UsageError(f"{where}: {problem}; the file is damaged or was edited")


def read_run(group: h5py.Group, label: str, path: str | Path | None = None) -> RunView:
    """One run (a file's root, or a sweep point's group), every part read;
    a `UsageError` if it is damaged (`check_run`).  ``path``: the file, for
    messages (default: the one open)."""
    check_run(group, group.file.filename if path is None else path)
    return RunView(label, run_attributes(group), metrics(group), clients(group), detection(group), plugins(group),
                   attack_groups(group), assignment(group), point(group))


def load_runs(path: str | Path) -> list[RunView]:
    """Every run in a results file (one for a run, all points of a sweep);
    a single run is labelled with the file's stem."""
    path = Path(path)
    with open_results(path) as f:
        if not is_sweep(f) and schema.SCENARIO not in f.attrs:
            raise UsageError(f"{path}: not a fedarena results file (no '{schema.SCENARIO}' attribute)")
        return [read_run(group, path.stem if label is None else label, path) for group, label in run_groups(f)]


def load_point(path: str | Path, index: int) -> RunView:
    """Point ``index`` of a sweep file, without reading the others."""
    name = schema.point_group(index)
    with open_results(path) as f:
        return read_run(f[name], str(f[name].attrs.get(schema.POINT_LABEL, name)), path)
