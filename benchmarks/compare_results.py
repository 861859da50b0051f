"""Compare two fedarena results files bit for bit, timing aside.

    python benchmarks/compare_results.py BEFORE.h5 AFTER.h5

Used to show that a change to the engine or the layout changes no number a
run measures: every dataset outside ``timing/`` (metrics, per-client
records, detection counts, the model, checkpoints, the split) must be
byte-identical, and so must the attributes that describe the run (status,
rounds, seed, scenario, plugin parameters).  Exit 0 when they are, 1 with
each difference listed when not.
"""

from __future__ import annotations

import sys

import h5py
import numpy as np

# Attributes that legitimately differ between two runs of the same scenario.
# ``class`` is a plugin's import path, provenance only: it changes when a
# plugin's module moves, and nothing reads it back.
VOLATILE_ATTRIBUTES = {"started_at", "finished_at", "scenario_file", "fedarena_version", "workers", "class"}


def _items(f: h5py.File):
    found = {}

    def visit(name, obj):
        if name.startswith("timing") or "/timing" in name or name.startswith("versions"):
            return
        found[name] = obj
    f.visititems(visit)
    found[""] = f
    return found


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == object or b.dtype == object:  # variable-length strings: compare the values
        return a.shape == b.shape and a.tolist() == b.tolist()
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def differences(before: str, after: str) -> list[str]:
    problems = []
    with h5py.File(before, "r") as old, h5py.File(after, "r") as new:
        old_items, new_items = _items(old), _items(new)
        for name in sorted(set(old_items) | set(new_items)):
            if name not in new_items or name not in old_items:
                problems.append(f"{name or '/'}: only in {'before' if name in old_items else 'after'}")
                continue
            a, b = old_items[name], new_items[name]
            if isinstance(a, h5py.Dataset) and not _same(a[()], b[()]):
                problems.append(f"{name}: values differ")
            for key in sorted(set(a.attrs) | set(b.attrs)):
                if key in VOLATILE_ATTRIBUTES:
                    continue
                if key not in a.attrs or key not in b.attrs or not _same(a.attrs[key], b.attrs[key]):
                    problems.append(f"{name or '/'}@{key}: differs")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    problems = differences(*argv)
    for line in problems:
        print(line)
    print("identical (timing aside)" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
