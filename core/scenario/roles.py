"""The roles server-side plugins play in a round, named in one place.

A round applies, in order, the update attacks (``attack_0``, ...), the
detectors (``detector_0``, ...) and the aggregator (``aggregator``).  Each
role has one key, used alike for the TF name scope its part of the graph is
built under (``fedarena_plugin_attack_0``), for its state across rounds
(the results file's ``checkpoint/state/attack_0``) and in messages.
`Role.parse` and `Role.from_scope` are the only ways back from text.
"""

from __future__ import annotations

import re

import attrs

SCOPE_PREFIX = "fedarena_plugin_"
KINDS = ("attack", "detector", "aggregator")
_KEY = r"(attack|detector)_(\d+)|(aggregator)"
_EXACT = re.compile(rf"(?:{_KEY})\Z")
_IN_SCOPE = re.compile(SCOPE_PREFIX + rf"(?:{_KEY})")


@attrs.frozen
class Role:
    """One server-side plugin's place in a round.

    ``kind``: attack, detector or aggregator; ``index``: its position among
    the scenario's attack groups or detectors (0 for the aggregator);
    ``name``: what the user calls it (an attack group's name), for
    messages only: two roles of the same kind and index are equal whatever
    their names."""

    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    index: int = 0
    name: str = attrs.field(default="", eq=False)

    @property
    def key(self) -> str:
        """``attack_0``, ``detector_1``, ``aggregator``."""
        return "aggregator" if self.kind == "aggregator" else f"{self.kind}_{self.index}"

    @property
    def state_key(self) -> str:
        """Where its state across rounds is kept (the round's state, the
        results file's checkpoint)."""
        return self.key

    @property
    def scope(self) -> str:
        """The TF name scope its part of a round is built under."""
        return SCOPE_PREFIX + self.key

    @property
    def group(self) -> int:
        """An attack's group: the value of its malicious rows' ``group``."""
        if self.kind != "attack":
            raise AttributeError(f"the {self.kind} role has no attack group")
        return self.index

    def __str__(self) -> str:
        return self.key

    def plugin_in(self, scenario):
        """The plugin playing this role in a checked scenario."""
        if self.kind == "attack":
            return scenario.attacks[self.index].attack
        if self.kind == "detector":
            return scenario.detectors[self.index]
        return scenario.aggregator

    @classmethod
    def parse(cls, key: str) -> "Role":
        """The role of a key (``attack_0``, ``detector_1``, ``aggregator``)."""
        found = _EXACT.match(key)
        if not found:
            raise ValueError(f"not a plugin role: {key!r}")
        return cls._of(found)

    @classmethod
    def from_scope(cls, text: str) -> "Role | None":
        """The first role whose TF name scope appears in ``text`` (an op
        name, an error message), or None."""
        found = _IN_SCOPE.search(text)
        return cls._of(found) if found else None

    @classmethod
    def _of(cls, found: re.Match) -> "Role":
        kind, index, aggregator = found.groups()
        return cls("aggregator") if aggregator else cls(kind, int(index))


def scenario_roles(scenario) -> list[tuple[Role, object]]:
    """Every server-side role of a checked scenario with its plugin, in the
    order a round applies them: every attack group (whether it poisons data,
    updates or both), the detectors, the aggregator."""
    roles = [(Role("attack", i, group.name), group.attack) for i, group in enumerate(scenario.attacks)]
    roles += [(Role("detector", i), detector) for i, detector in enumerate(scenario.detectors)]
    return roles + [(Role("aggregator"), scenario.aggregator)]
