"""Tracing a failure in a round back to the plugin that caused it.

Each plugin's part of a round is built under a TF name scope naming its
role (``fedarena_plugin_aggregator``, ``fedarena_plugin_detector_0``, ...).
An error raised while building is wrapped at once in `PluginFailure`; an
error raised later inside the graph, in TFF's worker, carries the op's
scoped name in its message, which `failing_role` finds.
"""

from __future__ import annotations

import re

SCOPE_PREFIX = "fedarena_plugin_"
_SCOPE = re.compile(SCOPE_PREFIX + r"(attack_\d+|detector_\d+|aggregator)")


class PluginFailure(Exception):
    """A plugin raised while its part of the round was built."""

    def __init__(self, role: str, plugin, error: BaseException):
        super().__init__(f"{type(error).__name__}: {error}")
        self.role, self.plugin, self.error = role, plugin, error


def failing_role(error: BaseException) -> str | None:
    """The plugin role named by an error, if any."""
    if isinstance(error, PluginFailure):
        return error.role
    found = _SCOPE.search(str(error))
    return found.group(1) if found else None
