"""Static checking: a parsed scenario -> a resolved, runnable `Scenario`.

Nothing is loaded or run here.  Every plugin name is looked up by kind in
the registry, every argument is checked against the plugin's declared
parameters, and cross-field rules (clients per round, attackers, each
plugin's own ``check``) are applied.  All problems are collected and
raised together as one `ScenarioError`, each pointing at its place.
"""

from __future__ import annotations

import difflib
import math
import os
import types
import typing
from pathlib import Path
from typing import Any

import attrs

from fedarena.core.language import spec
from fedarena.core.errors import Diagnostic, ScenarioError, Span
from fedarena.core.plugin.interfaces import Facts, Plugin, resolve_path
from fedarena.core.language.parser import capped
from fedarena.core.plugin.params import INT_MAX, ParamInfo, default_int_bounds
from fedarena.core.plugin.registry import Registry
from fedarena.core.scenario.start import StartSource, check_start

# Which plugin kind follows each top-level keyword.
STATEMENT_KINDS = {"dataset": "dataset", "model": "model", "detector": "detector", "aggregator": "aggregator"}
SINGLE_STATEMENTS = ("seed", "rounds", "dataset", "split", "model", "training", "aggregator", "evaluate", "output",
                     "start", "save")
REQUIRED_STATEMENTS = ("rounds", "dataset", "split", "model")
# Seeds are 32-bit: NumPy's and TensorFlow's generators take 0 <= seed < 2^32.
SEED_MAX = 2**32 - 1
# Each local epoch is one step of the client's training graph, built before
# round 1: a huge count exhausts memory before anything runs.
MAX_LOCAL_EPOCHS = 1000
# Clients trained together in one batched step (cohort training) each hold
# their weights, optimizer state and batch in memory at once.
MAX_CLIENT_GROUP = 1000


@attrs.frozen
class TrainingSetting:
    """A setting of the ``training`` block: its type, default, bounds and doc."""

    type: Any
    default: Any
    doc: str
    ge: float | None = None
    kind: str | None = None
    lt: float | None = None
    choices: tuple | None = None
    le: float | None = None
    why: str = ""  # the reason for an upper bound, told when it is passed


TRAINING_SETTINGS = {
    "clients_per_round": TrainingSetting(int, None, "clients sampled each round (default: all)", ge=1, le=INT_MAX),
    "local_epochs": TrainingSetting(
        int, 1, "passes over its data a client makes each round", ge=1, le=MAX_LOCAL_EPOCHS,
        why="each epoch is one step of the training graph built before round 1",
    ),
    "batch_size": TrainingSetting(int, 32, "examples per local step", ge=1, le=INT_MAX),
    "optimizer": TrainingSetting(spec.Call, spec.Call("sgd"), "client optimizer", kind="optimizer"),
    "server_learning_rate": TrainingSetting(float, 1.0, "step the server takes along the aggregate update", ge=0),
    "server_momentum": TrainingSetting(float, 0.0, "server momentum (FedAvgM); 0 for none", ge=0, lt=1),
    "protocol": TrainingSetting(
        str, "fedavg", "fedavg: clients send model deltas after local epochs; fedsgd: one gradient of one batch",
        choices=("fedavg", "fedsgd"),
    ),
    "root_samples": TrainingSetting(
        int, 0, "clean training samples the server keeps for itself (FLTrust's root dataset)", ge=0, le=INT_MAX
    ),
    "client_group": TrainingSetting(
        int, 1, "sampled clients trained together in one batched step (cohort training); 1: each client alone",
        ge=1, le=MAX_CLIENT_GROUP,
        why="the clients of a group hold their weights, optimizer state and a batch each in memory at once",
    ),
}
ATTACK_SETTINGS = ("clients", "rounds", "present")
# Built-in splits that give every client the same mix of labels: no client
# "owns" a label there, so `owners(...)` is refused with them.
LABEL_UNIFORM_SPLITS = ("iid", "quantity_skew")
# Present groups' load is checked round by round up to this many rounds
# (it repeats with the lcm of their periods); past it, their sizes are summed.
PRESENT_HORIZON = 100_000


@attrs.frozen
class Owners:
    """``clients owners(label = L, count = N)``: the N clients whose part of
    the split holds the most samples of label L (ties: the lower id), found
    when the data is split."""

    label: int
    count: int = 1

    def __str__(self) -> str:
        return f"owners(label = {self.label}, count = {self.count})"


