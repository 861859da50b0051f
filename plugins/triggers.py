"""Built-in backdoor triggers: the value of a backdoor attack's ``trigger``
parameter, ``backdoor(target = 0, trigger = pixel(size = 3))``.

Each trigger states per-part weights ``w`` and a pattern; `Trigger` (in
``fedarena.core.plugin.interfaces``) stamps ``x' = x * (1 - w) + w * pattern``.
Inputs of rank 1 to 3 are seen as images as `image_view` describes.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Trigger
from fedarena.core.plugin.params import param

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


def image_view(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """How a trigger sees one input, as (height, width, channels).

    Images ``[H, W, C]`` as they are; ``[H, W]`` as one channel.  A flat input
    of ``F`` features is a square one-channel image when ``F`` is a perfect
    square (e.g. MNIST's 784 = 28 x 28, row-major), otherwise a ``1 x F``
    strip, so that a patch of side ``size`` becomes ``size`` consecutive
    features at the start (left corners) or end (right corners).
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        return (side, side, 1) if side * side == shape[0] else (1, shape[0], 1)
    if len(shape) == 2:
        return shape + (1,)
    if len(shape) == 3:
        return shape
    raise ValueError(f"a trigger needs inputs of rank 1 to 3, got shape {shape}")


@attrs.frozen
class Pixel(Trigger):
    """BadNets patch (Gu et al. 2017, "BadNets: Identifying Vulnerabilities
    in the Machine Learning Model Supply Chain"): a square of ``size`` x
    ``size`` pixels at ``corner``, every channel set to ``value`` (the
    inputs' maximum: 1.0 for the built-in datasets, which scale pixels to
    [0, 1]; with ``normalize = "standard"`` the value is taken as it is, in
    the standardized space, where white is ``(1 - mean) / std``, e.g. 2.8215
    for MNIST: docs/data.md lists each dataset's).  Every attacker stamps
    the whole patch (one part)."""

    paper = "Gu et al. 2017, arXiv:1708.06733"

    size: int = param(3, doc="side of the square patch in pixels", ge=1)
    corner: str = param("bottom_right", doc="where the patch sits", choices=CORNERS)
    value: float = param(1.0, doc="value of the patch's pixels: the inputs' maximum")

    @property
    def _name(self) -> str:
        return type(self).__name__.lower()

    def check(self, facts):
        try:
            height, width, _ = image_view(facts.input_shape)
        except ValueError as error:
            return [f"{self._name}: {error}"]
        # A 1 x F strip (flat input of non-square length) takes `size` features.
        if self.size > width or (height > 1 and self.size > height):
            return [f"{self._name} patch size {self.size} does not fit inputs of {height} x {width} pixels"]
        return []

    def patch_mask(self, input_shape) -> np.ndarray:
        """bool ``(height, width, channels)`` of `image_view`: the patch."""
        height, width, channels = image_view(input_shape)
        rows, cols = min(self.size, height), min(self.size, width)
        mask = np.zeros((height, width, channels), bool)
        r0 = 0 if self.corner.startswith("top") else height - rows
        c0 = 0 if self.corner.endswith("left") else width - cols
        mask[r0 : r0 + rows, c0 : c0 + cols, :] = True
        return mask

    def weights(self, input_shape):
        shape = tuple(input_shape)
        return self.patch_mask(shape).reshape((1,) + shape).astype(np.float32)

    def pattern(self, input_shape):
        return np.full(tuple(input_shape), self.value, np.float32)


@attrs.frozen
class DBA(Pixel):
    """Distributed backdoor attack (Xie et al. 2020, "DBA: Distributed
    Backdoor Attacks against Federated Learning", ICLR): the `pixel` patch
    is the global trigger; its pixels, in row-major order, are cut into
    ``parts`` nearly equal runs (size 4 and 4 parts: four one-row bars).  In
    training, attacker ``member`` of the group stamps only run ``member mod
    parts``; at test time the whole patch is stamped.

    Deviation: the paper's local triggers are bars with gaps between them;
    here they are adjacent pieces of one patch.
    """

    paper = "Xie et al. 2020, ICLR"

    parts: int = param(4, doc="number of local triggers the patch is split into", ge=1)

    def check(self, facts):
        problems = super().check(facts)
        if problems:
            return problems
        height, width, _ = image_view(facts.input_shape)
        pixels = min(self.size, height) * min(self.size, width)
        if self.parts > pixels:
            return [f"{self._name} cannot split a patch of {pixels} pixels into {self.parts} parts"]
        return []

    def weights(self, input_shape):
        shape = tuple(input_shape)
        mask = self.patch_mask(shape)
        rows, cols = np.nonzero(mask[..., 0])  # row-major order
        parts = np.zeros((self.parts,) + mask.shape, np.float32)
        for index, chunk in enumerate(np.array_split(np.arange(len(rows)), self.parts)):
            parts[index, rows[chunk], cols[chunk], :] = 1.0
        return parts.reshape((self.parts,) + shape)


@attrs.frozen
class Blend(Trigger):
    """Blended injection (Chen et al. 2017, "Targeted Backdoor Attacks on
    Deep Learning Systems Using Data Poisoning"): ``x' = (1 - alpha) x +
    alpha * pattern`` over the whole input, the pattern uniform in [0,
    ``value``) drawn from ``pattern_seed`` (the paper's random-noise
    pattern; the same for every client and round).  Inputs of any shape."""

    paper = "Chen et al. 2017, arXiv:1712.05526"

    alpha: float = param(0.2, doc="blend weight of the pattern", gt=0, le=1)
    value: float = param(1.0, doc="the pattern is uniform in [0, value)")
    pattern_seed: int = param(0, doc="seed of the pattern", ge=0)

    def weights(self, input_shape):
        return np.full((1,) + tuple(input_shape), self.alpha, np.float32)

    def pattern(self, input_shape):
        shape = tuple(input_shape)
        return np.random.default_rng(self.pattern_seed).uniform(0.0, self.value, shape).astype(np.float32)


@hookimpl
def fedarena_register_triggers(registry):
    registry.add("pixel", Pixel)
    registry.add("blend", Blend)
    registry.add("dba", DBA)
