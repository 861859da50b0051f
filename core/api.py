"""fedarena from Python: scenarios, runs, results and plugins on plain arrays.

The top layer of the core, above the command (`fedarena.core.cli`), and
re-exported by the root package, so a notebook reads::

    import fedarena

    scenario = fedarena.load("scenarios/quickstart.fls").evolve(rounds=5, aggregator="median")
    results = fedarena.run(scenario, output="results/median.h5")
    results.metrics            # a long-form pandas DataFrame

    out = fedarena.apply("krum(f = 1)", updates)   # one aggregator on an [n, d] NumPy matrix
    out.aggregate, out.shares

Nothing here is a second implementation of what the core does: `load` reads
and checks scenarios as ``fedarena run`` and ``check`` do (the same
`ScenarioError`, the same message); `Scenario.evolve` and `Scenario.sweep`
edit the spec tree through the sweep machinery
(`fedarena.core.scenario.sweep.expand`) and write it back as ``.fls`` text
through the formatter; `run` calls the runner as the command does;
`Results` delegates to `fedarena.core.results.frames` and
`fedarena.core.results.report`; `apply` runs a plugin through the server
stage's own plumbing (`aggregate_kept`, `detect_on_kept`) on a context made
by `fedarena.core.testing.make_server_context`.  docs/api.md is the guide.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import re
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import attrs
import numpy as np

from fedarena.core.errors import Diagnostic, RunError, ScenarioError, Span, UsageError
from fedarena.core.language import spec
from fedarena.core.language.fmt import format_text, render_value
from fedarena.core.language.parser import parse
from fedarena.core.plugin.interfaces import Layer, Plugin
from fedarena.core.scenario.check import Checker, did_you_mean
from fedarena.core.scenario.sweep import SweepPoint, check_points, expand

__all__ = ["Scenario", "Point", "Results", "Plot", "Applied", "load", "run", "open_results", "apply"]

# The kinds `apply` runs, in the order a name is looked up.
APPLY_KINDS = ("aggregator", "detector", "attack")
# Where a value or path given in Python is shown in an error (it has no file).
EVOLVE_SOURCE = "<evolve>"
SWEEP_SOURCE = "<sweep>"
PLUGIN_SOURCE = "<plugin>"
_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[A-Za-z_]\w*\])*\Z")


# --------------------------------------------------------------------------
# Registry.

_warned: set[str] = set()


def _registry(registry=None):
    """The registry given, or the default one (its load errors warned once,
    as the command prints them)."""
    if registry is not None:
        return registry
    from fedarena.core.plugin.registry import default_registry

    registry = default_registry()
    for problem in registry.load_errors:
        if problem not in _warned:
            _warned.add(problem)
            warnings.warn(problem, stacklevel=3)
    return registry


# --------------------------------------------------------------------------
# Python values as scenario text.


def _parsed_values(text: str) -> tuple | None:
    """The values of ``[text]`` read as a sweep line, or None if it does not parse."""
    try:
        parsed = parse(f'scenario "" {{}}\nsweep {{\n  x in [{text}]\n}}\n')
    except ScenarioError:
        return None
    axes = parsed.sweep.axes if parsed.sweep else ()
    return axes[0].values if len(axes) == 1 else None


def _spec_value(value: Any) -> Any:
    """A Python value as a value of the language's spec (lists as tuples,
    ``("krum", {"f": 1})`` as a call); strings stay strings."""
    if isinstance(value, (spec.Call, spec.Percent, spec.Range, spec.Every, str, bool)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise TypeError(f"a scenario cannot hold the number {value}")
        return float(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple, range)):
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], Mapping):
            name, params = value
            return spec.Call(name, tuple(spec.Arg(str(k), _spec_value(v)) for k, v in params.items()))
        return tuple(_spec_value(v) for v in value)
    raise TypeError(f"a scenario cannot hold {type(value).__name__} values ({value!r})")


def _value_text(value: Any, root: str) -> str:
    """A Python value as scenario text.  A string is read as scenario text
    (``"median"``, ``"krum(f = 2)"``, ``"20%"``, ``"every 2"``) when it is
    one value of the language, and is a string otherwise; for ``output`` it
    is always the path it names."""
    if isinstance(value, str) and root != "output":
        flat = " ".join(value.split())
        values = _parsed_values(flat) if flat else None
        if values is not None and len(values) == 1:
            return flat
    return render_value(_spec_value(value))


def _choices_text(values: Any, root: str) -> str:
    """What follows ``in`` on a sweep line: ``[a, b]`` for a list, the text
    itself for a string (``"1..3"``, ``"[fedavg, median]"``)."""
    if isinstance(values, str):
        return " ".join(values.split())
    if isinstance(values, (list, tuple, range, np.ndarray)) and not (
            isinstance(values, tuple) and len(values) == 2 and isinstance(values[1], Mapping)):
        return "[" + ", ".join(_value_text(v, root) for v in values) + "]"
    raise TypeError(f"a sweep line takes a list of values (or a range such as '1..3'), got {values!r}")


# --------------------------------------------------------------------------
# Changes given in Python, as lines of a sweep the language reads.


@attrs.frozen
class _Lines:
    """Changes given as ``path = value`` (evolve) or ``path in [...]``
    (sweep), read by the language as the lines of a sweep placed after the
    base scenario's last line, so that every span they carry tells them
    apart from the base's and maps back to what the user wrote (`shown`)."""

    paths: tuple[str, ...]
    texts: tuple[str, ...]  # what follows "in" on each line
    evolve: bool
    first_line: int  # the line number of the first change in the parsed text

    @property
    def source_name(self) -> str:
        return EVOLVE_SOURCE if self.evolve else SWEEP_SOURCE

    @property
    def shown(self) -> str:
        if self.evolve:  # "path in [value]" shown as "path = value"
            return "\n".join(f"{p} = {t[1:-1]}" for p, t in zip(self.paths, self.texts))
        return "\n".join(f"{p} in {t}" for p, t in zip(self.paths, self.texts))

    def owns(self, span: Span | None) -> bool:
        return span is not None and self.first_line <= span.line < self.first_line + len(self.paths)

    def _column(self, row: int, column: int) -> int:
        if not self.evolve:
            return column
        path = len(self.paths[row])
        if column <= path + 1:
            return column
        return max(path + 2, column - 2)  # " in [" is two characters longer than " = "

    def map_span(self, span: Span | None) -> Span | None:
        if not self.owns(span):
            return None
        row = span.line - self.first_line
        end_line = end_column = None
        if span.end_line is not None and self.owns(Span(span.end_line, 1)):
            end_line = span.end_line - self.first_line + 1
            end_column = self._column(span.end_line - self.first_line, span.end_column or 1)
        return Span(row + 1, self._column(row, span.column), end_line, end_column)

    def error(self, diagnostics: Iterable[Diagnostic]) -> ScenarioError:
        """The problems, pointing at the changes as the user gave them."""
        return ScenarioError([Diagnostic(self._reword(d.message), self.map_span(d.span)) for d in diagnostics],
                             self.source_name, self.shown)

    def _reword(self, message: str) -> str:
        if not self.evolve:
            return message
        message = re.sub(r"^the sweep sets '([^']*)' twice \(first on line (\d+)\)",
                         r"'\1' is set by the scenario's sweep (line \2): change that line with .sweep(...)", message)
        for old, new in (("unknown sweep path", "unknown path"), ("sweeping the ", "setting the "),
                         ("; sweep it as a whole: '", "; set it as a whole: '"), ("' in [...]'", " = ...'"),
                         ("sweep one training setting at a time: 'training.SETTING in [...]'",
                          "set one training setting at a time: 'training.SETTING = ...'"),
                         ("cannot be swept in it", "cannot be set in it"),
                         ("the scenario has no attack to sweep", "the scenario has no attack"),
                         ("the scenario has no detector to sweep", "the scenario has no detector"),
                         ("the scenario has no 'split' statement to sweep", "the scenario has no 'split' statement"),
                         ("whose parameters to sweep", "whose parameters to set")):
            message = message.replace(old, new)
        return message


