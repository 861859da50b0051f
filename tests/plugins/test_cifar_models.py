"""The CIFAR models (resnet18, vgg11): the papers' parameter counts, the
tensors each normalization gives (and FedBN's local ones), logits of the
right shape, and the checker's messages."""

from __future__ import annotations

import numpy as np
import pytest

from fedarena.core.errors import ScenarioError
from fedarena.core.language.parser import parse
from fedarena.core.plugin.interfaces import Facts
from fedarena.core.plugin.registry import default_registry
from fedarena.core.scenario.sweep import check
from fedarena.plugins.cifar_models import VGG11, ResNet18

CIFAR = (32, 32, 3)


def count(tensors) -> int:
    return sum(int(np.prod(np.shape(value))) for _, value in tensors)


def test_resnet18_has_the_cifar_variants_11_173_962_parameters():
    net = ResNet18().network(CIFAR, 10, np.random.default_rng(0))
    assert count(net.trainable) == 11_173_962
    # 20 BatchNorms (the stem, 16 in the blocks, 3 shortcuts) over 4,800 channels: mean and variance each.
    assert count(net.statistics) == 9_600 and len(net.statistics) == 40
    names = [name for name, _ in net.trainable]
    assert names[:3] == ["stem/conv/kernel", "stem/norm/gamma", "stem/norm/beta"]
    assert names[-2:] == ["logits/kernel", "logits/bias"]
    assert sum(name.endswith("shortcut/kernel") for name in names) == 3  # stages 2-4 only
    assert dict(net.trainable)["stem/conv/kernel"].shape == (3, 3, 3, 64)  # 3x3 stem, not 7x7
    assert net.local == ()


def test_vgg11_has_configuration_a_with_one_linear_classifier():
    net = VGG11().network(CIFAR, 10, np.random.default_rng(0))
    assert count(net.trainable) == 9_228_362
    kernels = [value.shape for name, value in net.trainable if name.endswith("conv/kernel")]
    assert [shape[-1] for shape in kernels] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert dict(net.trainable)["logits/kernel"].shape == (512, 10)
    # Without normalization the convolutions get their biases back.
    plain = VGG11(norm="none").network(CIFAR, 10, np.random.default_rng(0))
    assert plain.statistics == () and count(plain.trainable) == 9_228_362 - 2 * 2752 + 2752


def test_group_norm_has_no_statistics_and_local_keeps_every_normalization_tensor():
    grouped = ResNet18(width=4, norm="group").network(CIFAR, 10, np.random.default_rng(0))
    assert grouped.statistics == ()
    local = ResNet18(width=4, norm_state="local").network(CIFAR, 10, np.random.default_rng(0))
    norm_tensors = [n for n, _ in (*local.trainable, *local.statistics) if "norm" in n.split("/")[-2]]
    assert sorted(local.local) == sorted(norm_tensors) and len(local.local) == 20 * 4
    assert {n.rsplit("/", 1)[1] for n in local.local} == {"gamma", "beta", "moving_mean", "moving_variance"}


@pytest.mark.parametrize("model", [ResNet18(width=4), ResNet18(width=4, norm="group"), VGG11(width=2),
                                   VGG11(width=2, norm="none")], ids=repr)
def test_the_models_give_logits_in_training_and_in_evaluation(model):
    import tensorflow as tf

    net = model.network(CIFAR, 7, np.random.default_rng(0))
    trainable = tuple(tf.constant(v) for _, v in net.trainable)
    statistics = tuple(tf.constant(v) for _, v in net.statistics)
    x = tf.constant(np.random.default_rng(1).random((3, *CIFAR), np.float32))
    for training in (True, False):
        logits, after = net.forward(trainable, statistics, x, training)
        assert logits.shape == (3, 7) and np.all(np.isfinite(logits))
        assert len(after) == len(statistics)
    logits, after = net.forward(trainable, statistics, x, True)
    if statistics:  # training moves the running statistics, evaluation does not
        assert any(np.abs(np.asarray(a) - np.asarray(b)).max() > 0 for a, b in zip(after, statistics))


def test_the_initial_values_depend_on_the_generator_only():
    first = ResNet18(width=4).network(CIFAR, 10, np.random.default_rng(3))
    again = ResNet18(width=4).network(CIFAR, 10, np.random.default_rng(3))
    other = ResNet18(width=4).network(CIFAR, 10, np.random.default_rng(4))
    np.testing.assert_array_equal(first.trainable[0][1], again.trainable[0][1])
    assert np.abs(first.trainable[0][1] - other.trainable[0][1]).max() > 0


def facts(shape) -> Facts:
    return Facts(num_clients=4, clients_per_round=4, num_classes=10, input_shape=shape)


def test_the_checks_name_the_problem():
    assert ResNet18().check(facts(CIFAR)) == [] and VGG11().check(facts(CIFAR)) == []
    assert ResNet18().check(facts((8, 8, 1))) == []
    assert ResNet18().check(facts((16,))) == [
        "resnet18 needs image inputs (height, width[, channels]); the dataset's input shape is (16,)"]
    assert VGG11().check(facts((28, 28, 1))) == ["vgg11 needs images of at least 32x32; the dataset's are 28x28"]
    assert ResNet18(width=6, norm="group", groups=4).check(facts(CIFAR)) == [
        'resnet18: 6 channels do not divide into 4 groups (norm = "group"); choose groups dividing the width']
    assert VGG11(norm="none", norm_state="local").check(facts(CIFAR)) == [
        'vgg11: norm_state = "local" keeps the normalization layers on the clients, but norm = "none" has none']
    with pytest.raises(TypeError, match="resnet18 is a functional network"):
        ResNet18().build(CIFAR, 10)


def test_the_checker_reports_a_cifar_model_on_the_wrong_data():
    text = """scenario "s" {
  rounds 1
  dataset digits
  split iid over 4 clients
  model vgg11(norm = "batch")
}"""
    with pytest.raises(ScenarioError) as caught:
        check(parse(text, "s.fls"), default_registry())
    assert "vgg11 needs images of at least 32x32; the dataset's are 8x8" in str(caught.value)
