"""What running ahead guesses a resolver asks for next: pure functions, no I/O.

From a release's served metadata: the requirements a universal resolver follows (every marker that
holds in some environment the release covers, extras only where asked). From a project page: the
releases it will most likely pick for one requirement (``likely_releases``: the newest that
satisfies the specifier and admits some Python the parent covers, and, when that one does not admit
the parent's ``Requires-Python`` floor, the newest that does, where a universal resolver forks).
A wrong guess costs upstream requests, never an answer: what is warmed is what a client's own
request would have computed.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.metadata import parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from proxy.index.filenames import FileKind, parse_file_name
from proxy.index.model import DistFile
from proxy.index.releases import Release, release_of
from proxy.meld.environments import python_facts

__all__ = ["Wanted", "covered_pythons", "likely_releases", "metadata_requirements", "wanted_requirements"]

# The Python minors a guess considers: the ones resolvers lock for today, and a few either side.
_PYTHONS = tuple((3, minor) for minor in range(6, 16))
# Platforms a universal lock forks on; a requirement holding on any of them is followed.
_PLATFORMS = (
    ("linux", "Linux", "x86_64", "posix"),
    ("linux", "Linux", "aarch64", "posix"),
    ("darwin", "Darwin", "arm64", "posix"),
    ("darwin", "Darwin", "x86_64", "posix"),
    ("win32", "Windows", "AMD64", "nt"),
)


@dataclass(frozen=True, slots=True)
class Wanted:
    """One requirement to run ahead for: a project, what it must satisfy, the extras asked of it."""

    name: NormalizedName
    specifier: SpecifierSet
    extras: frozenset[str]

    @property
    def pinned(self) -> bool:
        """Whether it admits one version only (``==1.2.3``, not ``==1.*``)."""
        return any(s.operator in ("==", "===") and not s.version.endswith(".*") for s in self.specifier)


def covered_pythons(
    release: Release, requires_python: str | None, within: frozenset[tuple[int, int]] | None = None
) -> frozenset[tuple[int, int]]:
    """The Python versions ``release``'s wheels cover that its ``Requires-Python`` admits (and
    ``within``, the parent's, when given); the admitted ones alone when no wheel names a version."""
    admitted = {python for python in _PYTHONS if _admits(requires_python, python)}
    if within is not None:
        admitted &= within
    covered: set[tuple[int, int]] = set()
    for dist in release.wheels:
        try:
            tags = parse_wheel_filename(dist.filename)[3]
        except InvalidWheelFilename:
            continue
        for tag in tags:
            facts = python_facts(tag.interpreter, tag.abi)
            covered |= {p for p in admitted if facts.covers(p, "cpython")}
    return frozenset(covered or admitted)


def metadata_requirements(metadata: bytes) -> tuple[str | None, list[Requirement]]:
    """``metadata``'s ``Requires-Python`` and ``Requires-Dist``; a line that does not parse is
    skipped (the client cannot follow it either)."""
    raw, _unparsed = parse_email(metadata)
    requirements = []
    for line in raw.get("requires_dist", []):
        try:
            requirements.append(Requirement(line))
        except InvalidRequirement:
            continue
    return raw.get("requires_python"), requirements


def wanted_requirements(
    requirements: Iterable[Requirement], extras: frozenset[str], pythons: frozenset[tuple[int, int]]
) -> list[Wanted]:
    """The requirements a universal resolver follows for ``extras`` in ``pythons``: each whose
    marker holds in some environment there (a direct URL is no index's to warm)."""
    environments = _environments(pythons, extras)
    wanted: dict[tuple[str, str, frozenset[str]], Wanted] = {}
    for requirement in requirements:
        if requirement.url is not None or not _holds_somewhere(requirement, environments):
            continue
        item = Wanted(
            canonicalize_name(requirement.name), requirement.specifier, frozenset(requirement.extras)
        )
        wanted.setdefault((item.name, str(item.specifier), item.extras), item)
    return list(wanted.values())


