"""Where one requirement of R* must hold: the cells it must be true in, false in, and free in.

An *owner* is what decides a set of cells: a wheel decides the cells it is the installer's pick in,
a static sdist the cells no wheel covers. For a requirement R with its own marker m:

* a cell where m cannot hold is free ("(m) and (M)" is false there anyway);
* a cell whose owner declares R must be true;
* a cell whose owner lacks R must be false, unless the owner declares another line with R's
  dependency (same name, extras, specifier, URL) that is certainly true there: the installer
  installs the dependency in that cell either way, so R's value there changes nothing;
* every other cell (no owner: its wheel's metadata is unusable, or no wheel covers it and no
  static sdist decides it) is free.

No false cell → R keeps its own marker (contract item 4), except when the release has no sdist
and m can hold in no covered cell at all: then R could only make a universal lock fail (it asks for
a dependency where nothing of the release can be installed) and is dropped. No true cell → R is
dropped. Otherwise R becomes "(m) and (M)", M the shortest marker separating the two cell sets.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from .environments import Cell, Universe
from .markers import certainly_true, mentioned_extras, possibly_true, separating_marker
from .requirements import ParsedRequirement, RequirementKey

__all__ = ["Owner", "Placement", "Rules", "Verdict", "place"]

_Target = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Owner:
    """A wheel (or the sdist) and the cells whose requirements it decides."""

    name: str
    keys: frozenset[RequirementKey]
    cells: Collection[Cell]
    # dependency → the marker texts ("" for none) of the owner's lines that ask for it
    _by_target: Mapping[_Target, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_target", _by_target(self.keys))

    def installs(self, target: _Target, cell: Cell) -> bool:
        """Whether the owner's own lines install ``target`` in ``cell`` whatever extras are asked."""
        return any(certainly_true(marker, cell) for marker in self._by_target.get(target, ()))


# Siblings share requirement sets (and every meld of a release repeats them): group each set once.
@functools.lru_cache(maxsize=1024)
def _by_target(keys: frozenset[RequirementKey]) -> Mapping[_Target, tuple[str, ...]]:
    by_target: dict[_Target, list[str]] = {}
    for key in keys:
        by_target.setdefault(key.target, []).append(key.marker_text)
    return {target: tuple(markers) for target, markers in by_target.items()}


class Verdict(Enum):
    KEEP = "keep"  # R* holds the line as written
    LIMIT = "limit"  # R* holds it with a marker added
    UNPICKED = "unpicked"  # dropped: only owners never picked where it could apply declare it
    NOWHERE = "nowhere"  # dropped: it could apply only where nothing can be installed
    COVERED = "covered"  # an sdist line other lines of R* already give wherever it is needed


@dataclass(frozen=True, slots=True)
class Rules:
    """What one release's meld knows besides the owners."""

    universe: Universe
    extras: tuple[str, ...]  # every extra the release provides
    unowned: Collection[Cell]  # covered cells whose wheel's metadata is unusable
    drop_nowhere: bool  # the release has no sdist: nothing installs where no wheel is


@dataclass(frozen=True, slots=True)
class Placement:
    verdict: Verdict
    marker: str | None  # the marker added (LIMIT)
    declared_by: tuple[str, ...]
    lacking: tuple[str, ...]


def place(
    req: ParsedRequirement,
    owners: Sequence[Owner],
    rules: Rules,
    served: Sequence[str] | None = None,
) -> Placement:
    """Where R* must hold ``req`` (see the module docstring).

    ``served``: for a line only the sdist declares, the markers of the R* lines already asking for
    the same dependency; cells where one of them is certainly true need nothing more.
    """
    marker_text = req.key.marker_text
    # ``extra`` is never assumed false: try every extra any wheel provides or the marker names.
    extras = tuple(sorted(set(rules.extras) | mentioned_extras(marker_text)))

    def could(cell: Cell) -> bool:
        return not marker_text or possibly_true(marker_text, cell, extras)

    key, target = req.key, req.key.target
    declaring = [o for o in owners if key in o.keys]
    lacking = [o for o in owners if key not in o.keys]
    names = (tuple(o.name for o in declaring), tuple(o.name for o in lacking))
    false_cells = {c for o in lacking for c in o.cells if could(c) and not o.installs(target, c)}
    true_cells = {c for o in declaring for c in o.cells if could(c)}
    if served is not None:
        true_cells = {c for c in true_cells if not any(certainly_true(m, c) for m in served)}
        if not true_cells:
            return Placement(Verdict.COVERED, None, *names)
    if not false_cells:
        nowhere = rules.drop_nowhere and not true_cells and not any(could(c) for c in rules.unowned)
        return Placement(Verdict.NOWHERE if nowhere else Verdict.KEEP, None, *names)
    if not true_cells:
        return Placement(Verdict.UNPICKED, None, *names)
    return Placement(Verdict.LIMIT, separating_marker(true_cells, false_cells, rules.universe), *names)
