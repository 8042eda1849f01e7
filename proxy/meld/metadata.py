"""Faithful, header-level reading and rewriting of core metadata (METADATA / PEP 658 ``.metadata``).

Only ``Requires-Dist``, ``Provides-Extra`` and (when needed) ``Metadata-Version`` lines are touched.
Every other header, the header order, folded continuation lines, the line ending (CRLF or LF) and the
body (long description) survive byte for byte. Headers are decoded as UTF-8 with ``surrogateescape``
so that non-UTF-8 bytes round-trip; the body is never decoded at all, which also keeps a 25 KB
description from costing anything. ``Metadata.as_rfc822()`` is no use here: it re-renders (and
lower-cases / drops) fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

__all__ = ["HeaderLine", "MalformedMetadata", "ScannedMetadata", "TooManyRequirements", "rewrite", "scan"]

# Fields whose appearance requires a minimum Metadata-Version (core metadata spec history).
_FIELD_SINCE: Mapping[str, Version] = {"requires-dist": Version("1.2"), "provides-extra": Version("2.1")}


class MalformedMetadata(ValueError):
    """The bytes are not an RFC 822-style core metadata header block."""


class TooManyRequirements(MalformedMetadata):
    """The header block has more ``Requires-Dist`` lines than the caller allows."""


@dataclass(frozen=True, slots=True)
class HeaderLine:
    """One logical header: its physical line span ``[start, end)`` and its unfolded value."""

    name: str
    value: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class ScannedMetadata:
    """A header block split into physical lines (with endings), plus the untouched remainder."""

    lines: tuple[str, ...]
    rest: bytes
    headers: tuple[HeaderLine, ...]
    eol: str
    by_name: Mapping[str, tuple[HeaderLine, ...]]  # lower-cased field name → its headers, in order

    def values(self, name: str) -> list[str]:
        return [header.value for header in self.lines_of(name)]

    def first(self, name: str) -> str | None:
        found = self.lines_of(name)
        return found[0].value if found else None

    def lines_of(self, name: str) -> tuple[HeaderLine, ...]:
        return self.by_name.get(name.lower(), ())


# The blank line that ends the headers, LF or CRLF; a regex stops at the first one instead of
# scanning a long description twice looking for each spelling.
_BLANK_LINE = re.compile(rb"\n\r?\n")


def _header_end(data: bytes) -> int:
    """Offset just past the header block's last line (the blank separator line is not included)."""
    if data.startswith((b"\n", b"\r\n")):
        return 0
    match = _BLANK_LINE.search(data)
    return match.start() + 1 if match else len(data)


def scan(data: bytes, max_requirements: int | None = None) -> ScannedMetadata:
    """Split ``data`` into header lines and the untouched rest; raise :class:`MalformedMetadata`.

    ``max_requirements``: raise :class:`TooManyRequirements` as soon as more ``Requires-Dist``
    headers than that are seen, before anything parses them (a hostile file must stay cheap).
    """
    end = _header_end(data)
    text = data[:end].decode("utf-8", "surrogateescape")
    lines = tuple(text.splitlines(keepends=True))
    if not lines:
        raise MalformedMetadata("no header lines")
    first = lines[0]
    eol = "\r\n" if first.endswith("\r\n") else "\n"
    headers: list[HeaderLine] = []
    requirements = 0
    for index, line in enumerate(lines):
        if line[:1] in (" ", "\t"):
            if not headers:
                raise MalformedMetadata(f"continuation line before any header: {line!r}")
            last = headers[-1]
            value = f"{last.value} {line.strip()}" if last.value else line.strip()
            headers[-1] = HeaderLine(last.name, value, last.start, index + 1)
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or " " in name:
            raise MalformedMetadata(f"not a header line: {line!r}")
        headers.append(HeaderLine(name, value.strip(), index, index + 1))
        # len() first: lower-casing every header of a 25 KB file would cost more than the scan.
        if max_requirements is not None and len(name) == 13 and name.lower() == "requires-dist":
            requirements += 1
            if requirements > max_requirements:
                raise TooManyRequirements(f"more than {max_requirements} Requires-Dist lines")
    by_name: dict[str, list[HeaderLine]] = {}
    for header in headers:
        by_name.setdefault(header.name.lower(), []).append(header)
    grouped = {name: tuple(found) for name, found in by_name.items()}
    return ScannedMetadata(lines, data[end:], tuple(headers), eol, grouped)


def rewrite(
    scanned: ScannedMetadata,
    replace: Mapping[int, str | None],
    add_requirements: Sequence[str],
    add_extras: Sequence[str],
) -> bytes:
    """Re-assemble the metadata with some ``Requires-Dist`` values replaced and lines added.

    ``replace`` maps a header's start line to its new ``Requires-Dist`` value (``None`` removes the
    line). New ``Provides-Extra`` lines go after the last existing one (or before the added
    requirements), new ``Requires-Dist`` lines after the last existing one (or after the last header).
    ``Metadata-Version`` is raised only as far as an added field needs.
    """
    eol = scanned.eol
    requires = scanned.lines_of("Requires-Dist")
    extras = scanned.lines_of("Provides-Extra")
    last_header = scanned.headers[-1].end if scanned.headers else len(scanned.lines)
    after_requires = requires[-1].end if requires else last_header
    after_extras = extras[-1].end if extras else after_requires
    inserts: dict[int, list[str]] = {}
    for extra in add_extras:
        inserts.setdefault(after_extras, []).append(f"Provides-Extra: {extra}{eol}")
    for text in add_requirements:
        inserts.setdefault(after_requires, []).append(f"Requires-Dist: {text}{eol}")

    needed = Version("0")
    if add_requirements:
        needed = max(needed, _FIELD_SINCE["requires-dist"])
    if add_extras:
        needed = max(needed, _FIELD_SINCE["provides-extra"])
    version_header = next(iter(scanned.lines_of("Metadata-Version")), None)
    raise_version_at = -1
    if version_header is not None and needed > Version("0"):
        try:
            if Version(version_header.value) < needed:
                raise_version_at = version_header.start
        except InvalidVersion:
            pass  # an unreadable version is upstream's to own; we do not guess a better one

    by_start = {header.start: header for header in scanned.headers}
    out: list[str] = []
    index = 0
    while index < len(scanned.lines):
        out.extend(inserts.pop(index, ()))
        header = by_start.get(index)
        if header is not None and index in replace:
            value = replace[index]
            if value is not None:  # None: the requirement leaves R* (only unpicked wheels declared it)
                out.append(f"{header.name}: {value}{_ending(scanned, header)}")
            index = header.end
            continue
        if header is not None and index == raise_version_at:
            out.append(f"{header.name}: {needed}{_ending(scanned, header)}")
            index = header.end
            continue
        out.append(scanned.lines[index])
        index += 1
    for position in sorted(inserts):
        # Insertions at the very end (after the last line): keep the block newline-terminated first.
        if out and not out[-1].endswith(("\n", "\r")):
            out[-1] += eol
        out.extend(inserts[position])
    return "".join(out).encode("utf-8", "surrogateescape") + scanned.rest


def _ending(scanned: ScannedMetadata, header: HeaderLine) -> str:
    last = scanned.lines[header.end - 1]
    if last.endswith("\r\n"):
        return "\r\n"
    if last.endswith("\n"):
        return "\n"
    return ""
