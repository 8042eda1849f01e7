"""Wheel tags → the environments an installer could pick the wheel in (PEP 425, PEP 600, PEP 656).

A release's wheels are compared on a *finite* grid of environment cells. A cell fixes the four marker
variables the meld may write (``sys_platform``, ``platform_machine``, the Python ``(major, minor)`` and
``implementation_name``); every dimension holds the values the release's tags name plus one ``OTHER``
value standing for "anything else", and the Python dimension runs from 3.6 to a few minors past the
newest one seen (``abi3`` / ``py3`` wheels cover every later minor too).

The tag → facts table of docs/meld-contract.md, kept as data below. Parsing the compressed tag sets of a file
name stays with :func:`packaging.utils.parse_wheel_filename`; this module only reads the parsed tags.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import product
from typing import NamedTuple

from packaging.tags import Tag

__all__ = [
    "OTHER",
    "Cell",
    "PlatformFacts",
    "PythonFacts",
    "Universe",
    "marker_environments",
    "platform_facts",
    "plausible",
    "python_facts",
]

#: The value of a dimension that stands for every value the release's tags do not name.
OTHER = "other"

# Minors of Python 3 that exist in the universe even when no tag names them: markers written for an
# sdist-era release (or for a future interpreter) must still evaluate somewhere sensible.
_LOWEST_MINOR = (3, 6)
# Markers name released Pythons: the grid reaches at least this far even for a release built only
# for old ones, so ``python_version >= "3.14"`` on a py3-none-any wheel is seen to be possibly true.
_NEWEST_KNOWN = (3, 15)
_ALWAYS_SYSTEMS = ("linux", "darwin", "win32")
_ALWAYS_MACHINES = ("x86_64", "aarch64", "arm64", "AMD64", "ARM64", "x86")
# How many minors past the newest seen the universe extends: abi3 / py3 wheels claim them, and a
# marker such as ``python_version >= "3.12"`` must stay true for Pythons released after the wheels.
_FUTURE_MINORS = 3


class Cell(NamedTuple):
    """One environment of the grid.

    A NamedTuple rather than a frozen dataclass on purpose: a meld hashes cells millions of times
    (set algebra, evaluation caches), and tuple hashing is several times cheaper.
    """

    sys_platform: str
    platform_machine: str
    python: tuple[int, int]
    implementation_name: str


@dataclass(frozen=True, slots=True)
class PlatformFacts:
    """What a platform tag says: one ``sys_platform`` and the machines it runs on.

    ``sys_platform is None`` means the tag is ``any``: every platform of the universe.
    ``family`` and ``version`` feed installer preference (see :mod:`proxy.meld.preference`).
    """

    sys_platform: str | None
    machines: frozenset[str]
    family: str
    version: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PythonFacts:
    """What an interpreter + ABI pair says.

    ``implementation is None`` means any implementation (``py3``); the covered versions are
    ``(major, m)`` for ``minor_min <= m <= minor_max`` (``None`` bounds are open).
    """

    implementation: str | None
    major: int
    minor_min: int | None
    minor_max: int | None

    def covers(self, python: tuple[int, int], implementation: str) -> bool:
        if self.implementation is not None and self.implementation != implementation:
            return False
        major, minor = python
        if major != self.major:
            return False
        if self.minor_min is not None and minor < self.minor_min:
            return False
        return self.minor_max is None or minor <= self.minor_max


# --- the normative table -------------------------------------------------------------------------

# Windows platform tags name the machine ``platform.machine()`` reports there.
_WINDOWS: Mapping[str, str] = {"win_amd64": "AMD64", "win_arm64": "ARM64", "win32": "x86", "win_ia64": "ia64"}

# macOS "fat" architectures: one tag, several machines. ``intel`` is x86_64 plus the old i386.
_MACOS_FAT: Mapping[str, frozenset[str]] = {
    "universal2": frozenset({"arm64", "x86_64"}),
    "universal": frozenset({"x86_64", "i386", "ppc", "ppc64", "arm64"}),
    "intel": frozenset({"x86_64", "i386"}),
    "fat": frozenset({"i386", "ppc"}),
    "fat3": frozenset({"x86_64", "i386", "ppc"}),
    "fat32": frozenset({"i386", "ppc"}),
    "fat64": frozenset({"x86_64", "ppc64"}),
}

# Legacy manylinux names and the glibc each promises (PEP 513, 571, 599); PEP 600 names carry theirs.
_LEGACY_MANYLINUX: Mapping[str, tuple[int, int]] = {
    "manylinux1": (2, 5),
    "manylinux2010": (2, 12),
    "manylinux2014": (2, 17),
}

_PEP600 = re.compile(r"(?P<family>manylinux|musllinux)_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>.+)")
_LEGACY = re.compile(r"(?P<name>manylinux(?:1|2010|2014))_(?P<arch>.+)")
_MACOS = re.compile(r"macosx_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>.+)")
_ANDROID = re.compile(r"android_\d+_(?P<abi>.+)")
_IOS = re.compile(r"ios_\d+_\d+_(?P<arch>arm64|x86_64)_iphone(?:os|simulator)")
# PEP 738: Android platform tags name the NDK ABI; platform.machine() reports the kernel's name.
_ANDROID_MACHINES: Mapping[str, str] = {
    "arm64_v8a": "aarch64",
    "armeabi_v7a": "armv7l",
    "x86_64": "x86_64",
    "x86": "i686",
}

# implementation_name for the interpreter abbreviations of PEP 425.
_IMPLEMENTATIONS: Mapping[str, str] = {
    "cp": "cpython",
    "pp": "pypy",
    "ip": "ironpython",
    "jy": "jython",
    "gp": "graalpy",
}
_INTERPRETER = re.compile(r"(?P<abbr>[a-z]+?)(?P<digits>\d*)")

# Marker variables derived from ``sys_platform`` (needed to evaluate a requirement's *own* marker).
_PLATFORM_SYSTEM: Mapping[str, str] = {
    "linux": "Linux",
    "darwin": "Darwin",
    "win32": "Windows",
    "android": "Android",
    "ios": "iOS",
}
_PYTHON_IMPLEMENTATION: Mapping[str, str] = {
    "cpython": "CPython",
    "pypy": "PyPy",
    "ironpython": "IronPython",
    "jython": "Jython",
    "graalpy": "GraalVM",
}


# Machine names only one family of systems reports (Windows names its own; macOS says arm64 where
# Linux says aarch64). A cell pairing one with another system is no real environment.
_MACHINE_SYSTEMS: Mapping[str, frozenset[str]] = {
    "AMD64": frozenset({"win32"}),
    "ARM64": frozenset({"win32"}),
    "x86": frozenset({"win32"}),
    "arm64": frozenset({"darwin", "ios"}),
    "aarch64": frozenset({"linux", "android"}),
}


def plausible(cell: Cell) -> bool:
    """Whether some real interpreter reports the cell's ``sys_platform`` and ``platform_machine``."""
    systems = _MACHINE_SYSTEMS.get(cell.platform_machine)
    return systems is None or cell.sys_platform in systems or cell.sys_platform == OTHER


