"""What a run says about where it computes (issue #9, GPU)."""

import pytest

from fedarena.core.execution import runner


def test_the_shipped_tff_worker_is_built_without_cuda():
    # The start-up message relies on this: if a TFF release ships a CUDA
    # worker, this fails and the message must change.
    assert runner.worker_has_cuda() is False


@pytest.mark.parametrize(
    "gpus, cuda, expected",
    [
        ([], False, "fedarena: computing on the CPU (TensorFlow sees no GPU)\n"),
        (["/physical_device:GPU:0"], False,
         "fedarena: TensorFlow sees /physical_device:GPU:0, but TFF's worker is built without CUDA: client "
         "training and the server stage run on the CPU; evaluation uses the GPU\n"),
        (["/physical_device:GPU:0", "/physical_device:GPU:1"], True,
         "fedarena: computing on /physical_device:GPU:0, /physical_device:GPU:1\n"),
    ],
)
def test_the_start_message_says_where_rounds_compute(monkeypatch, capsys, gpus, cuda, expected):
    import tensorflow as tf

    class Device:
        def __init__(self, name):
            self.name = name

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [Device(n) for n in gpus])
    monkeypatch.setattr(runner, "worker_has_cuda", lambda: cuda)
    runner.log_devices()
    assert capsys.readouterr().err == expected
