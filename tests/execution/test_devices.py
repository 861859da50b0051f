"""Choosing the backend, and what a run says about where it computes."""

import pytest

from fedarena.core.errors import RunError, UsageError
from fedarena.core.execution.backends import choice


def test_the_shipped_tff_worker_is_built_without_cuda():
    # The start-up message relies on this: if a TFF release ships a CUDA
    # worker, this fails and the message must change.
    assert choice.worker_has_cuda() is False


@pytest.fixture
def gpus(monkeypatch):
    """Pretend TensorFlow sees these GPUs (and the driver is there when it does)."""
    import tensorflow as tf

    class Device:
        def __init__(self, name):
            self.name = name

    def pretend(names, driver=None):
        monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [Device(n) for n in names])
        monkeypatch.setattr(choice, "nvidia_gpus_present", lambda: bool(names) if driver is None else driver)

    return pretend


@pytest.mark.parametrize(
    "names, kind, cuda, expected",
    [
        ([], "worker", False, "fedarena: backend worker: client training, the server stage and evaluation run on the CPU"),
        (["/physical_device:GPU:0"], "worker", False,
         "fedarena: backend worker: TFF's worker is built without CUDA, so client training and the server stage run "
         "on the CPU; evaluation runs on /physical_device:GPU:0 (--backend local trains on the GPU)"),
        (["/physical_device:GPU:0", "/physical_device:GPU:1"], "worker", True,
         "fedarena: backend worker: client training, the server stage and evaluation run on /physical_device:GPU:0, "
         "/physical_device:GPU:1"),
        ([], "local", False,
         "fedarena: backend local: client training, the server stage and evaluation run in this process on the CPU"),
        (["/physical_device:GPU:0"], "local", False,
         "fedarena: backend local: client training, the server stage and evaluation run in this process on "
         "/physical_device:GPU:0"),
    ],
)
def test_the_start_message_says_where_rounds_compute(monkeypatch, gpus, names, kind, cuda, expected):
    gpus(names)
    monkeypatch.setattr(choice, "worker_has_cuda", lambda: cuda)
    assert choice.where_it_computes(kind) == expected


def test_with_workers_the_message_names_them(gpus):
    gpus([])
    assert choice.where_it_computes("remote", ["10.0.0.2:8000", "10.0.0.3:8000"]) == (
        "fedarena: client training and the server stage run on the workers at 10.0.0.2:8000, 10.0.0.3:8000; "
        "evaluation runs in this process on the CPU")


def test_auto_picks_local_on_a_gpu_and_the_measured_default_on_the_cpu(gpus):
    gpus(["/physical_device:GPU:0"])
    assert choice.resolve("auto") == "local"
    gpus([])
    assert choice.resolve("auto") == choice.CPU_DEFAULT
    assert choice.resolve("worker") == "worker" and choice.resolve("local") == "local"
    assert choice.resolve("auto", ["h:1"]) == "remote"


def test_a_backend_with_workers_is_a_usage_error():
    with pytest.raises(UsageError, match="--backend local chooses where a run without --workers computes"):
        choice.resolve("local", ["h:1"])


def test_the_flag_wins_over_the_environment_and_bad_values_are_named(monkeypatch):
    monkeypatch.setenv(choice.BACKEND_VARIABLE, "worker")
    assert choice.requested_backend() == "worker"
    assert choice.requested_backend("local") == "local"
    monkeypatch.setenv(choice.BACKEND_VARIABLE, "gpu")
    with pytest.raises(UsageError, match="FEDARENA_BACKEND must be one of auto, local, worker, not 'gpu'"):
        choice.requested_backend()
    monkeypatch.delenv(choice.BACKEND_VARIABLE)
    assert choice.requested_backend() == "auto"


def test_a_gpu_machine_without_cuda_in_tensorflow_is_one_clear_error(monkeypatch, gpus):
    gpus([], driver=True)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(RunError, match="this machine has an NVIDIA GPU, but TensorFlow cannot use it.*"
                                       "uv sync --extra gpu.*CUDA_VISIBLE_DEVICES=-1"):
        choice.visible_gpus()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # the user hid the GPU on purpose
    assert choice.visible_gpus() == []
