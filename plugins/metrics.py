"""Built-in test-set metrics, computed at each evaluation."""

from __future__ import annotations

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Metric


@attrs.frozen
class Accuracy(Metric):
    """Share of test samples whose highest logit is the true class."""

    def compute(self, labels, logits):
        return float(np.mean(np.argmax(logits, axis=1) == labels))


@attrs.frozen
class Loss(Metric):
    """Mean softmax cross-entropy of the test samples."""

    def compute(self, labels, logits):
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-np.mean(log_probs[np.arange(len(labels)), labels]))


@hookimpl
def fedarena_register_metrics(registry):
    registry.add("accuracy", Accuracy)
    registry.add("loss", Loss)
