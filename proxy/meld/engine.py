"""The meld of one release: every wheel's served ``Requires-Dist`` becomes the same list R*, each
requirement limited by markers to the environments whose wheel declared it (MISSION.md, "The meld
contract"). Pure: bytes in, bytes and a report out; no I/O, and no exception escapes on bad input.

Per requirement R (canonical identity) over the wheels that parsed:

* every wheel declares R, or R's own marker is false in every cell a non-declaring wheel owns (for
  every value of ``extra``) → R is kept exactly as written (contract item 4);
* otherwise R becomes ``(own marker) and (M)`` where M is the shortest marker true on the cells of the
  declaring wheels and false on the cells of the others where R's marker could hold.

A cell belongs to the wheel an installer would pick there (:mod:`proxy.meld.preference`); overlaps
whose wheels disagree are reported as conflicts (contract item 6). Wheels whose metadata is missing or
unusable keep their own bytes and are reported (contract item 7); their cells are don't-care.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from packaging.markers import Marker
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .environments import Cell, Universe
from .markers import mentioned_extras, possibly_true, separating_marker
from .metadata import HeaderLine, MalformedMetadata, ScannedMetadata, TooManyRequirements, rewrite, scan
from .ownership import Member, ownership
from .requirements import (
    InvalidRequiresDist,
    ParsedRequirement,
    RequirementKey,
    parse_requirement,
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
class AddedRequirement:
    """A requirement not every wheel declared, and what the meld made of it."""

    requirement: str  # canonical text as the declaring wheels wrote it
    result: str | None  # canonical text in R*; None when dropped (only unpicked wheels declared it)
    marker: str | None  # the marker added; None when the original marker was kept (contract item 4)
    declared_by: tuple[str, ...]
    lacking: tuple[str, ...]


class Uncovered(Enum):
    """How the meld decides the environments no wheel of the release covers."""

    FREE = "free"  # the caller did not say whether an sdist exists: don't-care for the marker search
    SDIST = "sdist"  # a static sdist decides them: R* gives there exactly what its Requires-Dist gives
    NOTHING = "nothing"  # no sdist: nothing installs there, requirements only for them are dropped
    DYNAMIC = "dynamic"  # the sdist's requirements are computed at build time: left to the sdist
    UNAVAILABLE = "unavailable"  # the sdist's metadata could not be had or used: left to the sdist


@dataclass(frozen=True, slots=True)
class MeldReport:
    """What the meld found and did; :meth:`to_dict` is for a status page or a log line."""

    project: str | None
    version: str | None
    wheels: int
    disagreed: bool
    complete: bool  # every wheel of the release took part; False → the caller must not cache
    added: tuple[AddedRequirement, ...] = ()
    provides_extra: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    problems: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    changed: tuple[str, ...] = ()
    uncovered: Uncovered = Uncovered.FREE  # how environments no wheel covers were decided
    # Environments no wheel covers that the sdist decides at build time (rules DYNAMIC, UNAVAILABLE).
    left_to_sdist: tuple[str, ...] = ()
    # Requirements left out of R*: they could apply only where nothing can be installed (NOTHING).
    dropped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "project": self.project,
            "version": self.version,
            "wheels": self.wheels,
            "disagreed": self.disagreed,
            "complete": self.complete,
            "added": [
                {
                    "requirement": item.requirement,
                    "result": item.result,
                    "marker": item.marker,
                    "declared_by": list(item.declared_by),
                    "lacking": list(item.lacking),
                }
                for item in self.added
            ],
            "provides_extra": list(self.provides_extra),
            "conflicts": list(self.conflicts),
            "problems": dict(self.problems),
            "changed": list(self.changed),
            "uncovered": self.uncovered.value,
            "left_to_sdist": list(self.left_to_sdist),
            "dropped": list(self.dropped),
        }


@dataclass(frozen=True, slots=True)
class MeldResult:
    outputs: Mapping[str, bytes]
    report: MeldReport


@dataclass(frozen=True, slots=True)
class _Read:
    """What one metadata content says: its header scan, requirement lines and extras."""

    scanned: ScannedMetadata
    name: str
    version: Version
    requirements: tuple[tuple[HeaderLine, ParsedRequirement], ...]
    keys: frozenset[RequirementKey]
    extras: Mapping[NormalizedName, str]  # canonical → as spelled


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A member whose metadata is usable."""

    member: Member
    read: _Read


_WheelName = tuple[NormalizedName, Version, tuple[int, str] | tuple[()], frozenset[Tag]]


class _BadMetadata(ValueError):
    """A wheel's metadata cannot take part in the meld (the message says why)."""


