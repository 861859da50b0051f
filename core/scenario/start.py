"""``start from "FILE" [round N]``: a run whose model starts from saved weights.

Two kinds of file are accepted:

- a fedarena results file (HDF5) of a single run: one of the global models
  it holds (`fedarena.core.results.reader.stored_models`): the latest
  (``/model/weights``, after round ``rounds_done``), and with ``save model
  every K rounds`` also those after rounds K, 2K, ...  Without ``round N``
  the run starts from the latest.
- an ``.npz`` (NumPy) holding exactly one array: the model as one flat
  float vector, laid out as ``/model/weights`` (tensor by tensor, each
  flattened in C order).  It is read with ``allow_pickle=False``.

Only the global model is taken; stateful plugins start fresh.

`check_start` runs with the scenario check, without TensorFlow: the file
exists and is readable, is of one of the two kinds, holds the round asked
for, its weights are finite, and (for a results file) the model plugin, the
input shape and the classes it was trained with are the scenario's.  The
size of the vector against the model's can only be checked once the model
is built: `load_start` does it before round 1, before the results file is
written, and reports a mismatch as a scenario error at the statement.
"""

from __future__ import annotations

import hashlib
import os
import zipfile

import attrs
import numpy as np

from fedarena.core.errors import Diagnostic, ScenarioError, Span, UsageError
from fedarena.core.language import spec

RESULTS, NPZ = "results", "npz"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a member, or an empty archive


@attrs.frozen
class StartSource:
    """A checked ``start from``: the path as written and as read, the kind
    of file, and the round whose model it gives (None for an .npz)."""

    path: str
    location: str
    kind: str
    round: int | None = None
    span: Span | None = attrs.field(default=None, eq=False)


def _named(path: str) -> str:
    return f'start from "{path}"'


def check_start(statement: spec.Statement, scenario, facts, registry) -> tuple[StartSource | None, list]:
    """The checked source of a ``start from`` statement, or None, and the
    problems found as (message, span) pairs."""
    value: spec.StartFrom = statement.value
    span = statement.value_span or statement.span
    if not isinstance(value.path, str) or not value.path.strip():
        return None, [("'start from' needs the path of a results file or an .npz, got an empty string", span)]
    if value.round is not None and not (isinstance(value.round, int) and value.round >= 1):
        if isinstance(value.round, int):
            return None, [(f"{_named(value.path)}: round must be >= 1, got {value.round}", value.round_span)]
        return None, []  # the parser has reported it
    location = os.path.abspath(facts.resolve(value.path))
    shown = _named(value.path)
    try:
        with open(location, "rb") as file:
            head = file.read(8)
    except FileNotFoundError:
        return None, [(f"{shown}: no such file (a relative path is read from the scenario's folder)", span)]
    except IsADirectoryError:
        return None, [(f"{shown}: is a folder; give the path of a results file or an .npz", span)]
    except OSError as error:
        return None, [(f"{shown}: cannot be read ({error.strerror or error})", span)]
    found = None
    if head == _HDF5_SIGNATURE:
        problem, found = _check_results(location, value, scenario, facts, registry)
        kind = RESULTS
    elif head[:4] in _ZIP_SIGNATURES:
        problem, kind = _check_npz(location, value), NPZ
    else:
        problem = "not a fedarena results file (HDF5) nor an .npz of weights"
    if problem is not None:
        message, at_round = problem if isinstance(problem, tuple) else (problem, False)
        return None, [(f"{shown}: {message}", value.round_span if at_round else span)]
    return StartSource(value.path, location, kind, found, span), []


def _check_results(location: str, value: spec.StartFrom, scenario, facts, registry):
    """(problem or None, the round whose model the run starts from); a
    problem is a message, or (message, True) when it is the round's."""
    from fedarena.core.results import reader, schema

    try:
        with reader.open_results(location) as f:
            if reader.is_sweep(f):
                return f"a sweep's results file ({f.attrs.get(schema.RUNS, '?')} runs); start from the results " \
                       f"file of a single run", None
            if schema.SCENARIO not in f.attrs:
                return f"an HDF5 file, but not a fedarena results file (it has no '{schema.SCENARIO}' attribute)", None
            models = reader.stored_models(f)
            if not models:
                done = int(f.attrs.get(schema.ROUNDS_DONE, 0))
                return f"holds no model yet ({done} rounds done); start from a file whose run completed a round", None
            latest = max(models)
            chosen = latest if value.round is None else value.round
            if chosen not in models:
                return (f"round {chosen}: the file holds the model after {_rounds_text(sorted(models))} only; "
                        f"start from one of those, or run the earlier scenario with 'save model every K rounds' "
                        f"to keep more", True), None
            mismatch = _model_mismatch(f, scenario, facts, registry)
            if mismatch:
                return mismatch, None
            if not np.all(np.isfinite(models[chosen]())):
                return f"its model after round {chosen} holds NaN or infinite values", None
    except UsageError as error:
        return f"cannot be read as a results file ({error})", None
    except (OSError, KeyError, ValueError) as error:
        return f"cannot be read as a results file ({type(error).__name__}: {error})", None
    return None, chosen