@functools.lru_cache(maxsize=4096)
def platform_facts(platform: str) -> PlatformFacts:
    """The ``sys_platform`` and machines of one platform tag (``any`` → every platform)."""
    if platform == "any":
        return PlatformFacts(None, frozenset(), "any")
    if platform in _WINDOWS:
        return PlatformFacts("win32", frozenset({_WINDOWS[platform]}), "win")
    if match := _PEP600.fullmatch(platform):
        glibc = (int(match["major"]), int(match["minor"]))
        return PlatformFacts("linux", frozenset({match["arch"]}), match["family"], glibc)
    if match := _LEGACY.fullmatch(platform):
        return PlatformFacts(
            "linux", frozenset({match["arch"]}), "manylinux", _LEGACY_MANYLINUX[match["name"]]
        )
    if platform.startswith("linux_"):
        return PlatformFacts("linux", frozenset({platform.removeprefix("linux_")}), "linux")
    if match := _MACOS.fullmatch(platform):
        arch = match["arch"]
        machines = _MACOS_FAT.get(arch, frozenset({arch}))
        # Arch-specific builds win over fat ones of the same deployment target (as packaging orders them).
        return PlatformFacts("darwin", machines, "macosx", (int(match["major"]), int(match["minor"])))
    if match := _ANDROID.fullmatch(platform):
        machine = _ANDROID_MACHINES.get(match["abi"], match["abi"])
        return PlatformFacts("android", frozenset({machine}), "android")
    if match := _IOS.fullmatch(platform):
        return PlatformFacts("ios", frozenset({match["arch"]}), "ios")
    # Anything else (freebsd_13_amd64, cygwin, …): the tag's own leading word is the best guess at
    # sys_platform; the machine is unknown, so the wheel covers OTHER machines only.
    return PlatformFacts(platform.split("_", 1)[0], frozenset({OTHER}), "other")


@functools.lru_cache(maxsize=4096)
def python_facts(interpreter: str, abi: str) -> PythonFacts:
    """The implementation and Python versions an interpreter + ABI tag pair admits."""
    match = _INTERPRETER.fullmatch(interpreter)
    if match is None:
        return PythonFacts(OTHER, 3, None, None)
    abbr, digits = match["abbr"], match["digits"]
    implementation = None if abbr == "py" else _IMPLEMENTATIONS.get(abbr, abbr)
    if not digits:
        return PythonFacts(implementation, 3, None, None)
    major = int(digits[0])
    if implementation == "pypy" and major != 3:
        # Old-style ``pp73`` names the PyPy release, not the Python it implements: any Python 3.
        return PythonFacts("pypy", 3, None, None)
    if len(digits) == 1:
        return PythonFacts(implementation, major, None, None)
    minor = int(digits[1:])
    if implementation is None or abi == "abi3":
        # pyXY and cpXY-abi3 promise "this minor or later" (packaging yields them for newer Pythons).
        return PythonFacts(implementation, major, minor, None)
    # cpXY-cpXY, cpXY-cpXYt, cpXY-none, ppXY-pypyXY_ppNN: that exact minor.
    return PythonFacts(implementation, major, minor, minor)