def _read_lines(changes: Mapping[str, Any], evolve: bool, after_line: int) -> tuple[_Lines, tuple[spec.Axis, ...]]:
    """The changes as sweep axes of the language, placed after line
    ``after_line``; a path or value that does not read raises
    `ScenarioError` pointing at it."""
    paths, texts = [], []
    for path, value in changes.items():
        path = str(path).strip()
        root = re.match(r"[A-Za-z_]\w*", path)
        root = root.group(0) if root else ""
        paths.append(path)
        try:
            texts.append("[" + _value_text(value, root) + "]" if evolve else _choices_text(value, root))
        except TypeError as error:
            texts.append("[]")
            lines = _Lines(tuple(paths), tuple(texts), evolve, 1)
            raise lines.error([Diagnostic(f"'{path}': {error}", Span(len(paths), 1))]) from None
    first = after_line + 3
    lines = _Lines(tuple(paths), tuple(texts), evolve, first)
    bad = [Diagnostic(f"'{p}' is not a path (such as aggregator, aggregator.f, attack[label_flip].clients, "
                      f"training.local_epochs)", Span(first + i, 1)) for i, p in enumerate(paths) if not _PATH.match(p)]
    if bad:
        raise lines.error(bad)
    text = "\n" * after_line + 'scenario "" {}\nsweep {\n' + "\n".join(
        f"{p} in {t}" for p, t in zip(paths, texts)) + "\n}\n"
    try:
        parsed = parse(text, lines.source_name)
    except ScenarioError as error:
        raise lines.error(error.diagnostics) from None
    axes = parsed.sweep.axes if parsed.sweep else ()
    if len(axes) != len(paths):
        raise lines.error([Diagnostic("cannot read these changes", None)])
    return lines, axes


# --------------------------------------------------------------------------
# The spec tree as .fls text.


def _statement_text(statement: spec.Statement) -> str:
    keyword, value = statement.keyword, statement.value
    if keyword == "evaluate":
        return f"evaluate every {render_value(value)} rounds"
    if keyword == "save":
        return f"save model every {render_value(value)} rounds"
    if keyword == "split":
        call, count = value
        return f"split {render_value(call)} over {render_value(count)} clients"
    if keyword == "training":
        return "training { " + " ".join(_setting_text(s) for s in value) + " }"
    if keyword == "attack":
        settings = " ".join(_setting_text(s) for s in value.settings)
        return f"attack {render_value(value.call)}" + (f" {{ {settings} }}" if settings else "")
    if keyword == "start":
        at = f" round {render_value(value.round)}" if value.round is not None else ""
        return f"start from {render_value(value.path)}{at}"
    return f"{keyword} {render_value(value)}"


def _setting_text(setting: spec.Setting) -> str:
    if setting.name == "present" and isinstance(setting.value, spec.Every):
        every = setting.value.k
        return "present every round" if every == 1 else f"present every {render_value(every)} rounds"
    return f"{setting.name} {render_value(setting.value)}"


def spec_text(scenario: spec.ScenarioSpec) -> str:
    """A spec tree as ``.fls`` text in the canonical layout (`format_text`).
    Comments are not part of the tree, so they are not kept."""
    lines = [f"scenario {render_value(scenario.title)} {{"]
    lines += [f"  {_statement_text(s)}" for s in scenario.statements]
    lines.append("}")
    if scenario.sweep is not None:
        lines.append("sweep {")
        lines += [f"  {a.path} in [{', '.join(render_value(v) for v in a.values)}]" for a in scenario.sweep.axes]
        lines.append("}")
    return format_text("\n".join(lines) + "\n", scenario.filename)


