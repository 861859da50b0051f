"""An edge-case set for the ``edge_case`` attack, made offline from
scikit-learn's digits (the ``digits`` dataset's source):

    python -m fedarena.plugins.edge_cases scenarios/attacks/edge_case_digits.npz

Wang et al. (2020, "Attack of the Tails", NeurIPS) take edge cases from the
tail of the input distribution: inputs of a familiar kind that the training
data hardly ever shows (ARDIS handwritten sevens next to EMNIST).  Here the
digits of one class (``--digit``, default 7) are turned into such inputs:
rotated by 90 degrees (``--transform rotate``, the default) or with ink and
paper swapped (``invert``), in the dataset's scale (8 x 8 x 1, [0, 1]).  The
transformed digits are shuffled with ``--seed`` and split into ``x_train``
(what the attackers train on) and ``x_test`` (``--test-fraction`` of them,
held out for the attack success rate).  The output is the same for the same
options, so a file can always be made again.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

import numpy as np

TRANSFORMS = ("rotate", "invert")


def digits_edge_set(digit: int = 7, transform: str = "rotate", test_fraction: float = 0.5,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """``{"x_train": ..., "x_test": ...}``, float32 ``[n, 8, 8, 1]``: the
    digits of class ``digit``, transformed, shuffled and split."""
    from sklearn.datasets import load_digits

    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    digits = load_digits()
    images = (digits.images[digits.target == digit] / 16.0).astype(np.float32)
    if len(images) < 2:
        raise ValueError(f"the digits dataset has no class {digit}")
    if transform == "rotate":
        images = np.rot90(images, k=1, axes=(1, 2))
    else:
        images = 1.0 - images
    images = np.ascontiguousarray(images, np.float32)[..., None]
    images = images[np.random.default_rng(seed).permutation(len(images))]
    test = min(max(1, int(round(test_fraction * len(images)))), len(images) - 1)
    return {"x_train": images[test:], "x_test": images[:test]}


def write_edge_set(path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an .npz file at ``path`` (exactly that name),
    whole or not at all: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "xb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fedarena.plugins.edge_cases",
        description="Write an edge-case set (x_train, x_test) for the edge_case attack from the digits dataset.",
    )
    parser.add_argument("output", help="the .npz file to write")
    parser.add_argument("--digit", type=int, default=7, help="class whose digits become edge cases (default 7)")
    parser.add_argument("--transform", choices=TRANSFORMS, default="rotate", help="how they are changed")
    parser.add_argument("--test-fraction", type=float, default=0.5, help="share held out as x_test (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle before the split")
    args = parser.parse_args(argv)
    try:
        arrays = digits_edge_set(args.digit, args.transform, args.test_fraction, args.seed)
    except ValueError as error:
        parser.error(str(error))
    path = write_edge_set(args.output, arrays)
    print(f"wrote {path}: {len(arrays['x_train'])} training and {len(arrays['x_test'])} test edge cases "
          f"of shape {arrays['x_train'].shape[1:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
