"""Detection confusion counts and precision/recall."""

import math

import numpy as np

from fedarena.core.execution.engine.detection import confusion, precision_recall


def test_a_dropped_row_is_a_positive():
    flagged = np.array([True, True, False, False, True])
    malicious = np.array([True, False, True, False, True])
    counts = confusion(flagged=flagged, malicious=malicious)
    assert counts == {"true_positives": 2, "false_positives": 1, "true_negatives": 1, "false_negatives": 1}
    assert precision_recall(counts) == {"detection_precision": 2 / 3, "detection_recall": 2 / 3}


def test_precision_and_recall_are_nan_when_undefined():
    found = precision_recall({"true_negatives": 4})
    assert math.isnan(found["detection_precision"]) and math.isnan(found["detection_recall"])
