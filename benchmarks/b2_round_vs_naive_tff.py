"""B2: one framework round against the same client work written as naive TFF.

Workload: as B1 (FedAvg, MLP 784-200-10, 20 clients x 600 samples, batch
32, one epoch, SGD 0.05).  The baseline (`common.NaiveTFF`) is what a TFF
user writes first: ``tff.federated_map`` over a
``tff.tensorflow.computation`` whose client data (a tf.data sequence of
shuffled mini-batches) is passed from Python every round, then
``tff.federated_mean`` weighted by example counts.  It runs on the same
fedarena-owned TFF worker.  Target: framework / naive TFF <= 0.8.
"""

from __future__ import annotations

import common

TARGET = 0.8


def main(quick: bool = False) -> list[dict]:
    from fedarena.core.execution.engine.run import Run
    from fedarena.core.execution.backends.worker import tff_workers

    repeats = 4 if quick else 10
    with tff_workers():
        run = Run(common.make_scenario(common.scenario_text()))
        try:
            naive = common.NaiveTFF(run)
            fw, base, results, _ = common.paired_rounds(run, naive.round, repeats)
        finally:
            run.close()
    ratios = [f / b for f, b in zip(fw, base)]
    return [common.result(
        "B2", "framework/naive-TFF", ratios, TARGET,
        framework_s=common.summary(fw), naive_tff_s=common.summary(base), stages_s=common.stage_medians(results),
        note=f"framework {common.fmt_seconds(fw)}, naive TFF {common.fmt_seconds(base)}",
    )]


if __name__ == "__main__":
    common.emit(main(common.quick_flag()))
