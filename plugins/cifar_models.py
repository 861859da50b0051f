"""The CIFAR models of the backdoor and robustness papers, with BatchNorm:
``resnet18`` and ``vgg11``.

They are written as pure functions of their tensors (`Network`, built with
``fedarena.plugins._functional``), not as Keras models: TFF's conversion of
Keras models cannot carry BatchNorm's running statistics.  The engine runs
them through the same flat vector as every model, trainable tensors first,
then the running statistics (``.../moving_mean``, ``.../moving_variance``),
which the server averages like weights (docs/architecture.md, "Models and
running statistics").

``norm``: ``batch`` (the papers' BatchNorm), ``group`` (GroupNorm, Wu & He
2018, as Hsieh et al. 2020 recommend for non-IID federated training) or
``none``.  ``norm_state = "local"`` keeps every normalization layer's
tensors on the clients, as FedBN does (Li et al. 2021, "FedBN: Federated
Learning on Non-IID Features via Local Batch Normalization", ICLR): each
client trains from its own gamma, beta and running statistics, and only
the other tensors are averaged.  Deviation from FedBN: FedBN tests each
client's model on that client's test data; fedarena has one test set at
the server and evaluates the global model with, in each local tensor, the
mean of the values of the clients that have trained so far.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Facts, Model, Network
from fedarena.core.plugin.params import param
from fedarena.plugins import _functional as fn
from fedarena.plugins.models import _image_problems

NORMS = ("batch", "group", "none")


@attrs.frozen
class _NormModel(Model):
    """What the two models share: their normalization parameters and checks."""

    norm: str = param("batch", choices=NORMS, doc="normalization after each convolution")
    norm_state: str = param("global", choices=("global", "local"),
                            doc="global: normalization tensors averaged like every weight; local: each client "
                                "keeps its own (FedBN)")
    groups: int = param(2, doc="groups of GroupNorm (norm = \"group\")", ge=1)
    momentum: float = param(0.1, doc="BatchNorm's running-statistics momentum (PyTorch's convention)", gt=0, le=1)

    _label: ClassVar[str] = ""  # the name scenarios use, for messages
    _min_side: ClassVar[int] = 1

    def _channels(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _problems(self) -> list[str]:
        problems = []
        if self.norm == "group":
            uneven = sorted({c for c in self._channels() if c % self.groups})
            if uneven:
                problems.append(f"{self._label}: {uneven[0]} channels do not divide into {self.groups} groups "
                                f"(norm = \"group\"); choose groups dividing the width")
        if self.norm_state == "local" and self.norm == "none":
            problems.append(f"{self._label}: norm_state = \"local\" keeps the normalization layers on the clients, "
                            f"but norm = \"none\" has none")
        return problems

    def check(self, facts: Facts) -> list[str]:
        problems = self._problems() + _image_problems(self._label, facts.input_shape, self._min_side)
        if self.norm_state == "local" and facts.protocol == "fedsgd":
            problems.append(f"{self._label}: norm_state = \"local\" (FedBN) keeps layers on the clients, which "
                            f"needs local training; use protocol fedavg, or norm_state = \"global\"")
        return problems

    def _norm(self, ops, name, x):
        return fn.norm(ops, name, x, self.norm, momentum=self.momentum, groups=self.groups,
                       local=self.norm_state == "local")

    def _conv(self, ops, name, x, filters, kernel, stride=1):
        # A convolution followed by a normalization needs no bias (the
        # normalization's beta takes its place), as in the papers' models.
        return fn.conv(ops, name, x, filters, kernel, stride, bias=self.norm == "none")

    def network(self, input_shape, num_classes, rng) -> Network:
        problems = self._problems() + _image_problems(self._label, tuple(input_shape), self._min_side)
        if problems:
            raise ValueError("; ".join(problems))
        return fn.network(lambda ops, x: self._logits(ops, x, num_classes), tuple(input_shape), rng)

    def build(self, input_shape, num_classes):
        raise TypeError(f"{self._label} is a functional network (Model.network), not a Keras model")


@attrs.frozen
class ResNet18(_NormModel):
    """ResNet-18 (He et al. 2016), the CIFAR variant of the backdoor papers.

    From "Deep residual learning for image recognition" (CVPR 2016): the
    18-layer network of table 1, four stages of two basic blocks (two 3x3
    convolutions each, identity shortcut) with 64, 128, 256 and 512
    filters, stages 2-4 starting with stride 2, global average pooling and
    a linear layer; BatchNorm after every convolution.

    CIFAR adaptation, as in Bagdasaryan et al. 2020 ("How to backdoor
    federated learning", AISTATS) and the PyTorch CIFAR ResNet they build
    on: the ImageNet stem (7x7 stride-2 convolution and max-pooling) is a
    3x3 stride-1 convolution with 64 filters and no pooling, so a 32x32
    image reaches the last stage at 4x4; where the shape changes the
    shortcut is a strided 1x1 convolution with BatchNorm (the paper's
    option B).  11,173,962 trainable parameters for 10 classes (plus 9,600
    running statistics).  ``width`` scales every stage (64 is the paper's);
    narrow widths are for tests and quick runs."""

    paper = "He et al. 2016, CVPR"

    width: int = param(64, doc="filters of the first stage (doubled in each later stage); 64 in the paper", ge=1)

    _label = "resnet18"
    _min_side = 8

    def _channels(self):
        return tuple(self.width * 2**stage for stage in range(4))

    def _logits(self, ops, x, num_classes):
        import tensorflow as tf

        x = fn.relu(self._norm(ops, "stem/norm", self._conv(ops, "stem/conv", x, self.width, 3)))
        for stage, filters in enumerate(self._channels(), start=1):
            for block in (1, 2):
                name = f"stage{stage}/block{block}"
                stride = 2 if stage > 1 and block == 1 else 1
                y = fn.relu(self._norm(ops, f"{name}/norm1", self._conv(ops, f"{name}/conv1", x, filters, 3, stride)))
                y = self._norm(ops, f"{name}/norm2", self._conv(ops, f"{name}/conv2", y, filters, 3))
                shortcut = x
                if stride != 1 or int(x.shape[-1]) != filters:
                    shortcut = self._norm(ops, f"{name}/shortcut_norm",
                                          self._conv(ops, f"{name}/shortcut", x, filters, 1, stride))
                x = fn.relu(y + shortcut)
        return fn.dense(ops, "logits", tf.reduce_mean(x, axis=[1, 2]), num_classes)


# Configuration A of Simonyan & Zisserman: filters as multiples of the
# first layer's, "M" a 2x2 max-pooling.
VGG11_LAYERS = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")


@attrs.frozen
class VGG11(_NormModel):
    """VGG-11 (Simonyan & Zisserman 2015, configuration A) for 32x32 images.

    From "Very deep convolutional networks for large-scale image
    recognition" (ICLR 2015): eight 3x3 convolutions (64, M, 128, M, 256,
    256, M, 512, 512, M, 512, 512, M; M a 2x2 max-pooling), ReLU after each.

    CIFAR adaptation, as in the FL papers' VGG (the PyTorch CIFAR VGG):
    BatchNorm after every convolution (``norm``), and the classifier is one
    linear layer on the flattened features (512 for 32x32) instead of the
    paper's two 4096-unit layers: after five poolings a 32x32 image is
    1x1x512, and the ImageNet classifier would add 19M parameters to 9M for
    a 10-class task.  Convolutions followed by a normalization have no bias.
    9,228,362 trainable parameters for 10 classes with BatchNorm.  ``width``
    scales every layer (64 is the paper's)."""

    paper = "Simonyan & Zisserman 2015, ICLR"

    width: int = param(64, doc="filters of the first convolution (the later ones are 2, 4 and 8 times it); 64 "
                               "in the paper", ge=1)

    _label = "vgg11"
    _min_side = 32  # five 2x2 poolings

    def _channels(self):
        return tuple(self.width * m for m in VGG11_LAYERS if m != "M")

    def _logits(self, ops, x, num_classes):
        import tensorflow as tf

        convs = 0
        for layer in VGG11_LAYERS:
            if layer == "M":
                x = fn.max_pool(x)
                continue
            convs += 1
            x = fn.relu(self._norm(ops, f"conv{convs}/norm", self._conv(ops, f"conv{convs}/conv", x,
                                                                          self.width * layer, 3)))
        features = int(np.prod(x.shape[1:]))
        return fn.dense(ops, "logits", tf.reshape(x, [-1, features]), num_classes)


@hookimpl
def fedarena_register_models(registry):
    registry.add("resnet18", ResNet18)
    registry.add("vgg11", VGG11)
