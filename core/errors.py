"""The errors fedarena reports to users.

Each kind maps to one exit code in the CLI: a bad scenario or bad usage is
exit 2 with a message and no traceback; a failure while running is exit 1.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Span:
    """Where something stands in a scenario file (1-based line and column)."""

    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None


_WIDTH = 160  # longest source line shown whole under an error


@attrs.frozen
class Diagnostic:
    """One problem found in a scenario, with the place it points at."""

    message: str
    span: Span | None = None

    def render(self, filename: str, source: str | list[str]) -> str:
        """``file:line:col: message``, the source line, a caret under the
        column.  ``source`` may be given already split into lines (Lark's
        numbering: only ``\\n`` ends a line)."""
        if self.span is None:
            return f"{filename}: {self.message}"
        line, column = self.span.line, self.span.column
        lines = source.split("\n") if isinstance(source, str) else source
        text = lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else ""
        start = 0
        if len(text) > _WIDTH:  # show a window around the column of a very long line
            start = max(0, min(column - 1 - _WIDTH // 2, len(text) - _WIDTH))
            text = ("..." if start else "") + text[start : start + _WIDTH] + ("..." if start + _WIDTH < len(text) else "")
        shown = text[: column - 1 - start + (3 if start else 0)]
        # Tabs keep their width under the caret so it lines up in a terminal.
        caret = "".join(ch if ch == "\t" else " " for ch in shown) + "^"
        return f"{filename}:{line}:{column}: {self.message}\n    {text}\n    {caret}"


class FedarenaError(Exception):
    """Base of the errors fedarena reports without a traceback."""

    exit_code = 1


class UsageError(FedarenaError):
    """Bad command-line use: missing file, output in the way, bad flag."""

    exit_code = 2


class ScenarioError(FedarenaError):
    """A scenario that cannot run; holds every problem found, in file order."""

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic], filename: str = "<scenario>", source: str = ""):
        self.diagnostics = sorted(
            diagnostics, key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0)
        )
        self.filename = filename
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines = self.source.split("\n")  # once, however many problems there are
        return "\n".join(d.render(self.filename, lines) for d in self.diagnostics)


class RunError(FedarenaError):
    """A failure while a scenario runs (a worker died, a plugin raised)."""

    exit_code = 1
