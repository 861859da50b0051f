"""The results file's one description (`schema`) and its documentation
agree, and the reader refuses what is not a results file."""

from __future__ import annotations

import re

import h5py
import pytest

from conftest import REPO
from fedarena.core.errors import UsageError
from fedarena.core.results import reader, schema

DOC = REPO / "docs" / "results.md"


def documented_names() -> set[str]:
    """The names in the first column of docs/results.md's tables, and the
    sweep's root attributes (listed in a cell of their own)."""
    found = set()
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2 or set(cells[0]) <= {"-"}:
            continue
        spans = re.findall(r"`([^`]+)`", cells[0])
        if cells[0] == "root attributes":
            spans = re.findall(r"`([^`]+)`", cells[1])
        found.update(span.split(" = ")[0].lstrip("/") for span in spans)
    return found


def test_the_documentation_lists_exactly_the_schemas_names():
    in_schema = {name for names in schema.DOCUMENTED.values() for name in names}
    in_docs = documented_names()
    assert schema.point_group(7) == "runs/0007"
    assert in_docs - in_schema == {"runs/NNNN"}
    # Attributes of /split and of a sweep point are named in sentences.
    in_sentences = {schema.ATTACK_GROUPS} | {f.name for f in schema.POINT_ATTRIBUTES}
    assert in_schema - in_docs <= in_sentences
    text = DOC.read_text()
    for name in in_sentences:
        assert f"`{name}`" in text
    for status in schema.POINT_STATUSES + schema.STATUSES:
        assert f"`{status}`" in text
    for distribution in schema.VERSIONED_DISTRIBUTIONS:
        assert f"`{distribution}`" in text


def test_the_schemas_meanings_are_the_documentations():
    text = " ".join(DOC.read_text().split())
    for fields in (schema.RUN_ATTRIBUTES[:6], schema.METRIC_FIELDS, schema.CLIENT_FIELDS, schema.TIMING_FIELDS,
                   schema.DETECTION_FIELDS, schema.SPLIT_FIELDS, schema.PLUGIN_ATTRIBUTES, schema.SWEEP_INDEX):
        for field in fields:
            assert field.meaning in text, field


def test_the_reader_refuses_what_is_not_a_results_file(tmp_path):
    with pytest.raises(UsageError, match="no such results file"):
        reader.load_runs(tmp_path / "missing.h5")
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"not hdf5")
    with pytest.raises(UsageError, match="not a readable HDF5 results file"):
        reader.load_runs(bogus)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["something"] = 1
    with pytest.raises(UsageError, match="not a fedarena results file"):
        reader.load_runs(tmp_path / "other.h5")
