"""Label flipping: its test metrics, its registration."""

import numpy as np
import pytest

from fedarena.plugins.attacks import label_flip as A

from attack_harness import FACTS, check_registers


def test_label_flip_metrics_source_recall_and_flip_rate():
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.array([2, 2, 2, 2, 0, 0, 1, 1, 3, 3], np.int32)
    predictions = np.array([2, 1, 1, 0, 1, 1, 1, 1, 1, 3])

    def predict(inputs):
        return np.eye(4)[predictions[inputs[:, 0].astype(int)]]

    found = A.LabelFlip(source=2, target=1).test_metrics(predict, x, y, FACTS)
    assert found == {"source_recall": pytest.approx(0.25), "flip_rate": pytest.approx(0.5)}
    all_to_one = A.LabelFlip(mode="all_to_one", target=1).test_metrics(predict, x, y, FACTS)
    assert all_to_one == {"flip_rate": pytest.approx(5 / 8)}
    assert A.LabelFlip(mode="random").test_metrics(predict, x, y, FACTS) == {}


def test_registration():
    check_registers(A, "label_flip", A.LabelFlip)
