"""Sweeps: a grid of runs over parameter paths.

    sweep {
      aggregator in [fedavg, median, krum(f = 10)]
      attack[label_flip].clients in [0%, 10%, 20%]
      seed in 1..3
    }

The grid is the cartesian product of the lines, in the order they are
written (the last line varies fastest).  `expand` turns a parsed scenario
into one `SweepPoint` per run: its label, its assignments and a
`ScenarioSpec` with the values put in place.  That spec has no sweep and
still carries the whole original file (``source``), so a run can always be
traced back to the text and the point of the grid it came from.

A path names what a line changes:

- ``seed``, ``rounds``, ``evaluate`` (every k rounds), ``output`` with a
  single value (a sweep writes all its points to one file);
- ``dataset``, ``model``, ``aggregator``, ``split``: the plugin itself (the
  values are plugin calls), or one of its parameters: ``aggregator.f``,
  ``dataset.samples``; ``split.clients`` is the number of clients;
- ``training.SETTING``, and ``training.optimizer.PARAMETER``;
- ``attack[NAME]`` and ``detector[NAME]`` (the plugin's name, numbered
  ``NAME_1``, ``NAME_2`` when it is used more than once; the brackets may be
  left out when there is only one), then ``.clients`` or ``.rounds`` (attack
  settings) or ``.PARAMETER``;
- a parameter whose value is a plugin call goes on into its parameters:
  ``attack[backdoor].trigger.size``.

Names of plugins and of their parameters are checked when each point is
checked (`check_points`); the errors then point into the sweep.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable

import attrs

from fedarena.core.language import spec
from fedarena.core.scenario.check import (
    ATTACK_SETTINGS, TRAINING_SETTINGS, Scenario, check_one, describe, did_you_mean, group_names,
)
from fedarena.core.errors import Diagnostic, ScenarioError, Span
from fedarena.core.language.parser import capped
from fedarena.core.plugin.registry import Registry

# The most runs one sweep may expand to.
MAX_RUNS = 10_000

PLAIN_ROOTS = ("seed", "rounds", "evaluate", "output")
CALL_ROOTS = ("dataset", "split", "model", "aggregator")
GROUP_ROOTS = ("attack", "detector")
ROOTS = PLAIN_ROOTS + CALL_ROOTS + ("training",) + GROUP_ROOTS
# The value a statement has when the scenario leaves it out.
DEFAULT_CALLS = {"aggregator": spec.Call("fedavg")}


@attrs.frozen(eq=False)
class SweepPoint:
    """One run of a sweep: where it stands in the grid, and its scenario."""

    index: int
    label: str  # "aggregator=krum(f = 10), seed=2"; "" for a scenario without a sweep
    assignments: dict[str, str]  # path -> the value's text, in the order of the sweep's lines
    spec: spec.ScenarioSpec = attrs.field(repr=False)


class _PathError(Exception):
    def __init__(self, message: str, span: Span | None):
        super().__init__(message)
        self.message, self.span = message, span


# A setter puts one value in place: (statements, value, where the value was written) -> statements.
Setter = Callable[[list, Any, Span | None], list]


def runs_of(scenario: spec.ScenarioSpec) -> int:
    """How many runs a scenario stands for (without expanding it)."""
    if scenario.sweep is None:
        return 1
    return math.prod(len(axis.values) for axis in scenario.sweep.axes)


def expand(scenario: spec.ScenarioSpec) -> list[SweepPoint]:
    """Every point of the scenario's sweep, in grid order; a scenario
    without a sweep is one point.  Raise `ScenarioError` for bad paths and
    values, each at its place in the sweep."""
    from fedarena.core.language.fmt import render_value

    if scenario.sweep is None:
        return [SweepPoint(0, "", {}, scenario)]
    problems: list[Diagnostic] = []
    setters: list[tuple[spec.Axis, Setter, tuple]] = []
    targets: dict[tuple, spec.Axis] = {}
    for axis in scenario.sweep.axes:
        before = len(problems)
        _check_values(axis, problems)
        try:
            target, setter = _resolve(scenario, axis)
        except _PathError as error:
            problems.append(Diagnostic(error.message, error.span))
            continue
        if target in targets:
            first = targets[target]
            problems.append(Diagnostic(f"the sweep sets '{axis.path}' twice (first on line {first.span.line})",
                                       axis.span))
            continue
        targets[target] = axis
        if len(problems) == before:
            setters.append((axis, setter, target))
    runs = runs_of(scenario)
    if runs > MAX_RUNS:
        problems.append(Diagnostic(f"the sweep expands to {runs} runs; at most {MAX_RUNS} are allowed",
                                   scenario.sweep.span))
    if problems:
        raise ScenarioError(capped(problems), scenario.filename, scenario.source)

    # Whole plugins are put in place before their parameters, whatever the order of the lines.
    applying = sorted(range(len(setters)), key=lambda i: len(setters[i][2]))
    axes = [axis for axis, _, _ in setters]
    points, failures = [], {}
    for index, choice in enumerate(itertools.product(*(range(len(a.values)) for a in axes))):
        assignments = {a.path: render_value(a.values[i]) for a, i in zip(axes, choice)}
        label = ", ".join(f"{path}={text}" for path, text in assignments.items())
        statements = list(scenario.statements)
        for k in applying:
            axis, setter, _ = setters[k]
            i = choice[k]
            try:
                statements = setter(statements, axis.values[i], axis.value_spans[i] if axis.value_spans else None)
            except _PathError as error:
                failures.setdefault((error.message, error.span), []).append(label)
        point_spec = attrs.evolve(scenario, statements=tuple(statements), sweep=None,
                                  point=tuple(assignments.items()))
        points.append(SweepPoint(index, label, assignments, point_spec))
    if failures:
        raise ScenarioError(capped(_merge(failures, len(points))), scenario.filename, scenario.source)
    return points


def check_points(
    scenario: spec.ScenarioSpec, registry: Registry, output_override: str | None = None
) -> list[tuple[SweepPoint, Scenario]]:
    """Check every point of the scenario's grid (one point without a sweep).

    Raise one `ScenarioError` with the problems of all points: a problem
    found at every point is reported once; one found at some points says
    which."""
    points = expand(scenario)
    checked, failures = [], {}
    for point in points:
        try:
            checked.append((point, check_one(point.spec, registry, output_override)))
        except ScenarioError as error:
            for diagnostic in error.diagnostics:
                failures.setdefault((diagnostic.message, diagnostic.span), []).append(point.label)
    if failures:
        raise ScenarioError(capped(_merge(failures, len(points))), scenario.filename, scenario.source)
    return checked


def _merge(failures: dict[tuple[str, Span | None], list[str]], total: int) -> list[Diagnostic]:
    merged = []
    for (message, span), labels in failures.items():
        if total > 1 and len(labels) < total:
            if len(labels) == 1:
                message += f" (at the sweep point {labels[0]})"
            else:
                message += f" (at {len(labels)} of {total} sweep points, first {labels[0]})"
        merged.append(Diagnostic(message, span))
    return merged


def _check_values(axis: spec.Axis, problems: list[Diagnostic]) -> None:
    if not axis.values:
        problems.append(Diagnostic(f"the sweep line '{axis.path}' has no values", axis.span))
        return
    seen = set()
    for value, span in zip(axis.values, axis.value_spans):
        key = _key(value)
        if key in seen:
            problems.append(Diagnostic(f"the sweep line '{axis.path}' lists {describe(value)} twice", span))
        seen.add(key)


def _key(value: Any):
    """A value as a key: equal values, equal keys (1 and 1.0 and true differ)."""
    if isinstance(value, tuple):
        return ("list", tuple(_key(v) for v in value))
    return (type(value).__name__, value)


# ---------------------------------------------------------------------------
# Paths -> setters.


def _resolve(scenario: spec.ScenarioSpec, axis: spec.Axis) -> tuple[tuple, Setter]:
    """What a sweep line changes: a key naming the target, and a setter."""
    root, steps = axis.root, list(axis.steps)
    root_span = axis.span
    if root not in ROOTS:
        hint = did_you_mean(root, list(ROOTS)) or f"; a path starts with one of: {', '.join(ROOTS)}"
        raise _PathError(f"unknown sweep path '{root}'{hint}", root_span)
    if root not in GROUP_ROOTS and steps and steps[0].selector:
        raise _PathError(f"'{root}[...]' selects nothing: only attack and detector take a name in brackets",
                         steps[0].span)

    if root == "output" and len(axis.values) > 1:
        raise _PathError("'output' cannot be swept over several files: a sweep writes all its points to one "
                         "file; name it with an 'output' statement outside the sweep", root_span)
    if root in PLAIN_ROOTS:
        if steps:
            raise _PathError(f"'{root}' has no parts; sweep it as a whole: '{root} in [...]'", steps[0].span)
        return (root,), _plain_setter(root, axis.span)

    if root in CALL_ROOTS:
        for value, span in zip(axis.values, axis.value_spans):
            if not steps:
                _need_call(root, value, span)
        statements = scenario.all(root)
        if root == "split" and not statements:
            raise _PathError("the scenario has no 'split' statement to sweep", root_span)
        if root == "split" and steps and steps[0].name == "clients":
            if len(steps) > 1:
                raise _PathError("'split.clients' is a number; it has no parts", steps[1].span)
            return ("split", "clients"), _split_clients_setter()
        if steps and not statements and root not in DEFAULT_CALLS:
            raise _PathError(f"the scenario has no '{root}' statement whose parameters to sweep", root_span)
        names = _arg_names(steps)
        return (root, *names), _call_setter(root, names, axis.span)

    if root == "training":
        if not steps:
            raise _PathError("sweep one training setting at a time: 'training.SETTING in [...]'", root_span)
        setting = steps[0]
        if setting.name not in TRAINING_SETTINGS:
            hint = did_you_mean(setting.name, list(TRAINING_SETTINGS)) or f"; known: {', '.join(TRAINING_SETTINGS)}"
            raise _PathError(f"unknown training setting '{setting.name}'{hint}", setting.span)
        rest = steps[1:]
        if rest and TRAINING_SETTINGS[setting.name].kind is None:
            raise _PathError(f"training setting '{setting.name}' is a number; it has no parts", rest[0].span)
        if not rest and TRAINING_SETTINGS[setting.name].kind is not None:
            for value, span in zip(axis.values, axis.value_spans):
                _need_call(TRAINING_SETTINGS[setting.name].kind, value, span)
        names = _arg_names(rest)
        return ("training", setting.name, *names), _training_setter(setting, names)

    # attack[NAME]... and detector[NAME]...
    statements = scenario.all(root)
    calls = [s.value.call if root == "attack" else s.value for s in statements]
    names = group_names([call.name for call in calls])
    if steps and steps[0].selector:
        selector = steps.pop(0)
        if selector.name not in names:
            if not names:
                raise _PathError(f"the scenario has no {root} to sweep", selector.span)
            hint = did_you_mean(selector.name, names) or f"; the scenario's {root}s: {', '.join(names)}"
            raise _PathError(f"the scenario has no {root} '{selector.name}'{hint}", selector.span)
        position = names.index(selector.name)
    elif len(names) == 1:
        position = 0
    elif not names:
        raise _PathError(f"the scenario has no {root} to sweep", root_span)
    else:
        raise _PathError(f"the scenario has {len(names)} {root}s; name one: "
                         + ", ".join(f"{root}[{n}]" for n in names), root_span)
    if steps and steps[0].selector:
        raise _PathError(f"'{root}[...]' takes one name in brackets", steps[0].span)
    if not steps:
        for value, span in zip(axis.values, axis.value_spans):
            _need_call(root, value, span)
    if root == "attack" and steps and steps[0].name in ATTACK_SETTINGS:
        if len(steps) > 1:
            raise _PathError(f"attack setting '{steps[0].name}' has no parts", steps[1].span)
        return ("attack", position, "setting", steps[0].name), _attack_setting_setter(position, steps[0])
    arg_names = _arg_names(steps)
    return (root, position, *arg_names), _group_setter(root, position, arg_names, axis.span)


def _arg_names(steps: list[spec.PathStep]) -> list[tuple[str, Span | None]]:
    for step in steps:
        if step.selector:
            raise _PathError(f"'[{step.name}]' selects nothing here: parameters follow a '.'", step.span)
    return [(step.name, step.span) for step in steps]


def _need_call(kind: str, value: Any, span: Span | None) -> None:
    if not isinstance(value, spec.Call):
        raise _PathError(f"sweeping the {kind} itself needs {kind} names or calls, got {describe(value)}", span)


def _set_arg(call: spec.Call, names: list[tuple[str, Span | None]], value: Any, value_span: Span | None,
             what: str) -> spec.Call:
    """``call`` with the parameter at ``names`` (a path through nested calls) set to ``value``."""
    (name, name_span), rest = names[0], names[1:]
    args = list(call.args)
    index = next((i for i, a in enumerate(args) if a.name == name), None)
    if rest:
        inner = args[index].value if index is not None else None
        if not isinstance(inner, spec.Call):
            problem = "does not set" if index is None else "does not give a plugin call as"
            raise _PathError(f"{what} '{call.name}' {problem} '{name}', so '{rest[0][0]}' cannot be swept in it",
                             name_span)
        new = spec.Arg(name, _set_arg(inner, rest, value, value_span, f"parameter '{name}'"),
                       args[index].span, args[index].value_span)
    else:
        new = spec.Arg(name, value, name_span, value_span)
    if index is None:
        args.append(new)
    else:
        args[index] = new
    return attrs.evolve(call, args=tuple(args))


def _replace(statements: list, index: int, statement: spec.Statement) -> list:
    out = list(statements)
    out[index] = statement
    return out


def _find(statements: list, keyword: str) -> int | None:
    return next((i for i, s in enumerate(statements) if s.keyword == keyword), None)


def _plain_setter(keyword: str, span: Span | None) -> Setter:
    def put(statements, value, value_span):
        index = _find(statements, keyword)
        if index is None:
            return statements + [spec.Statement(keyword, value, span, value_span)]
        return _replace(statements, index, attrs.evolve(statements[index], value=value, value_span=value_span))

    return put


def _split_clients_setter() -> Setter:
    def put(statements, value, value_span):
        index = _find(statements, "split")
        call, _ = statements[index].value
        return _replace(statements, index, attrs.evolve(statements[index], value=(call, value), value_span=value_span))

    return put


def _call_setter(keyword: str, names: list, span: Span | None) -> Setter:
    def put(statements, value, value_span):
        index = _find(statements, keyword)
        if index is None:  # left out of the scenario: the default plugin, or the swept one
            call = _located(value, value_span) if not names else _set_arg(
                DEFAULT_CALLS[keyword], names, value, value_span, keyword)
            return statements + [spec.Statement(keyword, call, span, call.span)]
        statement = statements[index]
        current = statement.value[0] if keyword == "split" else statement.value
        call = _located(value, value_span) if not names else _set_arg(current, names, value, value_span, keyword)
        new_value = (call, statement.value[1]) if keyword == "split" else call
        return _replace(statements, index, attrs.evolve(statement, value=new_value))

    return put


def _located(value: Any, span: Span | None) -> Any:
    """A swept plugin call points at its place in the sweep."""
    return attrs.evolve(value, span=span) if isinstance(value, spec.Call) else value


def _training_setter(setting: spec.PathStep, names: list) -> Setter:
    def put(statements, value, value_span):
        index = _find(statements, "training")
        settings = list(statements[index].value) if index is not None else []
        at = next((i for i, s in enumerate(settings) if s.name == setting.name), None)
        if names:
            current = settings[at].value if at is not None else TRAINING_SETTINGS[setting.name].default
            if not isinstance(current, spec.Call):
                raise _PathError(f"training setting '{setting.name}' is not a plugin call, so "
                                 f"'{names[0][0]}' cannot be swept in it", setting.span)
            new_value = _set_arg(current, names, value, value_span, TRAINING_SETTINGS[setting.name].kind)
            new = spec.Setting(setting.name, new_value, setting.span,
                               settings[at].value_span if at is not None else setting.span)
        else:
            new = spec.Setting(setting.name, _located(value, value_span), setting.span, value_span)
        if at is None:
            settings.append(new)
        else:
            settings[at] = new
        if index is None:
            return statements + [spec.Statement("training", tuple(settings), setting.span)]
        return _replace(statements, index, attrs.evolve(statements[index], value=tuple(settings)))

    return put


def _nth(statements: list, keyword: str, position: int) -> int:
    return [i for i, s in enumerate(statements) if s.keyword == keyword][position]


def _attack_setting_setter(position: int, setting: spec.PathStep) -> Setter:
    def put(statements, value, value_span):
        index = _nth(statements, "attack", position)
        block = statements[index].value
        settings = [s for s in block.settings if s.name != setting.name]
        at = next((i for i, s in enumerate(block.settings) if s.name == setting.name), len(settings))
        settings.insert(at, spec.Setting(setting.name, value, setting.span, value_span))
        new_block = attrs.evolve(block, settings=tuple(settings))
        return _replace(statements, index, attrs.evolve(statements[index], value=new_block))

    return put


def _group_setter(keyword: str, position: int, names: list, span: Span | None) -> Setter:
    def put(statements, value, value_span):
        index = _nth(statements, keyword, position)
        statement = statements[index]
        current = statement.value.call if keyword == "attack" else statement.value
        call = _located(value, value_span) if not names else _set_arg(current, names, value, value_span, keyword)
        new_value = attrs.evolve(statement.value, call=call, span=call.span) if keyword == "attack" else call
        return _replace(statements, index, attrs.evolve(statement, value=new_value))

    return put


def check(scenario: spec.ScenarioSpec, registry: Registry, output_override: str | None = None) -> Scenario:
    """Resolve and check a parsed scenario; raise `ScenarioError` listing every problem.

    A scenario with a sweep is checked at every point of its grid
    (`check_points` returns each point's `Scenario`);
    it is returned here only when the grid has a single point."""
    if scenario.sweep is not None:
        runs = check_points(scenario, registry, output_override)
        if len(runs) == 1:
            return runs[0][1]
        raise ScenarioError(
            [Diagnostic(f"this scenario is a sweep of {len(runs)} runs; check and run it point by point "
                        "(fedarena.core.scenario.sweep.check_points)", scenario.sweep.span)],
            scenario.filename, scenario.source,
        )
    return check_one(scenario, registry, output_override)