# --------------------------------------------------------------------------
# Scenarios.


@attrs.frozen
class Point:
    """One run of a scenario: its place in the sweep (index 0 and an empty
    label for a scenario without one) and the checked core scenario
    (`fedarena.core.scenario.check.Scenario`: plugins and settings)."""

    index: int
    label: str
    assignments: dict = attrs.field(repr=False)
    checked: Any = attrs.field(repr=False)


class Scenario:
    """A checked scenario, or a sweep that knows every point of its grid.

    Made by `load`, `Scenario.evolve`, `Scenario.sweep` and
    `Scenario.point`; immutable (each of those returns a new one).
    ``text`` is its ``.fls`` text: the file as it was read for a loaded
    scenario, the formatter's canonical layout for a derived one."""

    __slots__ = ("_text", "_spec", "_points", "_registry", "_path")

    def __init__(self, text: str, parsed: spec.ScenarioSpec, points: list[tuple[SweepPoint, Any]], registry,
                 path: Path | None = None):
        self._text, self._spec, self._points, self._registry, self._path = text, parsed, points, registry, path

    @classmethod
    def _of_text(cls, text: str, filename: str, registry, path: Path | None = None) -> "Scenario":
        parsed = parse(text, filename)
        return cls(text, parsed, check_points(parsed, registry), registry, path)

    # What it is.

    @property
    def text(self) -> str:
        """The scenario as ``.fls`` text."""
        return self._text

    @property
    def spec(self) -> spec.ScenarioSpec:
        """The parsed spec tree (`fedarena.core.language.spec.ScenarioSpec`)."""
        return self._spec

    @property
    def filename(self) -> str:
        """The file it was read from (``<scenario>`` for text), which its
        messages name and from which relative paths in plugin parameters are
        read."""
        return self._spec.filename

    @property
    def title(self) -> str:
        return self._spec.title

    @property
    def is_sweep(self) -> bool:
        return self._spec.sweep is not None

    @property
    def points(self) -> tuple[Point, ...]:
        """Every run, in grid order (one for a scenario without a sweep)."""
        return tuple(Point(p.index, p.label, dict(p.assignments), s) for p, s in self._points)

    @property
    def axes(self) -> dict[str, list[str]]:
        """A sweep's lines: path -> the values as scenario text, in order."""
        if self._spec.sweep is None:
            return {}
        return {a.path: [render_value(v) for v in a.values] for a in self._spec.sweep.axes}

    @property
    def checked(self):
        """The checked core scenario (`fedarena.core.scenario.check.Scenario`)
        of a scenario without a sweep; a sweep has one per point (`points`)."""
        if self.is_sweep:
            raise UsageError(f"'{self.title}' is a sweep of {len(self._points)} runs; each point has its own "
                             f"checked scenario: .points[i].checked, or .point(i)")
        return self._points[0][1]

    @property
    def output(self) -> str:
        """The results file it writes unless `run` is given another."""
        return self._points[0][1].output

    def __len__(self) -> int:
        return len(self._points)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        if self.is_sweep:
            axes = ", ".join(f"{path} x{len(values)}" for path, values in self.axes.items())
            return f"<fedarena.Scenario {self.title!r}: a sweep of {len(self._points)} runs ({axes})>"
        s = self.checked
        attackers = sum(g.num_clients for g in s.attacks)
        return (f"<fedarena.Scenario {self.title!r}: {s.rounds} rounds, {s.num_clients} clients, "
                f"{attackers} attackers, aggregator {self._registry.label(s.aggregator)}>")

    # New scenarios from this one.

    def evolve(self, changes: Mapping[str, Any] | None = None, /, **more: Any) -> "Scenario":
        """A new scenario with the values at the given paths changed.

        Paths are those of sweep lines (docs/language.md): ``rounds``,
        ``seed``, ``output``, ``aggregator`` (the plugin) or ``aggregator.f``
        (a parameter), ``training.local_epochs``,
        ``attack[label_flip].clients``, ``attack.clients`` when there is one
        attack, ``attack[backdoor].trigger.size``...  Paths that are not
        Python names go in a dict: ``evolve({"attack.clients": 4})`` or
        ``evolve(**{"attack.clients": 4})``.  A string value is read as
        scenario text when it is one (``"median"``, ``"krum(f = 2)"``,
        ``"20%"``); lists, numbers and booleans are themselves.  The result
        is checked; a bad path or value raises `ScenarioError` pointing at
        it.  Comments of the text are not kept.  ``output``, a path given
        from Python, is taken from the working directory (as ``run``'s is);
        the text then names it from the scenario file's folder, where an
        ``output`` statement is read from."""
        given = {**(changes or {}), **more}
        if not given:
            return self
        if isinstance(given.get("output"), (str, os.PathLike)):
            given["output"] = self._from_scenario_folder(given["output"])
        lines, axes = _read_lines(given, evolve=True, after_line=self._line_count())
        base = attrs.evolve(self._spec, sweep=None, point=())
        if self._spec.sweep is not None:  # a path the sweep sets is changed there, not here
            probe = tuple(attrs.evolve(a, values=a.values[:1], value_spans=a.value_spans[:1])
                          for a in self._spec.sweep.axes)
            try:
                expand(attrs.evolve(base, sweep=spec.Sweep(probe + tuple(axes))))
            except ScenarioError as error:
                raise lines.error([d for d in error.diagnostics if lines.owns(d.span)] or error.diagnostics) from None

        def edited() -> spec.ScenarioSpec:
            point = expand(attrs.evolve(base, sweep=spec.Sweep(axes)))[0]
            return attrs.evolve(self._spec, statements=point.spec.statements)

        def validate() -> None:  # the same changes checked where their spans still point at them
            whole = (self._spec.sweep.axes if self._spec.sweep else ()) + tuple(axes)
            check_points(attrs.evolve(base, sweep=spec.Sweep(whole)), self._registry)

        return self._derive(edited, validate, lines)

    def _from_scenario_folder(self, path: str | os.PathLike) -> str:
        """A path taken from the working directory, written as the scenario
        file's folder sees it (unchanged for a scenario without a file)."""
        path = os.path.expanduser(os.fspath(path))
        if os.path.isabs(path) or self.filename == "<scenario>":
            return path
        return os.path.relpath(os.path.abspath(path), os.path.abspath(Path(self.filename).parent))

    def sweep(self, axes: Mapping[str, Any] | None = None, /, **more: Any) -> "Scenario":
        """A sweep over this scenario: ``sweep(aggregator=["fedavg", "median"],
        seed=[1, 2, 3])`` (or a string such as ``"1..3"``).  On a sweep, a
        line for a path it already sweeps replaces that line and the others
        are added after its lines.  Values read as in `evolve`."""
        given = {**(axes or {}), **more}
        if not given:
            return self
        lines, new = _read_lines(given, evolve=False, after_line=self._line_count())
        old = list(self._spec.sweep.axes) if self._spec.sweep else []
        for axis in new:
            at = next((i for i, a in enumerate(old) if a.path == axis.path), None)
            if at is None:
                old.append(axis)
            else:
                old[at] = axis
        merged = attrs.evolve(self._spec, sweep=spec.Sweep(tuple(old), self._spec.sweep.span if self._spec.sweep
                                                            else None), point=())

        def validate() -> None:
            check_points(merged, self._registry)

        return self._derive(lambda: merged, validate, lines)

    def point(self, index: int) -> "Scenario":
        """Point ``index`` of a sweep as a scenario of its own (its values put
        in place, no sweep); a scenario without a sweep is its own point 0."""
        if not -len(self._points) <= index < len(self._points):
            raise IndexError(f"'{self.title}' has points 0..{len(self._points) - 1}")
        if not self.is_sweep:
            return self
        point_spec = attrs.evolve(self._points[index][0].spec, point=())
        return Scenario._of_text(spec_text(point_spec), self.filename, self._registry)

    def _line_count(self) -> int:
        return self._text.count("\n") + 1

    def _derive(self, edited, validate, lines: _Lines) -> "Scenario":
        """The scenario of ``edited()`` written as text and checked; on a
        problem, ``validate()`` checks the same changes where they still
        point at the paths and values given, for a message that does."""
        try:
            text = spec_text(edited())
            return Scenario._of_text(text, self.filename, self._registry)
        except ScenarioError as problem:
            try:
                validate()
            except ScenarioError as error:
                if all(lines.owns(d.span) for d in error.diagnostics):
                    raise lines.error(error.diagnostics) from None
            raise ScenarioError(problem.diagnostics, f"{problem.filename} (evolved)", problem.source) from None

    # Output.

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ``.fls`` text to ``path``; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self._text, encoding="utf-8")
        return path

    def run(self, output: str | os.PathLike | None = None, **options: Any) -> "Results":
        """`run` this scenario (same options)."""
        return run(self, output, **options)


