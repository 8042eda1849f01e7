"""The exact search for the shortest separating marker: fewest comparisons first, then shortest text.

A candidate marker is an OR of AND-terms of *comparisons* on the four grid variables:
``sys_platform``, ``platform_machine`` and ``implementation_name`` with ``==`` / ``!=`` against a
value the universe names, ``python_version`` with ``<`` / ``>=`` / ``==`` / ``!=`` against one of the
universe's minors (``==`` / ``!=`` only on inner minors: the edge minors stand for every older or
newer Python). Each comparison is exact on every cell, ``OTHER`` included (``!=`` is true there).

Cells are bits of two integers (true side, false side), so a comparison or a term is two masks and
set algebra is integer ``&`` / ``|``. Terms are built by adding one comparison at a time to terms
that still admit a false cell; a term that admits none is a candidate. Then a depth-first cover of
the true cells by candidate terms, by total comparison count, finds the smallest marker within the
budget. Cells in neither set are free: a term may admit them. The search is exact while its
bounds (beam, pairs, nodes) are not reached — always on the small universes the tests brute-force;
on large cell sets it returns the best marker it met, or None when it met none within the budget.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .environments import OTHER, Cell, Universe

__all__ = ["Comparison", "comparisons", "shortest_marker"]

_NAMES = ("sys_platform", "platform_machine", "python_version", "implementation_name")
_PYTHON = 2
# Enough for every shape seen in real releases (issue 13's worst needed three); past it the
# constructive forms of :mod:`proxy.meld.markers` answer.
BUDGET = 4
# Bounds on one search's time for cell sets no small marker separates (a py3-none-any fallback
# against a dozen platform wheels): depth-first nodes of the cover, and (term, comparison) pairs
# tried while growing terms. Past them the answer is the best found so far, or none.
_NODES = 3000
_PAIRS = 60000
# Terms kept for growing at each size: past it, those admitting the fewest false cells (then the
# most true ones). Small cell sets never reach it, so their answer is exact; large ones get a good one.
_BEAM = 150


@dataclass(frozen=True, slots=True)
class Comparison:
    """``<name> <op> "<value>"``: the values of dimension ``dim`` for which it is true."""

    text: str
    dim: int
    accepts: frozenset[object]


@functools.lru_cache(maxsize=256)
def comparisons(universe: Universe) -> tuple[Comparison, ...]:
    """Every comparison the search may write, in the order ties are broken (ranges before points)."""
    found: list[Comparison] = []
    for dim in (0, 1, 3):
        values = universe.values(dim)
        for value in values:
            if value == OTHER:
                continue
            found.append(Comparison(f'{_NAMES[dim]} == "{value}"', dim, frozenset({value})))
            found.append(Comparison(f'{_NAMES[dim]} != "{value}"', dim, frozenset(values) - {value}))
    pythons = universe.pythons
    for index in range(1, len(pythons)):
        dotted = _dotted(pythons[index])
        found.append(Comparison(f'python_version >= "{dotted}"', _PYTHON, frozenset(pythons[index:])))
        found.append(Comparison(f'python_version < "{dotted}"', _PYTHON, frozenset(pythons[:index])))
    for index in range(1, len(pythons) - 1):
        dotted = _dotted(pythons[index])
        found.append(Comparison(f'python_version == "{dotted}"', _PYTHON, frozenset({pythons[index]})))
        others = frozenset(pythons) - {pythons[index]}
        found.append(Comparison(f'python_version != "{dotted}"', _PYTHON, others))
    return tuple(found)


@dataclass(frozen=True, slots=True)
class _Term:
    true: int  # mask of the true cells it admits
    false: int  # mask of the false cells it admits
    parts: tuple[int, ...]  # indexes into comparisons(universe), ascending
    length: int  # its text's length


def shortest_marker(
    true_cells: Collection[Cell],
    false_cells: Collection[Cell],
    universe: Universe,
    budget: int = BUDGET,
    *,
    greedy: bool = False,
) -> str | None:
    """The marker with the fewest comparisons (then the shortest text) true on ``true_cells`` and
    false on ``false_cells``, or None when it needs more than ``budget`` comparisons.

    ``greedy``: past the budget, answer an OR of the terms met so far, widest first, if they admit
    every true cell (a good marker, not a shortest one).
    """
    table = comparisons(universe)
    atoms = _atoms(table, list(true_cells), list(false_cells))
    all_true = (1 << len(true_cells)) - 1
    terms = [atom for atom in atoms if not atom.false]  # terms admitting no false cell, every size
    frontier = [atom for atom in atoms if atom.false]
    best: tuple[int, int, tuple[tuple[int, ...], ...]] | None = None
    pairs = _PAIRS
    for size in range(1, budget + 1):
        if size > 1:
            if len(frontier) * len(atoms) > pairs:
                break
            pairs -= len(frontier) * len(atoms)
            frontier, grown = _grow(frontier, atoms)
            terms += grown
        best = _cover(terms, all_true, size)
        if best is not None:
            break
    if best is not None:
        return _render(best[2], table)
    cover = _greedy(terms, all_true) if greedy else None
    return _render(cover, table) if cover is not None else None


def _atoms(table: Sequence[Comparison], true_cells: list[Cell], false_cells: list[Cell]) -> list[_Term]:
    """One term per useful comparison: it admits some true cell and excludes some false cell."""
    masks: list[tuple[dict[object, int], dict[object, int]]] = [({}, {}) for _ in _NAMES]
    for side, cells in enumerate((true_cells, false_cells)):
        for bit, cell in enumerate(cells):
            for dim in range(len(_NAMES)):
                by_value = masks[dim][side]
                by_value[cell[dim]] = by_value.get(cell[dim], 0) | (1 << bit)
    all_false = (1 << len(false_cells)) - 1
    seen: dict[tuple[int, int], _Term] = {}
    for index, comparison in enumerate(table):
        on_true, on_false = masks[comparison.dim]
        true = _union(on_true, comparison.accepts)
        false = _union(on_false, comparison.accepts)
        if not true or false == all_false:
            continue
        _keep(seen, _Term(true, false, (index,), len(comparison.text)))
    return list(seen.values())


def _union(by_value: dict[object, int], accepts: frozenset[object]) -> int:
    mask = 0
    for value, bits in by_value.items():
        if value in accepts:
            mask |= bits
    return mask


def _keep(seen: dict[tuple[int, int], _Term], term: _Term) -> None:
    """Of terms admitting the same cells, keep the shortest (then the first in comparison order)."""
    key = (term.true, term.false)
    old = seen.get(key)
    if old is None or (term.length, term.parts) < (old.length, old.parts):
        seen[key] = term


def _grow(frontier: list[_Term], atoms: list[_Term]) -> tuple[list[_Term], list[_Term]]:
    """Terms one comparison longer: (those still admitting a false cell, those admitting none)."""
    seen: dict[tuple[int, int], _Term] = {}
    plain = [(atom.parts[0], atom.true, atom.false, atom.length + len(" and ")) for atom in atoms]
    for term in frontier:
        # Any comparison not in the term yet, not only later ones: the beam below may have cut the
        # term's prefix in comparison order, and equal masks merge the orders anyway.
        for index, atom_true, atom_false, extra in plain:
            if index in term.parts:
                continue
            true, false = term.true & atom_true, term.false & atom_false
            if not true or false == term.false:
                continue  # admits no true cell, or the comparison excludes nothing more
            key = (true, false)
            length = term.length + extra
            old = seen.get(key)
            if old is None or length < old.length:
                seen[key] = _Term(true, false, tuple(sorted((*term.parts, index))), length)
    grown = list(seen.values())
    frontier = [t for t in grown if t.false]
    if len(frontier) > _BEAM:
        frontier.sort(key=lambda t: (t.false.bit_count(), -t.true.bit_count(), t.length, t.parts))
        del frontier[_BEAM:]
    return frontier, [t for t in grown if not t.false]


def _cover(
    terms: list[_Term], all_true: int, budget: int
) -> tuple[int, int, tuple[tuple[int, ...], ...]] | None:
    """The cheapest set of terms admitting every true cell: (comparisons, text length, parts)."""
    # Widest terms first: the depth-first search then meets small covers early.
    ordered = sorted(terms, key=lambda t: (-t.true.bit_count(), len(t.parts), t.length, t.parts))
    plain = [(t.true, len(t.parts), t.length, t.parts) for t in ordered if len(t.parts) <= budget]
    admitting: dict[int, list[tuple[int, int, int, tuple[int, ...]]]] = {}  # cell bit → terms
    widest = max((term[0].bit_count() for term in plain), default=0)
    best: list[tuple[int, int, tuple[tuple[int, ...], ...]]] = []
    nodes = 0

    def visit(uncovered: int, used: int, length: int, chosen: tuple[tuple[int, ...], ...]) -> None:
        nonlocal nodes
        nodes += 1
        if nodes > _NODES:
            return
        if not uncovered:
            found = (used, length, tuple(sorted(chosen)))
            if not best or found < best[0]:
                best[:] = [found]
            return
        # Some term of every cover admits the lowest true cell still uncovered: branch on those only.
        lowest = uncovered & -uncovered
        if lowest not in admitting:
            admitting[lowest] = [term for term in plain if term[0] & lowest]
        joiner = len(" or ") if chosen else 0
        for true, size, term_length, parts in admitting[lowest]:
            cost, total = used + size, length + joiner + term_length
            if cost > budget or (best and (cost, total) >= best[0][:2]):
                continue
            left = uncovered & ~true
            # Each further term costs a comparison at least and admits at most ``widest`` cells.
            if left and left.bit_count() > (budget - cost) * widest:
                continue
            visit(left, cost, total, (*chosen, parts))

    visit(all_true, 0, 0, ())
    return best[0] if best else None


def _greedy(terms: list[_Term], all_true: int) -> tuple[tuple[int, ...], ...] | None:
    chosen: list[tuple[int, ...]] = []
    uncovered = all_true
    while uncovered:
        term = max(
            terms, key=lambda t: ((t.true & uncovered).bit_count(), -len(t.parts), -t.length), default=None
        )
        if term is None or not term.true & uncovered:
            return None
        chosen.append(term.parts)
        uncovered &= ~term.true
    return tuple(sorted(chosen))


def _render(terms: tuple[tuple[int, ...], ...], table: Sequence[Comparison]) -> str:
    return " or ".join(" and ".join(table[index].text for index in parts) for parts in terms)


def _dotted(python: tuple[int, int]) -> str:
    return f"{python[0]}.{python[1]}"
