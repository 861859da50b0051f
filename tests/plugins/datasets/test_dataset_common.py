"""What every dataset promises without its files: ``info`` and the static
check need none, and scenarios name each dataset through the registry.
Also that importing the dataset modules does not import TensorFlow."""

from __future__ import annotations

import subprocess
import sys

from fedarena.core.language.parser import parse
from fedarena.core.plugin.interfaces import Facts
from fedarena.core.plugin.registry import default_registry
from fedarena.core.scenario.sweep import check
from fedarena.plugins.datasets.cifar10 import Cifar10
from fedarena.plugins.datasets.emnist import Emnist
from fedarena.plugins.datasets.fashion_mnist import FashionMnist
from fedarena.plugins.datasets.mnist import Mnist


def test_info_needs_no_files_and_check_needs_only_their_presence(tmp_path):
    facts = Facts(num_clients=10, clients_per_round=5, num_classes=10, input_shape=(28, 28, 1))
    for dataset, shape in ((Mnist(path="/nonexistent"), (28, 28, 1)), (FashionMnist(), (28, 28, 1)),
                           (Cifar10(path="/nonexistent", holdout=5), (32, 32, 3)),
                           (Emnist(path="/nonexistent"), (28, 28, 1))):
        assert dataset.info().input_shape == shape and dataset.info().num_classes == 10
    assert Emnist(only_digits=False).info().num_classes == 62
    assert Emnist().info().has_writers and not Mnist().info().has_writers
    # A path is only looked at for being there; its files are read when the run starts.
    for dataset in (Mnist(path=str(tmp_path)), Cifar10(path=str(tmp_path), holdout=5), Emnist(path=str(tmp_path))):
        assert dataset.check(facts) == []
    assert Mnist(path="/nonexistent").check(facts) == [
        "dataset 'mnist': path /nonexistent does not exist; give path = \"FOLDER\" holding the IDX files "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz (or a Keras-layout mnist.npz)"
    ]


def test_scenarios_name_the_datasets_with_a_path(tmp_path):
    text = f"""scenario "s" {{
  rounds 1
  dataset mnist(path = "{tmp_path}", holdout = 2000)
  split dirichlet(alpha = 0.5) over 10 clients
  model cnn
}}"""
    scenario = check(parse(text, "s.fls"), default_registry())
    assert scenario.dataset == Mnist(path=str(tmp_path), holdout=2000)
    for name in ("fashion_mnist", "cifar10", "cifar100", "emnist", "shakespeare", "tiny_imagenet", "cinic10", "npz"):
        assert default_registry().get("dataset", name) is not None


def test_each_dataset_is_a_module_of_its_own_that_does_not_import_tensorflow():
    code = (
        "import sys, pkgutil, importlib, fedarena.plugins.datasets as p\n"
        "names = sorted(m.name for m in pkgutil.iter_modules(p.__path__))\n"
        "for name in names: importlib.import_module('fedarena.plugins.datasets.' + name)\n"
        "print(' '.join(names), 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:-1] == ["_common", "_download", "_idx", "_writers", "cifar10", "cifar100", "cinic10", "digits",
                        "emnist", "fashion_mnist", "mnist", "npz", "shakespeare", "synthetic", "tiny_imagenet"]
    assert out[-1] == "False"
    registry = default_registry()
    for name in out[4:-1]:
        entry = registry.get("dataset", name)
        assert entry is not None and entry.cls.__module__ == f"fedarena.plugins.datasets.{name}"
