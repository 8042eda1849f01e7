"""The meld of one release: every wheel's served ``Requires-Dist`` becomes the same list R*, each
requirement limited by markers to the environments whose wheel declared it (docs/meld-contract.md,
"The contract"). Pure: bytes in, bytes and a report out; no I/O, and no exception escapes on bad input.

A cell of the grid (:mod:`proxy.meld.environments`) belongs to the wheel an installer would pick
there (:mod:`proxy.meld.ownership`); overlaps whose wheels disagree are reported as conflicts
(contract item 6). Wheels whose metadata is missing, unusable or over :class:`MeldLimits` keep their
own bytes and are reported (contract item 7); their cells are don't-care. Per requirement R, R* holds
R as written when no cell that decides says "no" (contract item 4), else ``(own marker) and (M)``
with M the shortest marker separating the cells that say "yes" from those that say "no"
(:mod:`proxy.meld.placement`).

Environments no wheel covers (contract item 8, decided before item 4) — an installer there builds the
sdist, or fails when there is none — are decided by what the caller knows of the sdist:

1. A static sdist (PEP 643: Metadata-Version 2.2 or later and ``Requires-Dist`` not ``Dynamic``;
   upstream's PEP 658 file for the sdist counts the same): R* must give there exactly what the
   sdist's ``Requires-Dist`` gives, because that is what installers there install. Lines only the
   sdist declares join R*, limited to those cells; wheel lines the sdist lacks are limited out of
   them; its ``Provides-Extra`` joins the union. Cells no real interpreter reports (Linux with the
   Windows machine name ``AMD64``) stay free: nobody there builds anything.
2. No sdist (:data:`NO_SDIST`): nothing installs there, so a line whose own marker can hold only
   there is dropped (``report.dropped``) — kept, it asks a universal resolver for a dependency in a
   fork where the release itself cannot be installed, which can only make the lock fail. Otherwise
   those cells are free.
3. A dynamic sdist, or one whose metadata could not be had or used: nobody can know what it gives
   without building it, so those cells are free for the marker search and listed in
   ``report.left_to_sdist``; unavailable metadata also makes the result incomplete (not cached).

``sdist=None`` means the caller does not know; those cells are then free, as in case 3 but silent.
Releases whose wheels agree are served upstream's bytes whatever the sdist says (contract item 3).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from packaging.markers import Marker
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from .environments import Universe, plausible
from .metadata import rewrite
from .ownership import Member, ownership, uncovered_platforms
from .placement import Owner, Placement, Rules, Verdict, place
from .reading import BadMetadata, Read, mismatch, read_metadata, static_requirements
from .report import AddedRequirement, MeldReport, Uncovered
from .requirements import (
    ParsedRequirement,
    RequirementKey,
    with_marker,
)

__all__ = [
    "NO_SDIST",
    "AddedRequirement",
    "MeldLimits",
    "MeldReport",
    "MeldResult",
    "NoSdist",
    "SdistInput",
    "Uncovered",
    "WheelInput",
    "meld_release",
]


@dataclass(frozen=True, slots=True)
class WheelInput:
    """One wheel of the release: its file name as upstream lists it and its own core metadata."""

    filename: str
    metadata: bytes | None  # None: could not be had (upstream error, corrupt wheel)


@dataclass(frozen=True, slots=True)
class SdistInput:
    """The release's source distribution."""

    filename: str
    metadata: bytes | None  # its PKG-INFO, or upstream's PEP 658 file for it; None: could not be had


@dataclass(frozen=True, slots=True)
class NoSdist:
    """The release has no source distribution: nothing can be installed where no wheel is."""


NO_SDIST = NoSdist()


@dataclass(frozen=True, slots=True)
class MeldLimits:
    """Bounds on what one metadata file may cost; a file over them is unusable metadata."""

    max_metadata_bytes: int = 16 * 1024 * 1024  # per wheel (and sdist) metadata
    max_requirements: int = 5000  # Requires-Dist lines per wheel (and sdist)


