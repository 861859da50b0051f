"""Detection scored against the known malicious set."""

from __future__ import annotations

import numpy as np


def confusion(flagged: np.ndarray, malicious: np.ndarray) -> dict[str, int]:
    """Detection confusion counts: a dropped row is a positive."""
    return {
        "true_positives": int(np.sum(flagged & malicious)),
        "false_positives": int(np.sum(flagged & ~malicious)),
        "true_negatives": int(np.sum(~flagged & ~malicious)),
        "false_negatives": int(np.sum(~flagged & malicious)),
    }


def precision_recall(counts: dict[str, int]) -> dict[str, float]:
    """Detection precision and recall over the counts given (NaN when undefined)."""
    tp, fp, fn = counts.get("true_positives", 0), counts.get("false_positives", 0), counts.get("false_negatives", 0)
    return {
        "detection_precision": tp / (tp + fp) if tp + fp else float("nan"),
        "detection_recall": tp / (tp + fn) if tp + fn else float("nan"),
    }
