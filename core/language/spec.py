"""What a scenario says, as frozen attrs objects that keep their source span.

These are produced by `fedarena.core.language.parser` from the parse tree and hold
no behaviour: resolving names to plugins is the checker's work
(`fedarena.core.scenario.check`).
"""

from __future__ import annotations

from typing import Any

import attrs

from fedarena.core.errors import Span


@attrs.frozen
class Percent:
    """A percentage literal, ``20%``; ``value`` is 20.0."""

    value: float

    def of(self, total: int) -> int:
        return int(round(self.value / 100.0 * total))

    def __str__(self) -> str:
        return f"{self.value:g}%"


@attrs.frozen
class Range:
    """An inclusive integer range, ``5..50``."""

    start: int
    stop: int

    def __contains__(self, item: int) -> bool:
        return self.start <= item <= self.stop

    def __str__(self) -> str:
        return f"{self.start}..{self.stop}"


@attrs.frozen
class Every:
    """``every k``: rounds k, 2k, 3k, ..."""

    k: int

    def __contains__(self, item: int) -> bool:
        return item % self.k == 0

    def __str__(self) -> str:
        return f"every {self.k}"


@attrs.frozen
class Call:
    """A plugin reference with keyword arguments: ``krum(f = 2)``."""

    name: str
    args: tuple["Arg", ...] = ()
    span: Span | None = attrs.field(default=None, eq=False)

    def kwargs(self) -> dict[str, Any]:
        return {arg.name: arg.value for arg in self.args}


@attrs.frozen
class Arg:
    """``name = value`` inside a call; ``value`` is a literal, a tuple, or a Call.

    ``span`` is the parameter's name, ``value_span`` the value."""

    name: str
    value: Any
    span: Span | None = attrs.field(default=None, eq=False)
    value_span: Span | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Setting:
    """``name value`` inside a ``training`` or ``attack`` block."""

    name: str
    value: Any
    span: Span | None = attrs.field(default=None, eq=False)
    value_span: Span | None = attrs.field(default=None, eq=False)


@attrs.frozen
class AttackBlock:
    call: Call
    settings: tuple[Setting, ...] = ()
    span: Span | None = attrs.field(default=None, eq=False)


@attrs.frozen
class StartFrom:
    """``start from "FILE" round N``: the file's path as written, and the
    round asked for (None: the file's latest model)."""

    path: str
    round: Any = None  # an int, or the parser's INVALID for an unreadable one
    round_span: Span | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Statement:
    """One top-level statement: its keyword, its value(s) and its span.

    ``value`` by keyword: seed, rounds, evaluate, save -> int; output -> str;
    dataset, model, detector, aggregator -> Call; split -> (Call, clients);
    training -> tuple of Setting; attack -> AttackBlock; start -> StartFrom.

    An attack block's ``present every k rounds`` is a Setting named
    ``present`` whose value is ``Every(k)`` (``every round``: ``Every(1)``)."""

    keyword: str
    value: Any
    span: Span | None = attrs.field(default=None, eq=False)
    value_span: Span | None = attrs.field(default=None, eq=False)


@attrs.frozen
class PathStep:
    """One step of a sweep path: ``.name`` or ``[name]`` (``selector``)."""

    name: str
    selector: bool = False
    span: Span | None = attrs.field(default=None, eq=False)

    def __str__(self) -> str:
        return f"[{self.name}]" if self.selector else f".{self.name}"


@attrs.frozen
class Axis:
    """One line of a sweep: ``path in [values]`` (or ``path in a..b``)."""

    root: str
    steps: tuple[PathStep, ...]
    values: tuple[Any, ...]
    span: Span | None = attrs.field(default=None, eq=False)
    value_spans: tuple[Span | None, ...] = attrs.field(default=(), eq=False)

    @property
    def path(self) -> str:
        return self.root + "".join(map(str, self.steps))


@attrs.frozen
class Sweep:
    """``sweep { ... }``: the grid is the product of the axes, in order."""

    axes: tuple[Axis, ...]
    span: Span | None = attrs.field(default=None, eq=False)


@attrs.frozen
class ScenarioSpec:
    """A parsed scenario, before any name is resolved.

    ``sweep`` is the grid written after the scenario, if any.  A spec made
    for one point of a grid (`fedarena.core.scenario.sweep.expand`) has no sweep;
    ``point`` holds that point's assignments (path, value text), and
    ``source`` is still the whole original file."""

    title: str
    statements: tuple[Statement, ...]
    source: str = attrs.field(default="", eq=False, repr=False)
    filename: str = attrs.field(default="<scenario>", eq=False)
    span: Span | None = attrs.field(default=None, eq=False)
    sweep: Sweep | None = None
    point: tuple[tuple[str, str], ...] = ()

    def all(self, keyword: str) -> list[Statement]:
        return [s for s in self.statements if s.keyword == keyword]
