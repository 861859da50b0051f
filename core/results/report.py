"""Plots, tables and a terminal summary of results files (``fedarena
report`` and ``fedarena show``), from the runs `reader.load_runs` reads and
the frames of `fedarena.core.results.frames`.

A report must not mislead whoever puts its figures in a paper:

- a heatmap shows the final value over two sweep axes (``--rows``,
  ``--cols``; by default the two with the most values); every other axis
  with several values is a facet (one panel per value), one with a single
  value is named on the figure; only seeds are ever aggregated, as mean ±
  sample std with n in every cell;
- a line plot draws seeds as a mean and a band of ± one std, and past
  `MAX_LINES` lines splits its panels by an axis;
- every panel's title says what its metric measures and which way is good
  (`METRIC_MEANINGS`, `ATTACK_METRIC_MEANINGS`; an unknown metric is shown
  by its name, with no direction);
- ``--csv`` keeps every seed: one long CSV of the whole sweep.

A results file holds one run at its root, or a sweep: root attribute
``kind = "sweep"`` and one run per group under ``/runs`` (`schema`,
docs/results.md).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import textwrap
from pathlib import Path

import attrs
import numpy as np
import pandas as pd

from fedarena.core.errors import UsageError
from fedarena.core.results import frames, schema
from fedarena.core.results.reader import RunView, load_runs, open_results, plugin_label, read_run, run_groups
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


# --- what each metric means ---------------------------------------------------


@attrs.frozen
class MetricMeaning:
    """How a metric is shown: what it measures and which way is good.

    ``direction`` is None for a metric fedarena does not know: it is then
    shown by its name, with no claim about which way is better."""

    title: str
    direction: str | None = None
    bounded: bool = False  # a share, in [0, 1]

    @property
    def heading(self) -> str:
        return f"{self.title} ({self.direction})" if self.direction else self.title


BETTER_MODEL, WORSE_MODEL = "higher = better model", "lower = better model"
ATTACK_WORKED_HIGH, ATTACK_WORKED_LOW = "higher = attack worked", "lower = attack worked"
BETTER_DETECTION = "higher = better detection"

METRIC_MEANINGS = {
    schema.TEST_ACCURACY: MetricMeaning("Clean test accuracy", BETTER_MODEL, True),
    schema.TEST_LOSS: MetricMeaning("Clean test loss", WORSE_MODEL),
    schema.DETECTION_PRECISION: MetricMeaning("Detection precision", BETTER_DETECTION, True),
    schema.DETECTION_RECALL: MetricMeaning("Detection recall", BETTER_DETECTION, True),
}
"""The metrics every run reports, by name."""

ATTACK_METRIC_MEANINGS = {
    # (attack plugin, metric) first, then (None, metric) for any attack.
    ("edge_case", "attack_success_rate"): MetricMeaning("Edge-case attack success rate", ATTACK_WORKED_HIGH, True),
    ("backdoor", "attack_success_rate"): MetricMeaning("Backdoor attack success rate", ATTACK_WORKED_HIGH, True),
    (None, "attack_success_rate"): MetricMeaning("Backdoor attack success rate", ATTACK_WORKED_HIGH, True),
    (None, "asr"): MetricMeaning("Backdoor attack success rate", ATTACK_WORKED_HIGH, True),
    # label_flip: the source class's recall falls when the attack works.
    (None, "source_recall"): MetricMeaning("Recall of the source class", ATTACK_WORKED_LOW, True),
    (None, "flip_rate"): MetricMeaning("Label flip rate: test samples classified as the target",
                                       ATTACK_WORKED_HIGH, True),
}
"""The metrics attacks report (``Attack.test_metrics``), recorded as
``<attack group>_<metric>``: by the attack plugin's name and the metric,
else by the metric alone."""


def metric_meaning(metric: str, attack_plugins: dict[str, str] | None = None) -> MetricMeaning:
    """What ``metric`` measures and which way is good.  ``attack_plugins``
    maps each attack group to its plugin's name (e.g. ``{"backdoor_2":
    "backdoor"}``), to tell the group in an attack metric's name from the
    metric; without it an attack metric is recognised by its ending."""
    if metric in METRIC_MEANINGS:
        return METRIC_MEANINGS[metric]
    groups = attack_plugins or {}
    group = max((g for g in groups if metric.startswith(g + "_")), key=len, default=None)
    if group is not None:
        name, plugin = metric[len(group) + 1:], groups[group]
        found = ATTACK_METRIC_MEANINGS.get((plugin, name)) or ATTACK_METRIC_MEANINGS.get((None, name))
        if found is None:
            return MetricMeaning(metric)
        return found if group == plugin else attrs.evolve(found, title=f"{found.title} [{group}]")
    for (plugin, name), found in ATTACK_METRIC_MEANINGS.items():
        if plugin is None and metric.endswith("_" + name):
            return found
    return MetricMeaning(metric)


# --- a study: the runs of one or more results files, as frames -------------------

FILE_AXIS = "file"
"""The axis added when a report reads several files: each file's name."""
SEED_AXIS = schema.SEED
MAX_LINES = 10
"""Line plots with more lines than this are split into panels (facets)."""


