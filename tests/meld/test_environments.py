"""Tag → environment facts (docs/meld-contract.md's table), one parametrized table per platform family."""

from __future__ import annotations

import pytest
from packaging.tags import Tag
from packaging.utils import parse_wheel_filename

from proxy.meld.environments import OTHER, Cell, Universe, marker_environments, platform_facts, python_facts


@pytest.mark.parametrize(
    ("platform", "system", "machines"),
    [
        # Linux: PEP 600, legacy manylinux, musllinux, bare linux_<arch>
        ("manylinux_2_28_x86_64", "linux", {"x86_64"}),
        ("manylinux_2_17_aarch64", "linux", {"aarch64"}),
        ("manylinux2014_aarch64", "linux", {"aarch64"}),
        ("manylinux2010_i686", "linux", {"i686"}),
        ("manylinux1_x86_64", "linux", {"x86_64"}),
        ("musllinux_1_2_x86_64", "linux", {"x86_64"}),
        ("musllinux_1_1_armv7l", "linux", {"armv7l"}),
        ("linux_aarch64", "linux", {"aarch64"}),
        ("linux_x86_64", "linux", {"x86_64"}),
        ("manylinux_2_17_ppc64le", "linux", {"ppc64le"}),
        # macOS: arch-specific, universal2, intel
        ("macosx_11_0_arm64", "darwin", {"arm64"}),
        ("macosx_10_9_x86_64", "darwin", {"x86_64"}),
        ("macosx_10_9_universal2", "darwin", {"arm64", "x86_64"}),
        ("macosx_10_6_intel", "darwin", {"x86_64", "i386"}),
        ("macosx_14_0_arm64", "darwin", {"arm64"}),
        # Windows
        ("win_amd64", "win32", {"AMD64"}),
        ("win_arm64", "win32", {"ARM64"}),
        ("win32", "win32", {"x86"}),
        # others
        ("android_21_arm64_v8a", "android", {"aarch64"}),
        ("ios_13_0_arm64_iphoneos", "ios", {"arm64"}),
        ("freebsd_13_amd64", "freebsd", {OTHER}),
    ],
)
def test_platform_facts(platform: str, system: str, machines: set[str]) -> None:
    facts = platform_facts(platform)
    assert facts.sys_platform == system
    assert facts.machines == machines


def test_any_is_every_platform() -> None:
    assert platform_facts("any").sys_platform is None


@pytest.mark.parametrize(
    ("interpreter", "abi", "implementation", "covered", "not_covered"),
    [
        ("cp311", "cp311", "cpython", [(3, 11)], [(3, 10), (3, 12)]),
        ("cp313", "cp313t", "cpython", [(3, 13)], [(3, 12), (3, 14)]),
        ("cp38", "cp38", "cpython", [(3, 8)], [(3, 9)]),
        ("cp310", "none", "cpython", [(3, 10)], [(3, 11)]),
        ("cp39", "abi3", "cpython", [(3, 9), (3, 12), (3, 15)], [(3, 8)]),
        ("py3", "none", None, [(3, 6), (3, 14)], []),
        ("py38", "none", None, [(3, 8), (3, 13)], [(3, 7)]),
        ("pp310", "pypy310_pp73", "pypy", [(3, 10)], [(3, 9), (3, 11)]),
        ("pp73", "pypy_73", "pypy", [(3, 9), (3, 10)], []),
    ],
)
def test_python_facts(
    interpreter: str,
    abi: str,
    implementation: str | None,
    covered: list[tuple[int, int]],
    not_covered: list[tuple[int, int]],
) -> None:
    facts = python_facts(interpreter, abi)
    assert facts.implementation == implementation
    impl = implementation or "cpython"
    assert all(facts.covers(python, impl) for python in covered)
    assert not any(facts.covers(python, impl) for python in not_covered)
    if implementation is not None:
        assert not facts.covers(covered[0], "ironpython")
    else:  # pyX / pyXY + none: any implementation
        assert facts.covers(covered[0], "pypy") and facts.covers(covered[0], OTHER)


def _cells(*filenames: str) -> tuple[Universe, list[frozenset[Cell]]]:
    tag_sets = [parse_wheel_filename(name)[3] for name in filenames]
    universe = Universe.from_tags(tag for tags in tag_sets for tag in tags)
    return universe, [universe.cells_of(tags) for tags in tag_sets]


def test_compressed_tag_sets_come_from_packaging() -> None:
    universe, (cells,) = _cells("x-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert cells == {Cell("linux", "x86_64", (3, 11), "cpython")}
    universe, (cells,) = _cells("x-1-py2.py3-none-any.whl")
    assert Cell(OTHER, OTHER, (3, 7), OTHER) in cells
    assert len(cells) == len(universe.sys_platforms) * len(universe.machines) * 3 * len(universe.pythons)


def test_universe_has_other_and_future_minors() -> None:
    universe, _ = _cells("x-1-cp39-abi3-win_amd64.whl", "x-1-cp312-cp312-linux_aarch64.whl")
    assert universe.sys_platforms == ("darwin", "linux", "win32", OTHER)  # the big three, always
    assert universe.machines == ("AMD64", "ARM64", "aarch64", "arm64", "x86", "x86_64", OTHER)
    assert universe.pythons[0] == (3, 6)
    assert universe.pythons[-1] == (3, 18)
    assert universe.implementations[-1] == OTHER


def test_abi3_covers_later_minors_of_cpython_only() -> None:
    _, (cells,) = _cells("x-1-cp39-abi3-win_amd64.whl")
    pythons = {cell.python for cell in cells}
    assert (3, 8) not in pythons
    assert {(3, 9), (3, 18)} <= pythons  # …up to the universe's last minor, rendered open-ended
    assert {cell.implementation_name for cell in cells} == {"cpython"}


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (
            Cell("linux", "x86_64", (3, 11), "cpython"),
            {"platform_system": "Linux", "os_name": "posix", "platform_python_implementation": "CPython"},
        ),
        (
            Cell("win32", "AMD64", (3, 12), "cpython"),
            {"platform_system": "Windows", "os_name": "nt", "python_version": "3.12"},
        ),
        (
            Cell("darwin", "arm64", (3, 10), "pypy"),
            {
                "platform_system": "Darwin",
                "platform_python_implementation": "PyPy",
                "implementation_name": "pypy",
            },
        ),
    ],
)
def test_marker_environment_derives_the_other_variables(cell: Cell, expected: dict[str, str]) -> None:
    environments = marker_environments(cell)
    assert environments[0]["python_full_version"].endswith(".0")
    assert all(environments[0][key] == value for key, value in expected.items())


def test_tag_type_is_packagings() -> None:
    universe = Universe.from_tags([Tag("cp311", "cp311", "win_amd64")])
    assert universe.cells_of_tag(Tag("cp311", "cp311", "win_amd64")) == {
        Cell("win32", "AMD64", (3, 11), "cpython")
    }
