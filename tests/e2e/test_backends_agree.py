"""The same science on both backends: the quickstart and every attack and
defense scenario, cut to two rounds, give the same results under the
in-process executor (``local``) and under TFF's C++ worker.

What may differ, and why: the worker links its own TensorFlow, whose `exp`
and `log` kernels round differently in the last bit from the one in this
process, so a softmax loss moves weights by about 1e-8 per round. Every
count, id, flag and selection must be equal; floats must agree within the
tolerances below (measured on these scenarios: docs/performance.md,
"Backends"). ``FEDARENA_BACKEND_REPORT=FILE`` writes the largest difference
seen per scenario and field as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_shipped_scenarios import SCENARIOS, shrink

FILES = [name for name in ["quickstart.fls"] + sorted(f"attacks/{p.name}" for p in (SCENARIOS / "attacks").glob("*.fls"))
         + sorted(f"defenses/{p.name}" for p in (SCENARIOS / "defenses").glob("*.fls"))
         # The offline ones: a scenario that needs data fetched first says so at its top.
         if "fedarena data fetch" not in (SCENARIOS / name).read_text(encoding="utf-8")]
# Relative tolerance on float results, and an absolute floor for values near 0.
RTOL, ATOL = 1e-4, 1e-5
EXACT = ("clients/id", "clients/malicious", "clients/attack_group", "clients/kept", "clients/finite",
         "clients/num_examples", "detection/")
SKIP = ("timing/",)
REPORT: dict[str, dict[str, float]] = {}

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("edge_case_digits")]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    directory = tmp_path_factory.mktemp("backends")
    for data in (SCENARIOS / "attacks").glob("*.npz"):
        shutil.copy(data, directory / data.name)
    yield directory
    if os.environ.get("FEDARENA_BACKEND_REPORT"):
        Path(os.environ["FEDARENA_BACKEND_REPORT"]).write_text(json.dumps(REPORT, indent=1, sort_keys=True))


def _largest_difference(a: np.ndarray, b: np.ndarray) -> float:
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a[both] - b[both]), initial=0.0))


@pytest.mark.parametrize("relative", FILES)
def test_local_and_worker_give_the_same_results(relative, scratch, fedarena_worker):
    from fedarena.core.testing import run_text

    text = shrink((SCENARIOS / relative).read_text(encoding="utf-8"))
    name = relative.replace("/", "__")
    local = run_text(text, scratch, name=f"local__{name}", backend="local")
    worker = run_text(text, scratch, name=f"worker__{name}", workers=fedarena_worker)
    assert local.status == worker.status == "complete"
    assert local.attrs["backend"] == "local" and worker.attrs["backend"] == "remote"
    assert sorted(local.data) == sorted(worker.data)
    seen = REPORT.setdefault(relative, {})
    for key, a in local.data.items():
        b = worker.data[key]
        if key.startswith(SKIP) or isinstance(a, dict):
            continue
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, key
        if key.startswith(EXACT) or not np.issubdtype(a.dtype, np.floating):
            np.testing.assert_array_equal(a, b, err_msg=key)
            continue
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{key}: NaN in one backend only")
        seen[key] = _largest_difference(a, b)
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=key)
