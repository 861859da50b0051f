"""Tracing a failure in a round back to the plugin that caused it.

Each plugin's part of a round is built under the TF name scope of its
`Role` (``fedarena_plugin_aggregator``, ``fedarena_plugin_detector_0``, ...).
An error raised while building is wrapped at once in `PluginFailure`; an
error raised later inside the graph, in TFF's worker, carries the op's
scoped name in its message, which `failing_role` finds.
"""

from __future__ import annotations

from fedarena.core.scenario.roles import SCOPE_PREFIX, Role

__all__ = ["SCOPE_PREFIX", "PluginFailure", "Role", "failing_role", "in_scope"]


class PluginFailure(Exception):
    """A plugin raised while its part of the round was built."""

    def __init__(self, role: Role, plugin, error: BaseException):
        super().__init__(f"{type(error).__name__}: {error}")
        self.role, self.plugin, self.error = role, plugin, error


def failing_role(error: BaseException) -> Role | None:
    """The plugin role named by an error, if any."""
    if isinstance(error, PluginFailure):
        return error.role
    return Role.from_scope(str(error))


def in_scope(role: Role, plugin, method, *args):
    """Call a plugin's method under its role's TF name scope, so that an
    error raised later inside the graph can be traced back to it; an error
    raised now is wrapped at once in `PluginFailure`."""
    import tensorflow as tf

    try:
        with tf.name_scope(role.scope):
            return method(*args)
    except Exception as error:
        raise PluginFailure(role, plugin, error) from error
