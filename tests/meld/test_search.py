"""The exact marker search: correct on every cell, and minimal — checked against a brute force.

The brute force is written from the search's documented grammar only (an OR of AND-terms of
comparisons, ``==`` / ``!=`` on named values, ``<`` / ``>=`` on Python minors and ``==`` / ``!=`` on
inner ones) and evaluates candidates with packaging's own marker evaluation, so it shares no code
with :mod:`proxy.meld.search` beyond the universe.
"""

from __future__ import annotations

import functools
from itertools import combinations, product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.markers import Marker

from proxy.meld.environments import OTHER, Cell, Universe
from proxy.meld.markers import separating_marker
from proxy.meld.search import shortest_marker

SMALL = Universe(
    sys_platforms=("darwin", "linux", OTHER),
    machines=("arm64", "x86_64", OTHER),
    pythons=((3, 9), (3, 10), (3, 11), (3, 12)),
    implementations=("cpython", OTHER),
)
CELLS = tuple(Cell(*values) for values in product(*(SMALL.values(dim) for dim in range(4))))
BUDGET = 3
NAMES = ("sys_platform", "platform_machine", "python_version", "implementation_name")


def environment(cell: Cell) -> dict[str, str]:
    """A concrete environment in the cell (OTHER becomes a value the universe does not name)."""
    system, machine, (major, minor), implementation = cell
    return {
        "sys_platform": "freebsd13" if system == OTHER else system,
        "platform_machine": "riscv64" if machine == OTHER else machine,
        "python_version": f"{major}.{minor}",
        "implementation_name": "graalpy" if implementation == OTHER else implementation,
    }


def truth(text: str) -> int:
    """The cells ``text`` is true in, as a bit mask over CELLS."""
    marker = Marker(text)
    return sum(1 << bit for bit, cell in enumerate(CELLS) if marker.evaluate(environment(cell)))


@functools.cache
def brute_atoms() -> tuple[tuple[str, int], ...]:
    texts = []
    for dim in (0, 1, 3):
        for value in SMALL.values(dim):
            if value != OTHER:
                texts += [f'{NAMES[dim]} == "{value}"', f'{NAMES[dim]} != "{value}"']
    dotted = [f"{major}.{minor}" for major, minor in SMALL.pythons]
    texts += [f'python_version {op} "{v}"' for v in dotted[1:] for op in ("<", ">=")]
    texts += [f'python_version {op} "{v}"' for v in dotted[1:-1] for op in ("==", "!=")]
    return tuple((text, truth(text)) for text in texts)


@functools.cache
def brute_terms() -> tuple[tuple[int, int, int], ...]:
    """Every AND of up to BUDGET comparisons: (cells it is true in, comparisons, text length)."""
    atoms = brute_atoms()
    terms = []
    for size in range(1, BUDGET + 1):
        for combo in combinations(atoms, size):
            mask = -1
            for _, atom in combo:
                mask &= atom
            length = sum(len(text) for text, _ in combo) + len(" and ") * (size - 1)
            terms.append((mask & ((1 << len(CELLS)) - 1), size, length))
    return tuple(terms)


def brute_force(true: int, false: int) -> tuple[int, int] | None:
    """(comparisons, text length) of the smallest DNF within BUDGET separating the masks."""
    by_size: dict[int, list[tuple[int, int]]] = {size: [] for size in range(1, BUDGET + 1)}
    for m, size, length in brute_terms():
        if m & true and not m & false:
            by_size[size].append((m, length))
    best: tuple[int, int] | None = None
    # Every way to split the budget into the sizes of the OR's terms (sizes non-decreasing).
    shapes = [(1,), (2,), (3,), (1, 1), (1, 2), (1, 1, 1)]
    for shape in shapes:
        pools = [by_size[size] for size in shape]
        for combo in product(*pools):
            covered = 0
            for m, _ in combo:
                covered |= m
            if covered & true == true:
                length = sum(n for _, n in combo) + len(" or ") * (len(shape) - 1)
                found = (sum(shape), length)
                best = found if best is None or found < best else best
    return best


@st.composite
def separations(draw: st.DrawFn) -> tuple[set[Cell], set[Cell]]:
    """Cells split into true, false and free, around a random small marker or at random."""
    if draw(st.booleans()):
        atoms = brute_atoms()
        terms = draw(
            st.lists(st.lists(st.sampled_from(atoms), min_size=1, max_size=2), min_size=1, max_size=2)
        )
        region = 0
        for term in terms:
            m = -1
            for _, atom in term:
                m &= atom
            region |= m
        sides = draw(st.lists(st.booleans(), min_size=len(CELLS), max_size=len(CELLS)))
        true = {
            c for bit, (c, keep) in enumerate(zip(CELLS, sides, strict=True)) if keep and region >> bit & 1
        }
        false = {
            c
            for bit, (c, keep) in enumerate(zip(CELLS, sides, strict=True))
            if keep and not region >> bit & 1
        }
        if true and false:
            return true, false
    inner = len(CELLS) - 2
    sides = ["t", *draw(st.lists(st.sampled_from("tf-"), min_size=inner, max_size=inner)), "f"]
    true = {cell for cell, side in zip(CELLS, sides, strict=True) if side == "t"}
    false = {cell for cell, side in zip(CELLS, sides, strict=True) if side == "f"}
    return true, false


def mask(cells: set[Cell]) -> int:
    return sum(1 << CELLS.index(cell) for cell in cells)


@settings(max_examples=150, deadline=None, database=None)
@given(separations())
def test_search_is_correct_and_minimal(split: tuple[set[Cell], set[Cell]]) -> None:
    true, false = split
    text = separating_marker(true, false, SMALL)
    found = truth(text)
    assert found & mask(true) == mask(true), f"{text!r} is false on a true cell"
    assert not found & mask(false), f"{text!r} is true on a false cell"
    best = brute_force(mask(true), mask(false))
    if best is not None:
        assert (text.count('"') // 2, len(text)) == best, text
    assert shortest_marker(true, false, SMALL, budget=BUDGET) == (text if best is not None else None)


def _cells(*specs: tuple[str, str, int, str]) -> set[Cell]:
    return {Cell(system, machine, (3, minor), impl) for system, machine, minor, impl in specs}


@pytest.mark.parametrize(
    ("true", "false", "expected"),
    [
        # Issue 13, class 2 in miniature: x86_64 before 3.11 yes; arm64, and 3.11 anywhere, no.
        (
            _cells(("linux", "x86_64", 9, "cpython"), ("darwin", "x86_64", 10, "cpython")),
            _cells(("darwin", "arm64", 9, "cpython"), ("linux", "x86_64", 11, "cpython")),
            'platform_machine != "arm64" and python_version < "3.11"',
        ),
        # Free cells let a negation stand for several values.
        (
            _cells(("linux", "x86_64", 9, "cpython"), ("linux", OTHER, 9, "cpython")),
            _cells(("linux", "arm64", 9, "cpython")),
            'platform_machine != "arm64"',
        ),
        # A point Python inside the range.
        (
            _cells(("linux", "x86_64", 10, "cpython")),
            _cells(("linux", "x86_64", 9, "cpython"), ("linux", "x86_64", 11, "cpython")),
            'python_version == "3.10"',
        ),
    ],
)
def test_search_table(true: set[Cell], false: set[Cell], expected: str) -> None:
    assert separating_marker(true, false, SMALL) == expected
