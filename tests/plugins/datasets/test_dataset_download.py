"""Datasets and the network: where the standard loaders cache their files,
``check`` refusing a dataset that is neither cached nor given a path (with
the fetch command), ``fedarena data fetch`` (the loader's download replaced
by one that writes files here: no network) checking SHA-256 before
anything reaches the cache, and ``fedarena data list``."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys

import attrs
import numpy as np
import pytest

from dataset_helpers import fake_images
from fedarena.core.cli.main import main
from fedarena.core.errors import RunError, ScenarioError
from fedarena.core.language.parser import parse
from fedarena.core.plugin.registry import default_registry
from fedarena.core.scenario.sweep import check
from fedarena.plugins.datasets import _download
from fedarena.plugins.datasets._download import DOWNLOAD, RemoteFile, Source, cache_root, tff_sqlite_check
from fedarena.plugins.datasets.cifar10 import Cifar10
from fedarena.plugins.datasets.mnist import Mnist

MNIST_MISSING = (
    "dataset 'mnist' is not on this machine and has no path: run 'fedarena data fetch mnist' on a machine with "
    "network (it writes mnist.npz, 11 MB, to ~/.keras/datasets), or give path = \"FOLDER\" holding the IDX files "
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz "
    "(or a Keras-layout mnist.npz)"
)

SCENARIO = """scenario "s" {
  rounds 1
  dataset mnist
  split iid over 4 clients
  model mlp
}"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty home folder, and no FEDARENA_DATA: a machine that has fetched nothing."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv("FEDARENA_DATA", raising=False)
    return folder


def mnist_npz_bytes(tmp_path) -> bytes:
    """A small file in Keras' mnist.npz layout."""
    x, y = fake_images(12, seed=1)
    file = tmp_path / "made.npz"
    np.savez(file, x_train=x[:8], y_train=y[:8], x_test=x[8:], y_test=y[8:])
    return file.read_bytes()


