"""Shortest separating markers, and evaluation of a requirement's own marker on cells."""

from __future__ import annotations

import pytest
from packaging.markers import Marker

from proxy.meld.environments import OTHER, Cell, Universe
from proxy.meld.markers import UnseparableCells, mentioned_extras, possibly_true, separating_marker

X86 = ("linux", "x86_64")
ARM = ("linux", "aarch64")
WIN = ("win32", "AMD64")
MAC = ("darwin", "arm64")

UNIVERSE = Universe(
    sys_platforms=("darwin", "linux", "win32", OTHER),
    machines=("AMD64", "aarch64", "arm64", "x86_64", OTHER),
    pythons=tuple((3, minor) for minor in range(6, 17)),
    implementations=("cpython", "pypy", OTHER),
)


def cells(platform: tuple[str, str], *minors: int, impl: str = "cpython") -> set[Cell]:
    return {Cell(platform[0], platform[1], (3, minor), impl) for minor in minors}


@pytest.mark.parametrize(
    ("true", "false", "expected"),
    [
        # one platform against the others: no Python clause, the shortest dimension wins
        (cells(X86, 11, 12, 13), cells(ARM, 11, 12, 13) | cells(WIN, 11, 12), 'platform_machine == "x86_64"'),
        (cells(X86, 11) | cells(ARM, 11), cells(WIN, 11) | cells(MAC, 11), 'sys_platform == "linux"'),
        # negative form when shorter: everything but Windows
        (cells(X86, 11) | cells(ARM, 11) | cells(MAC, 11), cells(WIN, 11), 'sys_platform != "win32"'),
        # Python minors merge into an open range
        (
            cells(X86, 12, 13) | cells(WIN, 12, 13),
            cells(X86, 10, 11) | cells(WIN, 11),
            'python_version >= "3.12"',
        ),
        (cells(X86, 9, 10), cells(X86, 11, 12), 'python_version < "3.11"'),
        (cells(X86, 11), cells(X86, 10, 12), 'python_version == "3.11"'),
        # two dimensions needed
        (
            cells(X86, 12),
            cells(X86, 11) | cells(ARM, 12),
            'platform_machine == "x86_64" and python_version >= "3.12"',
        ),
        # implementation
        (cells(X86, 10, impl="pypy"), cells(X86, 10), 'implementation_name == "pypy"'),
    ],
)
def test_separating_marker(true: set[Cell], false: set[Cell], expected: str) -> None:
    text = separating_marker(true, false, UNIVERSE)
    assert text == expected
    marker = Marker(text)
    for cell in true | false:
        env = {
            "sys_platform": cell.sys_platform,
            "platform_machine": cell.platform_machine,
            "python_version": f"{cell.python[0]}.{cell.python[1]}",
            "implementation_name": cell.implementation_name,
        }
        assert marker.evaluate(env) == (cell in true)


def test_other_values_are_spelled_through_the_named_ones() -> None:
    true = {Cell(OTHER, OTHER, (3, 11), "cpython")}
    false = {Cell("linux", "x86_64", (3, 11), "cpython"), Cell("win32", "AMD64", (3, 11), "cpython")}
    text = separating_marker(true, false, UNIVERSE)
    for system, expected in (("freebsd", True), ("linux", False), ("win32", False)):
        env = {"sys_platform": system, "platform_machine": "amd64", "python_version": "3.11"}
        env |= {"implementation_name": "cpython"}
        assert Marker(text).evaluate(env) is expected, text


def test_overlapping_cells_are_refused() -> None:
    with pytest.raises(UnseparableCells):
        separating_marker(cells(X86, 11), cells(X86, 11, 12), UNIVERSE)


@pytest.mark.parametrize(
    ("marker", "cell", "extras", "expected"),
    [
        (
            'platform_system == "Linux" and platform_machine == "x86_64"',
            Cell(*ARM, (3, 11), "cpython"),
            (),
            False,
        ),
        (
            'platform_system == "Linux" and platform_machine == "x86_64"',
            Cell(*X86, (3, 11), "cpython"),
            (),
            True,
        ),
        ('platform_system == "Linux"', Cell(*WIN, (3, 11), "cpython"), (), False),
        ('extra == "dynamo"', Cell(*WIN, (3, 11), "cpython"), (), False),
        ('extra == "dynamo"', Cell(*WIN, (3, 11), "cpython"), ("dynamo",), True),
        ('python_version >= "3.12"', Cell(*WIN, (3, 11), "cpython"), (), False),
        ('python_full_version < "3.11.2"', Cell(*WIN, (3, 11), "cpython"), (), True),  # patch levels
        ('python_full_version < "3.11.2"', Cell(*WIN, (3, 12), "cpython"), (), False),
        ('platform_release >= "5"', Cell(*WIN, (3, 12), "cpython"), (), True),  # unknowable → possibly
        ('os_name == "nt"', Cell(*WIN, (3, 12), "pypy"), (), True),
        ('platform_python_implementation == "PyPy"', Cell(*WIN, (3, 12), "cpython"), (), False),
    ],
)
def test_possibly_true(marker: str, cell: Cell, extras: tuple[str, ...], expected: bool) -> None:
    assert possibly_true(str(Marker(marker)), cell, extras) is expected


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("extra == 'dynamo'", {"dynamo"}),
        ("sys_platform == 'linux' and (extra == 'a' or 'b' == extra)", {"a", "b"}),
        ("python_version > '3.8'", set()),
    ],
)
def test_mentioned_extras(marker: str, expected: set[str]) -> None:
    assert mentioned_extras(str(Marker(marker))) == expected
