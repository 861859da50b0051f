"""Where the downloadable datasets live on this machine, and fetching them.

Each downloadable dataset declares its `Source`: the files its standard
loader downloads (Keras' ``keras.datasets`` or TFF's
``tff.simulation.datasets``), their origin and SHA-256 where one is
published, and where the loader caches them:

- Keras: ``~/.keras/datasets`` (``keras.utils.get_file``'s cache);
- TFF: ``~/.tff`` (``tff.simulation.datasets.download``'s cache).

With the environment variable ``FEDARENA_DATA=DIR`` they are
``DIR/keras/datasets`` and ``DIR/tff`` instead (the same layout, so a copy
of ``~/.keras`` or ``~/.tff`` can be moved there).

`Source.problem` is what ``fedarena check`` says of a dataset that is not
cached and has no ``path`` (no TensorFlow import, no network);
`Source.fetch` is ``fedarena data fetch``: it downloads with the standard
loader's own download function into a temporary folder beside the cache,
checks every file (its SHA-256, or, where none is published, its contents
against the published counts), and only then moves it into place, so the
cache never holds a partial or corrupt file.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Callable

import attrs

from fedarena.core.errors import RunError

DATA_ENV = "FEDARENA_DATA"


def cache_root(loader: str) -> Path:
    """The folder a standard loader caches its downloads in: ``~/.keras``
    (Keras) or ``~/.tff`` (TFF), or ``$FEDARENA_DATA/keras`` and
    ``$FEDARENA_DATA/tff`` when that variable is set."""
    base = os.environ.get(DATA_ENV, "").strip()
    if base:
        return Path(os.path.expanduser(base)) / loader
    return Path.home() / f".{loader}"


def shown(path: Path) -> str:
    """A path as messages show it: under the home folder as ``~/...``."""
    try:
        return "~/" + Path(path).relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def sha256_of(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def size_text(size: int) -> str:
    """Bytes as a short size: 11 MB, 1.5 GB, 29 KB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} bytes"


@attrs.frozen
class RemoteFile:
    """One file a standard loader downloads."""

    name: str  # its path in the loader's cache folder: "datasets/mnist.npz"
    origin: str  # the URL the standard loader downloads it from
    sha256: str = ""  # the published checksum; "" where none is published


@attrs.frozen
class Source:
    """A dataset's download: what its standard loader fetches and where it keeps it."""

    dataset: str
    loader: str  # "keras" or "tff"
    files: tuple[RemoteFile, ...]
    size: str  # the download's size for messages ("11 MB", "about 1.5 GB")
    path_hint: str  # what the dataset's `path` takes instead ("a folder with ...")
    # For files without a published checksum: a check of the file's contents
    # that raises RunError or returns what it found, e.g. TFF's SQLite files
    # against their published counts.
    verify_contents: Callable[[Path], str] | None = None

    def paths(self) -> list[Path]:
        root = cache_root(self.loader)
        return [root / f.name for f in self.files]

    def location(self) -> Path:
        """What the dataset reads: its one file, or the folder of its files."""
        paths = self.paths()
        return paths[0] if len(paths) == 1 else paths[0].parent

    def cached(self) -> bool:
        return all(p.is_file() for p in self.paths())

    def disk_size(self) -> int:
        return sum(p.stat().st_size for p in self.paths() if p.is_file())

    def problem(self) -> str | None:
        """The check-time message for a dataset that is not cached and has no
        ``path``, or None when it is cached."""
        if self.cached():
            return None
        names = ", ".join(Path(f.name).name for f in self.files)
        return (f"dataset '{self.dataset}' is not on this machine and has no path: run "
                f"'fedarena data fetch {self.dataset}' on a machine with network (it writes {names}, "
                f"{self.size}, to {shown(self.paths()[0].parent)}), "
                f"or give path = {self.path_hint}")

    def verify(self, remote: RemoteFile, file: Path, fix: str) -> str:
        """Raise RunError unless ``file`` is the published ``remote`` (``fix``
        ends the message); returns what was checked, for the record."""
        found = sha256_of(file)
        if remote.sha256:
            if found != remote.sha256:
                raise RunError(f"{self.dataset}: {shown(file)} has SHA-256 {found}, but the published "
                               f"{Path(remote.name).name} has {remote.sha256}; {fix}")
            return f"SHA-256 {found}, as published"
        contents = self.verify_contents(file) if self.verify_contents is not None else ""
        return f"SHA-256 {found}; no checksum is published" + (f"; contents checked: {contents}" if contents else "")

    def fetch(self, say: Callable[[str], None] = print) -> list[Path]:
        """Download every file that is not cached (or fails its check), with
        the standard loader's download function; checked, then moved into
        place.  Returns the cached files."""
        root = cache_root(self.loader)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunError(f"{self.dataset}: cannot create the cache folder {root}: {error.strerror or error}; "
                           f"set {DATA_ENV} to a folder you can write to") from error
        for remote, final in zip(self.files, self.paths()):
            if final.is_file():
                try:
                    record = self.verify(remote, final, "it is corrupt or not the published file")
                    say(f"{self.dataset}: {shown(final)} is already here ({record})")
                    continue
                except RunError as error:
                    say(f"{self.dataset}: {shown(final)} fails its check ({error}); downloading it again")
            with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as scratch:
                say(f"{self.dataset}: downloading {remote.origin}")
                try:
                    got = Path(DOWNLOAD[self.loader](remote, Path(scratch)))
                except Exception as error:  # network, HTTP or decompression failures, whatever their type
                    raise RunError(
                        f"{self.dataset}: cannot download {remote.origin} ({type(error).__name__}: {error}); "
                        f"without network, run 'fedarena data fetch {self.dataset}' on a machine that has it and "
                        f"copy {shown(final)} to the same place on this one, or give the dataset a path"
                    ) from error
                record = self.verify(remote, got, "the download is corrupt (nothing was kept): try again")
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(got, final)
            say(f"{self.dataset}: wrote {shown(final)} ({size_text(final.stat().st_size)}; {record})")
        return self.paths()

    def ensure(self) -> Path:
        """The location to read, fetched first when it is not cached (a run
        that was checked finds it cached; the Python API may not); a cached
        file with a published checksum is checked against it."""
        if not self.cached():
            self.fetch(say=lambda line: None)
        for remote, file in zip(self.files, self.paths()):
            if not remote.sha256:
                continue  # contents without a checksum are checked as they are read
            self.verify(remote, file, f"it is corrupt or not the published file: run "
                                      f"'fedarena data fetch {self.dataset}' to download it again")
        return self.location()


