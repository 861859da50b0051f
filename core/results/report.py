"""Plots, tables and a terminal summary of results files (``fedarena
report`` and ``fedarena show``), from the runs `reader.load_runs` reads.

A results file holds one run at its root, or a sweep: root attribute
``kind = "sweep"`` and one run per group under ``/runs`` (`schema`,
docs/results.md).
"""

from __future__ import annotations

import csv
import json
import math
import textwrap
from pathlib import Path

import attrs
import numpy as np

from fedarena.core.results import schema
from fedarena.core.results.reader import RunView, load_runs, plugin_label
from fedarena.core.results.schema import DETECTION_METRICS, TEST_METRICS


def accuracy_drops(runs: list[RunView]) -> dict[int, float]:
    """For each attacked run with a clean twin, the final test accuracy of
    the twin minus its own: what the attack cost (issue #6's measure for
    untargeted attacks).  A twin is a run without attackers that matches on
    everything a sweep varied other than the attacks (``attack...`` axes),
    and on the aggregator and detectors; twins over several seeds would be
    averaged.  Keys are indices into ``runs``."""

    def setting(run: RunView) -> tuple:
        varied = tuple(sorted((k, v) for k, v in run.point.items() if not k.startswith("attack")))
        return varied, run.aggregator_label, tuple(run.detector_labels)

    clean: dict[tuple, list[float]] = {}
    for run in runs:
        if run.attack_label == "no attack" and not math.isnan(run.final(schema.TEST_ACCURACY)):
            clean.setdefault(setting(run), []).append(run.final(schema.TEST_ACCURACY))
    return {i: float(np.mean(clean[setting(run)])) - run.final(schema.TEST_ACCURACY)
            for i, run in enumerate(runs) if run.attack_label != "no attack" and setting(run) in clean}


# --- fedarena show ---------------------------------------------------------

def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def show(path: str | Path) -> str:
    """A terminal summary of a run or a sweep."""
    runs = load_runs(path)
    lines = [f"{path}: {len(runs)} run{'s' if len(runs) != 1 else ''}"]
    drops = accuracy_drops(runs)
    for index, run in enumerate(runs):
        done, planned = run.attrs.get(schema.ROUNDS_DONE, 0), run.attrs.get(schema.ROUNDS_PLANNED, "?")
        lines.append(f"{run.label}: {run.status}, {done}/{planned} rounds")
        if schema.ERROR in run.attrs:
            lines.append(f"  error: {run.attrs[schema.ERROR]}")
        finals = [f"{m} {_fmt(run.final(m))}" for m in TEST_METRICS + tuple(run.attack_metrics) if m in run.metrics]
        if finals:
            lines.append("  final: " + ", ".join(finals))
        lines.append(f"  aggregator: {run.aggregator_label}; attack: {run.attack_label}")
        if index in drops:
            lines.append(f"  accuracy drop against the same run without attackers: {_fmt(drops[index])}")
        detectors = run.detector_labels
        if run.detection:
            tp, fp, fn = (int(run.detection.get(k, np.zeros(0)).sum())
                          for k in (schema.TRUE_POSITIVES, schema.FALSE_POSITIVES, schema.FALSE_NEGATIVES))
            caught = f"dropped {tp} of {tp + fn} malicious updates and {fp} benign ones"
            lines.append(f"  detection ({', '.join(detectors) or 'non-finite updates only'}): {caught}")
    return "\n".join(lines)


# --- fedarena report ---------------------------------------------------------

