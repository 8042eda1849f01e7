"""Canonical identity of a ``Requires-Dist`` entry (PEP 508, core metadata).

Two lines name the same requirement when their *parsed* parts are equal: the normalized project
name (PEP 503), the set of normalized extras, the specifier set, the URL and the marker. So
``torch (==2.5.1)`` equals ``torch==2.5.1`` and ``lxml_html_clean`` equals ``lxml-html-clean``,
while the text each wheel wrote is kept for faithful rewriting.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

__all__ = [
    "InvalidRequiresDist",
    "ParsedRequirement",
    "RequirementKey",
    "parse_requirement",
    "with_marker",
]


class InvalidRequiresDist(ValueError):
    """A ``Requires-Dist`` value is not a PEP 508 requirement."""


@dataclass(frozen=True, slots=True)
class RequirementKey:
    """The hashable identity of a requirement; equal keys mean the same requirement."""

    name: NormalizedName
    extras: frozenset[NormalizedName]
    specifier: SpecifierSet
    url: str | None
    marker: Marker | None
    # Markers and specifier sets re-render themselves to hash; a meld hashes keys thousands of times,
    # so the hash is computed once (as packaging's Tag does).
    _hash: int = field(init=False, repr=False, compare=False)
    marker_text: str = field(init=False, repr=False, compare=False)  # "" when there is no marker

    def __post_init__(self) -> None:
        parts = (self.name, self.extras, self.specifier, self.url, self.marker)
        object.__setattr__(self, "_hash", hash(parts))
        object.__setattr__(self, "marker_text", str(self.marker) if self.marker is not None else "")

    def __hash__(self) -> int:
        return self._hash

    @property
    def target(self) -> tuple[NormalizedName, frozenset[NormalizedName], SpecifierSet, str | None]:
        """What an installer installs for it: everything but the marker."""
        return (self.name, self.extras, self.specifier, self.url)


@dataclass(frozen=True, slots=True)
class ParsedRequirement:
    """One parsed ``Requires-Dist`` value: its identity plus packaging's object and canonical text."""

    key: RequirementKey
    requirement: Requirement
    text: str

    @property
    def marker(self) -> Marker | None:
        return self.key.marker


# Releases repeat the same few dozen strings across every wheel and every call: parse each once.
@functools.lru_cache(maxsize=16384)
def parse_requirement(text: str) -> ParsedRequirement:
    """Parse one ``Requires-Dist`` value; raise :class:`InvalidRequiresDist` when it is not PEP 508."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise InvalidRequiresDist(f"not a PEP 508 requirement: {text!r}") from exc
    key = RequirementKey(
        name=canonicalize_name(requirement.name),
        extras=frozenset(canonicalize_name(extra) for extra in requirement.extras),
        specifier=requirement.specifier,
        url=requirement.url,
        marker=requirement.marker,
    )
    return ParsedRequirement(key, requirement, str(requirement))


def with_marker(parsed: ParsedRequirement, marker: Marker) -> ParsedRequirement:
    """``parsed`` with its marker replaced by ``marker`` (canonical text, fresh identity)."""
    # Requirement objects are mutable and cached: change a copy, never the cached one.
    requirement = copy.copy(parsed.requirement)
    requirement.marker = marker
    return parse_requirement(str(requirement))
