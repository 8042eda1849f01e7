"""A page's releases: its wheels grouped by release (local label included), with the release's sdist.

What serving asks of a release (its identity for the meld cache, whether upstream's hashes already
say its wheels agree) is computed once per page, not per wheel and per render.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from proxy.index.filenames import FileKind, parse_file_name
from proxy.index.model import DistFile, wheel_head
from proxy.meld import NO_SDIST, NoSdist

__all__ = ["Release", "release_groups", "release_of", "siblings_agree_by_hash"]


def release_of(filename: str) -> tuple[str, Version] | None:
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    return canonicalize_name(name), version


@dataclass(frozen=True, slots=True)
class Release:
    """The wheels of one release on one page, and what serving asks of them, computed once.

    A page of the PyTorch index holds up to 20,000 files in releases of a hundred wheels: asked
    per wheel and per render, these cost 270 ms per re-render of one page.
    """

    wheels: tuple[DistFile, ...]
    key: str  # identity of the sibling set and the sdist (``_release_key``): a meld is cached under it
    agree_by_hash: bool  # upstream's own hashes say every sibling's metadata is the same bytes
    # The release's sdist on the page; NO_SDIST: the page lists none; None: it may, in a form
    # ``packaging`` does not read (a legacy archive), so nobody knows.
    sdist: DistFile | NoSdist | None = NO_SDIST

    @classmethod
    def of(cls, wheels: tuple[DistFile, ...], sdist: DistFile | NoSdist | None = NO_SDIST) -> Release:
        return cls(wheels, _release_key(wheels, sdist), siblings_agree_by_hash(wheels), sdist)

    @property
    def needs_meld(self) -> bool:
        return len(self.wheels) > 1 and not self.agree_by_hash


def release_groups(files: Sequence[DistFile]) -> dict[str, Release]:
    """Each wheel's file name -> its release on this page (local label included), in one pass.

    A wheel name escapes ``-`` inside the project name, so wheels sharing a ``name-version-`` head
    are of one release and ``packaging`` parses only the first of them: parsing all 15,000 names of
    a big page cost 230 ms, a third of its cold serving. A name sharing a valid head but otherwise
    malformed joins the group here; a meld drops it before it fetches anything.
    """
    groups: dict[tuple[str, Version], list[DistFile]] = {}
    # Each head's group, so a wheel costs one look-up by a string, not the hash of a Version.
    by_head: dict[str, list[DistFile]] = {}
    for dist in files:
        name = dist.filename
        if name.endswith(".whl"):
            if name.count("-") > 4 and _is_variant(name):
                continue  # in no release: see ``_is_variant``
            head = wheel_head(name)
            group = by_head.get(head)
            if group is None:
                release = release_of(name)
                if release is None:
                    continue
                group = groups.setdefault(release, [])
                if head:
                    by_head[head] = group
            group.append(dist)
    sdists, unknown_sources = _sdists_of(files)
    by_name: dict[str, Release] = {}
    for identity, group in groups.items():
        sdist = sdists.get(identity) or (None if unknown_sources else NO_SDIST)
        found = Release.of(tuple(group), sdist)
        by_name.update(dict.fromkeys((d.filename for d in group), found))
    return by_name


def _sdists_of(files: Sequence[DistFile]) -> tuple[dict[tuple[str, Version], DistFile], bool]:
    """Each release's sdist on the page, and whether the page holds files ``packaging`` cannot
    read (a legacy ``.tar.bz2`` may be a release's sdist: then no release is known to have none)."""
    sdists: dict[tuple[str, Version], DistFile] = {}
    unknown_sources = False
    for dist in files:
        if dist.filename.endswith(".whl"):
            continue
        parsed = parse_file_name(dist.filename)
        if parsed.kind is FileKind.SDIST:
            assert parsed.name is not None and parsed.version is not None
            # Where a release has both, installers take the .tar.gz (the current standard's).
            if dist.filename.endswith(".tar.gz") or (parsed.name, parsed.version) not in sdists:
                sdists[(parsed.name, parsed.version)] = dist
        elif parsed.kind is FileKind.OTHER:
            unknown_sources = True
    return sdists, unknown_sources


def _is_variant(filename: str) -> bool:
    """A PEP 825 variant wheel takes no part in its release's meld: it serves its own metadata.

    Variants of one platform differ by properties (GPU, CPU level, BLAS) that no marker can tell
    apart, and an installer picks among them (or the ordinary wheels) by rules outside markers: a
    meld across them could only be a conflict on every cell (contract item 6), and grouping them
    by label would still leave the choice of label to the installer. Served as they are, they give
    what they give without the proxy, and the meld of the ordinary wheels never changes because a
    variant appeared. Only names with more than four '-' (build-tagged wheels, variants) get here.
    """
    return parse_file_name(filename).kind is FileKind.VARIANT_WHEEL


def _release_key(siblings: Sequence[DistFile], sdist: DistFile | NoSdist | None) -> str:
    """Identity of a sibling set and its sdist: names plus upstream's hash (or URL when upstream
    gives none); whether the page lists no sdist or one we cannot read counts too (the meld differs)."""
    parts = sorted(f"{f.filename}\0{f.hashes.get('sha256') or f.url}" for f in siblings)
    if isinstance(sdist, DistFile):
        parts.append(f"sdist\0{sdist.filename}\0{sdist.hashes.get('sha256') or sdist.url}")
    else:
        parts.append("no sdist" if sdist is NO_SDIST else "sdist unknown")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]


def siblings_agree_by_hash(siblings: Sequence[DistFile]) -> bool:
    """Upstream's own hashes say every sibling's metadata is the same bytes: nothing to meld."""
    hashes = set()
    for dist in siblings:
        advertised = dist.core_metadata
        digest = advertised.get("sha256") if isinstance(advertised, dict) else None
        if not digest:
            return False
        hashes.add(digest.lower())
    return len(hashes) == 1
