"""PEP 508 markers on the cell grid: evaluating a requirement's own marker, and writing the shortest
marker that separates the cells of the wheels that declared a requirement from those that did not.

The synthesised marker only uses the four grid dimensions (``sys_platform``, ``platform_machine``,
``python_version``, ``implementation_name``). :mod:`proxy.meld.search` finds the marker with the
fewest comparisons (then the shortest text) among ORs of AND-terms, negations and free cells
included, up to a budget of comparisons. Past the budget the constructive forms below answer:
dimension subsets smallest first, a subset working when the two cell sets projected onto it are
disjoint, each rendered positively (OR of the declaring groups), factored, and negatively.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable, Sequence, Set
from itertools import combinations

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName

from .environments import OTHER, Cell, Universe, marker_environments
from .search import BUDGET, shortest_marker

__all__ = ["UnseparableCells", "certainly_true", "mentioned_extras", "possibly_true", "separating_marker"]

_NAMES = ("sys_platform", "platform_machine", "python_version", "implementation_name")
_PYTHON = 2
# Variables a cell does not pin down. Kernel strings are unknowable: a marker on them is "possibly
# true" everywhere, which only ever costs a longer marker, never fidelity.
_UNMODELLED = ("platform_release", "platform_version")
# Variables finer than a cell's Python minor: evaluated at many patch levels of the minor.
_PATCH_LEVEL = ("python_full_version", "implementation_version")
_EXTRA = re.compile(
    r'extra (?:===|==|!=|~=|<=|>=|<|>|not in|in) "([^"]*)"|"([^"]*)" (?:==|!=|not in|in) extra'
)


class UnseparableCells(ValueError):
    """The same cell is asked to be both true and false (a bug in the caller's bookkeeping)."""


@functools.lru_cache(maxsize=4096)
def _marker(text: str) -> Marker:
    return Marker(text)


# Which cell dimensions each marker variable reads. A marker that never mentions Python is evaluated
# once per platform instead of once per cell: a ``py3-none-any`` wheel covers ~1500 cells.
_READS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (0, ("sys_platform", "platform_system", "os_name")),
    (1, ("platform_machine",)),
    (2, ("python_version", "python_full_version", "implementation_version")),
    (3, ("implementation_name", "platform_python_implementation", "implementation_version")),
)


@functools.lru_cache(maxsize=4096)
def _dimensions_read(marker_text: str) -> tuple[bool, bool, bool, bool]:
    read = [False] * 4
    for dim, names in _READS:
        read[dim] = any(name in marker_text for name in names)
    return (read[0], read[1], read[2], read[3])


def _pinned(marker_text: str, cell: Cell) -> Cell | None:
    """``cell`` with the dimensions the marker does not read pinned to one value, so the caches
    below are shared; None when the marker reads a dimension whose value is ``OTHER``."""
    sys_platform, machine, python, implementation = _dimensions_read(marker_text)
    if (
        (sys_platform and cell.sys_platform == OTHER)
        or (machine and cell.platform_machine == OTHER)
        or (implementation and cell.implementation_name == OTHER)
    ):
        return None
    return Cell(
        cell.sys_platform if sys_platform else "linux",
        cell.platform_machine if machine else "x86_64",
        cell.python if python else (3, 12),
        cell.implementation_name if implementation else "cpython",
    )


def possibly_true(marker_text: str, cell: Cell, extras: tuple[str, ...]) -> bool:
    """Whether ``marker_text`` can be true in ``cell`` for ``extra`` "" or any of ``extras``.

    Errors count as "possibly": a marker we cannot evaluate must never be assumed false.
    """
    pinned = _pinned(marker_text, cell)
    # OTHER stands for values no tag names (freebsd, riscv64, …): the marker may well hold there.
    return pinned is None or _possibly_true(marker_text, pinned, extras)


# One (marker, cell, extras) triple is asked about by every sibling of every meld of a release:
# evaluate it once. The key is the marker's text because hashing a Marker re-renders it each time.
@functools.lru_cache(maxsize=262144)
def _possibly_true(marker_text: str, cell: Cell, extras: tuple[str, ...]) -> bool:
    return any(outcome is not False for outcome in _outcomes(marker_text, cell, extras))


def certainly_true(marker_text: str, cell: Cell) -> bool:
    """Whether an installer in ``cell`` always installs a requirement with this marker.

    True only when the marker holds in every environment of the cell with no extra requested;
    anything unknowable (an ``OTHER`` value it reads, a kernel string, an error) counts as "not".
    """
    if not marker_text:
        return True
    pinned = _pinned(marker_text, cell)
    return pinned is not None and _certainly_true(marker_text, pinned)


@functools.lru_cache(maxsize=262144)
def _certainly_true(marker_text: str, cell: Cell) -> bool:
    return all(outcome is True for outcome in _outcomes(marker_text, cell, ()))