@attrs.frozen(eq=False)
class Study:
    """What a report draws from: every run of the given files.

    ``index``: one row per run (`frames.index_frame`, with a ``file`` axis
    first when there are several files) and a ``key`` column, the run's
    position in ``runs``; ``metrics``: `frames.metrics_frame` with the same
    axes and key; ``levels``: each axis's values in the order the sweep
    lists them."""

    axes: list[str]
    levels: dict[str, list]
    index: pd.DataFrame
    metrics: pd.DataFrame
    runs: list[RunView]
    attack_plugins: dict[str, str]

    @property
    def varying(self) -> list[str]:
        """The axes other than the seed with more than one value."""
        return [a for a in self.axes if a != SEED_AXIS and len(self.levels[a]) > 1]

    @property
    def fixed(self) -> dict:
        """The axes with a single value: named on the figures."""
        return {a: self.levels[a][0] for a in self.axes if len(self.levels[a]) == 1}

    @property
    def seeded(self) -> bool:
        """The runs vary in seed: seeds are aggregated (mean ± std, n)."""
        return SEED_AXIS in self.axes and len(self.levels[SEED_AXIS]) > 1

    def report_metrics(self) -> list[str]:
        """The metrics drawn: clean accuracy, the attacks' metrics, and the
        detection metrics when a run has a detector."""
        present = set(self.metrics[frames.METRIC])
        attack = sorted(m for m in present if m not in TEST_METRICS + DETECTION_METRICS)
        detection = [m for m in DETECTION_METRICS if m in present and any(r.detector_labels for r in self.runs)]
        return [m for m in (schema.TEST_ACCURACY,) if m in present] + attack + detection

    def meaning(self, metric: str) -> MetricMeaning:
        return metric_meaning(metric, self.attack_plugins)

    @property
    def title(self) -> str:
        """The scenario's title, when every run has the same."""
        titles = {str(r.attrs.get(schema.TITLE, "")) for r in self.runs}
        return titles.pop() if len(titles) == 1 else ""


def _assignment(axes, values) -> str:
    return ", ".join(f"{a}={v}" for a, v in zip(axes, values))


def _runs_by_point(path) -> dict[int, RunView]:
    """Every run of a file by its point index (0 for a single run)."""
    path = Path(path)
    with open_results(path) as f:
        return {int(group.name.rsplit("/", 1)[-1]) if label is not None else 0:
                read_run(group, path.stem if label is None else label, path) for group, label in run_groups(f)}


