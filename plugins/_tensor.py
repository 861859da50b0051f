"""The shared tensor kit of the built-in plugins: small TF functions that
several aggregators, detectors or attacks use, written once.  Each takes and
returns tensors and knows nothing of plugins.
"""

from __future__ import annotations

from fedarena.plugins import _tf as tf
