"""The hooks fedarena calls, as pytest documents its own.

A plugin implements any of them with ``@fedarena.hookimpl`` (names carry the
``fedarena_`` prefix; a misspelt name is an error when plugins load).  Hooks
are called with keyword arguments only, so a spec can grow a parameter
without breaking older plugins, and an implementation may accept only the
parameters it uses.

**Registration hooks** (``fedarena_register_<kind>s``, one per plugin kind
in `fedarena.core.plugin.kinds`) are called once, when the plugin manager
loads, one implementation at a time, so that each registered name is
credited to the distribution that provides it.

**Lifecycle hooks** are called on every registered plugin during a run;
every result is collected (none stops the others).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # for the annotations only: the registry imports this module
    from fedarena.core.plugin.interfaces import RunInfo
    from fedarena.core.plugin.registry import KindRegistrar

hookspec = pluggy.HookspecMarker("fedarena")
hookimpl = pluggy.HookimplMarker("fedarena")


@hookspec
def fedarena_register_datasets(registry: KindRegistrar) -> None:
    """Register dataset plugins.

    :param registry: call ``registry.add(name, cls)`` once per plugin class,
        a subclass of `fedarena.core.Dataset` (``info()``, ``load(seed)``).

    Called once per implementation when plugins load; the return value is
    ignored.  A name another plugin already registered is an error naming
    both distributions.
    """


@hookspec
def fedarena_register_splits(registry: KindRegistrar) -> None:
    """Register split plugins: how a dataset's training samples are divided
    among the clients.

    :param registry: ``registry.add(name, cls)`` with subclasses of
        `fedarena.core.Split` (``partition(labels, num_clients, rng)``).

    Called once per implementation when plugins load; the return value is
    ignored.
    """


@hookspec
def fedarena_register_models(registry: KindRegistrar) -> None:
    """Register model plugins.

    :param registry: ``registry.add(name, cls)`` with subclasses of
        `fedarena.core.Model` (``build(input_shape, num_classes)`` -> an
        uncompiled Keras model returning logits).

    Called once per implementation when plugins load; the return value is
    ignored.
    """


@hookspec
def fedarena_register_optimizers(registry: KindRegistrar) -> None:
    """Register client optimizer plugins.

    :param registry: ``registry.add(name, cls)`` with subclasses of
        `fedarena.core.Optimizer` (``build()`` -> a TFF optimizer).

    Called once per implementation when plugins load; the return value is
    ignored.
    """


@hookspec
def fedarena_register_attacks(registry: KindRegistrar) -> None:
    """Register attack plugins: data poisoning, model poisoning, or both.

    :param registry: ``registry.add(name, cls)`` with subclasses of
        `fedarena.core.Attack` (``poison_data``, ``poison_updates`` or
        ``apply``, ``test_metrics``).

    Called once per implementation when plugins load; the return value is
    ignored.
    """


@hookspec
def fedarena_register_triggers(registry: KindRegistrar) -> None:
    """Register backdoor trigger plugins, named as an attack's parameter
    (``backdoor(trigger = pixel(size = 3))``).

    :param registry: ``registry.add(name, cls)`` with subclasses of
        `fedarena.core.Trigger` (``weights(input_shape)``,
        ``pattern(input_shape)``).

    Called once per implementation when plugins load; the return value is
    ignored.
    """


@hookspec
def fedarena_register_detectors(registry: KindRegistrar) -> None:
    """Register detector plugins, applied in the order a scenario names
    them, before aggregation.

    :param registry: ``registry.add(name, cls)`` with subclasses of
        `fedarena.core.Detector` (``detect(rows, ctx)`` or ``apply(rows,
        ctx, state)``).

    Called once per implementation when plugins load; the return value is
    ignored.
    """


@hookspec
def fedarena_register_aggregators(registry: KindRegistrar) -> None:
    """Register aggregator plugins: a round's kept updates -> one update.

    :param registry: ``registry.add(name, cls)`` with subclasses of
        `fedarena.core.Aggregator` (``aggregate(rows, weights, ctx)`` or
        ``apply(rows, weights, ctx, state)``).

    Called once per implementation when plugins load; the return value is
    ignored.
    """


@hookspec
def fedarena_register_metrics(registry: KindRegistrar) -> None:
    """Register test-set metric plugins, computed at every evaluation.

    :param registry: ``registry.add(name, cls)`` with subclasses of
        `fedarena.core.Metric` (``compute(labels, logits)``).

    Called once per implementation when plugins load; the return value is
    ignored.
    """


@hookspec
def fedarena_run_start(run: RunInfo) -> None:
    """The run is about to start its first round.

    :param run: the checked scenario, the results file's path and the TFF
        worker addresses.

    Called once per run (each point of a sweep is a run), after the results
    file is created (or reopened by ``--resume``) and before the first
    round.  The return value is ignored.
    """


@hookspec
def fedarena_round_end(run: RunInfo, round: int, metrics: dict[str, float]) -> bool | None:
    """A round is complete and written to the results file.

    :param run: as in `fedarena_run_start`.
    :param round: the round's number, 1-based.
    :param metrics: the round's test metrics by name (``test_accuracy``,
        ``<attack group>_<metric>``, ...); empty when the round was not
        evaluated.
    :return: ``False`` to stop the run after this round (status
        ``interrupted``, every completed round kept); anything else lets it
        continue.

    Called after every completed round; every implementation is called,
    whatever another returns.
    """


@hookspec
def fedarena_run_end(run: RunInfo, status: str) -> None:
    """The run has ended and its results file is closed.

    :param run: as in `fedarena_run_start`.
    :param status: the final status written to the file: ``complete``,
        ``failed`` or ``interrupted``.

    Called once per run, also after a failure or an interruption.  The
    return value is ignored.
    """