@attrs.frozen
class AttackGroup:
    """One ``attack`` block: a plugin, which clients it holds, when they act
    and when they take part.

    The clients: ``ids`` (a list written in the block), else ``owners``,
    else ``num_clients`` drawn at random from the seed.  ``present`` (an
    `Every`): the members take part in exactly the rounds k, 2k, ... in
    place of sampled benign clients; None: they are sampled like everyone."""

    name: str
    attack: Plugin
    num_clients: int
    rounds: spec.Range | spec.Every | None = None
    ids: tuple[int, ...] | None = None
    owners: Owners | None = None
    present: spec.Every | None = None
    # Where the block's `clients` and `present` were written: errors found
    # when the data is split point there.
    span: Span | None = attrs.field(default=None, eq=False)
    present_span: Span | None = attrs.field(default=None, eq=False)

    def active_in(self, round_number: int) -> bool:
        return self.rounds is None or round_number in self.rounds

    def present_in(self, round_number: int) -> bool:
        return self.present is not None and round_number in self.present

    @property
    def placement(self) -> str:
        """How the members are chosen: ``random``, ``ids`` or the owners call."""
        return "ids" if self.ids is not None else str(self.owners) if self.owners is not None else "random"

    @property
    def participation(self) -> str:
        """``sampled``, ``every round`` or ``every k rounds``."""
        if self.present is None:
            return "sampled"
        return "every round" if self.present.k == 1 else f"every {self.present.k} rounds"


@attrs.frozen
class Training:
    clients_per_round: int
    local_epochs: int
    batch_size: int
    optimizer: Plugin
    server_learning_rate: float
    server_momentum: float = 0.0
    protocol: str = "fedavg"  # or "fedsgd": each client sends the gradient of one batch
    root_samples: int = 0
    client_group: int = 1  # sampled clients trained together in one batched step (`engine/cohort.py`)


@attrs.frozen
class Scenario:
    """A checked scenario: plugin instances and plain values, ready to run."""

    title: str
    seed: int
    rounds: int
    dataset: Plugin
    split: Plugin
    num_clients: int
    model: Plugin
    training: Training
    attacks: tuple[AttackGroup, ...]
    detectors: tuple[Plugin, ...]
    aggregator: Plugin
    metrics: tuple[tuple[str, Plugin], ...]
    evaluate_every: int
    output: str
    # `save model every K rounds`: the model is also kept after rounds K, 2K, ... (0: only the latest).
    save_model_every: int = 0
    source: str = attrs.field(repr=False, default="")
    filename: str = "<scenario>"
    # The sweep point this run is, as (path, value) pairs; empty for a plain scenario.
    sweep_point: tuple[tuple[str, str], ...] = ()
    # `start from`: the file whose model replaces the initial weights (None: the model's own).
    start: StartSource | None = None

    @property
    def facts(self) -> Facts:
        info = self.dataset.info()
        return Facts(
            num_clients=self.num_clients,
            clients_per_round=self.training.clients_per_round,
            num_classes=info.num_classes,
            input_shape=info.input_shape,
            server_learning_rate=self.training.server_learning_rate,
            num_attackers=sum(group.num_clients for group in self.attacks),
            root_samples=self.training.root_samples,
            scenario_dir=str(Path(self.filename).parent),
            has_writers=info.has_writers,
            protocol=self.training.protocol,
        )

    def plugins(self) -> list[tuple[str, Plugin]]:
        """Every plugin the scenario uses, with the role it plays."""
        used = [("dataset", self.dataset), ("split", self.split), ("model", self.model),
                ("optimizer", self.training.optimizer)]
        used += [(f"attack:{g.name}", g.attack) for g in self.attacks]
        used += [(f"detector:{i}", d) for i, d in enumerate(self.detectors)]
        used += [("aggregator", self.aggregator)] + [(f"metric:{n}", m) for n, m in self.metrics]
        return used


def did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def number(value: int | float) -> str:
    """A number as messages show it (ints exactly, however long)."""
    if isinstance(value, int):
        text = str(value)
        return text if len(text) <= 30 else text[:12] + "..." + text[-6:]
    return f"{value:g}"


def describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {number(value)}"
    if isinstance(value, float):
        return f"number {value:g}"
    if isinstance(value, str):
        return f'string "{value if len(value) <= 40 else value[:37] + "..."}"'
    if isinstance(value, tuple):
        return "a list"
    if isinstance(value, spec.Call):
        return f"'{value.name}(...)'" if value.args else f"the name '{value.name}'"
    if isinstance(value, spec.Percent):
        return f"percentage {value}"
    if isinstance(value, spec.Range):
        return f"range {value}"
    if isinstance(value, spec.Every):
        return f"'{value}'"
    return f"'{value}'"