def _is_path(source) -> bool:
    if isinstance(source, os.PathLike):
        return True
    return isinstance(source, str) and "\n" not in source and "{" not in source


def load(source: str | os.PathLike | Scenario, *, registry=None) -> Scenario:
    """A checked `Scenario` from a ``.fls`` file's path or from scenario text.

    Raises what ``fedarena run`` and ``fedarena check`` report, as the same
    objects: `ScenarioError` (``str()`` is the command's message, with the
    place and a caret) or `UsageError` (no such file, not UTF-8).
    ``registry``: plugins to resolve names with (default: the built-in and
    installed ones)."""
    if isinstance(source, Scenario):
        return source
    registry = _registry(registry)
    if _is_path(source):
        from fedarena.core.cli.main import read_scenario

        parsed = read_scenario(str(source))
        return Scenario(parsed.source, parsed, check_points(parsed, registry), registry, Path(source))
    return Scenario._of_text(str(source), "<scenario>", registry)


# --------------------------------------------------------------------------
# Running.


def _backend_options(function, backend: str | None, workers: list[str] | None) -> dict:
    """``backend=`` for the runner, the way the command chooses it, when the
    runner takes one."""
    if "backend" not in inspect.signature(function).parameters:
        if backend not in (None, "auto"):
            raise UsageError(f"backend {backend!r}: this fedarena's runner has no backend choice")
        return {}
    try:
        from fedarena.core.execution.backends.choice import check_combination, requested_backend
    except ImportError:  # pragma: no cover - a runner with a backend keyword but no choice module
        return {} if backend is None else {"backend": backend}
    chosen = requested_backend(backend)
    check_combination(chosen, workers)
    return {"backend": chosen}


@contextlib.contextmanager
def _scenario_file(scenario: Scenario, needed: bool):
    """A ``.fls`` file holding the scenario's text, for the child processes
    of ``jobs`` > 1 (they read the scenario from a file): the file it was
    loaded from while it still holds that text, else a hidden file beside it
    (relative paths in it read from the same folder), removed afterwards."""
    if not needed:
        yield scenario.filename
        return
    if scenario._path is not None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if scenario._path.read_text(encoding="utf-8") == scenario.text:
                yield str(scenario._path)
                return
    folder = Path(scenario.filename).parent if scenario.filename != "<scenario>" else Path(".")
    try:
        handle = tempfile.NamedTemporaryFile("w", suffix=".fls", prefix=".fedarena-", dir=folder, delete=False,
                                             encoding="utf-8")
    except OSError:
        handle = tempfile.NamedTemporaryFile("w", suffix=".fls", prefix="fedarena-", delete=False, encoding="utf-8")
    try:
        with handle:
            handle.write(scenario.text)
        yield handle.name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)


