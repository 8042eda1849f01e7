"""Shared helpers of the meld tests: fixtures on disk, metadata builders, and an installer model.

The installer model (which wheel is picked in a concrete environment, what a requirement list gives
there) is written from packaging's public tag generators and marker evaluation, independently of
``proxy.meld``'s cell grid, so the tests check the engine rather than restate it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, combinations
from pathlib import Path

from packaging.metadata import parse_email
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags, generic_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from proxy.meld import WheelInput

__all__ = [
    "ALL_ENVIRONMENTS",
    "FIXTURES",
    "Environment",
    "active",
    "build_metadata",
    "build_sdist_metadata",
    "check_contract",
    "check_uncovered",
    "environments_of",
    "extras_subsets",
    "preferred",
    "provided_extras",
    "requirements_of",
    "seed_releases",
    "torch_210",
]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# Platform tags an installer on each (sys_platform, machine) accepts, best first (glibc before musl:
# markers cannot tell them apart, and the engine documents glibc as the preferred reading).
_PLATFORMS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("linux", "x86_64"): (
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_24_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux1_x86_64",
        "musllinux_1_2_x86_64",
        "linux_x86_64",
    ),
    ("linux", "aarch64"): (
        "manylinux_2_28_aarch64",
        "manylinux_2_17_aarch64",
        "manylinux2014_aarch64",
        "musllinux_1_2_aarch64",
        "linux_aarch64",
    ),
    ("darwin", "arm64"): (
        "macosx_14_0_arm64",
        "macosx_11_0_arm64",
        "macosx_11_0_universal2",
        "macosx_10_9_universal2",
    ),
    ("darwin", "x86_64"): (
        "macosx_14_0_x86_64",
        "macosx_11_0_x86_64",
        "macosx_10_9_x86_64",
        "macosx_10_9_intel",
        "macosx_10_9_universal2",
    ),
    ("win32", "AMD64"): ("win_amd64",),
    ("win32", "ARM64"): ("win_arm64",),
    ("win32", "x86"): ("win32",),
    ("freebsd", "amd64"): (),  # a platform no tag names: only pure wheels install there
}
_PYTHONS = tuple((3, minor) for minor in range(8, 16))
_SYSTEM = {"linux": "Linux", "darwin": "Darwin", "win32": "Windows", "freebsd": "FreeBSD"}


@dataclass(frozen=True, slots=True)
class Environment:
    """A concrete interpreter an installer runs in."""

    sys_platform: str
    machine: str
    python: tuple[int, int]
    implementation: str  # "cpython" or "pypy"

    def markers(self) -> dict[str, str]:
        full = f"{self.python[0]}.{self.python[1]}.4"
        return {
            "sys_platform": self.sys_platform,
            "platform_system": _SYSTEM[self.sys_platform],
            "os_name": "nt" if self.sys_platform == "win32" else "posix",
            "platform_machine": self.machine,
            "python_version": f"{self.python[0]}.{self.python[1]}",
            "python_full_version": full,
            "implementation_name": self.implementation,
            "platform_python_implementation": "CPython" if self.implementation == "cpython" else "PyPy",
            "implementation_version": full,
            "platform_release": "",
            "platform_version": "",
        }

    def supported_tags(self) -> Mapping[Tag, int]:
        """The tags an installer here accepts → rank, best first (packaging's generators, our platforms)."""
        return _supported_tags(self)


@functools.cache
def _supported_tags(env: Environment) -> Mapping[Tag, int]:
    platforms = _PLATFORMS[(env.sys_platform, env.machine)]
    major, minor = env.python
    if env.implementation == "cpython":
        interpreter = f"cp{major}{minor}"
        ordered = chain(
            cpython_tags(env.python, [interpreter], platforms),
            compatible_tags(env.python, interpreter, platforms),
            # Free-threaded wheels: markers cannot tell the builds apart; they come last.
            (Tag(interpreter, f"{interpreter}t", platform) for platform in platforms),
        )
    else:
        interpreter = f"pp{major}{minor}"
        ordered = chain(
            generic_tags(interpreter, [f"pypy{major}{minor}_pp73"], platforms),
            compatible_tags(env.python, interpreter, platforms),
        )
    return {tag: rank for rank, tag in enumerate(dict.fromkeys(ordered))}


def environments_of(tags: Iterable[Tag]) -> list[Environment]:
    """Concrete environments in which at least one of ``tags`` installs (a sample covering each tag)."""
    found: dict[Environment, None] = {}
    for tag in tags:
        for (system, machine), platforms in _PLATFORMS.items():
            if tag.platform != "any" and tag.platform not in platforms:
                continue
            for python in _PYTHONS:
                for implementation in ("cpython", "pypy"):
                    env = Environment(system, machine, python, implementation)
                    if tag in env.supported_tags():
                        found[env] = None
    return list(found)


def preferred(wheels: Sequence[str], env: Environment) -> str | None:
    """The file name an installer picks in ``env`` (best tag; ties → first listed), if any."""
    order = env.supported_tags()
    best: tuple[int, int] | None = None
    choice = None
    for position, filename in enumerate(wheels):
        ranks = [order[tag] for tag in parse_wheel_filename(filename)[3] if tag in order]
        if ranks and (best is None or (min(ranks), position) < best):
            best, choice = (min(ranks), position), filename
    return choice


def requirements_of(metadata: bytes) -> list[Requirement]:
    """``Requires-Dist`` of ``metadata`` via packaging's own parser (independent of the engine's)."""
    raw, _ = parse_email(metadata)
    return [Requirement(text) for text in raw.get("requires_dist", [])]


def active(requirements: Iterable[Requirement], env: Environment, extras: Iterable[str]) -> frozenset[object]:
    """What an installer installs from ``requirements`` in ``env`` with ``extras`` requested."""
    base = env.markers()
    wanted = ("", *extras)
    chosen = set()
    for req in requirements:
        if req.marker is None or any(req.marker.evaluate({**base, "extra": extra}) for extra in wanted):
            chosen.add(
                (
                    canonicalize_name(req.name),
                    frozenset(canonicalize_name(e) for e in req.extras),
                    req.specifier,
                    req.url,
                )
            )
    return frozenset(chosen)


def extras_subsets(extras: Iterable[str], cap: int = 2) -> list[tuple[str, ...]]:
    names = sorted(set(extras))
    return [combo for size in range(cap + 1) for combo in combinations(names, size)]


def build_metadata(
    name: str,
    version: str,
    requires: Sequence[str],
    extras: Sequence[str] = (),
    *,
    eol: str = "\n",
    body: str = "A description.\n",
) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {text}" for text in requires]
    lines += [f"Provides-Extra: {extra}" for extra in extras]
    return (eol.join(lines) + eol + eol + body).encode()


def build_sdist_metadata(
    name: str, version: str, requires: Sequence[str], extras: Sequence[str] = (), *, dynamic: bool = False
) -> bytes:
    """A PKG-INFO: Metadata-Version 2.2 (PEP 643), with ``Requires-Dist`` static unless ``dynamic``."""
    lines = ["Metadata-Version: 2.2", f"Name: {name}", f"Version: {version}"]
    lines += ["Dynamic: Requires-Dist"] if dynamic else []
    lines += [f"Requires-Dist: {text}" for text in requires]
    lines += [f"Provides-Extra: {extra}" for extra in extras]
    return ("\n".join(lines) + "\n\nAn sdist.\n").encode()


def seed_releases() -> dict[tuple[str, str], list[WheelInput]]:
    """The seed index, one list of wheels per (project, exact version) — local label included."""
    data = json.loads((FIXTURES / "pytorch-nightly-cu126.json").read_text())
    releases: dict[tuple[str, str], list[WheelInput]] = {}
    for project, entries in data["projects"].items():
        for entry in entries:
            _, version, _, _ = parse_wheel_filename(entry["filename"])
            metadata = build_metadata(project, str(version), entry["requires_dist"], entry["provides_extra"])
            releases.setdefault((project, str(version)), []).append(WheelInput(entry["filename"], metadata))
    return releases


def torch_210() -> list[WheelInput]:
    folder = FIXTURES / "pypi-torch-2.1.0"
    return [
        WheelInput(path.name.removesuffix(".metadata"), path.read_bytes())
        for path in sorted(folder.glob("*.metadata"))
    ]


def provided_extras(metadata: bytes) -> set[str]:
    raw, _ = parse_email(metadata)
    return {canonicalize_name(extra) for extra in raw.get("provides_extra", [])}


def check_contract(
    inputs: Sequence[WheelInput], outputs: Mapping[str, bytes], sdist_extras: Iterable[str] = ()
) -> None:
    """Contract items 1 and 2 for every wheel that has metadata: one list, and faithful where picked.

    Fidelity is checked in every sampled environment where the installer model picks the wheel, for
    every set of up to two extras drawn from the release's ``Provides-Extra`` union (with a static
    sdist's, ``sdist_extras``).
    """
    names = [wheel.filename for wheel in inputs if wheel.metadata is not None]
    own = {wheel.filename: requirements_of(wheel.metadata) for wheel in inputs if wheel.metadata is not None}
    served = {name: requirements_of(outputs[name]) for name in names}
    stories = {frozenset(reqs) for reqs in served.values()}
    assert len(stories) <= 1, f"inconsistent: {len(stories)} different requirement sets served"
    extras = {canonicalize_name(extra) for extra in sdist_extras}
    for wheel in inputs:
        if wheel.metadata is not None:
            extras |= provided_extras(wheel.metadata)
    served_extras = {name: provided_extras(outputs[name]) for name in names}
    assert all(found == extras for found in served_extras.values()), "Provides-Extra is not the union"
    subsets = extras_subsets(extras)
    for name in names:
        for env in environments_of(parse_wheel_filename(name)[3]):
            if preferred(names, env) != name:
                continue
            for chosen in subsets:
                expected = active(own[name], env, chosen)
                got = active(served[name], env, chosen)
                assert got == expected, (
                    f"{name} in {env} with extras {chosen}: lost {sorted(map(str, expected - got))}, "
                    f"added {sorted(map(str, got - expected))}"
                )


# Environments the installer model samples, wheel or not: where no wheel installs, an installer
# builds the sdist (or, without one, fails).
ALL_ENVIRONMENTS = tuple(
    Environment(system, machine, python, implementation)
    for (system, machine) in _PLATFORMS
    for python in _PYTHONS
    for implementation in ("cpython", "pypy")
)


def check_uncovered(
    inputs: Sequence[WheelInput], sdist: bytes | None, outputs: Mapping[str, bytes]
) -> list[Environment]:
    """Where no wheel installs, R* gives exactly what the sdist's ``Requires-Dist`` gives (rule 1).

    ``sdist``: the static sdist's metadata, or None to only list the uncovered environments.
    Returns the sampled environments no wheel covers.
    """
    names = [wheel.filename for wheel in inputs if wheel.metadata is not None]
    served = requirements_of(outputs[names[0]]) if names else []
    extras = provided_extras(outputs[names[0]]) if names else set()
    uncovered = [env for env in ALL_ENVIRONMENTS if preferred([w.filename for w in inputs], env) is None]
    if sdist is None:
        return uncovered
    own = requirements_of(sdist)
    for env in uncovered:
        for chosen in extras_subsets(extras | provided_extras(sdist)):
            expected, got = active(own, env, chosen), active(served, env, chosen)
            assert got == expected, (
                f"{env} (no wheel) with extras {chosen}: lost {sorted(map(str, expected - got))}, "
                f"added {sorted(map(str, got - expected))} against the sdist"
            )
    return uncovered
