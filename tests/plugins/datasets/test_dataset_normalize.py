"""``normalize = "standard"``: every image dataset's inputs minus its stated
per-channel mean, divided by its stated standard deviation, exactly, on
train and test alike; the default leaves the inputs as they were; a
trigger's value is then in the standardized space."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from conftest import REPO
from dataset_helpers import write_cifar_folder, write_emnist_db, write_mnist_folder
from fedarena.core.errors import RunError
from fedarena.core.plugin.interfaces import DatasetArrays, DatasetInfo
from fedarena.plugins.datasets._common import ChannelStats, channel_stats, normalized
from fedarena.plugins.datasets.cifar10 import Cifar10
from fedarena.plugins.datasets.cifar100 import Cifar100
from fedarena.plugins.datasets.cinic10 import Cinic10
from fedarena.plugins.datasets.digits import Digits
from fedarena.plugins.datasets.emnist import Emnist
from fedarena.plugins.datasets.fashion_mnist import FashionMnist
from fedarena.plugins.datasets.mnist import Mnist
from fedarena.plugins.datasets.tiny_imagenet import TinyImagenet
from fedarena.plugins.triggers import Pixel
from test_dataset_cifar100 import write_cifar100
from test_dataset_images_from_folders import write_cinic, write_tiny

F = np.float32


def standard(pixels_01: np.ndarray, mean, std) -> np.ndarray:
    """The stated transform, written out: float32 (x - mean) / std per channel."""
    return (pixels_01.astype(F) - np.asarray(mean, F)) / np.asarray(std, F)


# ---------------------------------------------------------------- the stated numbers, applied exactly


@pytest.mark.parametrize("holdout", [0, 12])
def test_mnist_standard_is_the_stated_transform_of_the_files_pixels(tmp_path, holdout):
    written = write_mnist_folder(tmp_path, gz=True)
    data = Mnist(path=str(tmp_path), holdout=holdout, normalize="standard").load(seed=0)
    plain = Mnist(path=str(tmp_path), holdout=holdout).load(seed=0)
    if not holdout:
        # From the file's bytes: uint8 / 255, then (x - 0.1307) / 0.3081, bit for bit.
        np.testing.assert_array_equal(data.train_x[..., 0], standard(written["train"][0] / F(255), 0.1307, 0.3081))
        np.testing.assert_array_equal(data.test_x[..., 0], standard(written["t10k"][0] / F(255), 0.1307, 0.3081))
        np.testing.assert_array_equal(plain.train_x[..., 0], written["train"][0] / F(255))  # default: unchanged
    # The same stated numbers with a held-out test set (not the held-out set's own).
    np.testing.assert_array_equal(data.train_x, standard(plain.train_x, 0.1307, 0.3081))
    np.testing.assert_array_equal(data.test_x, standard(plain.test_x, 0.1307, 0.3081))
    np.testing.assert_array_equal(data.train_y, plain.train_y)
    assert data.info == plain.info == DatasetInfo(num_classes=10, input_shape=(28, 28, 1))
    assert data.train_x.dtype == np.float32
    # Black pixels (0) and white ones (255) land on -mean/std and (1 - mean)/std.
    assert data.train_x.min() == F(-0.1307) / F(0.3081) and data.train_x.max() == (F(1) - F(0.1307)) / F(0.3081)


def test_cifar10_standard_is_per_channel_in_red_green_blue_order(tmp_path):
    written = write_cifar_folder(tmp_path)
    data = Cifar10(path=str(tmp_path), normalize="standard").load(seed=0)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    np.testing.assert_array_equal(data.train_x, standard(written["train"][0] / F(255), mean, std))
    np.testing.assert_array_equal(data.test_x, standard(written["test"][0] / F(255), mean, std))
    np.testing.assert_array_equal(Cifar10(path=str(tmp_path)).load(seed=0).train_x, written["train"][0] / F(255))


@pytest.mark.parametrize("dataset, write, mean, std", [
    (FashionMnist, lambda p: write_mnist_folder(p, gz=False), (0.2860,), (0.3530,)),
    (Cifar100, write_cifar100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    (Cinic10, write_cinic, (0.47889522, 0.47227842, 0.43047404), (0.24205776, 0.23828046, 0.25874835)),
    (TinyImagenet, lambda p: write_tiny(p / "tiny-imagenet-200"), (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
], ids=["fashion_mnist", "cifar100", "cinic10", "tiny_imagenet"])
def test_every_image_dataset_applies_its_stated_numbers(tmp_path, dataset, write, mean, std):
    write(tmp_path)
    plain = dataset(path=str(tmp_path)).load(seed=0)
    data = dataset(path=str(tmp_path), normalize="standard").load(seed=0)
    assert (dataset.STATS.mean, dataset.STATS.std) == (mean, std)  # the numbers docs/data.md states
    np.testing.assert_array_equal(data.train_x, standard(plain.train_x, mean, std))
    np.testing.assert_array_equal(data.test_x, standard(plain.test_x, mean, std))
    np.testing.assert_array_equal(data.train_y, plain.train_y)
    assert plain.train_x.min() >= 0 and plain.train_x.max() <= 1  # the default is still [0, 1]


def test_digits_stated_numbers_are_its_training_sets_own():
    plain, data = Digits().load(seed=0), Digits(normalize="standard").load(seed=0)
    np.testing.assert_array_equal(data.train_x, standard(plain.train_x, 0.3049, 0.3759))
    np.testing.assert_array_equal(data.test_x, standard(plain.test_x, 0.3049, 0.3759))
    mean, std = channel_stats(plain.train_x)  # the numbers were computed once from this set
    assert abs(mean[0] - 0.3049) < 5e-5 and abs(std[0] - 0.3759) < 5e-5


def test_emnist_is_standardized_with_its_training_sets_own_numbers(tmp_path):
    write_emnist_db(tmp_path, {"f0001_10": (5, 2), "f0002_20": (3, 1)})
    plain = Emnist(path=str(tmp_path)).load(seed=0)
    data = Emnist(path=str(tmp_path), normalize="standard").load(seed=0)
    pixels = plain.train_x.astype(np.float64)
    mean, std = pixels.mean(), pixels.std()
    np.testing.assert_array_equal(data.train_x, standard(plain.train_x, mean, std))
    np.testing.assert_array_equal(data.test_x, standard(plain.test_x, mean, std))  # test: the training numbers
    assert abs(data.train_x.astype(np.float64).mean()) < 1e-5 and abs(data.train_x.std() - 1) < 1e-5
    np.testing.assert_array_equal(data.train_writers, plain.train_writers)  # still writers for `natural`


# ---------------------------------------------------------------- the shared function


def test_channel_stats_match_numpy_over_chunks():
    x = np.random.default_rng(3).random((7, 5, 4, 3)).astype(F)
    mean, std = channel_stats(x, rows=6)  # 140 pixels in chunks of 6: both passes cross chunk ends
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, x.astype(np.float64).std(axis=(0, 1, 2)), rtol=1e-12)


def arrays(train_x, test_x):
    return DatasetArrays(train_x=train_x, train_y=np.zeros(len(train_x), np.int32), test_x=test_x,
                         test_y=np.zeros(len(test_x), np.int32), info=DatasetInfo(10, train_x.shape[1:]))


def test_none_returns_the_arrays_untouched_and_a_constant_channel_is_refused():
    x = np.full((4, 2, 2, 1), 0.5, F)
    same = arrays(x, x[:1].copy())
    assert normalized(same, "none", None, "here") is same and (x == 0.5).all()
    with pytest.raises(RunError) as caught:
        normalized(arrays(x, x[:1].copy()), "standard", None, "digits at here")
    assert str(caught.value) == ('digits at here: cannot standardize 1 channels with mean (0.5,) and standard '
                                 'deviation (0.0,); use normalize = "none"')
    with pytest.raises(RunError, match="cannot standardize 3 channels"):
        normalized(arrays(np.ones((2, 2, 2, 3), F), np.ones((1, 2, 2, 3), F)), "standard",
                   ChannelStats((0.5,), (0.25,), "one channel only"), "cifar10")


def test_an_unknown_normalize_is_refused_when_the_scenario_is_checked():
    from fedarena.core.errors import ScenarioError
    from fedarena.core.language.parser import parse
    from fedarena.core.plugin.registry import default_registry
    from fedarena.core.scenario.sweep import check

    text = (REPO / "scenarios" / "quickstart.fls").read_text()
    assert "dataset digits" in text
    with pytest.raises(ScenarioError) as caught:
        check(parse(text.replace("dataset digits", 'dataset digits(normalize = "zscore")'), "q.fls"),
              default_registry())
    assert "parameter 'normalize' of dataset 'digits' must be one of 'none', 'standard', got 'zscore'" in str(
        caught.value)


# ---------------------------------------------------------------- triggers on standardized inputs


def test_a_pixel_trigger_of_standardized_white_stamps_what_white_standardizes_to(tmp_path):
    """The decision docs/data.md states: a trigger's value is in the space the
    model sees, so with normalize = "standard" white is (1 - mean) / std."""
    write_mnist_folder(tmp_path, gz=True)
    plain = Mnist(path=str(tmp_path)).load(seed=0)
    data = Mnist(path=str(tmp_path), normalize="standard").load(seed=0)
    white = (1 - 0.1307) / 0.3081
    assert round(white, 4) == 2.8215  # the number docs/data.md and the pixel trigger's docstring give
    stamped_then_standardized = standard(Pixel(size=3).stamp(plain.train_x), 0.1307, 0.3081)
    np.testing.assert_allclose(Pixel(size=3, value=white).stamp(data.train_x), stamped_then_standardized,
                               atol=1e-6)
    # The default value (1.0) is not white there: a dimmer patch (about pixel 0.44).
    assert not np.allclose(Pixel(size=3).stamp(data.train_x), stamped_then_standardized, atol=1e-3)
    assert attrs.fields(Pixel).value.default == 1.0
