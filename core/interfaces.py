"""Kept so that plugins written against fedarena 0.1 import unchanged:
``from fedarena.core.interfaces import Aggregator`` still works.  New code
imports the plugin API from `fedarena.core` (its home is
`fedarena.core.plugin.interfaces`)."""

from fedarena.core.plugin.interfaces import *  # noqa: F401,F403
from fedarena.core.plugin.interfaces import __all__  # noqa: F401