def likely_releases(
    files: Sequence[DistFile], groups: dict[str, Release], wanted: Wanted, pythons: frozenset[tuple[int, int]]
) -> tuple[Release, ...]:
    """The releases of ``wanted`` a universal resolver most likely asks for from a page of ``files``
    (``groups``: the page's ``release_groups``), at most two:

    - the newest version that satisfies the specifier, is not yanked, is not a pre-release unless
      the specifier asks for one or nothing else satisfies it, and whose ``Requires-Python``
      admits some Python in ``pythons`` (those the requiring release covers);
    - when that version does not admit the lowest of ``pythons`` (the requiring release's own
      ``Requires-Python`` floor), the newest such version that does: the resolver forks on
      ``python_version`` there and asks for it too (numpy's newest wanting 3.12 under a project
      that admits 3.11). Never more than one such extra version per requirement.

    A version without a wheel on the page (nothing to meld) is left out."""
    versions, releases = _versions(files, groups)
    newest_first = sorted(versions, reverse=True)
    asks_pre = bool(wanted.specifier.prereleases)  # a specifier naming a pre-release, as ">=3.0rc1"
    finals = [v for v in newest_first if wanted.specifier.contains(v, prereleases=asks_pre)]
    # No final release satisfies it: resolvers then take pre-releases (uv and pip alike).
    fitting = finals or [v for v in newest_first if wanted.specifier.contains(v, prereleases=True)]
    # Newest first, and only as far as needed: a page may hold hundreds of versions of 100 wheels.
    newest = next(
        (v for v in fitting if any(_admits_any(d.requires_python, pythons) for d in versions[v])), None
    )
    if newest is None:
        return ()
    chosen = [newest]
    floor = min(pythons)
    if not any(_admits(d.requires_python, floor) for d in versions[newest]):
        # Admitting the floor admits some Python of ``pythons``: no need to check that again.
        older = next(
            (
                v
                for v in fitting
                if v < newest and any(_admits(d.requires_python, floor) for d in versions[v])
            ),
            None,
        )
        chosen += [older] if older is not None else []
    return tuple(releases[version] for version in chosen if version in releases)


def _versions(
    files: Sequence[DistFile], groups: dict[str, Release]
) -> tuple[dict[Version, list[DistFile]], dict[Version, Release]]:
    """Each version on the page -> its files not yanked; and -> its release of wheels. A release's
    version is parsed from its first wheel only: a page may hold 15,000 wheels."""
    versions: dict[Version, list[DistFile]] = {}
    releases: dict[Version, Release] = {}
    for release in {group.key: group for group in groups.values()}.values():
        identity = release_of(release.wheels[0].filename)
        wheels = [dist for dist in release.wheels if not dist.yanked]
        if identity is not None and wheels:
            versions.setdefault(identity[1], []).extend(wheels)
            releases[identity[1]] = release
    for dist in files:
        if not dist.yanked and not dist.filename.endswith(".whl"):
            parsed = parse_file_name(dist.filename)
            if parsed.kind is FileKind.SDIST and parsed.version is not None:
                versions.setdefault(parsed.version, []).append(dist)
    return versions, releases


# Memoized: a pure function of two immutable values, asked for every wheel of every version a guess
# looks at, and a page holds few distinct ``Requires-Python`` strings (parsing one costs ~10 us).
@functools.lru_cache(maxsize=4096)
def _admits(requires_python: str | None, python: tuple[int, int]) -> bool:
    if not requires_python:
        return True
    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return True  # unreadable: resolvers ignore it, so does the guess
    return spec.contains(Version(f"{python[0]}.{python[1]}"), prereleases=True) or spec.contains(
        Version(f"{python[0]}.{python[1]}.99"), prereleases=True
    )


def _admits_any(requires_python: str | None, pythons: Iterable[tuple[int, int]]) -> bool:
    return any(_admits(requires_python, p) for p in pythons)


def _environments(pythons: frozenset[tuple[int, int]], extras: frozenset[str]) -> list[dict[str, str]]:
    out = []
    for (major, minor), (platform, system, machine, os_name), extra in itertools.product(
        sorted(pythons), _PLATFORMS, sorted(extras) or [""]
    ):
        out.append(
            {
                "python_version": f"{major}.{minor}",
                "python_full_version": f"{major}.{minor}.0",
                "sys_platform": platform,
                "platform_system": system,
                "platform_machine": machine,
                "os_name": os_name,
                "implementation_name": "cpython",
                "platform_python_implementation": "CPython",
                "platform_release": "",
                "platform_version": "",
                "implementation_version": f"{major}.{minor}.0",
                "extra": extra,
            }
        )
    return out


def _holds_somewhere(requirement: Requirement, environments: Sequence[dict[str, str]]) -> bool:
    marker = requirement.marker
    if marker is None:
        return True
    for environment in environments:
        try:
            if marker.evaluate(environment):
                return True
        except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
            return True  # a marker we cannot judge: the resolver may follow it
    return False
