"""B3: a defended and attacked round against B1's plain-TF baseline.

Workload: B1's (20 clients x 600 samples, MLP 784-200-10, all sampled), with
an ``alie`` attack group of 4 clients (omniscient, crafting from the benign
rows), ``detector flame`` and ``aggregator krum(f = 4)``.  The baseline is
B1's plain TF FedAvg round over the same clients (no attack, no defense): the
target says a full defense may cost at most half a plain round more.
Target: framework (attack + FLAME + Krum) / plain TF FedAvg <= 1.5.
"""

from __future__ import annotations

import common

TARGET = 1.5
EXTRA = """\
  attack alie {
    clients 4
  }
  detector flame
"""


def main(quick: bool = False) -> list[dict]:
    from fedarena.core.execution.engine.run import Run
    from fedarena.core.execution.backends.worker import tff_workers

    repeats = 4 if quick else 12
    with tff_workers():
        run = Run(common.make_scenario(common.scenario_text(extra=EXTRA, aggregator="krum(f = 4)")))
        try:
            plain = common.PlainTF(run)
            fw, base, results, _ = common.paired_rounds(run, plain.round, repeats)
        finally:
            run.close()
    ratios = [f / b for f, b in zip(fw, base)]
    stages = common.stage_medians(results)
    attackers = sum(int(r.clients["malicious"].sum()) for r in results) / len(results)
    return [common.result(
        "B3", "alie+flame+krum/plain-TF", ratios, TARGET,
        framework_s=common.summary(fw), plain_s=common.summary(base), stages_s=stages,
        attackers_per_round=attackers,
        note=f"framework {common.fmt_seconds(fw)}, plain TF {common.fmt_seconds(base)}; server stages (median s): "
             + ", ".join(f"{k} {stages[k]:.4f}" for k in ("attack", "detection", "aggregation")),
    )]


if __name__ == "__main__":
    common.emit(main(common.quick_flag()))