def _matches(value: Any, tp: Any) -> bool:
    """Does a literal fit a declared parameter type?"""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(tp))
    if origin is tuple:
        item = typing.get_args(tp)[0]
        return isinstance(value, tuple) and all(_matches(v, item) for v in value)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _out_of_range(info: ParamInfo, value: Any) -> str | None:
    values = value if isinstance(value, tuple) else (value,)
    implicit = default_int_bounds(info)
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        for symbol, bound, ok in (
            (">=", info.ge, lambda a, b: a >= b), (">", info.gt, lambda a, b: a > b),
            ("<=", info.le, lambda a, b: a <= b), ("<", info.lt, lambda a, b: a < b),
        ):
            if bound is not None and not ok(v, bound):
                return f"must be {symbol} {bound:g}, got {number(v)}"
        if implicit is not None and isinstance(v, int) and not implicit[0] <= v <= implicit[1]:
            return f"must be between {number(implicit[0])} and {number(implicit[1])}, got {number(v)}"
    if info.choices is not None and value not in info.choices:
        hint = did_you_mean(value, [str(c) for c in info.choices]) if isinstance(value, str) else ""
        shown = repr(value)
        if len(shown) > 80:  # a huge wrong value is not quoted whole
            shown = f"{shown[:60]}... ({len(shown):,} characters)"
        return f"must be one of {', '.join(map(repr, info.choices))}, got {shown}{hint}"
    return None


class Checker:
    def __init__(self, registry: Registry, filename: str, source: str):
        self.registry = registry
        self.filename = filename
        self.source = source
        self.problems: list[Diagnostic] = []

    def error(self, message: str, span: Span | None) -> None:
        self.problems.append(Diagnostic(message, span))

    def resolve(self, kind: str, call: spec.Call) -> Plugin | None:
        """Instantiate the plugin a call names, or record why not."""
        if not isinstance(call, spec.Call):
            self.error(f"expected {_article(kind)} name, got {describe(call)}", None)
            return None
        entry = self.registry.get(kind, call.name)
        if entry is None:
            known = self.registry.names(kind)
            hint = did_you_mean(call.name, known) or (f"; known: {', '.join(known)}" if known else "")
            self.error(f"unknown {kind} '{call.name}'{hint}", call.span)
            return None
        params = {p.name: p for p in entry.params()}
        kwargs, ok = {}, True
        seen: dict[str, spec.Arg] = {}
        for arg in call.args:
            if arg.name in seen:
                self.error(f"parameter '{arg.name}' of {kind} '{call.name}' is given twice", arg.span)
                ok = False
                continue
            seen[arg.name] = arg
            info = params.get(arg.name)
            if info is None:
                hint = self._nested_hint(params, call, arg) or did_you_mean(arg.name, list(params)) or (
                    f"; it takes {', '.join(params)}" if params else "; it takes no parameters"
                )
                self.error(f"{kind} '{call.name}' has no parameter '{arg.name}'{hint}", arg.span)
                ok = False
                continue
            value = self.value_for(info, arg.value, f"parameter '{arg.name}' of {kind} '{call.name}'",
                                   arg.value_span or arg.span, write=f"{arg.name} = ")
            if value is _INVALID:
                ok = False
            else:
                kwargs[arg.name] = value
        for name, info in params.items():
            if info.required and name not in seen:
                self.error(f"{kind} '{call.name}' needs parameter '{name}' ({info.doc})", call.span)
                ok = False
        if not ok:
            return None
        try:
            return entry.cls(**kwargs)
        except Exception as error:  # a plugin's own validation, or a bug in it: a message either way
            self.error(f"{kind} '{call.name}': {error}", call.span)
            return None

    def _plugin_name(self, kind: str, value: Any) -> str | None:
        """The registered plugin of ``kind`` that a value names or is: a
        call's name, a string that is (or is close to) a plugin's name, a
        plugin instance's name; None if it names none."""
        if isinstance(value, spec.Call):
            name = value.name
        elif isinstance(value, str):
            close = difflib.get_close_matches(value, self.registry.names(kind), n=1, cutoff=0.6)
            name = value if self.registry.get(kind, value) else (close[0] if close else None)
        elif isinstance(value, Plugin):
            name = self.registry.name_of(value)
        else:
            return None
        return name if name is not None and self.registry.get(kind, name) is not None else None

    def _nested_hint(self, params: dict[str, ParamInfo], call: spec.Call, arg: spec.Arg) -> str:
        """For an unknown parameter that belongs to a nested plugin (the old
        ``backdoor(trigger = "pixel", size = 3)``): where it goes instead."""
        given = {a.name: a.value for a in call.args}
        for info in params.values():
            if info.kind is None:
                continue
            # The plugin the call names (or the default one) if it has the
            # parameter, else the only plugin of that kind that has it.
            named = self._plugin_name(info.kind, given.get(info.name, None if info.required else info.default))
            having = [e.name for e in self.registry.entries(info.kind) if any(p.name == arg.name for p in e.params())]
            name = named if named in having else (having[0] if len(having) == 1 else None)
            if name is not None:
                return (f"; '{arg.name}' is a parameter of the {info.kind}: "
                        f"write {info.name} = {name}({arg.name} = {_source_text(arg.value)})")
        return ""

    def value_for(self, info: ParamInfo, value: Any, what: str, span: Span | None, write: str = ""):
        """The checked value of a parameter or setting, or `_INVALID` (the
        problem recorded).  ``write`` is how the value is introduced in the
        file (``"trigger = "``), for suggestions."""
        if info.kind is not None:
            if isinstance(value, spec.Call):
                plugin = self.resolve(info.kind, value)
                return _INVALID if plugin is None else plugin
            hint = ""
            if isinstance(value, str):  # a plugin's name in quotes, as older files wrote triggers
                name = self._plugin_name(info.kind, value)
                hint = (f"; write {write}{name}(...), a plugin call without quotes" if name else
                        f"; write {write}NAME(...) without quotes, NAME one of: "
                        f"{', '.join(self.registry.names(info.kind))}")
            self.error(f"{what} must be {_article(info.kind)}, got {describe(value)}{hint}", span)
            return _INVALID
        if isinstance(value, spec.Call) and not value.args and info.type is str:
            value = value.name  # a bare word where a string is expected
        if not _matches(value, info.type):
            self.error(f"{what} must be {_article(info.type_name())}, got {describe(value)}", span)
            return _INVALID
        problem = _out_of_range(info, value)
        if problem:
            self.error(f"{what} {problem}", span)
            return _INVALID
        if info.type is float:
            try:
                return float(value)
            except OverflowError:
                self.error(f"{what} is too large, got {describe(value)}", span)
                return _INVALID
        return value


