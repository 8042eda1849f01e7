"""Reading one metadata file for the meld: within limits, into its requirement lines and extras.

Limits are checked before anything parses: the size first, then the header scan stops counting
``Requires-Dist`` lines at the limit, so a hostile sibling costs milliseconds however long it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from .metadata import HeaderLine, MalformedMetadata, ScannedMetadata, TooManyRequirements, scan
from .requirements import InvalidRequiresDist, ParsedRequirement, RequirementKey, parse_requirement

__all__ = ["BadMetadata", "Read", "mismatch", "read_metadata", "static_requirements"]


@dataclass(frozen=True, slots=True)
class Read:
    """What one metadata content says: its header scan, requirement lines and extras."""

    scanned: ScannedMetadata
    name: str
    version: Version
    requirements: tuple[tuple[HeaderLine, ParsedRequirement], ...]
    keys: frozenset[RequirementKey]
    extras: Mapping[NormalizedName, str]  # canonical → as spelled


class BadMetadata(ValueError):
    """A wheel's (or the sdist's) metadata cannot take part in the meld (the message says why)."""


def read_metadata(data: bytes, max_bytes: int, max_requirements: int) -> Read | BadMetadata:
    """``data`` read, or why it cannot take part in the meld."""
    try:
        return _read(data, max_bytes, max_requirements)
    except BadMetadata as exc:
        return exc


def mismatch(read: Read | BadMetadata, identity: tuple[NormalizedName, Version] | None) -> str | None:
    """Why ``read`` cannot take part in the meld of ``identity``, or None when it can."""
    if isinstance(read, BadMetadata):
        return str(read)
    if identity is None:
        return "the release has no name and version"
    if canonicalize_name(read.name) != identity[0] or read.version != identity[1]:
        said = f"{read.name!r} {str(read.version)!r}"
        return f"metadata says {said}, the file name says {identity[0]} {identity[1]}"
    return None


def static_requirements(scanned: ScannedMetadata) -> bool:
    """PEP 643: Metadata-Version 2.2 or later, and Requires-Dist not among the Dynamic fields."""
    try:
        version = Version(scanned.first("Metadata-Version") or "0")
    except InvalidVersion:
        return False
    dynamic = {value.strip().lower() for value in scanned.values("Dynamic")}
    return version >= Version("2.2") and "requires-dist" not in dynamic


def _read(data: bytes, max_bytes: int, max_requirements: int) -> Read:
    # Limits first: a hostile sibling must be refused before anything parses it.
    if len(data) > max_bytes:
        raise BadMetadata(f"metadata is {len(data)} bytes, over the limit of {max_bytes}")
    try:
        scanned = scan(data, max_requirements)
    except TooManyRequirements as exc:
        raise BadMetadata(f"metadata has {exc}, over the limit") from exc
    except MalformedMetadata as exc:
        raise BadMetadata(f"metadata does not parse: {exc}") from exc
    name = scanned.first("Name")
    raw_version = scanned.first("Version")
    if name is None or raw_version is None:
        raise BadMetadata("metadata lacks Name or Version")
    try:
        version = Version(raw_version)
    except InvalidVersion as exc:
        raise BadMetadata(f"metadata Version is not PEP 440: {raw_version!r}") from exc
    requirements = []
    for header in scanned.lines_of("Requires-Dist"):
        try:
            requirements.append((header, parse_requirement(header.value)))
        except InvalidRequiresDist as exc:
            raise BadMetadata(str(exc)) from exc
    extras: dict[NormalizedName, str] = {}
    for value in scanned.values("Provides-Extra"):
        extras.setdefault(canonicalize_name(value), value)
    keys = frozenset(req.key for _, req in requirements)
    return Read(scanned, name, version, tuple(requirements), keys, extras)