def heatmap_table(runs: list[RunView], metric: str):
    """Final ``metric`` by aggregator (rows) x attack (columns), averaged
    over everything else that varies (seeds, say).  Returns (rows, columns,
    values) with NaN where no run had that pair."""
    rows = sorted({r.aggregator_label for r in runs})
    columns = sorted({r.attack_label for r in runs})
    values = np.full((len(rows), len(columns)), np.nan)
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            found = [r.final(metric) for r in runs if r.aggregator_label == row and r.attack_label == column]
            found = [v for v in found if not math.isnan(v)]
            if found:
                values[i, j] = float(np.mean(found))
    return rows, columns, values


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_rounds(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_metrics(runs: list[RunView], out: Path) -> Path:
    plt = _pyplot()
    attack_metrics = sorted({m for r in runs for m in r.attack_metrics})
    panels = 2 if attack_metrics else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.2), squeeze=False)
    ax = axes[0][0]
    for run in runs:
        if schema.TEST_ACCURACY in run.metrics:
            ax.plot(run.metrics[schema.ROUND], run.metrics[schema.TEST_ACCURACY], marker=".", label=run.label)
    ax.set(xlabel="round", ylabel="test accuracy", title="Clean test accuracy", ylim=(0, 1.02))
    _integer_rounds(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if attack_metrics:
        ax = axes[0][1]
        for run in runs:
            for metric in run.attack_metrics:
                ax.plot(run.metrics[schema.ROUND], run.metrics[metric], marker=".", label=f"{run.label}: {metric}")
        ax.set(xlabel="round", ylabel="attack metric", title="Attack success", ylim=(0, 1.02))
        _integer_rounds(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "metrics.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_client_scores(run: RunView, out: Path, index: int) -> Path | None:
    """Per-client scores per round (the first detector's, else update norms),
    malicious clients marked."""
    clients = run.clients
    if schema.UPDATE_NORM not in clients or not clients[schema.UPDATE_NORM].size:
        return None
    scores = clients.get(schema.DETECTOR_SCORES)
    if scores is not None and scores.ndim == 3 and scores.shape[2] > 0:
        values, what = scores[:, :, 0], "score of " + plugin_label(run.plugins.get(schema.DETECTOR_PREFIX + "0", {}))
    else:
        values, what = clients[schema.UPDATE_NORM], "update norm"
    rounds = np.broadcast_to(np.arange(1, values.shape[0] + 1)[:, None], values.shape)
    malicious = clients[schema.MALICIOUS].astype(bool)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.scatter(rounds[~malicious], values[~malicious], s=12, c="tab:blue", label="benign", alpha=0.7)
    if malicious.any():
        ax.scatter(rounds[malicious], values[malicious], s=22, c="tab:red", marker="x", label="malicious")
    if schema.KEPT in clients and (~clients[schema.KEPT].astype(bool)).any():
        dropped = ~clients[schema.KEPT].astype(bool)
        ax.scatter(rounds[dropped], values[dropped], s=70, facecolors="none", edgecolors="black", label="dropped")
    ax.set(xlabel="round", ylabel=what, title=f"Per-client {what}: {run.label}")
    _integer_rounds(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"clients_{index}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_heatmap(runs: list[RunView], metric: str, out: Path) -> Path | None:
    rows, columns, values = heatmap_table(runs, metric)
    if np.isnan(values).all():
        return None
    plt = _pyplot()
    wrap = lambda text: "\n".join(textwrap.wrap(text, 24)) or text  # noqa: E731
    fig, ax = plt.subplots(figsize=(3.0 + 2.0 * len(columns), 2.2 + 0.55 * len(rows)), layout="constrained")
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(columns)), labels=[wrap(c) for c in columns], fontsize=8)
    ax.set_yticks(range(len(rows)), labels=[wrap(r) for r in rows], fontsize=8)
    for i in range(len(rows)):
        for j in range(len(columns)):
            if not math.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center",
                        color="white" if values[i, j] < 0.6 else "black", fontsize=10)
    ax.set(xlabel="attack", ylabel="aggregator", title=f"Final {metric.replace('_', ' ')}")
    fig.colorbar(image, ax=ax, shrink=0.8)
    path = out / f"heatmap_{metric}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_table(runs: list[RunView]) -> str:
    attack_metrics = sorted({m for r in runs for m in r.attack_metrics})
    drops = accuracy_drops(runs)
    columns = ["run", "status", "rounds", "aggregator", "attack", *TEST_METRICS, *(["accuracy_drop"] if drops else []),
               *attack_metrics, *DETECTION_METRICS]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for index, run in enumerate(runs):
        cells = [run.label, run.status, str(run.attrs.get(schema.ROUNDS_DONE, "")), run.aggregator_label,
                 run.attack_label]
        cells += [_fmt(run.final(m)) for m in TEST_METRICS]
        cells += [_fmt(drops.get(index, float("nan")))] if drops else []
        cells += [_fmt(run.final(m)) for m in (*attack_metrics, *DETECTION_METRICS)]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(run: RunView, path: Path) -> Path:
    names = [schema.ROUND] + [m for m in run.metrics if m != schema.ROUND]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for i in range(len(run.metrics.get(schema.ROUND, []))):
            writer.writerow([run.metrics[n][i] for n in names])
    return path


def report(paths: list[str], out: str | Path, with_csv: bool = False) -> list[Path]:
    """Write the plots and tables of the given results files into ``out``."""
    loaded = [(Path(path), run) for path in paths for run in load_runs(path)]
    # Labels from several files must stay apart.
    runs = [attrs.evolve(run, label=f"{path.stem}/{run.label}") if len(paths) > 1 else run for path, run in loaded]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [plot_metrics(runs, out)]
    for index, run in enumerate(runs):
        written.append(plot_client_scores(run, out, index))
    if len(runs) > 1:
        for metric in [schema.TEST_ACCURACY] + sorted({m for r in runs for m in r.attack_metrics}):
            written.append(plot_heatmap(runs, metric, out))
    summary = out / "summary.md"
    summary.write_text("# fedarena report\n\n" + summary_table(runs))
    written.append(summary)
    if with_csv:
        written += [write_csv(run, out / f"metrics_{i}.csv") for i, run in enumerate(runs)]
    return [p for p in written if p is not None]