def _outcomes(marker_text: str, cell: Cell, extras: tuple[str, ...]) -> list[bool | None]:
    """The marker's value in each environment of the cell, for ``extra`` "" and each of ``extras``;
    None where it cannot be known."""
    if any(name in marker_text for name in _UNMODELLED):
        return [None]
    try:
        marker = _marker(marker_text)
    except InvalidMarker:
        return [None]
    environments = marker_environments(cell)
    if not any(name in marker_text for name in _PATCH_LEVEL):
        environments = environments[:1]
    outcomes: list[bool | None] = []
    for environment in environments:
        for extra in ("", *extras):
            try:
                outcomes.append(bool(marker.evaluate({**environment, "extra": extra})))
            except (UndefinedComparison, UndefinedEnvironmentName, ValueError, TypeError):
                outcomes.append(None)
    return outcomes


def mentioned_extras(marker_text: str) -> frozenset[str]:
    """Extras compared against in a marker's canonical text (which always double-quotes values).

    Needed because ``extra`` is never assumed false: a marker may name an extra no wheel provides.
    """
    return frozenset(a or b for a, b in _EXTRA.findall(marker_text))


def separating_marker(true_cells: Collection[Cell], false_cells: Collection[Cell], universe: Universe) -> str:
    """The shortest marker text true on every cell of ``true_cells`` and false on ``false_cells``."""
    if not true_cells or not false_cells:
        raise UnseparableCells("need cells on both sides")
    if not set(true_cells).isdisjoint(false_cells):
        raise UnseparableCells(f"cells on both sides: {sorted(set(true_cells) & set(false_cells))!r}")
    found = shortest_marker(true_cells, false_cells, universe, greedy=True)
    if found is not None and _comparisons(found) <= BUDGET:
        return found
    # Past the exact search's budget: its greedy answer or the constructive forms below, the
    # fewest comparisons winning.
    for size in range(1, len(_NAMES) + 1):
        candidates: list[str] = [found] if found is not None else []
        for dims in combinations(range(len(_NAMES)), size):
            positive: set[tuple[object, ...]] = {tuple(cell[d] for d in dims) for cell in true_cells}
            negative: set[tuple[object, ...]] = {tuple(cell[d] for d in dims) for cell in false_cells}
            if positive.isdisjoint(negative):
                candidates.extend(_renderings(dims, positive, negative, universe))
        if candidates:
            # min() keeps the first of equal costs: sys_platform before platform_machine, and so on.
            return min(candidates, key=lambda text: (_comparisons(text), len(text)))
    raise UnseparableCells("cells are not separable")  # unreachable: full cells are disjoint


def _comparisons(text: str) -> int:
    return text.count('"') // 2  # every comparison quotes exactly one value


def _renderings(
    dims: Sequence[int],
    positive: Set[tuple[object, ...]],
    negative: Set[tuple[object, ...]],
    universe: Universe,
) -> Iterable[str]:
    yield _positive_form(dims, positive, negative, universe)
    factored = _factored_form(dims, positive, negative, universe)
    if factored:
        yield factored
    if _PYTHON not in dims:
        yield _and(
            _or(_compare(dims[i], value, "!=", universe) for i, value in enumerate(group))
            for group in sorted(negative, key=repr)
        )


def _positive_form(
    dims: Sequence[int],
    positive: Set[tuple[object, ...]],
    negative: Set[tuple[object, ...]],
    universe: Universe,
) -> str:
    if _PYTHON not in dims:
        return _or(
            _and(_compare(dims[i], value, "==", universe) for i, value in enumerate(group))
            for group in sorted(positive, key=repr)
        )
    where = dims.index(_PYTHON)
    # Group by the non-Python dimensions; each group gets the Python ranges its cells need.
    wanted: dict[tuple[object, ...], set[tuple[int, int]]] = {}
    forbidden: dict[tuple[object, ...], set[tuple[int, int]]] = {}
    for target, groups in ((wanted, positive), (forbidden, negative)):
        for group in groups:
            rest = group[:where] + group[where + 1 :]
            target.setdefault(rest, set()).add(group[where])  # type: ignore[arg-type]
    others = [d for d in dims if d != _PYTHON]
    terms = []
    for rest in sorted(wanted, key=repr):
        parts = [_compare(d, value, "==", universe) for d, value in zip(others, rest, strict=True)]
        python = _python_clause(wanted[rest], forbidden.get(rest, set()), universe.pythons)
        terms.append(_and([*parts, python] if python else parts))
    return _or(terms)


