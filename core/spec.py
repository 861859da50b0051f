"""What a scenario says, as frozen attrs objects that keep their source span.

These are produced by `fedarena.core.language` from the parse tree and hold
no behaviour: resolving names to plugins is the checker's work
(`fedarena.core.check`).
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
    """``name = value`` inside a call; ``value`` is a literal, a tuple, or a Call."""

    name: str
    value: Any
    span: Span | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Setting:
    """``name value`` inside a ``training`` or ``attack`` block."""

    name: str
    value: Any
    span: Span | None = attrs.field(default=None, eq=False)


@attrs.frozen
class AttackBlock:
    call: Call
    settings: tuple[Setting, ...] = ()
    span: Span | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Statement:
    """One top-level statement: its keyword, its value(s) and its span."""

    keyword: str
    value: Any
    span: Span | None = attrs.field(default=None, eq=False)


@attrs.frozen
class ScenarioSpec:
    """A parsed scenario, before any name is resolved."""

    title: str
    statements: tuple[Statement, ...]
    source: str = attrs.field(default="", eq=False, repr=False)
    filename: str = attrs.field(default="<scenario>", eq=False)
    span: Span | None = attrs.field(default=None, eq=False)

    def all(self, keyword: str) -> list[Statement]:
        return [s for s in self.statements if s.keyword == keyword]
