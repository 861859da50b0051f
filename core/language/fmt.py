"""``fedarena fmt``: the canonical layout of a scenario file.

The layout: two spaces of indentation per block, one statement per line,
``name(a = 1, b = [1, 2])`` spacing, and one blank line between the sections
of a scenario (run length; data and model; training; each attack; defenses;
evaluation and output) and before the sweep.  Literals are kept exactly as
written (``1e-3`` stays ``1e-3``, ``fedavg()`` keeps its parentheses), so
formatting never changes what a file means: ``parse(format_text(s))``
equals ``parse(s)``, and formatting twice changes nothing more.

Comments are kept.  The lexer hands them over with their line; a comment
that ends a line of code stays at the end of that line, and one on its own
line stays above the line of code that follows it, at its indentation.
(A comment inside a statement that spans several lines moves above it.)
A blank line that separates comments from each other or from the code
below them is kept.
"""

from __future__ import annotations

import bisect
from decimal import Decimal
from typing import Any

import attrs
from lark import Token, Tree

from fedarena.core.language import spec
from fedarena.core.language.parser import parse_with_comments

INDENT = "  "
# Statements that share a section sit together; blocks stand apart (None).
SECTIONS = {
    "seed_stmt": "run", "rounds_stmt": "run", "start_stmt": "run",
    "dataset_stmt": "data", "split_stmt": "data", "model_stmt": "data",
    "training_block": None, "attack_block": None,
    "detector_stmt": "defense", "aggregator_stmt": "defense",
    "evaluate_stmt": "output", "save_stmt": "output", "output_stmt": "output",
}
PUNCTUATION = ("LSQB", "RSQB", "COMMA", "LPAR", "RPAR")


def format_text(text: str, filename: str = "<scenario>") -> str:
    """The canonical layout of scenario text; raise `ScenarioError` if it
    does not parse."""
    _, tree, comments = parse_with_comments(text, filename)
    return _Formatter(text, comments).run(tree)


# ---------------------------------------------------------------------------
# Values of the spec (sweep labels), written the way the language reads them.


