"""``npz``: one's own arrays, from a NumPy ``.npz`` file.

Source: the user's file, as ``np.savez(path, x_train=..., y_train=...,
x_test=..., y_test=...)`` writes it, with optionally ``writers_train``:
each training sample's writer (integers or strings), which makes its
natural clients available to the ``natural`` split.  Nothing else may be
in the file (a misspelt name is an error, not ignored).

Preprocessing: none beyond types: features are cast to float32 as they are
(scale them beforehand, e.g. uint8 pixels by 1/255), labels to int32;
writers become indices 0 .. W - 1 in sorted order of their values.  The
file is read with ``allow_pickle=False``: it cannot run code.

Checked with the scenario, before anything runs, from the file's array
headers and labels alone: every array present, of a numeric type (labels
and writers integers), features of one shape with one label (and writer)
per sample, labels at least 0 and below ``classes``.  The input shape and
the number of classes come from the file.
"""

from __future__ import annotations

import functools
import os
import zipfile
from pathlib import Path

import attrs
import numpy as np

from fedarena.core.errors import RunError
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Dataset, DatasetArrays, DatasetInfo
from fedarena.core.plugin.params import param
from fedarena.plugins.datasets._writers import FederatedArrays, WriterLabels

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
WRITERS = "writers_train"
_SAVE = "save it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"


@attrs.frozen
class Layout:
    """What the scenario check learns of an .npz file without loading its features."""

    input_shape: tuple[int, ...]
    num_classes: int
    has_writers: bool