def _handled():
    """Ctrl-C stops a run between rounds, as in the command (signal handlers
    can only be installed from the main thread)."""
    from fedarena.core.execution import interrupts

    if threading.current_thread() is threading.main_thread():
        return interrupts.handled()
    return contextlib.nullcontext()


PROGRESS = {"auto": None, "bar": True, "none": False, True: True, False: False, None: None}


def run(scenario: Scenario | str | os.PathLike, output: str | os.PathLike | None = None, *,
        backend: str | None = None, jobs: int = 1, workers: str | list[str] | None = None,
        progress: str | bool = "auto", force: bool = False, resume: bool = False, registry=None) -> "Results":
    """Run a scenario (every point of a sweep) as ``fedarena run`` does and
    return its results (`open_results`).

    ``scenario``: a `Scenario`, or what `load` takes.  The options are the
    command's: ``output`` (``-o``; default the scenario's ``output``),
    ``backend`` (``auto``, ``local`` or ``worker``; default
    ``FEDARENA_BACKEND`` or auto), ``jobs`` (sweep points at once),
    ``workers`` (``"HOST:PORT,..."`` or a list), ``progress`` (``"auto"``:
    a bar on a terminal, ``"bar"``, ``"none"``), ``force`` (overwrite) and
    ``resume`` (continue an interrupted file).  Raises `RunError` when the
    run fails, or when any point of a sweep failed (the others are in the
    file); Ctrl-C stops it between rounds with ``KeyboardInterrupt``, the
    file keeping every completed round."""
    scenario = load(scenario, registry=registry)
    registry = scenario._registry
    if resume and force:
        raise UsageError("--resume continues an existing results file; --force would overwrite it: choose one")
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if progress not in PROGRESS:
        raise UsageError(f"progress must be 'auto', 'bar' or 'none', got {progress!r}")
    if isinstance(workers, str):
        workers = [w.strip() for w in workers.split(",") if w.strip()]
    workers = list(workers) if workers else None
    show_bar = PROGRESS[progress]
    points = scenario._points
    if output is not None:
        points = [(point, attrs.evolve(checked, output=str(output))) for point, checked in points]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from fedarena.core.execution.runner import Progress, run_scenario, run_sweep

    if not scenario.is_sweep:
        checked = points[0][1]
        options = _backend_options(run_scenario, backend, workers)
        with _handled():
            run_scenario(checked, registry, force=force, workers=workers, resume=resume,
                         progress=Progress(checked.rounds, enabled=show_bar), **options)
        return open_results(checked.output)

    options = _backend_options(run_sweep, backend, workers)
    output = points[0][1].output
    interactive = sys.stderr.isatty() if show_bar is None else show_bar

    def report(outcome) -> None:
        if interactive:
            accuracy = outcome.final.get("test_accuracy")
            detail = f" test_accuracy {accuracy:.4f}" if accuracy is not None else f" {outcome.message}"
            print(f"[{outcome.index + 1}/{len(points)}] {outcome.label}: {outcome.status}{detail}", file=sys.stderr)

    with _handled(), _scenario_file(scenario, jobs > 1) as path:
        outcomes = run_sweep(points, registry, scenario_path=path, output=output, force=force, resume=resume,
                             jobs=jobs, workers=workers, report=report, **options)
    failed = [o for o in outcomes if o.status != "complete"]
    if failed:
        lines = [f"point {o.index} ({o.label}) {o.status}: {o.message}" for o in failed]
        raise RunError(f"{len(failed)} of {len(points)} sweep points failed (the others are in {output}):\n"
                       + "\n".join(lines))
    return open_results(output)


# --------------------------------------------------------------------------
# Results.


