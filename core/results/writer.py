"""Writing the HDF5 record of a run or a sweep, in the layout of
`fedarena.core.results.schema` (docs/results.md); reading it back, to
resume, goes through `fedarena.core.results.reader`.

The file is opened, appended to and closed once per round, so that between
rounds it is complete and readable by anyone, and a crash (even SIGKILL)
leaves every completed round in it with ``status`` still ``running``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np

from fedarena.core.errors import UsageError
from fedarena.core.results import reader, schema
from fedarena.core.results.reader import Checkpoint

_STRING = h5py.string_dtype()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def claim_output(path: str | os.PathLike, force: bool) -> Path:
    """Check that a results file may be written at ``path`` (before any work)."""
    path = Path(path)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; pass --force to overwrite it, or choose another output")
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name for the results")
    return path


class ResultsWriter:
    """Appends a run's rounds to its HDF5 file."""

    def __init__(self, path: str | os.PathLike, force: bool = False, resume: bool = False, group: str = "/"):
        # A sweep keeps each run in a group of its own file; the sweep claims
        # the file, so a run inside it does not.
        self.group = group
        self.path = Path(path) if resume or group != "/" else claim_output(path, force)

    def resume(self, scenario) -> Checkpoint:
        """Reopen a run's file to continue it: check that it is the same
        scenario, drop anything written after the last completed round (a
        crash mid-write), and return the checkpoint."""
        if not self.path.is_file():
            raise UsageError(f"{self.path} does not exist; there is nothing to resume (run without --resume)")
        try:
            with self._open() as f:
                return self._checkpoint(f, scenario)
        except OSError as error:
            raise UsageError(f"{self.path} cannot be opened to resume: {error}") from None

    def _checkpoint(self, f: h5py.Group, scenario) -> Checkpoint:
        digest = hashlib.sha256(scenario.source.encode()).hexdigest()
        if f.attrs.get(schema.SCENARIO_SHA256) != digest:
            raise UsageError(
                f"{self.path} was written by a different scenario text; resume with the same file, "
                f"or start anew with --force"
            )
        if f.attrs.get(schema.STATUS) == schema.COMPLETE:
            raise UsageError(f"{self.path} is already complete; there is nothing to resume")
        # Drop what was written after the last completed round.
        done = int(f.attrs[schema.ROUNDS_DONE])
        for group in schema.PER_ROUND_GROUPS:
            for dataset in f[group].values():
                dataset.resize(done, axis=0)
        metrics = f[schema.METRICS]
        metrics_rounds = metrics[schema.ROUND][()] if schema.ROUND in metrics else np.zeros(0)
        kept = int(np.sum(metrics_rounds <= done))
        for dataset in metrics.values():
            dataset.resize(kept, axis=0)
        checkpoint = reader.checkpoint(f)
        f.attrs[schema.STATUS] = schema.RUNNING
        f.attrs[schema.RESUMED_AT] = _now()
        return checkpoint

    @contextlib.contextmanager
    def _open(self, mode: str = "a"):
        """The run's group (the file itself for a single run), opened for this write only."""
        with h5py.File(self.path, mode) as f:
            yield f if self.group == "/" else f.require_group(self.group)

    def start(self, scenario, registry, class_histogram: np.ndarray, attack_groups: np.ndarray,
              workers: tuple[str, ...] = (), backend: str = "worker") -> None:
        from fedarena import __version__

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.group != "/":  # a sweep point started anew replaces what an earlier try left
            with h5py.File(self.path, "a") as f:
                if self.group in f:
                    del f[self.group]
        with self._open("w" if self.group == "/" else "a") as f:
            f.attrs[schema.FEDARENA_VERSION] = __version__
            f.attrs[schema.SCENARIO] = scenario.source
            f.attrs[schema.SCENARIO_SHA256] = hashlib.sha256(scenario.source.encode()).hexdigest()
            f.attrs[schema.SCENARIO_FILE] = scenario.filename
            f.attrs[schema.TITLE] = scenario.title
            f.attrs[schema.SEED] = scenario.seed
            f.attrs[schema.ROUNDS_PLANNED] = scenario.rounds
            f.attrs[schema.ROUNDS_DONE] = 0
            f.attrs[schema.STATUS] = schema.RUNNING
            f.attrs[schema.STARTED_AT] = _now()
            f.attrs[schema.WORKERS] = ",".join(workers) if workers else schema.LOCAL_WORKERS
            f.attrs[schema.BACKEND] = backend
            versions = f.create_group(schema.VERSIONS)
            for dist in schema.VERSIONED_DISTRIBUTIONS:
                versions.attrs[dist] = _version(dist)
            plugins = f.create_group(schema.PLUGINS)
            for role, plugin in scenario.plugins():
                provider = registry.provider_of(plugin)
                group = plugins.create_group(schema.plugin_group(role))
                group.attrs[schema.PLUGIN_ROLE] = role
                group.attrs[schema.PLUGIN_NAME] = registry.name_of(plugin)
                group.attrs[schema.PLUGIN_LABEL] = registry.label(plugin)
                group.attrs[schema.PLUGIN_CLASS] = f"{type(plugin).__module__}.{type(plugin).__qualname__}"
                group.attrs[schema.PLUGIN_PARAMETERS] = repr(plugin)
                group.attrs[schema.PLUGIN_DISTRIBUTION] = provider.distribution
                group.attrs[schema.PLUGIN_VERSION] = provider.version
            split = f.create_group(schema.SPLIT)
            split.create_dataset(schema.CLASS_HISTOGRAM, data=class_histogram.astype(np.int64))
            split.create_dataset(schema.NUM_EXAMPLES, data=class_histogram.sum(axis=1).astype(np.int64))
            split.create_dataset(schema.ATTACK_GROUP, data=attack_groups)
            split.attrs[schema.ATTACK_GROUPS] = np.array([g.name for g in scenario.attacks], dtype=object) \
                .astype(_STRING) if scenario.attacks else np.array([], dtype=_STRING)
            for group in (schema.METRICS, *schema.PER_ROUND_GROUPS, schema.CHECKPOINT_STATE):
                f.create_group(group)

    @staticmethod
    def _append(group: h5py.Group, name: str, value: np.ndarray) -> None:
        value = np.asarray(value)
        if name not in group:
            group.create_dataset(name, data=value[None], maxshape=(None, *value.shape), chunks=True)
            return
        dataset = group[name]
        dataset.resize(dataset.shape[0] + 1, axis=0)
        dataset[-1] = value

    def write_round(self, result) -> None:
        with self._open() as f:
            for name, value in result.clients.items():
                self._append(f[schema.CLIENTS], name, value)
            self._append(f[schema.TIMING], schema.ROUND, np.int32(result.round))
            for stage, seconds in result.seconds.items():
                self._append(f[schema.TIMING], stage + schema.SECONDS_SUFFIX, np.float64(seconds))
            self._append(f[schema.DETECTION], schema.ROUND, np.int32(result.round))
            for name, count in result.detection.items():
                self._append(f[schema.DETECTION], name, np.int64(count))
            if result.metrics:
                self._append(f[schema.METRICS], schema.ROUND, np.int32(result.round))
                for name, value in result.metrics.items():
                    self._append(f[schema.METRICS], name, np.float64(value))
            # The latest global model and server-side plugin state: what a
            # resumed run starts from.
            self._replace(f, schema.MODEL_WEIGHTS, result.weights)
            for key, arrays in result.state.items():
                for name, value in arrays.items():
                    self._replace(f, schema.state_path(key, name), value)
            f[schema.MODEL].attrs[schema.MODEL_ROUND] = result.round
            f.attrs[schema.ROUNDS_DONE] = result.round

    @staticmethod
    def _replace(f: h5py.File, path: str, value: np.ndarray) -> None:
        value = np.asarray(value)
        if path in f and f[path].shape == value.shape and f[path].dtype == value.dtype:
            f[path][...] = value
        else:
            if path in f:
                del f[path]
            f.create_dataset(path, data=value)

    def finish(self, status: str, message: str = "") -> None:
        assert status in schema.STATUSES
        with self._open() as f:
            f.attrs[schema.STATUS] = status
            f.attrs[schema.FINISHED_AT] = _now()
            if message:
                f.attrs[schema.ERROR] = message


