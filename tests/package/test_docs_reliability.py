"""docs/reliability.md: every test the table cites exists, so that each
row's claim is held by a test that runs in the suite."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"


def cited(cell: str) -> list[tuple[str, str | None]]:
    """The (file, test name or None) pairs a table cell cites: ``path::name``,
    ``::name`` after a path (the same file), a malformed case's folder name."""
    found, current = [], None
    for span in re.findall(r"`([^`]+)`", cell):
        span = span.strip()
        if span.startswith(("tests/", "benchmarks/")):
            path, _, name = span.partition("::")
            current = path
            found.append((path, name or None))
        elif span.startswith("::") and current is not None:
            found.append((current, span[2:]))
    return [(path, re.sub(r"\[.*$", "", name) if name else None) for path, name in found]


def functions(path: Path) -> set[str]:
    return {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}


def table_cells() -> list[str]:
    cells = []
    for line in DOC.read_text().splitlines():
        parts = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(parts) == 3 and not set(parts[0]) <= {"-"} and parts[0] != "input or fault":
            cells.append(parts[2])
    return cells


def test_every_row_cites_a_test_and_every_cited_test_exists():
    cells = table_cells()
    assert len(cells) >= 60
    missing = []
    for cell in cells:
        pairs = cited(cell)
        assert pairs, f"a row cites no test: {cell}"
        for path, name in pairs:
            file = REPO / path
            if path.startswith("tests/language/malformed/"):
                file = file.with_suffix(".fls") if not file.suffix else file
                if not file.exists() and not list(file.parent.glob(file.stem.rstrip("*") + "*.fls")):
                    missing.append(path)
                continue
            if not file.exists():
                missing.append(path)
            elif name and file.suffix == ".py" and name not in functions(file):
                missing.append(f"{path}::{name}")
    assert missing == []


def test_the_citation_reader_sees_a_missing_test():
    assert cited("`tests/x.py::test_a[p]`, `::test_b`, `tests/y.py`") == [
        ("tests/x.py", "test_a"), ("tests/x.py", "test_b"), ("tests/y.py", None)]