@dataclass(frozen=True, slots=True)
class MeldResult:
    outputs: Mapping[str, bytes]
    report: MeldReport


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A member whose metadata is usable."""

    member: Member
    read: Read


_WheelName = tuple[NormalizedName, Version, tuple[int, str] | tuple[()], frozenset[Tag]]


@dataclass(frozen=True, slots=True)
class _Source:
    rule: Uncovered
    name: str = ""  # the sdist's file name
    read: Read | None = None  # the sdist's metadata, when the rule is SDIST or DYNAMIC


def meld_release(
    wheels: Sequence[WheelInput],
    sdist: SdistInput | NoSdist | None = None,
    *,
    limits: MeldLimits = MeldLimits(),
    meld_if_disagreed: bool = True,
) -> MeldResult:
    """Meld the wheels of one release; never raises on bad input (see the module docstring).

    ``sdist``: the release's source distribution, :data:`NO_SDIST` when it has none, ``None`` when
    the caller does not know (environments no wheel covers are then free for the marker search).
    ``meld_if_disagreed=False``: stop once the wheels are known to disagree, with upstream's bytes
    and ``report.disagreed`` set, for a caller that fetches the sdist then and melds again with it.
    """
    problems: dict[str, str] = {}
    names: list[_WheelName | None] = []
    for wheel in wheels:
        try:
            names.append(parse_wheel_filename(wheel.filename))
        except InvalidWheelFilename as exc:
            problems[wheel.filename] = f"not a wheel file name: {exc}"
            names.append(None)
    identity = _identity(names, sdist, problems)
    outputs: dict[str, bytes] = {w.filename: w.metadata for w in wheels if w.metadata is not None}
    members, parsed = _members(wheels, names, identity, limits, problems)
    source = _source(sdist, identity, limits, problems)

    project = str(identity[0]) if identity else None
    version = str(identity[1]) if identity else None
    complete = len(parsed) == len(wheels) and source.rule is not Uncovered.UNAVAILABLE
    disagreed = len({(p.read.keys, frozenset(p.read.extras)) for p in parsed}) > 1
    if disagreed and meld_if_disagreed:
        try:
            return _meld(parsed, members, source, dict(outputs), problems, project, version, len(wheels))
        except Exception as exc:
            # Never worse than no proxy: upstream's bytes for everyone, the failure in the report.
            problems["(release)"] = f"meld failed, serving every wheel's own metadata: {exc!r}"
            complete = False
    # The common case (most multi-wheel releases, docs/meld-contract.md): nothing to compute, upstream's
    # bytes.
    report = MeldReport(
        project,
        version,
        len(wheels),
        disagreed,
        complete,
        problems=MappingProxyType(problems),
        uncovered=source.rule,
    )
    return MeldResult(MappingProxyType(outputs), report)


def _members(
    wheels: Sequence[WheelInput],
    names: Sequence[_WheelName | None],
    identity: tuple[NormalizedName, Version] | None,
    limits: MeldLimits,
    problems: dict[str, str],
) -> tuple[list[Member], list[_Parsed]]:
    """The wheels of the release (``identity``), and those of them whose metadata is usable."""
    members: list[Member] = []
    parsed: list[_Parsed] = []
    # Siblings often carry byte-identical METADATA (the tags live in WHEEL): read each content once.
    reads: dict[bytes, Read | BadMetadata] = {}
    for order, (wheel, parsed_name) in enumerate(zip(wheels, names, strict=True)):
        if parsed_name is None:
            continue
        name, number, build, tags = parsed_name
        if identity is None or (name, number) != identity:
            problems[wheel.filename] = f"file name is {name} {number}, another release"
            continue
        member = Member(wheel.filename, tags, build, order)
        members.append(member)
        if wheel.metadata is None:
            problems[wheel.filename] = "metadata could not be had; serving nothing melded for it"
            continue
        if wheel.metadata not in reads:
            reads[wheel.metadata] = read_metadata(
                wheel.metadata, limits.max_metadata_bytes, limits.max_requirements
            )
        read = reads[wheel.metadata]
        problem = mismatch(read, identity)
        if problem is not None:
            problems[wheel.filename] = problem
        else:
            assert isinstance(read, Read)
            parsed.append(_Parsed(member, read))
    return members, parsed


def _identity(
    names: Sequence[_WheelName | None], sdist: SdistInput | NoSdist | None, problems: dict[str, str]
) -> tuple[NormalizedName, Version] | None:
    """The release's (name, version): the sdist's if given, else the most common among the wheels."""
    if isinstance(sdist, SdistInput):
        try:
            name, version = parse_sdist_filename(sdist.filename)
            return name, version
        except InvalidSdistFilename as exc:
            problems[sdist.filename] = f"not an sdist file name: {exc}"
    seen = Counter((parsed[0], parsed[1]) for parsed in names if parsed is not None)
    return seen.most_common(1)[0][0] if seen else None


def _source(
    sdist: SdistInput | NoSdist | None,
    identity: tuple[NormalizedName, Version] | None,
    limits: MeldLimits,
    problems: dict[str, str],
) -> _Source:
    """What decides the environments no wheel covers (the rule of the module docstring)."""
    if sdist is None:
        return _Source(Uncovered.FREE)
    if isinstance(sdist, NoSdist):
        return _Source(Uncovered.NOTHING)
    if sdist.metadata is None or sdist.filename in problems:
        problems.setdefault(
            sdist.filename, "sdist metadata could not be had; leaving uncovered environments to it"
        )
        return _Source(Uncovered.UNAVAILABLE)
    read = read_metadata(sdist.metadata, limits.max_metadata_bytes, limits.max_requirements)
    problem = mismatch(read, identity)
    if problem is not None:
        problems[sdist.filename] = f"sdist {problem}"
        return _Source(Uncovered.UNAVAILABLE)
    assert isinstance(read, Read)
    rule = Uncovered.SDIST if static_requirements(read.scanned) else Uncovered.DYNAMIC
    return _Source(rule, sdist.filename, read)


def _meld(
    parsed: list[_Parsed],
    members: list[Member],
    source: _Source,
    outputs: dict[str, bytes],
    problems: dict[str, str],
    project: str | None,
    version: str | None,
    count: int,
) -> MeldResult:
    universe = Universe.from_tags(tag for member in members for tag in member.tags)
    stories = {w.member.filename: (w.read.keys, frozenset(w.read.extras)) for w in parsed}
    owned, conflicts = ownership(members, stories, universe)
    covered = frozenset(cell for cells in owned.values() for cell in cells)
    owners = [Owner(w.member.filename, w.read.keys, owned[w.member.filename]) for w in parsed]
    reads = [w.read for w in parsed]
    if source.rule is Uncovered.SDIST and source.read is not None:
        # Cells no real interpreter reports stay free: no installer there builds the sdist.
        uncovered = [cell for cell in universe.cells() - covered if plausible(cell)]
        owners.append(Owner(source.name, source.read.keys, uncovered))
        reads.append(source.read)
    extras: dict[NormalizedName, str] = {}
    first_seen: dict[RequirementKey, ParsedRequirement] = {}
    for read in reads:
        for canonical, spelled in read.extras.items():
            extras.setdefault(canonical, spelled)
        for _, req in read.requirements:
            first_seen.setdefault(req.key, req)
    usable = {w.member.filename for w in parsed}
    unowned = [cell for name, cells in owned.items() if name not in usable for cell in cells]
    rules = Rules(universe, tuple(sorted(extras)), unowned, source.rule is Uncovered.NOTHING)
    # Without an sdist rule, a line every wheel declares is R*'s as written (no cell can say no).
    every_line = source.rule in (Uncovered.SDIST, Uncovered.NOTHING)
    decided = _decide(first_seen, parsed, owners, rules, every_line=every_line)

    rewritten = _rewrite_all(parsed, decided, first_seen, extras, outputs)
    left: tuple[str, ...] = ()
    if source.rule in (Uncovered.DYNAMIC, Uncovered.UNAVAILABLE):
        left = uncovered_platforms(members, universe, covered)
    report = MeldReport(
        project=project,
        version=version,
        wheels=count,
        disagreed=True,
        complete=len(parsed) == count and source.rule is not Uncovered.UNAVAILABLE,
        added=tuple(decided.added),
        provides_extra=tuple(extras.values()),
        conflicts=(*conflicts, *decided.conflicts),
        problems=MappingProxyType(problems),
        changed=tuple(rewritten),
        uncovered=source.rule,
        left_to_sdist=left,
        dropped=tuple(decided.dropped),
    )
    return MeldResult(MappingProxyType(outputs), report)


def _rewrite_all(
    parsed: list[_Parsed],
    decided: _Decided,
    first_seen: Mapping[RequirementKey, ParsedRequirement],
    extras: Mapping[NormalizedName, str],
    outputs: dict[str, bytes],
) -> list[str]:
    """Each usable wheel's metadata with R* and the union of extras, into ``outputs`` where it
    changed; returns the names of the wheels rewritten."""
    rewritten: list[str] = []
    for wheel in parsed:
        changed = decided.changed
        replace = {
            header.start: changed[req.key] for header, req in wheel.read.requirements if req.key in changed
        }
        missing = [
            decided.text[key] for key in first_seen if key not in wheel.read.keys and key in decided.text
        ]
        new_extras = [spelled for canonical, spelled in extras.items() if canonical not in wheel.read.extras]
        if replace or missing or new_extras:
            outputs[wheel.member.filename] = rewrite(wheel.read.scanned, replace, missing, new_extras)
            rewritten.append(wheel.member.filename)
    return rewritten


@dataclass(slots=True)
class _Decided:
    """What R* holds, requirement by requirement."""

    changed: dict[RequirementKey, str | None] = field(default_factory=dict)  # new text; None: left out
    text: dict[RequirementKey, str] = field(default_factory=dict)  # every line R* holds → its text
    added: list[AddedRequirement] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def _decide(
    first_seen: Mapping[RequirementKey, ParsedRequirement],
    parsed: Sequence[_Parsed],
    owners: Sequence[Owner],
    rules: Rules,
    *,
    every_line: bool,
) -> _Decided:
    """Place every line; the sdist's own lines last, so they can see what R* already gives."""
    decided = _Decided()
    served: dict[tuple[object, ...], list[str]] = {}  # dependency → markers of its R* lines
    wheel_keys = frozenset(key for w in parsed for key in w.read.keys)
    for key, req in first_seen.items():
        sdist_only = key not in wheel_keys
        if not sdist_only and not every_line and all(key in w.read.keys for w in parsed):
            placement = Placement(Verdict.KEEP, None, (), ())
        else:
            placement = place(req, owners, rules, served.get(key.target, []) if sdist_only else None)
        result, result_marker = req.text, key.marker_text
        if placement.verdict is Verdict.LIMIT:
            assert placement.marker is not None
            limit = Marker(placement.marker)
            new = with_marker(req, req.marker & limit if req.marker is not None else limit)
            decided.changed[key] = result = new.text
            result_marker = new.key.marker_text
        elif placement.verdict is not Verdict.KEEP:
            decided.changed[key] = None
        if placement.verdict is Verdict.UNPICKED:
            decided.conflicts.append(
                f"{req.text!r} dropped: wherever it could apply, the wheel (or sdist) deciding there lacks it"
            )
        elif placement.verdict is Verdict.NOWHERE:
            decided.dropped.append(req.text)
        in_result = placement.verdict in (Verdict.KEEP, Verdict.LIMIT)
        if in_result:
            decided.text[key] = result
            served.setdefault(key.target, []).append(result_marker)
        if placement.lacking and placement.verdict is not Verdict.COVERED:
            decided.added.append(
                AddedRequirement(
                    req.text,
                    result if in_result else None,
                    placement.marker,
                    placement.declared_by,
                    placement.lacking,
                )
            )
    return decided