def with_checksum(monkeypatch, cls, data: bytes):
    """Make ``cls``'s one file's published SHA-256 that of ``data``."""
    source = cls.SOURCE
    remote = attrs.evolve(source.files[0], sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(cls, "SOURCE", attrs.evolve(source, files=(remote,)))
    return cls.SOURCE


def serving(monkeypatch, data: bytes, loader="keras"):
    """Replace the loader's download with one that writes ``data``; returns the calls made."""
    calls = []

    def download(remote: RemoteFile, folder):
        calls.append(remote.origin)
        file = folder / remote.name.rsplit("/", 1)[-1]
        file.write_bytes(data)
        return str(file)

    monkeypatch.setitem(DOWNLOAD, loader, download)
    return calls


# ---------------------------------------------------------------- where, and check


def test_the_caches_are_the_standard_loaders_or_under_fedarena_data(home, tmp_path, monkeypatch):
    assert cache_root("keras") == home / ".keras" and cache_root("tff") == home / ".tff"
    assert Mnist.SOURCE.location() == home / ".keras" / "datasets" / "mnist.npz"
    monkeypatch.setenv("FEDARENA_DATA", str(tmp_path / "data"))
    assert Mnist.SOURCE.location() == tmp_path / "data" / "keras" / "datasets" / "mnist.npz"
    assert cache_root("tff") == tmp_path / "data" / "tff"


def test_check_refuses_a_dataset_neither_cached_nor_given_a_path(home):
    with pytest.raises(ScenarioError) as caught:
        check(parse(SCENARIO, "s.fls"), default_registry())
    assert str(caught.value) == f"s.fls:3:11: {MNIST_MISSING}\n      dataset mnist\n              ^"
    # Once the file is where Keras keeps it, the scenario checks.
    (home / ".keras" / "datasets").mkdir(parents=True)
    (home / ".keras" / "datasets" / "mnist.npz").write_bytes(b"cached")
    assert check(parse(SCENARIO, "s.fls"), default_registry()).dataset == Mnist()


def test_every_downloadable_dataset_says_its_fetch_command_and_files(home):
    for name, files, folder in (
        ("fashion_mnist", "train-labels-idx1-ubyte.gz, train-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, "
                          "t10k-images-idx3-ubyte.gz, 30 MB", "~/.keras/datasets/fashion-mnist"),
        ("cifar10", "cifar-10-batches-py.tar.gz, 170 MB", "~/.keras/datasets"),
        ("cifar100", "cifar-100-python.tar.gz, 169 MB", "~/.keras/datasets"),
        ("emnist", "emnist_all.sqlite, about 1.5 GB", "~/.tff"),
        ("shakespeare", "shakespeare.sqlite, a few MB", "~/.tff"),
    ):
        dataset = default_registry().get("dataset", name).cls()
        (problem,) = dataset.check(None)
        assert problem.startswith(
            f"dataset '{name}' is not on this machine and has no path: run 'fedarena data fetch {name}' on a "
            f"machine with network (it writes {files}, to {folder}), or give path = \"FOLDER\" holding "), problem


def test_check_does_not_import_tensorflow(home, tmp_path):
    scenario = tmp_path / "s.fls"
    scenario.write_text(SCENARIO)
    code = ("import sys\nfrom fedarena.core.cli.main import main\n"
            f"code = main(['check', {str(scenario)!r}])\nprint(code, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"HOME": str(home)})
    assert out.stdout.split() == ["2", "False"], out.stderr
    assert "fedarena data fetch mnist" in out.stderr


# ---------------------------------------------------------------- fetch


def test_fetch_downloads_checks_and_moves_into_the_cache(home, tmp_path, monkeypatch, capsys):
    data = mnist_npz_bytes(tmp_path)
    with_checksum(monkeypatch, Mnist, data)
    calls = serving(monkeypatch, data)
    assert main(["data", "fetch", "mnist"]) == 0
    cached = home / ".keras" / "datasets" / "mnist.npz"
    assert cached.read_bytes() == data
    assert calls == ["https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"]
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "mnist: ready in ~/.keras/datasets/mnist.npz"
    assert f"SHA-256 {hashlib.sha256(data).hexdigest()}, as published" in out[-2]
    assert [p.name for p in (home / ".keras").iterdir()] == ["datasets"]  # no scratch folder left
    # The dataset now loads from the cache, with no path.
    arrays = Mnist().load(seed=0)
    assert (len(arrays.train_y), len(arrays.test_y)) == (8, 4)
    # Fetching again downloads nothing.
    assert main(["data", "fetch", "mnist"]) == 0 and len(calls) == 1
    assert "is already here" in capsys.readouterr().out


def test_a_download_that_fails_its_checksum_never_reaches_the_cache(home, tmp_path, monkeypatch, capsys):
    serving(monkeypatch, b"not the published mnist.npz")
    assert main(["data", "fetch", "mnist"]) == 1
    error = capsys.readouterr().err
    found = hashlib.sha256(b"not the published mnist.npz").hexdigest()
    assert error.strip().endswith(
        f"has SHA-256 {found}, but the published mnist.npz has "
        "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1; the download is corrupt (nothing was "
        "kept): try again"), error
    assert list((home / ".keras").rglob("*")) == []  # neither the file nor a scratch folder
    assert Mnist().check(None) == [MNIST_MISSING]


def test_a_corrupt_cached_file_is_refused_at_load_and_replaced_by_fetch(home, tmp_path, monkeypatch, capsys):
    data = mnist_npz_bytes(tmp_path)
    with_checksum(monkeypatch, Mnist, data)
    cached = home / ".keras" / "datasets" / "mnist.npz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data[:-10])
    with pytest.raises(RunError, match="it is corrupt or not the published file: run 'fedarena data fetch mnist'"):
        Mnist().load(seed=0)
    serving(monkeypatch, data)
    assert main(["data", "fetch", "mnist"]) == 0
    assert cached.read_bytes() == data
    assert "fails its check" in capsys.readouterr().out


def test_without_network_fetch_fails_with_exit_1_and_says_what_to_do(home, monkeypatch, capsys):
    def offline(remote, folder):
        raise Exception(f"URL fetch failure on {remote.origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setitem(DOWNLOAD, "keras", offline)
    assert main(["data", "fetch", "cifar10"]) == 1
    assert capsys.readouterr().err == (
        "error: cifar10: cannot download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (Exception: URL "
        "fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: None -- [Errno -2] Name or "
        "service not known); without network, run 'fedarena data fetch cifar10' on a machine that has it and copy "
        "~/.keras/datasets/cifar-10-batches-py.tar.gz to the same place on this one, or give the dataset a path\n")
    assert list((home / ".keras").rglob("*")) == []
    # The Python API downloads on first use, and fails the same way.
    with pytest.raises(RunError, match="cifar10: cannot download"):
        Cifar10().load(seed=0)


def test_fetch_refuses_unknown_names_and_datasets_without_a_download(home, capsys):
    assert main(["data", "fetch", "mnst"]) == 2
    assert capsys.readouterr().err == "error: unknown dataset 'mnst'; did you mean 'mnist'?\n"
    assert main(["data", "fetch", "digits"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: dataset 'digits' has nothing to download (its data is given by path = ... or needs none); the "
        "datasets to fetch are cifar10, cifar100, emnist, fashion_mnist, mnist, shakespeare")


def test_fetch_puts_files_under_fedarena_data(home, tmp_path, monkeypatch):
    monkeypatch.setenv("FEDARENA_DATA", str(tmp_path / "data"))
    data = mnist_npz_bytes(tmp_path)
    with_checksum(monkeypatch, Mnist, data)
    serving(monkeypatch, data)
    assert main(["data", "fetch", "mnist"]) == 0
    assert (tmp_path / "data" / "keras" / "datasets" / "mnist.npz").read_bytes() == data
    assert not (home / ".keras").exists()


# ---------------------------------------------------------------- TFF's files (no published checksum)


def tff_database(file, splits: dict[str, dict[str, int]]):
    connection = sqlite3.connect(file)
    connection.execute("CREATE TABLE examples (split_name TEXT, client_id TEXT, serialized_example_proto BLOB)")
    connection.execute("CREATE TABLE client_metadata (client_id TEXT, split_name TEXT, num_examples INTEGER)")
    for split, clients in splits.items():
        for client, count in clients.items():
            connection.execute("INSERT INTO client_metadata VALUES (?, ?, ?)", (client, split, count))
    connection.commit()
    connection.close()
    return file


def test_tff_files_are_checked_against_the_published_counts(tmp_path):
    verify = tff_sqlite_check("toy", {"train": (2, 5), "test": (2, 3)})
    good = tff_database(tmp_path / "good.sqlite", {"train": {"a": 2, "b": 3}, "test": {"a": 1, "b": 2}})
    assert verify(good) == ("train: 2 clients, 5 examples (as published); "
                            "test: 2 clients, 3 examples (as published)")
    other = tff_database(tmp_path / "other.sqlite", {"train": {"a": 4}, "test": {"a": 1, "b": 2}})
    assert verify(other).startswith("train: 1 clients, 4 examples (TFF publishes 2 and 5)")
    empty = tff_database(tmp_path / "empty.sqlite", {"train": {"a": 4}})
    with pytest.raises(RunError, match="has no clients in its split test"):
        verify(empty)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(RunError, match="not a readable SQLite database"):
        verify(tmp_path / "junk.sqlite")


def test_fetching_a_tff_file_records_its_hash_and_checks_its_contents(home, tmp_path, monkeypatch, capsys):
    made = tff_database(tmp_path / "made.sqlite", {"train": {"a": 2, "b": 3}, "test": {"a": 1, "b": 2}})
    source = Source(dataset="toy", loader="tff", size="1 KB", path_hint="x",
                    files=(RemoteFile("toy.sqlite", "https://example.invalid/toy.sqlite.lzma"),),
                    verify_contents=tff_sqlite_check("toy", {"train": (2, 5), "test": (2, 3)}))
    serving(monkeypatch, made.read_bytes(), loader="tff")
    lines = []
    assert source.fetch(say=lines.append) == [home / ".tff" / "toy.sqlite"]
    digest = hashlib.sha256(made.read_bytes()).hexdigest()
    size = _download.size_text(len(made.read_bytes()))
    assert lines[-1] == (f"toy: wrote ~/.tff/toy.sqlite ({size}; SHA-256 {digest}; no checksum is published; "
                         "contents checked: train: 2 clients, 5 examples (as published); test: 2 clients, 3 "
                         "examples (as published))")


# ---------------------------------------------------------------- list


def test_data_list_shows_every_dataset_cached_or_not(home, capsys):
    assert main(["data", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert set(default_registry().names("dataset")) <= set(rows)
    assert rows["mnist"].split()[1:] == ["not", "fetched", "11", "MB", "~/.keras/datasets/mnist.npz", "(fedarena",
                                         "data", "fetch", "mnist)"]
    assert rows["digits"].split()[1:3] == ["offline", "-"]
    assert rows["tiny_imagenet"].split()[1:3] == ["path", "only"]
    assert rows["caches:"].startswith("caches: ~/.keras/datasets (Keras), ~/.tff (TFF); set FEDARENA_DATA=DIR")
    (home / ".tff").mkdir()
    (home / ".tff" / "shakespeare.sqlite").write_bytes(b"x" * 2500)
    main(["data", "list"])
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert rows["shakespeare"].split()[1:] == ["cached", "2.5", "KB", "~/.tff/shakespeare.sqlite"]


def test_the_declared_checksums_are_the_keras_loaders(monkeypatch):
    """The SHA-256 values fetch checks are those Keras' own loaders pass as file_hash."""
    import inspect

    from keras.src.datasets import cifar10, cifar100, mnist

    from fedarena.plugins.datasets.cifar100 import Cifar100

    for module, cls in ((mnist, Mnist), (cifar10, Cifar10), (cifar100, Cifar100)):
        source = inspect.getsource(module.load_data)
        (remote,) = cls.SOURCE.files
        assert remote.sha256 in source and remote.origin.rsplit("/", 1)[-1] in source, cls
    assert _download.DATA_ENV == "FEDARENA_DATA"


def test_the_real_download_functions_fill_the_cache_from_a_file_url(home, tmp_path, monkeypatch):
    """Keras' get_file and TFF's get_compressed_file, as fetch calls them,
    read a file:// origin as they would a web one: no network needed."""
    import lzma

    data = mnist_npz_bytes(tmp_path)
    (tmp_path / "served.npz").write_bytes(data)
    remote = RemoteFile("datasets/mnist.npz", (tmp_path / "served.npz").as_uri(), hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(Mnist, "SOURCE", attrs.evolve(Mnist.SOURCE, files=(remote,)))
    Mnist.SOURCE.fetch(say=lambda line: None)
    assert Mnist().load(seed=0).train_x.shape == (8, 28, 28, 1)

    made = tff_database(tmp_path / "made.sqlite", {"train": {"a": 2}, "test": {"a": 1}})
    (tmp_path / "toy.sqlite.lzma").write_bytes(lzma.compress(made.read_bytes()))
    source = Source(dataset="toy", loader="tff", size="1 KB", path_hint="x",
                    files=(RemoteFile("toy.sqlite", (tmp_path / "toy.sqlite.lzma").as_uri()),))
    source.fetch(say=lambda line: None)
    assert (home / ".tff" / "toy.sqlite").read_bytes() == made.read_bytes()
