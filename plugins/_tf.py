"""TensorFlow, loaded on first use: the one place plugins get it from.

    from fedarena.plugins import _tf as tf

    tf.where(...)          # imports TensorFlow here, the first time

Importing a plugin module (as ``fedarena check`` and ``fedarena plugins``
do for every built-in) must not import TensorFlow, which takes seconds;
an attribute of this module is looked up in TensorFlow only when a plugin's
TF code runs.
"""

from __future__ import annotations

import importlib


def __getattr__(name: str):
    if name.startswith("__"):  # keep `import` machinery and introspection off TensorFlow
        raise AttributeError(name)
    return getattr(importlib.import_module("tensorflow"), name)
