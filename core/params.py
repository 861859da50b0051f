"""Kept so that plugins written against fedarena 0.1 import unchanged:
``from fedarena.core.params import param`` still works.  New code imports
`param` from `fedarena.core` (its home is `fedarena.core.plugin.params`)."""

from fedarena.core.plugin.params import *  # noqa: F401,F403
from fedarena.core.plugin.params import __all__  # noqa: F401
