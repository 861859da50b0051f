"""The HDF5 record of a run (schema: docs/results.md).

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

import attrs
import h5py
import numpy as np

from fedarena.core.errors import UsageError

STATUSES = ("running", "complete", "interrupted", "failed")
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


@attrs.frozen(eq=False)
class Checkpoint:
    """Where a run stopped: what `--resume` continues from."""

    rounds_done: int
    weights: np.ndarray | None
    state: dict
    detection_totals: dict


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
        if f.attrs.get("scenario_sha256") != digest:
            raise UsageError(
                f"{self.path} was written by a different scenario text; resume with the same file, "
                f"or start anew with --force"
            )
        if f.attrs.get("status") == "complete":
            raise UsageError(f"{self.path} is already complete; there is nothing to resume")
        done = int(f.attrs["rounds_done"])
        for group in ("clients", "timing", "detection"):
            for dataset in f[group].values():
                dataset.resize(done, axis=0)
        metrics_rounds = f["metrics/round"][()] if "round" in f["metrics"] else np.zeros(0)
        kept = int(np.sum(metrics_rounds <= done))
        for dataset in f["metrics"].values():
            dataset.resize(kept, axis=0)
        weights = f["model/weights"][()] if "model/weights" in f else None
        state = {key: {name: v[()] for name, v in group.items()} for key, group in f["checkpoint/state"].items()}
        totals = {name: int(v[()].sum()) for name, v in f["detection"].items() if name != "round"}
        f.attrs["status"] = "running"
        f.attrs["resumed_at"] = _now()
        return Checkpoint(done, weights, state, totals)

    @contextlib.contextmanager
    def _open(self, mode: str = "a"):
        """The run's group (the file itself for a single run), opened for this write only."""
        with h5py.File(self.path, mode) as f:
            yield f if self.group == "/" else f.require_group(self.group)

    def start(self, scenario, registry, class_histogram: np.ndarray, attack_groups: np.ndarray,
              workers: tuple[str, ...] = ()) -> None:
        from fedarena import __version__

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.group != "/":  # a sweep point started anew replaces what an earlier try left
            with h5py.File(self.path, "a") as f:
                if self.group in f:
                    del f[self.group]
        with self._open("w" if self.group == "/" else "a") as f:
            f.attrs["fedarena_version"] = __version__
            f.attrs["scenario"] = scenario.source
            f.attrs["scenario_sha256"] = hashlib.sha256(scenario.source.encode()).hexdigest()
            f.attrs["scenario_file"] = scenario.filename
            f.attrs["title"] = scenario.title
            f.attrs["seed"] = scenario.seed
            f.attrs["rounds_planned"] = scenario.rounds
            f.attrs["rounds_done"] = 0
            f.attrs["status"] = "running"
            f.attrs["started_at"] = _now()
            f.attrs["workers"] = ",".join(workers) if workers else "local"
            versions = f.create_group("versions")
            for dist in ("tensorflow", "tensorflow-federated", "numpy", "h5py", "pluggy", "lark", "attrs"):
                versions.attrs[dist] = _version(dist)
            plugins = f.create_group("plugins")
            for role, plugin in scenario.plugins():
                provider = registry.provider_of(plugin)
                group = plugins.create_group(role.replace(":", "_"))
                group.attrs["role"] = role
                group.attrs["name"] = registry.name_of(plugin)
                group.attrs["label"] = registry.label(plugin)
                group.attrs["class"] = f"{type(plugin).__module__}.{type(plugin).__qualname__}"
                group.attrs["parameters"] = repr(plugin)
                group.attrs["distribution"] = provider.distribution
                group.attrs["version"] = provider.version
            split = f.create_group("split")
            split.create_dataset("class_histogram", data=class_histogram.astype(np.int64))
            split.create_dataset("num_examples", data=class_histogram.sum(axis=1).astype(np.int64))
            split.create_dataset("attack_group", data=attack_groups)
            split.attrs["attack_groups"] = np.array([g.name for g in scenario.attacks], dtype=object).astype(_STRING) \
                if scenario.attacks else np.array([], dtype=_STRING)
            for group in ("metrics", "clients", "timing", "detection", "checkpoint/state"):
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
                self._append(f["clients"], name, value)
            self._append(f["timing"], "round", np.int32(result.round))
            for stage, seconds in result.seconds.items():
                self._append(f["timing"], f"{stage}_seconds", np.float64(seconds))
            self._append(f["detection"], "round", np.int32(result.round))
            for name, count in result.detection.items():
                self._append(f["detection"], name, np.int64(count))
            if result.metrics:
                self._append(f["metrics"], "round", np.int32(result.round))
                for name, value in result.metrics.items():
                    self._append(f["metrics"], name, np.float64(value))
            # The latest global model and server-side plugin state: what a
            # resumed run starts from.
            self._replace(f, "model/weights", result.weights)
            for key, arrays in result.state.items():
                for name, value in arrays.items():
                    self._replace(f, f"checkpoint/state/{key}/{name}", value)
            f["model"].attrs["round"] = result.round
            f.attrs["rounds_done"] = result.round

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
        assert status in STATUSES
        with self._open() as f:
            f.attrs["status"] = status
            f.attrs["finished_at"] = _now()
            if message:
                f.attrs["error"] = message


