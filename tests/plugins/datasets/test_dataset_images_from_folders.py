"""``tiny_imagenet`` and ``cinic10``: image folders in their published
layouts, written here as tiny JPEG and PNG files, read back with the right
labels and pixels; grey images become RGB; clear errors for a wrong layout
or size."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dataset_helpers import assert_images, expect_error
from fedarena.core.plugin.interfaces import Facts
from fedarena.plugins.datasets.cinic10 import CLASSES, Cinic10
from fedarena.plugins.datasets.tiny_imagenet import TinyImagenet

FACTS = Facts(num_clients=4, clients_per_round=2, num_classes=10, input_shape=(32, 32, 3))


def solid(size, colour, mode="RGB"):
    return Image.new(mode, (size, size), colour)


# ---------------------------------------------------------------- CINIC-10 (PNG: lossless)


def write_cinic(root, per_class=(2, 1, 1)):
    """train/, valid/, test/ with `n` PNGs per class; pixel (0, 0) red channel = label * 20 + part."""
    rng = np.random.default_rng(0)
    written = {}
    for part, n in zip(("train", "valid", "test"), per_class):
        images, labels = [], []
        for label, cls in enumerate(CLASSES):
            (root / part / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / part / cls / f"cifar10-{part}-{i}.png")
                images.append(pixels), labels.append(label)
        written[part] = (np.stack(images), np.array(labels))
    return written


def test_cinic10_reads_its_three_parts_by_class(tmp_path):
    written = write_cinic(tmp_path)
    data = Cinic10(path=str(tmp_path)).load(seed=0)
    assert_images(data.train_x, data.train_y, (32, 32, 3), 20)
    assert_images(data.test_x, data.test_y, (32, 32, 3), 10)
    np.testing.assert_array_equal(data.train_x, written["train"][0] / np.float32(255))  # PNG is lossless
    np.testing.assert_array_equal(data.train_y, written["train"][1])
    np.testing.assert_array_equal(data.test_y, np.arange(10))
    both = Cinic10(path=str(tmp_path), use_valid=True).load(seed=0)
    assert len(both.train_y) == 30
    np.testing.assert_array_equal(both.train_x[20:], written["valid"][0] / np.float32(255))
    assert Cinic10(path=str(tmp_path)).check(FACTS) == []


def test_cinic10_grey_images_become_rgb_and_errors_name_the_file(tmp_path):
    write_cinic(tmp_path)
    grey = tmp_path / "test" / "cat" / "cifar10-test-0.png"
    solid(32, 77, "L").save(grey)
    data = Cinic10(path=str(tmp_path)).load(seed=0)
    assert np.all(data.test_x[3] == np.float32(77) / 255)  # cat is label 3
    solid(31, (1, 2, 3)).save(grey)
    expect_error(Cinic10(path=str(tmp_path)), grey, "is 31x31 pixels, expected 32x32")
    grey.write_bytes(b"not a png")
    expect_error(Cinic10(path=str(tmp_path)), "cannot decode", grey)
    (tmp_path / "test" / "cats").mkdir()
    expect_error(Cinic10(path=str(tmp_path)), "has folders cats, not CINIC-10 classes")
    missing = tmp_path / "nowhere"
    assert Cinic10(path=str(missing)).check(FACTS) == [
        f"dataset 'cinic10': path {missing} does not exist; give path = \"FOLDER\" holding CINIC-10 as its archive "
        "unpacks (train/, valid/ and test/, each with a folder of PNG files per class: airplane, automobile, bird, "
        "cat, deer, dog, frog, horse, ship, truck)"]


# ---------------------------------------------------------------- Tiny ImageNet (JPEG: lossy)


def write_tiny(root, wnids=None):
    """The tiny-imagenet-200 layout: 200 wnids (listed unsorted), one training JPEG
    each, three validation JPEGs; each image a solid colour that encodes its class."""
    wnids = wnids or [f"n{9999 - i:08d}" for i in range(200)]  # wnids.txt is not in sorted order
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for wnid in wnids:
        (root / "train" / wnid / "images").mkdir(parents=True)
        label = sorted(wnids).index(wnid)
        solid(64, (label, 255 - label, 128)).save(root / "train" / wnid / "images" / f"{wnid}_0.JPEG", quality=95)
    (root / "val" / "images").mkdir(parents=True)
    chosen = [sorted(wnids)[i] for i in (5, 0, 199)]
    lines = []
    for i, wnid in enumerate(chosen):
        label = sorted(wnids).index(wnid)
        solid(64, (label, 255 - label, 128)).save(root / "val" / "images" / f"val_{i}.JPEG", quality=95)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (root / "test" / "images").mkdir(parents=True)  # unlabelled, not read
    return wnids


def test_tiny_imagenet_labels_are_sorted_wnids_and_val_is_the_test_set(tmp_path):
    write_tiny(tmp_path / "tiny-imagenet-200")
    for path in (tmp_path / "tiny-imagenet-200", tmp_path):  # the folder itself or the one holding it
        data = TinyImagenet(path=str(path)).load(seed=0)
        assert_images(data.train_x, data.train_y, (64, 64, 3), 200)
        assert_images(data.test_x, data.test_y, (64, 64, 3), 3)
        np.testing.assert_array_equal(data.train_y, np.arange(200))
        np.testing.assert_array_equal(data.test_y, [5, 0, 199])
        # Each image's colour encodes its label (JPEG moves solid colours by a level or two at most).
        red = np.round(data.train_x[:, 32, 32, 0] * 255)
        assert np.abs(red - np.arange(200)).max() <= 2
        assert np.abs(np.round(data.test_x[:, 10, 10, 1] * 255) - [250, 255, 56]).max() <= 2
    assert data.info.num_classes == 200 and data.info.input_shape == (64, 64, 3)


def test_tiny_imagenet_errors(tmp_path):
    root = tmp_path / "tiny"
    wnids = write_tiny(root)
    grey = root / "train" / wnids[7] / "images" / f"{wnids[7]}_0.JPEG"
    solid(64, 90, "L").save(grey)
    data = TinyImagenet(path=str(root)).load(seed=0)
    assert np.abs(data.train_x[sorted(wnids).index(wnids[7])] * 255 - 90).max() <= 2  # grey -> RGB
    solid(32, (0, 0, 0)).save(grey, format="JPEG")
    expect_error(TinyImagenet(path=str(root)), grey, "is 32x32 pixels, expected 64x64")
    solid(64, (0, 0, 0)).save(grey, format="JPEG")
    annotations = root / "val" / "val_annotations.txt"
    annotations.write_text("val_0.JPEG\tn123\t0\t0\t1\t1\n")
    expect_error(TinyImagenet(path=str(root)), annotations, "line 1", "WNID one of wnids.txt")
    annotations.unlink()
    expect_error(TinyImagenet(path=str(root)), annotations, "does not exist")
    (root / "wnids.txt").write_text("\n".join(wnids[:150]))
    expect_error(TinyImagenet(path=str(root)), "lists 150 ids", "Tiny ImageNet has 200")
    assert TinyImagenet(path=str(tmp_path / "gone")).check(FACTS)[0].startswith(
        f"dataset 'tiny_imagenet': path {tmp_path / 'gone'} does not exist; give path = \"FOLDER\" holding Tiny "
        "ImageNet")
