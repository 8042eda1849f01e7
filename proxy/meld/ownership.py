"""Which wheel of a release an installer picks in each cell of the grid, and where they disagree.

A cell several wheels cover belongs to the one :mod:`proxy.meld.preference` ranks first; when the
wheels there say different things, markers cannot split them (contract item 6) and the overlap is
reported as a conflict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from packaging.tags import Tag

from .environments import OTHER, Cell, Universe, platform_facts
from .preference import cell_tag_ranks, covers
from .search import shortest_marker

__all__ = ["Member", "describe", "ownership", "uncovered_platforms"]


@dataclass(frozen=True, slots=True)
class Member:
    """A wheel whose file name belongs to the release (its metadata may still be unusable)."""

    filename: str
    tags: frozenset[Tag]
    build: tuple[int, str] | tuple[()]
    order: int


def ownership(
    members: Sequence[Member], stories: Mapping[str, object], universe: Universe
) -> tuple[dict[str, set[Cell]], list[str]]:
    """Cells each wheel is the installer's pick in, and one line per disagreeing overlap.

    ``stories``: what each usable wheel says (equal stories never conflict); wheels without one
    (unusable metadata) still own their cells, which the meld then treats as don't-care.
    """
    covering: dict[Cell, list[Member]] = {}
    for member in members:
        for cell in universe.cells_of(member.tags):
            covering.setdefault(cell, []).append(member)
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
            member: Member, cell: Cell = cell, ranks: Mapping[Tag, int] = ranks, unlisted: int = unlisted
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
    for (preferred, lost), found_cells in sorted(overlaps.items()):
        by_loser.setdefault(lost, {})[preferred] = found_cells
    conflicts = []
    for lost, winners in by_loser.items():
        count = sum(len(found) for found in winners.values())
        first, example = min((min(found), name) for name, found in winners.items())
        who = example if len(winners) == 1 else f"{len(winners)} wheels preferred over it (e.g. {example})"
        conflicts.append(
            f"{lost} disagrees with {who} in {count} environment(s) markers cannot tell apart "
            f"(e.g. {describe(first)}); serving the preferred wheel's requirements there"
        )
    return owned, conflicts


def _runs_on(platform: str, cell: Cell) -> bool:
    facts = platform_facts(platform)
    return facts.sys_platform == cell.sys_platform and cell.platform_machine in facts.machines


def describe(cell: Cell) -> str:
    major, minor = cell.python
    return f"{cell.sys_platform} {cell.platform_machine} {cell.implementation_name} {major}.{minor}"


# The platforms an uncovered-environments report always looks at, beside those the release names.
_COMMON_PLATFORMS = (
    ("linux", "x86_64"),
    ("linux", "aarch64"),
    ("darwin", "arm64"),
    ("darwin", "x86_64"),
    ("win32", "AMD64"),
)


def uncovered_platforms(
    members: Sequence[Member], universe: Universe, covered: frozenset[Cell]
) -> tuple[str, ...]:
    """One line per real platform where some environment has no wheel, e.g. ``linux aarch64``."""
    pairs = set(_COMMON_PLATFORMS)
    for member in members:
        for tag in member.tags:
            facts = platform_facts(tag.platform)
            if facts.sys_platform is not None:
                pairs |= {(facts.sys_platform, machine) for machine in facts.machines if machine != OTHER}
    lines = []
    for system, machine in sorted(pairs):
        here = {cell for cell in universe.cells() if cell[:2] == (system, machine)}
        missing, present = here - covered, here & covered
        if not missing:
            continue
        if not present:
            lines.append(f"{system} {machine}")
            continue
        # A short description or none: a report line is not worth a long search.
        where = shortest_marker(missing, present, universe, budget=2)
        lines.append(
            f"{system} {machine} where {where}" if where else f"{system} {machine} (some interpreters)"
        )
    return tuple(lines)
