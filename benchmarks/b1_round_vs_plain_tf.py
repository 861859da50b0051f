"""B1: one framework round against a hand-written plain TensorFlow loop.

Workload (both sides, identical data and clients): FedAvg, MLP 784-200-10,
20 clients x 600 synthetic samples of 784 features, all 20 sampled, batch
32, one local epoch, SGD 0.05.  The baseline (`common.PlainTF`) trains each
client with one ``tf.function`` call holding the whole local epoch, on the
client's data already in memory, and averages in NumPy; it reproduces the
engine's shuffle, so both sides compute the same new weights (checked: to
about 1e-8, except in a round where a ReLU input sits within rounding of 0
for some sample: the Python process's TF uses oneDNN kernels, the TFF worker
Eigen's; with TF_ENABLE_ONEDNN_OPTS=0 they agree in every round).

Framework round: the wall time of one ``next(run.rounds())`` (no evaluation
in the timed rounds; the HDF5 write of ``fedarena run`` is not included).
Target: framework / plain <= 1.25.
"""

from __future__ import annotations

import common

TARGET = 1.25


def main(quick: bool = False) -> list[dict]:
    from fedarena.core.execution.engine.run import Run
    from fedarena.core.execution.backends.worker import tff_workers

    repeats = 4 if quick else 12
    with tff_workers():
        run = Run(common.make_scenario(common.scenario_text()))
        try:
            plain = common.PlainTF(run)
            fw, base, results, diff = common.paired_rounds(run, plain.round, repeats)
            same_batches = plain.shuffle_matches
        finally:
            run.close()
    ratios = [f / b for f, b in zip(fw, base)]
    stages = common.stage_medians(results)
    return [common.result(
        "B1", "framework/plain-TF", ratios, TARGET,
        framework_s=common.summary(fw), plain_s=common.summary(base), stages_s=stages,
        max_weight_difference=diff,
        note=f"framework {common.fmt_seconds(fw)}, plain TF {common.fmt_seconds(base)}; "
             f"new weights agree to {diff:.1e}"
             + ("" if same_batches else " (the engine's shuffle was not reproduced: same work, other batches)"),
    )]


if __name__ == "__main__":
    common.emit(main(common.quick_flag()))