class Results:
    """A results file (one run, or every point of a sweep) as pandas
    DataFrames, read when asked for (so a file still being written shows
    its rounds so far).

    Each frame is long-form with one column per sweep axis first, named as
    the sweep names it (``aggregator``, ``attack[label_flip].clients``,
    ``seed``), then ``run`` (the point's index): `fedarena.core.results.frames`."""

    def __init__(self, path: str | os.PathLike):
        from fedarena.core.results.reader import open_results as open_file

        self.path = Path(path)
        with open_file(self.path):  # no such file, or not HDF5: a UsageError now
            pass

    def __repr__(self) -> str:
        index = self.index
        statuses = ", ".join(f"{n} {s}" for s, n in index["status"].value_counts().items())
        what = f"a sweep of {len(index)} runs" if self.is_sweep else "one run"
        return f"<fedarena.Results {str(self.path)!r}: {what} ({statuses})>"

    @property
    def metrics(self):
        """One row per run, evaluated round and metric: axes, ``run``,
        ``round``, ``metric``, ``value``."""
        from fedarena.core.results.frames import metrics_frame

        return metrics_frame(self.path)

    @property
    def clients(self):
        """One row per run, round and sampled client: who attacked, kept,
        weights, norms, losses, detector scores."""
        from fedarena.core.results.frames import clients_frame

        return clients_frame(self.path)

    @property
    def detection(self):
        """One row per run and round: the confusion counts of the updates dropped."""
        from fedarena.core.results.frames import detection_frame

        return detection_frame(self.path)

    @property
    def index(self):
        """One row per run: axes, ``run``, ``status``, ``rounds_done``, ``label``."""
        from fedarena.core.results.frames import index_frame

        return index_frame(self.path)

    @property
    def axes(self) -> list[str]:
        """The sweep's axis columns, in sweep order (empty for one run)."""
        from fedarena.core.results.frames import axis_columns

        return axis_columns(self.index)

    @property
    def is_sweep(self) -> bool:
        from fedarena.core.results import reader

        with reader.open_results(self.path) as f:
            return reader.is_sweep(f)

    @property
    def attrs(self) -> dict:
        """The file's attributes: the run's (status, scenario text, title,
        rounds, versions...; `docs/results.md`), or for a sweep the sweep's."""
        from fedarena.core.results import reader

        with reader.open_results(self.path) as f:
            return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in reader.run_attributes(f).items()}

    @property
    def status(self) -> str:
        return str(self.attrs.get("status", "?"))

    def final(self, metric: str = "test_accuracy"):
        """The last evaluated value of ``metric``: a float for one run; for
        a sweep, a DataFrame with one row per run (its axes, ``run`` and the
        value, named after the metric)."""
        frame = self.metrics
        known = sorted(set(frame["metric"]))
        if metric not in known:
            raise KeyError(f"no metric {metric!r} in {self.path}; it has: {', '.join(known) or 'none yet'}")
        rows = frame[frame["metric"] == metric].sort_values(["run", "round"], kind="stable")
        last = rows.groupby("run", sort=True).tail(1)
        if not self.is_sweep:
            return float(last["value"].iloc[0])
        columns = self.axes + ["run"]
        return last[columns + ["value"]].rename(columns={"value": metric}).reset_index(drop=True)

    def summary(self, metric: str = "test_accuracy", by: str | list[str] | None = None):
        """The final ``metric`` averaged over every axis not in ``by`` (default:
        all axes but ``seed``): a DataFrame with ``mean``, ``std`` and
        ``count`` per group."""
        import pandas as pd

        final = self.final(metric)
        if not isinstance(final, pd.DataFrame):
            raise UsageError(f"{self.path} holds one run; its final {metric} is {final}")
        by = [a for a in self.axes if a != "seed"] if by is None else ([by] if isinstance(by, str) else list(by))
        if not by:
            by = ["run"]
        return final.groupby(by, sort=False)[metric].agg(["mean", "std", "count"]).reset_index()

    # Plots and reports, shared with ``fedarena report`` and ``show``.

    def show(self) -> str:
        """What ``fedarena show`` prints for the file."""
        from fedarena.core.results.report import show

        return show(self.path)

    def report(self, out: str | os.PathLike = "report", csv: bool = False, **axes: str) -> list[Path]:
        """Write what ``fedarena report`` writes (plots, summary tables, with
        ``csv`` the CSV files) into ``out``; ``rows=``/``cols=`` choose the
        heatmaps' axes as ``--rows``/``--cols`` do.  Returns the files."""
        from fedarena.core.results.report import report

        with _keeping_backend():
            return report([str(self.path)], out, with_csv=csv, **axes)

    def plot_metrics(self, metrics: list[str] | None = None, path: str | os.PathLike | None = None) -> "Plot":
        """``fedarena report``'s metrics-per-round figure (seeds as a mean and
        a band of one std): the clean accuracy, the attacks' metrics, the
        detection metrics, or ``metrics``.  Written to ``path`` (default: a
        temporary file); shown by a notebook."""
        from fedarena.core.results import report

        target = _plot_path(path, "metrics.png")
        with _keeping_backend():
            if hasattr(report, "line_spec"):
                study = report.load_study([self.path])
                figure = report.line_spec(study, metrics)
                return Plot(target, figure, report.draw_lines(figure, target))
            written = report.plot_metrics(report.load_runs(self.path), target.parent)  # an older report module
        return Plot(_moved(written, target))

    def plot_heatmap(self, metric: str = "test_accuracy", rows: str | None = None, cols: str | None = None,
                     path: str | os.PathLike | None = None) -> "Plot":
        """``fedarena report``'s heatmap of a sweep: the final ``metric`` by
        two axes (``rows``, ``cols``; default the two with the most
        values), seeds aggregated as mean ± sample std with n in each cell,
        a panel per value of every other axis."""
        from fedarena.core.results import report

        target = _plot_path(path, f"heatmap_{metric}.png")
        with _keeping_backend():
            if hasattr(report, "heatmap_spec"):
                study = report.load_study([self.path])
                figure = report.heatmap_spec(study, metric, rows, cols)
                return Plot(target, figure, report.draw_heatmap(figure, target))
            written = report.plot_heatmap(report.load_runs(self.path), metric, target.parent)
        if written is None:
            raise UsageError(f"{self.path}: no run has a final {metric}")
        return Plot(_moved(written, target))

    def plot_clients(self, run: int = 0, path: str | os.PathLike | None = None) -> "Plot":
        """``fedarena report``'s per-client figure of one run (point ``run``
        of a sweep): each sampled client's detector score (else its update
        norm) per round, attackers and dropped updates marked."""
        from fedarena.core.results import reader, report

        target = _plot_path(path, f"clients_{run}.png")
        view = reader.load_point(self.path, run) if self.is_sweep else reader.load_runs(self.path)[0]
        with _keeping_backend():
            written = report.plot_client_scores(view, target.parent, run)
        if written is None:
            raise UsageError(f"{self.path}: run {run} has no client rows yet")
        return Plot(_moved(written, target))


@attrs.frozen(eq=False)
class Plot:
    """A figure written by `fedarena.core.results.report`: its PNG file, and
    when the report module says so, what it shows (``spec``: the numbers in
    each cell or line; ``drawn``: what the figure's artists hold).  A
    notebook shows it as the image."""

    path: Path
    spec: Any = attrs.field(default=None, repr=False)
    drawn: Any = attrs.field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"<fedarena.Plot {self.path.name}>"

    def _repr_png_(self) -> bytes:
        return self.path.read_bytes()


def _plot_path(path, name: str) -> Path:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="fedarena-plot-")) / name


def _moved(written, target: Path) -> Path:
    written = Path(written)
    if written != target:
        written.replace(target)
    return target