class SweepFile:
    """One file for a whole sweep: root attribute ``kind = "sweep"``, an
    index of the points (``/index/label``, ``/index/point``,
    ``/index/status``), and each point's run in ``/runs/NNNN`` with the
    schema of a single run."""

    def __init__(self, path: str | os.PathLike, force: bool = False, resume: bool = False):
        self.path = Path(path) if resume else claim_output(path, force)

    @staticmethod
    def group(index: int) -> str:
        return f"runs/{index:04d}"

    def start(self, source: str, title: str, labels: list[str], points: list[dict]) -> None:
        from fedarena import __version__

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(self.path, "w") as f:
            f.attrs["kind"] = "sweep"
            f.attrs["fedarena_version"] = __version__
            f.attrs["scenario"] = source
            f.attrs["scenario_sha256"] = hashlib.sha256(source.encode()).hexdigest()
            f.attrs["title"] = title
            f.attrs["runs"] = len(labels)
            f.attrs["status"] = "running"
            f.attrs["started_at"] = _now()
            f.create_dataset("index/label", data=np.array(labels, dtype=object), dtype=_STRING)
            f.create_dataset("index/point", data=np.array([json.dumps(p) for p in points], dtype=object),
                             dtype=_STRING)
            f.create_dataset("index/status", data=np.array(["pending"] * len(labels), dtype=object), dtype=_STRING)
            f.create_group("runs")

    def statuses(self, source: str) -> list[str]:
        """For --resume: each point's status, after checking it is the same sweep."""
        if not self.path.is_file():
            raise UsageError(f"{self.path} does not exist; there is nothing to resume (run without --resume)")
        with h5py.File(self.path, "r") as f:
            if f.attrs.get("kind") != "sweep" or f.attrs.get("scenario_sha256") != hashlib.sha256(
                source.encode()
            ).hexdigest():
                raise UsageError(f"{self.path} was written by a different scenario text; resume with the same "
                                 f"file, or start anew with --force")
            return [s.decode() if isinstance(s, bytes) else str(s) for s in f["index/status"][()]]

    def label(self, index: int, label: str, point: dict) -> None:
        with h5py.File(self.path, "a") as f:
            group = f.require_group(self.group(index))
            group.attrs["label"], group.attrs["point"], group.attrs["index"] = label, json.dumps(point), index

    def mark(self, index: int, status: str) -> None:
        with h5py.File(self.path, "a") as f:
            f["index/status"][index] = status

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
            f.attrs["status"] = status
            f.attrs["finished_at"] = _now()