@dataclass(frozen=True, slots=True)
class _Source:
    rule: Uncovered
    read: _Read | None = None  # the sdist's metadata, when the rule is SDIST or DYNAMIC


def meld_release(
    wheels: Sequence[WheelInput],
    sdist: SdistInput | NoSdist | None = None,
    *,
    limits: MeldLimits = MeldLimits(),
) -> MeldResult:
    """Meld the wheels of one release; never raises on bad input (see the module docstring).

    ``sdist``: the release's source distribution, :data:`NO_SDIST` when it has none, ``None`` when
    the caller does not know (environments no wheel covers are then free for the marker search).
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
    members: list[Member] = []
    parsed: list[_Parsed] = []
    outputs: dict[str, bytes] = {}
    # Siblings often carry byte-identical METADATA (the tags live in WHEEL): read each content once.
    reads: dict[bytes, _Read | _BadMetadata] = {}
    for order, (wheel, parsed_name) in enumerate(zip(wheels, names, strict=True)):
        if wheel.metadata is not None:
            outputs[wheel.filename] = wheel.metadata
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
            reads[wheel.metadata] = _read_or_bad(wheel.metadata, limits)
        read = reads[wheel.metadata]
        problem = _mismatch(read, identity)
        if problem is not None:
            problems[wheel.filename] = problem
        else:
            assert isinstance(read, _Read)
            parsed.append(_Parsed(member, read))
    source = _source(sdist, identity, limits, problems)

    project = str(identity[0]) if identity else None
    version = str(identity[1]) if identity else None
    complete = len(parsed) == len(wheels) and source.rule is not Uncovered.UNAVAILABLE
    if len({(p.read.keys, frozenset(p.read.extras)) for p in parsed}) <= 1:
        # The common case (MISSION: most multi-wheel releases): nothing to compute, upstream's bytes.
        report = MeldReport(
            project,
            version,
            len(wheels),
            False,
            complete,
            problems=MappingProxyType(problems),
            uncovered=source.rule,
        )
        return MeldResult(MappingProxyType(outputs), report)
    try:
        return _meld(parsed, members, source, dict(outputs), problems, project, version, len(wheels))
    except Exception as exc:
        # Never worse than no proxy: upstream's bytes for everyone, the failure in the report.
        problems["(release)"] = f"meld failed, serving every wheel's own metadata: {exc!r}"
        report = MeldReport(
            project,
            version,
            len(wheels),
            True,
            False,
            problems=MappingProxyType(problems),
            uncovered=source.rule,
        )
        return MeldResult(MappingProxyType(outputs), report)


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


def _mismatch(read: _Read | _BadMetadata, identity: tuple[NormalizedName, Version] | None) -> str | None:
    """Why ``read`` cannot take part in the meld of ``identity``, or None when it can."""
    if isinstance(read, _BadMetadata):
        return str(read)
    if identity is None:
        return "the release has no name and version"
    if canonicalize_name(read.name) != identity[0] or read.version != identity[1]:
        said = f"{read.name!r} {str(read.version)!r}"
        return f"metadata says {said}, the file name says {identity[0]} {identity[1]}"
    return None


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
    read = _read_or_bad(sdist.metadata, limits)
    problem = _mismatch(read, identity)
    if problem is not None:
        problems[sdist.filename] = f"sdist {problem}"
        return _Source(Uncovered.UNAVAILABLE)
    assert isinstance(read, _Read)
    return _Source(Uncovered.SDIST if _static_requirements(read.scanned) else Uncovered.DYNAMIC, read)


def _static_requirements(scanned: ScannedMetadata) -> bool:
    """PEP 643: Metadata-Version 2.2 or later, and Requires-Dist not among the Dynamic fields."""
    try:
        version = Version(scanned.first("Metadata-Version") or "0")
    except InvalidVersion:
        return False
    dynamic = {value.strip().lower() for value in scanned.values("Dynamic")}
    return version >= Version("2.2") and "requires-dist" not in dynamic


def _read_or_bad(data: bytes, limits: MeldLimits) -> _Read | _BadMetadata:
    try:
        return _read(data, limits)
    except _BadMetadata as exc:
        return exc


def _read(data: bytes, limits: MeldLimits) -> _Read:
    # Limits first: a hostile sibling must be refused before anything parses it.
    if len(data) > limits.max_metadata_bytes:
        raise _BadMetadata(f"metadata is {len(data)} bytes, over the limit of {limits.max_metadata_bytes}")
    try:
        scanned = scan(data, limits.max_requirements)
    except TooManyRequirements as exc:
        raise _BadMetadata(f"metadata has {exc}, over the limit") from exc
    except MalformedMetadata as exc:
        raise _BadMetadata(f"metadata does not parse: {exc}") from exc
    name = scanned.first("Name")
    raw_version = scanned.first("Version")
    if name is None or raw_version is None:
        raise _BadMetadata("metadata lacks Name or Version")
    try:
        version = Version(raw_version)
    except InvalidVersion as exc:
        raise _BadMetadata(f"metadata Version is not PEP 440: {raw_version!r}") from exc
    requirements = []
    for header in scanned.lines_of("Requires-Dist"):
        try:
            requirements.append((header, parse_requirement(header.value)))
        except InvalidRequiresDist as exc:
            raise _BadMetadata(str(exc)) from exc
    extras: dict[NormalizedName, str] = {}
    for value in scanned.values("Provides-Extra"):
        extras.setdefault(canonicalize_name(value), value)
    keys = frozenset(req.key for _, req in requirements)
    return _Read(scanned, name, version, tuple(requirements), keys, extras)


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
    extras: dict[NormalizedName, str] = {}
    first_seen: dict[RequirementKey, ParsedRequirement] = {}
    for wheel in parsed:
        for canonical, spelled in wheel.read.extras.items():
            extras.setdefault(canonical, spelled)
        for _, req in wheel.read.requirements:
            first_seen.setdefault(req.key, req)

    changed: dict[RequirementKey, str | None] = {}  # key → new text (None: dropped)
    result_text: dict[RequirementKey, str] = {key: req.text for key, req in first_seen.items()}
    added: list[AddedRequirement] = []
    for key, req in first_seen.items():
        declaring = [w for w in parsed if key in w.read.keys]
        lacking = [w for w in parsed if key not in w.read.keys]
        if not lacking:
            continue
        item = _limit(req, declaring, lacking, owned, universe, tuple(sorted(extras)))
        added.append(item)
        if item.result is None:
            changed[key] = None
            conflicts.append(f"{req.text!r} dropped: only wheels an installer never picks declare it")
        elif item.marker is not None:
            changed[key] = result_text[key] = item.result

    rewritten: list[str] = []
    for wheel in parsed:
        replace = {
            header.start: changed[req.key] for header, req in wheel.read.requirements if req.key in changed
        }
        missing = [
            result_text[key]
            for key in first_seen
            if key not in wheel.read.keys and changed.get(key, "") is not None
        ]
        new_extras = [spelled for canonical, spelled in extras.items() if canonical not in wheel.read.extras]
        if replace or missing or new_extras:
            outputs[wheel.member.filename] = rewrite(wheel.read.scanned, replace, missing, new_extras)
            rewritten.append(wheel.member.filename)
    report = MeldReport(
        project=project,
        version=version,
        wheels=count,
        disagreed=True,
        complete=len(parsed) == count and source.rule is not Uncovered.UNAVAILABLE,
        added=tuple(added),
        provides_extra=tuple(extras.values()),
        conflicts=tuple(conflicts),
        problems=MappingProxyType(problems),
        changed=tuple(rewritten),
        uncovered=source.rule,
    )
    return MeldResult(MappingProxyType(outputs), report)


def _limit(
    req: ParsedRequirement,
    declaring: Sequence[_Parsed],
    lacking: Sequence[_Parsed],
    owned: Mapping[str, set[Cell]],
    universe: Universe,
    extras: tuple[str, ...],
) -> AddedRequirement:
    """What R* holds for a requirement only some wheels declare (see the module docstring)."""
    marker_text = str(req.marker) if req.marker is not None else ""
    # ``extra`` is never assumed false: try every extra any wheel provides or the marker names.
    extras_here = tuple(sorted(set(extras) | mentioned_extras(marker_text)))

    def could(cell: Cell) -> bool:
        return not marker_text or possibly_true(marker_text, cell, extras_here)

    names = (tuple(w.member.filename for w in declaring), tuple(w.member.filename for w in lacking))
    false_cells = {cell for w in lacking for cell in owned[w.member.filename] if could(cell)}
    if not false_cells:
        return AddedRequirement(req.text, req.text, None, *names)  # the wheels lacking it cannot use it
    # Cells where R's own marker is false are don't-care: "(own) and (M)" is false there anyway.
    true_cells = {cell for w in declaring for cell in owned[w.member.filename] if could(cell)}
    if not true_cells:
        return AddedRequirement(req.text, None, None, *names)
    limit = Marker(separating_marker(true_cells, false_cells, universe))
    new = with_marker(req, req.marker & limit if req.marker is not None else limit)
    return AddedRequirement(req.text, new.text, str(limit), *names)
