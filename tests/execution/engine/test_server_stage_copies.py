"""The server stage's short cuts that save copies of the [K, d] update
matrix (`build_server_stage`, `detect_on_kept`, `aggregate_kept`; benchmark
B4): the norm proves a row finite only when it is finite itself, and with
every row kept the detectors and the aggregator get the whole matrix."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedarena.core.execution.backends.local import local_backend
from fedarena.core.execution.engine.computations import build_gather, build_server_stage
from fedarena.core.plugin.interfaces import Facts, Layer
from fedarena.core.scenario.roles import Role
from fedarena.plugins.aggregators.fedavg import FedAvg

F32 = np.float32
FACTS = Facts(num_clients=4, clients_per_round=4, num_classes=3, input_shape=(3,))
ROW = tff.StructType([
    ("delta", tff.TensorType(F32, [2])), ("n", F32), ("slot", np.int32), ("group", np.int32),
    ("client", np.int32), ("loss", F32),
])


@pytest.fixture(scope="module")
def local_ctx():
    with local_backend() as context:
        yield context


def _stage(detectors=()):
    return build_server_stage(build_gather(ROW).rows_type, dim=2, layers=(Layer("w", (2,), 0),), facts=FACTS,
                              aggregator=(Role("aggregator"), FedAvg()), detectors=detectors)


def _run(stage, delta):
    k = len(delta)
    rows = dict(delta=np.asarray(delta, F32), n=np.ones(k, F32), slot=np.arange(k, dtype=np.int32),
                group=np.full(k, -1, np.int32), client=np.arange(k, dtype=np.int32), loss=np.zeros(k, F32))
    return stage(np.zeros(2, F32), rows, dict(round=np.int32(1), seed=np.array([0, 1], np.int64), state={}))


def test_a_finite_row_whose_norm_overflows_is_kept(local_ctx):
    out = _run(_stage(), [[3e38, 3e38], [1.0, 1.0], [np.nan, 0.0]])
    assert np.asarray(out["finite"]).tolist() == [True, True, False]
    assert np.asarray(out["kept"]).tolist() == [True, True, False]
    assert np.isinf(out["update_norm"][0]) and out["update_norm"][1] == np.float32(np.sqrt(2.0))
    np.testing.assert_allclose(out["weights"], [1.5e38, 1.5e38], rtol=1e-6)


class Halve:
    """A detector that halves the rows it sees, keeps them all and scores
    each by its client's id."""

    def apply(self, updates, ctx, state):
        n = tf.shape(updates)[0]
        return updates * 0.5, tf.cast(ctx.client_ids, tf.float32), tf.ones([n], tf.bool), state


@pytest.mark.parametrize("delta", [
    [[2.0, 4.0], [6.0, 8.0]],  # every row kept: the matrix itself goes in and out
    [[2.0, 4.0], [np.inf, 8.0], [6.0, 8.0]],  # a row dropped: the kept ones gathered and scattered back
])
def test_the_detectors_rows_of_the_kept_rows_are_aggregated(local_ctx, delta):
    out = _run(_stage([(Role("detector", 0), Halve())]), delta)
    np.testing.assert_array_equal(out["weights"], [2.0, 3.0])  # the mean of the halved kept rows
    kept = [bool(np.isfinite(row).all()) for row in delta]
    assert np.asarray(out["kept"]).tolist() == kept
    scores = np.asarray(out["detector_scores"])[:, 0]
    np.testing.assert_array_equal(scores[kept], np.flatnonzero(kept))  # each kept row's own client
    assert np.isnan(scores[[not k for k in kept]]).all()