def _header(archive: zipfile.ZipFile, file: Path, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of one array, from its .npy header alone."""
    with archive.open(name + ".npy") as stream:
        try:
            version = np.lib.format.read_magic(stream)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"format version {version[0]}.{version[1]}")
            shape, _, dtype = read(stream)
        except ValueError as error:
            raise RunError(f"npz: {file}: {name} is not a readable .npy array ({error}); {_SAVE}") from error
    return tuple(shape), np.dtype(dtype)


def _kind_problem(name: str, dtype: np.dtype, kinds: str) -> str | None:
    if dtype.kind in kinds:
        return None
    if dtype.kind == "O":
        return (f"{name} holds Python objects (dtype object), which are not loaded (allow_pickle is off so "
                "that a file cannot run code); save it as an array of numbers")
    wanted = "integers" if kinds == "iu" else ("integers or strings" if "U" in kinds else "numbers")
    return f"{name} has dtype {dtype}; it must hold {wanted} (convert it with .astype(...))"


@functools.lru_cache(maxsize=8)
def _layout(file: str, mtime_ns: int, size: int, classes: int) -> Layout:
    path = Path(file)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise RunError(f"npz: {path} is not an .npz archive ({error}); {_SAVE}") from error
    with archive:
        names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        missing = [name for name in REQUIRED if name not in names]
        if missing:
            raise RunError(f"npz: {path} has no {', '.join(missing)} (it holds {', '.join(names) or 'nothing'}); "
                           f"{_SAVE}")
        unknown = [name for name in names if name not in REQUIRED + (WRITERS,)]
        if unknown:
            raise RunError(f"npz: {path} holds {', '.join(unknown)}, which npz does not read; the arrays are "
                           f"{', '.join(REQUIRED)} and optionally {WRITERS}")
        headers = {name: _header(archive, path, name) for name in names}
    problems = []
    for name in names:
        kinds = "fiu" if name.startswith("x_") else ("iuUS" if name == WRITERS else "iu")
        problem = _kind_problem(name, headers[name][1], kinds)
        if problem:
            problems.append(problem)
    for split in ("train", "test"):
        x_shape, y_shape = headers[f"x_{split}"][0], headers[f"y_{split}"][0]
        if len(x_shape) < 2 or x_shape[0] == 0:
            problems.append(f"x_{split} has shape {x_shape}; it must be [samples, ...features] with at least "
                            "one sample")
        if y_shape not in ((x_shape[:1]), (x_shape[:1] + (1,))):
            problems.append(f"y_{split} has shape {y_shape} for x_{split} of shape {x_shape}; it must hold one "
                            f"label per sample, shape ({x_shape[0] if x_shape else 'n'},)")
    if headers["x_train"][0][1:] != headers["x_test"][0][1:]:
        problems.append(f"x_train has samples of shape {headers['x_train'][0][1:]} but x_test of shape "
                        f"{headers['x_test'][0][1:]}; they must be the same")
    if WRITERS in headers and headers[WRITERS][0] != headers["y_train"][0][:1]:
        problems.append(f"{WRITERS} has shape {headers[WRITERS][0]}; it must hold one writer per training "
                        f"sample, shape ({headers['y_train'][0][0]},)")
    if problems:
        raise RunError(f"npz: {path}: " + "; ".join(problems))
    largest = -1
    with np.load(path, allow_pickle=False) as arrays:
        for name in ("y_train", "y_test"):
            labels = arrays[name]
            if labels.size and labels.min() < 0:
                raise RunError(f"npz: {path}: {name} has the label {labels.min()}; labels are class indices "
                               "0, 1, 2, ...")
            largest = max(largest, int(labels.max()) if labels.size else -1)
    if classes and largest >= classes:
        raise RunError(f"npz: {path}: labels go up to {largest}, but classes = {classes}; set classes to at least "
                       f"{largest + 1} (or 0 to take it from the labels)")
    return Layout(input_shape=tuple(int(s) for s in headers["x_train"][0][1:]),
                  num_classes=classes or largest + 1, has_writers=WRITERS in headers)


@attrs.frozen
class Npz(Dataset):
    """One's own arrays from an .npz file: x_train, y_train, x_test, y_test, optionally writers_train.

    Features are used as they are (cast to float32), labels are class
    indices.  ``writers_train`` (one writer per training sample, integers
    or strings) gives the ``natural`` split its clients.  The file is read
    with ``allow_pickle=False``; its arrays' types and shapes are checked
    with the scenario."""

    paper = "none (the user's own data)"

    path: str = param(doc=".npz file with x_train, y_train, x_test, y_test and optionally writers_train")
    classes: int = param(0, ge=0, doc="number of classes; 0: the largest label + 1")

    def layout(self) -> Layout:
        file = Path(os.path.expanduser(self.path))
        if not file.is_file():
            what = "is a folder, not a file" if file.is_dir() else "does not exist"
            raise RunError(f"npz: {file} {what}; give path = an .npz file ({_SAVE})")
        stat = file.stat()
        return _layout(str(file), stat.st_mtime_ns, stat.st_size, self.classes)

    def info(self) -> DatasetInfo:
        layout = self.layout()
        return DatasetInfo(num_classes=layout.num_classes, input_shape=layout.input_shape,
                           has_writers=layout.has_writers)

    def load(self, seed: int) -> DatasetArrays:
        info = self.info()
        file = Path(os.path.expanduser(self.path))
        with np.load(file, allow_pickle=False) as arrays:
            loaded = {name: arrays[name] for name in arrays.files}
        features = {}
        for name in ("x_train", "x_test"):
            x = loaded[name].astype(np.float32)
            if not np.isfinite(x).all():
                raise RunError(f"npz: {file}: {name} has values that are not finite (NaN or infinity)")
            features[name] = x
        train_y = loaded["y_train"].reshape(-1).astype(np.int32)
        test_y = loaded["y_test"].reshape(-1).astype(np.int32)
        if WRITERS not in loaded:
            return DatasetArrays(train_x=features["x_train"], train_y=train_y, test_x=features["x_test"],
                                 test_y=test_y, info=info)
        names, writers = np.unique(loaded[WRITERS], return_inverse=True)
        writers = writers.reshape(-1).astype(np.int32)
        names = tuple(str(n) for n in names)
        return FederatedArrays(
            train_x=features["x_train"], train_y=WriterLabels(train_y, writers, names), test_x=features["x_test"],
            test_y=test_y, info=info, train_writers=writers, test_writers=np.full(len(test_y), -1, np.int32),
            writer_names=names,
        )


@hookimpl
def fedarena_register_datasets(registry):
    registry.add("npz", Npz)
