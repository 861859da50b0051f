"""The plugin kinds: the one table every other place derives from.

Each kind has a base class (`fedarena.core.plugin.interfaces`), a
registration hook (``fedarena_register_<kind>s``), and a heading and
introduction in the generated plugin reference.  The registry, the hook
specifications' tests, ``fedarena plugins`` and the reference all read
`KINDS`; adding a kind is one row here plus its hookspec.
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.interfaces import (
    Aggregator, Attack, Dataset, Detector, Metric, Model, Optimizer, Plugin, Split, Trigger,
)


@attrs.frozen
class Kind:
    """One kind of plugin."""

    name: str  # as plugins' ``kind`` and the registry say it: "aggregator"
    base: type[Plugin]
    title: str  # the heading of its section in docs/plugin-reference.md
    intro: str  # one line on where a scenario names it

    @property
    def hook(self) -> str:
        """The name of the registration hook of this kind."""
        return f"fedarena_register_{self.name}s"


# In the order a scenario names them.
KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("dataset", Dataset, "Datasets", "`dataset NAME(...)`: the data, split into training data for the clients "
         "and a held-out test set for the server."),
    Kind("split", Split, "Splits", "`split NAME(...) over N clients`: how the training data is divided among the "
         "clients."),
    Kind("model", Model, "Models", "`model NAME(...)`: the Keras model every client trains."),
    Kind("optimizer", Optimizer, "Optimizers", "`optimizer NAME(...)` inside `training { ... }`: the clients' "
         "local optimizer."),
    Kind("attack", Attack, "Attacks", "`attack NAME(...) { clients N }`: what a group of malicious clients does, "
         "to its training data (data poisoning) or to its updates at the server stage (model poisoning)."),
    Kind("trigger", Trigger, "Triggers", "`trigger = NAME(...)` as a parameter of a backdoor attack "
         "(`backdoor(target = 0, trigger = pixel(size = 3))`): the pattern stamped on poisoned inputs."),
    Kind("detector", Detector, "Detectors", "`detector NAME(...)`: scores each round's updates and drops the ones "
         "it judges malicious, before aggregation; detectors run in the order written."),
    Kind("aggregator", Aggregator, "Aggregators", "`aggregator NAME(...)`: how the server combines the kept "
         "updates."),
    Kind("metric", Metric, "Metrics", "Test-set metrics, computed at every evaluation (not named in scenarios)."),
)}