def _factored_form(
    dims: Sequence[int],
    positive: Set[tuple[object, ...]],
    negative: Set[tuple[object, ...]],
    universe: Universe,
) -> str | None:
    """``(platform or platform …) and (interpreter clause)`` per distinct interpreter clause.

    Releases are usually a product (every platform × every Python), so many platforms share one
    interpreter clause; factoring it out keeps a py3-none-any fallback's complement readable.
    """
    platform_dims = [d for d in dims if d < _PYTHON]
    interpreter_dims = [d for d in dims if d >= _PYTHON]
    if not platform_dims or not interpreter_dims:
        return None
    wanted: dict[tuple[object, ...], set[tuple[object, ...]]] = {}
    forbidden: dict[tuple[object, ...], set[tuple[object, ...]]] = {}
    for target, groups in ((wanted, positive), (forbidden, negative)):
        for group in groups:
            values = dict(zip(dims, group, strict=True))
            platform = tuple(values[d] for d in platform_dims)
            target.setdefault(platform, set()).add(tuple(values[d] for d in interpreter_dims))
    by_clause: dict[str, list[tuple[object, ...]]] = {}
    for platform in sorted(wanted, key=repr):
        clause = _interpreter_clause(
            interpreter_dims, wanted[platform], forbidden.get(platform, set()), universe
        )
        by_clause.setdefault(clause, []).append(platform)
    terms = []
    for clause, platforms in by_clause.items():
        where = _or(
            _and(_compare(d, value, "==", universe) for d, value in zip(platform_dims, platform, strict=True))
            for platform in platforms
        )
        terms.append(_and([where, clause]))
    return _or(terms)


def _interpreter_clause(
    dims: Sequence[int],
    wanted: set[tuple[object, ...]],
    forbidden: set[tuple[object, ...]],
    universe: Universe,
) -> str:
    if dims == [_PYTHON]:
        return _python_clause({w[0] for w in wanted}, {f[0] for f in forbidden}, universe.pythons)  # type: ignore[misc]
    if _PYTHON not in dims:
        return _or(_compare(dims[0], w[0], "==", universe) for w in sorted(wanted, key=repr))
    # Python and implementation: per implementation, its Python ranges.
    per_impl: dict[object, tuple[set[tuple[int, int]], set[tuple[int, int]]]] = {}
    for target, groups in ((0, wanted), (1, forbidden)):
        for python, impl in groups:
            per_impl.setdefault(impl, (set(), set()))[target].add(python)  # type: ignore[arg-type]
    return _or(
        _and([_compare(3, impl, "==", universe), _python_clause(want, avoid, universe.pythons)])
        for impl, (want, avoid) in sorted(per_impl.items(), key=repr)
        if want
    )


def _python_clause(
    wanted: set[tuple[int, int]], forbidden: set[tuple[int, int]], pythons: Sequence[tuple[int, int]]
) -> str:
    """Python minors as ranges: maximal runs of the universe free of forbidden minors, holding a wanted one.

    Runs reach over don't-care minors so "all Python versions of a platform" needs no clause at all.
    """
    runs: list[str] = []
    start = 0
    while start < len(pythons):
        end = start
        while end < len(pythons) and pythons[end] not in forbidden:
            end += 1
        segment = pythons[start:end]
        if any(python in wanted for python in segment):
            runs.append(_python_range(segment, pythons, end))
        start = end + 1
    if runs == [""]:
        return ""
    return _or(runs)


def _python_range(segment: Sequence[tuple[int, int]], pythons: Sequence[tuple[int, int]], end: int) -> str:
    low, high = segment[0], segment[-1]
    at_bottom, at_top = low == pythons[0], high == pythons[-1]
    if at_bottom and at_top:
        return ""
    # Open ends first: the universe's edges stand for every older / newer Python, not just their own.
    if at_top:
        return f'python_version >= "{_dotted(low)}"'
    upper = f'python_version < "{_dotted(pythons[end])}"'
    if at_bottom:
        return upper
    if low == high:
        return f'python_version == "{_dotted(low)}"'
    return f'python_version >= "{_dotted(low)}" and {upper}'


def _dotted(python: tuple[int, int]) -> str:
    return f"{python[0]}.{python[1]}"


def _compare(dim: int, value: object, op: str, universe: Universe) -> str:
    name = _NAMES[dim]
    if value != OTHER:
        return f'{name} {op} "{value}"'
    # OTHER stands for every value the release does not name: spell it out through the named ones.
    named = [v for v in universe.values(dim) if v != OTHER]
    if op == "==":
        return _and(f'{name} != "{v}"' for v in named)
    return _or(f'{name} == "{v}"' for v in named)


def _and(parts: Iterable[str]) -> str:
    items = [p for p in parts if p]
    return " and ".join(f"({p})" if " or " in p and len(items) > 1 else p for p in items)


def _or(parts: Iterable[str]) -> str:
    items = [p for p in parts if p]
    return " or ".join(items)  # "and" binds tighter than "or": no parentheses needed