@dataclass(frozen=True, slots=True)
class Universe:
    """The finite grid of one release: each dimension's named values plus ``OTHER``."""

    sys_platforms: tuple[str, ...]
    machines: tuple[str, ...]
    pythons: tuple[tuple[int, int], ...]
    implementations: tuple[str, ...]

    @classmethod
    def from_tags(cls, tags: Iterable[Tag]) -> Universe:
        # The common platforms are always named, even when only pure wheels exist: a marker on them
        # can then be evaluated exactly instead of falling into the conservative OTHER cell.
        systems: set[str] = set(_ALWAYS_SYSTEMS)
        machines: set[str] = set(_ALWAYS_MACHINES)
        pythons: set[tuple[int, int]] = set()
        implementations = {"cpython", "pypy"}
        for tag in tags:
            plat = platform_facts(tag.platform)
            if plat.sys_platform is not None:
                systems.add(plat.sys_platform)
                machines |= plat.machines
            py = python_facts(tag.interpreter, tag.abi)
            if py.implementation is not None:
                implementations.add(py.implementation)
            for bound in (py.minor_min, py.minor_max):
                if bound is not None:
                    pythons.add((py.major, bound))
        newest = max(pythons | {_NEWEST_KNOWN})
        pythons |= {(3, minor) for minor in range(_LOWEST_MINOR[1], newest[1] + _FUTURE_MINORS + 1)}
        return cls(
            sys_platforms=(*sorted(systems - {OTHER}), OTHER),
            machines=(*sorted(machines - {OTHER}), OTHER),
            pythons=tuple(sorted(pythons)),
            implementations=(*sorted(implementations - {OTHER}), OTHER),
        )

    def values(self, dimension: int) -> tuple[object, ...]:
        """The values of dimension ``dimension`` (a :class:`Cell` field index)."""
        return (self.sys_platforms, self.machines, self.pythons, self.implementations)[dimension]

    def cells(self) -> frozenset[Cell]:
        """Every cell of the grid."""
        return _all_cells(self)

    def cells_of_tag(self, tag: Tag) -> frozenset[Cell]:
        return _cells_of_tag(self, tag)

    def cells_of(self, tags: Iterable[Tag]) -> frozenset[Cell]:
        """Every cell in which at least one of ``tags`` is installable."""
        cells: set[Cell] = set()
        for tag in tags:
            cells |= _cells_of_tag(self, tag)
        return frozenset(cells)


@functools.lru_cache(maxsize=256)
def _all_cells(universe: Universe) -> frozenset[Cell]:
    return frozenset(
        Cell(*values)
        for values in product(
            universe.sys_platforms, universe.machines, universe.pythons, universe.implementations
        )
    )


@functools.lru_cache(maxsize=65536)
def _cells_of_tag(universe: Universe, tag: Tag) -> frozenset[Cell]:
    plat = platform_facts(tag.platform)
    if plat.sys_platform is None:
        pairs: Iterable[tuple[str, str]] = product(universe.sys_platforms, universe.machines)
    else:
        pairs = [(plat.sys_platform, machine) for machine in sorted(plat.machines)]
    py = python_facts(tag.interpreter, tag.abi)
    interpreters = [
        (python, impl)
        for python in universe.pythons
        for impl in universe.implementations
        if py.covers(python, impl)
    ]
    return frozenset(
        Cell(system, machine, python, impl) for (system, machine) in pairs for (python, impl) in interpreters
    )


@functools.lru_cache(maxsize=16384)
def marker_environments(cell: Cell) -> tuple[Mapping[str, str], ...]:
    """Full PEP 508 environments for ``cell``, for evaluating a requirement's own marker.

    A cell is a whole Python minor, so it yields one environment per patch level (0 first, then 1…29
    and a late one): a marker on ``python_full_version`` is "possibly true" in the cell if any is.
    """
    system, machine, (major, minor), impl = cell
    base = {
        "sys_platform": system,
        "platform_system": _PLATFORM_SYSTEM.get(system, system),
        "os_name": "nt" if system == "win32" else "posix",
        "platform_machine": machine,
        "python_version": f"{major}.{minor}",
        "implementation_name": impl,
        "platform_python_implementation": _PYTHON_IMPLEMENTATION.get(impl, impl),
        "platform_release": "",
        "platform_version": "",
    }
    environments = []
    for patch in (0, *range(1, 30), 99):
        full = f"{major}.{minor}.{patch}"
        environments.append({**base, "python_full_version": full, "implementation_version": full})
    return tuple(environments)
