"""What one served ``.metadata`` is, as the ``X-Wheelmeld-Meld`` header says it."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["LeftOut", "MeldKind", "MeldState"]

# The header is one bounded line: a problem text is upstream's and may be long.
_HEADER_MAX = 400


class MeldKind(enum.Enum):
    OFF = "off"  # the route does not meld: the wheel's own metadata
    SINGLE = "single"  # the only wheel of its release: nothing to meld
    AGREE = "agree"  # its siblings agree: upstream's bytes
    MELDED = "melded"  # its siblings disagreed: the meld
    VARIANT = "variant"  # a PEP 825 variant wheel: in no meld, its own metadata
    UNAVAILABLE = "unavailable"  # the meld could not be made: the wheel's own metadata
    OWN = "own"  # melded for other clients; this one checks .metadata against the wheel: its own


@dataclass(frozen=True, slots=True)
class LeftOut:
    """Siblings whose metadata could not take part in the meld (contract item 7)."""

    count: int
    example: str  # one of them
    problem: str  # what was wrong with it

    @classmethod
    def of(cls, problems: Mapping[str, str]) -> LeftOut | None:
        if not problems:
            return None
        name, problem = next(iter(problems.items()))
        return cls(len(problems), name, problem)


@dataclass(frozen=True, slots=True)
class MeldState:
    kind: MeldKind
    reason: str | None = None  # UNAVAILABLE: why
    left_out: LeftOut | None = None  # AGREE or MELDED without some siblings: the meld is incomplete

    @property
    def settled(self) -> bool:
        """Whether the same request gets the same answer until the page or its revisions change:
        an unavailable or incomplete meld is tried again on the next request."""
        return self.kind is not MeldKind.UNAVAILABLE and self.left_out is None

    def header(self) -> str:
        """The ``X-Wheelmeld-Meld`` value (made header-safe by the edge)."""
        if self.kind is MeldKind.UNAVAILABLE:
            return f"unavailable: {self.reason}"
        if self.kind is MeldKind.VARIANT:
            return "variant: served as it is, in no meld (PEP 825)"
        if self.kind is MeldKind.OWN:
            return "own (melded for other clients: this one checks .metadata against the wheel)"
        text: str = self.kind.value
        if self.left_out is not None:
            left = self.left_out
            text += f"; incomplete: {left.count} wheel(s) left out, e.g. {left.example}: {left.problem}"
        return text[:_HEADER_MAX]
