"""P1's plain TensorFlow baseline (issue #19): federated averaging written
the way a user would write it without a framework -- a Keras model, each
client's data as ``tf.data`` batches, a ``tf.function`` training step, and
FedAvg by hand over the Keras weights.

Workload P1: MNIST's t10k files, 8,000 training / 2,000 test images (by
default fedarena's test slice: ``dataset mnist(holdout = 2000)`` holds out
the first 2,000 of ``default_rng(0).permutation(10000)``), pixels / 255
(``--standardize``: then ``(x - 0.1307) / 0.3081``), 20 IID clients of 400
images, 10 sampled per round, MLP 784-200-10, SGD 0.05, batch 32, one local
epoch, test accuracy after every round, 30 rounds.

Prints one JSON line: per-round seconds (training, FedAvg and the test
evaluation), the seconds from the process's start (imports included) to
the end of round 1 and to the end of the run, peak RSS, and the accuracy
after each round.  Imports nothing of fedarena.

    python benchmarks/p1_plain_tf.py [--data DIR] [--rounds 30] [--standardize] [--seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist-t10k"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def process_start() -> float:
    """When this process started (epoch seconds), from /proc: imports included."""
    ticks = os.sysconf("SC_CLK_TCK")
    started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime"))
    return boot + started / ticks


STARTED = process_start()


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def read_idx(file: Path):
    import numpy as np

    data = gzip.decompress(file.read_bytes()) if file.suffix == ".gz" else file.read_bytes()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_p1(folder: Path, standardize: bool):
    """(train_x, train_y, test_x, test_y): the t10k images as float32 [n, 784]."""
    import numpy as np

    x = read_idx(folder / "t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / np.float32(255)
    y = read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int32)
    if standardize:
        x = (x - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
    order = np.random.default_rng(0).permutation(len(y))  # fedarena's holdout = 2000
    test, train = np.sort(order[:2000]), np.sort(order[2000:])
    return x[train], y[train], x[test], y[test]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with MNIST's t10k IDX files")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--standardize", action="store_true", help="(x - 0.1307) / 0.3081 after / 255")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(args.seed)
    train_x, train_y, test_x, test_y = load_p1(args.data, args.standardize)
    rng = np.random.default_rng(args.seed)
    clients = np.array_split(rng.permutation(len(train_y)), args.clients)  # IID
    datasets = [tf.data.Dataset.from_tensor_slices((train_x[c], train_y[c])).shuffle(len(c), seed=args.seed)
                .batch(32) for c in clients]

    model = tf.keras.Sequential([
        tf.keras.layers.Input((784,)),
        tf.keras.layers.Dense(200, activation="relu"),
        tf.keras.layers.Dense(10),
    ])
    optimizer = tf.keras.optimizers.SGD(learning_rate=0.05)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    @tf.function
    def accuracy(x, y):
        predicted = tf.argmax(model(x, training=False), axis=1, output_type=tf.int32)
        return tf.reduce_mean(tf.cast(predicted == y, tf.float32))

    test_x_t, test_y_t = tf.constant(test_x), tf.constant(test_y)
    global_weights = model.get_weights()
    round_s, accuracies, first_round_end = [], [], None
    for _ in range(args.rounds):
        began = time.perf_counter()
        chosen = rng.choice(args.clients, args.per_round, replace=False)
        new_weights, sizes = [], []
        for c in chosen:
            model.set_weights(global_weights)
            for x, y in datasets[c]:
                train_step(x, y)
            new_weights.append(model.get_weights())
            sizes.append(len(clients[c]))
        share = np.asarray(sizes, np.float64) / sum(sizes)
        global_weights = [sum(s * w[i] for s, w in zip(share, new_weights)).astype(np.float32)
                          for i in range(len(global_weights))]
        model.set_weights(global_weights)
        accuracies.append(float(accuracy(test_x_t, test_y_t)))
        round_s.append(time.perf_counter() - began)
        if first_round_end is None:
            first_round_end = time.time() - STARTED
    print(json.dumps(dict(
        script="plain_tf", tensorflow=tf.__version__, standardize=args.standardize, rounds=args.rounds,
        round_s=round_s, first_round_from_start_s=first_round_end, whole_run_from_start_s=time.time() - STARTED,
        peak_rss_mib=peak_rss_mib(), accuracy=accuracies[-1], accuracies=accuracies,
    )), flush=True)


if __name__ == "__main__":
    main()
