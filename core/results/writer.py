"""Writing the HDF5 record of a run or a sweep, in the layout of
`fedarena.core.results.schema` (docs/results.md); reading it back, to
resume, goes through `fedarena.core.results.reader`.

The file is opened, appended to and closed once per round, so that between
rounds it is complete and readable by anyone.  It is opened without HDF5's
file lock, so a reader holding it open (with or without the lock) never
stops the run; the run's own claim on its output is a lock file beside it
(`OutputClaim`).

A round is committed so that a crash at any instant (even SIGKILL in the
middle of writing a large model) leaves a consistent file: the whole round
(its records, the model and the plugins' state) is first written to
``/checkpoint/next`` and flushed, then marked complete there (attribute
``round``), and only then copied into place; `recover` finishes a copy that
a crash cut short.  See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import time
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np

from fedarena.core.errors import RunError, UsageError
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


def _h5file(path: str | os.PathLike, mode: str) -> h5py.File:
    """The file opened for writing, without HDF5's file lock: a reader that
    holds the file open (h5py's default takes a shared lock) must not make
    the run's next open fail (``BlockingIOError``, errno 11).  Where a lock
    is still met (an h5py without ``locking``), the open is retried for a
    few seconds."""
    delay, waited = 0.02, 0.0
    while True:
        try:
            return h5py.File(path, mode, locking=False)
        except OSError as error:
            locked = isinstance(error, BlockingIOError) or getattr(error, "errno", None) in (errno.EAGAIN,
                                                                                              errno.EWOULDBLOCK)
            if not locked or waited > 5:
                raise
        time.sleep(delay)
        waited += delay
        delay = min(delay * 2, 0.5)


class OutputClaim:
    """A run's exclusive claim on its output: ``PATH.lock`` beside it,
    holding the owner's pid, locked with ``flock`` for the run's life (the
    lock goes with the process, so the file a killed run leaves behind is
    simply taken over).  A second run on the same output is refused."""

    def __init__(self, path: Path):
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a file in the way, or a folder we may not write in
            raise UsageError(self._cannot_write(error)) from None
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise UsageError(self._cannot_write(error)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise UsageError(
                    f"{self.path} is being written by another fedarena run (pid {owner}); wait for it to end, "
                    f"or choose another output"
                ) from None
            # A run that was just ending may have removed the file we locked.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def _cannot_write(self, error: OSError) -> str:
        if isinstance(error, (FileExistsError, NotADirectoryError)):  # mkdir met a file where a folder should be
            in_the_way = next(p for p in self.path.parents if p.exists())
            reason = f"{in_the_way} is a file, not a folder"
        else:
            reason = f"{error.strerror or error}" + (f" ({error.filename})" if error.filename else "")
        return f"cannot write the results file {self.path}: {reason}; choose another output"

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.lock_path)
        os.close(self._fd)
        self._fd = None


def claim_output(path: str | os.PathLike, force: bool, resume: bool = False) -> tuple[Path, OutputClaim]:
    """Claim ``path`` for a run (before any work): refuse it if another run
    is writing it, if it exists (unless ``force`` or ``resume``), or if it
    is a directory.  Returns the path and the claim, which the caller
    releases when the run ends."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name for the results")
    claim = OutputClaim(path)
    claim.acquire()
    if path.exists() and not force and not resume:
        claim.release()
        raise UsageError(f"{path} already exists; pass --force to overwrite it, or choose another output")
    return path, claim


def _release(owner) -> None:
    """End a writer's hold on its output (`ResultsWriter`, `SweepFile`):
    drop a ``--force`` scratch file that never replaced the old file, and
    release the claim."""
    if owner.location != owner.path:
        with contextlib.suppress(OSError):
            owner.location.unlink()
        owner.location = owner.path
    if owner.claim is not None:
        owner.claim.release()
        owner.claim = None


def _scratch(path: Path) -> Path:
    """Where a ``--force`` run writes until it replaces the old file."""
    return path.with_name(path.name + ".new")


