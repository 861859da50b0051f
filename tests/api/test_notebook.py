"""docs/quickstart.ipynb: committed with its outputs, and runs headless
(nbclient, a kernel of this environment) without an error in any cell."""

import ast
import subprocess
import sys

import nbformat
import pytest

import fedarena

from conftest import REPO

NOTEBOOK = REPO / "docs" / "quickstart.ipynb"
CELL_TIMEOUT = 300  # seconds per cell; the whole notebook takes about a minute on 2 cores


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_the_notebook_is_committed_with_its_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    cells = code_cells(notebook)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))  # run once, in order
    outputs = [output for cell in cells for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    kinds = {kind for o in outputs if o.output_type in ("execute_result", "display_data") for kind in o.data}
    assert {"text/html", "image/png"} <= kinds  # DataFrames and the report's figures
    assert not [o for o in outputs if "/tmp/" in str(o) or "/work/" in str(o)]  # no machine's paths


def test_the_notebook_uses_only_the_public_api():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    used = set()
    for cell in code_cells(notebook):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "fedarena":
                used.add(node.attr)
    assert used and used <= set(fedarena.__all__), used - set(fedarena.__all__)


@pytest.mark.e2e
def test_the_notebook_runs_headless_without_errors(tmp_path):
    from nbclient import NotebookClient

    started = subprocess.run([sys.executable, "-c", "import IPython, ipykernel"], capture_output=True, text=True)
    if started.returncode:
        pytest.fail("a Jupyter kernel cannot start in this environment (tensorflow 2.14 pins typing_extensions < 4.6, "
                    "which IPython >= 8.23 cannot import; pin ipython < 8.23 in the dev group):\n"
                    + started.stderr.strip().splitlines()[-1])
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in code_cells(notebook):
        cell.outputs, cell.execution_count = [], None
    (tmp_path / "scenarios").symlink_to(REPO / "scenarios")  # the notebook's paths are the repository's
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    errors = [o for cell in code_cells(notebook) for o in cell.outputs if o.output_type == "error"]
    assert not errors
    assert all(cell.execution_count for cell in code_cells(notebook))
    assert (tmp_path / "results" / "notebook" / "sweep.h5").is_file()