@contextlib.contextmanager
def _keeping_backend():
    """The report module draws off screen (it selects matplotlib's Agg
    backend); a notebook's own backend is put back afterwards."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    previous = pyplot.get_backend() if pyplot is not None else None
    try:
        yield
    finally:
        if previous is not None:
            import matplotlib

            if matplotlib.get_backend() != previous:
                with contextlib.suppress(Exception):
                    pyplot.switch_backend(previous)


def open_results(path: str | os.PathLike) -> Results:
    """A results file, one run or a sweep, as `Results`."""
    return Results(path)


# --------------------------------------------------------------------------
# Plugins on plain arrays.


@attrs.frozen(eq=False)
class Applied:
    """What `apply` returns, as NumPy: the fields that a plugin's kind
    produces are set, the others None.

    - an aggregator: ``aggregate`` ``[d]``, ``shares`` ``[n]`` (each row's
      share of the aggregate; zero for rows not kept);
    - a detector: ``scores`` ``[n]`` (NaN for rows it did not see),
      ``kept`` ``[n]`` bool, ``updates`` (the rows as it left them: FLAME
      clips and adds noise);
    - an attack: ``updates`` with its ``malicious`` rows poisoned;
    - all: ``state``, the plugin's state after the call (pass it back as
      ``state=`` for the next round), and ``plugin``, the instance run."""

    kind: str
    plugin: Plugin
    updates: np.ndarray
    aggregate: np.ndarray | None = None
    shares: np.ndarray | None = None
    scores: np.ndarray | None = None
    kept: np.ndarray | None = None
    state: dict = attrs.Factory(dict)


def _plugin_error(message: str, text: str) -> ScenarioError:
    return ScenarioError([Diagnostic(message, Span(1, 1))], PLUGIN_SOURCE, text)


def _resolve_plugin(plugin: Plugin | str | tuple, kind: str | None = None, registry=None) -> tuple[str, Plugin, str]:
    """(kind, plugin instance, text) of what `apply` takes: an instance, a
    call written as in a scenario (``"krum(f = 1)"``) or ``("krum", {"f":
    1})``.  Raises `ScenarioError` pointing into the call."""
    registry = _registry(registry)
    if isinstance(plugin, Plugin):
        if plugin.kind in APPLY_KINDS:
            return plugin.kind, plugin, registry.label(plugin)
        raise UsageError(f"apply runs aggregators, detectors and attacks, not a {plugin.kind or 'plugin'} "
                         f"({type(plugin).__name__})")
    if isinstance(plugin, tuple):
        text = render_value(_spec_value(plugin))
    elif isinstance(plugin, str):
        text = " ".join(plugin.split())
    else:
        raise TypeError(f"apply takes a plugin, 'name(param = value)' or (name, {{params}}), got {plugin!r}")
    prefix = "x in ["
    try:
        parsed = parse(f'scenario "" {{}} sweep {{ {prefix}{text}] }}\n', PLUGIN_SOURCE)
    except ScenarioError as error:
        raise _shifted(error, text, len('scenario "" {} sweep { ') + len(prefix)) from None
    values = parsed.sweep.axes[0].values if parsed.sweep and parsed.sweep.axes else ()
    if len(values) != 1 or not isinstance(values[0], spec.Call):
        raise _plugin_error("expected one plugin call, such as krum(f = 1)", text)
    call = values[0]
    kinds = [k for k in APPLY_KINDS if registry.get(k, call.name) is not None] if kind is None else [kind]
    if kind is not None and kind not in APPLY_KINDS:
        raise UsageError(f"apply runs {', '.join(APPLY_KINDS)} plugins, not {kind!r}")
    if not kinds:
        known = sorted({n for k in APPLY_KINDS for n in registry.names(k)})
        hint = did_you_mean(call.name, known) or f"; known: {', '.join(known)}"
        raise _plugin_error(f"no aggregator, detector or attack is named '{call.name}'{hint}", text)
    if len(kinds) > 1:
        raise _plugin_error(f"'{call.name}' names a plugin of each of these kinds: {', '.join(kinds)}; "
                            f"say which with kind=", text)
    offset = len('scenario "" {} sweep { ') + len(prefix)
    checker = Checker(registry, PLUGIN_SOURCE, text)
    instance = checker.resolve(kinds[0], call)
    if instance is None:
        raise _shifted(ScenarioError(checker.problems, PLUGIN_SOURCE, text), text, offset)
    return kinds[0], instance, text


def _shifted(error: ScenarioError, text: str, offset: int) -> ScenarioError:
    """An error found in ``text`` read after ``offset`` characters, pointing into ``text``."""
    def span(s: Span | None) -> Span | None:
        if s is None:
            return Span(1, 1)
        column = min(max(1, s.column - offset), len(text) + 1)
        end = None if s.end_column is None else min(max(1, s.end_column - offset), len(text) + 1)
        return Span(1, column, 1 if end else None, end)

    def message(d: Diagnostic) -> str:  # past the end, the text read next is ours, not the user's
        if d.span is not None and d.span.column - offset > len(text):
            return re.sub(r"^unexpected '[^']*'", "unexpected end of the call", d.message)
        return d.message

    return ScenarioError([Diagnostic(message(d), span(d.span)) for d in error.diagnostics], PLUGIN_SOURCE, text)


def _mask(value, n: int, what: str, default: bool) -> np.ndarray:
    """A bool ``[n]`` mask from a mask, or from row indices."""
    if value is None:
        return np.full(n, default)
    array = np.asarray(value)
    if array.dtype == bool:
        if array.shape != (n,):
            raise ValueError(f"{what} must mark each of the {n} rows, got shape {array.shape}")
        return array
    if not np.issubdtype(array.dtype, np.integer) or array.ndim > 1:
        raise ValueError(f"{what} must be a bool mask of the {n} rows or a list of row indices, got {value!r}")
    mask = np.zeros(n, bool)
    mask[array.reshape(-1)] = True
    return mask


def _layers(layers, d: int) -> tuple[Layer, ...] | None:
    """``layers`` as `Layer`s: Layer objects, ``{name: shape}`` or (name,
    shape) pairs, laid out one after the other; they must cover ``d``."""
    if layers is None:
        return None
    items = list(layers.items()) if isinstance(layers, Mapping) else list(layers)
    out, offset = [], 0
    for item in items:
        if isinstance(item, Layer):
            layer = item
        else:
            name, shape = item
            shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
            layer = Layer(str(name), shape, offset)
        out.append(layer)
        offset = layer.offset + layer.size
    if sum(layer.size for layer in out) != d:
        raise ValueError(f"the layers hold {sum(layer.size for layer in out)} parameters, the updates have {d}")
    return tuple(out)


def apply(plugin: Plugin | str | tuple, updates, *, weights=None, malicious=None, kept=None,
          num_clients: int | None = None, seed: int | tuple[int, int] = 0, round: int = 1,
          state: Mapping | None = None, layers=None, global_weights=None, root_update=None,
          num_classes: int = 10, kind: str | None = None, registry=None) -> Applied:
    """Run one aggregator, detector or model-poisoning attack on a NumPy
    update matrix, as the server stage of a round runs it.

    ``plugin``: a plugin instance, a call as a scenario writes it
    (``"krum(f = 1)"``, ``"flame"``) or ``("krum", {"f": 1})``; ``kind``
    picks the kind when a name has several.  ``updates``: ``[n, d]``, one
    client's flat update per row.  ``weights``: example counts ``[n]``
    (default 1 each).  ``malicious``: the attackers' rows (a bool mask or
    row indices): an attack rewrites them and reads the others as benign.
    ``kept``: the rows still kept (default all): a detector sees only these
    and an aggregator combines only these, as after earlier detectors.
    ``num_clients`` (default ``n``), ``num_classes``, ``layers`` (`Layer`s
    or ``{name: shape}``), ``global_weights`` ``[d]`` and ``root_update``
    ``[d]`` (the server's own update, for FLTrust) fill the context;
    ``seed`` and ``round`` are the round's; ``state`` the plugin's state
    from a previous call (default its initial state).

    The plugin's own ``check`` runs first (Krum's ``n > 2f + 2``...), with
    ``clients_per_round = n``.  Returns `Applied`."""
    kind, instance, text = _resolve_plugin(plugin, kind, registry)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter, as in the command
    import tensorflow as tf

    from fedarena.core.execution.engine.computations import aggregate_kept, detect_on_kept
    from fedarena.core.testing import make_server_context

    matrix = np.asarray(updates, dtype=np.float32)
    if matrix.ndim != 2 or not matrix.shape[0] or not matrix.shape[1]:
        raise ValueError(f"updates must be an [n, d] matrix with n, d >= 1, got shape {matrix.shape}")
    n, d = matrix.shape
    example_counts = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
    if example_counts.shape != (n,):
        raise ValueError(f"weights must have one entry per row ({n}), got shape {example_counts.shape}")
    attackers = _mask(malicious, n, "malicious", False)
    keep = _mask(kept, n, "kept", True)
    seed_pair = (int(seed), 0) if np.isscalar(seed) else tuple(int(s) for s in seed)
    ctx = make_server_context(
        matrix, num_clients=num_clients, num_classes=num_classes, num_examples=example_counts,
        global_weights=global_weights, round=round, seed=seed_pair, layers=_layers(layers, d),
        num_attackers=int(attackers.sum()),
    )
    if kind == "attack" and not getattr(instance, "poisons_updates", False):
        raise UsageError(f"{text} poisons its clients' training data, not their updates: there is nothing for it "
                         f"to do on an update matrix (run it in a scenario)")
    if kind == "attack" and malicious is None:
        raise UsageError(f"{text} rewrites the attackers' rows: say which they are with malicious=")
    if root_update is not None:  # the server then holds root samples (FLTrust's check asks)
        ctx = attrs.evolve(ctx, root_update=tf.constant(np.asarray(root_update, np.float32)),
                           facts=attrs.evolve(ctx.facts, root_samples=max(ctx.facts.root_samples, 1)))
    elif getattr(instance, "needs_root_update", False):
        raise UsageError(f"{text} reads the server's own update this round: give it as root_update=[d]")
    for message in instance.check(ctx.facts):
        raise _plugin_error(f"{message} (n = {n} rows)", text)
    if state is None:
        state = instance.initial_state(d, ctx.facts)
    state_in = {name: tf.constant(np.asarray(value)) for name, value in state.items()}
    rows = tf.constant(matrix)

    def as_numpy(values: dict) -> dict:
        return {name: np.asarray(value) for name, value in values.items()}

    if kind == "aggregator":
        aggregate, shares, new = aggregate_kept(instance, rows, tf.constant(np.where(keep, example_counts, 0.0),
                                                                            tf.float32), ctx, state_in)
        return Applied(kind, instance, matrix, aggregate=aggregate.numpy(), shares=shares.numpy(),
                       kept=keep, state=as_numpy(new))
    if kind == "detector":
        after, scores, kept_after, new = detect_on_kept(instance, rows, tf.constant(keep), ctx, state_in)
        return Applied(kind, instance, after.numpy(), scores=scores.numpy(), kept=kept_after.numpy().astype(bool),
                       state=as_numpy(new))
    poisoned, new = instance.apply(rows, tf.constant(attackers), tf.constant(~attackers), ctx, state_in)
    return Applied(kind, instance, np.asarray(poisoned), state=as_numpy(new))