class ResultsWriter:
    """Appends a run's rounds to its HDF5 file.

    ``path`` is the results file; ``location`` is where the file is being
    written now: with ``force`` over an existing file, a scratch file beside
    it (``PATH.new``) that replaces the old one once the first round is
    written, so that the old file survives a new run that fails before
    that.  A write that fails raises `RunError` at once, and the file is
    not touched again (it keeps every round committed before)."""

    def __init__(self, path: str | os.PathLike, force: bool = False, resume: bool = False, group: str = "/"):
        # A sweep keeps each run in a group of its own file; the sweep claims
        # the file, so a run inside it does not.
        self.group = group
        self.claim: OutputClaim | None = None
        if group != "/":
            self.path = Path(path)
        else:
            self.path, self.claim = claim_output(path, force, resume)
        self.location = _scratch(self.path) if group == "/" and not resume and self.path.exists() else self.path
        self.broken = False  # a write failed: the file is left as it was
        self._committed = 0  # rounds in the file

    def resume(self, scenario) -> Checkpoint:
        """Reopen a run's file to continue it: check that it is the same
        scenario, finish a round a crash left half-copied (`recover`), drop
        anything written after the last completed round, and return the
        checkpoint."""
        try:
            if not self.path.is_file():
                raise UsageError(f"{self.path} does not exist; there is nothing to resume (run without --resume)")
            try:
                if self.group == "/":
                    reader.cover_what_was_written(self.location)
                with self._open() as f:
                    checkpoint = self._checkpoint(f, scenario)
            except OSError as error:
                short = reader.cut_short(self.location)
                reason = f"{short} ({error})" if short else str(error)
                raise UsageError(f"{self.path} cannot be opened to resume: {reason}") from None
        except BaseException:
            self.close()
            raise
        self._committed = checkpoint.rounds_done
        return checkpoint

    def _checkpoint(self, f: h5py.Group, scenario) -> Checkpoint:
        digest = hashlib.sha256(scenario.source.encode()).hexdigest()
        if f.attrs.get(schema.SCENARIO_SHA256) != digest:
            raise UsageError(
                f"{self.path} was written by a different scenario text; resume with the same file, "
                f"or start anew with --force"
            )
        problem = reader.damage(f, resuming=True)
        if problem is not None:  # never continue a record that cannot be trusted
            raise UsageError(f"{self.path} cannot be resumed: {problem}; the file is damaged or was edited: "
                             f"start anew with --force, or choose another output")
        if f.attrs.get(schema.STATUS) == schema.COMPLETE:
            raise UsageError(f"{self.path} is already complete; there is nothing to resume")
        recover(f)
        # Drop what was written after the last completed round.
        done = int(f.attrs[schema.ROUNDS_DONE])
        for group in schema.PER_ROUND_GROUPS:
            for dataset in f[group].values():
                if dataset.shape[0] > done:
                    dataset.resize(done, axis=0)
        metrics = f[schema.METRICS]
        metrics_rounds = metrics[schema.ROUND][()] if schema.ROUND in metrics else np.zeros(0)
        kept = int(np.sum(metrics_rounds <= done))
        for dataset in metrics.values():
            if dataset.shape[0] > kept:
                dataset.resize(kept, axis=0)
        checkpoint = reader.checkpoint(f)
        f.attrs[schema.STATUS] = schema.RUNNING
        f.attrs[schema.RESUMED_AT] = _now()
        return checkpoint

    @contextlib.contextmanager
    def _open(self, mode: str = "a"):
        """The run's group (the file itself for a single run), opened for this write only."""
        with _h5file(self.location, mode) as f:
            yield f if self.group == "/" else f.require_group(self.group)

    def start(self, scenario, registry, class_histogram: np.ndarray, attack_groups: np.ndarray,
              workers: tuple[str, ...] = (), backend: str = "worker", members: np.ndarray | None = None,
              model_io: tuple[tuple[int, ...], int] | None = None, start=None, start_sha256: str = "") -> None:
        """Create the run's file: its attributes, the plugins, the split and
        the attack groups (``attack_groups``: each client's group, -1 for
        benign; ``members``: its index in the group), what the model takes
        and gives (``model_io``: input shape, classes), and where it started
        from (``start``: the scenario's `StartSource`, ``start_sha256`` the
        digest of its file)."""
        from fedarena import __version__

        self.location.parent.mkdir(parents=True, exist_ok=True)
        if self.group != "/":  # a sweep point started anew replaces what an earlier try left
            with _h5file(self.location, "a") as f:
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
            for index, attack in enumerate(scenario.attacks):
                record = plugins[schema.plugin_group(f"attack:{attack.name}")]
                ids = np.flatnonzero(attack_groups == index)
                if members is not None:
                    ids = ids[np.argsort(members[ids], kind="stable")]
                record.attrs[schema.ATTACK_MEMBERS] = ids.astype(np.int64)
                record.attrs[schema.ATTACK_PLACEMENT] = attack.placement
                record.attrs[schema.ATTACK_PARTICIPATION] = attack.participation
            model = f.create_group(schema.MODEL)
            model.attrs[schema.MODEL_SAVE_EVERY] = int(getattr(scenario, "save_model_every", 0))
            if model_io is not None:
                model.attrs[schema.MODEL_INPUT_SHAPE] = np.array(model_io[0], np.int64)
                model.attrs[schema.MODEL_NUM_CLASSES] = int(model_io[1])
            if start is not None:
                source = f.create_group(schema.START)
                source.attrs[schema.START_PATH] = start.path
                source.attrs[schema.START_LOCATION] = start.location
                source.attrs[schema.START_KIND] = start.kind
                source.attrs[schema.START_ROUND] = start.round or 0
                source.attrs[schema.START_SHA256] = start_sha256
            for group in (schema.METRICS, *schema.PER_ROUND_GROUPS, schema.CHECKPOINT_STATE):
                f.create_group(group)

    def write_round(self, result) -> None:
        """Commit one round: records, model and state together, or nothing
        (see the module's docstring).  Raises `RunError` if the file cannot
        be written; the rounds committed before are kept."""
        if self.broken:
            raise RunError(self._failure("an earlier write failed"))
        try:
            _reserve(self.location, result)
            with self._open() as f:
                staged = f.require_group(schema.CHECKPOINT_NEXT)
                records = _round_records(result)
                _stage(staged, records, result)
                f.file.flush()  # the whole round is on disk ...
                staged.attrs.modify(schema.NEXT_ROUND, np.int64(result.round))
                f.file.flush()  # ... before it is marked complete: from here on, a crash is recovered forward
                _apply(f, result.round, records, result.weights, result.state)
                f.file.flush()
                staged.attrs.modify(schema.NEXT_ROUND, np.int64(0))
        except Exception as error:
            self.broken = True
            raise RunError(self._failure(error)) from error
        self._committed = result.round
        if self.location != self.path:  # --force: the new run replaces the old file now
            try:
                os.replace(self.location, self.path)
            except OSError as error:
                self.broken = True
                raise RunError(self._failure(error)) from error
            self.location = self.path

    def _failure(self, error) -> str:
        kept = f"every completed round up to {self._committed} is kept"
        if self.location != self.path:
            kept = f"{self.path} is left as it was"
        error = " ".join(str(error).split())  # HDF5's messages run over lines
        return f"cannot write the results file {self.path}: {error}; {kept}"

    def finish(self, status: str, message: str = "") -> None:
        """Record how the run ended and release the output.  After a failed
        write the file is left alone (its ``status`` stays ``running``, as
        after a crash, and ``--resume`` continues it)."""
        assert status in schema.STATUSES
        try:
            if not self.broken:
                with self._open() as f:
                    recover(f)  # a round cut short by a second Ctrl-C is finished
                    if schema.CHECKPOINT_NEXT in f:  # only what resuming needs stays
                        del f[schema.CHECKPOINT_NEXT]
                    f.attrs[schema.STATUS] = status
                    f.attrs[schema.FINISHED_AT] = _now()
                    if message:
                        f.attrs[schema.ERROR] = message
        finally:
            self.close()

    def close(self) -> None:
        """Release the output.  A ``--force`` run that never wrote a round
        drops its scratch file: the old results file stays."""
        _release(self)

    @staticmethod
    def _replace(f: h5py.Group, path: str, value: np.ndarray) -> None:
        _replace(f, path, value)


