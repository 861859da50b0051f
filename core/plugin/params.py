"""Parameter declarations: one mechanism for every plugin kind.

A plugin is an attrs class; each constructor parameter is declared with
`param`, which records its type, default, range and one-line doc in the
field's metadata and turns the range into an attrs validator.  The checker,
``fedarena plugins`` and the docs all read these declarations.

    @attrs.frozen
    class Krum(Aggregator):
        f: int = param(doc="Byzantine clients tolerated", ge=0)
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

import attrs

_MISSING = attrs.NOTHING

# The bounds of an integer parameter that declares none on that side: a
# 32-bit signed integer, what TensorFlow and NumPy take without overflowing.
INT_MAX = 2**31 - 1
INT_MIN = -(2**31)


def param(
    default: Any = _MISSING,
    *,
    doc: str,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | None = None,
    kind: str | None = None,
):
    """Declare a plugin parameter.

    ``kind`` marks a parameter whose value is itself a plugin of that kind
    (a nested call such as ``trigger = pixel(size = 3)``).
    """
    validators = []
    bounds = [(ge, "ge", ">="), (gt, "gt", ">"), (le, "le", "<="), (lt, "lt", "<")]
    for bound, name, symbol in bounds:
        if bound is not None:
            validators.append(_bound_validator(bound, name, symbol))
    if choices is not None:
        validators.append(attrs.validators.in_(choices))
    metadata = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "kind": kind}
    converter = tuple if default is not _MISSING and isinstance(default, (list, tuple)) else None
    # A required parameter is keyword-only, so it may follow defaulted ones.
    return attrs.field(
        default=default, validator=validators, metadata={"fedarena": metadata}, converter=converter,
        kw_only=default is _MISSING,
    )


def _bound_validator(bound, name, symbol):
    compare = {
        "ge": lambda v: v >= bound,
        "gt": lambda v: v > bound,
        "le": lambda v: v <= bound,
        "lt": lambda v: v < bound,
    }[name]

    def check(instance, attribute, value):
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, (int, float)) and not compare(v):
                raise ValueError(f"'{attribute.name}' must be {symbol} {bound:g}, got {v:g}")

    return check


@attrs.frozen
class ParamInfo:
    """What a plugin declares about one parameter."""

    name: str
    type: Any
    default: Any
    doc: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    kind: str | None = None

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def type_name(self) -> str:
        return type_name(self.type, self.kind)

    def range_text(self) -> str:
        parts = []
        for symbol, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)):
            if bound is not None:
                parts.append(f"{symbol} {bound:g}")
        if self.choices:
            parts.append("one of " + ", ".join(map(repr, self.choices)))
        return ", ".join(parts)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type_name(),
            "required": self.required,
            "default": None if self.required else self.default,
            "range": self.range_text() or None,
            "doc": self.doc,
        }


def type_name(tp: Any, kind: str | None = None) -> str:
    if kind:
        return kind
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"list of {type_name(typing.get_args(tp)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", str(tp))


def _is_int_type(tp: Any) -> bool:
    """An integer parameter: ``int``, ``int | None``, ``tuple[int, ...]``."""
    if tp is int:
        return True
    origin = typing.get_origin(tp)
    if origin is tuple:
        return _is_int_type(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return len(args) == 1 and _is_int_type(args[0])
    return False


def default_int_bounds(info: ParamInfo) -> tuple[int, int] | None:
    """The range an integer parameter's values must lie in, with the
    default 32-bit bound on a side it declares nothing for; None when the
    parameter is not an integer or declares both sides itself."""
    if not _is_int_type(info.type) or info.kind is not None:
        return None
    if (info.le is not None or info.lt is not None) and (info.ge is not None or info.gt is not None):
        return None
    lower = info.ge if info.ge is not None else (info.gt + 1 if info.gt is not None else INT_MIN)
    upper = info.le if info.le is not None else (info.lt - 1 if info.lt is not None else INT_MAX)
    return math.ceil(lower), math.floor(upper)


def declared_params(cls) -> list[ParamInfo]:
    """The parameters a plugin class declares, in order."""
    hints = typing.get_type_hints(cls)
    infos = []
    for field in attrs.fields(cls):
        meta = field.metadata.get("fedarena")
        if meta is None or not field.init:
            continue
        infos.append(ParamInfo(name=field.name, type=hints.get(field.name, Any), default=field.default, **meta))
    return infos

__all__ = ["INT_MAX", "INT_MIN", "param", "ParamInfo", "declared_params", "default_int_bounds", "type_name"]