def render_value(value: Any) -> str:
    """A spec value as scenario text: ``krum(f = 10)``, ``20%``, ``[1, 2]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        escaped = escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
        return f'"{escaped}"'
    if isinstance(value, spec.Percent):
        number = value.value
        text = str(int(number)) if number == int(number) else format(Decimal(repr(number)), "f")
        return f"{text}%"
    if isinstance(value, (spec.Range, spec.Every)):
        return str(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, spec.Call):
        if not value.args:
            return value.name
        return f"{value.name}(" + ", ".join(f"{a.name} = {render_value(a.value)}" for a in value.args) + ")"
    return str(value)


# ---------------------------------------------------------------------------
# The parse tree, laid out.


def render_node(node) -> str:
    """A value, path or statement of the parse tree on one line."""
    if isinstance(node, Token):
        return str(node)
    children = node.children
    kind = node.data
    if kind == "call":
        name = str(children[0])
        if len(children) == 1:
            return name
        return f"{name}(" + ", ".join(render_node(c) for c in children if isinstance(c, Tree)) + ")"
    if kind == "arg":
        return f"{children[0]} = {render_node(children[2])}"
    if kind in ("list", "choices"):
        items = [c for c in children if not (isinstance(c, Token) and c.type in PUNCTUATION)]
        return "[" + ", ".join(render_node(c) for c in items) + "]"
    if kind == "range":
        return f"{children[0]}..{children[2]}"
    if kind == "step":
        return "".join(str(c) for c in children)
    if kind == "path":
        return "".join(render_node(c) for c in children)
    return " ".join(render_node(c) for c in children)


@attrs.define
class _Line:
    text: str
    depth: int
    first: int  # the source lines this output line stands for
    last: int
    blank: bool = False  # a blank line before it
    close: bool = False  # a closing brace
    leading: list = attrs.Factory(list)  # comments above it
    trailing: str | None = None  # a comment at its end


class _Formatter:
    def __init__(self, text: str, comments: list[Token]):
        self.text = text
        self.source_lines = text.split("\n")
        self.comments = comments
        self.lines: list[_Line] = []

    def run(self, tree: Tree) -> str:
        scenario = tree.children[0]
        keyword, title, lbrace, *statements, rbrace = scenario.children
        self.add(f"scenario {title} {{", 0, keyword.line, lbrace.line)
        previous = None
        for statement in statements:
            blank = previous is not None and (
                SECTIONS[previous] is None or SECTIONS[statement.data] is None
                or SECTIONS[previous] != SECTIONS[statement.data]
            )
            self.statement(statement, 1, blank)
            previous = statement.data
        self.add("}", 0, rbrace.line, rbrace.line, close=True)
        if len(tree.children) > 1:
            sweep = tree.children[1]
            keyword, lbrace, *axes, rbrace = sweep.children
            self.add("sweep {", 0, keyword.line, lbrace.line, blank=True)
            for axis in axes:
                self.add(render_node(axis), 1, axis.meta.line, axis.meta.end_line)
            self.add("}", 0, rbrace.line, rbrace.line, close=True)
        self.place_comments()
        return self.emit()

    def add(self, text, depth, first, last, blank=False, close=False) -> None:
        self.lines.append(_Line(text, depth, first, last, blank, close))

    def statement(self, node: Tree, depth: int, blank: bool) -> None:
        braces = [i for i, c in enumerate(node.children) if isinstance(c, Token) and c.type in ("LBRACE", "RBRACE")]
        if not braces:
            self.add(render_node(node), depth, node.meta.line, node.meta.end_line, blank)
            return
        lbrace, rbrace = node.children[braces[0]], node.children[braces[1]]
        header = " ".join(render_node(c) for c in node.children[: braces[0]])
        settings = node.children[braces[0] + 1: braces[1]]
        inside = any(lbrace.start_pos < c.start_pos < rbrace.start_pos for c in self.comments)
        if not settings and not inside:
            self.add(header + " {}", depth, node.meta.line, rbrace.line, blank)
            return
        self.add(header + " {", depth, node.meta.line, lbrace.line, blank)
        for setting in settings:
            self.add(render_node(setting), depth + 1, setting.meta.line, setting.meta.end_line)
        self.add("}", depth, rbrace.line, rbrace.line, close=True)

    def _ends_code(self, comment: Token) -> bool:
        start = self.text.rfind("\n", 0, comment.start_pos) + 1
        return bool(self.text[start:comment.start_pos].strip())

    def place_comments(self) -> None:
        self.footer: list[Token] = []
        lasts = [entry.last for entry in self.lines]  # in source order, so sorted
        for comment in self.comments:
            line = comment.line
            after = bisect.bisect_right(lasts, line)  # the first line of output ending below this comment
            if self._ends_code(comment):
                at = after - 1
                ends_here = at >= 0 and lasts[at] == line and self.lines[at].trailing is None
                if ends_here and (after == len(self.lines) or self.lines[after].first > line):
                    self.lines[at].trailing = comment
                    continue
                at = after  # inside a statement written over several lines: above it
            else:
                at = bisect.bisect_left(lasts, line)
            if at == len(self.lines):
                self.footer.append(comment)
            else:
                self.lines[at].leading.append(comment)

    def _blank_between(self, above: int, below: int) -> bool:
        return any(not self.source_lines[i - 1].strip() for i in range(above + 1, below))

    def emit(self) -> str:
        out: list[str] = []
        for entry in self.lines:
            indent = INDENT * entry.depth
            if entry.blank:
                out.append("")
            if entry.leading:
                comment_indent = INDENT * (entry.depth + 1) if entry.close else indent
                for i, comment in enumerate(entry.leading):
                    if i and self._blank_between(entry.leading[i - 1].line, comment.line):
                        out.append("")
                    out.append(comment_indent + comment.rstrip())
                if self._blank_between(entry.leading[-1].line, entry.first):
                    out.append("")
            text = indent + entry.text
            if entry.trailing is not None:
                text += "  " + entry.trailing.rstrip()
            out.append(text)
        previous = self.lines[-1].last
        for comment in self.footer:
            if self._blank_between(previous, comment.line):
                out.append("")
            out.append(comment.rstrip())
            previous = comment.line
        return "\n".join(out) + "\n"