# --------------------------------------------------------------------------
# Committing a round: stage it whole in /checkpoint/next, then copy it.


def _reserve(path: Path, result) -> None:
    """Make room on disk for a round before writing any of it: HDF5 defers
    some writes to when a dataset is closed, where h5py only prints their
    errors, and a file whose end was not written cannot be opened again
    ("truncated file").  With the space taken first, a full disk fails
    here, with the file untouched.  HDF5 gives back what the round did not
    use when it closes the file."""
    size = np.asarray(result.weights).nbytes * 2 + sum(
        np.asarray(v).nbytes for arrays in result.state.values() for v in arrays.values()) * 2 + (1 << 20)
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, os.fstat(fd).st_size, size)
    finally:
        os.close(fd)


def _written(dataset: h5py.Dataset) -> None:
    """Push a dataset's data to the file now, so that a failed write
    raises here (HDF5 otherwise writes small datasets when it closes them,
    where h5py cannot raise)."""
    dataset.flush()


def _replace(f: h5py.Group, path: str, value) -> None:
    """Write ``value`` at ``path``, in place when the shape and type allow."""
    value = np.asarray(value)
    dataset = f.get(path)
    if dataset is not None and dataset.shape == value.shape and dataset.dtype == value.dtype:
        dataset[...] = value
    else:
        if dataset is not None:
            del f[path]
        dataset = f.create_dataset(path, data=value)
    _written(dataset)


