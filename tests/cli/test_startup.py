"""Start-up: the commands that only read scenarios or list plugins never
import TensorFlow (it costs 5-15 s), so they answer at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from fedarena.core.cli.main import main
code = main({argv!r})
heavy = sorted(name for name in ("tensorflow", "tensorflow_federated", "keras") if name in sys.modules)
print("HEAVY:", ",".join(heavy) or "none")
sys.exit(code)
"""


@pytest.mark.parametrize("argv", [
    ["check", str(REPO / "scenarios" / "quickstart.fls")],
    ["check", str(REPO / "scenarios" / "sweep_2x2.fls")],
    ["plugins"],
    ["plugins", "aggregator"],
    ["fmt", "--check", str(REPO / "scenarios" / "quickstart.fls")],
])
def test_reading_commands_never_import_tensorflow(argv):
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "HEAVY: none" in done.stdout, done.stdout
