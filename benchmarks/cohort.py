"""Cohort training (issue #19): rounds with the sampled clients trained in
groups (training setting ``client_group``) against the per-client path,
same process, rounds interleaved (which one goes first alternates), from
the same weights over the same sampled clients.

Workloads: B1's (20 clients x 600 samples, MLP 784-200-10, batch 32), all
20 per round, in groups of 10 and of 20; and 10 clients x 600, all per
round, in one group of 10 (target: grouped at least 3x the per-client loop
at 10 clients; reported as grouped / per-client round time, so <= 0.33).
Each round's weights are compared between the two paths."""

from __future__ import annotations

import common


def with_group(text: str, size: int) -> str:
    return text.replace("    local_epochs 1\n", f"    local_epochs 1\n    client_group {size}\n")


def compare(clients: int, size: int, repeats: int) -> dict:
    import numpy as np

    from fedarena.core.execution.engine.run import Run

    text = common.scenario_text(clients=clients)
    alone, grouped = Run(common.make_scenario(text)), Run(common.make_scenario(with_group(text, size)))
    try:
        rounds_alone, rounds_grouped = alone.rounds(), grouped.rounds()
        for _ in range(2):  # the first rounds trace and compile
            next(rounds_alone), next(rounds_grouped)
        alone_s, grouped_s, diff = [], [], 0.0
        for i in range(repeats):
            if i % 2 == 0:
                t_alone, a = common.timed(next, rounds_alone)
                t_grouped, g = common.timed(next, rounds_grouped)
            else:
                t_grouped, g = common.timed(next, rounds_grouped)
                t_alone, a = common.timed(next, rounds_alone)
            alone_s.append(t_alone)
            grouped_s.append(t_grouped)
            diff = max(diff, float(np.abs(a.weights - g.weights).max()))
    finally:
        alone.close()
        grouped.close()
    return dict(alone=alone_s, grouped=grouped_s, diff=diff)


def main(quick: bool = False) -> list[dict]:
    import os

    from fedarena.core.execution.backends.worker import tff_workers

    repeats = 4 if quick else 10
    results = []
    with tff_workers():
        for clients, size, target in ((10, 10, 1 / 3), (20, 10, None), (20, 20, None)):
            found = compare(clients, size, repeats)
            ratios = [g / a for g, a in zip(found["grouped"], found["alone"])]
            results.append(common.result(
                "B6c", f"{clients} clients, groups of {size}", ratios, target, unit="x",
                note=f"grouped {common.fmt_seconds(found['grouped'])}, per-client {common.fmt_seconds(found['alone'])} "
                     f"per round; weights within {found['diff']:.1e} after {repeats + 2} rounds; "
                     f"load average {os.getloadavg()[0]:.1f}"))
    return results


if __name__ == "__main__":
    common.emit(main(common.quick_flag()))
