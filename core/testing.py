"""Pytest fixtures for plugin authors (loaded through the ``pytest11`` entry
point, so any project that has fedarena installed gets them).

- ``fedarena_registry(*plugins)``: a registry with the built-ins, the
  installed plugins and the given plugin objects registered as if they came
  from an entry point; the plugin objects are whatever you would expose
  through your ``fedarena`` entry point (a module or a class with hookimpls).
- ``fedarena_server_context(...)``: a `ServerContext` built from NumPy values,
  for calling ``aggregate``, ``detect`` or ``poison_updates`` directly on a
  hand-made update matrix.
- ``fedarena_run(text, plugins=(...))``: runs a scenario end to end on TFF
  (on the default backend: `fedarena.core.execution.backends.choice`) and
  returns the results file read back as a `RunRecord`.
- ``fedarena_worker``: the addresses of one TFF C++ worker that the whole
  test session shares, started on first use.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pytest


@attrs.frozen
class RunRecord:
    """A results file read back: root attributes and every dataset by path."""

    path: Path
    attrs: dict
    data: dict

    @property
    def status(self) -> str:
        return self.attrs["status"]


def read_record(path) -> RunRecord:
    from fedarena.core.results import reader

    with reader.open_results(path) as f:
        root = dict(f.attrs)
        data = reader.every_dataset(f)
        data.update({f"plugins/{name}": attributes for name, attributes in reader.plugins(f).items()})
    return RunRecord(Path(path), root, data)


def make_registry(*plugins):
    from fedarena.core.plugin.registry import build_registry

    named = tuple((getattr(p, "__name__", type(p).__name__), p) for p in plugins)
    return build_registry(extra_plugins=named)


def make_server_context(
    updates: np.ndarray,
    *,
    num_clients: int | None = None,
    num_classes: int = 10,
    client_ids=None,
    num_examples=None,
    global_weights=None,
    round: int = 1,
    seed=(0, 0),
    layers=None,
    num_attackers: int = 0,
    server_learning_rate: float = 1.0,
):
    import tensorflow as tf

    from fedarena.core.plugin.interfaces import Facts, Layer, ServerContext

    k, d = np.shape(updates)
    facts = Facts(
        num_clients=num_clients or k, clients_per_round=k, num_classes=num_classes, input_shape=(d,),
        server_learning_rate=server_learning_rate, num_attackers=num_attackers,
    )
    return ServerContext(
        facts=facts,
        layers=tuple(layers) if layers else (Layer("weights", (d,), 0),),
        client_ids=tf.constant(np.arange(k) if client_ids is None else client_ids, tf.int32),
        num_examples=tf.constant(np.ones(k) if num_examples is None else num_examples, tf.float32),
        global_weights=tf.constant(np.zeros(d) if global_weights is None else global_weights, tf.float32),
        round=tf.constant(round, tf.int32),
        seed=tf.constant(seed, tf.int64),
    )


def run_text(text: str, directory: Path, plugins=(), name: str = "scenario.fls",
             workers: list[str] | None = None, backend: str = "auto") -> RunRecord:
    """Run scenario text (its output redirected into ``directory``) on the
    given TFF workers, or on ``backend``."""
    from fedarena.core.scenario.sweep import check
    from fedarena.core.language.parser import parse
    from fedarena.core.execution.runner import Progress, run_scenario

    registry = make_registry(*plugins)
    path = Path(directory) / name
    path.write_text(text)
    output = Path(directory) / (path.stem + ".h5")
    scenario = check(parse(text, str(path)), registry, str(output))
    run_scenario(scenario, registry, force=True, workers=workers, progress=Progress(scenario.rounds, enabled=False),
                 backend=backend)
    return read_record(output)


@pytest.fixture
def fedarena_registry():
    """Factory: ``fedarena_registry(my_plugin_module)`` -> a Registry."""
    return make_registry


@pytest.fixture
def fedarena_server_context():
    """Factory: ``fedarena_server_context(updates, ...)`` -> a ServerContext."""
    return make_server_context


@pytest.fixture(scope="session")
def fedarena_worker():
    """The addresses of one TFF worker that the whole test session shares
    (started on first use, stopped when the session ends)."""
    from fedarena.core.execution.backends.worker import tff_workers

    with tff_workers() as pool:
        yield pool.addresses


@pytest.fixture
def fedarena_run(tmp_path):
    """Factory: ``fedarena_run(text, plugins=(my_plugin,))`` -> RunRecord."""

    def run(text: str, plugins=()):
        return run_text(text, tmp_path, plugins)

    return run