# --------------------------------------------------------------------------
# The standard loaders' download functions, by loader.  Tests replace these
# (`DOWNLOAD["keras"] = ...`) to run without network.


def _keras_download(remote: RemoteFile, folder: Path) -> Path:
    """Keras' ``get_file``, as ``keras.datasets`` calls it, into ``folder``."""
    from fedarena.plugins import _tf as tf

    return Path(tf.keras.utils.get_file(
        fname=Path(remote.name).name, origin=remote.origin, file_hash=remote.sha256 or None,
        hash_algorithm="sha256", cache_dir=str(folder), cache_subdir="",
    ))


def _tff_download(remote: RemoteFile, folder: Path) -> Path:
    """TFF's ``download.get_compressed_file`` (an ``.lzma`` file unpacked on
    the fly), as ``tff.simulation.datasets`` calls it, into ``folder``."""
    from tensorflow_federated.python.simulation.datasets import download

    return Path(download.get_compressed_file(origin=remote.origin, cache_dir=str(folder)))


DOWNLOAD: dict[str, Callable[[RemoteFile, Path], Path]] = {"keras": _keras_download, "tff": _tff_download}


# --------------------------------------------------------------------------
# TFF's SQLite files: no checksum is published, so a download is checked
# against the counts TFF's documentation gives.


def tff_sqlite_check(dataset: str, splits: dict[str, tuple[int, int]]) -> Callable[[Path], str]:
    """A check that a file is in TFF's SQLite layout (tables ``examples``
    and ``client_metadata``) with every split of ``{split_name: (clients,
    examples)}`` present; returns what it found against those published
    counts, for the record (a difference is reported, not refused)."""

    def verify(file: Path) -> str:
        notes = []
        try:
            with sqlite3.connect(f"file:{file}?mode=ro", uri=True) as connection:
                tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
                if not {"examples", "client_metadata"} <= tables:
                    raise RunError(f"{dataset}: {shown(file)} has tables {sorted(tables)}; TFF's layout has "
                                   "examples and client_metadata")
                for split, published in splits.items():
                    found = tuple(connection.execute(
                        "SELECT COUNT(DISTINCT client_id), COALESCE(SUM(num_examples), 0) FROM client_metadata "
                        "WHERE split_name = ?", (split,)).fetchone())
                    if found[0] == 0:
                        raise RunError(f"{dataset}: {shown(file)} has no clients in its split {split}")
                    same = "as published" if found == published else f"TFF publishes {published[0]} and {published[1]}"
                    notes.append(f"{split}: {found[0]} clients, {found[1]} examples ({same})")
        except sqlite3.Error as error:
            raise RunError(f"{dataset}: {shown(file)} is not a readable SQLite database: {error}") from error
        return "; ".join(notes)

    return verify
