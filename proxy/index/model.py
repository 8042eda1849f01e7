"""The page model shared by parsers and renderers: PEP 503/691 project pages and project lists.

One frozen value per page, whatever its wire format (HTML or JSON), carrying what a proxy must keep:
PEP 592 yanking, PEP 658/714 core-metadata advertisements, PEP 700 sizes / upload times / versions,
PEP 708 tracks / alternate locations and PEP 792 project status. Mapping fields hold plain dicts
(so ``dataclasses.replace`` / ``asdict`` / pickling keep working); treat them as read-only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

__all__ = ["DistFile", "ProjectList", "ProjectPage", "versions_from_files", "wheel_head"]


class _RenderMemo:
    """Slots in which ``render`` memoizes a file's HTML and JSON fragments.

    Why: a page rendered again (``render_project_*`` of the same files) costs a join of fragments,
    a few milliseconds for 20,000 files, not tens. (The server's pages as served keep their own
    fragments: ``service/page_views.py``.) They are not dataclass fields, so
    ``==``, ``repr``, ``asdict``, ``replace`` and pickling ignore them, and ``replace`` yields a fresh
    object with an empty memo: a fragment can never outlive the values it was built from.
    """

    __slots__ = ("_html_fragment", "_json_fragment")


@dataclass(frozen=True, slots=True)
class DistFile(_RenderMemo):
    """One distribution file as an index lists it."""

    filename: str  # as upstream lists it (mixed case possible, '+' unescaped)
    url: str  # absolute, resolved against the page URL and any <base>; no fragment; '+' in path as %2B
    hashes: Mapping[str, str]  # {"sha256": "<lower-case hex>"}; empty when upstream gave none
    requires_python: str | None
    yanked: bool | str  # False, True, or the (non-empty) reason
    core_metadata: bool | Mapping[str, str]  # upstream's PEP 658/714 advertisement (False when absent)
    size: int | None = None  # PEP 700
    upload_time: str | None = None  # PEP 700: "YYYY-MM-DDTHH:MM:SS[.ffffff]Z"
    gpg_sig: bool | None = None


@dataclass(frozen=True, slots=True)
class ProjectPage:
    """A project detail page (PEP 503 HTML or PEP 691 JSON)."""

    name: str  # canonical project name
    files: tuple[DistFile, ...]
    versions: tuple[str, ...]  # PEP 700; derived from file names when upstream gives none
    status: str | None = None  # PEP 792 "active" / "archived" / "quarantined" / "deprecated"
    status_reason: str | None = None  # PEP 792
    tracks: tuple[str, ...] = ()  # PEP 708
    alternate_locations: tuple[str, ...] = ()  # PEP 708


@dataclass(frozen=True, slots=True)
class ProjectList:
    """The root page: every project the index serves."""

    projects: tuple[str, ...]  # names as upstream lists them


def wheel_head(filename: str) -> str:
    """``name-version-`` of a wheel file name: a memo key for its release, never the answer.

    A wheel name escapes '-' inside the project name, so wheels sharing a head share a name and a
    version, and ``packaging`` need parse only one of them (big pages hold dozens per release).
    """
    return filename[: filename.find("-", filename.find("-") + 1) + 1]


def _file_version(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename):
        # Legacy formats (.egg, .exe, .tar.bz2) and non-conforming names carry no reliable version.
        return None


def versions_from_files(filenames: Iterable[str]) -> tuple[str, ...]:
    """PEP 700 ``versions`` derived from wheel / sdist file names: unique, normalized, ascending."""
    found: dict[Version, None] = {}
    seen: set[str] = set()
    for filename in filenames:
        # Sdists are not memoized: their names may hold '-'.
        head = (wheel_head(filename) or filename) if filename.endswith(".whl") else filename
        if head in seen:
            continue
        version = _file_version(filename)
        if version is not None:
            seen.add(head)
            found[version] = None
    return tuple(str(version) for version in sorted(found))
