"""The meld of one release: every wheel's served ``Requires-Dist`` becomes the same list R*, each
requirement limited by markers to the environments whose wheel declared it (docs/meld-contract.md,
"The contract"). Pure: bytes in, bytes and a report out; no I/O, and no exception escapes on bad input.

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

from .environments import Cell, Universe, platform_facts
from .markers import mentioned_extras, possibly_true, separating_marker
from .metadata import HeaderLine, MalformedMetadata, ScannedMetadata, rewrite, scan
from .preference import cell_tag_ranks, covers
from .requirements import (
    InvalidRequiresDist,
    ParsedRequirement,
    RequirementKey,
    parse_requirement,
    with_marker,
)

__all__ = ["AddedRequirement", "MeldReport", "MeldResult", "WheelInput", "meld_release"]


@dataclass(frozen=True, slots=True)
class WheelInput:
    """One wheel of the release: its file name as upstream lists it and its own core metadata."""

    filename: str
    metadata: bytes | None  # None: could not be had (upstream error, corrupt wheel)


@dataclass(frozen=True, slots=True)
class AddedRequirement:
    """A requirement not every wheel declared, and what the meld made of it."""

    requirement: str  # canonical text as the declaring wheels wrote it
    result: str | None  # canonical text in R*; None when dropped (only unpicked wheels declared it)
    marker: str | None  # the marker added; None when the original marker was kept (contract item 4)
    declared_by: tuple[str, ...]
    lacking: tuple[str, ...]


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
        }


@dataclass(frozen=True, slots=True)
class MeldResult:
    outputs: Mapping[str, bytes]
    report: MeldReport


@dataclass(frozen=True, slots=True)
class _Member:
    """A wheel whose file name belongs to the release (its metadata may still be unusable)."""

    filename: str
    tags: frozenset[Tag]
    build: tuple[int, str] | tuple[()]
    order: int


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

    member: _Member
    read: _Read


_WheelName = tuple[NormalizedName, Version, tuple[int, str] | tuple[()], frozenset[Tag]]


class _BadMetadata(ValueError):
    """A wheel's metadata cannot take part in the meld (the message says why)."""


def meld_release(wheels: Sequence[WheelInput], sdist_filename: str | None = None) -> MeldResult:
    """Meld the wheels of one release; never raises on bad input (see the module docstring)."""
    problems: dict[str, str] = {}
    names: list[_WheelName | None] = []
    for wheel in wheels:
        try:
            names.append(parse_wheel_filename(wheel.filename))
        except InvalidWheelFilename as exc:
            problems[wheel.filename] = f"not a wheel file name: {exc}"
            names.append(None)
    identity = _identity(names, sdist_filename, problems)
    members: list[_Member] = []
    parsed: list[_Parsed] = []
    outputs: dict[str, bytes] = {}
    # Siblings often carry byte-identical METADATA (the tags live in WHEEL): read each content once.
    reads: dict[bytes, _Read | _BadMetadata] = {}
    for order, (wheel, parsed_name) in enumerate(zip(wheels, names, strict=True)):
        if wheel.metadata is not None:
            outputs[wheel.filename] = wheel.metadata
        if parsed_name is None:
            continue
        name, file_version, build, tags = parsed_name
        if identity is None or (name, file_version) != identity:
            problems[wheel.filename] = f"file name is {name} {file_version}, another release"
            continue
        member = _Member(wheel.filename, tags, build, order)
        members.append(member)
        if wheel.metadata is None:
            problems[wheel.filename] = "metadata could not be had; serving nothing melded for it"
            continue
        if wheel.metadata not in reads:
            try:
                reads[wheel.metadata] = _read(wheel.metadata)
            except _BadMetadata as exc:
                reads[wheel.metadata] = exc
        read = reads[wheel.metadata]
        if isinstance(read, _BadMetadata):
            problems[wheel.filename] = str(read)
        elif canonicalize_name(read.name) != identity[0] or read.version != identity[1]:
            said = f"{read.name!r} {str(read.version)!r}"
            problems[wheel.filename] = f"metadata says {said}, the file name says {identity[0]} {identity[1]}"
        else:
            parsed.append(_Parsed(member, read))

    project = str(identity[0]) if identity else None
    version = str(identity[1]) if identity else None
    complete = len(parsed) == len(wheels)
    if len({(p.read.keys, frozenset(p.read.extras)) for p in parsed}) <= 1:
        # The common case (most releases, docs/meld-contract.md): nothing to compute, upstream's bytes.
        report = MeldReport(
            project, version, len(wheels), False, complete, problems=MappingProxyType(problems)
        )
        return MeldResult(MappingProxyType(outputs), report)
    try:
        return _meld(parsed, members, dict(outputs), problems, project, version, len(wheels))
    except Exception as exc:
        # Never worse than no proxy: upstream's bytes for everyone, the failure in the report.
        problems["(release)"] = f"meld failed, serving every wheel's own metadata: {exc!r}"
        report = MeldReport(project, version, len(wheels), True, False, problems=MappingProxyType(problems))
        return MeldResult(MappingProxyType(outputs), report)


