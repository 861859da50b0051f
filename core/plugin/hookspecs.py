"""The hooks fedarena calls.  A plugin implements any of them with
``@fedarena.hookimpl``; names carry the ``fedarena_`` prefix, and hooks take
keyword arguments only, so a spec can grow without breaking older plugins.

Registration hooks are called once, when the plugin manager loads, one
implementation at a time (so that each registered name is credited to the
distribution that provides it).  They return nothing; they call
``registry.add(name, cls)`` for each plugin class of their kind.

Lifecycle hooks are called on every registered plugin during a run; all
results are collected, and a ``False`` from ``fedarena_round_end`` stops the
run after that round (status ``interrupted``).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("fedarena")
hookimpl = pluggy.HookimplMarker("fedarena")


@hookspec
def fedarena_register_datasets(registry) -> None:
    """Add dataset plugins (subclasses of `fedarena.core.plugin.interfaces.Dataset`)."""


@hookspec
def fedarena_register_splits(registry) -> None:
    """Add split plugins (`Split`): how a dataset is divided among clients."""


@hookspec
def fedarena_register_models(registry) -> None:
    """Add model plugins (`Model`): a Keras model for the dataset's shapes."""


@hookspec
def fedarena_register_optimizers(registry) -> None:
    """Add optimizer plugins (`Optimizer`) for clients' local training."""


@hookspec
def fedarena_register_attacks(registry) -> None:
    """Add attack plugins (`Attack`): data poisoning and/or model poisoning."""


@hookspec
def fedarena_register_triggers(registry) -> None:
    """Add trigger plugins (`Trigger`): the patterns backdoor attacks stamp
    on inputs, named as an attack's parameter (``trigger = pixel(size = 3)``)."""


@hookspec
def fedarena_register_detectors(registry) -> None:
    """Add detector plugins (`Detector`), applied in order before aggregation."""


@hookspec
def fedarena_register_aggregators(registry) -> None:
    """Add aggregator plugins (`Aggregator`): updates of a round -> one update."""


@hookspec
def fedarena_register_metrics(registry) -> None:
    """Add metric plugins (`Metric`), computed at each evaluation."""


@hookspec
def fedarena_run_start(run) -> None:
    """Called once before the first round; ``run`` is the `RunInfo`
    (scenario, output path, resolved plugins)."""


@hookspec
def fedarena_round_end(run, round: int, metrics: dict) -> bool | None:
    """Called after each completed and written round with that round's
    metrics (empty when the round was not evaluated).  Return ``False`` to
    stop the run after this round."""


@hookspec
def fedarena_run_end(run, status: str) -> None:
    """Called once when the run ends, with its final status (``complete``,
    ``failed`` or ``interrupted``), after the results file is closed."""
