"""B5: per-round time does not grow with the client population.

Two runs in one process and on one TFF worker: 100 and 10,000 clients in
total, 10 sampled per round, the same data per client (32 synthetic samples
of 64 features, one batch), MLP 64-200-10, one epoch, FedAvg.  Rounds of the
two runs are timed in alternation (each round samples different clients).
Target: round time at 10,000 clients / at 100 clients <= 1.2.
"""

from __future__ import annotations

import common

TARGET = 1.2
FEATURES, SAMPLES, PER_ROUND = 64, 32, 10


def main(quick: bool = False) -> list[dict]:
    import time

    from fedarena.core.execution.engine.run import Run
    from fedarena.core.execution.backends.worker import tff_workers

    repeats, warmup = (6, 2) if quick else (16, 2)
    built = {}
    with tff_workers():
        runs = {}
        try:
            for clients in (100, 10_000):
                started = time.perf_counter()
                runs[clients] = Run(common.make_scenario(common.scenario_text(
                    clients=clients, per_round=PER_ROUND, features=FEATURES, samples_per_client=SAMPLES)))
                built[clients] = time.perf_counter() - started
            small, large = runs[100].rounds(), runs[10_000].rounds()
            for _ in range(warmup):
                next(small), next(large)
            small_s, large_s = [], []
            for i in range(repeats):
                if i % 2 == 0:
                    small_s.append(common.timed(next, small)[0])
                    large_s.append(common.timed(next, large)[0])
                else:
                    large_s.append(common.timed(next, large)[0])
                    small_s.append(common.timed(next, small)[0])
        finally:
            for run in runs.values():
                run.close()
    ratios = [b / a for a, b in zip(small_s, large_s)]
    return [common.result(
        "B5", "round@10,000 clients/round@100", ratios, TARGET,
        round_100_s=common.summary(small_s), round_10000_s=common.summary(large_s), setup_s=built,
        note=f"per round: 100 clients {common.fmt_seconds(small_s)}, 10,000 clients {common.fmt_seconds(large_s)}; "
             f"Run() set-up (data, client store, tracing) {built[100]:.1f} s and {built[10_000]:.1f} s",
    )]


if __name__ == "__main__":
    common.emit(main(common.quick_flag()))
