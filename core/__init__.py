"""fedarena's core, imported as ``fedarena.core``.

``pyproject.toml`` maps the repository's folders into one import package:
``core/`` is ``fedarena.core``, ``plugins/`` is ``fedarena.plugins``,
``grammar/`` is ``fedarena.grammar``, and ``core/_package/__init__.py`` is
``fedarena`` itself.  ``docs/architecture.md`` walks the layers below.

This module is the public plugin API: everything a plugin needs, importable
without TensorFlow::

    from fedarena.core import Aggregator, hookimpl, param
"""

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import (
    Aggregator,
    Attack,
    Dataset,
    DatasetArrays,
    DatasetInfo,
    Detector,
    Facts,
    Layer,
    Metric,
    Model,
    Network,
    Optimizer,
    Plugin,
    RunInfo,
    ServerContext,
    Split,
    Trigger,
)
from fedarena.core.plugin.params import param

__all__ = [
    "Aggregator", "Attack", "Dataset", "DatasetArrays", "DatasetInfo", "Detector", "Facts", "Layer", "Metric",
    "Model", "Network", "Optimizer", "Plugin", "RunInfo", "ServerContext", "Split", "Trigger", "hookimpl", "param",
]