def _rounds_text(rounds: list[int]) -> str:
    if len(rounds) == 1:
        return f"round {rounds[0]}"
    shown = ", ".join(map(str, rounds[:8])) + (", ..." if len(rounds) > 8 else "")
    return f"rounds {shown}"


def _describe_model(label: str, shape, classes) -> str:
    shape_text = "x".join(str(int(n)) for n in shape) if shape is not None else "inputs of unrecorded shape"
    return f"{label} on inputs {shape_text} with {classes} classes"


def _model_mismatch(f, scenario, facts, registry) -> str | None:
    """What differs between the model the file was trained with and the
    scenario's: the model plugin and its parameters, the input shape (when
    the file records it) and the number of classes."""
    from fedarena.core.results import reader, schema

    recorded = reader.plugins(f).get(schema.MODEL, {})
    theirs = reader.model_spec(f)
    same = (str(recorded.get(schema.PLUGIN_PARAMETERS)) == repr(scenario.model)
            and (theirs.input_shape is None or tuple(theirs.input_shape) == tuple(facts.input_shape))
            and theirs.num_classes == facts.num_classes)
    if same:
        return None
    label = str(recorded.get(schema.PLUGIN_LABEL) or recorded.get(schema.PLUGIN_PARAMETERS, "?"))
    return (f"its model is {_describe_model(label, theirs.input_shape, theirs.num_classes)}; this scenario's is "
            f"{_describe_model(registry.label(scenario.model), facts.input_shape, facts.num_classes)}; start from "
            f"a file of the same model, on data of the same shape and classes")


def _check_npz(location: str, value: spec.StartFrom):
    if value.round is not None:
        return ("round applies to a results file; an .npz holds one model: leave round out", True)
    try:
        array = _npz_array(location)
    except _NpzProblem as problem:
        return str(problem)
    if not np.all(np.isfinite(array)):
        return "its weights hold NaN or infinite values"
    return None


class _NpzProblem(Exception):
    pass


def _npz_array(location: str) -> np.ndarray:
    """The one array of an .npz of weights: 1-D and floating."""
    try:
        with np.load(location, allow_pickle=False) as archive:
            names = list(archive.files)
            if len(names) != 1:
                raise _NpzProblem(f"an .npz to start from holds exactly one array (the flat weights); this one holds "
                                  f"{len(names)}" + (f": {', '.join(names[:5])}" if names else ""))
            array = archive[names[0]]
    except _NpzProblem:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise _NpzProblem(f"cannot be read as an .npz ({error})") from None
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
        raise _NpzProblem(f"the array '{names[0]}' must be a 1-D float vector (the flat model weights), got "
                          f"shape {tuple(array.shape)} of {array.dtype}")
    return array


def sha256_of(location: str) -> str:
    digest = hashlib.sha256()
    with open(location, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_start(scenario, size: int) -> tuple[np.ndarray, str]:
    """The weights a run starts from (float32, ``size`` of them) and the
    SHA-256 of the file they were read from.  Raise `ScenarioError` at the
    statement when the file no longer reads as it did when checked, or
    holds a model of another size."""
    from fedarena.core.results import reader

    start: StartSource = scenario.start
    shown = _named(start.path)

    def refuse(message: str):
        return ScenarioError([Diagnostic(f"{shown}: {message}", start.span)], scenario.filename, scenario.source)

    try:
        digest = sha256_of(start.location)
        if start.kind == NPZ:
            weights = _npz_array(start.location)
        else:
            with reader.open_results(start.location) as f:
                models = reader.stored_models(f)
                if start.round not in models:
                    raise refuse(f"the file no longer holds the model after round {start.round}")
                weights = np.asarray(models[start.round]())
    except _NpzProblem as problem:
        raise refuse(str(problem)) from None
    except (OSError, UsageError, KeyError) as error:
        raise refuse(f"cannot be read ({error})") from None
    if weights.shape != (size,):
        raise refuse(f"it holds {weights.size} weights, but this scenario's model has {size}; start from "
                     f"weights of the same model")
    return np.asarray(weights, np.float32), digest