def _round_records(result) -> dict[str, dict[str, np.ndarray]]:
    """A round's rows of the per-round groups, and of /metrics when it was evaluated."""
    records = {
        schema.CLIENTS: {name: np.asarray(value) for name, value in result.clients.items()},
        schema.TIMING: {schema.ROUND: np.int32(result.round),
                        **{stage + schema.SECONDS_SUFFIX: np.float64(s) for stage, s in result.seconds.items()}},
        schema.DETECTION: {schema.ROUND: np.int32(result.round),
                           **{name: np.int64(count) for name, count in result.detection.items()}},
        schema.METRICS: {},
    }
    if result.metrics:
        records[schema.METRICS] = {schema.ROUND: np.int32(result.round),
                                   **{name: np.float64(value) for name, value in result.metrics.items()}}
    return records


def _stage(staged: h5py.Group, records: dict, result) -> None:
    """Write the whole round into ``/checkpoint/next`` (in place from the
    second round on); its ``round`` mark is set by the caller once this is
    on disk."""
    staged.attrs.modify(schema.NEXT_ROUND, np.int64(0))  # what the group holds is being replaced
    for group, values in records.items():
        target = staged.require_group(group)
        for name in [n for n in target if n not in values]:
            del target[name]
        for name, value in values.items():
            _replace(target, name, value)
    _replace(staged, schema.NEXT_WEIGHTS, result.weights)
    state = staged.require_group(schema.NEXT_STATE)
    for key, arrays in result.state.items():
        for name, value in arrays.items():
            _replace(state, f"{key}/{name}", value)


def _put_row(group: h5py.Group, name: str, value: np.ndarray, index: int) -> None:
    """Row ``index`` of a per-round dataset, which then ends there (writing
    it twice gives the same file)."""
    value = np.asarray(value)
    dataset = group.get(name)
    if dataset is None:
        dataset = group.create_dataset(name, shape=(index + 1, *value.shape), dtype=value.dtype,
                                       maxshape=(None, *value.shape), chunks=True)
    if dataset.shape[0] != index + 1:
        dataset.resize(index + 1, axis=0)
    dataset[index] = value
    _written(dataset)


def _apply(f: h5py.Group, done: int, records: dict, weights, state: dict) -> None:
    """Put round ``done`` into its places: the per-round rows, the model,
    the state, ``rounds_done``.  Idempotent, so that `recover` may do it
    again after a crash."""
    for group in schema.PER_ROUND_GROUPS:
        target = f.require_group(group)
        for name, value in records[group].items():
            _put_row(target, name, value, done - 1)
    metrics = f.require_group(schema.METRICS)
    earlier = metrics[schema.ROUND][()] if schema.ROUND in metrics else np.zeros(0, np.int32)
    kept = int(np.sum(earlier < done))
    if kept < len(earlier):  # only after a crash: rows of this round or later
        for dataset in metrics.values():
            if dataset.shape[0] > kept:
                dataset.resize(kept, axis=0)
    for name, value in records[schema.METRICS].items():
        dataset = metrics.get(name)
        _put_row(metrics, name, value, kept if dataset is None else min(dataset.shape[0], kept))
    _replace(f, schema.MODEL_WEIGHTS, weights)
    every = int(f[schema.MODEL].attrs.get(schema.MODEL_SAVE_EVERY, 0))
    if every and done % every == 0:
        _save_model(f, done, weights)
    for key, arrays in state.items():
        for name, value in arrays.items():
            _replace(f, schema.state_path(key, name), value)
    f[schema.MODEL].attrs.modify(schema.MODEL_ROUND, np.int64(done))
    f.attrs.modify(schema.ROUNDS_DONE, np.int64(done))


def _save_model(f: h5py.Group, done: int, weights) -> None:
    """Keep the model after round ``done`` in `schema.SAVED_WEIGHTS` (``save
    model every K rounds``), dropping any row of this round or later first,
    so that doing it twice (`recover`) gives the same file."""
    rounds = f[schema.SAVED_ROUND][()] if schema.SAVED_ROUND in f else np.zeros(0, np.int64)
    kept = int(np.sum(rounds < done))
    saved = f.require_group(schema.SAVED)
    _put_row(saved, schema.SAVED_ROUND.rsplit("/", 1)[1], np.int64(done), kept)
    _put_row(saved, schema.SAVED_WEIGHTS.rsplit("/", 1)[1], np.asarray(weights, np.float32), kept)