_INVALID = object()


def _source_text(value: Any) -> str:
    """A plain literal as a scenario writes it; ``...`` for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return number(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str) and len(value) <= 40:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "..."


def _article(type_text: str) -> str:
    return ("an " if type_text[:1] in "aeiou" else "a ") + type_text


def group_names(names: list[str]) -> list[str]:
    """Distinct names for plugins used more than once in a scenario (attack
    groups, detectors): the plugin's name, numbered when it repeats."""
    return [f"{n}_{names[: i + 1].count(n)}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_one(scenario: spec.ScenarioSpec, registry: Registry, output_override: str | None) -> Scenario:
    c = Checker(registry, scenario.filename, scenario.source)
    by_keyword: dict[str, spec.Statement] = {}
    for statement in scenario.statements:
        if statement.keyword in SINGLE_STATEMENTS:
            if statement.keyword in by_keyword:
                first = by_keyword[statement.keyword].span
                where = f" (first on line {first.line})" if first else ""
                c.error(f"'{statement.keyword}' is given twice{where}", statement.span)
                continue
            by_keyword[statement.keyword] = statement
    for keyword in REQUIRED_STATEMENTS:
        if keyword not in by_keyword:
            c.error(f"the scenario has no '{keyword}' statement; add one", scenario.span)

    def plain(keyword: str, default: int, minimum: int, maximum: int = INT_MAX, why: str = "") -> int:
        statement = by_keyword.get(keyword)
        if statement is None:
            return default
        value, span = statement.value, statement.value_span or statement.span
        if not _is_int(value):
            c.error(f"'{keyword}' must be an integer, got {describe(value)}", span)
            return default
        if value < minimum:
            c.error(f"'{keyword}' must be >= {minimum}, got {number(value)}", span)
            return default
        if value > maximum:
            c.error(f"'{keyword}' must be between {minimum} and {number(maximum)}{why}, got {number(value)}", span)
            return default
        return value

    seed = plain("seed", 0, 0, SEED_MAX, " (a 32-bit seed)")
    rounds = plain("rounds", 1, 1)
    evaluate_every = plain("evaluate", 1, 1)
    save_model_every = plain("save", 0, 1, max(rounds, 1),
                             " (the rounds of the run: a model is kept after every K-th round)")

    plugins: dict[str, Plugin | None] = {}
    for keyword, kind in STATEMENT_KINDS.items():
        statement = by_keyword.get(keyword)
        if statement is not None:
            plugins[keyword] = c.resolve(kind, statement.value)
    aggregator_statement = by_keyword.get("aggregator")
    if aggregator_statement is None:
        plugins["aggregator"] = c.resolve("aggregator", spec.Call("fedavg"))
    # The number of clients, None while unknown (no split, or a bad count):
    # the rules that compare with it are then left out.
    split, num_clients = None, None
    if "split" in by_keyword:
        statement = by_keyword["split"]
        call, count = statement.value
        split = c.resolve("split", call)
        span = statement.value_span or statement.span
        if not _is_int(count):
            c.error(f"the number of clients must be an integer, got {describe(count)}", span)
        elif count < 1:
            c.error(f"a split needs at least 1 client, got {number(count)}", span)
        elif count > INT_MAX:
            c.error(f"the number of clients must be between 1 and {INT_MAX}, got {number(count)}", span)
        else:
            num_clients = count

    training = _training(c, by_keyword.get("training"), num_clients)
    detectors = tuple(c.resolve("detector", s.value) for s in scenario.all("detector"))
    attacks = tuple(_attack(c, s, num_clients, rounds) for s in scenario.all("attack"))
    # Each group gets a distinct name: the plugin's, numbered when repeated.
    names = group_names([s.value.call.name for s in scenario.all("attack")])
    attacks = tuple(attrs.evolve(a, name=name) if a else a for a, name in zip(attacks, names))
    metrics = tuple((name, c.resolve("metric", spec.Call(name))) for name in ("accuracy", "loss"))

    output = output_override
    if output is None and "output" in by_keyword:
        statement = by_keyword["output"]
        output = statement.value
        if not isinstance(output, str) or not output.strip():
            what = "an empty string" if isinstance(output, str) else describe(output)
            c.error(f"'output' must be the path of the results file, got {what}",
                    statement.value_span or statement.span)
    if output is None:
        # No output statement: results/NAME.h5 under the working directory.
        output = str(Path("results") / (Path(scenario.filename).stem + ".h5"))
    elif isinstance(output, str) and output_override is None:
        # Written in the scenario: read like every path it names, from the
        # scenario file's folder ("~/x.h5": the home folder, not a folder named '~').
        output = os.path.normpath(resolve_path(output, str(Path(scenario.filename).parent)))
    elif isinstance(output, str):
        output = os.path.expanduser(output)  # -o PATH: from the working directory
    total_attackers = sum(a.num_clients for a in attacks if a is not None)
    if num_clients is not None and total_attackers > num_clients:
        span = scenario.all("attack")[-1].span
        c.error(f"the attack blocks take {total_attackers} clients, but the split has only {num_clients}", span)
    split_name = by_keyword["split"].value[0].name if "split" in by_keyword else None
    _placement_rules(c, [a for a in attacks if a is not None], split_name, training, rounds)

    if c.problems or training is None or any(p is None for p in plugins.values()) or split is None \
            or any(d is None for d in detectors) or any(a is None for a in attacks):
        raise ScenarioError(capped(c.problems), scenario.filename, scenario.source)

    resolved = Scenario(
        title=scenario.title, seed=seed, rounds=rounds, dataset=plugins["dataset"], split=split,
        num_clients=num_clients, model=plugins["model"], training=training, attacks=attacks,
        detectors=detectors, aggregator=plugins["aggregator"], metrics=metrics,
        evaluate_every=evaluate_every, save_model_every=save_model_every, output=output, source=scenario.source,
        filename=scenario.filename,
        sweep_point=scenario.point,
    )
    # Rules of each plugin that need the rest of the scenario.  The dataset's
    # and the model's paths are resolved first: describing the data may read
    # its files, and the model is built where no scenario folder is known.
    resolved = _paths_resolved(resolved)
    try:
        facts = resolved.facts
    except Exception as error:  # a dataset plugin that cannot describe itself
        c.error(f"dataset '{by_keyword['dataset'].value.name}' cannot describe its data: {error}",
                by_keyword["dataset"].value.span)
        raise ScenarioError(capped(c.problems), scenario.filename, scenario.source) from None
    for group in attacks:
        if group.owners is not None and group.owners.label >= facts.num_classes:
            c.error(f"owners(...): label {number(group.owners.label)} is not a label of the dataset, which has "
                    f"{facts.num_classes} classes (labels 0 to {facts.num_classes - 1})", group.span)
    if "start" in by_keyword:
        start, problems = check_start(by_keyword["start"], resolved, facts, registry)
        for message, span in problems:
            c.error(message, span)
        resolved = attrs.evolve(resolved, start=start)
    optimizer_setting = next((s for s in (by_keyword["training"].value if "training" in by_keyword else ())
                              if s.name == "optimizer"), None)
    aggregator_call = aggregator_statement.value if aggregator_statement else spec.Call("fedavg", span=scenario.span)
    optimizer_call = optimizer_setting.value if optimizer_setting else TRAINING_SETTINGS["optimizer"].default
    to_check = [
        ("dataset", by_keyword["dataset"].value, resolved.dataset, by_keyword["dataset"].value.span),
        ("split", by_keyword["split"].value[0], resolved.split, by_keyword["split"].value[0].span),
        ("model", by_keyword["model"].value, resolved.model, by_keyword["model"].value.span),
        ("optimizer", optimizer_call, resolved.training.optimizer,
         optimizer_setting.value_span if optimizer_setting else by_keyword.get("training", scenario).span),
        ("aggregator", aggregator_call, resolved.aggregator, aggregator_call.span),
    ]
    to_check += [("attack", s.value.call, g.attack, s.value.call.span) for g, s in zip(attacks, scenario.all("attack"))]
    to_check += [("detector", s.value, d, s.value.span) for d, s in zip(detectors, scenario.all("detector"))]
    for kind, call, plugin, span in to_check:
        try:
            messages = list(plugin.check(facts))
        except Exception as error:  # a bug in a plugin's check must not become a traceback
            messages = [f"{kind} '{call.name}' failed while checking the scenario: {type(error).__name__}: {error}"]
        for message in messages:
            c.error(str(message), span)
    if c.problems:
        raise ScenarioError(capped(c.problems), scenario.filename, scenario.source)
    return resolved


def _paths_resolved(resolved: Scenario) -> Scenario:
    """The scenario with its dataset's and model's relative ``path``
    parameters (where they have one) made absolute from the scenario file's
    folder, as every file a scenario names is read: the plugins then read
    them whatever the working directory.  (Attacks get the folder through
    `Facts.resolve`.)"""
    folder = str(Path(resolved.filename).parent)
    changes = {}
    for role in ("dataset", "model"):
        plugin = getattr(resolved, role)
        fields = attrs.fields_dict(type(plugin)) if attrs.has(type(plugin)) else {}
        path = getattr(plugin, "path", None)
        if "path" not in fields or not fields["path"].init or not isinstance(path, str) or not path:
            continue
        absolute = os.path.abspath(resolve_path(path, folder))
        if absolute != path:
            changes[role] = attrs.evolve(plugin, path=absolute)
    return attrs.evolve(resolved, **changes) if changes else resolved


def _clients(count: int) -> str:
    return "1 client" if count == 1 else f"{count} clients"


def _training(c: Checker, statement: spec.Statement | None, num_clients: int | None) -> Training | None:
    values = {name: setting.default for name, setting in TRAINING_SETTINGS.items()}
    spans: dict[str, Span | None] = {}
    ok = True
    for setting in statement.value if statement else ():
        declared = TRAINING_SETTINGS.get(setting.name)
        if declared is None:
            hint = did_you_mean(setting.name, list(TRAINING_SETTINGS)) or f"; known: {', '.join(TRAINING_SETTINGS)}"
            c.error(f"unknown training setting '{setting.name}'{hint}", setting.span)
            ok = False
            continue
        if setting.name in spans:
            c.error(f"training setting '{setting.name}' is given twice", setting.span)
            ok = False
            continue
        spans[setting.name] = setting.value_span or setting.span
        info = ParamInfo(setting.name, declared.type, declared.default, declared.doc, ge=declared.ge,
                         le=declared.le, lt=declared.lt, choices=declared.choices, kind=declared.kind)
        if _is_int(setting.value) and declared.le is not None and setting.value > declared.le:
            why = f" ({declared.why})" if declared.why else ""
            c.error(f"training setting '{setting.name}' must be between {number(int(declared.ge))} and "
                    f"{number(int(declared.le))}{why}, got {number(setting.value)}", setting.value_span or setting.span)
            ok = False
            continue
        value = c.value_for(info, setting.value, f"training setting '{setting.name}'",
                            setting.value_span or setting.span, write=f"{setting.name} ")
        if value is _INVALID:
            ok = False
        else:
            values[setting.name] = value
    optimizer = values["optimizer"]
    if isinstance(optimizer, spec.Call):
        optimizer = c.resolve("optimizer", optimizer)
    if num_clients is None:
        ok = False  # reported where the split is
    elif values["clients_per_round"] is None:
        values["clients_per_round"] = num_clients
    elif values["clients_per_round"] > num_clients:
        c.error(
            f"clients_per_round is {number(values['clients_per_round'])}, "
            f"but the split has only {_clients(num_clients)}",
            spans["clients_per_round"],
        )
        ok = False
    if values["protocol"] == "fedsgd" and values["local_epochs"] != 1:
        c.error("protocol fedsgd sends one gradient of one batch: local_epochs must be 1 (or use fedavg)",
                spans["local_epochs"])
        ok = False
    if not ok or optimizer is None:
        return None
    return Training(values["clients_per_round"], values["local_epochs"], values["batch_size"], optimizer,
                    float(values["server_learning_rate"]), float(values["server_momentum"]), values["protocol"],
                    values["root_samples"], values["client_group"])


def _attack(c: Checker, statement: spec.Statement, num_clients: int | None, total_rounds: int) -> AttackGroup | None:
    block: spec.AttackBlock = statement.value
    attack = c.resolve("attack", block.call)
    count, rounds, ids, owners, present, ok = None, None, None, None, None, True
    clients_span = present_span = None
    seen = set()
    for setting in block.settings:
        value, span = setting.value, setting.value_span or setting.span
        if setting.name not in ATTACK_SETTINGS:
            hint = did_you_mean(setting.name, list(ATTACK_SETTINGS)) or f"; known: {', '.join(ATTACK_SETTINGS)}"
            c.error(f"unknown attack setting '{setting.name}'{hint}", setting.span)
            ok = False
        elif setting.name in seen:
            c.error(f"attack setting '{setting.name}' is given twice", setting.span)
            ok = False
        elif setting.name == "clients":
            clients_span = span
            if isinstance(value, spec.Percent):
                if not 0 <= value.value <= 100:
                    c.error(f"attack clients must be between 0% and 100%, got {value}", span)
                    ok = False
                else:
                    count = value.of(num_clients or 0)
            elif _is_int(value) and 0 <= value <= INT_MAX:
                count = value
            elif _is_int(value) and value > INT_MAX:
                c.error(f"attack clients must be between 0 and {INT_MAX}, got {number(value)}", span)
                ok = False
            elif isinstance(value, tuple):
                ids = _client_ids(c, value, num_clients, span)
                ok = ok and ids is not None
                count = len(ids) if ids is not None else None
            elif isinstance(value, spec.Call) and value.name == "owners":
                owners = _owners(c, value, num_clients)
                ok = ok and owners is not None
                count = owners.count if owners is not None else None
            else:
                hint = did_you_mean(value.name, ["owners"]) if isinstance(value, spec.Call) else ""
                c.error(f"attack clients must be a count (0 or more), a percentage, a list of client ids or "
                        f"owners(label = L, count = N), got {describe(value)}{hint}", span)
                ok = False
        elif setting.name == "present":
            present_span = span
            if isinstance(value, spec.Every) and _is_int(value.k) and value.k >= 1:
                present = value
                if value.k > total_rounds:
                    c.error(f"attack '{block.call.name}' is present every {number(value.k)} rounds, but the run has "
                            f"only {total_rounds} rounds, so its clients would never take part; lower k", span)
                    ok = False
            else:
                c.error(f"attack setting 'present' must be 'every round' or 'every k rounds' with k >= 1, "
                        f"got {describe(value)}", span)
                ok = False
        else:
            if isinstance(value, spec.Range) and 1 <= value.start <= value.stop:
                rounds = value
                if value.start > total_rounds:
                    c.error(f"attack rounds {value} start after the last round ({total_rounds})", span)
                    ok = False
            elif isinstance(value, spec.Every) and value.k >= 1:
                rounds = value
            else:
                c.error(f"attack rounds must be a range 'a..b' with 1 <= a <= b, or 'every k' with k >= 1, "
                        f"got {describe(value)}", span)
                ok = False
        seen.add(setting.name)
    if "clients" not in seen and ok:
        c.error(f"attack '{block.call.name}' needs 'clients' (a count, a percentage or a list of client ids) "
                f"in its block", block.span)
        ok = False
    if attack is None or not ok or count is None:
        return None
    return AttackGroup(block.call.name, attack, count, rounds, ids, owners, present, span=clients_span or block.span,
                       present_span=present_span)


def _placement_rules(c: Checker, groups: list[AttackGroup], split_name: str | None, training: Training | None,
                     total_rounds: int) -> None:
    """Rules across attack groups: a client in one group at most; owners
    only under a split that skews labels; present groups within a round."""
    owner_of: dict[int, str] = {}
    for group in groups:
        places = _item_spans(c.source, group.span, len(group.ids or ()))
        for client, place in zip(group.ids or (), places):
            if client in owner_of:
                c.error(f"attack clients: client {client} is in attack groups '{owner_of[client]}' and "
                        f"'{group.name}'; a client belongs to one attack group at most", place)
            owner_of.setdefault(client, group.name)
        if group.owners is not None and split_name in LABEL_UNIFORM_SPLITS:
            c.error(f"attack clients {group.owners} picks the clients holding the most samples of a label, but "
                    f"split '{split_name}' gives every client the same mix of labels; use a label-skewed split "
                    f"(dirichlet, shards, fang, natural) or list the client ids", group.span)
    present = [g for g in groups if g.present is not None]
    if not present or training is None:
        return
    periods = [g.present.k for g in present]
    horizon = min(total_rounds, math.lcm(*periods))
    if horizon <= PRESENT_HORIZON:  # the load repeats every lcm(periods) rounds: its peak is exact
        loads = ((r, [g for g in present if r % g.present.k == 0]) for r in range(1, horizon + 1))
        peak_round, peak = max(loads, key=lambda load: sum(g.num_clients for g in load[1]))
    else:
        peak_round, peak = None, present
    taken = sum(g.num_clients for g in peak)
    if taken > training.clients_per_round:
        which = f"attack '{peak[0].name}' is" if len(peak) == 1 else \
            "attacks " + ", ".join(f"'{g.name}'" for g in peak) + " are"
        when = f" in round {peak_round}" if peak_round is not None else ""
        c.error(f"{which} present{when} with {_clients(taken)}, but only {training.clients_per_round} take part in "
                f"a round (training setting clients_per_round); present members replace sampled clients, so "
                f"lower their clients or raise clients_per_round", peak[-1].present_span)


def _client_ids(c: Checker, value: tuple, num_clients: int | None, span: Span | None) -> tuple[int, ...] | None:
    """The client ids of ``clients [0, 3, 7]``, each in the split's range and listed once; None on a problem."""
    ok = True
    for item in value:
        if not _is_int(item):
            c.error(f"attack clients: a list holds client ids (integers), got {describe(item)}", span)
            return None
    places = _item_spans(c.source, span, len(value))
    for position, item in enumerate(value):
        if num_clients is not None and not 0 <= item < num_clients:
            c.error(f"attack clients: client id {number(item)} is out of range; the split has "
                    f"{_clients(num_clients)}, ids 0 to {num_clients - 1}", places[position])
            ok = False
        elif item in value[:position]:
            c.error(f"attack clients: client id {number(item)} is listed twice", places[position])
            ok = False
    return tuple(value) if ok else None


def _item_spans(source: str, span: Span | None, count: int) -> list[Span | None]:
    """Where each item of a flat list of integers was written, found in the
    source text at the list's span; the list's own span for each when the
    text is not that simple (a comment inside, a list written elsewhere)."""
    fallback = [span] * count
    if span is None or span.end_line != span.line or span.end_column is None:
        return fallback
    lines = source.split("\n")
    if not 0 < span.line <= len(lines):
        return fallback
    text = lines[span.line - 1][span.column - 1 : span.end_column - 1]
    if not (text.startswith("[") and text.endswith("]")) or "#" in text:
        return fallback
    places, offset = [], 1
    for part in text[1:-1].split(","):
        stripped = part.strip()
        if stripped:
            column = span.column + offset + (len(part) - len(part.lstrip()))
            places.append(Span(span.line, column, span.line, column + len(stripped)))
        offset += len(part) + 1
    return places if len(places) == count else fallback


def _owners(c: Checker, call: spec.Call, num_clients: int | None) -> Owners | None:
    """``owners(label = L, count = N)``; the label's range is checked once the dataset is known."""
    values, ok = {"count": 1}, True
    given = set()
    for arg in call.args:
        where = arg.value_span or arg.span
        if arg.name not in ("label", "count"):
            hint = did_you_mean(arg.name, ["label", "count"]) or "; it takes label, count"
            c.error(f"owners(...) has no parameter '{arg.name}'{hint}", arg.span)
            ok = False
        elif arg.name in given:
            c.error(f"parameter '{arg.name}' of owners(...) is given twice", arg.span)
            ok = False
        elif not _is_int(arg.value) or arg.value < (0 if arg.name == "label" else 1) or arg.value > INT_MAX:
            what = "a label (an integer >= 0)" if arg.name == "label" else "a count of clients (an integer >= 1)"
            c.error(f"owners(...): '{arg.name}' must be {what}, got {describe(arg.value)}", where)
            ok = False
        elif arg.name == "count" and num_clients is not None and arg.value > num_clients:
            c.error(f"owners(...): count {number(arg.value)} is more than the split's {_clients(num_clients)}",
                    where)
            ok = False
        else:
            values[arg.name] = arg.value
        given.add(arg.name)
    if "label" not in given:
        c.error("owners(...) needs parameter 'label' (the label whose owners attack)", call.span)
        ok = False
    return Owners(values["label"], values["count"]) if ok else None
