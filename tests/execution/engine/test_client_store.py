"""The client store: every client's samples written once, read by client id
inside the client computation."""

import numpy as np
import tensorflow as tf

from fedarena.core.execution.engine.client_store import ClientStore


def test_client_data_is_stored_once_and_read_by_client_id_inside_the_computation():
    import tensorflow_federated as tff

    x = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    y = np.arange(6, dtype=np.int32)
    store = ClientStore(x, y, [np.array([0, 3]), np.array([], int), np.array([5, 1, 2])])
    read = tff.tensorflow.computation(lambda client: store.read(client, (2, 2)), tff.TensorType(np.int32))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:  # the computation's body, run directly
        for client, part in enumerate([[0, 3], [], [5, 1, 2]]):
            got_x, got_y = session.run(store.read(tf.constant(client), (2, 2)))
            np.testing.assert_array_equal(got_x, x[part].reshape(-1, 2, 2))
            np.testing.assert_array_equal(got_y, y[part])
    assert read.type_signature.parameter == tff.TensorType(np.int32)
    directory = store.directory
    store.close()
    assert not directory.exists()
