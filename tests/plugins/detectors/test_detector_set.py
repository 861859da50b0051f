"""The built-in detectors as a set: one module each, all registered, and
their parameter ranges."""

import attrs
import pytest

from fedarena.core.plugin.interfaces import Detector
from fedarena.plugins.detectors import (
    auror, contra, cosine_outlier, flame, fldetector, foolsgold, label_flip_pca, norm_outlier,
)

MODULES = (auror, contra, cosine_outlier, flame, fldetector, foolsgold, label_flip_pca, norm_outlier)


def test_registration_and_parameter_ranges():
    added = {}

    class Recorder:
        def add(self, name, cls):
            added[name] = cls

    for module in MODULES:
        module.fedarena_register_detectors(registry=Recorder())
    assert sorted(added) == ["auror", "contra", "cosine_outlier", "flame", "fldetector", "foolsgold",
                             "label_flip_pca", "norm_outlier"]
    assert all(attrs.has(cls) and issubclass(cls, Detector) for cls in added.values())
    assert flame.Flame().noise_lambda == 0.001 and flame.Flame().min_cluster_fraction == 0.5
    with pytest.raises(ValueError, match="min_cluster_fraction"):
        flame.Flame(min_cluster_fraction=0.4)
    with pytest.raises(ValueError, match="confidence"):
        foolsgold.FoolsGold(confidence=1.0)
    assert norm_outlier.NormOutlier().threshold == 3.5 and cosine_outlier.CosineOutlier().threshold == 3.5
    assert flame.Flame(layers=["dense_1"]).layers == ("dense_1",)
