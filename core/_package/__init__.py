"""fedarena: poisoning attacks and defenses for federated learning, declared
as scenarios and run on TensorFlow Federated.

The package is assembled from the repository's folders: ``fedarena.core``
(``core/``), ``fedarena.plugins`` (``plugins/``, the built-in plugins) and
``fedarena.grammar`` (``grammar/``).
"""

from importlib.metadata import PackageNotFoundError, version

from fedarena.core.plugin.hookspecs import hookimpl

try:
    __version__ = version("fedarena")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__", "hookimpl"]