def _read_staged(staged: h5py.Group) -> tuple[dict, np.ndarray, dict]:
    """The round held in ``/checkpoint/next``: records, weights, state."""
    records = {group: {name: d[()] for name, d in staged[group].items()} if group in staged else {}
               for group in (*schema.PER_ROUND_GROUPS, schema.METRICS)}
    state = {key: {name: d[()] for name, d in arrays.items()} for key, arrays in staged[schema.NEXT_STATE].items()}
    return records, staged[schema.NEXT_WEIGHTS][()], state


def recover(f: h5py.Group) -> bool:
    """Finish copying a round that was marked complete in
    ``/checkpoint/next`` when the writer stopped (a crash mid-commit).
    Returns whether there was one."""
    staged = f.get(schema.CHECKPOINT_NEXT)
    done = 0 if staged is None else int(staged.attrs.get(schema.NEXT_ROUND, 0))
    if done <= 0:
        return False
    _apply(f, done, *_read_staged(staged))
    f.file.flush()
    staged.attrs.modify(schema.NEXT_ROUND, np.int64(0))
    return True


class SweepFile:
    """One file for a whole sweep: root attribute ``kind = "sweep"``, an
    index of the points (``/index/label``, ``/index/point``,
    ``/index/status``), and each point's run in ``/runs/NNNN`` with the
    layout of a single run (`schema`).

    As for a run, ``path`` is the results file and ``location`` where it is
    written now: with ``force`` over an existing file, ``PATH.new``, which
    replaces the old file when the first point ends."""

    def __init__(self, path: str | os.PathLike, force: bool = False, resume: bool = False):
        self.path, self.claim = claim_output(path, force, resume)
        self.location = _scratch(self.path) if not resume and self.path.exists() else self.path

    @staticmethod
    def group(index: int) -> str:
        return schema.point_group(index)

    def start(self, source: str, title: str, labels: list[str], points: list[dict]) -> None:
        from fedarena import __version__

        self.location.parent.mkdir(parents=True, exist_ok=True)
        with _h5file(self.location, "w") as f:
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
            self.close()
            raise UsageError(f"{self.path} does not exist; there is nothing to resume (run without --resume)")
        reader.cover_what_was_written(self.path)  # a crash in the middle of HDF5's flush
        with reader.open_results(self.path) as f:
            if not reader.is_sweep(f) or f.attrs.get(schema.SCENARIO_SHA256) != hashlib.sha256(
                source.encode()
            ).hexdigest():
                self.close()
                raise UsageError(f"{self.path} was written by a different scenario text; resume with the same "
                                 f"file, or start anew with --force")
            return reader.point_statuses(f)

    def label(self, index: int, label: str, point: dict) -> None:
        with _h5file(self.location, "a") as f:
            group = f.require_group(self.group(index))
            group.attrs[schema.POINT_LABEL] = label
            group.attrs[schema.POINT_ASSIGNMENTS] = json.dumps(point)
            group.attrs[schema.POINT_INDEX] = index

    def mark(self, index: int, status: str) -> None:
        with _h5file(self.location, "a") as f:
            f[schema.INDEX_STATUS][index] = status
        if status not in (schema.PENDING, schema.RUNNING) and self.location != self.path:
            os.replace(self.location, self.path)  # --force: the first point has ended
            self.location = self.path

    def merge(self, index: int, run_file: Path) -> None:
        """Copy a point's own results file (from a parallel job) into its group."""
        with _h5file(self.location, "a") as f, h5py.File(run_file, "r", locking=False) as source:
            name = self.group(index)
            if name in f:
                del f[name]
            group = f.create_group(name)
            for key in source:
                source.copy(source[key], group, name=key)
            for key, value in source.attrs.items():
                group.attrs[key] = value

    def counts(self) -> dict[str, int]:
        """How many points have each status, over the whole file."""
        with reader.open_results(self.location) as f:
            statuses = reader.point_statuses(f)
        return {status: statuses.count(status) for status in schema.POINT_STATUSES}

    def finish(self, status: str) -> None:
        try:
            with _h5file(self.location, "a") as f:
                f.attrs[schema.STATUS] = status
                f.attrs[schema.FINISHED_AT] = _now()
        finally:
            self.close()

    def close(self) -> None:
        """Release the output; a ``--force`` sweep that ended no point drops
        its scratch file (the old file stays)."""
        _release(self)