def _identity(
    names: Sequence[_WheelName | None], sdist_filename: str | None, problems: dict[str, str]
) -> tuple[NormalizedName, Version] | None:
    """The release's (name, version): the sdist's if given, else the most common among the wheels."""
    if sdist_filename is not None:
        try:
            name, version = parse_sdist_filename(sdist_filename)
            return name, version
        except InvalidSdistFilename as exc:
            problems[sdist_filename] = f"not an sdist file name: {exc}"
    seen = Counter((parsed[0], parsed[1]) for parsed in names if parsed is not None)
    return seen.most_common(1)[0][0] if seen else None


def _read(data: bytes) -> _Read:
    try:
        scanned = scan(data)
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
    members: list[_Member],
    outputs: dict[str, bytes],
    problems: dict[str, str],
    project: str | None,
    version: str | None,
    count: int,
) -> MeldResult:
    universe = Universe.from_tags(tag for member in members for tag in member.tags)
    owned, conflicts = _ownership(members, parsed, universe)
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
        complete=len(parsed) == count,
        added=tuple(added),
        provides_extra=tuple(extras.values()),
        conflicts=tuple(conflicts),
        problems=MappingProxyType(problems),
        changed=tuple(rewritten),
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


def _ownership(
    members: list[_Member], parsed: list[_Parsed], universe: Universe
) -> tuple[dict[str, set[Cell]], list[str]]:
    """Cells each wheel is the installer's pick in, and one line per disagreeing overlap."""
    covering: dict[Cell, list[_Member]] = {}
    for member in members:
        for cell in universe.cells_of(member.tags):
            covering.setdefault(cell, []).append(member)
    stories = {w.member.filename: (w.read.keys, frozenset(w.read.extras)) for w in parsed}
    platforms = frozenset(tag.platform for member in members for tag in member.tags if tag.platform != "any")
    abis = frozenset(tag.abi for member in members for tag in member.tags)
    owned: dict[str, set[Cell]] = {member.filename: set() for member in members}
    overlaps: dict[tuple[str, str], list[Cell]] = {}
    for cell, candidates in covering.items():
        if len(candidates) == 1:
            owned[candidates[0].filename].add(cell)
            continue
        here = frozenset(p for p in platforms if _runs_on(p, cell))
        ranks = cell_tag_ranks(cell, here, abis)
        unlisted = len(ranks)

        def rank(
            member: _Member, cell: Cell = cell, ranks: Mapping[Tag, int] = ranks, unlisted: int = unlisted
        ) -> tuple[int, ...]:
            best = min(
                (ranks.get(tag, unlisted) for tag in member.tags if covers(tag, cell)), default=unlisted
            )
            build = member.build[0] if member.build else 0
            return (best, -build, member.order)  # a higher build number wins a tie (PEP 427)

        winner = min(candidates, key=rank)
        owned[winner.filename].add(cell)
        for loser in candidates:
            if loser is not winner and stories.get(loser.filename) != stories.get(winner.filename):
                overlaps.setdefault((winner.filename, loser.filename), []).append(cell)
    # One line per wheel that lost somewhere: a py3-none-any fallback can lose to a hundred wheels.
    by_loser: dict[str, dict[str, list[Cell]]] = {}
    for (winner_name, loser_name), cells in sorted(overlaps.items()):
        by_loser.setdefault(loser_name, {})[winner_name] = cells
    conflicts = []
    for loser_name, winners in by_loser.items():
        cells = [cell for found in winners.values() for cell in found]
        first, example = min((min(found), name) for name, found in winners.items())
        who = example if len(winners) == 1 else f"{len(winners)} wheels preferred over it (e.g. {example})"
        conflicts.append(
            f"{loser_name} disagrees with {who} in {len(cells)} environment(s) markers cannot tell apart "
            f"(e.g. {_describe(first)}); serving the preferred wheel's requirements there"
        )
    return owned, conflicts


def _runs_on(platform: str, cell: Cell) -> bool:
    facts = platform_facts(platform)
    return facts.sys_platform == cell.sys_platform and cell.platform_machine in facts.machines


def _describe(cell: Cell) -> str:
    major, minor = cell.python
    return f"{cell.sys_platform} {cell.platform_machine} {cell.implementation_name} {major}.{minor}"
