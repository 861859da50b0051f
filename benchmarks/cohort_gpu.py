"""Cohort training at CIFAR scale (issue #19 item 5): pfl-research's
CIFAR-10 setting, 1,000 clients x 50 samples, 50 sampled per round, a
small CNN (`cnn`: two 5x5 convolutions, dense 512), batch 10, one local
epoch, with FedAvg, Multi-Krum and FLAME: client updates per second and
the projected time of 1,500 rounds, batched (``client_group 50``) against
per-client.

The data is synthetic, of CIFAR-10's shape (32x32x3, 10 classes): the
time of a round does not depend on the pixels.  The batched clients'
convolutions run as one grouped convolution (`cohort.vectorised_per_client`).
Runs as is on a GPU; ``--quick`` (for a CPU) takes 100 clients x 50
samples, 10 per round, in one group of 10, and fewer rounds."""

from __future__ import annotations

import attrs
import numpy as np

import common
from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Dataset, DatasetArrays, DatasetInfo
from fedarena.core.plugin.params import param

PROJECTED_ROUNDS = 1500


@attrs.frozen
class CifarShaped(Dataset):
    """Random images of CIFAR-10's shape, ``train`` to train and 500 to test."""

    train: int = param(50_000, doc="training samples", ge=1)

    def info(self):
        return DatasetInfo(num_classes=10, input_shape=(32, 32, 3))

    def load(self, seed):
        rng = np.random.default_rng(0)
        x = rng.random((self.train + 500, 32, 32, 3), dtype=np.float32)
        y = rng.integers(0, 10, self.train + 500).astype(np.int32)
        return DatasetArrays(x[: self.train], y[: self.train], x[self.train :], y[self.train :], self.info())


class CifarShapedPlugin:
    @hookimpl
    def fedarena_register_datasets(registry):
        registry.add("cifar_shaped", CifarShaped)


# Multi-Krum assumes a fifth of each round's clients Byzantine (f = per_round // 5).
AGGREGATION = {
    "fedavg": "aggregator fedavg",
    "multi_krum": "aggregator multi_krum(f = {f})",
    "flame": "detector flame\n  aggregator fedavg",
}


def scenario(clients: int, per_round: int, group: int, defense: str, rounds: int) -> str:
    return f"""scenario "cohort at CIFAR scale" {{
  seed 1
  rounds {rounds}
  dataset cifar_shaped(train = {clients * 50})
  split iid over {clients} clients
  model cnn
  training {{
    clients_per_round {per_round}
    local_epochs 1
    batch_size 10
    optimizer sgd(learning_rate = 0.05)
    client_group {group}
  }}
  {AGGREGATION[defense].format(f=per_round // 5)}
  evaluate every {rounds} rounds
  output "/dev/null"
}}"""


def round_seconds(text: str, timed_rounds: int) -> list[float]:
    from fedarena.core.execution.engine.run import Run
    from fedarena.core.language.parser import parse
    from fedarena.core.plugin.registry import build_registry
    from fedarena.core.scenario.sweep import check

    run = Run(check(parse(text, "cohort_gpu.fls"), build_registry(extra_plugins=(("cifar", CifarShapedPlugin),))))
    try:
        rounds = run.rounds()
        next(rounds), next(rounds)  # tracing and compiling
        return [common.timed(next, rounds)[0] for _ in range(timed_rounds)]
    finally:
        run.close()


def main(quick: bool = False) -> list[dict]:
    import os

    from fedarena.core.errors import RunError
    from fedarena.core.execution.backends.choice import compute_on, requested_backend

    clients, per_round, timed_rounds = (100, 10, 3) if quick else (1000, 50, 10)
    results = []
    # The backend a run would take (FEDARENA_BACKEND, else auto: on a GPU, the local backend).
    with compute_on(requested_backend()):
        for defense in AGGREGATION:
            seconds = {}
            for label, group in (("per-client", 1), ("batched", per_round)):
                try:
                    seconds[label] = round_seconds(scenario(clients, per_round, group, defense, timed_rounds + 2),
                                                   timed_rounds)
                except RunError as error:  # a setting this machine cannot run: say so, go on with the others
                    print(f"C5 {defense}, {label}: not run: {error}", flush=True)
                    continue
                median = common.summary(seconds[label])["median"]
                results.append(common.result(
                    "C5", f"{defense}, {label}", [per_round / s for s in seconds[label]], None, unit=" updates/s",
                    note=f"round {common.fmt_seconds(seconds[label])}; {PROJECTED_ROUNDS} rounds in "
                         f"{PROJECTED_ROUNDS * median / 3600:.2f} h; load average {os.getloadavg()[0]:.1f}"))
    return results


if __name__ == "__main__":
    common.emit(main(common.quick_flag()))