def load_study(paths: list[str | Path]) -> Study:
    """The runs of the given results files, as frames (`frames`)."""
    indexes, metrics, runs = [], [], []
    resolved = [Path(p).resolve() for p in paths]
    twice = sorted({str(p) for p in paths if resolved.count(Path(p).resolve()) > 1})
    if twice:  # its runs would be counted twice in every mean
        raise UsageError(f"{', '.join(twice)}: given more than once")
    names = [Path(p).stem for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    for path, name in zip(paths, names):
        views = _runs_by_point(path)  # first: it refuses a damaged file
        index, metric = frames.index_frame(path), frames.metrics_frame(path)
        keys = {run: len(runs) + i for i, run in enumerate(sorted(views))}
        runs += [views[run] for run in sorted(views)]
        # Points not written yet have no run: key -1.
        index["key"] = index[frames.RUN].map(lambda r: keys.get(int(r), -1))
        metric["key"] = metric[frames.RUN].map(lambda r: keys[int(r)])
        if len(paths) > 1:
            index.insert(0, FILE_AXIS, name)
            metric.insert(0, FILE_AXIS, name)
        indexes.append(index)
        metrics.append(metric)
    axes: list[str] = []
    for index in indexes:
        axes += [a for a in frames.axis_columns(index) if a not in axes]
    index = pd.concat(indexes, ignore_index=True)
    metric = pd.concat(metrics, ignore_index=True)
    for frame in (index, metric):  # an axis one file has and another lacks
        for axis in axes:
            frame[axis] = frame[axis].astype(object).where(frame[axis].notna(), "n/a") \
                if frame[axis].isna().any() else frame[axis]
    levels = {a: list(pd.unique(index[a])) for a in axes}
    attack_plugins = {g: str(r.plugins.get(schema.ATTACK_PREFIX + g, {}).get(schema.PLUGIN_NAME, g))
                      for r in runs for g in r.attack_groups}
    if len(paths) > 1:
        runs = [attrs.evolve(run, label=f"{index.loc[index['key'] == i, FILE_AXIS].iloc[0]}/{run.label}")
                for i, run in enumerate(runs)]
    return Study(axes, levels, index, metric, runs, attack_plugins)


def final_values(study: Study, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each complete run's value of ``metric`` at its last evaluated round
    (axes, run, key, value), and the runs left out for not being complete."""
    rows = study.metrics[study.metrics[frames.METRIC] == metric]
    last = rows.sort_values([ "key", frames.ROUND]).groupby("key").tail(1)
    complete = study.index[(study.index[frames.STATUS] == schema.COMPLETE) & (study.index["key"] >= 0)]
    left_out = study.index[study.index[frames.STATUS] != schema.COMPLETE]
    finals = complete[[*study.axes, frames.RUN, "key"]].merge(last[["key", frames.VALUE]], on="key", how="left")
    return finals, left_out


def _left_out_note(left_out: pd.DataFrame) -> str:
    if not len(left_out):
        return ""
    counts = left_out[frames.STATUS].value_counts()
    return (f"{len(left_out)} run{'s' if len(left_out) != 1 else ''} left out, not complete ("
            + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")")


# --- choosing what a heatmap shows ----------------------------------------------


def choose_axes(study: Study, rows: str | None = None, cols: str | None = None
                ) -> tuple[str | None, str | None, list[str]]:
    """The heatmap's row axis, column axis and facet axes (one panel per
    combination of their values).  By default rows and columns are the two
    axes other than the seed with the most values (ties: the sweep's
    order); every other axis with several values, except the seed, is a
    facet: nothing is averaged but seeds."""

    def check(option: str, axis: str | None) -> None:
        if axis is not None and axis not in study.axes:
            available = ", ".join(study.axes) if study.axes else "none: these results have no sweep axes"
            raise UsageError(f"{option} {axis!r} is not an axis of these results; axes: {available}")

    check("--rows", rows)
    check("--cols", cols)
    if rows is not None and rows == cols:
        raise UsageError(f"--rows and --cols are both {rows!r}; give two different axes")
    ranked = sorted(study.varying, key=lambda a: (-len(study.levels[a]), study.axes.index(a)))
    chosen = [a for a in (rows, cols) if a is not None]
    free = [a for a in ranked if a not in chosen]
    if rows is None and free:
        rows = free.pop(0)
    if cols is None and free:
        cols = free.pop(0)
    return rows, cols, [a for a in study.varying if a not in (rows, cols)]


# --- heatmaps -----------------------------------------------------------------------


def _number(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else (f"{value:.3f}" if abs(value) < 10 else f"{value:.4g}")


@attrs.frozen(eq=False)
class HeatmapPanel:
    """One panel: its facet's values, and per cell (rows x cols) the mean,
    standard deviation (over seeds; NaN with one run) and number of runs
    of the final value, and the text written in the cell."""

    facet: dict
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray
    text: list[list[str]]

    @property
    def title(self) -> str:
        return ", ".join(f"{a}={v}" for a, v in self.facet.items())


@attrs.frozen(eq=False)
class HeatmapSpec:
    """Everything a heatmap figure shows, computed before drawing."""

    metric: str
    title: str
    row_axis: str | None
    col_axis: str | None
    rows: list
    cols: list
    facet_axes: list[str]
    panels: list[HeatmapPanel]
    fixed: dict
    seeds: bool  # cells are means over seeds
    notes: list[str]
    vmin: float
    vmax: float
    scenario: str = ""  # the scenario's title


def heatmap_spec(study: Study, metric: str, rows: str | None = None, cols: str | None = None) -> HeatmapSpec:
    """The final ``metric`` of every complete run by ``rows`` x ``cols``
    (`choose_axes`), one panel per combination of the facet axes, seeds
    aggregated as mean ± sample std with their number n."""
    row_axis, col_axis, facet_axes = choose_axes(study, rows, cols)
    meaning = study.meaning(metric)
    finals, left_out = final_values(study, metric)
    row_values = study.levels[row_axis] if row_axis else [None]
    col_values = study.levels[col_axis] if col_axis else [None]
    seeds = study.seeded and SEED_AXIS not in (row_axis, col_axis)
    facet_values = list(itertools.product(*(study.levels[a] for a in facet_axes)))
    panels = []
    for facet in facet_values:
        mean = np.full((len(row_values), len(col_values)), np.nan)
        std, n = mean.copy(), np.zeros(mean.shape, int)
        text = [["no run"] * len(col_values) for _ in row_values]
        chosen = finals
        for axis, value in zip(facet_axes, facet):
            chosen = chosen[chosen[axis] == value]
        for i, row in enumerate(row_values):
            for j, col in enumerate(col_values):
                cell = chosen
                if row_axis:
                    cell = cell[cell[row_axis] == row]
                if col_axis:
                    cell = cell[cell[col_axis] == col]
                # What a cell may hold: runs that differ in nothing but the seed.
                others = [a for a in study.axes if a not in (row_axis, col_axis, *facet_axes, SEED_AXIS)]
                if any(cell[a].nunique() > 1 for a in others) or (not seeds and len(cell) > 1):
                    raise RuntimeError(f"heatmap cell {row}, {col} of {metric} would average over more than seeds")
                values = cell[frames.VALUE].dropna().to_numpy(dtype=float)
                n[i, j] = len(values)
                if not len(values):
                    text[i][j] = "n/a" if len(cell) else "no run"
                    continue
                mean[i, j] = values.mean()
                std[i, j] = values.std(ddof=1) if len(values) > 1 else np.nan
                if not seeds:
                    text[i][j] = _number(mean[i, j])
                elif len(values) > 1:
                    text[i][j] = f"{_number(mean[i, j])} ± {_number(std[i, j])}\n(n={len(values)})"
                else:
                    text[i][j] = f"{_number(mean[i, j])}\n(n=1)"
        panels.append(HeatmapPanel(dict(zip(facet_axes, facet)), mean, std, n, text))
    notes = []
    if seeds:
        notes.append(f"each cell: mean ± sample std over seeds ({SEED_AXIS} in "
                     f"{', '.join(map(str, study.levels[SEED_AXIS]))}), n = runs in the cell")
    if _left_out_note(left_out):
        notes.append(_left_out_note(left_out))
    if meaning.bounded:
        vmin, vmax = 0.0, 1.0
    else:
        found = np.concatenate([p.mean.ravel() for p in panels])
        found = found[~np.isnan(found)]
        vmin, vmax = (float(found.min()), float(found.max())) if len(found) else (0.0, 1.0)
        vmax = vmax if vmax > vmin else vmin + 1.0
    return HeatmapSpec(metric, f"{meaning.heading}, final round", row_axis, col_axis, row_values, col_values,
                       facet_axes, panels, study.fixed, seeds, notes, vmin, vmax, study.title)


@attrs.frozen(eq=False)
class Drawn:
    """What a figure holds, read back from its artists once drawn: the file,
    the figure's title, and per panel its title and its data (a heatmap's
    image and cell texts; a line plot's lines and bands)."""

    path: Path
    suptitle: str
    panels: list[dict]


def _wrap(text: str, width: int = 24) -> str:
    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def _figure_title(title: str, fixed: dict, notes: list[str]) -> str:
    lines = [title]
    if fixed:
        lines.append("fixed: " + ", ".join(f"{a}={v}" for a, v in fixed.items()))
    return "\n".join(lines + [_wrap(note, 110) for note in notes])


def draw_heatmap(spec: HeatmapSpec, path: Path) -> Drawn:
    plt = _pyplot()
    count = len(spec.panels)
    ncols = max(1, math.ceil(math.sqrt(count)))
    nrows = math.ceil(count / ncols)
    cell_width = 1.9 if spec.seeds else 1.3
    width = 2.6 + cell_width * len(spec.cols)
    height = 1.4 + 0.6 * len(spec.rows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(5.0, width * ncols + 1.2), height * nrows + 1.4),
                             squeeze=False, layout="constrained")
    image = None
    drawn = []
    for ax, panel in zip(axes.ravel(), spec.panels):
        image = ax.imshow(panel.mean, cmap="viridis", vmin=spec.vmin, vmax=spec.vmax, aspect="auto")
        ax.set_xticks(range(len(spec.cols)), labels=[_wrap(c) if c is not None else "" for c in spec.cols],
                      fontsize=8)
        ax.set_yticks(range(len(spec.rows)), labels=[_wrap(r) if r is not None else "" for r in spec.rows],
                      fontsize=8)
        scale = spec.vmax - spec.vmin
        for i in range(len(spec.rows)):
            for j in range(len(spec.cols)):
                value = panel.mean[i, j]
                light = not math.isnan(value) and (value - spec.vmin) / scale >= 0.6
                ax.text(j, i, panel.text[i][j], ha="center", va="center", fontsize=8 if spec.seeds else 10,
                        color="black" if light or math.isnan(value) else "white")
        ax.set(xlabel=spec.col_axis or "", ylabel=spec.row_axis or "", title=panel.title)
        drawn.append({"title": ax.get_title(), "image": np.array(ax.images[0].get_array()),
                      "texts": [t.get_text() for t in ax.texts], "xlabel": ax.get_xlabel(),
                      "ylabel": ax.get_ylabel()})
    for ax in axes.ravel()[count:]:
        ax.set_visible(False)
    colorbar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    colorbar.set_label(spec.metric)
    title = spec.title + (f"\n{spec.scenario}" if spec.scenario else "")
    suptitle = fig.suptitle(_figure_title(title, spec.fixed, spec.notes), fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Drawn(path, suptitle.get_text(), drawn)


# --- metrics per round -----------------------------------------------------------------


@attrs.frozen(eq=False)
class Line:
    """One setting's metric per round: the mean over its seeds, their
    sample std (NaN where one run) and count n, per round."""

    label: str
    setting: dict
    rounds: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray


@attrs.frozen(eq=False)
class LinePanel:
    metric: str
    title: str
    facet: dict
    lines: list[Line]
    bounded: bool = False


@attrs.frozen(eq=False)
class LineSpec:
    """Everything the metrics-per-round figure shows: panels row by row
    (one row per metric, one column per facet)."""

    metrics: list[str]
    facet_axes: list[str]
    panels: list[LinePanel]
    fixed: dict
    seeds: bool
    notes: list[str]
    title: str = ""

    def panel(self, metric: str, **facet) -> LinePanel:
        return next(p for p in self.panels if p.metric == metric and all(p.facet[k] == v for k, v in facet.items()))


def _facet_axes_for_lines(study: Study, settings: pd.DataFrame) -> list[str]:
    """No facets up to `MAX_LINES` lines; past that, the axis that leaves
    the fewest lines per panel (then the next, while still too many)."""
    axes = [a for a in study.varying]
    facets: list[str] = []

    def most_per_panel(chosen) -> int:
        return int(settings.groupby(chosen).size().max()) if chosen else len(settings)

    while most_per_panel(facets) > MAX_LINES:
        left = [a for a in axes if a not in facets]
        if not left:
            break
        facets.append(min(left, key=lambda a: (most_per_panel(facets + [a]), -len(study.levels[a]),
                                               study.axes.index(a))))
    return facets


def line_spec(study: Study, metrics: list[str] | None = None) -> LineSpec:
    """Each metric per round, one line per setting (the axes other than the
    seed), seeds drawn as the mean and a band of ± one sample std; past
    `MAX_LINES` lines, one panel per value of a facet axis."""
    metrics = study.report_metrics() if metrics is None else metrics
    with_runs = study.index[study.index["key"] >= 0]
    setting_axes = study.varying
    settings = with_runs[setting_axes].drop_duplicates() if setting_axes else with_runs.iloc[:1][[]]
    facet_axes = _facet_axes_for_lines(study, settings) if setting_axes else []
    label_axes = [a for a in setting_axes if a not in facet_axes]
    facet_values = list(itertools.product(*(study.levels[a] for a in facet_axes)))
    data = study.metrics
    panels = []
    for metric in metrics:
        rows = data[data[frames.METRIC] == metric]
        for facet in facet_values:
            chosen = rows
            for axis, value in zip(facet_axes, facet):
                chosen = chosen[chosen[axis] == value]
            lines = []
            combos = list(itertools.product(*(study.levels[a] for a in label_axes)))
            for combo in combos:
                line = chosen
                for axis, value in zip(label_axes, combo):
                    line = line[line[axis] == value]
                if not len(line):
                    continue
                if label_axes:
                    label = _assignment(label_axes, combo)
                elif study.seeded:
                    label = "mean over seeds"
                else:
                    label = study.runs[int(line["key"].iloc[0])].label
                per_round = line.groupby(frames.ROUND)[frames.VALUE]
                mean = per_round.mean()
                std = per_round.std(ddof=1)
                n = per_round.count()
                if study.seeded:
                    low, high = int(n.min()), int(n.max())
                    label += f" (n={low})" if low == high else f" (n={low}-{high})"
                lines.append(Line(label, dict(zip(label_axes, combo)), mean.index.to_numpy(), mean.to_numpy(),
                                  std.to_numpy(), n.to_numpy()))
            title = study.meaning(metric).heading
            panels.append(LinePanel(metric, title, dict(zip(facet_axes, facet)), lines, study.meaning(metric).bounded))
    notes = []
    if study.seeded:
        notes.append(f"line: mean over seeds ({SEED_AXIS} in {', '.join(map(str, study.levels[SEED_AXIS]))}); "
                     f"band: ± 1 sample std; n: runs per line")
    if facet_axes:
        notes.append(f"{len(settings)} settings: one panel per {' x '.join(facet_axes)}")
    return LineSpec(metrics, facet_axes, panels, study.fixed, study.seeded, notes, study.title)


def draw_lines(spec: LineSpec, path: Path) -> Drawn:
    plt = _pyplot()
    if spec.facet_axes:  # one row per metric, one column per facet
        ncols = max(1, len(spec.panels) // max(1, len(spec.metrics)))
        nrows = max(1, len(spec.metrics))
    else:
        ncols = min(3, max(1, len(spec.panels)))
        nrows = math.ceil(len(spec.panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 4.3 * nrows + 0.6), squeeze=False,
                             layout="constrained")
    labels = list(dict.fromkeys(line.label.split(" (n=")[0] for p in spec.panels for line in p.lines))
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    drawn = []
    for ax, panel in zip(axes.ravel(), spec.panels):
        bands = []
        for line in panel.lines:
            color = colors[line.label.split(" (n=")[0]]
            ax.plot(line.rounds, line.mean, marker=".", color=color, label=line.label)
            if spec.seeds and (line.n > 1).any():
                ok = line.n > 1
                bands.append(ax.fill_between(line.rounds[ok], (line.mean - line.std)[ok], (line.mean + line.std)[ok],
                                             color=color, alpha=0.2, linewidth=0))
        title = _wrap(panel.title, 60)
        if panel.facet:
            title += "\n" + ", ".join(f"{a}={v}" for a, v in panel.facet.items())
        ax.set(xlabel="round", ylabel=panel.metric, title=title)
        if panel.bounded:
            ax.set_ylim(-0.02, 1.02)
        _integer_rounds(ax)
        ax.grid(alpha=0.3)
        if len(panel.lines) > 1 or (panel.lines and panel.lines[0].setting) or spec.seeds:
            ax.legend(fontsize=7)
        drawn.append({"title": ax.get_title(), "legend": [line.label for line in panel.lines],
                      "lines": [(np.asarray(l.get_xdata()), np.asarray(l.get_ydata())) for l in ax.get_lines()],
                      "bands": [b.get_paths()[0].vertices.copy() for b in bands if b.get_paths()],
                      "ylabel": ax.get_ylabel()})
    for ax in axes.ravel()[len(spec.panels):]:
        ax.set_visible(False)
    title = _figure_title(f"{spec.title}: metrics per round" if spec.title else "Metrics per round", spec.fixed,
                          spec.notes)
    suptitle = fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Drawn(path, suptitle.get_text(), drawn)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_rounds(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# --- per-run plots and tables -------------------------------------------------------


def heatmap_table(runs: list[RunView], metric: str):
    """Final ``metric`` by aggregator (rows) x attack (columns) of the given
    runs, averaged over seeds only: a ``ValueError`` if a cell holds runs
    that differ in anything else (or runs that are not sweep points of one
    setting).  Returns (rows, columns, values) with NaN where no run had
    that pair.  ``fedarena report`` draws `heatmap_spec` instead, over
    any two sweep axes."""
    rows = sorted({r.aggregator_label for r in runs})
    columns = sorted({r.attack_label for r in runs})
    values = np.full((len(rows), len(columns)), np.nan)
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            cell = [r for r in runs if r.aggregator_label == row and r.attack_label == column]
            settings = {json.dumps({k: v for k, v in r.point.items() if k != SEED_AXIS}, sort_keys=True)
                        for r in cell}
            if len(cell) > 1 and (len(settings) > 1 or not all(r.point for r in cell)):
                raise ValueError(f"{row} x {column}: runs {', '.join(r.label for r in cell)} differ in more "
                                 f"than the seed; averaging them would hide it")
            found = [v for v in (r.final(metric) for r in cell) if not math.isnan(v)]
            if found:
                values[i, j] = float(np.mean(found))
    return rows, columns, values


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
    ax.set(xlabel="round", ylabel=what, title=_wrap(f"Per-client {what}: {run.label}", 70))
    _integer_rounds(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"clients_{index}.png"
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


def final_values_markdown(specs: list[HeatmapSpec]) -> str:
    """The heatmaps' numbers as Markdown tables, cell for cell."""
    out = ["# Final values, as the heatmaps show them", ""]
    for spec in specs:
        out += [f"## {spec.title}", ""]
        if spec.fixed:
            out += ["fixed: " + ", ".join(f"`{a}={v}`" for a, v in spec.fixed.items()), ""]
        out += [f"{note}." for note in spec.notes] + ([""] if spec.notes else [])
        for panel in spec.panels:
            if panel.facet:
                out += [f"### {panel.title}", ""]
            corner = f"{spec.row_axis or ''} \\ {spec.col_axis or ''}".strip(" \\")
            header = [corner] + [str(c) if c is not None else spec.metric for c in spec.cols]
            out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for i, row in enumerate(spec.rows):
                cells = [str(row) if row is not None else spec.metric] + [t.replace("\n", " ") for t in panel.text[i]]
                out.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
            out.append("")
    return "\n".join(out)


def write_csv(run: RunView, path: Path) -> Path:
    names = [schema.ROUND] + [m for m in run.metrics if m != schema.ROUND]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for i in range(len(run.metrics.get(schema.ROUND, []))):
            writer.writerow([run.metrics[n][i] for n in names])
    return path


def long_frame(study: Study) -> pd.DataFrame:
    """Every metric of every run at every evaluated round, every seed kept:
    the axis columns, ``run``, ``round``, ``metric``, ``value``."""
    return study.metrics[[*study.axes, frames.RUN, frames.ROUND, frames.METRIC, frames.VALUE]]


# --- fedarena report ------------------------------------------------------------------


@attrs.frozen(eq=False)
class Report:
    """What `build_report` wrote, and what its figures show."""

    written: list[Path]
    heatmaps: dict[str, HeatmapSpec]
    lines: LineSpec
    drawn: dict[str, Drawn]


# Per-run client plots drawn by default: each costs about 0.15 s, so a
# 1,000-point sweep's would take minutes (benchmarks/soak.py).
CLIENT_PLOTS = 24


def build_report(paths: list[str], out: str | Path, with_csv: bool = False, rows: str | None = None,
                 cols: str | None = None, client_plots: int | None = CLIENT_PLOTS) -> Report:
    """Write the plots and tables of the given results files into ``out``.

    ``rows`` and ``cols``: the sweep axes of the heatmaps' rows and
    columns (`choose_axes`); a name that is not an axis is a `UsageError`,
    raised before anything is written."""
    study = load_study(paths)
    choose_axes(study, rows, cols)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, Drawn] = {}
    lines = line_spec(study)
    written: list[Path | None] = []
    if lines.panels:
        drawn["metrics"] = draw_lines(lines, out / "metrics.png")
        written.append(drawn["metrics"].path)
    shown = study.runs if client_plots is None else study.runs[:client_plots]
    for index, run in enumerate(shown):
        written.append(plot_client_scores(run, out, index))
    heatmaps: dict[str, HeatmapSpec] = {}
    if len(study.runs) > 1:
        for metric in study.report_metrics():
            spec = heatmap_spec(study, metric, rows, cols)
            if all(np.isnan(p.mean).all() for p in spec.panels):
                continue
            heatmaps[metric] = spec
            drawn[f"heatmap_{metric}"] = draw_heatmap(spec, out / f"heatmap_{metric}.png")
            written.append(drawn[f"heatmap_{metric}"].path)
    summary = out / "summary.md"
    skipped = ""
    if len(shown) < len(study.runs):
        skipped = (f"Per-client plots: runs 0 to {len(shown) - 1} of {len(study.runs)} "
                   f"(`fedarena report --client-plots all` draws every run's).\n\n")
    summary.write_text("# fedarena report\n\n" + skipped + summary_table(study.runs))
    written.append(summary)
    if heatmaps:
        tables = out / "final_values.md"
        tables.write_text(final_values_markdown(list(heatmaps.values())))
        written.append(tables)
    if with_csv:
        long = out / "metrics.csv"
        long_frame(study).to_csv(long, index=False)
        written.append(long)
        written += [write_csv(run, out / f"metrics_{i}.csv") for i, run in enumerate(study.runs)]
    return Report([p for p in written if p is not None], heatmaps, lines, drawn)


def report(paths: list[str], out: str | Path, with_csv: bool = False, rows: str | None = None,
           cols: str | None = None, client_plots: int | None = CLIENT_PLOTS) -> list[Path]:
    """Write the plots and tables of the given results files into ``out``;
    the files written.  ``client_plots``: how many runs get a per-client
    plot (None: every run)."""
    return build_report(paths, out, with_csv, rows, cols, client_plots).written