class SweepFile:
    """One file for a whole sweep: root attribute ``kind = "sweep"``, an
    index of the points (``/index/label``, ``/index/point``,
    ``/index/status``), and each point's run in ``/runs/NNNN`` with the
    layout of a single run (`schema`)."""

    def __init__(self, path: str | os.PathLike, force: bool = False, resume: bool = False):
        self.path = Path(path) if resume else claim_output(path, force)

    @staticmethod
    def group(index: int) -> str:
        return schema.point_group(index)

    def start(self, source: str, title: str, labels: list[str], points: list[dict]) -> None:
        from fedarena import __version__

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(self.path, "w") as f:
            f.attrs[schema.KIND] = schema.SWEEP_KIND
            f.attrs[schema.FEDARENA_VERSION] = __version__
            f.attrs[schema.SCENARIO] = source
            f.attrs[schema.SCENARIO_SHA256] = hashlib.sha256(source.encode()).hexdigest()
            f.attrs[schema.TITLE] = title
            f.attrs[schema.RUNS] = len(labels)
            f.attrs[schema.STATUS] = schema.RUNNING
            f.attrs[schema.STARTED_AT] = _now()
            f.create_dataset(schema.INDEX_LABEL, data=np.array(labels, dtype=object), dtype=_STRING)
            f.create_dataset(schema.INDEX_POINT, data=np.array([json.dumps(p) for p in points], dtype=object),
                             dtype=_STRING)
            f.create_dataset(schema.INDEX_STATUS, data=np.array([schema.PENDING] * len(labels), dtype=object),
                             dtype=_STRING)
            f.create_group(schema.RUNS)

    def statuses(self, source: str) -> list[str]:
        """For --resume: each point's status, after checking it is the same sweep."""
        if not self.path.is_file():
            raise UsageError(f"{self.path} does not exist; there is nothing to resume (run without --resume)")
        with reader.open_results(self.path) as f:
            if not reader.is_sweep(f) or f.attrs.get(schema.SCENARIO_SHA256) != hashlib.sha256(
                source.encode()
            ).hexdigest():
                raise UsageError(f"{self.path} was written by a different scenario text; resume with the same "
                                 f"file, or start anew with --force")
            return reader.point_statuses(f)

    def label(self, index: int, label: str, point: dict) -> None:
        with h5py.File(self.path, "a") as f:
            group = f.require_group(self.group(index))
            group.attrs[schema.POINT_LABEL] = label
            group.attrs[schema.POINT_ASSIGNMENTS] = json.dumps(point)
            group.attrs[schema.POINT_INDEX] = index

    def mark(self, index: int, status: str) -> None:
        with h5py.File(self.path, "a") as f:
            f[schema.INDEX_STATUS][index] = status

    def merge(self, index: int, run_file: Path) -> None:
        """Copy a point's own results file (from a parallel job) into its group."""
        with h5py.File(self.path, "a") as f, h5py.File(run_file, "r") as source:
            name = self.group(index)
            if name in f:
                del f[name]
            group = f.create_group(name)
            for key in source:
                source.copy(source[key], group, name=key)
            for key, value in source.attrs.items():
                group.attrs[key] = value

    def finish(self, status: str) -> None:
        with h5py.File(self.path, "a") as f:
            f.attrs[schema.STATUS] = status
            f.attrs[schema.FINISHED_AT] = _now()
